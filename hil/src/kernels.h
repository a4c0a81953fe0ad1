/* int8 NHWC kernels with TFLite requantisation. No scratch buffers: every kernel is a direct loop. */
#ifndef HIL_KERNELS_H
#define HIL_KERNELS_H
#include <stdint.h>

typedef struct {
    uint8_t op;
    uint8_t flags;         /* mul: FLAG_MUL_BROADCAST */
    uint16_t in_h, in_w, in_c;
    uint16_t out_h, out_w, out_c;
    uint16_t k_h, k_w, stride_h, stride_w, pad_top, pad_left, depth_mult;
    int32_t in_zp, in2_zp, out_zp, act_min, act_max;
    /* resolved pointers */
    const int8_t *in;
    const int8_t *in2;
    int8_t *out;
    const int8_t *w;
    const int32_t *bias;   /* out_c */
    const int32_t *mult;   /* out_c (conv/dense/gap); 1 (mul) */
    const int32_t *shift;  /* out_c */
    const int32_t *add_params; /* add: left_shift, m1, s1, m2, s2, mo, so */
} layer_t;

int32_t multiply_by_quantized_multiplier(int32_t x, int32_t m, int32_t shift);
void run_layer(const layer_t *L);
void run_layer_ext(const layer_t *L);  /* op codes after ADD */

#endif
