"""Latency of a deployed graph on the boards: estimate arithmetic (no TFLM, no TensorFlow).

Two uses:

* `embbert bench latency` (embbert/bench/latency.py) measures instructions per operator on an
  emulated Cortex-M4 and turns them into a time per board with `board_estimates`;
* `embbert convert`'s arena report shows, beside the bytes, an estimate made without any build:
  the graph's work per operator type (MACs for the matrix operators, elements for the rest) times
  the instructions per unit that `embbert bench latency` measured for each operator type
  (`INSTRUCTIONS_PER_UNIT`, CMSIS-NN and reference kernels, docs/latency.md), then the same
  board arithmetic. It is for what the exported package runs: TFLM's kernels, and the project's
  int8 LOGISTIC/SOFTMAX/MEAN/ADD kernels (micro_app/src/embbert_kernels.h, `PROJECT_KERNEL_COST`)
  where the package registers them (all four for the Nano 33 BLE; LOGISTIC and MEAN on ESP-IDF,
  whose ADD and SOFTMAX are ESP-NN's). The stock-TFLM figures are kept beside it. Both are
  estimates: the instruction counts of the emulator are exact, the cycles per instruction (CPI)
  of a real chip are an assumption stated with a range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embbert.core.boards import BOARDS as REGISTRY

from .graph import macs, op_macs


@dataclass(frozen=True)
class Board:
    name: str
    mhz: float
    cpi: tuple[float, float]  # assumed cycles per (Thumb-2) instruction: low, high
    basis: str  # which kernels' instruction counts the estimate uses
    note: str


#: What the estimate assumes per board (the clock and the name come from the one board registry,
#: `embbert.core.boards`): the core, the cycles per Thumb-2 instruction (low, high), whose instruction
#: counts it uses, and why (docs/latency.md explains them).
_ASSUMPTIONS = {
    "nano33ble": ("nRF52840, Cortex-M4F", (1.0, 1.6), "cmsis-nn",
                  "same instruction set as the emulated M4; CPI 1.0 (every instruction single-cycle) to 1.6 (2-cycle "
                  "loads, taken branches refilling the 3-stage pipeline, flash cache misses)"),
    "esp32": ("Xtensa LX6", (1.0, 2.0), "esp-nn-like",
              "Thumb-2 counts as a proxy for Xtensa ones; CMSIS-NN counts for the operators ESP-NN accelerates (ADD, "
              "MUL, FULLY_CONNECTED, DEPTHWISE_CONV_2D, SOFTMAX), reference counts for the rest (BATCH_MATMUL has no "
              "ESP-NN kernel); CPI 1.0 to 2.0 (code and constants through the flash cache)"),
    "esp32s3": ("Xtensa LX7", (1.0, 2.0), "esp-nn-like",
                "as the ESP32; ESP-NN's S3 SIMD kernels may do the accelerated operators in fewer instructions, so the "
                "upper end is the more pessimistic"),
}


def _boards() -> tuple[Board, ...]:
    return tuple(Board(f"{b['name']} ({_ASSUMPTIONS[b['key']][0]})", float(b["mhz"]), *_ASSUMPTIONS[b["key"]][1:])
                 for b in REGISTRY if b["key"] in _ASSUMPTIONS)


BOARDS = _boards()
#: Operators ESP-NN accelerates (esp-tflite-micro; ../shared/reference/deployment.md).
ESP_NN_OPS = frozenset({"ADD", "MUL", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "SOFTMAX", "CONV_2D"})
#: Operators whose work is counted in MACs (the rest: output elements; MEAN: input elements).
MAC_OPS = frozenset({"FULLY_CONNECTED", "BATCH_MATMUL", "DEPTHWISE_CONV_2D", "CONV_2D"})


def estimate_ms(instructions: float, mhz: float, cpi: float) -> float:
    """Milliseconds for `instructions` at `cpi` cycles each on a `mhz` MHz core."""
    if mhz <= 0 or cpi <= 0 or instructions < 0:
        raise ValueError("instructions >= 0, mhz > 0 and cpi > 0 expected")
    return instructions * cpi / (mhz * 1e3)


def esp_nn_like(per_tag: dict[str, dict[str, int]]) -> int | None:
    """Instructions per inference with CMSIS-NN counts for the operators ESP-NN accelerates and reference
    counts for the rest; None without both kernel sets. `per_tag`: {kernels: {tag: instructions}}."""
    if "cmsis-nn" not in per_tag or "reference" not in per_tag:
        return None
    tags = set(per_tag["cmsis-nn"]) | set(per_tag["reference"])
    return int(sum(per_tag["cmsis-nn" if t in ESP_NN_OPS else "reference"].get(t, 0) for t in tags))


def board_estimates(instructions: dict[str, int | None]) -> list[dict[str, Any]]:
    """Estimated ms per board from Cortex-M4 instruction counts per inference.

    `instructions`: {"cmsis-nn": n, "reference": n, "esp-nn-like": n} (any may be missing or None)."""
    rows = []
    for b in BOARDS:
        n = instructions.get(b.basis)
        basis = b.basis
        if n is None and b.basis == "esp-nn-like":  # only one kernel set measured
            basis = "cmsis-nn" if instructions.get("cmsis-nn") is not None else "reference"
            n = instructions.get(basis)
        if n is None:
            continue
        rows.append({"board": b.name, "mhz": b.mhz, "cpi_low": b.cpi[0], "cpi_high": b.cpi[1], "basis": basis,
                     "instructions": int(n), "ms_low": estimate_ms(n, b.mhz, b.cpi[0]),
                     "ms_high": estimate_ms(n, b.mhz, b.cpi[1]), "note": b.note})
    return rows


def graph_work(graph) -> dict[str, int]:
    """Work per operator type of a graph (`tflite.graph.Graph`): MACs for the matrix operators, input
    elements for MEAN, output elements for the rest."""
    work: dict[str, int] = {}
    for op in graph.ops:
        if op.name in MAC_OPS:
            units = op_macs(graph, op)
        elif op.name == "MEAN":
            units = int(np.prod(graph.tensors[op.inputs[0]].shape or [1]))
        else:
            units = int(np.prod(graph.tensors[op.outputs[0]].shape or [1])) if op.outputs else 0
        work[op.name] = work.get(op.name, 0) + int(units)
    return work


#: Cortex-M4 instructions per unit of work (`graph_work`) of each operator type, measured by `embbert bench
#: latency` (qemu mps2-an386, TFLM 90b983c2, BUILD_TYPE=release_with_logs, kernels -O2) on four graphs: the
#: main job's model (emotion, tiny, L=64) and the embbert preset at L=64/128/256; pooled totals / pooled work.
#: It predicts those four within 5.1 % and three other graphs (the earlier committed example's older graph, a tiny
#: graph with random weights, the SAME-convolution form) within 4.4 % (docs/latency.md).
INSTRUCTIONS_PER_UNIT = {
    "cmsis-nn": {"BATCH_MATMUL": 2.27, "SOFTMAX": 520.96, "FULLY_CONNECTED": 1.85, "LOGISTIC": 357.66, "ADD": 90.91,
                 "DEPTHWISE_CONV_2D": 9.06, "MUL": 43.59, "MEAN": 95.47, "TRANSPOSE": 5.07, "RSQRT": 433.23,
                 "RESHAPE": 0.55, "GATHER": 1.77, "PAD": 0.54, "STRIDED_SLICE": 10.3},
    "reference": {"BATCH_MATMUL": 9.35, "FULLY_CONNECTED": 7.53, "DEPTHWISE_CONV_2D": 32.08, "SOFTMAX": 448.29,
                  "LOGISTIC": 357.66, "ADD": 95.96, "MUL": 49.72, "MEAN": 95.47, "PAD": 32.71, "TRANSPOSE": 5.28,
                  "RSQRT": 433.23, "RESHAPE": 0.55, "GATHER": 1.77, "STRIDED_SLICE": 10.31},
}
#: For an operator type not measured: instructions per element of a simple int8 element-wise kernel.
UNMEASURED_PER_UNIT = 50.0


#: The project's kernels (micro_app/src/embbert_kernels.h): (Cortex-M4 instructions per call, per unit of `graph_work`),
#: measured with `embbert bench latency --table-kernels` (qemu mps2-an386, TFLM 90b983c2, CMSIS-NN build; the kernels
#: are the same code in every build). The per-call part is the 256-entry tables built at every Invoke (LOGISTIC: 256
#: reference evaluations). LOGISTIC, SOFTMAX, MEAN: fitted on one operator each of the main job's model (L=64) and the
#: per-type totals of the embbert graph at L=256; ADD per element on the main job, for same-shape inputs ("ADD") and
#: one input repeated along the rows, the attention mask ("ADD_ROW"); docs/latency.md.
PROJECT_KERNEL_COST = {"LOGISTIC": (91620.0, 6.987), "SOFTMAX": (32375.0, 64.99), "MEAN": (370.0, 4.375),
                       "ADD": (0.0, 40.98), "ADD_ROW": (0.0, 52.21)}
#: Below these sizes (output elements) the kernels hand the work to TFLM's reference functions (embbert_kernels.cc).
PROJECT_KERNEL_MIN_ELEMENTS = {"LOGISTIC": 256, "SOFTMAX": 256, "ADD": 512, "MEAN": 1}
#: Which operators each board's exported package registers with the project's kernels (embbert_tflm.cc): every
#: target but ESP-IDF all four; ESP-IDF LOGISTIC and MEAN (esp-tflite-micro's ADD and SOFTMAX are ESP-NN kernels).
_ALL_PROJECT_OPS = frozenset({"LOGISTIC", "SOFTMAX", "MEAN", "ADD"})
PACKAGE_PROJECT_OPS = {"cmsis-nn": _ALL_PROJECT_OPS, "reference": _ALL_PROJECT_OPS,
                       "esp-nn-like": frozenset({"LOGISTIC", "MEAN"})}


def _shape(graph, index: int) -> list[int]:
    return list(graph.tensors[index].shape or [1])


def _add_form(graph, op) -> str | None:
    """The ADD shapes the project's kernel handles itself (embbert_kernels.cc): "same" (both inputs of the output's
    shape) or "row" (one of them a row of it: right-aligned, every dimension but the last 1); None otherwise."""
    out = _shape(graph, op.outputs[0])

    def right(s, rank):
        return [1] * (rank - len(s)) + s
    ins = [_shape(graph, i) for i in op.inputs[:2]]
    rank = max(len(out), *(len(s) for s in ins))
    o = right(out, rank)
    same = [right(s, rank) == o for s in ins]
    row = [right(s, rank)[-1] == o[-1] and all(d == 1 for d in right(s, rank)[:-1]) for s in ins]
    if same[0] and same[1]:
        return "same"
    return "row" if (same[0] and row[1]) or (same[1] and row[0]) else None


def _project_kernel_mode(graph, op) -> str | None:
    """How the package runs `op` when it registers the project's kernel for its type: "table" (the project's code),
    "reference" (int8 but too small or a broadcast the kernel hands to TFLM's reference functions), or None (not
    int8: the package registers TFLM's kernel for the type, `cgen.project_kernel_ops`)."""
    name = op.name
    if name not in _ALL_PROJECT_OPS or not op.outputs:
        return None
    data = list(op.inputs[:2] if name == "ADD" else op.inputs[:1]) + [op.outputs[0]]
    if any(i < 0 or graph.tensors[i].dtype != "int8" for i in data):
        return None
    if int(np.prod(_shape(graph, op.outputs[0]))) < PROJECT_KERNEL_MIN_ELEMENTS[name]:
        return "reference"
    return "table" if name != "ADD" or _add_form(graph, op) else "reference"


def _registered_project_ops(graph) -> set[str]:
    """The operator types the package registers with the project's kernels: every instance int8 (the rule of
    `cgen.project_kernel_ops`)."""
    modes: dict[str, bool] = {}
    for op in graph.ops:
        if op.name in _ALL_PROJECT_OPS:
            modes[op.name] = modes.get(op.name, True) and _project_kernel_mode(graph, op) is not None
    return {name for name, ok in modes.items() if ok}


def _op_units(graph, op) -> int:
    if op.name in MAC_OPS:
        return int(op_macs(graph, op))
    if op.name == "MEAN":
        return int(np.prod(_shape(graph, op.inputs[0])))
    return int(np.prod(_shape(graph, op.outputs[0]))) if op.outputs else 0


def _per_tag(graph, coef: dict[str, float], project: frozenset = frozenset()) -> dict[str, int]:
    """Predicted instructions per operator type with the coefficients `coef`, the operators in `project` with the
    project's kernels where they apply."""
    per_tag: dict[str, float] = {}
    registered = _registered_project_ops(graph) & set(project)
    for op in graph.ops:
        units = _op_units(graph, op)
        mode = _project_kernel_mode(graph, op) if op.name in registered else None
        if mode == "table":
            call, unit = PROJECT_KERNEL_COST["ADD_ROW" if op.name == "ADD" and _add_form(graph, op) == "row" else op.name]
            n = call + unit * units
        elif mode == "reference":
            n = units * INSTRUCTIONS_PER_UNIT["reference"].get(op.name, UNMEASURED_PER_UNIT)
        else:
            n = units * coef.get(op.name, UNMEASURED_PER_UNIT)
        per_tag[op.name] = per_tag.get(op.name, 0.0) + n
    return {t: int(round(v)) for t, v in per_tag.items()}


def estimate_graph(graph) -> dict[str, Any]:
    """An estimate without any build, for what the exported package runs (`instructions`, `boards`: TFLM's kernels
    and the project's kernels where the package registers them) and for stock TFLM (`stock_instructions`,
    `stock_boards`): the graph's work per operator x the measured instructions per unit, then the board arithmetic
    of `board_estimates`."""
    work = graph_work(graph)
    stock = {k: _per_tag(graph, coef) for k, coef in INSTRUCTIONS_PER_UNIT.items()}
    package = {k: _per_tag(graph, coef, PACKAGE_PROJECT_OPS[k]) for k, coef in INSTRUCTIONS_PER_UNIT.items()}
    stock_counts = {k: sum(v.values()) for k, v in stock.items()}
    stock_counts["esp-nn-like"] = esp_nn_like(stock)
    counts = {k: sum(v.values()) for k, v in package.items()}
    # ESP-IDF: ESP-NN's operators (CMSIS-NN counts as their proxy) stay; LOGISTIC and MEAN run the project's kernels
    esp = {**{t: stock["cmsis-nn" if t in ESP_NN_OPS else "reference"][t] for t in work},
           **{t: package["reference"][t] for t in PACKAGE_PROJECT_OPS["esp-nn-like"] if t in work}}
    counts["esp-nn-like"] = int(sum(esp.values()))
    project_ops = sorted(_registered_project_ops(graph))
    return {"instructions": counts, "stock_instructions": stock_counts,
            "per_op_cmsis_nn": dict(sorted(package["cmsis-nn"].items(), key=lambda kv: -kv[1])),
            "stock_per_op_cmsis_nn": dict(sorted(stock["cmsis-nn"].items(), key=lambda kv: -kv[1])),
            "project_kernel_ops": project_ops,
            "unmeasured_ops": sorted(t for t in work if t not in INSTRUCTIONS_PER_UNIT["cmsis-nn"]),
            "macs_per_op": macs(graph)["per_op"], "boards": board_estimates(counts),
            "stock_boards": board_estimates(stock_counts),
            "kernels": "the exported package's: TFLM's kernels (CMSIS-NN on the Nano 33 BLE, ESP-NN on the ESP32s) "
                       f"and the project's int8 kernels for {', '.join(project_ops) or 'no operator'} "
                       "(LOGISTIC and MEAN only on ESP-IDF; micro_app/src/embbert_kernels.h)",
            "method": "work per operator x Cortex-M4 instructions per unit (and per call for the project's kernels) "
                      "measured by `embbert bench latency` (docs/latency.md) x an assumed CPI range / clock; "
                      "not a measurement"}


def estimate_markdown(est: dict[str, Any]) -> list[str]:
    """The arena report's latency section (lines)."""
    if "stock_instructions" not in est:  # an arena_report.json written before the package estimate: stock TFLM only
        return _stock_estimate_markdown(est)
    lines = ["## Latency (an estimate, not a measurement)", "",
             f"Method: {est['method']}. Kernels: {est['kernels']}. Predicted Cortex-M4 instructions per inference "
             f"of the exported package: {est['instructions']['cmsis-nn']:,} with CMSIS-NN (stock TFLM: "
             f"{est['stock_instructions']['cmsis-nn']:,}), {est['instructions']['reference']:,} with TFLM's reference "
             f"kernels (stock: {est['stock_instructions']['reference']:,}).", "",
             "| board | clock | CPI assumed | instructions (basis) | estimated ms, exported package | stock TFLM |",
             "|---|---:|---|---:|---:|---:|"]
    stock = {b["board"]: b for b in est.get("stock_boards", [])}
    for b in est["boards"]:
        s = stock.get(b["board"])
        stock_ms = f"{s['ms_low']:.0f}-{s['ms_high']:.0f}" if s else "-"
        lines.append(f"| {b['board']} | {b['mhz']:.0f} MHz | {b['cpi_low']}-{b['cpi_high']} | {b['instructions']:,} "
                     f"({b['basis']}) | {b['ms_low']:.0f}-{b['ms_high']:.0f} | {stock_ms} |")
    total = max(est["instructions"]["cmsis-nn"], 1)
    stock_ops = est.get("stock_per_op_cmsis_nn", {})
    lines += ["", "| operator (CMSIS-NN build) | MACs | instructions, exported package | share | stock TFLM |",
              "|---|---:|---:|---:|---:|"]
    for t, n in est["per_op_cmsis_nn"].items():
        m = est["macs_per_op"].get(t)
        lines.append(f"| {t}{' (project kernel)' if t in est.get('project_kernel_ops', []) else ''} | "
                     f"{f'{m:,}' if m else '-'} | {n:,} | {100 * n / total:.1f} % | {stock_ops.get(t, n):,} |")
    if est["unmeasured_ops"]:
        lines += ["", f"Not measured, counted at {UNMEASURED_PER_UNIT:g} instructions per element: "
                  f"{', '.join(est['unmeasured_ops'])}."]
    return lines


def _stock_estimate_markdown(est: dict[str, Any]) -> list[str]:
    """The latency section of a report written before the package estimate (stock TFLM figures only), rendered as it
    was then: a committed report and its Markdown stay one rendering."""
    lines = ["## Latency (an estimate, not a measurement)", "",
             f"Method: {est['method']}. Predicted Cortex-M4 instructions per inference: "
             f"{est['instructions']['cmsis-nn']:,} with CMSIS-NN kernels, {est['instructions']['reference']:,} with "
             "the reference kernels.", "",
             "| board | clock | CPI assumed | instructions (basis) | estimated ms |", "|---|---:|---|---:|---:|"]
    for b in est["boards"]:
        lines.append(f"| {b['board']} | {b['mhz']:.0f} MHz | {b['cpi_low']}-{b['cpi_high']} | {b['instructions']:,} "
                     f"({b['basis']}) | {b['ms_low']:.0f}-{b['ms_high']:.0f} |")
    total = max(est["instructions"]["cmsis-nn"], 1)
    lines += ["", "| operator (CMSIS-NN) | MACs | instructions | share |", "|---|---:|---:|---:|"]
    for t, n in est["per_op_cmsis_nn"].items():
        m = est["macs_per_op"].get(t)
        lines.append(f"| {t} | {f'{m:,}' if m else '-'} | {n:,} | {100 * n / total:.1f} % |")
    if est["unmeasured_ops"]:
        lines += ["", f"Not measured, counted at {UNMEASURED_PER_UNIT:g} instructions per element: "
                  f"{', '.join(est['unmeasured_ops'])}."]
    return lines
