/* What main.c needs from a board: UART, cycle counter, reset. Implemented in board_mps2.c / board_stm32.c. */
#ifndef HIL_BOARD_H
#define HIL_BOARD_H
#include <stdint.h>

/* Given by the Makefile per target: BOARD_NAME, CORE_NAME, CLOCK_HZ, COUNTER_KIND, BYTE_TIMEOUT_MS */

void board_init(void);
void uart_putc(uint8_t c);
int uart_getc(void);          /* -1 if no byte is waiting */
void uart_flush(void);        /* wait until the last byte has left */
uint64_t cycles_now(void);    /* 64-bit cycle count (wrap-around of the hardware counter handled) */
void cycles_restart(void);    /* restart the counter so that a measurement starts at the same phase */
void board_system_reset(void);
uint32_t stack_used_bytes(void);  /* deepest stack use since reset (startup.c paints the stack) */

/* Cortex-M system registers shared by all boards */
#define REG32(a) (*(volatile uint32_t *)(a))
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CCR REG32(0xE000ED14u)
#define DEMCR REG32(0xE000EDFCu)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)

void cortexm_counter_init(void);

#endif
