/* Arm MPS2 (AN386 Cortex-M4, AN500 Cortex-M7) as emulated by QEMU: CMSDK APB UART0 at 0x40004000. */
#include "board.h"

#define UART0 0x40004000u
#define UART_DATA REG32(UART0 + 0x00u)
#define UART_STATE REG32(UART0 + 0x04u)   /* bit0 TX full, bit1 RX full, bit2/3 overrun */
#define UART_CTRL REG32(UART0 + 0x08u)    /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV REG32(UART0 + 0x10u)

void board_init(void)
{
    UART_BAUDDIV = CLOCK_HZ / 115200u;    /* QEMU ignores the rate but needs a divider >= 16 */
    UART_CTRL = 3u;
    cortexm_counter_init();
}

void uart_putc(uint8_t c)
{
    while (UART_STATE & 1u) {
    }
    UART_DATA = c;
}

int uart_getc(void)
{
    uint32_t st = UART_STATE;
    if (st & 0xCu) UART_STATE = 0xCu;     /* clear overrun flags */
    if (st & 2u) return (int)(UART_DATA & 0xFFu);
    return -1;
}

void uart_flush(void)
{
    while (UART_STATE & 1u) {
    }
}
