/* EmbBERT latency profile on the Arm MPS2 AN386 board (Cortex-M4F) as qemu-system-arm emulates it.
 *
 * Time base: CMSDK APB timer 0 (0x40000000), a 32-bit down-counter clocked at the board's 25 MHz
 * peripheral clock. qemu runs with `-icount shift=3`: every guest instruction advances the
 * virtual clock by 2^3 = 8 ns, so one 40 ns timer tick is exactly 5 executed instructions. The
 * ticks are therefore an instruction count (resolution 5), not a cycle count: qemu models no
 * pipeline, wait states or memory latency. EmbBertProfileCalibrate() checks the ratio on a loop
 * of known length.
 * Output: Arm semihosting (SYS_WRITE0, SYS_EXIT), `-semihosting-config enable=on,target=native`. */
#include <stdint.h>

#include "profile_platform.h"
#include "tensorflow/lite/micro/micro_time.h"

namespace {

constexpr uintptr_t kTimer0 = 0x40000000u;  // CMSDK APB timer 0 on MPS2 AN385/AN386
volatile uint32_t* const kTimerCtrl = reinterpret_cast<volatile uint32_t*>(kTimer0 + 0x0);
volatile uint32_t* const kTimerValue = reinterpret_cast<volatile uint32_t*>(kTimer0 + 0x4);
volatile uint32_t* const kTimerReload = reinterpret_cast<volatile uint32_t*>(kTimer0 + 0x8);

constexpr int kSysWrite0 = 0x04;
constexpr int kSysExit = 0x18;
constexpr uint32_t kApplicationExit = 0x20026;  // ADP_Stopped_ApplicationExit: qemu exits with 0
constexpr uint32_t kRunTimeError = 0x20023;     // ADP_Stopped_RunTimeErrorUnknown: qemu exits with 1

int Semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

inline uint32_t Ticks() { return 0xFFFFFFFFu - *kTimerValue; }

}  // namespace

namespace tflite {

// 25 MHz timer, but under -icount shift=3 a tick is 5 instructions, not 40 ns of a real chip.
uint32_t ticks_per_second() { return 25000000u; }

uint32_t GetCurrentTimeTicks() { return Ticks(); }

}  // namespace tflite

extern "C" {

void EmbBertProfilePlatformInit(void) {
  *kTimerCtrl = 0;
  *kTimerReload = 0xFFFFFFFFu;
  *kTimerValue = 0xFFFFFFFFu;
  *kTimerCtrl = 1;  // enable, no interrupt
}

void EmbBertProfileWrite(const char* s) { Semihost(kSysWrite0, s); }

const char* EmbBertProfileTimeBase(void) {
  return "qemu mps2-an386 -icount shift=3, CMSDK timer at 25 MHz: 1 tick = 5 instructions";
}

uint32_t EmbBertProfileCalibrate(uint32_t* instructions) {
  // subs + bne: two instructions an iteration.
  uint32_t n = 1000000u;
  *instructions = 2u * n;
  const uint32_t start = Ticks();
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b\n" : "+r"(n) : : "cc");
  return Ticks() - start;
}

void EmbBertProfileExit(int status) {
  Semihost(kSysExit, reinterpret_cast<const void*>(status == 0 ? kApplicationExit : kRunTimeError));
  for (;;) {
  }
}

}  // extern "C"
