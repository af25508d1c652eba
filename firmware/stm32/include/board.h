/*
 * STM32F405 registers the firmware touches (RM0090), as three-line helpers. No vendor HAL:
 * QEMU stubs RCC, so HAL clock-ready polls would never finish; on a board, the reset
 * clock (HSI 16 MHz) is used as it is. Every busy-wait has a bound.
 */
#ifndef ADAPTINF_BOARD_H
#define ADAPTINF_BOARD_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

/* RCC (RM0090 7.3): clocks for GPIOA and USART1 (ignored by QEMU, needed on silicon) */
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB2ENR REG(0x40023844u)
/* USART1 (RM0090 30.6), the first -serial of QEMU */
#define USART1_SR REG(0x40011000u)
#define USART1_DR REG(0x40011004u)
#define USART1_BRR REG(0x40011008u)
#define USART1_CR1 REG(0x4001100Cu)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_UE (1u << 13)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RE (1u << 2)
/* SysTick (ARMv7-M B3.3): counts the processor clock; under QEMU -icount: instructions */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
/* FPU access (ARMv7-M B3.2.20) */
#define SCB_CPACR REG(0xE000ED88u)

#define UART_SPIN_LIMIT 1000000u

static inline void uart_init(void)
{
    RCC_AHB1ENR |= 1u;        /* GPIOA */
    RCC_APB2ENR |= 1u << 4;   /* USART1 */
    USART1_BRR = 0x8B;        /* 115200 baud at 16 MHz HSI (QEMU ignores BRR) */
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

static inline void uart_put(uint8_t byte)
{
    for (uint32_t spin = 0; !(USART1_SR & USART_SR_TXE) && spin < UART_SPIN_LIMIT; spin++) {
    }
    USART1_DR = byte;
}

static inline int uart_get(uint8_t *byte)
{
    if (!(USART1_SR & USART_SR_RXNE)) {
        return 0;
    }
    *byte = (uint8_t)USART1_DR;
    return 1;
}

#endif
