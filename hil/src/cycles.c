/* 64-bit cycle counter for Cortex-M.
 * COUNTER_DWT:     DWT->CYCCNT (32 bit); the SysTick interrupt (every 2^24 cycles) counts its wraps.
 * COUNTER_SYSTICK: SysTick (24 bit, core clock) and an interrupt that adds 2^24 per wrap. Under QEMU
 *                  -icount the virtual clock, hence SysTick, advances with the instruction count. */
#include "board.h"
#include "proto.h"

#define ST_RELOAD 0x00FFFFFFu
#define ICSR_PENDSTSET (1u << 26)

static inline uint32_t irq_save(void)
{
    uint32_t p;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(p)::"memory");
    return p;
}
static inline void irq_restore(uint32_t p) { __asm volatile("msr primask, %0" ::"r"(p) : "memory"); }

static volatile uint64_t hi;      /* SYSTICK: cycles of completed wraps. DWT: wraps of CYCCNT << 32 */
static volatile uint32_t dwt_last;

void SysTick_Handler(void)
{
#if COUNTER_KIND == COUNTER_DWT
    uint32_t c = DWT_CYCCNT;
    if (c < dwt_last) hi += 1ull << 32;
    dwt_last = c;
#else
    hi += (uint64_t)ST_RELOAD + 1u;
#endif
}

void cortexm_counter_init(void)
{
#if COUNTER_KIND == COUNTER_DWT
    DEMCR |= 1u << 24;          /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;      /* unlock (Cortex-M7) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;             /* CYCCNTENA */
#endif
    SYST_RVR = ST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u;              /* core clock, interrupt, enable */
}

void cycles_restart(void)
{
    uint32_t p = irq_save();
    SYST_CSR = 0;
    SYST_CVR = 0;
    SCB_ICSR = 1u << 25;        /* PENDSTCLR */
    hi = 0;
#if COUNTER_KIND == COUNTER_DWT
    DWT_CYCCNT = 0;
    dwt_last = 0;
#endif
    SYST_CSR = 7u;
    while (SYST_CVR == 0) {     /* the first clock loads the reload value (no wrap) */
    }
    irq_restore(p);
}

uint64_t cycles_now(void)
{
    uint32_t p = irq_save();
    uint64_t r;
#if COUNTER_KIND == COUNTER_DWT
    uint32_t c = DWT_CYCCNT;
    uint64_t h = hi;
    if (c < dwt_last) h += 1ull << 32;
    r = h | c;
#else
    uint32_t v = SYST_CVR;
    uint64_t h = hi;
    if (SCB_ICSR & ICSR_PENDSTSET) {   /* wrapped, interrupt not taken yet */
        v = SYST_CVR;
        h += (uint64_t)ST_RELOAD + 1u;
    }
    r = h + (ST_RELOAD - v);
#endif
    irq_restore(p);
    return r;
}

void board_system_reset(void)
{
    uart_flush();
    SCB_AIRCR = 0x05FA0004u;    /* SYSRESETREQ */
    for (;;) {
    }
}
