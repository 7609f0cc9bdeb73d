"""Latency of a deployed graph on the boards: estimate arithmetic (no TFLM, no TensorFlow).

Two uses:

* `embbert bench latency` (embbert/bench/latency.py) measures instructions per operator on an
  emulated Cortex-M4 and turns them into a time per board with `board_estimates`;
* `embbert convert`'s arena report shows, beside the bytes, an estimate made without any build:
  the graph's work per operator type (MACs for the matrix operators, elements for the rest) times
  the instructions per unit that `embbert bench latency` measured for each operator type
  (`INSTRUCTIONS_PER_UNIT`, CMSIS-NN and reference kernels, docs/latency.md), then the same
  board arithmetic. Both are estimates: the instruction counts of the emulator are exact, the
  cycles per instruction (CPI) of a real chip are an assumption stated with a range.
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


def estimate_graph(graph) -> dict[str, Any]:
    """An estimate without any build: the graph's work per operator type x the measured instructions per
    unit, for both kernel sets, and the board arithmetic of `board_estimates`."""
    work = graph_work(graph)
    per_tag = {k: {t: int(round(u * coef.get(t, UNMEASURED_PER_UNIT))) for t, u in work.items()}
               for k, coef in INSTRUCTIONS_PER_UNIT.items()}
    counts = {k: sum(v.values()) for k, v in per_tag.items()}
    counts["esp-nn-like"] = esp_nn_like(per_tag)
    return {"instructions": counts, "per_op_cmsis_nn": dict(sorted(per_tag["cmsis-nn"].items(), key=lambda kv: -kv[1])),
            "unmeasured_ops": sorted(t for t in work if t not in INSTRUCTIONS_PER_UNIT["cmsis-nn"]),
            "macs_per_op": macs(graph)["per_op"], "boards": board_estimates(counts),
            "method": "work per operator type x Cortex-M4 instructions per unit measured by `embbert bench "
                      "latency` (docs/latency.md) x an assumed CPI range / clock; not a measurement"}


def estimate_markdown(est: dict[str, Any]) -> list[str]:
    """The arena report's latency section (lines)."""
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
