"""The target boards: the one registry every stage reads (board fit, arena budgets, `--board` choices).

No TensorFlow or numpy here, so the command line can offer the choices before any heavy import.
Memory: `ram_reserve_bytes` is the RAM the rest of the firmware takes, `flash_bytes` the flash an
application may use, `flash_reserve_bytes` the part of it the rest of the firmware takes. The Nano 33
BLE's reserves were measured by linking an empty sketch with its core (docs/arduino.md); the ESP32
ones are estimates (no Xtensa compiler is reachable here).
"""
from __future__ import annotations

from typing import Any

from embbert.core.errors import EmbBertError

KIB = 1024

BOARDS: tuple[dict[str, Any], ...] = (
    {"key": "nano33ble", "name": "Arduino Nano 33 BLE", "mhz": 64, "ram_bytes": 256 * KIB, "flash_bytes": 983040,
     "ram_reserve_bytes": 43_920, "flash_reserve_bytes": 95_204,
     "reserve_note": "flash: 983,040 B for the sketch (ArduinoCore-mbed boards.txt, nano33ble.upload.maximum_size; "
                     "the bootloader takes the first 64 KiB of 1 MiB), less 95,204 B that an empty sketch links "
                     "(Mbed OS core, Arduino API, newlib); RAM: 43,920 B of static RAM of that empty sketch (Mbed OS "
                     "with its 32 KiB main-thread stack, Arduino API, newlib), measured by linking with the core "
                     "(ArduinoCore-mbed 4.6.0, docs/arduino.md); the rest is the core's heap, of which it allocates "
                     "some at run time (USB serial), not measured without a board"},
    {"key": "esp32", "name": "ESP32", "mhz": 240, "ram_bytes": 320 * KIB, "flash_bytes": 4096 * KIB,
     "ram_reserve_bytes": 64 * KIB, "flash_reserve_bytes": 1024 * KIB,
     "reserve_note": "320 KiB usable static DRAM minus ~64 KiB for ESP-IDF/FreeRTOS (estimate); "
                     "bootloader, partition table and ESP-IDF ~1 MiB flash (estimate)"},
    {"key": "esp32s3", "name": "ESP32-S3", "mhz": 240, "ram_bytes": 512 * KIB, "flash_bytes": 8192 * KIB,
     "ram_reserve_bytes": 128 * KIB, "flash_reserve_bytes": 1024 * KIB,
     "reserve_note": "~128 KiB SRAM for ESP-IDF, caches and stacks, no PSRAM assumed (estimate); "
                     "bootloader, partition table and ESP-IDF ~1 MiB flash (estimate)"},
)
BOARD_KEYS = tuple(b["key"] for b in BOARDS)


def board(key: str) -> dict[str, Any]:
    """The registry entry of `key` (EmbBertError naming the choices otherwise)."""
    for b in BOARDS:
        if b["key"] == key:
            return b
    raise EmbBertError(f"unknown board {key!r} (choose from {', '.join(BOARD_KEYS)})")
