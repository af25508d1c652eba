/*
 * STM32F405 registers the firmware touches (RM0090), as three-line helpers. No vendor HAL:
 * QEMU stubs RCC, so HAL clock-ready polls would never finish; on a board, the reset
 * clock (HSI 16 MHz) is used as it is. Every busy-wait has a bound.
 */
#ifndef ADAPTINF_BOARD_H
#define ADAPTINF_BOARD_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

/*
 * The serial port. Default: USART1 on PA9 (TX) / PA10 (RX), the first -serial of QEMU's
 * netduinoplus2. BOARD_NUCLEO_F446RE (make BOARD=nucleo-f446re): USART2 on PA2 / PA3, the
 * ST-LINK virtual COM port (/dev/ttyACM0). Both pins in alternate function 7 (RM0090 8.4,
 * datasheets' AF tables). QEMU stubs RCC and GPIO, so those writes are ignored there.
 */
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
#define RCC_APB2ENR REG(0x40023844u)
#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRL REG(0x40020020u)
#define GPIOA_AFRH REG(0x40020024u)
#if defined(BOARD_NUCLEO_F446RE)
#define USART_BASE 0x40004400u                        /* USART2 */
#define UART_CLOCK_ON() (RCC_APB1ENR |= 1u << 17)
#define UART_PINS_AF7() (GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4), \
                         GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8))
#else
#define USART_BASE 0x40011000u                        /* USART1 */
#define UART_CLOCK_ON() (RCC_APB2ENR |= 1u << 4)
#define UART_PINS_AF7() (GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18), \
                         GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4))
#endif
/* USART registers (RM0090 30.6) */
#define USART_SR REG(USART_BASE + 0x00u)
#define USART_DR REG(USART_BASE + 0x04u)
#define USART_BRR REG(USART_BASE + 0x08u)
#define USART_CR1 REG(USART_BASE + 0x0Cu)
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
    UART_CLOCK_ON();
    UART_PINS_AF7();
    USART_BRR = 0x8B;         /* 115200 baud at 16 MHz HSI: 16e6 / 115200 = 138.9 (QEMU ignores BRR) */
    USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

static inline void uart_put(uint8_t byte)
{
    for (uint32_t spin = 0; !(USART_SR & USART_SR_TXE) && spin < UART_SPIN_LIMIT; spin++) {
    }
    USART_DR = byte;
}

static inline int uart_get(uint8_t *byte)
{
    if (!(USART_SR & USART_SR_RXNE)) {
        return 0;
    }
    *byte = (uint8_t)USART_DR;
    return 1;
}

#endif
