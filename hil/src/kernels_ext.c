/* int8 kernels of the op codes appended after ADD (proto.h): MUL and LUT. A separate translation unit, so that
 * adding kernels leaves the code generated for the calibrated ones (kernels.c) unchanged: with them in one
 * file, GCC inlined everything into run_layer and conv2d ran 40-70% more instructions on QEMU. */
#include "kernels.h"
#include "proto.h"

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi)
{
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}

/* TFLite reference int8 Mul: out = out_zp + MBQM((a - zp1) * (b - zp2), m, s); b per channel if broadcast */
static void mul(const layer_t *L)
{
    const int32_t pixels = (int32_t)L->out_h * L->out_w, C = L->out_c;
    const int32_t m = L->mult[0], s = L->shift[0];
    const int bcast = (L->flags & FLAG_MUL_BROADCAST) != 0;
    for (int32_t p = 0; p < pixels; p++) {
        const int8_t *a = L->in + p * C, *b = bcast ? L->in2 : L->in2 + p * C;
        int8_t *o = L->out + p * C;
        for (int32_t c = 0; c < C; c++) {
            int32_t r = multiply_by_quantized_multiplier((a[c] - L->in_zp) * (b[c] - L->in2_zp), m, s) + L->out_zp;
            o[c] = clamp8(r, L->act_min, L->act_max);
        }
    }
}

/* out[i] = table[in[i] + 128]; safe in place (out == in) */
static void lut(const layer_t *L)
{
    const int32_t n = (int32_t)L->out_h * L->out_w * L->out_c;
    const int8_t *t = L->w;
    for (int32_t i = 0; i < n; i++)
        L->out[i] = t[(uint8_t)(L->in[i] + 128)];
}

void run_layer_ext(const layer_t *L)
{
    switch (L->op) {
    case OP_MUL: mul(L); break;
    case OP_LUT: lut(L); break;
    default: break;
    }
}
