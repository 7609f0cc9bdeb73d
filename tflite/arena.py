"""Arena-size report: the exact smallest TFLM tensor arena, the recommended one, board fit.

* `minimal_arena(data)`: the smallest arena (a multiple of 16 bytes) with which the
  TFLM interpreter allocates the model and runs one inference; found by bisection
  (the interpreter raises when the arena is too small), so it works at the result
  and fails 16 bytes below it.
* `arena_report(run_dir)`: that minimum confirmed by the RecordingMicroAllocator
  breakdown, the recommended arena (minimum + margin, see `margin_bytes`), model
  bytes, total footprint, largest tensors, MACs, host TFLM latency and a fit table
  for the target boards -> arena_report.json / .md / .png.

Margin: the minimum is measured on the host (64-bit pointers, reference kernels).
On a Cortex-M / Xtensa build the pointer-holding structures shrink, but the
optimised kernels (CMSIS-NN, ESP-NN) request scratch buffers the reference kernels
do not (im2col-style int16 copies for convolutions: about 2 bytes x input channels
x kernel taps), and a different TFLM version can change its bookkeeping. So the
recommended arena is the host minimum + 10 % + that scratch estimate, rounded up
to 256 bytes.
"""
from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from embbert.config import EmbBertConfig, atomic_write_bytes, atomic_write_text
from embbert.errors import EmbBertError

from .check import tflm_interpreter
from .convert import INT8_MODEL, captured_stderr, load_tflite
from .ops import Graph, macs, read_graph

REPORT_JSON = "arena_report.json"
REPORT_MD = "arena_report.md"
REPORT_PNG = "arena_report.png"
ALIGN = 16
MARGIN_FRACTION = 0.10
MARGIN_ROUND = 256
KIB = 1024

#: Target boards (../shared/reference/deployment.md) and the share the rest of the firmware takes.
BOARDS = (
    {"name": "Arduino Nano 33 BLE", "ram_bytes": 256 * KIB, "flash_bytes": 1024 * KIB,
     "ram_reserve_bytes": 64 * KIB, "flash_reserve_bytes": 256 * KIB,
     "reserve_note": "Mbed OS core, stacks and heap ~64 KB RAM; bootloader + Mbed OS + TFLM code ~256 KB flash"},
    {"name": "ESP32", "ram_bytes": 320 * KIB, "flash_bytes": 4096 * KIB,
     "ram_reserve_bytes": 64 * KIB, "flash_reserve_bytes": 1024 * KIB,
     "reserve_note": "320 KB usable static DRAM minus ~64 KB for ESP-IDF/FreeRTOS; "
                     "bootloader, partitions and IDF + TFLM code ~1 MB flash"},
    {"name": "ESP32-S3", "ram_bytes": 512 * KIB, "flash_bytes": 8192 * KIB,
     "ram_reserve_bytes": 128 * KIB, "flash_reserve_bytes": 1024 * KIB,
     "reserve_note": "~128 KB SRAM for ESP-IDF, caches and stacks (no PSRAM assumed); "
                     "bootloader, partitions and IDF + TFLM code ~1 MB flash"},
)


def _invoke_once(interp, graph: Graph) -> None:
    for pos, idx in enumerate(graph.inputs):
        t = graph.tensors[idx]
        interp.set_input(np.zeros(t.shape, dtype=np.int32 if t.dtype == "int32" else np.int8), pos)
    interp.invoke()


def arena_works(tflite_bytes: bytes, arena_size: int, graph: Graph | None = None) -> bool:
    """True when TFLM allocates the model in `arena_size` bytes and runs one inference."""
    graph = graph or read_graph(tflite_bytes)
    try:
        interp = tflm_interpreter(tflite_bytes, arena_size)
        with captured_stderr():
            _invoke_once(interp, graph)
    except (EmbBertError, RuntimeError) as exc:
        if "too small" in str(exc) or isinstance(exc, RuntimeError):
            return False
        raise
    return True


def minimal_arena(tflite_bytes: bytes) -> int:
    """The smallest arena (multiple of 16 bytes) TFLM accepts for the model: bisection."""
    graph = read_graph(tflite_bytes)
    hi = max(ALIGN, (len(tflite_bytes) // 4) // ALIGN * ALIGN)
    while not arena_works(tflite_bytes, hi, graph):
        hi *= 2
        if hi > 1 << 31:
            raise EmbBertError("TFLM does not accept the model with any arena up to 2 GB")
    lo = 0  # a 0-byte arena never works
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            mid = lo + ALIGN
        if arena_works(tflite_bytes, mid, graph):
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
    graph = read_graph(tflite_bytes)
    interp = tflm_interpreter(tflite_bytes, arena_size)
    times = []
    with captured_stderr():
        _invoke_once(interp, graph)
        for _ in range(runs):
            # TFLM reuses the input buffers for later tensors: set the inputs before every invoke
            for pos, idx in enumerate(graph.inputs):
                interp.set_input(np.zeros(graph.tensors[idx].shape, dtype=np.int32), pos)
            t0 = time.perf_counter()
            interp.invoke()
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 3)


def scratch_estimate(graph: Graph) -> int:
    """Largest optimised-kernel scratch buffer (CMSIS-NN/ESP-NN im2col, int16): 2 x in-channels x taps."""
    best = 0
    for op in graph.ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
            x, w = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
            if len(x) == 4 and len(w) == 4:
                best = max(best, 2 * x[3] * w[1] * w[2])
    return best


def margin_for(min_arena: int, graph: Graph) -> int:
    raw = MARGIN_FRACTION * min_arena + scratch_estimate(graph)
    return int(-(-raw // MARGIN_ROUND) * MARGIN_ROUND)


def largest_tensors(graph: Graph, n: int = 8) -> list[dict[str, Any]]:
    acts = [t for t in graph.tensors if not t.constant]
    acts.sort(key=lambda t: -t.nbytes)
    return [{"name": t.name.split(";")[0], "layer": t.layer, "dtype": t.dtype, "shape": t.shape,
             "bytes": t.nbytes} for t in acts[:n]]


def board_fit(model_bytes: int, arena_bytes: int) -> list[dict[str, Any]]:
    rows = []
    for b in BOARDS:
        ram = b["ram_bytes"] - b["ram_reserve_bytes"]
        flash = b["flash_bytes"] - b["flash_reserve_bytes"]
        rows.append({**b, "ram_available_bytes": ram, "flash_available_bytes": flash,
                     "ram_headroom_bytes": ram - arena_bytes, "flash_headroom_bytes": flash - model_bytes,
                     "fits": arena_bytes <= ram and model_bytes <= flash})
    return rows


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} kB"


def report_markdown(r: dict[str, Any]) -> str:
    br = r["breakdown"]
    lines = [
        "# TFLM arena report", "",
        f"Model `{r['model_file']}`: {r['model_bytes']} bytes ({_kb(r['model_bytes'])}), "
        f"ops {', '.join(r['ops'])}.", "",
        "| figure | bytes |", "|---|---:|",
        f"| model (flash) | {r['model_bytes']} |",
        f"| minimal arena (host, bisection to {ALIGN} B) | {r['min_arena_bytes']} |",
        f"| recorded arena total (RecordingMicroAllocator) | {br['total_bytes']} |",
        f"| - persistent (tail) | {br['persistent_bytes']} |",
        f"| - non-persistent (head) | {br['non_persistent_bytes']} |",
        f"| margin | {r['margin_bytes']} |",
        f"| recommended arena (RAM) | {r['recommended_arena_bytes']} |",
        f"| total footprint (model + recommended arena) | {r['total_footprint_bytes']} |", "",
        f"Margin: {r['margin_rule']}", "",
        f"MACs per inference: {r['macs']} ({', '.join(f'{k} {v}' for k, v in r['macs_per_op'].items())}). "
        f"Host TFLM time per inference: {r['host_latency_ms']} ms (median of 20, reference kernels).", "",
        "## Arena breakdown (RecordingMicroAllocator)", "",
        "| category | bytes | requested | allocations |", "|---|---:|---:|---:|",
    ]
    for name, c in br["categories"].items():
        lines.append(f"| {name} | {c['bytes']} | {c['requested_bytes']} | {c['allocations']} |")
    lines += ["", "## Largest activation tensors", "", "| tensor | layer | shape | bytes |", "|---|---|---|---:|"]
    for t in r["largest_tensors"]:
        lines.append(f"| `{t['name']}` | {t['layer']} | {t['shape']} | {t['bytes']} |")
    lines += ["", "## Board fit (recommended arena)", "",
              "| board | RAM for arena | arena | RAM headroom | flash for model | model | flash headroom | fits |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for b in r["boards"]:
        lines.append(f"| {b['name']} | {_kb(b['ram_available_bytes'])} | {_kb(r['recommended_arena_bytes'])} | "
                     f"{_kb(b['ram_headroom_bytes'])} | {_kb(b['flash_available_bytes'])} | {_kb(r['model_bytes'])} | "
                     f"{_kb(b['flash_headroom_bytes'])} | {'yes' if b['fits'] else 'NO'} |")
    lines += ["", "Reserves assumed:", ""] + [f"- {b['name']}: {b['reserve_note']}." for b in r["boards"]]
    return "\n".join(lines) + "\n"


def report_plot(r: dict[str, Any]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boards = r["boards"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(boards))
    names = [b["name"] for b in boards]
    for ax, kind, used, label in ((axes[0], "flash", r["model_bytes"], "model"),
                                  (axes[1], "ram", r["recommended_arena_bytes"], "recommended arena")):
        total = [b[f"{kind}_bytes"] / 1000 for b in boards]
        avail = [b[f"{kind}_available_bytes"] / 1000 for b in boards]
        ax.bar(x - 0.2, total, 0.4, label=f"board {kind}", color="#cccccc")
        ax.bar(x - 0.2, avail, 0.4, label=f"{kind} after reserve", color="#88aadd")
        ax.bar(x + 0.2, [used / 1000] * len(boards), 0.4, label=label, color="#dd7744")
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel("kB")
        ax.set_title(f"{'Model bytes vs flash' if kind == 'flash' else 'Arena bytes vs RAM'}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def arena_report(run_dir, *, write: bool = True) -> dict[str, Any]:
    """Measure the model of RUN_DIR and write arena_report.json / .md / .png."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory)")
    data = load_tflite(run_dir / INT8_MODEL)
    graph = read_graph(data)
    minimum = minimal_arena(data)
    breakdown = recorded_allocations(data, minimum)
    if breakdown["total_bytes"] > minimum:
        raise EmbBertError(f"recorded arena {breakdown['total_bytes']} bytes exceeds the bisected minimum {minimum}")
    margin = margin_for(minimum, graph)
    recommended = minimum + margin
    m = macs(graph)
    report = {
        "model_file": INT8_MODEL,
        "model_bytes": len(data),
        "min_arena_bytes": minimum,
        "recorded_arena_bytes": breakdown["total_bytes"],
        "alignment_slack_bytes": minimum - breakdown["total_bytes"],
        "margin_bytes": margin,
        "margin_rule": (f"{int(MARGIN_FRACTION * 100)} % of the host minimum (64-bit host vs 32-bit target "
                        f"bookkeeping, TFLM version drift) + {scratch_estimate(graph)} bytes of optimised-kernel "
                        f"scratch (CMSIS-NN/ESP-NN: 2 x in-channels x taps of the largest convolution), "
                        f"rounded up to {MARGIN_ROUND} bytes"),
        "recommended_arena_bytes": recommended,
        "total_footprint_bytes": len(data) + recommended,
        "breakdown": breakdown,
        "largest_tensors": largest_tensors(graph),
        "macs": m["total"],
        "macs_per_op": m["per_op"],
        "host_latency_ms": host_latency_ms(data, recommended),
        "ops": graph.op_names,
        "boards": board_fit(len(data), recommended),
        "host": "x86-64 (64-bit pointers), tflite-micro Python runtime, reference kernels",
    }
    try:
        report["config"] = {"preset": EmbBertConfig.load(run_dir).preset}
    except EmbBertError:
        pass
    if write:
        png = report_plot(report)
        atomic_write_text(run_dir / REPORT_JSON, json.dumps(report, indent=2) + "\n")
        atomic_write_text(run_dir / REPORT_MD, report_markdown(report))
        atomic_write_bytes(run_dir / REPORT_PNG, png)
    return report


__all__ = ["minimal_arena", "arena_report", "arena_works", "recorded_allocations", "BOARDS", "REPORT_JSON"]
