/* Vector table and reset: copy .data, clear .bss, enable the FPU, run main. */
#include <stdint.h>

#include "board.h"

extern uint32_t _stack_top, _data_load, _data_start, _data_end, _bss_start, _bss_end;
int main(void);
void reset_handler(void);
void systick_handler(void);

static void default_handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_stack_top), reset_handler, default_handler, default_handler,
    default_handler, default_handler, default_handler, 0, 0, 0, 0, default_handler,
    default_handler, 0, default_handler, systick_handler,
};

void reset_handler(void)
{
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) {
        *dst++ = *src++;
    }
    for (dst = &_bss_start; dst < &_bss_end; dst++) {
        *dst = 0;
    }
    SCB_CPACR |= 0xFu << 20;   /* CP10, CP11: full access to the FPU */
    __asm volatile("dsb\n isb");
    main();
    for (;;) {
    }
}
