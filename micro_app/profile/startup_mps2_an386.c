/* Minimal start-up for the Arm MPS2 AN386 (Cortex-M4F) under qemu-system-arm: vector table,
 * .data copy, .bss clear, FPU on, C++ constructors, main(), semihosting exit. */
#include <stdint.h>
#include <string.h>

#include "profile_platform.h"

extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((section(".isr_vector"), used)) void (*const g_embbert_vectors[16])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMon */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

static void HexWord(char* out, uint32_t v) {
  for (int i = 7; i >= 0; --i, v >>= 4) out[i] = "0123456789abcdef"[v & 0xFu];
}

/* Called with the exception stack frame: says where the fault happened (pc, lr) and why (CFSR). */
void Fault_Report(const uint32_t* frame) {
  char msg[] = "embbert_profile: error: CPU fault pc=0x........ lr=0x........ cfsr=0x........\n";
  HexWord(msg + 39, frame[6]);
  HexWord(msg + 53, frame[5]);
  HexWord(msg + 69, *(volatile uint32_t*)0xE000ED28u);
  EmbBertProfileWrite(msg);
  EmbBertProfileExit(1);
}

__attribute__((naked)) void Fault_Handler(void) {
  __asm__ volatile(
      "tst lr, #4\n\t"
      "ite eq\n\t"
      "mrseq r0, msp\n\t"
      "mrsne r0, psp\n\t"
      "b Fault_Report\n");
}

void Reset_Handler(void) {
  memcpy(&__data_start, &__data_load, (size_t)((char*)&__data_end - (char*)&__data_start));
  memset(&__bss_start, 0, (size_t)((char*)&__bss_end - (char*)&__bss_start));
  /* CPACR: full access to CP10/CP11 (the FPU), before any floating-point instruction. */
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  __libc_init_array();
  EmbBertProfileExit(main());
}

/* newlib hooks the C library may reference; nothing here uses files or processes. __dso_handle is
 * what crtbegin.o (left out with -nostartfiles) would define for C++ static destructors. */
void* __dso_handle = 0;
void _init(void) {}
void _fini(void) {}
