// Test stand-in for the Arduino core's Arduino.h: declares exactly what the
// EmbBERT example sketch uses, so that the sketch compiles (not links) with the
// mbed core's flags in tests/test_micro_packages.py without the core.
#ifndef EMBBERT_TEST_ARDUINO_STUB_H_
#define EMBBERT_TEST_ARDUINO_STUB_H_

#include <stddef.h>
#include <stdint.h>

unsigned long millis(void);

class StubSerial {
 public:
  void begin(unsigned long baud);
  explicit operator bool();
  int available();
  int read();
  size_t print(const char* s);
  size_t print(unsigned long n);
  size_t print(double x, int digits);
  size_t println(const char* s);
  size_t println(unsigned long n);
};

extern StubSerial Serial;

#endif  // EMBBERT_TEST_ARDUINO_STUB_H_
