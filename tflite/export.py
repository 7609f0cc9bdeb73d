"""`embbert export`: the TFLM application of a run directory, as a package a board user builds.

From a run directory (config.json, model_int8.tflite + the sha256 `embbert convert`
recorded, arena_report.json, the tokenizer files) `generated_sources` makes:

- model_data.h / model_data.cc   the int8 FlatBuffer as an aligned C array
- model_settings.h                L, V, labels, quantisation, arena size, special ids
- embbert_ops.h / embbert_ops.c   registers exactly the model's operators through the
                                  C interface of micro_app/src/embbert_tflm.h
- embbert_tokenizer_tables.h/.c   byte ids, BPE merges, normalisation and
                                  character-class tables for micro_app/src/embbert_tokenizer.c

and `package_files` wraps them, with the hand-written micro_app/ sources, into one
target: `sources` (those seven files), `arduino` (library), `platformio` (library +
example project), `esp-idf` (project + component), `cmake` (host project against a
TFLM tree). `write_package` writes a whole package atomically (temporary sibling
folder, fsync, one rename; `embbert.core.files.write_folder`), with the user's umask, into a folder
that is new, empty or an earlier export (its manifest), unless forced. Every generated file says so in
its first lines. No TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embbert.core import files as files_, layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.micro_app import ROOT as MICRO_APP  # the hand-written sources, wherever installed
from embbert.datasets.tokenizer import (
    CLS_ID, GENERATED_HEADER, MASK_ID, MERGES_FILE, PAD_ID, SEP_ID, UNK_ID, VOCAB_FILE, build_tokenizer_tables,
    tokenizer_sources,
)
from embbert.tflite.graph import read_graph


# --------------------------------------------------------------------------
# FlatBuffer reading
# --------------------------------------------------------------------------
@dataclass
class ModelInfo:
    ops: list[str]  # builtin operator names, in first-use order
    inputs: dict[str, dict[str, Any]]  # "token_ids"/"segment_ids" -> details
    output: dict[str, Any]


def read_model_info(data: bytes) -> ModelInfo:
    """Operators, named inputs (with their position) and output of a .tflite FlatBuffer."""
    graph = read_graph(data)
    custom = [op.name for op in graph.ops if op.custom]
    if custom:
        raise EmbBertError(f"the model uses a custom operator ({custom[0]}); only builtin TFLM operators are supported")

    def tensor(index: int) -> dict[str, Any]:
        t = graph.tensors[index]
        return {"index": index, "name": t.name, "shape": list(t.shape), "type": t.dtype,
                "scale": t.scale[0] if t.scale else 0.0, "zero_point": t.zero_point[0] if t.zero_point else 0}

    by_role: dict[str, dict[str, Any]] = {}
    for role in ("token_ids", "segment_ids"):
        position = graph.input_index(role)  # by name, never by order; the C side then uses the position
        by_role[role] = {**tensor(graph.inputs[position]), "position": position}
    if len(graph.outputs) != 1:
        raise EmbBertError("the model must have exactly one output (the logits)")
    return ModelInfo(ops=graph.op_names, inputs=by_role, output=tensor(graph.outputs[0]))


def resolver_methods() -> dict[str, str]:
    """Builtin operator -> `MicroMutableOpResolver` method, from the table in micro_app/src/embbert_tflm.cc (its
    owner: `EMBBERT_TFLM_OP(name, Method)`)."""
    shim = _hand_written("src/embbert_tflm.cc")
    return {name.upper(): method for name, method in re.findall(r"^EMBBERT_TFLM_OP\((\w+), (Add\w+)\)$", shim, re.M)}


def supported_ops() -> dict[str, str]:
    """Builtin operator name -> registration function, as declared in micro_app/src/embbert_tflm.h (its owner)."""
    header = _hand_written("src/embbert_tflm.h")
    return {fn.upper(): f"embbert_tflm_add_{fn}" for fn in re.findall(r"^int embbert_tflm_add_(\w+)\(void\);", header, re.M)}


# --------------------------------------------------------------------------
# Model sources
# --------------------------------------------------------------------------
def model_data_sources(data: bytes, source: str) -> tuple[str, str]:
    hdr = GENERATED_HEADER.format(source=source)
    h = hdr + """#ifndef EMBBERT_MODEL_DATA_H_
#define EMBBERT_MODEL_DATA_H_

#ifdef __cplusplus
extern "C" {
#endif

// The int8 TFLite FlatBuffer, byte for byte (flash, 16-byte aligned).
extern const unsigned char g_embbert_model_data[];
extern const int g_embbert_model_data_len;

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // EMBBERT_MODEL_DATA_H_
"""
    lines = []
    for i in range(0, len(data), 16):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    cc = hdr + '#include "model_data.h"\n\n'
    cc += "alignas(16) const unsigned char g_embbert_model_data[] = {\n" + "\n".join(lines) + "\n};\n"
    cc += f"const int g_embbert_model_data_len = {len(data)};\n"
    return h, cc


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "backslashreplace").decode() + '"'


def model_settings_source(config: EmbBertConfig, info: ModelInfo, arena: dict[str, Any],
                          vocab_size: int, source: str, arena_bytes: int | None = None) -> str:
    """model_settings.h; the arena is `arena_bytes` (default: the report's recommended size), rounded up to 16."""
    tok, seg, out = info.inputs["token_ids"], info.inputs["segment_ids"], info.output
    L = config.max_length
    for role, t in (("token_ids", tok), ("segment_ids", seg)):
        if t["type"] != "int32":
            raise EmbBertError(f"input {role} must be int32, the model has {t['type']}")
        if t["shape"] and t["shape"][-1] != L:
            raise EmbBertError(f"input {role} has shape {t['shape']}, config max_length is {L}")
    if out["type"] != "int8":
        raise EmbBertError(f"the output must be int8 (full-int8 model), the model has {out['type']}")
    if out["shape"] and out["shape"][-1] != config.num_labels:
        raise EmbBertError(f"output shape {out['shape']} does not match {config.num_labels} labels")
    names = list(config.label_names) or ([f"label_{i}" for i in range(config.num_labels)]
                                         if config.num_labels > 1 else ["score"])
    if len(names) != config.num_labels:
        raise EmbBertError(f"config has {len(names)} label names for {config.num_labels} labels")
    chosen = int(arena["recommended_arena_bytes"]) if arena_bytes is None else int(arena_bytes)
    host = host_arena_bytes(arena, chosen)
    arena_bytes, host = (chosen + 15) // 16 * 16, (host + 15) // 16 * 16
    extra = ", ".join(f"{k}={arena[k]}" for k in ("min_arena_bytes", "pointer_savings_bytes", "margin_bytes",
                                                  "model_bytes") if k in arena)
    origin = "--arena-bytes" if chosen != int(arena["recommended_arena_bytes"]) else "recommended_arena_bytes"
    label_list = ",\n    ".join(_c_string(n) for n in names)
    return GENERATED_HEADER.format(source=source) + f"""#ifndef EMBBERT_MODEL_SETTINGS_H_
#define EMBBERT_MODEL_SETTINGS_H_

#include <stdint.h>

/* Usable from C and C++. */
enum {{
  kEmbBertMaxLength = {L},
  kEmbBertVocabSize = {vocab_size},
  kEmbBertNumLabels = {config.num_labels},
  kEmbBertIsRegression = {1 if config.num_labels == 1 else 0},
  /* {origin}={chosen}; arena_report.json: recommended_arena_bytes={arena['recommended_arena_bytes']}
   * (a 32-bit board: includes its margin), {extra} */
#if !defined(UINTPTR_MAX) || UINTPTR_MAX > 0xFFFFFFFFu
  /* a 64-bit host build: TFLM's structs hold 8-byte pointers there (host_arena_bytes) */
  kEmbBertTensorArenaSize = {host},
#else
  kEmbBertTensorArenaSize = {arena_bytes},
#endif
  kEmbBertPadId = {PAD_ID},
  kEmbBertUnkId = {UNK_ID},
  kEmbBertClsId = {CLS_ID},
  kEmbBertMaskId = {MASK_ID},
  kEmbBertSepId = {SEP_ID},
  /* position of each input in the subgraph's input list */
  kEmbBertTokenIdsInput = {tok['position']},
  kEmbBertSegmentIdsInput = {seg['position']}
}};

/* input quantisation (int32 ids: not quantised, scale 0) */
static const float kEmbBertTokenIdsScale = {tok['scale']!r}f;
static const int kEmbBertTokenIdsZeroPoint = {tok['zero_point']};
static const float kEmbBertSegmentIdsScale = {seg['scale']!r}f;
static const int kEmbBertSegmentIdsZeroPoint = {seg['zero_point']};
/* int8 output: real = scale * (q - zero_point) */
static const float kEmbBertOutputScale = {out['scale']!r}f;
static const int kEmbBertOutputZeroPoint = {out['zero_point']};

static const char* const kEmbBertLabelNames[kEmbBertNumLabels] = {{
    {label_list}}};

#endif /* EMBBERT_MODEL_SETTINGS_H_ */
"""


def ops_sources(info: ModelInfo, source: str) -> tuple[str, str]:
    """embbert_ops.h/.c: `embbert_register_ops()` registers exactly the model's operators."""
    known = supported_ops()
    missing = [op for op in info.ops if op not in known]
    if missing:
        raise EmbBertError(f"the model uses {', '.join(missing)}, which micro_app/src/embbert_tflm.h does not register; "
                           f"supported: {', '.join(sorted(known))}")
    hdr = GENERATED_HEADER.format(source=source)
    h = hdr + f"""#ifndef EMBBERT_OPS_H_
#define EMBBERT_OPS_H_

#ifdef __cplusplus
extern "C" {{
#endif

/* The {len(info.ops)} builtin operators the FlatBuffer uses. */
enum {{ kEmbBertNumOps = {len(info.ops)} }};

/* Registers them with the TFLM interpreter of embbert_tflm.h; 0 on success. */
int embbert_register_ops(void);

#ifdef __cplusplus
}}  /* extern "C" */
#endif

#endif /* EMBBERT_OPS_H_ */
"""
    calls = "\n".join(f"  if ({known[op]}() != 0) return -1; /* {op} */" for op in info.ops)
    c = hdr + f"""#include "embbert_ops.h"

#include "embbert_tflm.h"

int embbert_register_ops(void) {{
{calls}
  return 0;
}}
"""
    return h, c


# --------------------------------------------------------------------------
# Inputs: checked before anything is written
# --------------------------------------------------------------------------


TARGETS = ("sources", "arduino", "platformio", "esp-idf", "cmake")
MANIFEST = "embbert_export.json"
LIBRARY_NAME = "EmbBERT"
ESP_TFLITE_MICRO = "~1.4.0"  # espressif/esp-tflite-micro 1.4.x: needs ESP-IDF >= 5.1, has BATCH_MATMUL
#: hand-written sources every package carries (micro_app/src), besides the generated ones
CORE_SOURCES = ("embbert_tokenizer.h", "embbert_tokenizer.c", "embbert_postprocess.h", "embbert_postprocess.c",
                "embbert_classifier.h", "embbert_classifier.c")
#: the C interface over TFLM's C++ API: compiled with TFLM (C++17). In the Arduino package it is not there: the
#: precompiled TFLM library made by micro_app/tools/tflm_arduino_library.py carries it.
TFLM_SHIM = ("embbert_tflm.h", "embbert_tflm.cc")


def _recorded_sha256(run_dir: Path) -> str:
    path = run_dir / layout.INT8_SHA256
    if not path.is_file():
        raise EmbBertError(f"{path}: missing (no hash recorded at conversion); re-run `embbert convert {run_dir}`")
    fields = path.read_text(encoding="utf-8", errors="replace").split()
    if not fields or len(fields[0]) != 64 or any(c not in "0123456789abcdef" for c in fields[0].lower()):
        raise EmbBertError(f"{path}: not a sha256 line; re-run `embbert convert {run_dir}`")
    return fields[0].lower()


def _read_arena_report(arena_path: Path, model_len: int, arena_bytes: int | None) -> tuple[dict[str, Any], int]:
    """The report, and the arena to export for a 32-bit board: refused below the board's minimum (the
    measured host minimum less the derived 32-bit saving, `arena.pointer_savings`)."""
    try:
        arena = json.loads(arena_path.read_text(encoding="utf-8"))
        recommended, minimum = int(arena["recommended_arena_bytes"]), int(arena["min_arena_bytes"])
        savings = int(arena.get("pointer_savings_bytes", 0))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise EmbBertError(f"{arena_path}: no recommended_arena_bytes / min_arena_bytes; "
                           f"re-run `embbert check {arena_path.parent} --arena`") from None
    if "model_bytes" in arena and arena["model_bytes"] != model_len:
        raise EmbBertError(f"{arena_path}: measured a model of {arena['model_bytes']} bytes, {layout.INT8_MODEL} has "
                           f"{model_len}; re-run `embbert check {arena_path.parent} --arena`")
    if minimum < 16 or not 0 <= savings < minimum:
        raise EmbBertError(f"{arena_path}: min_arena_bytes {minimum} is not a measured TFLM arena; "
                           f"re-run `embbert check {arena_path.parent} --arena`")
    chosen = recommended if arena_bytes is None else int(arena_bytes)
    what = "recommended_arena_bytes in the report" if arena_bytes is None else "--arena-bytes"
    board_minimum = minimum - savings
    if chosen < board_minimum:
        where = f"measured on the host, less {savings} bytes for 32-bit pointers" if savings else "measured"
        raise EmbBertError(f"{what} is {chosen} bytes, below the minimum TFLM arena of {board_minimum} bytes ({where}; "
                           f"{arena_path}): AllocateTensors() would fail on the device")
    return arena, chosen


def host_arena_bytes(arena: dict[str, Any], chosen: int) -> int:
    """The arena of a 64-bit host build of the exported app: never below the measured host minimum."""
    if chosen == int(arena["recommended_arena_bytes"]):
        return int(arena.get("host_arena_bytes", chosen))
    return max(chosen, int(arena["min_arena_bytes"]))  # --arena-bytes: the board's figure, raised to the host's minimum


def generated_sources(run_dir: str | os.PathLike, arena_bytes: int | None = None) -> tuple[dict[str, str], dict]:
    """The seven generated files of RUN_DIR (name -> text) and facts for the manifest. Writes nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory)")
    config = EmbBertConfig.load(run_dir)
    model_path, arena_path = run_dir / layout.INT8_MODEL, run_dir / layout.ARENA_JSON
    if not model_path.is_file():
        raise EmbBertError(f"{model_path}: missing; run `embbert convert {run_dir}` first")
    if not arena_path.is_file():
        raise EmbBertError(f"{arena_path}: missing; run `embbert convert {run_dir}` (or `embbert check {run_dir} "
                           "--arena`) first")
    data = model_path.read_bytes()
    recorded = _recorded_sha256(run_dir)
    digest = hashlib.sha256(data).hexdigest()
    if digest != recorded:
        raise EmbBertError(f"{model_path}: sha256 {digest[:16]}... differs from the hash recorded at conversion "
                           f"({recorded[:16]}...); the model changed after `embbert convert`: re-run `embbert convert {run_dir}`")
    arena, chosen = _read_arena_report(arena_path, len(data), arena_bytes)
    tok_dir = config.tokenizer_dir(run_dir)
    info = read_model_info(data)
    tables = build_tokenizer_tables(tok_dir)
    if tables.vocab_size > config.model.vocab_size:
        # A smaller tokenizer is fine (a small corpus may not fill the preset's table: those rows are unused).
        raise EmbBertError(f"tokenizer has {tables.vocab_size} ids, more than the model's {config.model.vocab_size}")
    source = f"{run_dir.name}/{layout.INT8_MODEL}"
    files: dict[str, str] = {}
    files["model_data.h"], files["model_data.cc"] = model_data_sources(data, source)
    files["model_settings.h"] = model_settings_source(config, info, arena, tables.vocab_size, source, chosen)
    files["embbert_ops.h"], files["embbert_ops.c"] = ops_sources(info, source)
    files["embbert_tokenizer_tables.h"], files["embbert_tokenizer_tables.c"] = tokenizer_sources(
        tables, f"{tok_dir.name}/ ({VOCAB_FILE}, {MERGES_FILE})")
    facts = {"run": run_dir.name, "task": config.task, "preset": config.preset, "max_length": config.max_length,
             "labels": list(config.label_names), "model_file": layout.INT8_MODEL, "model_bytes": len(data),
             "model_sha256": digest, "ops": info.ops, "min_arena_bytes": int(arena["min_arena_bytes"]),
             "tensor_arena_bytes": (chosen + 15) // 16 * 16}
    return files, facts


# --------------------------------------------------------------------------
# Packages: relative path -> bytes
# --------------------------------------------------------------------------
def _hand_written(rel: str) -> str:
    path = MICRO_APP / rel
    if not path.is_file():
        raise EmbBertError(f"{path}: missing (micro_app/ ships with the package as embbert.micro_app; "
                           "reinstall embbert-micro)")
    return path.read_text(encoding="utf-8")


def _hash_comment(prefix: str, source: str) -> str:
    return (f"{prefix} GENERATED by `embbert export` from {source}.\n"
            f"{prefix} Do not edit by hand: re-run `embbert export` instead.\n")


def _core(generated: dict[str, str], cpp_ext: str = ".cc", shim: bool = True) -> dict[str, str]:
    """micro_app/src + the generated files, C++ files renamed to `cpp_ext`; the TFLM shim unless `shim` is False."""
    out = {}
    for name in CORE_SOURCES + (TFLM_SHIM if shim else ()):
        out[name] = _hand_written(f"src/{name}")
    out.update(generated)
    return {(n[:-3] + cpp_ext if n.endswith(".cc") else n): t for n, t in out.items()}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("embbert-micro")
    except Exception:  # noqa: BLE001 - not installed (run from a checkout): the pyproject version
        return "0.1.0"


def _describe(facts: dict) -> str:
    task = facts["task"] or "text classification"
    return (f"{task}, {facts['preset']} preset, L={facts['max_length']}, "
            f"{len(facts['labels']) or 'regression'} labels")


#: the Arduino library made by micro_app/tools/tflm_arduino_library.py: TFLM + the C shim, precompiled
TFLM_LIBRARY = "EmbBERT_TFLM"
#: the Arduino platforms the precompiled TFLM library is built for (the Nano 33 BLE's mbed core)
ARDUINO_ARCHITECTURES = "mbed_nano,mbed"


def _arduino_package(generated: dict[str, str], facts: dict, source: str) -> dict[str, str]:
    props = _hash_comment("#", source) + "\n".join([
        f"name={LIBRARY_NAME}",
        f"version={_version()}",
        "author=EmbBERT-Micro",
        "maintainer=EmbBERT-Micro",
        f"sentence=EmbBERT text classifier on TensorFlow Lite Micro ({_describe(facts)}).",
        (f"paragraph=On-device tokenizer and full-int8 model ({facts['model_bytes']} bytes of flash, tensor arena "
         f"{facts['tensor_arena_bytes']} bytes of RAM), exported by embbert export. Needs the precompiled "
         f"{TFLM_LIBRARY} library made by micro_app/tools/tflm_arduino_library.py (see docs/arduino.md)."),
        "category=Data Processing",
        "url=https://arxiv.org/abs/2502.10001",
        f"architectures={ARDUINO_ARCHITECTURES}",
        f"depends={TFLM_LIBRARY}",
        f"includes={LIBRARY_NAME}.h",
    ]) + "\n"
    files = {"library.properties": props, f"src/{LIBRARY_NAME}.h": _hand_written("arduino/EmbBERT.h")}
    files.update({f"src/{n}": t for n, t in _core(generated, ".cpp", shim=False).items()})
    files["examples/EmbBertClassifier/EmbBertClassifier.ino"] = _hand_written(
        "arduino/EmbBertClassifier/EmbBertClassifier.ino")
    files["README.md"] = _readme("Arduino library", facts, source, [
        f"Install: this folder as ~/Arduino/libraries/{LIBRARY_NAME}, and the precompiled TensorFlow Lite Micro "
        f"library {TFLM_LIBRARY} (TFLM with BATCH_MATMUL and CMSIS-NN for the Cortex-M4F, built with C++17 "
        f"by micro_app/tools/tflm_arduino_library.py, docs/arduino.md) as ~/Arduino/libraries/{TFLM_LIBRARY}.",
        "The sketch and this library are plain C / C++14: they build with the core's own flags.",
        "Build and flash the example (Nano 33 BLE, Arduino IDE 2 or arduino-cli):",
        "    arduino-cli compile --fqbn arduino:mbed_nano:nano33ble examples/EmbBertClassifier",
        "    arduino-cli upload -p /dev/ttyACM0 --fqbn arduino:mbed_nano:nano33ble examples/EmbBertClassifier",
        "Type a line in the serial monitor (115200 baud): label, score, latency and arena_used_bytes() come back.",
    ])
    return files


def _platformio_package(generated: dict[str, str], facts: dict, source: str) -> dict[str, str]:
    library = {
        "name": LIBRARY_NAME,
        "version": _version(),
        "description": f"EmbBERT text classifier on TensorFlow Lite Micro ({_describe(facts)}); "
                       f"model {facts['model_bytes']} B flash, tensor arena {facts['tensor_arena_bytes']} B RAM. "
                       f"Generated by `embbert export` from {source}; do not edit by hand.",
        "keywords": ["tflite-micro", "tensorflow-lite-micro", "nlp", "text-classification", "embbert"],
        "license": "Apache-2.0",
        "frameworks": ["arduino"],
        "platforms": ["nordicnrf52"],
        "headers": f"{LIBRARY_NAME}.h",
        "build": {"srcDir": "src", "includeDir": "src"},
        "examples": [{"name": "EmbBertClassifier", "base": "examples/EmbBertClassifier",
                      "files": ["platformio.ini", "src/main.cpp"]}],
    }
    ini = _hash_comment(";", source) + f"""; Example project for the {LIBRARY_NAME} library (this package, two folders up).
; TFLM comes from the precompiled Arduino library {TFLM_LIBRARY} made by
; micro_app/tools/tflm_arduino_library.py (docs/arduino.md); TFLM_ARDUINO_M4 is its folder.
; then: TFLM_ARDUINO_M4=/path/to/{TFLM_LIBRARY} pio run -e nano33ble -t upload && pio device monitor -b 115200
; (ESP32: use `embbert export --target esp-idf`, which builds TFLM with ESP-IDF's own C++ standard.)

[platformio]
default_envs = nano33ble

[env]
framework = arduino
monitor_speed = 115200
lib_deps =
    {LIBRARY_NAME}=symlink://../..

[env:nano33ble]
platform = nordicnrf52
board = nano33ble
; the archive, linked explicitly (the folder arduino-cli uses for a precompiled library on this core)
build_flags =
    -L${{sysenv.TFLM_ARDUINO_M4}}/src/cortex-m4/fpv4-sp-d16-softfp
    -l{TFLM_LIBRARY}
lib_deps =
    ${{env.lib_deps}}
    {TFLM_LIBRARY}=symlink://${{sysenv.TFLM_ARDUINO_M4}}
"""
    files = {"library.json": json.dumps(library, indent=2) + "\n",
             f"src/{LIBRARY_NAME}.h": _hand_written("arduino/EmbBERT.h")}
    files.update({f"src/{n}": t for n, t in _core(generated, ".cpp", shim=False).items()})
    files["examples/EmbBertClassifier/platformio.ini"] = ini
    files["examples/EmbBertClassifier/src/main.cpp"] = _hand_written(
        "arduino/EmbBertClassifier/EmbBertClassifier.ino")
    files["README.md"] = _readme("PlatformIO library", facts, source, [
        f"Build the example for the Nano 33 BLE (the precompiled TFLM library {TFLM_LIBRARY}: docs/arduino.md):",
        "    cd examples/EmbBertClassifier",
        f"    TFLM_ARDUINO_M4=/path/to/{TFLM_LIBRARY} pio run -e nano33ble -t upload",
        "    pio device monitor -b 115200",
        "For an ESP32 use `embbert export --target esp-idf` (ESP-IDF builds TFLM with its own C++ standard).",
    ])
    return files


def _esp_idf_package(generated: dict[str, str], facts: dict, source: str) -> dict[str, str]:
    core = _core(generated, ".cc")
    srcs = "\n".join(f'    "src/{n}"' for n in sorted(core) if n.endswith((".c", ".cc")))
    component_cmake = _hash_comment("#", source) + f"""# EmbBERT as an ESP-IDF component: tokenizer, model, TFLM glue.
idf_component_register(
  SRCS
{srcs}
  INCLUDE_DIRS "src"
  REQUIRES esp-tflite-micro)
"""
    component_yml = _hash_comment("#", source) + f"""version: "{_version()}"
description: "EmbBERT text classifier on TensorFlow Lite Micro ({_describe(facts)})"
license: "Apache-2.0"
dependencies:
  idf: ">=5.1"
  espressif/esp-tflite-micro: "{ESP_TFLITE_MICRO}"
"""
    project_cmake = _hash_comment("#", source) + """# Example ESP-IDF project: a line on the console -> label, score, latency, arena bytes.
#   idf.py set-target esp32   (or esp32s3)
#   idf.py build flash monitor
cmake_minimum_required(VERSION 3.16)
include($ENV{IDF_PATH}/tools/cmake/project.cmake)
project(embbert_classifier)
"""
    main_cmake = _hash_comment("#", source) + """idf_component_register(SRCS "main.cc" INCLUDE_DIRS "." REQUIRES embbert esp_timer)
"""
    sdkconfig = _hash_comment("#", source) + """# the tokenizer keeps about 1 KB of BPE buffers on the stack of the calling task
CONFIG_ESP_MAIN_TASK_STACK_SIZE=8192
"""
    files = {"CMakeLists.txt": project_cmake, "sdkconfig.defaults": sdkconfig,
             "main/CMakeLists.txt": main_cmake, "main/main.cc": _hand_written("esp32/main/main.cc"),
             "components/embbert/CMakeLists.txt": component_cmake,
             "components/embbert/idf_component.yml": component_yml}
    files.update({f"components/embbert/src/{n}": t for n, t in core.items()})
    files["README.md"] = _readme("ESP-IDF project with the `embbert` component", facts, source, [
        "ESP-IDF >= 5.1; the component manager fetches espressif/esp-tflite-micro (components/embbert/"
        "idf_component.yml) at the first build:",
        "    idf.py set-target esp32      # or esp32s3",
        "    idf.py build flash monitor",
        "Type a line in the monitor: label, score, latency and arena_used_bytes() come back.",
        "To reuse the model in your own project, copy components/embbert/ into its components/ folder.",
    ])
    return files


def _cmake_package(generated: dict[str, str], facts: dict, source: str) -> dict[str, str]:
    core = _core(generated, ".cc")
    with_tflm = ("embbert_classifier.c", "embbert_ops.c", "embbert_tflm.cc")
    no_tflm = sorted(n for n in core if n.endswith((".c", ".cc")) and n not in with_tflm)
    core_srcs = "\n".join(f"  src/{n}" for n in no_tflm)
    cmake = _hash_comment("#", source) + f"""# Host build of the EmbBERT TFLM application against a TFLM tree made by
# tflite-micro's create_tflm_tree.py (see docs/micro_app.md):
#   cmake -S . -B build -DTFLM_DIR=/path/to/tflm-tree && cmake --build build
#   echo "i feel great today" | build/embbert_classify
# Without TFLM (-DEMBBERT_WITH_TFLM=OFF) only the parts that do not need it are
# built: tokenizer, tables, model array, post-processing and two host checks.
cmake_minimum_required(VERSION 3.16)
project(embbert_classifier C CXX)
set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
if(NOT CMAKE_BUILD_TYPE)
  # release: NDEBUG, as TFLM's BUILD_TYPE=release (CMSIS-NN halts on a debug check otherwise)
  set(CMAKE_BUILD_TYPE Release)
endif()

option(EMBBERT_WITH_TFLM "build the TFLM classifier (needs TFLM_DIR)" ON)
set(TFLM_DIR "" CACHE PATH "tree written by tflite-micro's create_tflm_tree.py")

# Everything that does not need TFLM.
add_library(embbert_core STATIC
{core_srcs})
target_include_directories(embbert_core PUBLIC src)

add_executable(embbert_tokenize_main tests/tokenize_main.c)
target_link_libraries(embbert_tokenize_main PRIVATE embbert_core)
add_executable(embbert_dump_model tests/dump_model.cc)
target_link_libraries(embbert_dump_model PRIVATE embbert_core)

if(EMBBERT_WITH_TFLM)
  if(NOT EXISTS "${{TFLM_DIR}}/tensorflow/lite/micro/micro_interpreter.h")
    message(FATAL_ERROR "TFLM_DIR='${{TFLM_DIR}}' is not a create_tflm_tree.py tree "
                        "(no tensorflow/lite/micro/micro_interpreter.h); pass -DTFLM_DIR=... "
                        "or -DEMBBERT_WITH_TFLM=OFF")
  endif()
  file(GLOB_RECURSE TFLM_SOURCES CONFIGURE_DEPENDS
       "${{TFLM_DIR}}/tensorflow/*.cc" "${{TFLM_DIR}}/tensorflow/*.c"
       "${{TFLM_DIR}}/signal/*.cc" "${{TFLM_DIR}}/third_party/*.c" "${{TFLM_DIR}}/third_party/*.cc")
  add_library(tflm STATIC ${{TFLM_SOURCES}})
  target_include_directories(tflm PUBLIC
    "${{TFLM_DIR}}"
    "${{TFLM_DIR}}/third_party"
    "${{TFLM_DIR}}/third_party/flatbuffers/include"
    "${{TFLM_DIR}}/third_party/gemmlowp"
    "${{TFLM_DIR}}/third_party/ruy"
    "${{TFLM_DIR}}/third_party/kissfft")
  # TFLM's Makefile builds with these; the application must see the same TfLiteTensor layout.
  target_compile_definitions(tflm PUBLIC TF_LITE_STATIC_MEMORY TF_LITE_DISABLE_X86_NEON)
  # ... and TFLM's C++ flags: its placement-new code needs -fno-exceptions (decode_state.cc)
  target_compile_options(tflm PUBLIC $<$<COMPILE_LANGUAGE:CXX>:-fno-rtti -fno-exceptions -fno-threadsafe-statics>)

  add_library(embbert STATIC src/embbert_classifier.c src/embbert_ops.c src/embbert_tflm.cc)
  target_link_libraries(embbert PUBLIC embbert_core tflm)
  add_executable(embbert_classify examples/embbert_classify.cc)
  target_link_libraries(embbert_classify PRIVATE embbert)
endif()
"""
    files = {"CMakeLists.txt": cmake}
    files.update({f"src/{n}": t for n, t in core.items()})
    files["examples/embbert_classify.cc"] = _hand_written("host/embbert_classify.cc")
    files["tests/tokenize_main.c"] = _hand_written("tests/tokenize_main.c")
    files["tests/dump_model.cc"] = _hand_written("tests/dump_model.cc")
    files["README.md"] = _readme("CMake project (host build against a TFLM tree)", facts, source, [
        "    cmake -S . -B build -DTFLM_DIR=/path/to/tflm-tree && cmake --build build -j",
        "    echo 'i feel wonderful today' | build/embbert_classify",
        "TFLM_DIR is a tree made by tflite-micro's create_tflm_tree.py (docs/micro_app.md). "
        "-DEMBBERT_WITH_TFLM=OFF builds only the parts that need no TFLM (tokenizer, tables, model array, "
        "post-processing) and the host checks embbert_tokenize_main and embbert_dump_model.",
    ])
    return files


def _readme(kind: str, facts: dict, source: str, lines: list[str]) -> str:
    labels = ", ".join(facts["labels"]) or "one regression output"
    return (f"<!-- GENERATED by `embbert export` from {source}. Do not edit by hand. -->\n"
            f"# EmbBERT: {kind}\n\n"
            f"Model: {_describe(facts)} ({labels}); `{facts['model_file']}` of {facts['model_bytes']} bytes "
            f"(sha256 {facts['model_sha256']}), tensor arena {facts['tensor_arena_bytes']} bytes "
            f"(measured minimum {facts['min_arena_bytes']}), operators {', '.join(facts['ops'])}.\n\n"
            + "\n".join(lines) + "\n")


def package_files(target: str, generated: dict[str, str], facts: dict) -> dict[str, bytes]:
    """Every file of one target's package (relative path -> bytes), the manifest included."""
    source = f"{facts['run']}/{facts['model_file']}"
    if target == "sources":
        files = dict(generated)
    elif target == "arduino":
        files = _arduino_package(generated, facts, source)
    elif target == "platformio":
        files = _platformio_package(generated, facts, source)
    elif target == "esp-idf":
        files = _esp_idf_package(generated, facts, source)
    elif target == "cmake":
        files = _cmake_package(generated, facts, source)
    else:
        raise EmbBertError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    out = {name: text.encode("utf-8") for name, text in files.items()}
    manifest = {"generator": "embbert export", "target": target,
                **{k: facts[k] for k in ("run", "model_file", "model_bytes", "model_sha256", "min_arena_bytes",
                                         "tensor_arena_bytes")},
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(out.items())}}
    out[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    return out


# --------------------------------------------------------------------------
# Atomic write of a whole folder (embbert.core.files)
# --------------------------------------------------------------------------
_TMP_PREFIX = ".export-"


def _is_export(folder: Path) -> bool:
    """A folder an earlier `embbert export` wrote: its manifest says so."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == "embbert export"


def _check_out(out: str | os.PathLike, force: bool = False) -> Path:
    """`out` absent, empty or an earlier export (by its manifest), else one line and exit 2 (unless `force`)."""
    return files_.check_output_folder(out, _is_export, "embbert export", force=force)


def write_package(out: str | os.PathLike, files: dict[str, bytes], force: bool = False) -> list[Path]:
    """Write `files` as the whole content of folder `out`, atomically: built in a temporary sibling,
    fsynced, then swapped in with one rename, the folder's mode kept. `out` afterwards holds exactly
    these files."""
    out = _check_out(out, force)
    return files_.write_folder(out, files, _TMP_PREFIX)


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------
def default_out_dir(run_dir: Path, target: str = "sources") -> Path:
    """Inside the run directory, never in the checkout: RUN_DIR/micro_app/<target>."""
    return Path(run_dir) / layout.EXPORT_DIR / target


def export_micro_app(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     target: str = "sources", arena_bytes: int | None = None, force: bool = False) -> list[Path]:
    """Write the package of `target` for RUN_DIR into `out_dir` (default RUN_DIR/micro_app/<target>);
    returns the written paths. `sources` is the seven generated files alone. A non-empty `out_dir`
    not written by an earlier export is refused unless `force`."""
    if target not in TARGETS:
        raise EmbBertError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    out = Path(out_dir) if out_dir is not None else default_out_dir(Path(run_dir), target)
    _check_out(out, force)  # before the tables take their seconds
    generated, facts = generated_sources(run_dir, arena_bytes)
    files = package_files(target, generated, facts)
    try:
        return write_package(out, files, force)
    except OSError as exc:
        raise EmbBertError(f"{out}: cannot write the package ({exc.strerror or exc})") from None


def _cmd_export(args) -> int:
    from embbert.core import preflight

    preflight.run_dir(args.run_dir)  # no such folder or no valid config.json: exit 2, before anything is read
    paths = export_micro_app(args.run_dir, args.out, target=args.target, arena_bytes=args.arena_bytes,
                             force=args.force)
    root = Path(args.out or default_out_dir(Path(args.run_dir), args.target)).resolve()
    print(f"wrote {len(paths)} files ({args.target}) to {root}:")
    for p in paths:
        print(f"  {p.relative_to(root)}")
    return 0


def _arena_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a TFLM package (Arduino, PlatformIO, ESP-IDF, CMake) or the generated C sources",
        description="From a converted run directory write, into one folder (atomically, replacing an earlier "
                    "export there): `sources` the generated model_data.h/.cc, model_settings.h, embbert_ops.h/.c "
                    "and tokenizer tables; `arduino` an Arduino library with an example sketch; `platformio` a "
                    "PlatformIO library with an example for nano33ble; `esp-idf` an ESP-IDF "
                    "project with an `embbert` component requiring espressif/esp-tflite-micro; `cmake` a CMake "
                    "project for host builds against a TFLM tree. The model must match the hash recorded by "
                    "`embbert convert`.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory with model_int8.tflite and arena_report.json")
    p.add_argument("--target", choices=TARGETS, default="sources", help="what to write (default sources)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default RUN_DIR/micro_app/<target>); a non-empty folder must come "
                        "from an earlier export (its embbert_export.json), unless --force")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out folder that an earlier export did not write (its contents go)")
    p.add_argument("--arena-bytes", type=_arena_arg, default=None, metavar="N",
                   help="tensor arena size (default the report's recommended size; "
                        "never below its measured minimum)")
    p.set_defaults(func=_cmd_export)
