/* Vector table and reset handler: copy .data, zero .bss, paint the stack (for the stack-use report). */
#include <stdint.h>

#include "board.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_limit, __stack_top;
int main(void);
void SysTick_Handler(void);

#define STACK_PAINT 0x5AA5C33Cu

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end; dst++) *dst = 0;
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (dst = &__stack_limit; dst < (uint32_t *)(sp - 64u); dst++) *dst = STACK_PAINT;
    main();
    for (;;) {
    }
}

/* Any fault: reset the core, so the firmware keeps serving (the host sees a reconnect). */
void Fault_Handler(void)
{
    *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u;
    for (;;) {
    }
}

void Default_Handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVC */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
};

uint32_t stack_used_bytes(void)
{
    uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)((uint8_t *)&__stack_top - (uint8_t *)p);
}
