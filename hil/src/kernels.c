/* int8 NHWC kernels, TFLite-compatible requantisation (bit-exact with lightning_mcuprune.quantize.reference).
 * Weights: conv2d OHWI, depthwise (KH, KW, C*M), pointwise (O, I), dense (O, I). Bias int32, per-channel
 * int32 multiplier and shift. No scratch buffers.
 * Accumulators are int32: main.c refuses (CONFIG/RUN) every layer whose accumulator could overflow (acc_bound),
 * as the host does (LayerSpec.check_accumulator), so no int32 overflow happens in these loops. */
#include "kernels.h"
#include "proto.h"

static int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31));
}

static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    int32_t mask = (int32_t)((1ll << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier; the left shift wraps like int32 arithmetic (uint32 to stay defined). */
int32_t multiply_by_quantized_multiplier(int32_t x, int32_t m, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    int32_t xs = (int32_t)((uint32_t)x << left);
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, m), right);
}

/* v is int64 so that requantised value + output zero point cannot overflow (the host adds in int64 too) */
static inline int8_t clamp8(int64_t v, int32_t lo, int32_t hi)
{
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}

static inline int32_t sat32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

static void conv2d(const layer_t *L)
{
    const int32_t H = L->in_h, W = L->in_w, C = L->in_c, KH = L->k_h, KW = L->k_w;
    for (int32_t oy = 0; oy < L->out_h; oy++) {
        const int32_t y0 = oy * L->stride_h - L->pad_top;
        for (int32_t ox = 0; ox < L->out_w; ox++) {
            const int32_t x0 = ox * L->stride_w - L->pad_left;
            int8_t *o = L->out + ((int32_t)oy * L->out_w + ox) * L->out_c;
            for (int32_t oc = 0; oc < L->out_c; oc++) {
                int32_t acc = L->bias[oc];
                const int8_t *wo = L->w + oc * KH * KW * C;
                for (int32_t ky = 0; ky < KH; ky++) {
                    const int32_t y = y0 + ky;
                    if (y < 0 || y >= H) continue;
                    for (int32_t kx = 0; kx < KW; kx++) {
                        const int32_t x = x0 + kx;
                        if (x < 0 || x >= W) continue;
                        const int8_t *ip = L->in + (y * W + x) * C;
                        const int8_t *wp = wo + (ky * KW + kx) * C;
                        for (int32_t c = 0; c < C; c++)
                            acc += (ip[c] - L->in_zp) * wp[c];
                    }
                }
                o[oc] = clamp8((int64_t)multiply_by_quantized_multiplier(acc, L->mult[oc], L->shift[oc]) + L->out_zp, L->act_min, L->act_max);
            }
        }
    }
}

static void depthwise(const layer_t *L)
{
    const int32_t H = L->in_h, W = L->in_w, C = L->in_c, KH = L->k_h, KW = L->k_w, M = L->depth_mult;
    const int32_t OC = L->out_c;
    for (int32_t oy = 0; oy < L->out_h; oy++) {
        const int32_t y0 = oy * L->stride_h - L->pad_top;
        for (int32_t ox = 0; ox < L->out_w; ox++) {
            const int32_t x0 = ox * L->stride_w - L->pad_left;
            int8_t *o = L->out + ((int32_t)oy * L->out_w + ox) * OC;
            for (int32_t c = 0; c < C; c++) {
                for (int32_t m = 0; m < M; m++) {
                    const int32_t oc = c * M + m;
                    int32_t acc = L->bias[oc];
                    for (int32_t ky = 0; ky < KH; ky++) {
                        const int32_t y = y0 + ky;
                        if (y < 0 || y >= H) continue;
                        for (int32_t kx = 0; kx < KW; kx++) {
                            const int32_t x = x0 + kx;
                            if (x < 0 || x >= W) continue;
                            acc += (L->in[(y * W + x) * C + c] - L->in_zp) * L->w[(ky * KW + kx) * OC + oc];
                        }
                    }
                    o[oc] = clamp8((int64_t)multiply_by_quantized_multiplier(acc, L->mult[oc], L->shift[oc]) + L->out_zp, L->act_min, L->act_max);
                }
            }
        }
    }
}

/* dot products of one input vector of length n against out_c weight rows: pointwise pixels and dense */
static void matvec(const layer_t *L, const int8_t *ip, int8_t *o, int32_t n)
{
    for (int32_t oc = 0; oc < L->out_c; oc++) {
        const int8_t *wp = L->w + oc * n;
        int32_t acc = L->bias[oc];
        for (int32_t c = 0; c < n; c++)
            acc += (ip[c] - L->in_zp) * wp[c];
        o[oc] = clamp8((int64_t)multiply_by_quantized_multiplier(acc, L->mult[oc], L->shift[oc]) + L->out_zp, L->act_min, L->act_max);
    }
}

static void pointwise(const layer_t *L)
{
    for (int32_t oy = 0; oy < L->out_h; oy++)
        for (int32_t ox = 0; ox < L->out_w; ox++) {
            const int8_t *ip = L->in + ((oy * L->stride_h) * L->in_w + ox * L->stride_w) * L->in_c;
            matvec(L, ip, L->out + (oy * L->out_w + ox) * L->out_c, L->in_c);
        }
}

static void dense(const layer_t *L)
{
    matvec(L, L->in, L->out, (int32_t)L->in_h * L->in_w * L->in_c);
}

static void pool(const layer_t *L, int is_max)
{
    const int32_t H = L->in_h, W = L->in_w, C = L->in_c;
    for (int32_t oy = 0; oy < L->out_h; oy++) {
        const int32_t y0 = oy * L->stride_h - L->pad_top;
        const int32_t ys = y0 < 0 ? 0 : y0, ye = (y0 + L->k_h < H) ? y0 + L->k_h : H;
        for (int32_t ox = 0; ox < L->out_w; ox++) {
            const int32_t x0 = ox * L->stride_w - L->pad_left;
            const int32_t xs = x0 < 0 ? 0 : x0, xe = (x0 + L->k_w < W) ? x0 + L->k_w : W;
            const int32_t count = (ye - ys) * (xe - xs);
            int8_t *o = L->out + (oy * L->out_w + ox) * C;
            for (int32_t c = 0; c < C; c++) {
                int32_t acc = is_max ? -128 : 0;
                for (int32_t y = ys; y < ye; y++)
                    for (int32_t x = xs; x < xe; x++) {
                        int32_t v = L->in[(y * W + x) * C + c];
                        if (is_max) {
                            if (v > acc) acc = v;
                        } else {
                            acc += v;
                        }
                    }
                if (!is_max)
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                o[c] = clamp8(acc, L->act_min, L->act_max);
            }
        }
    }
}

static void global_avg_pool(const layer_t *L)
{
    const int32_t n = (int32_t)L->in_h * L->in_w, C = L->in_c;
    for (int32_t c = 0; c < C; c++) {
        int32_t acc = 0;
        for (int32_t i = 0; i < n; i++)
            acc += L->in[i * C + c] - L->in_zp;
        L->out[c] = clamp8((int64_t)multiply_by_quantized_multiplier(acc, L->mult[c], L->shift[c]) + L->out_zp, L->act_min, L->act_max);
    }
}

static void add(const layer_t *L)
{
    const int32_t *p = L->add_params;
    const int32_t ls = p[0];
    const int32_t n = (int32_t)L->out_h * L->out_w * L->out_c;
    for (int32_t i = 0; i < n; i++) {
        int32_t a = (int32_t)((uint32_t)(L->in[i] - L->in_zp) << ls);
        int32_t b = (int32_t)((uint32_t)(L->in2[i] - L->in2_zp) << ls);
        int32_t s = sat32((int64_t)multiply_by_quantized_multiplier(a, p[1], p[2]) + multiply_by_quantized_multiplier(b, p[3], p[4]));   /* saturated, as the host */
        L->out[i] = clamp8((int64_t)multiply_by_quantized_multiplier(s, p[5], p[6]) + L->out_zp, L->act_min, L->act_max);
    }
}

void run_layer(const layer_t *L)
{
    switch (L->op) {
    case OP_CONV2D: conv2d(L); break;
    case OP_DEPTHWISE_CONV2D: depthwise(L); break;
    case OP_POINTWISE_CONV2D: pointwise(L); break;
    case OP_DENSE: dense(L); break;
    case OP_MAX_POOL: pool(L, 1); break;
    case OP_AVG_POOL: pool(L, 0); break;
    case OP_GLOBAL_AVG_POOL: global_avg_pool(L); break;
    case OP_ADD: add(L); break;
    default: run_layer_ext(L); break;   /* op codes 9.. (kernels_ext.c) */
    }
}
