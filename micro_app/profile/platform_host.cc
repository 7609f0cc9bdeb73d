/* EmbBERT latency profile, host platform (Linux/POSIX): ticks are CLOCK_MONOTONIC nanoseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "profile_platform.h"
#include "tensorflow/lite/micro/micro_time.h"

namespace tflite {

uint32_t ticks_per_second() { return 1000000000u; }

uint32_t GetCurrentTimeTicks() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  // Modulo 2^32: MicroProfiler subtracts two readings, exact for events under 4.29 s.
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000000000u +
                               static_cast<uint64_t>(ts.tv_nsec));
}

}  // namespace tflite

extern "C" {

void EmbBertProfilePlatformInit(void) {}

void EmbBertProfileWrite(const char* s) {
  fputs(s, stdout);
  fflush(stdout);
}

const char* EmbBertProfileTimeBase(void) {
  return "host CLOCK_MONOTONIC, 1 tick = 1 ns of wall time";
}

uint32_t EmbBertProfileCalibrate(uint32_t* instructions) {
  *instructions = 0;
  return 0;
}

void EmbBertProfileExit(int status) {
  fflush(stdout);
  exit(status);
}

}  // extern "C"
