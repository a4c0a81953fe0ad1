/* HIL serial protocol, version 1. Keep in sync with lightning_mcuprune/hil/protocol.py and docs/hil.md.
 *
 * Frame: 0xA5 0x5A | ver u8 | type u8 | seq u8 | len u16 LE | payload[len] | crc32 LE
 * The CRC-32 (IEEE, as zlib.crc32) covers ver..payload. len <= MAX_PAYLOAD.
 * Requests have type < 0x80; the answer to request T is T|0x80, or an ERROR frame (0xFF).
 * ERROR frames carry the request's sequence number, or 0 when the board could not read it: a header cut
 * short (E_TRUNCATED) or noise followed by an idle line (E_NOISE, request type NOISE_LINE_IDLE) means a request
 * was lost, and the host sends it again at once.
 */
#ifndef HIL_PROTO_H
#define HIL_PROTO_H

#ifndef PROTO_VERSION
#define PROTO_VERSION 1u   /* overridable only to test the host's version check */
#endif
#define FW_VERSION_MAJOR 1u
#define FW_VERSION_MINOR 1u
#define FW_VERSION_PATCH 0u

#define SYNC0 0xA5u
#define SYNC1 0x5Au
#define HEADER_BYTES 7u
#define CRC_BYTES 4u
#ifndef MAX_PAYLOAD
#define MAX_PAYLOAD 4096u
#endif

/* request types */
#define T_HELLO 0x01u
#define T_WRITE 0x02u   /* u8 region, u8[3] pad, u32 offset, data...       -> WRITE|0x80 (u32 bytes written) */
#define T_READ 0x03u    /* u8 region, u8[3] pad, u32 offset, u32 length      -> READ|0x80 (data) */
#define T_CONFIG 0x04u  /* layer config, CONFIG_BYTES                        -> CONFIG|0x80 (u32 arena end: bytes) */
#define T_RUN 0x05u     /* u32 repeats                                       -> RUN|0x80 (u32 n, u32 0, u64 min, u64 max, u64 total)
                         * A byte arriving between two repeats cancels the run (ERROR E_ABORTED) and starts the next frame. */
#define T_STATS 0x06u   /* -                                                 -> STATS|0x80 (see main.c) */
#define T_RESET 0x07u   /* u8 mode: 0 soft (state), 1 system reset           -> RESET|0x80 */
#define T_FILL 0x08u    /* u8 region, u8[3] pad, u32 offset, u32 length, u32 seed -> FILL|0x80 (u32 bytes) */
#define T_ERROR 0xFFu   /* u8 code, u8 request type, u16 detail, ascii message */

#define REGION_ARENA 0u
#define REGION_WEIGHTS 1u

/* error codes */
#define E_CRC 1u
#define E_TOO_LONG 2u
#define E_UNKNOWN_TYPE 3u
#define E_BAD_LENGTH 4u
#define E_TRUNCATED 5u
#define E_NOISE 6u         /* seq 0; request type 0: noise before a frame (that frame follows and is answered),
                            * NOISE_LINE_IDLE: the line went idle after noise (a request there was lost) */
#define NOISE_LINE_IDLE 0xFFu
#define E_VERSION 7u
#define E_RANGE 8u
#define E_BAD_CONFIG 9u
#define E_NO_LAYER 10u
#define E_ARENA 11u
#define E_WEIGHTS 12u
#define E_BAD_PARAMS 13u
#define E_ABORTED 14u      /* a RUN cancelled by a new frame (detail: repeats done) */

/* op types (names as in the resource model) */
#define OP_CONV2D 1u
#define OP_DEPTHWISE_CONV2D 2u
#define OP_POINTWISE_CONV2D 3u
#define OP_DENSE 4u
#define OP_MAX_POOL 5u
#define OP_AVG_POOL 6u
#define OP_GLOBAL_AVG_POOL 7u
#define OP_ADD 8u
#define OP_MUL 9u   /* elementwise or channel-wise (flags bit 0: in2 is 1x1xC) int8 multiply, TFLite Mul */
#define OP_LUT 10u  /* elementwise 256-entry int8 lookup table (sigmoid, hard-swish, ... ): out = w[in + 128] */
#define OP_LAST OP_LUT
#define FLAG_MUL_BROADCAST 1u

#define CONFIG_BYTES 64u

/* cycle counter kinds reported by HELLO */
#define COUNTER_DWT 1u      /* DWT->CYCCNT, core clock cycles */
#define COUNTER_SYSTICK 2u  /* SysTick at the core clock; on QEMU -icount it is instruction-count based */

#endif
