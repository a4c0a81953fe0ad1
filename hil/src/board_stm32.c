/* STM32F446RE (NUCLEO-F446RE: USART2 PA2/PA3, 180 MHz) and STM32F767ZI (NUCLEO-F767ZI: USART3 PD8/PD9,
 * 216 MHz). Register-level: HSI 16 MHz -> PLL, over-drive, flash wait states, the ST-Link VCP UART at
 * 115200 8N1. UNTESTED ON HARDWARE (built in CI only). */
#include "board.h"

#define RCC 0x40023800u
#define RCC_CR REG32(RCC + 0x00u)
#define RCC_PLLCFGR REG32(RCC + 0x04u)
#define RCC_CFGR REG32(RCC + 0x08u)
#define RCC_AHB1ENR REG32(RCC + 0x30u)
#define RCC_APB1ENR REG32(RCC + 0x40u)
#define PWR 0x40007000u
#define PWR_CR REG32(PWR + 0x00u)
#define PWR_CSR REG32(PWR + 0x04u)
#define FLASH_ACR REG32(0x40023C00u)

#define GPIO_MODER(g) REG32((g) + 0x00u)
#define GPIO_OSPEEDR(g) REG32((g) + 0x08u)
#define GPIO_AFR(g, i) REG32((g) + 0x20u + 4u * (i))

#if defined(STM32F446)
#define GPIO 0x40020000u      /* GPIOA */
#define GPIO_EN (1u << 0)
#define PIN_TX 2u
#define PIN_RX 3u
#define USART 0x40004400u     /* USART2 */
#define USART_EN (1u << 17)
#define PLL_N 180u
#define FLASH_WS 5u
#define FLASH_EXTRA ((1u << 8) | (1u << 9) | (1u << 10))   /* prefetch, I-cache, D-cache */
#define USART_SR REG32(USART + 0x00u)
#define USART_DR REG32(USART + 0x04u)
#define USART_BRR REG32(USART + 0x08u)
#define USART_CR1 REG32(USART + 0x0Cu)
#define CR1_VALUE ((1u << 13) | (1u << 3) | (1u << 2))       /* UE, TE, RE */
#define ST_RXNE (USART_SR & (1u << 5))
#define ST_TXE (USART_SR & (1u << 7))
#define ST_TC (USART_SR & (1u << 6))
#define ST_ORE (USART_SR & (1u << 3))
#define CLEAR_ORE() ((void)USART_SR, (void)USART_DR)
#define RX_DATA USART_DR
#define TX_DATA USART_DR
#elif defined(STM32F767)
#define GPIO 0x40020C00u      /* GPIOD */
#define GPIO_EN (1u << 3)
#define PIN_TX 8u
#define PIN_RX 9u
#define USART 0x40004800u     /* USART3 */
#define USART_EN (1u << 18)
#define PLL_N 216u
#define FLASH_WS 7u
#define FLASH_EXTRA ((1u << 8) | (1u << 9))   /* prefetch, ART accelerator */
#define USART_CR1 REG32(USART + 0x00u)
#define USART_BRR REG32(USART + 0x0Cu)
#define USART_ISR REG32(USART + 0x1Cu)
#define USART_ICR REG32(USART + 0x20u)
#define USART_RDR REG32(USART + 0x24u)
#define USART_TDR REG32(USART + 0x28u)
#define CR1_VALUE ((1u << 0) | (1u << 3) | (1u << 2))        /* UE, TE, RE */
#define ST_RXNE (USART_ISR & (1u << 5))
#define ST_TXE (USART_ISR & (1u << 7))
#define ST_TC (USART_ISR & (1u << 6))
#define ST_ORE (USART_ISR & (1u << 3))
#define CLEAR_ORE() (USART_ICR = (1u << 3))
#define RX_DATA USART_RDR
#define TX_DATA USART_TDR
#else
#error "define STM32F446 or STM32F767"
#endif

#define APB1_HZ (CLOCK_HZ / 4u)

static void clocks_init(void)
{
    RCC_CR |= 1u;                                  /* HSI on */
    while (!(RCC_CR & (1u << 1))) {
    }
    RCC_APB1ENR |= 1u << 28;                       /* PWR clock */
    PWR_CR |= 3u << 14;                            /* voltage scale 1 */
    /* PLL from HSI: 16 MHz / M=8 = 2 MHz, * N, / P=2 -> CLOCK_HZ; Q=9 */
    RCC_PLLCFGR = 8u | (PLL_N << 6) | (0u << 16) | (0u << 22) | (9u << 24) | (2u << 28);
    RCC_CR |= 1u << 24;                            /* PLL on */
    while (!(RCC_CR & (1u << 25))) {
    }
    PWR_CR |= 1u << 16;                            /* over-drive enable */
    while (!(PWR_CSR & (1u << 16))) {
    }
    PWR_CR |= 1u << 17;                            /* over-drive switch */
    while (!(PWR_CSR & (1u << 17))) {
    }
    FLASH_ACR = FLASH_WS | FLASH_EXTRA;
    while ((FLASH_ACR & 0xFu) != FLASH_WS) {
    }
    RCC_CFGR = (5u << 10) | (4u << 13);            /* AHB /1, APB1 /4, APB2 /2 */
    RCC_CFGR |= 2u;                                /* SYSCLK = PLL */
    while (((RCC_CFGR >> 2) & 3u) != 2u) {
    }
}

static void uart_init(void)
{
    RCC_AHB1ENR |= GPIO_EN;
    RCC_APB1ENR |= USART_EN;
    (void)RCC_APB1ENR;
    const uint32_t pins[2] = {PIN_TX, PIN_RX};
    for (int i = 0; i < 2; i++) {
        uint32_t p = pins[i];
        GPIO_MODER(GPIO) = (GPIO_MODER(GPIO) & ~(3u << (2 * p))) | (2u << (2 * p));   /* alternate function */
        GPIO_OSPEEDR(GPIO) |= 2u << (2 * p);
        GPIO_AFR(GPIO, p / 8u) = (GPIO_AFR(GPIO, p / 8u) & ~(0xFu << (4 * (p % 8u)))) | (7u << (4 * (p % 8u)));
    }
    USART_BRR = (APB1_HZ + 115200u / 2u) / 115200u;
    USART_CR1 = CR1_VALUE;
}

void board_init(void)
{
    clocks_init();
    uart_init();
    cortexm_counter_init();
}

void uart_putc(uint8_t c)
{
    while (!ST_TXE) {
    }
    TX_DATA = c;
}

int uart_getc(void)
{
    if (ST_ORE) CLEAR_ORE();
    if (ST_RXNE) return (int)(RX_DATA & 0xFFu);
    return -1;
}

void uart_flush(void)
{
    while (!ST_TC) {
    }
}
