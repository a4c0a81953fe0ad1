/* HIL firmware: serves the framed protocol of proto.h over the board's UART.
 * Activations live in the arena (host-given offsets), weights and quantisation parameters in the weights
 * store. Every malformed, oversized or unknown frame is answered with an ERROR frame. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "kernels.h"
#include "proto.h"

extern uint8_t __arena_start[], __arena_end[], __wstore_start[], __wstore_end[];
extern uint32_t __stack_limit, __stack_top;

#define ARENA_BYTES ((uint32_t)(__arena_end - __arena_start))
#define WSTORE_BYTES ((uint32_t)(__wstore_end - __wstore_start))
#define BYTE_TIMEOUT ((uint64_t)CLOCK_HZ / 1000u * BYTE_TIMEOUT_MS)
#define MAX_REPEATS 10000u

static uint8_t rx[HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES];
static uint8_t tx[64];
static layer_t layer;
static int layer_ok;
static int pending_byte = -1;   /* first byte of a frame that arrived during a RUN (which it cancelled) */
static uint32_t arena_hwm, wstore_hwm, frames_ok, frames_err;

/* ---- little-endian helpers and CRC-32 (IEEE, reflected, as zlib.crc32) ---- */
static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (rd16(p + 2) << 16); }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};
static uint32_t crc_update(uint32_t crc, const uint8_t *p, uint32_t n)
{
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return crc;
}

/* ---- frames out ---- */
static void put(const uint8_t *p, uint32_t n)
{
    while (n--) uart_putc(*p++);
}

static void send_frame(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t len)
{
    uint8_t h[HEADER_BYTES] = {SYNC0, SYNC1, PROTO_VERSION, type, seq, (uint8_t)len, (uint8_t)(len >> 8)};
    uint32_t crc = crc_update(0xFFFFFFFFu, h + 2, 5);
    crc = ~crc_update(crc, payload, len);
    uint8_t c[4];
    wr32(c, crc);
    put(h, sizeof h);
    put(payload, len);
    put(c, 4);
}

static void send_error(uint8_t code, uint8_t req_type, uint8_t seq, uint32_t detail, const char *msg)
{
    uint32_t n = 4;
    tx[0] = code; tx[1] = req_type; tx[2] = (uint8_t)detail; tx[3] = (uint8_t)(detail >> 8);
    while (*msg && n < sizeof tx) tx[n++] = (uint8_t)*msg++;
    frames_err++;
    send_frame(T_ERROR, seq, tx, n);
}

/* ---- frames in ---- */
static int getc_timeout(uint64_t timeout)
{
    int c = uart_getc();
    if (c >= 0) return c;
    uint64_t t0 = cycles_now();
    for (;;) {
        for (int i = 0; i < 32; i++) {   /* fewer counter reads: each is slow under QEMU */
            c = uart_getc();
            if (c >= 0) return c;
        }
        if (cycles_now() - t0 > timeout) return -1;
    }
}

static void drain(void)
{
    while (getc_timeout(BYTE_TIMEOUT) >= 0) {
    }
}

/* Receive one well-formed frame into rx; answers (and returns -1 for) everything else. */
static int recv_frame(void)
{
    uint32_t skipped = 0;
    int c = pending_byte;
    pending_byte = -1;
    for (;;) {
        /* hunt for SYNC0 SYNC1; report skipped noise when the line goes idle or a frame starts */
        if (c < 0) {
            if (skipped) {
                c = getc_timeout(BYTE_TIMEOUT);
                if (c < 0) {
                    send_error(E_NOISE, NOISE_LINE_IDLE, 0, skipped, "noise skipped, line idle");
                    skipped = 0;
                    continue;
                }
            } else {
                while ((c = uart_getc()) < 0) {
                }
            }
        }
        if (c != SYNC0) {
            skipped++;
            c = -1;
            continue;
        }
        int c2 = getc_timeout(BYTE_TIMEOUT);
        if (c2 != SYNC1) {
            skipped++;
            c = c2;          /* may itself be SYNC0, or -1 (timeout) */
            continue;
        }
        if (skipped) {
            send_error(E_NOISE, 0, 0, skipped, "noise skipped before a frame");
            skipped = 0;
        }
        break;
    }
    rx[0] = SYNC0;
    rx[1] = SYNC1;
    for (uint32_t i = 2; i < HEADER_BYTES; i++) {
        int b = getc_timeout(BYTE_TIMEOUT);
        if (b < 0) {
            send_error(E_TRUNCATED, i > 3 ? rx[3] : 0, i > 4 ? rx[4] : 0, i, "truncated header");
            return -1;
        }
        rx[i] = (uint8_t)b;
    }
    uint8_t type = rx[3], seq = rx[4];
    uint32_t len = rd16(rx + 5);
    if (len > MAX_PAYLOAD) {
        drain();
        send_error(E_TOO_LONG, type, seq, MAX_PAYLOAD, "payload longer than max");
        return -1;
    }
    for (uint32_t i = 0; i < len + CRC_BYTES; i++) {
        int b = getc_timeout(BYTE_TIMEOUT);
        if (b < 0) {
            send_error(E_TRUNCATED, type, seq, len, "truncated frame");
            return -1;
        }
        rx[HEADER_BYTES + i] = (uint8_t)b;
    }
    uint32_t crc = ~crc_update(0xFFFFFFFFu, rx + 2, 5 + len);
    if (crc != rd32(rx + HEADER_BYTES + len)) {
        send_error(E_CRC, type, seq, 0, "bad crc");
        return -1;
    }
    if (rx[2] != PROTO_VERSION) {
        send_error(E_VERSION, type, seq, PROTO_VERSION, "protocol version");
        return -1;
    }
    return (int)len;
}

/* ---- commands ---- */
static void cmd_hello(uint8_t seq)
{
    static const char names[] = BOARD_NAME "\0" CORE_NAME;
    uint8_t p[28 + sizeof names];
    p[0] = PROTO_VERSION; p[1] = FW_VERSION_MAJOR; p[2] = FW_VERSION_MINOR; p[3] = FW_VERSION_PATCH;
    p[4] = COUNTER_KIND; p[5] = 0; p[6] = 0; p[7] = 0;
    wr32(p + 8, CLOCK_HZ);
    wr32(p + 12, ARENA_BYTES);
    wr32(p + 16, WSTORE_BYTES);
    wr32(p + 20, MAX_PAYLOAD);
    wr32(p + 24, (uint32_t)((uint8_t *)&__stack_top - (uint8_t *)&__stack_limit));
    for (uint32_t i = 0; i < sizeof names; i++) p[28 + i] = (uint8_t)names[i];
    send_frame(T_HELLO | 0x80u, seq, p, sizeof p);
}

static int region(uint8_t r, uint8_t **base, uint32_t *size)
{
    if (r == REGION_ARENA) { *base = __arena_start; *size = ARENA_BYTES; return 0; }
    if (r == REGION_WEIGHTS) { *base = __wstore_start; *size = WSTORE_BYTES; return 0; }
    return -1;
}

/* The region bytes [off, off + n) of a WRITE or FILL: its base, or NULL after answering E_RANGE. */
static uint8_t *region_range(uint8_t type, uint8_t seq, uint8_t r, uint32_t off, uint32_t n, const char *outside)
{
    uint8_t *base;
    uint32_t size;
    if (region(r, &base, &size)) { send_error(E_RANGE, type, seq, r, "no such region"); return 0; }
    if (off > size || n > size - off) { send_error(E_RANGE, type, seq, 0, outside); return 0; }
    return base;
}

static void cmd_write(uint8_t seq, const uint8_t *p, uint32_t len)
{
    if (len < 8) { send_error(E_BAD_LENGTH, T_WRITE, seq, 8, "write needs region, offset"); return; }
    uint32_t off = rd32(p + 4), n = len - 8;
    uint8_t *base = region_range(T_WRITE, seq, p[0], off, n, "write outside region");
    if (!base) return;
    for (uint32_t i = 0; i < n; i++) base[off + i] = p[8 + i];
    uint32_t *hwm = p[0] == REGION_ARENA ? &arena_hwm : &wstore_hwm;
    if (off + n > *hwm) *hwm = off + n;
    wr32(tx, n);
    send_frame(T_WRITE | 0x80u, seq, tx, 4);
}

/* byte i of a fill = low byte of lowbias32(seed ^ (i * 0x9E3779B1)); the host mirrors it (protocol.fill_bytes) */
static void cmd_fill(uint8_t seq, const uint8_t *p, uint32_t len)
{
    if (len != 16) { send_error(E_BAD_LENGTH, T_FILL, seq, 16, "fill needs region, offset, length, seed"); return; }
    uint32_t off = rd32(p + 4), n = rd32(p + 8), seed = rd32(p + 12);
    uint8_t *base = region_range(T_FILL, seq, p[0], off, n, "fill outside region");
    if (!base) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x = seed ^ (i * 0x9E3779B1u);
        x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; x ^= x >> 16;
        base[off + i] = (uint8_t)x;
    }
    uint32_t *hwm = p[0] == REGION_ARENA ? &arena_hwm : &wstore_hwm;
    if (off + n > *hwm) *hwm = off + n;
    wr32(tx, n);
    send_frame(T_FILL | 0x80u, seq, tx, 4);
}

static void cmd_read(uint8_t seq, const uint8_t *p, uint32_t len)
{
    uint8_t *base;
    uint32_t size;
    if (len != 12) { send_error(E_BAD_LENGTH, T_READ, seq, 12, "read needs region, offset, length"); return; }
    if (region(p[0], &base, &size)) { send_error(E_RANGE, T_READ, seq, p[0], "no such region"); return; }
    uint32_t off = rd32(p + 4), n = rd32(p + 8);
    if (n > MAX_PAYLOAD) { send_error(E_TOO_LONG, T_READ, seq, MAX_PAYLOAD, "read longer than max"); return; }
    if (off > size || n > size - off) { send_error(E_RANGE, T_READ, seq, 0, "read outside region"); return; }
    send_frame(T_READ | 0x80u, seq, base + off, n);
}

/* tensor of n bytes at offset off must lie inside a region of the given size */
static int fits(uint32_t off, uint64_t n, uint32_t size) { return n <= size && off <= size - (uint32_t)n; }

/* Largest |int32 accumulator| a kernel can reach for any input (the host's LayerSpec.accumulator_bound):
 * weighted ops: |bias| + d * sum|w| of output channel oc, d = max|x - in_zp|; global_avg_pool d*H*W;
 * avg_pool 128*KH*KW; others 0 (add saturates its sum). Layers above INT32_MAX are refused, so the int32
 * accumulators never overflow and the board agrees with the host's int64 reference by construction. */
static uint64_t max_dev(int32_t zp) { return (uint64_t)(zp < 0 ? 127 - zp : 128 + zp); }  /* max |x - zp| */

static uint64_t pool_acc_bound(uint8_t op, int32_t in_zp, uint32_t in_h, uint32_t in_w, uint32_t k_h, uint32_t k_w)
{
    if (op == OP_GLOBAL_AVG_POOL) return max_dev(in_zp) * in_h * in_w;
    if (op == OP_AVG_POOL) return 128u * (uint64_t)k_h * k_w;
    return 0;
}

static uint64_t acc_bound(const layer_t *L, uint32_t oc)
{
    const uint64_t d = max_dev(L->in_zp);
    uint64_t sum = 0, n = 0, step = 1;
    const int8_t *w = L->w;
    switch (L->op) {
    case OP_CONV2D: n = (uint64_t)L->k_h * L->k_w * L->in_c; w += oc * n; break;
    case OP_DEPTHWISE_CONV2D: n = (uint64_t)L->k_h * L->k_w; w += oc; step = L->out_c; break;
    case OP_POINTWISE_CONV2D: n = L->in_c; w += oc * n; break;
    case OP_DENSE: n = (uint64_t)L->in_h * L->in_w * L->in_c; w += oc * n; break;
    default: return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        int32_t v = w[i * step];
        sum += (uint64_t)(v < 0 ? -v : v);
    }
    int32_t b = L->bias[oc];
    return (uint64_t)(b < 0 ? -(int64_t)b : b) + d * sum;
}

static int config_error(uint8_t seq, uint8_t code, const char *msg)
{
    layer_ok = 0;
    send_error(code, T_CONFIG, seq, 0, msg);
    return -1;
}

static int cmd_config(uint8_t seq, const uint8_t *p, uint32_t len)
{
    layer_t L;
    if (len != CONFIG_BYTES) { send_error(E_BAD_LENGTH, T_CONFIG, seq, CONFIG_BYTES, "config length"); return -1; }
    L.op = p[0];
    L.flags = p[1];
    L.in_h = (uint16_t)rd16(p + 2); L.in_w = (uint16_t)rd16(p + 4); L.in_c = (uint16_t)rd16(p + 6);
    L.out_h = (uint16_t)rd16(p + 8); L.out_w = (uint16_t)rd16(p + 10); L.out_c = (uint16_t)rd16(p + 12);
    L.k_h = (uint16_t)rd16(p + 14); L.k_w = (uint16_t)rd16(p + 16);
    L.stride_h = (uint16_t)rd16(p + 18); L.stride_w = (uint16_t)rd16(p + 20);
    L.pad_top = (uint16_t)rd16(p + 22); L.pad_left = (uint16_t)rd16(p + 24);
    L.in_zp = (int16_t)rd16(p + 26); L.in2_zp = (int16_t)rd16(p + 28); L.out_zp = (int16_t)rd16(p + 30);
    L.act_min = (int16_t)rd16(p + 32); L.act_max = (int16_t)rd16(p + 34);
    uint32_t in_off = rd32(p + 36), in2_off = rd32(p + 40), out_off = rd32(p + 44);
    uint32_t w_off = rd32(p + 48), prm_off = rd32(p + 52);
    L.depth_mult = (uint16_t)rd16(p + 56);

    if (L.op < OP_CONV2D || L.op > OP_LAST) return config_error(seq, E_BAD_CONFIG, "unknown op");
    if (L.flags & ~(L.op == OP_MUL ? FLAG_MUL_BROADCAST : 0u)) return config_error(seq, E_BAD_CONFIG, "unknown flags");
    if (!L.in_h || !L.in_w || !L.in_c || !L.out_h || !L.out_w || !L.out_c)
        return config_error(seq, E_BAD_CONFIG, "zero dimension");
    if (L.in_zp < -128 || L.in_zp > 127 || L.in2_zp < -128 || L.in2_zp > 127 || L.out_zp < -128 || L.out_zp > 127)
        return config_error(seq, E_BAD_CONFIG, "zero point outside int8");
    if (L.act_min < -128 || L.act_max > 127 || L.act_min > L.act_max)
        return config_error(seq, E_BAD_CONFIG, "activation range");

    int windowed = L.op == OP_CONV2D || L.op == OP_DEPTHWISE_CONV2D || L.op == OP_MAX_POOL || L.op == OP_AVG_POOL;
    if (L.op == OP_POINTWISE_CONV2D) {
        if (L.k_h != 1 || L.k_w != 1 || L.pad_top || L.pad_left)
            return config_error(seq, E_BAD_CONFIG, "pointwise needs 1x1, no padding");
        windowed = 1;
    }
    if (windowed) {
        if (!L.k_h || !L.k_w || !L.stride_h || !L.stride_w) return config_error(seq, E_BAD_CONFIG, "zero kernel/stride");
        if (L.pad_top >= L.k_h || L.pad_left >= L.k_w) return config_error(seq, E_BAD_CONFIG, "padding >= kernel");
        if ((uint32_t)(L.out_h - 1) * L.stride_h >= (uint32_t)L.in_h + L.pad_top ||
            (uint32_t)(L.out_w - 1) * L.stride_w >= (uint32_t)L.in_w + L.pad_left)
            return config_error(seq, E_BAD_CONFIG, "output window starts beyond input");
    }
    uint32_t oc_expected = L.in_c;
    if (L.op == OP_DEPTHWISE_CONV2D) {
        if (!L.depth_mult) return config_error(seq, E_BAD_CONFIG, "depth multiplier 0");
        oc_expected = (uint32_t)L.in_c * L.depth_mult;
    }
    if ((L.op == OP_DEPTHWISE_CONV2D || L.op == OP_MAX_POOL || L.op == OP_AVG_POOL || L.op == OP_GLOBAL_AVG_POOL ||
         L.op == OP_ADD || L.op == OP_MUL || L.op == OP_LUT) && L.out_c != oc_expected)
        return config_error(seq, E_BAD_CONFIG, "output channels");
    if ((L.op == OP_DENSE || L.op == OP_GLOBAL_AVG_POOL) && (L.out_h != 1 || L.out_w != 1))
        return config_error(seq, E_BAD_CONFIG, "output must be 1x1");
    if ((L.op == OP_ADD || L.op == OP_MUL || L.op == OP_LUT) && (L.out_h != L.in_h || L.out_w != L.in_w))
        return config_error(seq, E_BAD_CONFIG, "elementwise shapes differ");

    uint64_t in_n = (uint64_t)L.in_h * L.in_w * L.in_c, out_n = (uint64_t)L.out_h * L.out_w * L.out_c;
    uint64_t in2_n = L.op == OP_ADD ? in_n : L.op == OP_MUL ? ((L.flags & FLAG_MUL_BROADCAST) ? L.in_c : in_n) : 0;
    if (!fits(in_off, in_n, ARENA_BYTES) || !fits(out_off, out_n, ARENA_BYTES) ||
        (in2_n && !fits(in2_off, in2_n, ARENA_BYTES)))
        return config_error(seq, E_ARENA, "tensors exceed the arena");

    uint64_t w_n = 0, prm_n = 0;
    switch (L.op) {
    case OP_CONV2D: w_n = (uint64_t)L.out_c * L.k_h * L.k_w * L.in_c; prm_n = 12u * L.out_c; break;
    case OP_DEPTHWISE_CONV2D: w_n = (uint64_t)L.k_h * L.k_w * L.out_c; prm_n = 12u * L.out_c; break;
    case OP_POINTWISE_CONV2D: w_n = (uint64_t)L.out_c * L.in_c; prm_n = 12u * L.out_c; break;
    case OP_DENSE: w_n = (uint64_t)L.out_c * in_n; prm_n = 12u * L.out_c; break;
    case OP_GLOBAL_AVG_POOL: prm_n = 8u * L.out_c; break;
    case OP_ADD: prm_n = 28u; break;
    case OP_MUL: prm_n = 8u; break;
    case OP_LUT: w_n = 256u; break;
    default: break;
    }
    if ((prm_n && (prm_off & 3u)) || !fits(w_off, w_n, WSTORE_BYTES) || !fits(prm_off, prm_n, WSTORE_BYTES))
        return config_error(seq, E_WEIGHTS, "weights/params exceed the weights store or misaligned");
    /* accumulators that do not depend on weights (the host's LayerSpec.accumulator_bound does the same) */
    if (pool_acc_bound(L.op, L.in_zp, L.in_h, L.in_w, L.k_h, L.k_w) > INT32_MAX)
        return config_error(seq, E_BAD_CONFIG, "int32 accumulator could overflow");

    L.in = (const int8_t *)(__arena_start + in_off);
    L.in2 = (const int8_t *)(__arena_start + in2_off);
    L.out = (int8_t *)(__arena_start + out_off);
    L.w = (const int8_t *)(__wstore_start + w_off);
    const int32_t *prm = (const int32_t *)(void *)(__wstore_start + prm_off);
    L.bias = prm;
    L.mult = (L.op == OP_GLOBAL_AVG_POOL || L.op == OP_MUL) ? prm : prm + L.out_c;
    L.shift = L.op == OP_MUL ? prm + 1 : L.mult + L.out_c;
    L.add_params = prm;
    layer = L;
    layer_ok = 1;
    uint32_t end = (uint32_t)(in_off + in_n);
    if (out_off + out_n > end) end = (uint32_t)(out_off + out_n);
    if (in2_n && in2_off + in2_n > end) end = (uint32_t)(in2_off + in2_n);
    wr32(tx, end);
    send_frame(T_CONFIG | 0x80u, seq, tx, 4);
    return 0;
}

static int shift_ok(int32_t s) { return s >= -31 && s <= 30; }

static void cmd_run(uint8_t seq, const uint8_t *p, uint32_t len)
{
    if (len != 4) { send_error(E_BAD_LENGTH, T_RUN, seq, 4, "run needs u32 repeats"); return; }
    uint32_t n = rd32(p);
    if (!n || n > MAX_REPEATS) { send_error(E_RANGE, T_RUN, seq, MAX_REPEATS, "repeats 1..10000"); return; }
    if (!layer_ok) { send_error(E_NO_LAYER, T_RUN, seq, 0, "no layer configured"); return; }
    const layer_t *L = &layer;
    if (L->op == OP_ADD) {
        if (L->add_params[0] < 0 || L->add_params[0] > 24 || !shift_ok(L->add_params[2]) ||
            !shift_ok(L->add_params[4]) || !shift_ok(L->add_params[6])) {
            send_error(E_BAD_PARAMS, T_RUN, seq, 0, "add shifts out of range");
            return;
        }
    } else if (L->op == OP_MUL) {
        if (!shift_ok(L->shift[0])) { send_error(E_BAD_PARAMS, T_RUN, seq, 0, "shift outside -31..30"); return; }
    } else if (L->op != OP_MAX_POOL && L->op != OP_AVG_POOL && L->op != OP_LUT) {
        for (uint32_t i = 0; i < L->out_c; i++)
            if (!shift_ok(L->shift[i])) { send_error(E_BAD_PARAMS, T_RUN, seq, i, "shift outside -31..30"); return; }
        if (L->op != OP_GLOBAL_AVG_POOL)
            for (uint32_t i = 0; i < L->out_c; i++)
                if (acc_bound(L, i) > INT32_MAX) {
                    send_error(E_BAD_PARAMS, T_RUN, seq, i, "int32 accumulator could overflow");
                    return;
                }
    }
    uint64_t mn = ~0ull, mx = 0, total = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i) {                        /* a new frame cancels the run: the host gave up on it */
            int c = uart_getc();
            if (c >= 0) {
                pending_byte = c;
                send_error(E_ABORTED, T_RUN, seq, i, "run cancelled by a new frame");
                return;
            }
        }
        cycles_restart();
        uint64_t t0 = cycles_now();
        run_layer(L);
        uint64_t d = cycles_now() - t0;
        if (d < mn) mn = d;
        if (d > mx) mx = d;
        total += d;
    }
    uint32_t end = (uint32_t)((const uint8_t *)L->out - __arena_start) + (uint32_t)L->out_h * L->out_w * L->out_c;
    uint32_t in_end = (uint32_t)((const uint8_t *)L->in - __arena_start) + (uint32_t)L->in_h * L->in_w * L->in_c;
    if (in_end > end) end = in_end;
    if (L->op == OP_ADD || L->op == OP_MUL) {
        uint32_t n2 = (L->op == OP_MUL && (L->flags & FLAG_MUL_BROADCAST)) ? L->in_c : (uint32_t)L->in_h * L->in_w * L->in_c;
        uint32_t e2 = (uint32_t)((const uint8_t *)L->in2 - __arena_start) + n2;
        if (e2 > end) end = e2;
    }
    if (end > arena_hwm) arena_hwm = end;
    wr32(tx, n);
    wr32(tx + 4, 0);
    wr64(tx + 8, mn);
    wr64(tx + 16, mx);
    wr64(tx + 24, total);
    send_frame(T_RUN | 0x80u, seq, tx, 32);
}

static void cmd_stats(uint8_t seq, uint32_t len)
{
    if (len != 0) { send_error(E_BAD_LENGTH, T_STATS, seq, 0, "stats takes no payload"); return; }
    wr32(tx, ARENA_BYTES);
    wr32(tx + 4, arena_hwm);
    wr32(tx + 8, WSTORE_BYTES);
    wr32(tx + 12, wstore_hwm);
    wr32(tx + 16, (uint32_t)((uint8_t *)&__stack_top - (uint8_t *)&__stack_limit));
    wr32(tx + 20, stack_used_bytes());
    wr32(tx + 24, frames_ok);
    wr32(tx + 28, frames_err);
    send_frame(T_STATS | 0x80u, seq, tx, 32);
}

static void cmd_reset(uint8_t seq, const uint8_t *p, uint32_t len)
{
    if (len != 1 || p[0] > 1) { send_error(E_BAD_LENGTH, T_RESET, seq, 1, "reset needs u8 mode 0|1"); return; }
    layer_ok = 0;
    arena_hwm = wstore_hwm = 0;
    frames_ok = frames_err = 0;
    send_frame(T_RESET | 0x80u, seq, 0, 0);
    if (p[0] == 1) board_system_reset();
}

int main(void)
{
    board_init();
    for (;;) {
        int len = recv_frame();
        if (len < 0) continue;
        uint8_t type = rx[3], seq = rx[4];
        const uint8_t *p = rx + HEADER_BYTES;
        uint32_t n = (uint32_t)len;
        frames_ok++;
        switch (type) {
        case T_HELLO:
            if (n) send_error(E_BAD_LENGTH, type, seq, 0, "hello takes no payload");
            else cmd_hello(seq);
            break;
        case T_WRITE: cmd_write(seq, p, n); break;
        case T_READ: cmd_read(seq, p, n); break;
        case T_CONFIG: cmd_config(seq, p, n); break;
        case T_RUN: cmd_run(seq, p, n); break;
        case T_STATS: cmd_stats(seq, n); break;
        case T_RESET: cmd_reset(seq, p, n); break;
        case T_FILL: cmd_fill(seq, p, n); break;
        default: send_error(E_UNKNOWN_TYPE, type, seq, type, "unknown frame type"); break;
        }
    }
}
