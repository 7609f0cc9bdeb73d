/* EmbBERT latency profile: what the driver needs from the machine it runs on.
 *
 * One implementation per platform, each a separate file of this folder:
 *   platform_host.cc        a POSIX host: CLOCK_MONOTONIC nanoseconds, stdout;
 *   platform_mps2_an386.cc  the Arm MPS2 AN386 board (Cortex-M4) as qemu-system-arm emulates it:
 *                           CMSDK timer 0 at 25 MHz under `-icount shift=3` (5 instructions a tick),
 *                           semihosting output;
 *   platform_dwt.cc         a real Cortex-M3/M4/M7 board (e.g. the Nano 33 BLE): DWT cycle counter.
 * Each also defines tflite::GetCurrentTimeTicks() and tflite::ticks_per_second(), which TFLM's
 * MicroProfiler reads; linked before libtensorflow-microlite.a they take the place of TFLM's own
 * micro_time.cc. */
#ifndef EMBBERT_PROFILE_PLATFORM_H_
#define EMBBERT_PROFILE_PLATFORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start the time base (timer, cycle counter). Called once before anything else. */
void EmbBertProfilePlatformInit(void);
/* Write a NUL-terminated string (no newline added). */
void EmbBertProfileWrite(const char* s);
/* What one tick is, in one line (printed in the profile header). */
const char* EmbBertProfileTimeBase(void);
/* Optional check of the time base: ticks taken by a loop of a known number of instructions
 * (returns 0 and sets *instructions to 0 where there is nothing to check). */
uint32_t EmbBertProfileCalibrate(uint32_t* instructions);
/* End the program with this status (0: success). */
void EmbBertProfileExit(int status);

#ifdef __cplusplus
}
#endif

#endif /* EMBBERT_PROFILE_PLATFORM_H_ */
