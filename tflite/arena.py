"""Arena-size report: the exact smallest TFLM tensor arena, the recommended one, board fit.

* the minimum is `probe.minimal_arena` (bisection with the TFLM interpreter in a child process);
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
On a Cortex-M4 it stays below the measured saving (../shared/reference/deployment.md: a model with a
host minimum of 61,232 B ran in 57,700 B, 3,532 B less; the rule derives 2,756 B for it). Recommended arena (32-bit target) = host minimum - that saving + the margin; a 64-bit
host build of the exported app uses host minimum + margin (`model_settings.h` picks by pointer
width).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embbert.core import layout
from embbert.core.boards import BOARD_KEYS, BOARDS, board
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

from embbert.datasets.tokenizer import build_tokenizer_tables, table_flash_bytes
from embbert.keras_model.forms import DeployForm

from .graph import Graph, batch_matmul_flags, layer_of, macs, read_graph
from .latency import estimate_graph
from .planner import plan_buffers
from .probe import ALIGN, host_latency_ms, minimal_arena, recorded_allocations
from .reports import report_markdown, report_plot
from .runtime import load_tflite

MARGIN_ROUND = 16
#: TFLM + CMSIS-NN + EmbBERT's C interface for the 14 operators of the deployed graph (the main job's model),
#: measured in the linked firmware of the Nano 33 BLE (ArduinoCore-mbed 4.6.0, EmbBERT_TFLM from TFLM 90b983c2,
#: arm-none-eabi-gcc 12.2, `-Os` framework / `-O2` kernels, --gc-sections; docs/arduino.md): 130,808 B of flash,
#: 1,117 B of static RAM. A model with other operator types links their kernels. The ESP32 figures are not measured: these are used.
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
    """Flash of the on-device tokenizer tables of a tokenizer directory (`ctables.table_flash_bytes`)."""
    return table_flash_bytes(build_tokenizer_tables(tokenizer_dir))


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
    name = (names or {}).get(t.index) or t.name
    return {"index": t.index, "name": name.split(";")[0], "layer": layer_of(name), "dtype": t.dtype,
            "shape": t.shape, "bytes": t.nbytes}


def peak_tensors(graph: Graph, names: dict[int, str] | None = None) -> dict[str, Any]:
    """The operator at which the most bytes are alive in the shared arena, and those tensors."""
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
        "graph_options": DeployForm.from_record(info["options"]).label() if info.get("options") else
        "unknown (model converted before graph options were recorded)",
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
    atomic_write_text(directory / layout.ARENA_MD,
                      report_markdown(report, TFLM_RUNTIME_FLASH_BYTES, TFLM_RUNTIME_RAM_BYTES))
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


__all__ = ["arena_report", "measure_arena", "write_report", "BOARDS", "BOARD_KEYS", "arena_budget_for", "table_bytes", "board", "board_fit", "margin_for", "cmsis_nn_scratch", "peak_tensors",
           "pointer_savings", "recommended_arena", "host_arena",
           "persistent_copies", "TFLM_RUNTIME_FLASH_BYTES", "TFLM_RUNTIME_RAM_BYTES"]
