"""`embbert bench latency`: instructions per operator and per inference on an emulated Cortex-M4.

The profiling driver `micro_app/profile/embbert_profile.cc` runs one inference under TFLM's
`MicroProfiler` and prints its CSV (ticks per operator, per operator type, per inference). This
module builds it against the user's TFLM tree with TFLM's own make flow (`microlite`,
`BUILD_TYPE=release_with_logs`: `-DNDEBUG` with the profiler's output kept), for

* `cortex-m4`: TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp, CMSIS-NN and/or reference kernels,
  linked with the driver's start-up code for qemu's `mps2-an386` board and run under
  `qemu-system-arm -icount shift=3`, where one tick of the board's 25 MHz timer is exactly
  5 executed instructions: the profile is an instruction count (checked on a calibration loop);
* `host`: TFLM's default (x86-64) target, reference kernels, wall-clock nanoseconds.

From the Cortex-M4 instruction counts it estimates a time per board with a stated range of
cycles per instruction (CPI): an estimate, not a measurement (qemu models no pipeline, no
wait states). Without `--tflm-dir` it stops with one line before anything is imported.

Models: the run directory's `model_int8.tflite`, and with `--preset P --lengths L...` the default
deployed graph of preset P at each length with random weights (`latency_models.py`: the
instruction count depends on the graph, not on the weight values).

`--table-kernels` registers LOGISTIC, SOFTMAX, MEAN and ADD with the project's faster kernels, the
ones the exported packages register by default (`micro_app/src/embbert_kernels.h`, the same source
file; TFLM's reference results bit for bit; for the operators `cgen.project_kernel_ops` picks: those
whose tensors are all int8) and checks them element by element against TFLM's reference functions in
a second build.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from embbert.core import layout
from embbert.core.args import positive_int
from embbert.core.config import PRESETS, EmbBertConfig
from embbert.core.errors import EmbBertError, UsageError
from embbert.core.files import atomic_write_text
from embbert.datasets.tokenizer.spec import CLS_ID
from embbert.micro_app import ROOT as MICRO_APP
from embbert.tflite.cgen import project_kernel_ops, resolver_methods
from embbert.tflite.graph import macs, op_macs, read_graph
from embbert.tflite.latency import BOARDS, ESP_NN_OPS, board_estimates, esp_nn_like, estimate_ms  # noqa: F401

from .latency_models import write_synthetic_run

PROFILE_SRC = MICRO_APP / "profile"  # shipped with the package (embbert.micro_app)
APP_SRC = MICRO_APP / "src"  # the application sources: the project's kernels the exported packages compile
TFLM_MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"

#: qemu `-icount shift=3`: 8 ns of virtual time per instruction; the MPS2 timer runs at 25 MHz (40 ns).
ICOUNT_SHIFT = 3
INSTRUCTIONS_PER_TICK = 40 // (1 << ICOUNT_SHIFT)  # = 5
ARENA_BYTES = 1536 * 1024  # the profile's arena: more than any EmbBERT graph up to L=256 needs
TARGETS = ("cortex-m4", "host")
KERNELS = ("cmsis-nn", "reference")


# -- parsing the driver's output ---------------------------------------------------------------------

_EVENT = re.compile(r"^(\d+),([A-Z0-9_()]+),(-?\d+)$")
_TAG = re.compile(r"^([A-Z0-9_()]+), (-?\d+)$")


def parse_profile(text: str) -> dict[str, Any]:
    """The driver's output (TFLM's MicroProfiler CSV + `embbert_profile:` lines) as a dict.

    Keys: time_base, ticks_per_second, calibration ({instructions, ticks} or None),
    arena_used_bytes, runs (each: events [(index, tag, ticks)], per_tag {tag: ticks},
    total_ticks, invoke_ticks, profiled_ticks), logits (ints), done (bool)."""
    out: dict[str, Any] = {"time_base": None, "ticks_per_second": None, "calibration": None,
                           "arena_used_bytes": None, "runs": [], "logits": None, "done": False, "table_check": None}
    run: dict[str, Any] | None = None
    section = None
    for raw in text.splitlines():
        line = raw.strip().replace("\r", "")
        if not line:
            continue
        if line.startswith("embbert_profile:"):
            body = line[len("embbert_profile:"):].strip()
            if body.startswith("error:"):
                raise EmbBertError(f"profile: {body[len('error:'):].strip()}")
            if body.startswith("time_base="):
                out["time_base"] = body[len("time_base="):]
            elif body.startswith("ticks_per_second="):
                out["ticks_per_second"] = int(body.split("=", 1)[1])
            elif body.startswith("calibration "):
                kv = dict(p.split("=", 1) for p in body.split()[1:])
                out["calibration"] = {"instructions": int(kv["instructions"]), "ticks": int(kv["ticks"])}
            elif body.startswith("table_check "):
                out["table_check"] = {k: int(v) for k, v in (p.split("=", 1) for p in body.split()[1:] if "=" in p)}
            elif body.startswith("arena_used_bytes="):
                out["arena_used_bytes"] = int(body.split("=", 1)[1])
            elif re.fullmatch(r"run \d+", body):
                run = {"events": [], "per_tag": {}, "total_ticks": None, "invoke_ticks": None, "profiled_ticks": None}
                out["runs"].append(run)
                section = None
            elif re.match(r"run \d+ invoke_ticks=", body):
                if run is None:
                    raise EmbBertError("profile output: a run summary before any run")
                kv = dict(p.split("=", 1) for p in body.split()[2:])
                run["invoke_ticks"], run["profiled_ticks"] = int(kv["invoke_ticks"]), int(kv["profiled_ticks"])
            elif body.startswith("logits="):
                out["logits"] = [int(v) for v in body.split("=", 1)[1].split(",") if v]
            elif body == "done":
                out["done"] = True
            continue
        if line.startswith('"Event"'):
            section = "events"
            continue
        if line.startswith('"Unique Tag"'):
            section = "tags"
            continue
        if line.startswith('"total number of ticks"'):
            if run is not None:
                run["total_ticks"] = int(line.rsplit(",", 1)[1])
            section = None
            continue
        if run is None or section is None:
            continue  # anything else the program or the emulator printed
        m = _EVENT.match(line) if section == "events" else _TAG.match(line)
        if m is None:
            continue
        if section == "events":
            run["events"].append((int(m.group(1)), m.group(2), int(m.group(3))))
        else:
            run["per_tag"][m.group(1)] = run["per_tag"].get(m.group(1), 0) + int(m.group(2))
    if not out["done"]:
        raise EmbBertError("profile output ends before `embbert_profile: done` (the program stopped early)")
    if not out["runs"] or not out["runs"][0]["events"]:
        raise EmbBertError("profile output holds no operator events (a TFLM build with "
                           "TF_LITE_STRIP_ERROR_STRINGS, i.e. BUILD_TYPE=release, prints none: use release_with_logs)")
    return out


def instructions_per_tick(profile: dict[str, Any]) -> float:
    """Instructions a tick on the emulator: the calibration loop's ratio, checked against 5 (shift=3)."""
    cal = profile.get("calibration")
    if not cal or not cal["ticks"]:
        raise EmbBertError("profile output has no calibration line (not the emulator build?)")
    ratio = cal["instructions"] / cal["ticks"]
    if abs(ratio - INSTRUCTIONS_PER_TICK) > 0.01 * INSTRUCTIONS_PER_TICK:
        raise EmbBertError(f"time base check failed: the calibration loop ran {ratio:.3f} instructions a tick, "
                           f"expected {INSTRUCTIONS_PER_TICK} (qemu not run with -icount shift={ICOUNT_SHIFT}?)")
    return float(INSTRUCTIONS_PER_TICK)


def chosen_run(profile: dict[str, Any]) -> dict[str, Any]:
    """The run to report: the one with the median Invoke() time (all runs are equal on the emulator)."""
    runs = sorted(profile["runs"], key=lambda r: r["invoke_ticks"] or 0)
    return runs[(len(runs) - 1) // 2]


# -- building and running --------------------------------------------------------------------------

def check_tflm_dir(tflm_dir: str | None) -> Path:
    """The user's TFLM tree (one-line UsageError when missing or not one)."""
    if not tflm_dir:
        raise UsageError("bench latency needs a TensorFlow Lite Micro source tree: --tflm-dir DIR "
                         "(how to get one with its third-party sources: docs/latency.md)")
    p = Path(tflm_dir).expanduser()
    if not p.is_dir():
        raise UsageError(f"{p}: --tflm-dir: not a directory")
    if not (p / TFLM_MAKEFILE).is_file():
        raise UsageError(f"{p}: --tflm-dir: not a tflite-micro checkout (no {TFLM_MAKEFILE})")
    return p.resolve()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        hint = {"qemu-system-arm": "apt-get install qemu-system-arm",
                "arm-none-eabi-g++": "apt-get install gcc-arm-none-eabi"}.get(name, "")
        raise EmbBertError(f"{name} not found" + (f" ({hint})" if hint else ""))
    return path


def _run(cmd: list[str], *, cwd=None, env=None, timeout=None, what: str) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmbBertError(f"{what}: timed out after {timeout} s") from None
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-3:]
        raise EmbBertError(f"{what} failed (exit {res.returncode}): {' | '.join(tail)}")
    return res.stdout + res.stderr


def make_options(target: str, kernels: str, kernel_opt: str | None = None) -> list[str]:
    """TFLM make variables for a target and kernel set (BUILD_TYPE=release_with_logs: -DNDEBUG, logs kept).

    `kernel_opt` (e.g. "-O3"): the optimisation level of TFLM's kernels and of CMSIS-NN instead of
    TFLM's -O2, built into its own folder (gen/embbert<level>/...) so both builds coexist."""
    opts = ["BUILD_TYPE=release_with_logs"]
    if kernel_opt:
        opts += [f"KERNEL_OPTIMIZATION_LEVEL={kernel_opt}", f"THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL={kernel_opt}",
                 f"BASE_GENDIR={_base_gendir(kernel_opt)}"]
    if target == "cortex-m4":
        gcc = Path(_tool("arm-none-eabi-gcc"))
        opts += ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp", f"TARGET_TOOLCHAIN_ROOT={gcc.parent}/"]
    elif kernels != "reference":
        raise UsageError("--target host runs the reference kernels only (CMSIS-NN is an Arm kernel library)")
    if kernels == "cmsis-nn":
        opts.append("OPTIMIZED_KERNEL_DIR=cmsis_nn")
    return opts


def _base_gendir(kernel_opt: str | None) -> str:
    return "gen" if not kernel_opt else "gen/embbert" + re.sub(r"[^A-Za-z0-9]+", "", kernel_opt)


def build_library(tflm: Path, target: str, kernels: str, jobs: int = 2, kernel_opt: str | None = None) -> Path:
    """libtensorflow-microlite.a of TFLM's own make flow (incremental: a second call only checks)."""
    opts = make_options(target, kernels, kernel_opt)
    env = dict(os.environ)
    # TFLM's Makefile runs `python3` (with numpy and Pillow) on its examples while reading them
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = ["make", "-f", TFLM_MAKEFILE, *opts, f"-j{jobs}", "microlite"]
    _run(cmd, cwd=tflm, env=env, what="TFLM make " + " ".join(opts))
    lib = tflm / _base_gendir(kernel_opt) / _gen_dir_name(target, kernels) / "lib" / "libtensorflow-microlite.a"
    if not lib.is_file():
        raise EmbBertError(f"TFLM make finished but {lib} is missing")
    return lib


def _gen_dir_name(target: str, kernels: str) -> str:
    suffix = "_cmsis_nn" if kernels == "cmsis-nn" else ""
    if target == "cortex-m4":
        return f"cortex_m_generic_cortex-m4+fp_release_with_logs{suffix}_gcc"

    return f"linux_{platform.machine()}_release_with_logs{suffix}_gcc"


def model_array_sources(data: bytes) -> tuple[str, str]:
    """model_data.h / model_data.cc with the interface of `embbert export`'s generated files."""
    header = ("/* Written by `embbert bench latency` (the interface of embbert export's model_data.h). */\n"
              "#ifndef EMBBERT_MODEL_DATA_H_\n#define EMBBERT_MODEL_DATA_H_\n"
              "extern const unsigned char g_embbert_model_data[];\nextern const int g_embbert_model_data_len;\n"
              "#endif\n")
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    source = ('/* Written by `embbert bench latency`. */\n#include "model_data.h"\n'
              "alignas(16) const unsigned char g_embbert_model_data[] = {\n  " + ",\n  ".join(rows) + "};\n"
              "const int g_embbert_model_data_len = sizeof(g_embbert_model_data);\n")
    return header, source


#: --table-kernels: the registrations of the project's kernels (micro_app/src/embbert_kernels.h, the exported packages'
#: default; embbert_tflm.cc registers the same ones), for the operators `project_kernel_ops` picks
TABLE_KERNELS = {"LOGISTIC": "embbert::Register_LOGISTIC_INT8_TABLE()", "SOFTMAX": "embbert::Register_SOFTMAX_INT8_TABLE()",
                 "MEAN": "embbert::Register_MEAN_INT8_LAST_AXIS()", "ADD": "embbert::Register_ADD_INT8_TABLE()"}


def profile_config(graph, vocab_size: int, *, runs: int, arena_bytes: int = ARENA_BYTES,
                   table_kernels: bool = False) -> str:
    """embbert_profile_config.h for one model: length, vocabulary, inputs, the operators to register."""
    ops = graph.op_names
    project = set(project_kernel_ops(graph)) if table_kernels else set()
    methods = resolver_methods()  # the C interface's table: one list of the operators a package can register
    unknown = [o for o in ops if o not in methods]
    if unknown:
        raise EmbBertError(f"the model uses operators the profile cannot register: {', '.join(unknown)}")
    tok, seg = graph.input_index("token_ids"), graph.input_index("segment_ids")
    length = graph.tensors[graph.inputs[tok]].shape[-1]
    lines = ["/* Written by `embbert bench latency` for one model. */",
             "#ifndef EMBBERT_PROFILE_CONFIG_H_", "#define EMBBERT_PROFILE_CONFIG_H_",
             f"#define EMBBERT_PROFILE_LENGTH {length}", f"#define EMBBERT_PROFILE_VOCAB_SIZE {vocab_size}u",
             f"#define EMBBERT_PROFILE_CLS_ID {CLS_ID}", f"#define EMBBERT_PROFILE_TOKEN_IDS_INPUT {tok}",
             f"#define EMBBERT_PROFILE_SEGMENT_IDS_INPUT {seg}", f"#define EMBBERT_PROFILE_ARENA_BYTES {arena_bytes}",
             f"#define EMBBERT_PROFILE_RUNS {runs}", f"#define EMBBERT_PROFILE_NUM_OPS {len(ops)}",
             "#define EMBBERT_PROFILE_FOR_EACH_OP(X) "
             + " ".join(f"X({methods[o]}, {TABLE_KERNELS.get(o, '') if o in project else ''})" for o in ops),
             "#endif", ""]
    return "\n".join(lines)


def _compile_flags(tflm: Path, target: str) -> tuple[list[str], list[str]]:
    """(C++ flags, include flags) matching the library's ABI (TF_LITE_STATIC_MEMORY changes structs)."""
    dl = tflm / "tensorflow/lite/micro/tools/make/downloads"
    inc = [f"-I{tflm}", f"-I{dl / 'flatbuffers/include'}", f"-I{dl / 'gemmlowp'}", f"-I{dl / 'ruy'}",
           f"-I{PROFILE_SRC}", f"-I{APP_SRC}"]
    common = ["-O2", "-DTF_LITE_STATIC_MEMORY", "-DNDEBUG", "-DEMBBERT_PROFILE_MAIN", "-fno-exceptions",
              "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]
    if target == "cortex-m4":
        common += ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-ffunction-sections",
                   "-fdata-sections", "-DTF_LITE_MCU_DEBUG_LOG", "-DEMBBERT_PROFILE_DEBUG_LOG_CALLBACK"]
    return common, inc


def build_profile(build_dir: Path, tflm: Path, lib: Path, target: str, data: bytes, config_h: str,
                  table_kernels: str | None = None) -> Path:
    """Compile the driver, the platform and the model array, link with TFLM: the executable.

    `table_kernels`: None, "on" (the project's kernels of micro_app/src/embbert_kernels.cc, as the packages) or "verify" (the same, each element also
    compared with TFLM's reference function: for the check, not for timing)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    header, source = model_array_sources(data)
    (build_dir / "model_data.h").write_text(header)
    (build_dir / "model_data.cc").write_text(source)
    (build_dir / "embbert_profile_config.h").write_text(config_h)
    flags, inc = _compile_flags(tflm, target)
    if table_kernels:
        flags = [*flags, "-DEMBBERT_PROFILE_TABLE_KERNELS"]
        if table_kernels == "verify":
            flags.append("-DEMBBERT_TABLE_KERNELS_VERIFY")
    inc = [f"-I{build_dir}", *inc]
    cxx = _tool("arm-none-eabi-g++") if target == "cortex-m4" else _tool("g++")
    cc = _tool("arm-none-eabi-gcc") if target == "cortex-m4" else _tool("gcc")
    units = [(cxx, PROFILE_SRC / "embbert_profile.cc", ["-std=c++17", "-fno-rtti", "-fno-threadsafe-statics"]),
             (cxx, build_dir / "model_data.cc", ["-std=c++17"])]
    if table_kernels:
        units.append((cxx, APP_SRC / "embbert_kernels.cc", ["-std=c++17", "-fno-rtti"]))
    if target == "cortex-m4":
        units += [(cxx, PROFILE_SRC / "platform_mps2_an386.cc", ["-std=c++17", "-fno-rtti"]),
                  (cc, PROFILE_SRC / "startup_mps2_an386.c", ["-std=c99"])]
    else:
        units += [(cxx, PROFILE_SRC / "platform_host.cc", ["-std=c++17"])]
    objs = []
    for compiler, src, std in units:
        obj = build_dir / (src.stem + ".o")
        extra = [f for f in flags if not (compiler == cc and f in ("-fno-exceptions",))]
        _run([compiler, *std, *extra, *inc, "-c", str(src), "-o", str(obj)], what=f"compiling {src.name}")
        objs.append(str(obj))
    exe = build_dir / ("embbert_profile.elf" if target == "cortex-m4" else "embbert_profile")
    if target == "cortex-m4":
        link = [cxx, "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-nostartfiles",
                "--specs=nano.specs", "--specs=nosys.specs", f"-T{PROFILE_SRC / 'mps2_an386.ld'}",
                "-Wl,--gc-sections", *objs, str(lib), "-lm", "-o", str(exe)]
    else:
        link = [cxx, *objs, str(lib), "-lm", "-o", str(exe)]
    _run(link, what="linking the profile")
    return exe


def qemu_command(elf: Path) -> list[str]:
    return [_tool("qemu-system-arm"), "-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
            "-serial", "none", "-semihosting-config", "enable=on,target=native", "-icount", f"shift={ICOUNT_SHIFT}",
            "-kernel", str(elf)]


def run_profile(exe: Path, target: str, timeout: int = 1800) -> str:
    cmd = qemu_command(exe) if target == "cortex-m4" else [str(exe)]
    try:
        # one pipe for both streams: on the host TFLM's DebugLog writes to stderr, the driver to stdout
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmbBertError(f"{exe.name}: no result after {timeout} s") from None
    text = res.stdout
    if res.returncode != 0:
        errs = [ln for ln in text.splitlines() if "error" in ln.lower()][-1:] or text.strip().splitlines()[-1:]
        raise EmbBertError(f"{exe.name} failed (exit {res.returncode}): {' '.join(errs)}")
    return text


# -- one model -------------------------------------------------------------------------------------

def measure_model(name: str, data: bytes, vocab_size: int, tflm: Path, target: str, kernels: list[str],
                  out_dir: Path, *, libs: dict[str, Path], kernel_opt: str | None = None,
                  table_kernels: bool = False) -> dict[str, Any]:
    """Profile one FlatBuffer with each kernel set: per operator, per type, per inference."""
    graph = read_graph(data)
    runs = 1 if target == "cortex-m4" else 5
    config_h = profile_config(graph, vocab_size, runs=runs, table_kernels=table_kernels)
    length = graph.tensors[graph.inputs[graph.input_index("token_ids")]].shape[-1]
    result: dict[str, Any] = {"model": name, "length": int(length), "model_bytes": len(data), "target": target,
                              "kernel_opt": kernel_opt or "-O2 (TFLM default)", "table_kernels": table_kernels,
                              "operators": len(graph.ops), "macs": macs(graph), "kernels": {}}
    for k in kernels:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
        variant = f"{k}{kernel_opt or ''}{'-table' if table_kernels else ''}"
        build = out_dir / "build" / f"{slug}-L{length}-{target}-{variant}"
        exe = build_profile(build, tflm, libs[k], target, data, config_h, "on" if table_kernels else None)
        text = run_profile(exe, target)
        (build / "profile.txt").write_text(text)
        prof = parse_profile(text)
        run = chosen_run(prof)
        if target == "cortex-m4":
            scale, unit = instructions_per_tick(prof), "instructions"
        else:
            scale, unit = 1.0, "ns"
        events = run["events"]
        per_op = []
        for i, (_, tag, ticks) in enumerate(events):
            op = graph.ops[i] if len(events) == len(graph.ops) else None
            per_op.append({"index": i, "op": tag, unit: int(round(ticks * scale)),
                           "macs": op_macs(graph, op) if op is not None and op.name == tag else None})
        result["kernels"][k] = {
            "unit": unit, "per_inference": int(round(run["invoke_ticks"] * scale)),
            "operators_sum": int(round(run["profiled_ticks"] * scale)),
            "per_tag": {t: int(round(v * scale)) for t, v in run["per_tag"].items()},
            "per_op": per_op, "logits": prof["logits"], "arena_used_bytes": prof["arena_used_bytes"],
            "time_base": prof["time_base"], "calibration": prof["calibration"],
            "runs": [r["invoke_ticks"] for r in prof["runs"]], "profile": str(build / "profile.txt")}
        if table_kernels:
            # a second build compares every element of the table kernels with TFLM's reference function
            vbuild = build.with_name(build.name + "-verify")
            vexe = build_profile(vbuild, tflm, libs[k], target, data, config_h, "verify")
            vtext = run_profile(vexe, target)
            (vbuild / "profile.txt").write_text(vtext)
            vprof = parse_profile(vtext)
            check = vprof.get("table_check") or {}
            if vprof["logits"] != prof["logits"] or any(v for k2, v in check.items() if k2.endswith("_mismatches")):
                raise EmbBertError(f"table kernels differ from TFLM's reference on {name} L={length}: {check}")
            result["kernels"][k]["table_check"] = check
    if target == "cortex-m4":
        counts = {k: v["per_inference"] for k, v in result["kernels"].items()}
        counts["esp-nn-like"] = esp_nn_like({k: v["per_tag"] for k, v in result["kernels"].items()})
        result["estimates"] = board_estimates(counts)
        if len(result["kernels"]) == 2:
            a, b = (result["kernels"][k]["logits"] for k in KERNELS)
            result["logits_identical_across_kernels"] = a == b
    return result


# -- report ----------------------------------------------------------------------------------------

def _fmt(n) -> str:
    return "-" if n is None else f"{n:,}"


def latency_markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = ["# Latency per operator and per inference", "",
             f"Written by `{command}`.", ""]
    if not results:
        return "\n".join(lines)
    lines += [f"TFLM built with its make flow, BUILD_TYPE=release_with_logs, kernels and CMSIS-NN at "
              f"{results[0].get('kernel_opt', '-O2 (TFLM default)')}.", ""]
    target = results[0]["target"]
    if target == "cortex-m4":
        lines += ["Measured: instructions executed on qemu's `mps2-an386` (Cortex-M4F) with `-icount shift=3` "
                  f"(one tick of the 25 MHz timer = {INSTRUCTIONS_PER_TICK} instructions, checked on a calibration loop). "
                  "Estimated: time on each board = instructions x assumed cycles per instruction (CPI) / clock; "
                  "qemu models no pipeline or memory timing, so the CPI range is an assumption, not a measurement.", ""]
    else:
        lines += ["Measured: wall-clock time of TFLM's reference kernels on this host (median of 5 profiled runs).", ""]
    unit = "instructions" if target == "cortex-m4" else "ns"
    kernels = [k for k in KERNELS if any(k in r["kernels"] for r in results)]
    head = "| model | L | MACs | " + " | ".join(f"{unit} per inference ({k})" for k in kernels)
    head += " | per MAC (" + kernels[0] + ") |" if target == "cortex-m4" else " |"
    lines += ["## Per inference", "", head, "|---|---:|---:|" + "---:|" * len(kernels) + ("---:|" if target == "cortex-m4" else "")]
    for r in results:
        cells = [_fmt(r["kernels"].get(k, {}).get("per_inference")) for k in kernels]
        row = f"| {r['model']} | {r['length']} | {_fmt(r['macs']['total'])} | " + " | ".join(cells)
        if target == "cortex-m4":
            n = r["kernels"][kernels[0]]["per_inference"]
            row += f" | {n / max(r['macs']['total'], 1):.2f} |"
        else:
            row += " |"
        lines.append(row)
    if target == "cortex-m4":
        lines += ["", "## Estimated time per inference on the boards (an estimate, not a measurement)", "",
                  "| model | L | board | clock | instructions (basis) | CPI assumed | estimated ms |",
                  "|---|---:|---|---:|---:|---|---:|"]
        for r in results:
            for e in r.get("estimates", []):
                lines.append(f"| {r['model']} | {r['length']} | {e['board']} | {e['mhz']:.0f} MHz | "
                             f"{_fmt(e['instructions'])} ({e['basis']}) | {e['cpi_low']}-{e['cpi_high']} | "
                             f"{e['ms_low']:.1f}-{e['ms_high']:.1f} |")
        lines += ["", "Assumptions:", ""] + [f"- {b.name}: {b.note}." for b in BOARDS]
    for r in results:
        lines += ["", f"## {r['model']} (L={r['length']}): per operator type", "",
                  "| operator | MACs | " + " | ".join(f"{unit} ({k})" for k in kernels)
                  + " | share (" + kernels[0] + ") |" + (" per MAC |" if target == "cortex-m4" else ""),
                  "|---|---:|" + "---:|" * len(kernels) + "---:|" + ("---:|" if target == "cortex-m4" else "")]
        first = r["kernels"][kernels[0]]
        total = max(first["operators_sum"], 1)
        for tag in sorted(first["per_tag"], key=lambda t: -first["per_tag"][t]):
            m = r["macs"]["per_op"].get(tag, 0)
            cells = [_fmt(r["kernels"].get(k, {}).get("per_tag", {}).get(tag)) for k in kernels]
            row = f"| {tag} | {_fmt(m) if m else '-'} | " + " | ".join(cells) + f" | {100 * first['per_tag'][tag] / total:.1f} % |"
            if target == "cortex-m4":
                row += f" {first['per_tag'][tag] / m:.2f} |" if m else " - |"
            lines.append(row)
        lines.append(f"| all operators | {_fmt(r['macs']['total'])} | "
                     + " | ".join(_fmt(r["kernels"].get(k, {}).get("operators_sum")) for k in kernels)
                     + " | 100 % |" + (" |" if target == "cortex-m4" else ""))
        if "logits_identical_across_kernels" in r:
            lines.append("")
            lines.append("Logits of the two kernel sets: " + ("bit-identical." if r["logits_identical_across_kernels"]
                                                             else "DIFFERENT."))
    return "\n".join(lines) + "\n"


# -- the command -------------------------------------------------------------------------------------

def latency_bench(run_dir, tflm_dir, *, target: str = "cortex-m4", kernels: str = "cmsis-nn",
                  preset: str | None = None, lengths: list[int] | None = None, out="runs/bench/latency",
                  jobs: int = 2, kernel_opt: str | None = None, table_kernels: bool = False,
                  command: str = "embbert bench latency") -> list[dict[str, Any]]:
    tflm = check_tflm_dir(tflm_dir)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kernel_list = list(KERNELS) if kernels == "both" else [kernels]
    if target == "host":
        kernel_list = ["reference"]
    models: list[tuple[str, bytes, int]] = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        config = EmbBertConfig.load(run_dir)
        model = run_dir / layout.INT8_MODEL
        if not model.is_file():
            raise EmbBertError(f"{run_dir}: no {layout.INT8_MODEL}; run `embbert convert` first")
        models.append((f"{run_dir.name}", model.read_bytes(), config.model.vocab_size))
    if preset is not None:

        for n in lengths or []:
            folder = out / "models" / f"{preset}-L{n}"
            if not (folder / layout.INT8_MODEL).is_file():
                print(f"converting a random-weight {preset} graph at L={n} ...", flush=True)
                write_synthetic_run(folder, preset, int(n))
            cfg = EmbBertConfig.load(folder)
            models.append((f"{preset} (random weights)", (folder / layout.INT8_MODEL).read_bytes(), cfg.model.vocab_size))
    libs = {}
    for k in kernel_list:
        print(f"building TFLM ({target}, {k} kernels) in {tflm} ...", flush=True)
        libs[k] = build_library(tflm, target, k, jobs, kernel_opt)
    results = []
    for name, data, vocab in models:
        r = measure_model(name, data, vocab, tflm, target, kernel_list, out, libs=libs, kernel_opt=kernel_opt,
                          table_kernels=table_kernels)
        results.append(r)
        summary = ", ".join(f"{k}: {_fmt(v['per_inference'])} {v['unit']}" for k, v in r["kernels"].items())
        print(f"{name} L={r['length']}: {summary}", flush=True)
        for e in r.get("estimates", []):
            print(f"  {e['board']}: {e['ms_low']:.1f}-{e['ms_high']:.1f} ms (estimate, CPI {e['cpi_low']}-"
                  f"{e['cpi_high']}, {e['basis']} counts)", flush=True)
    atomic_write_text(out / "latency.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "latency.md", latency_markdown(results, command))
    print(f"wrote {out / 'latency.md'} and latency.json", flush=True)
    return results


def _cmd_latency(args) -> int:
    check_tflm_dir(args.tflm_dir)  # first, before anything heavy is imported
    if args.preset is not None and not args.lengths:
        raise UsageError("--preset needs --lengths L [L ...]")
    if args.run_dir is None and args.preset is None:
        raise UsageError("nothing to measure: give a RUN_DIR (with model_int8.tflite) and/or --preset P --lengths L ...")
    if args.preset is not None:

        if args.preset not in PRESETS:
            raise UsageError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    if args.lengths and args.preset is None:
        raise UsageError("--lengths needs --preset P (the run directory's model has its own length)")
    if args.run_dir is not None and not Path(args.run_dir).is_dir():
        raise UsageError(f"{args.run_dir}: not a directory")
    if args.target == "host" and args.kernels != "reference":
        args.kernels = "reference"
    cmd = "embbert bench latency " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "embbert bench latency"
    latency_bench(args.run_dir, args.tflm_dir, target=args.target, kernels=args.kernels, preset=args.preset,
                  lengths=args.lengths, out=args.out, jobs=args.jobs,
                  kernel_opt=f"-{args.kernel_opt}" if args.kernel_opt else None,
                  table_kernels=args.table_kernels, command=cmd)
    return 0


def register(bench_subparsers) -> None:

    p = bench_subparsers.add_parser(
        "latency", help="instructions per operator and per inference on an emulated Cortex-M4 (or host time)",
        description="Build the profiling driver (micro_app/profile) against your TFLM tree with TFLM's make flow, run "
        "it on qemu's mps2-an386 Cortex-M4 with an instruction-count time base (or on the host), and report "
        "instructions per operator, per operator type and per inference, and an estimated time per board. "
        "docs/latency.md says how to get a TFLM tree.")
    p.add_argument("run_dir", nargs="?", default=None, help="run directory with model_int8.tflite (optional with --preset)")
    p.add_argument("--tflm-dir", default=None, help="tflite-micro source tree with its third-party downloads (required)")
    p.add_argument("--target", choices=TARGETS, default="cortex-m4", help="cortex-m4 (qemu, default) or host")
    p.add_argument("--kernels", choices=(*KERNELS, "both"), default="cmsis-nn",
                   help="Cortex-M4 kernels: cmsis-nn (default), reference or both")
    p.add_argument("--preset", default=None, help="also measure this preset's default graph (random weights) at --lengths")
    p.add_argument("--lengths", type=positive_int, nargs="+", default=None, help="sequence lengths for --preset")
    p.add_argument("--out", default="runs/bench/latency", help="output folder (default runs/bench/latency)")
    p.add_argument("--jobs", type=positive_int, default=2, help="make -j (default 2)")
    p.add_argument("--table-kernels", action="store_true",
                   help="register int8 LOGISTIC, SOFTMAX, MEAN and ADD with the project's kernels, as the exported "
                   "packages do by default (micro_app/src/embbert_kernels.cc; bit-identical to TFLM's reference, "
                   "checked element by element in a second build)")
    p.add_argument("--kernel-opt", choices=("O2", "O3", "Os"), default=None,
                   help="optimisation level of TFLM's kernels and CMSIS-NN (default: TFLM's -O2); another level "
                   "builds into its own gen/ folder")
    p.set_defaults(func=_cmd_latency)
