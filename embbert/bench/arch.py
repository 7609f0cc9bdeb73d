"""`embbert bench arch`: EmbBERT against the papers' baselines, each on the same path and recipe.

Every size preset given (default: the default size of each architecture) goes through `bench accuracy`'s
machinery task by task (learning rate chosen on the first seed's validation score, then every seed:
fit, QAT, full-int8 conversion, the TFLite and TFLM checks, the arena report), into
RUNS_DIR/<preset>/; an interrupted benchmark resumes run by run. The table gives, per task and
preset, the int8 TFLM metric (mean and sample standard deviation over the seeds), the measured total
memory (model FlatBuffer + recommended 32-bit arena) and the MACs of the deployed graph; one PNG per
task plots metric against memory with the Pareto front (no other preset both smaller and better).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from embbert.core import layout, preflight
from embbert.core.args import add_recipe_arguments, non_negative_int, positive_float, positive_int
from embbert.core.config import ARCH_DEFAULT_PRESET, PRESETS, QUICK_RECIPE
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

DEFAULT_TASKS = ("emotion", "snips", "imdb", "sst2", "cola", "mrpc")
#: mamba's unrolled scan takes minutes to convert (docs/baselines.md): named with --presets only
DEFAULT_PRESETS = tuple(p for a, p in ARCH_DEFAULT_PRESET.items() if a != "mamba")


def register(bsub) -> None:
    a = bsub.add_parser(
        "arch",
        help="EmbBERT and the baseline architectures on the same tasks: metric, memory, MACs, Pareto front",
        description="Train, quantise, convert and check every size preset of --presets (default: the default "
        "size of each architecture: " + ", ".join(DEFAULT_PRESETS) + ") on every task, with one recipe for "
        "all (the learning rate of --lr-grid chosen per preset and task on validation, then every seed). "
        "Writes arch.md, arch.json and arch_<task>.png (int8 TFLM metric against measured memory, with the "
        "Pareto front) into RUNS_DIR/results, or --docs-dir. Resumes run by run.",
    )
    a.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS),
                   help="task names or task directories (default: " + " ".join(DEFAULT_TASKS) + ")")
    a.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(DEFAULT_PRESETS), metavar="PRESET",
                   help="size presets to compare, of any architecture (`embbert model summary --arch A` lists them)")
    a.add_argument("--max-length", type=positive_int, default=None, help="L for every task (default: each task's)")
    add_recipe_arguments(a, QUICK_RECIPE, why_lr=", embbert run's")
    a.add_argument("--lr-grid", type=positive_float, nargs="+", default=[3e-4, 1e-3, 3e-3], metavar="LR",
                   help="float learning rates tried per preset and task with the first seed, the QAT rate scaled "
                   "alike; the best validation score is kept (default 3e-4 1e-3 3e-3)")
    a.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="seeds per preset and task (default 0 1 2)")
    a.add_argument("--max-train-examples", type=positive_int, default=None, help="seeded subset of each train split")
    a.add_argument("--max-test-examples", type=positive_int, default=None, help="limit each check to N test examples")
    a.add_argument("--data-dir", default=None, help="data directory (default $EMBBERT_DATA_DIR, else the hub)")
    a.add_argument("--runs-dir", default="runs/bench-arch", help="where the run directories go (default runs/bench-arch)")
    a.add_argument("--docs-dir", default=None, help="where arch.md/.json/.png go (default RUNS_DIR/results)")
    a.add_argument("--merge", default=None, metavar="ARCH_JSON",
                   help="an earlier arch.json of the same recipe (learning-rate grid, seeds, epochs, batch, subsets): "
                   "its rows for the (preset, task) pairs not run now are kept in the table, so a comparison "
                   "made on another machine goes on without its run directories")
    a.set_defaults(func=cmd_arch)


MERGE_KEYS = ("lr_grid", "seeds", "epochs", "qat_epochs", "batch_size", "max_train_examples", "max_test_examples")


def read_merge(args) -> dict[str, Any] | None:
    """The earlier arch.json of --merge, read before anything is written (it may be the file being replaced),
    checked to be of this recipe."""
    if args.merge is None:
        return None
    path = args.merge
    try:
        earlier = json.loads(Path(path).read_text())
        earlier["rows"], earlier["path"] = list(earlier["rows"]), path
    except FileNotFoundError:
        raise EmbBertError(f"--merge {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbBertError(f"--merge {path}: not an arch.json ({exc})") from None
    mine = {k: getattr(args, k) for k in MERGE_KEYS}
    diff = [f"{k} {earlier.get(k)} != {v}" for k, v in mine.items() if earlier.get(k) != v]
    if diff:
        raise EmbBertError(f"--merge {path}: another recipe ({'; '.join(diff)})")
    return earlier


def merge_results(results: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """`results` with the rows of an earlier arch.json of the same recipe for the (preset, task) pairs it lacks."""
    rows = earlier["rows"]
    have = {(r["preset"], r["task"]) for r in results["rows"]}
    kept = [r for r in rows if (r["preset"], r["task"]) not in have]
    return {**results, "rows": kept + results["rows"],
            "presets": list(dict.fromkeys(earlier.get("presets", []) + results["presets"])),
            "tasks": list(dict.fromkeys(earlier.get("tasks", []) + results["tasks"])),
            "duration_s": round(earlier.get("duration_s", 0) + results["duration_s"], 1),
            "skipped": [s for s in earlier.get("skipped", []) if (s["preset"], s["task"]) not in have]
            + results["skipped"], "merged_from": earlier["path"]}


def _accuracy_args(args, preset: str) -> argparse.Namespace:
    """`bench accuracy`'s arguments for one preset (every architecture from scratch: one recipe for all)."""
    ns = argparse.Namespace(**vars(args))
    ns.preset = preset
    ns.runs_dir = str(Path(args.runs_dir) / preset)
    ns.docs_dir = str(Path(args.runs_dir) / preset / "results")
    ns.init = None
    return ns


def _graph_macs(run_dir: str) -> int | None:
    from embbert.tflite.graph import macs, read_graph

    path = Path(run_dir) / layout.INT8_MODEL
    return macs(read_graph(path.read_bytes()))["total"] if path.is_file() else None


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (memory, metric) points: True where no other point has memory <= and metric >= with one strict."""
    out = []
    for i, (m, s) in enumerate(points):
        dominated = any((m2 <= m and s2 >= s) and (m2 < m or s2 > s) for j, (m2, s2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def run_arch(args) -> dict[str, Any]:
    from embbert.keras_model.model import parameter_counts
    from embbert.core.config import EmbBertConfig

    from .accuracy import run_accuracy

    started = time.time()
    rows, skipped = [], []
    for preset in args.presets:
        m = PRESETS[preset]
        params = parameter_counts(EmbBertConfig.create(preset, min(64, m.max_positions)))["backbone_params"]
        print(f"\n=== {preset} ({m.arch}, {params:,} backbone parameters) ===", flush=True)
        result = run_accuracy(_accuracy_args(args, preset))
        for row in result["rows"]:
            rows.append({"preset": preset, "arch": m.arch, "backbone_params": params,
                         "macs": _graph_macs(row["run_dirs"][0]), **row})
        skipped += [{"preset": preset, **s} for s in result["skipped"]]
        write_results(_results(args, rows, skipped, started), _out_dir(args))
    return _results(args, rows, skipped, started)


def _out_dir(args) -> Path:
    return Path(args.docs_dir) if args.docs_dir is not None else Path(args.runs_dir) / "results"


def _results(args, rows, skipped, started) -> dict[str, Any]:
    results = {"tasks": args.tasks, "presets": args.presets, "lr_grid": args.lr_grid, "seeds": args.seeds,
               "epochs": args.epochs, "qat_epochs": args.qat_epochs, "batch_size": args.batch_size,
               "max_train_examples": args.max_train_examples, "max_test_examples": args.max_test_examples,
               "duration_s": round(time.time() - started, 1), "rows": rows, "skipped": skipped}
    earlier = getattr(args, "merged", None)
    return merge_results(results, earlier) if earlier else results


def _cell(mean, sd) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Architectures at the same recipe", "",
             f"Recipe: {results['epochs']} float + {results['qat_epochs']} QAT epochs, batch {results['batch_size']}, "
             f"learning rate chosen on validation from {results['lr_grid']} (first seed), seeds {results['seeds']}; "
             f"train examples: {results['max_train_examples'] or 'whole split'}, test examples: "
             f"{results['max_test_examples'] or 'whole split'}. Metric: the int8 model in the TFLM interpreter "
             "(mean ± sample sd over the seeds). Memory: model FlatBuffer + recommended arena (32-bit board), "
             "measured on the converted graph. Pareto: no other row of the task is both smaller and better."
             + (f" Rows of presets not run by the last call come from `{results['merged_from']}` (same recipe)."
                if results.get("merged_from") else ""), ""]
    by_task: dict[str, list[dict]] = {}
    for row in results["rows"]:
        by_task.setdefault(row["task"], []).append(row)
    for task, rows in by_task.items():
        front = pareto([(r["total_bytes"], r["tflm"] if r["tflm"] is not None else float("-inf")) for r in rows])
        lines += [f"## {task} (L={rows[0]['max_length']}, {rows[0]['metric']})", "",
                  "| preset | arch | backbone params | lr | int8 TFLM | seeds | model B | arena B | total B | MACs | Pareto |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"]
        for r, on in sorted(zip(rows, front), key=lambda x: x[0]["total_bytes"]):
            lines.append(f"| {r['preset']} | {r['arch']} | {r['backbone_params']:,} | {r['learning_rate']:g} | "
                         f"{_cell(r['tflm'], r['tflm_std'])} | {len(r['seeds'])} | {r['model_bytes']:,} | "
                         f"{r['arena_bytes']:,} | {r['total_bytes']:,} | "
                         f"{'–' if r['macs'] is None else format(r['macs'], ',')} | {'yes' if on else ''} |")
        lines.append("")
        atomic_write_bytes(out / f"arch_{task}.png", _plot(task, rows, front))
    if results["skipped"]:
        lines += ["## Skipped", ""] + [f"- {s['preset']} / {s['task']}: {s['reason']}" for s in results["skipped"]]
    atomic_write_text(out / "arch.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "arch.json", json.dumps(results, indent=1) + "\n")


def _plot(task: str, rows: list[dict], front: list[bool]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for r, on in zip(rows, front):
        if r["tflm"] is None:
            continue
        ax.errorbar(r["total_bytes"] / 1024, r["tflm"], yerr=r["tflm_std"] or 0, fmt="o" if on else "x", capsize=3,
                    color="C0" if on else "0.5")
        ax.annotate(r["preset"], (r["total_bytes"] / 1024, r["tflm"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    pts = sorted((r["total_bytes"] / 1024, r["tflm"]) for r, on in zip(rows, front) if on and r["tflm"] is not None)
    if len(pts) > 1:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="C0", alpha=0.5, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("total memory, KiB (model + arena, 32-bit board)")
    ax.set_ylabel(f"int8 TFLM {rows[0]['metric']} (%)")
    ax.set_title(f"{task}: architectures at the same recipe")
    return png_bytes(fig)


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (gridded, tight layout), the figure closed."""
    import io

    import matplotlib.pyplot as plt

    fig.axes[0].grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def check_arch_args(args) -> None:
    from embbert.datasets.loading import data_dir_arg
    from embbert.datasets.tasks import task_arg

    for task in args.tasks:
        task_arg(task)
    for preset in args.presets:
        preflight.max_length(args.max_length, preset)
    args.data_dir = data_dir_arg(args.data_dir)
    preflight.output_dir(args.runs_dir, "--runs-dir")
    preflight.output_dir(_out_dir(args), "--docs-dir")
    args.presets = list(dict.fromkeys(args.presets))
    args.seeds = list(dict.fromkeys(args.seeds))


def cmd_arch(args) -> int:
    check_arch_args(args)
    args.merged = read_merge(args)
    results = run_arch(args)
    if not results["rows"]:
        first = results["skipped"][0] if results["skipped"] else None
        raise EmbBertError("no task ran, nothing written" + (f" ({first['task']}: {first['reason']})" if first else ""))
    print(f"\nwrote {_out_dir(args) / 'arch.md'} ({len(results['rows'])} rows, {len(results['skipped'])} skipped)")
    return 0


__all__ = ["register", "run_arch", "pareto", "write_results"]
