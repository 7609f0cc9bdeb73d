"""Arena-size report: the exact smallest TFLM tensor arena, the recommended one, board fit.

* `minimal_arena(data)`: the smallest arena (a multiple of 16 bytes) with which the
  TFLM interpreter allocates the model and runs one inference; found by bisection
  (the interpreter raises when the arena is too small), so it works at the result
  and fails 16 bytes below it.
* `arena_report(run_dir)`: that minimum confirmed by the RecordingMicroAllocator
  breakdown, the recommended arena (minimum + margin, see `margin_bytes`), model
  bytes, total footprint, largest tensors, MACs, host TFLM latency and a fit table
  for the target boards -> arena_report.json / .md / .png.

Margin (derived, see `margin_for`): the exact scratch the CMSIS-NN kernels of this graph
request on a Cortex-M4 (their `*_get_buffer_size` rules, read from the public sources):
DEPTHWISE_CONV_2D with one output channel per input channel, batch 1 and no dilation asks for
2 x in-channels x kernel taps bytes (arm_depthwise_conv_s8_opt_get_buffer_size_dsp);
FULLY_CONNECTED and BATCH_MATMUL s8 ask for 0 bytes without MVE (Helium); SOFTMAX, ADD, MUL,
TRANSPOSE none. TFLM places the scratch in the shared arena for the life of its operator, so
at worst it adds its size to the peak.

Pointer size (derived, see `pointer_savings`): the minimum is measured on the 64-bit host; the
boards are 32-bit (Cortex-M4, Xtensa), where TFLM's bookkeeping structs are smaller. Counted only
where TFLM's struct layout fixes the figure (tensorflow/lite/core/c/common.h, the
TF_LITE_STATIC_MEMORY structs TFLM builds with): one TfLiteEvalTensor per tensor (data pointer,
dims pointer, type: 24 B on the host, 12 B on a 32-bit target) and one NodeAndRegistration per
operator (TfLiteNode: six pointers and an int, plus a registration pointer: 64 B, 32 B). Kernel
data holding pointers shrinks too and is not counted (CMSIS-NN's kernels may keep a few more
words of it than the reference kernels measured here), so this estimates the saving from below.
Checked against the one device measurement we have (../shared/reference/deployment.md): the
example model `micro_app/example/emotion-tiny-L64`, host minimum 61,232 B, ran on a Cortex-M4 in
57,700 B (3,532 B less); the rule derives 2,756 B, so a 32-bit minimum of 58,476 B, above the
measured one. Recommended arena (32-bit target) = host minimum - that saving + the margin; a 64-bit
host build of the exported app uses host minimum + margin (`model_settings.h` picks by pointer
width).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from embbert.core import layout
from embbert.core.boards import BOARD_KEYS, BOARDS, board
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

from .check import tflm_interpreter
from .convert import captured_stderr, load_tflite
from .graph import Graph, macs, read_graph
from .latency import estimate_graph, estimate_markdown

ALIGN = 16
MARGIN_ROUND = 16
KIB = 1024
#: TFLM + CMSIS-NN + EmbBERT's C interface for the 14 operators of the deployed graph (the main job's model),
#: measured in the linked firmware of the Nano 33 BLE (ArduinoCore-mbed 4.6.0, EmbBERT_TFLM from TFLM 90b983c2,
#: arm-none-eabi-gcc 12.2, `-Os` framework / `-O2` kernels, --gc-sections; docs/arduino.md): 130,808 B of flash
#: (an earlier 12-operator graph without PAD and TRANSPOSE: 122,810 B), 1,117 B of static RAM. A model with other
#: operator types links their kernels. The ESP32 figures are not measured: these are used.
TFLM_RUNTIME_FLASH_BYTES = 130_808
TFLM_RUNTIME_RAM_BYTES = 1_117

def arena_budget_for(key: str) -> int:
    """RAM a board leaves for the tensor arena (after the rest of the firmware and TFLM's own statics)."""
    b = board(key)
    return b["ram_bytes"] - b["ram_reserve_bytes"] - TFLM_RUNTIME_RAM_BYTES


def tokenizer_table_bytes(run_dir) -> int | None:
    """Flash of the on-device tokenizer tables (the arrays `embbert export` writes), None without a tokenizer."""
    try:
        config = EmbBertConfig.load(run_dir)
        return table_bytes(config.tokenizer_dir(Path(run_dir)))
    except (EmbBertError, OSError):
        return None


def table_bytes(tokenizer_dir) -> int:
    """Flash of the on-device tokenizer tables of a tokenizer directory."""
    from embbert.datasets.tokenizer import build_tokenizer_tables

    t = build_tokenizer_tables(tokenizer_dir)
    return (2 * len(t.byte_ids) + 8 * len(t.merges) + 6 * len(t.norm) + sum(len(o) for _, o in t.norm)
            + 8 * len(t.drop_ranges) + 4 * len(t.classes))


def _invoke_once(interp, graph: Graph) -> None:
    for pos, idx in enumerate(graph.inputs):
        t = graph.tensors[idx]
        interp.set_input(np.zeros(t.shape, dtype=np.int32 if t.dtype == "int32" else np.int8), pos)
    interp.invoke()


_PROBE = r"""
import os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
shapes = [(tuple(int(v) for v in s.split(",")), np.dtype(d)) for s, d in (x.split(":") for x in sys.argv[2].split(";"))]
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 2)
for line in sys.stdin:
    n = int(line)
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=n)
        for pos, (shape, dtype) in enumerate(shapes):
            interp.set_input(np.zeros(shape, dtype), pos)
        interp.invoke()
        ok = 1
    except RuntimeError:
        ok = 0
    print(ok, flush=True)
"""


class ArenaProbe:
    """Tries arena sizes in a child process (the TFLM Python runtime).

    TFLM's Python runtime crashes (SIGSEGV in `Interpreter.__init__`) for some arena sizes far
    below the minimum instead of reporting them too small (tiny preset, L=32: 20,160 bytes; any
    other size from 1,000 to 36,544 was refused cleanly). A crash in the child counts as "does not
    fit" and the child is restarted, so the bisection never takes the command down."""

    def __init__(self, tflite_bytes: bytes, graph: Graph | None = None):
        import tempfile

        graph = graph or read_graph(tflite_bytes)
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")
        self._file.write(bytes(tflite_bytes))
        self._file.flush()
        self._shapes = ";".join(
            f"{','.join(map(str, graph.tensors[i].shape))}:{'int32' if graph.tensors[i].dtype == 'int32' else 'int8'}"
            for i in graph.inputs)
        self._proc = None

    def _start(self):
        import subprocess
        import sys

        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE, self._file.name, self._shapes],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)

    def works(self, arena_size: int) -> bool:
        for _ in range(2):
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            try:
                self._proc.stdin.write(f"{int(arena_size)}\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except BrokenPipeError:
                line = ""
            if line.strip() in ("0", "1"):
                return line.strip() == "1"
            self._proc.wait()
            if self._proc.returncode not in (None, 0) and self._proc.returncode < 0:
                self._proc = None
                return False  # killed by a signal for this size: it does not work with it
            self._proc = None
        raise EmbBertError("the TFLM probe process failed to start (is tflite-micro installed?)")

    def close(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def arena_works(tflite_bytes: bytes, arena_size: int, graph: Graph | None = None) -> bool:
    """True when TFLM allocates the model in `arena_size` bytes and runs one inference."""
    with ArenaProbe(tflite_bytes, graph) as probe:
        return probe.works(arena_size)


_MINIMA: dict[str, int] = {}  # sha256 of the model -> its minimal arena (the bisection is deterministic)


def minimal_arena(tflite_bytes: bytes) -> int:
    """The smallest arena (multiple of 16 bytes) TFLM accepts for the model: bisection."""
    import hashlib

    key = hashlib.sha256(bytes(tflite_bytes)).hexdigest()
    if key not in _MINIMA:
        _MINIMA[key] = _bisect_arena(tflite_bytes)
    return _MINIMA[key]


def _bisect_arena(tflite_bytes: bytes) -> int:
    graph = read_graph(tflite_bytes)
    with ArenaProbe(tflite_bytes, graph) as probe:
        hi = max(ALIGN, (len(tflite_bytes) // 4) // ALIGN * ALIGN)
        while not probe.works(hi):
            hi *= 2
            if hi > 1 << 31:
                raise EmbBertError("TFLM does not accept the model with any arena up to 2 GB")
        lo = 0  # a 0-byte arena never works
        while hi - lo > ALIGN:
            mid = (lo + hi) // 2 // ALIGN * ALIGN
            if mid <= lo:
                mid = lo + ALIGN
            if probe.works(mid):
                hi = mid
            else:
                lo = mid
    return hi


_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CAT = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


def recorded_allocations(tflite_bytes: bytes, arena_size: int) -> dict[str, Any]:
    """RecordingMicroAllocator breakdown after one inference (print_allocations, parsed)."""
    graph = read_graph(tflite_bytes)
    interp = tflm_interpreter(tflite_bytes, arena_size)
    with captured_stderr():
        _invoke_once(interp, graph)
    with captured_stderr() as log:
        interp.print_allocations()
    text = "\n".join(log)
    totals = {k: int(v) for k, v in _TOTAL.findall(text)}
    if "total" not in totals:
        raise EmbBertError("TFLM printed no allocation record (RecordingMicroAllocator output not found)")
    cats = {name: {"bytes": int(b), "requested_bytes": int(r), "allocations": int(n)}
            for name, b, r, n in _CAT.findall(text)}
    return {"total_bytes": totals["total"], "non_persistent_bytes": totals.get("head", 0),
            "persistent_bytes": totals.get("tail", 0), "categories": cats}


def host_latency_ms(tflite_bytes: bytes, arena_size: int, runs: int = 20) -> float:
    """Host TFLM time per inference: the minimum CPU time (process_time) of `runs` invokes, which a
    loaded machine inflates far less than a wall-clock median."""
    graph = read_graph(tflite_bytes)
    interp = tflm_interpreter(tflite_bytes, arena_size)
    times = []
    with captured_stderr():
        _invoke_once(interp, graph)
        for _ in range(runs):
            # TFLM reuses the input buffers for later tensors: set the inputs before every invoke
            for pos, idx in enumerate(graph.inputs):
                interp.set_input(np.zeros(graph.tensors[idx].shape, dtype=np.int32), pos)
            t0 = time.process_time()
            interp.invoke()
            times.append(time.process_time() - t0)
    return round(1000 * min(times), 3)


def cmsis_nn_scratch(graph: Graph) -> list[dict[str, Any]]:
    """Scratch buffers the CMSIS-NN kernels request for this graph on a Cortex-M4 (DSP, no MVE)."""
    out = []
    for op in graph.ops:
        if op.name == "DEPTHWISE_CONV_2D" and len(op.inputs) > 1:
            x, w = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
            y = graph.tensors[op.outputs[0]].shape
            if len(x) == 4 and len(w) == 4 and x[0] == 1 and x[3] == y[3]:
                out.append({"op": op.index, "name": op.name, "bytes": 2 * x[3] * w[1] * w[2],
                            "rule": "arm_depthwise_conv_s8_opt_get_buffer_size_dsp: 2 x in-channels x taps"})
    return out


def scratch_estimate(graph: Graph) -> int:
    """The largest CMSIS-NN scratch buffer of the graph (scratch buffers live one operator each)."""
    return max((s["bytes"] for s in cmsis_nn_scratch(graph)), default=0)


def margin_for(min_arena: int, graph: Graph) -> int:
    """The largest CMSIS-NN scratch, rounded up to 16 bytes (see module doc)."""
    return int(-(-max(scratch_estimate(graph), MARGIN_ROUND) // MARGIN_ROUND) * MARGIN_ROUND)


#: Bytes per tensor (TfLiteEvalTensor) and per operator (NodeAndRegistration) that a 32-bit target
#: needs less than the 64-bit host (module doc): 24 -> 12 and 64 -> 32.
EVAL_TENSOR_BYTES = {64: 24, 32: 12}
NODE_AND_REGISTRATION_BYTES = {64: 64, 32: 32}


SAVING_PER_TENSOR = EVAL_TENSOR_BYTES[64] - EVAL_TENSOR_BYTES[32]
SAVING_PER_OPERATOR = NODE_AND_REGISTRATION_BYTES[64] - NODE_AND_REGISTRATION_BYTES[32]


def pointer_savings(graph: Graph) -> int:
    """What a 32-bit target's arena needs less than the 64-bit host's (TFLM's struct sizes, module doc)."""
    return SAVING_PER_TENSOR * len(graph.tensors) + SAVING_PER_OPERATOR * len(graph.ops)


def recommended_arena(min_arena: int, graph: Graph) -> int:
    """The arena to give TFLM on a 32-bit board: host minimum - pointer savings + margin, 16-byte multiple."""
    raw = min_arena - pointer_savings(graph) + margin_for(min_arena, graph)
    return int(-(-raw // ALIGN) * ALIGN)


def host_arena(min_arena: int, graph: Graph) -> int:
    """The arena for a 64-bit host build: host minimum + margin."""
    return min_arena + margin_for(min_arena, graph)


def largest_tensors(graph: Graph, n: int = 8, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
    acts = [t for t in graph.tensors if not t.constant]
    acts.sort(key=lambda t: -t.nbytes)
    return [_tensor_row(t, names) for t in acts[:n]]


def _tensor_row(t, names: dict[int, str] | None) -> dict[str, Any]:
    from .graph import layer_of

    name = (names or {}).get(t.index) or t.name
    return {"index": t.index, "name": name.split(";")[0], "layer": layer_of(name), "dtype": t.dtype,
            "shape": t.shape, "bytes": t.nbytes}


def peak_tensors(graph: Graph, names: dict[int, str] | None = None) -> dict[str, Any]:
    """The operator at which the most bytes are alive in the shared arena, and those tensors."""
    from .planner import plan_buffers

    buffers = plan_buffers(graph)
    if not buffers:
        return {"op": None, "bytes": 0, "tensors": []}
    end = max(b.last for b in buffers)
    scope = max(range(end + 1), key=lambda s: sum(b.size for b in buffers if b.first <= s <= b.last))
    live = sorted((b for b in buffers if b.first <= scope <= b.last), key=lambda b: -b.size)
    op = graph.ops[scope - 1] if scope >= 1 else None
    return {"op": f"#{op.index} {op.name}" if op else "inputs", "bytes": sum(b.size for b in live),
            "tensors": [_tensor_row(graph.tensors[b.tensor], names) for b in live]}


def persistent_copies(graph: Graph) -> list[dict[str, Any]]:
    """BATCH_MATMULs for which TFLM keeps a persistent transposed copy of an input (adj_y unset / adj_x set)."""
    from .graph import batch_matmul_flags

    out = []
    for op, (adj_x, adj_y) in batch_matmul_flags(graph).items():
        o = graph.ops[op]
        if not adj_y:
            out.append({"op": op, "input": "rhs", "bytes": graph.tensors[o.inputs[1]].nbytes})
        if adj_x:
            out.append({"op": op, "input": "lhs", "bytes": graph.tensors[o.inputs[0]].nbytes})
    return out


def board_fit(model_bytes: int, arena_bytes: int, tokenizer_bytes: int | None = None) -> list[dict[str, Any]]:
    """Fit per board: RAM for the arena and TFLM's statics; flash for model + tokenizer tables + TFLM runtime."""
    flash_need = model_bytes + (tokenizer_bytes or 0) + TFLM_RUNTIME_FLASH_BYTES
    ram_need = arena_bytes + TFLM_RUNTIME_RAM_BYTES
    rows = []
    for b in BOARDS:
        ram = b["ram_bytes"] - b["ram_reserve_bytes"]
        flash = b["flash_bytes"] - b["flash_reserve_bytes"]
        rows.append({**b, "ram_available_bytes": ram, "flash_available_bytes": flash, "flash_needed_bytes": flash_need,
                     "ram_headroom_bytes": ram - ram_need, "flash_headroom_bytes": flash - flash_need,
                     "fits": ram_need <= ram and flash_need <= flash})
    return rows


def _kib(n: int) -> str:
    return f"{n / KIB:.1f} KiB"


def report_markdown(r: dict[str, Any]) -> str:
    """The report as a user reads it: bytes, with KiB (1 KiB = 1,024 bytes) in brackets, throughout."""
    br, pk = r["breakdown"], r["peak"]
    title = f"# TFLM arena report: {r.get('run', '')} (L={r.get('max_length', '?')})"
    lines = [
        title, "",
        "Units: bytes, with KiB (1 KiB = 1,024 bytes) in brackets.", "",
        f"Model `{r['model_file']}`: {r['model_bytes']:,} bytes ({_kib(r['model_bytes'])}); graph options: "
        f"{r.get('graph_options', 'unknown')}; ops {', '.join(r['ops'])}.", "",
        "| figure | bytes |", "|---|---:|",
        f"| model (flash) | {r['model_bytes']:,} ({_kib(r['model_bytes'])}) |",
        f"| minimal arena (host, bisection to {ALIGN} B) | {r['min_arena_bytes']:,} ({_kib(r['min_arena_bytes'])}) |",
        f"| - persistent (TFLM bookkeeping, kernel data, transposed copies) | {br['persistent_bytes']:,} |",
        f"| - shared (tensors, planned) | {br['non_persistent_bytes']:,} |",
        f"| - what a 32-bit target needs less (TFLM structs, derived) | {r.get('pointer_savings_bytes', 0):,} |",
        f"| + margin (CMSIS-NN scratch) | {r['margin_bytes']:,} |",
        f"| recommended arena (RAM of a 32-bit board) | {r['recommended_arena_bytes']:,} "
        f"({_kib(r['recommended_arena_bytes'])}) |",
        f"| arena of a 64-bit host build (minimum + margin) | {r.get('host_arena_bytes', r['recommended_arena_bytes']):,} |",
        f"| model + recommended arena | {r['total_footprint_bytes']:,} ({_kib(r['total_footprint_bytes'])}) |", "",
        f"Margin: {r['margin_rule']}.", "",
        f"32-bit saving: {r.get('pointer_savings_rule', 'not derived (report written before it was)')}.", "",
        f"Speed: {r['macs']:,} MACs per inference ({', '.join(f'{k} {v:,}' for k, v in r['macs_per_op'].items())}); "
        f"host TFLM {r['host_latency_ms']} ms per inference (minimum CPU time of 20 invokes, reference kernels, "
        "x86-64).", "",
        f"## Tensors alive at the peak (operator {pk['op']}, {pk['bytes']:,} bytes)", "",
        "| tensor | layer | shape | bytes |", "|---|---|---|---:|",
    ]
    for t in pk["tensors"]:
        lines.append(f"| `{t['name']}` | {t['layer']} | {t['shape']} | {t['bytes']:,} |")
    copies = r["persistent_copies"]
    lines += ["", "## Persistent transposed copies (BATCH_MATMUL without adj_y)", ""]
    if copies:
        lines += [f"- operator #{c['op']}: {c['input']} copy, {c['bytes']:,} bytes" for c in copies]
    else:
        lines.append("None: every BATCH_MATMUL reads its inputs in place.")
    plan = r.get("memory_plan") or {}
    if plan:
        lines += ["", f"Memory plan: best first-fit plan of the tensors {plan.get('planned_bytes', 0):,} bytes "
                  f"({plan.get('rule')}; live-bytes lower bound {plan.get('live_lower_bound_bytes', 0):,}); TFLM's "
                  f"minimal arena {plan.get('tflm_min_arena_without_plan', '?'):,} bytes with its own greedy plan, "
                  f"{plan.get('tflm_min_arena_with_plan', '?'):,} with the offline plan: "
                  f"{'offline plan written into the model' if plan.get('written') else 'not written (no gain)'}."]
    if r.get("latency_estimate"):
        lines += [""] + estimate_markdown(r["latency_estimate"])
    lines += ["", "## Arena breakdown (RecordingMicroAllocator)", "",
              "| category | bytes | requested | allocations |", "|---|---:|---:|---:|"]
    for name, c in br["categories"].items():
        lines.append(f"| {name} | {c['bytes']:,} | {c['requested_bytes']:,} | {c['allocations']} |")
    lines += ["", "## Board fit", "",
              f"Flash needed: model + tokenizer tables ({r.get('tokenizer_table_bytes') or 0:,}) + TFLM runtime and "
              f"kernels ({TFLM_RUNTIME_FLASH_BYTES:,}: the CMSIS-NN build of TFLM 90b983c2 for the 14 operators of "
              "the deployed graph, measured in a linked Nano 33 BLE firmware, docs/arduino.md); RAM needed: the arena + "
              f"{TFLM_RUNTIME_RAM_BYTES:,} of TFLM's static RAM.", "",
              "| board | RAM for the arena | arena | RAM headroom | flash available | flash needed | flash headroom "
              "| fits |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for b in r["boards"]:
        lines.append(f"| {b['name']} | {b['ram_available_bytes']:,} | {r['recommended_arena_bytes']:,} | "
                     f"{b['ram_headroom_bytes']:,} | {b['flash_available_bytes']:,} | {b['flash_needed_bytes']:,} | "
                     f"{b['flash_headroom_bytes']:,} | {'yes' if b['fits'] else 'NO'} |")
    lines += ["", "Reserves:", ""] + [f"- {b['name']}: {b['reserve_note']}." for b in r["boards"]]
    return "\n".join(lines) + "\n"


def report_plot(r: dict[str, Any]) -> bytes:
    """One panel per board: RAM (arena vs what the board leaves) and flash (needed vs available), in KiB."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boards = r["boards"]
    fig, axes = plt.subplots(1, len(boards), figsize=(4 * len(boards), 3.6))
    for ax, b in zip(np.atleast_1d(axes), boards):
        kinds = ("RAM", "flash")
        avail = [b["ram_available_bytes"] / KIB, b["flash_available_bytes"] / KIB]
        used = [r["recommended_arena_bytes"] / KIB, b["flash_needed_bytes"] / KIB]
        for i in range(2):
            ok = used[i] <= avail[i]
            ax.barh(i, avail[i], color="#dddddd", label="available" if i == 0 else None)
            ax.barh(i, used[i], height=0.5, color="#4a9a4a" if ok else "#cc4444",
                    label=("needed: fits" if ok else "needed: does NOT fit"))
            ax.text(used[i], i, f" {used[i]:.0f}{' ok' if ok else ' NO'}", va="center", fontsize=8)
        ax.set_yticks([0, 1], kinds)
        ax.set_xlim(0, max(max(avail), max(used)) * 1.25)
        ax.set_xlabel("KiB")
        ax.set_title(f"{b['name']}: {'fits' if b['fits'] else 'does NOT fit'}", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{r.get('run', '')} L={r.get('max_length', '?')}: arena {r['recommended_arena_bytes']:,} B, "
                 f"model {r['model_bytes']:,} B", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def measure_arena(data: bytes, *, info: dict | None = None, tokenizer_bytes: int | None = None,
                  run: str = "") -> dict[str, Any]:
    """The arena report of a full-int8 FlatBuffer (what `arena_report` writes and `embbert.arena_report`
    returns): the bisected TFLM minimum, confirmed by the recording allocator, the recommended arena,
    footprint, board fit, MACs and host latency. `info`: the conversion's record (tensor names,
    memory plan, graph options); `tokenizer_bytes`: the on-device tokenizer tables, counted in the
    board fit."""
    graph = read_graph(data)
    info = info or {}
    names = {int(k): v for k, v in (info.get("names") or {}).items()}
    minimum = minimal_arena(data)
    breakdown = recorded_allocations(data, minimum)
    if breakdown["total_bytes"] > minimum:
        raise EmbBertError(f"recorded arena {breakdown['total_bytes']} bytes exceeds the bisected minimum {minimum}")
    margin = margin_for(minimum, graph)
    recommended, host = recommended_arena(minimum, graph), host_arena(minimum, graph)
    m = macs(graph)
    scratch = cmsis_nn_scratch(graph)
    return {
        "model_file": layout.INT8_MODEL,
        "run": run,
        "model_bytes": len(data),
        "min_arena_bytes": minimum,
        "recorded_arena_bytes": breakdown["total_bytes"],
        "alignment_slack_bytes": minimum - breakdown["total_bytes"],
        "margin_bytes": margin,
        "margin_rule": (f"the largest CMSIS-NN scratch buffer of this graph on a Cortex-M4, "
                        f"{scratch_estimate(graph):,} bytes ({scratch[0]['rule'] if scratch else 'none requested'}), "
                        f"rounded up to {MARGIN_ROUND} bytes"),
        "cmsis_nn_scratch": scratch,
        "pointer_savings_bytes": pointer_savings(graph),
        "pointer_savings_rule": (f"{len(graph.tensors)} tensors x {SAVING_PER_TENSOR} B (TfLiteEvalTensor) + "
                                 f"{len(graph.ops)} operators x {SAVING_PER_OPERATOR} B "
                                 "(NodeAndRegistration) that a 32-bit target needs less than the 64-bit host "
                                 "(TFLM's struct sizes; kernel data not counted)"),
        "recommended_arena_bytes": recommended,
        "host_arena_bytes": host,
        "total_footprint_bytes": len(data) + recommended,
        "tokenizer_table_bytes": tokenizer_bytes,
        "tflm_runtime_flash_bytes": TFLM_RUNTIME_FLASH_BYTES,
        "breakdown": breakdown,
        "peak": peak_tensors(graph, names),
        "persistent_copies": persistent_copies(graph),
        "largest_tensors": largest_tensors(graph, names=names),
        "memory_plan": info.get("plan"),
        "graph_options": GraphOptionsLabel(info.get("options")),
        "macs": m["total"],
        "macs_per_op": m["per_op"],
        "host_latency_ms": host_latency_ms(data, host),
        "latency_estimate": estimate_graph(graph),  # an estimate (tflite/latency.py, docs/latency.md)
        "ops": graph.op_names,
        "boards": board_fit(len(data), recommended, tokenizer_bytes),
        "host": "x86-64 (64-bit pointers), tflite-micro Python runtime, reference kernels",
    }


def write_report(directory, report: dict[str, Any]) -> None:
    """arena_report.json / .md / .png into `directory`."""
    directory = Path(directory)
    png = report_plot(report)
    atomic_write_text(directory / layout.ARENA_JSON, json.dumps(report, indent=2) + "\n")
    atomic_write_text(directory / layout.ARENA_MD, report_markdown(report))
    atomic_write_bytes(directory / layout.ARENA_PNG, png)


def arena_report(run_dir, *, write: bool = True) -> dict[str, Any]:
    """Measure the model of RUN_DIR (`measure_arena`) and write arena_report.json / .md / .png."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory)")
    data = load_tflite(run_dir / layout.INT8_MODEL)
    info = {}
    try:
        info = json.loads((run_dir / layout.TENSOR_NAMES).read_text())
    except (OSError, ValueError):
        pass
    report = measure_arena(data, info=info, tokenizer_bytes=tokenizer_table_bytes(run_dir), run=run_dir.name)
    try:
        config = EmbBertConfig.load(run_dir)
        report["config"] = {"preset": config.preset}
        report["max_length"] = config.max_length
    except EmbBertError:
        pass
    if write:
        write_report(run_dir, report)
    return report


def GraphOptionsLabel(options: dict | None) -> str:  # noqa: N802 - reads as the label it returns
    if not options:
        return "unknown (model converted before graph options were recorded)"
    on = [k if v is True else f"{k}={v}" for k, v in options.items() if v and not (k == "query_blocks" and v == 1)]
    return ", ".join(on) if on else "none"


__all__ = ["minimal_arena", "arena_report", "measure_arena", "write_report", "arena_works", "recorded_allocations", "BOARDS", "BOARD_KEYS",
           "ArenaProbe", "arena_budget_for", "board", "board_fit", "margin_for", "cmsis_nn_scratch", "peak_tensors",
           "pointer_savings", "recommended_arena", "host_arena",
           "persistent_copies", "TFLM_RUNTIME_FLASH_BYTES", "TFLM_RUNTIME_RAM_BYTES"]
