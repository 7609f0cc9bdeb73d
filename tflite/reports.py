"""The arena report as a user reads it: Markdown (`report_markdown`) and a PNG per board (`report_plot`),
from the dict `arena.measure_arena` returns."""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from .latency import estimate_markdown
from .probe import ALIGN

KIB = 1024


def _kib(n: int) -> str:
    return f"{n / KIB:.1f} KiB"


def report_markdown(r: dict[str, Any], runtime_flash_bytes: int, runtime_ram_bytes: int) -> str:
    """The report as a user reads it: bytes, with KiB (1 KiB = 1,024 bytes) in brackets, throughout.
    `runtime_*_bytes`: TFLM's own flash and static RAM, counted in the board fit (`arena.board_fit`)."""
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
              f"kernels ({runtime_flash_bytes:,}: the CMSIS-NN build of TFLM 90b983c2 for the 14 operators of "
              "the deployed graph, measured in a linked Nano 33 BLE firmware, docs/arduino.md); RAM needed: the arena + "
              f"{runtime_ram_bytes:,} of TFLM's static RAM.", "",
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
    import matplotlib  # lazy: half a second of import, only for the PNG

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


__all__ = ["report_markdown", "report_plot"]
