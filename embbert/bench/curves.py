"""`embbert bench curves`: learning curves, pretrained start against scratch, over training-set sizes.

For each task, training-set size (`--max-train-examples`; `all` = the whole train split), seed and start
(`--inits`) one `embbert train` run (float + QAT) in its own cell directory:

    RUNS_DIR/<task>-<preset>-L<L>-e<E>q<Q>-lr<lr>-qlr<qat lr>[-bs<B>]/<start>-n<size>-s<seed>/

A cell whose `metrics.json` exists is reused (after checking that its config.json holds the same preset,
L, recipe, seed and size), one with an unfinished `.train/` state is resumed, so an interrupted grid
continues where it stopped. The starts:

    none          from scratch, a tokenizer trained on the task's train split (what `--init none` does)
    tiny_en, DIR  a shipped pretrained preset or an `embbert pretrain` directory (backbone + its tokenizer)
    tok:tiny_en   from scratch, but with that preset's tokenizer: separates the tokenizer from the weights

After every cell the results are written to OUT (default RUNS_DIR/results; the project's docs only when
named), as NAME.json (every cell: validation and test metric of the float and the QAT model, seconds),
NAME.md (mean ± sample sd over the seeds per size and start; decisions belong to the validation
tables, the test table is the final figure) and NAME_<task>.png (one learning-curve plot per task);
NAME is `curves` unless --name says otherwise.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from embbert.core import layout
from embbert.core.args import add_recipe_arguments, non_negative_int, positive_int
from embbert.core.config import PRESETS, QUICK_RECIPE, EmbBertConfig, TrainConfig
from embbert.core.errors import UsageError
from embbert.core.files import atomic_write_bytes, atomic_write_text
from .accuracy import same_recipe

ALL = "all"
SCRATCH = "none"
TOKENIZER_ONLY = "tok:"
CELL_INFO = "cell.json"  # written next to metrics.json by this benchmark: the start, wall and CPU seconds


def register(bsub) -> None:
    c = bsub.add_parser(
        "curves",
        help="learning curves: pretrained start vs scratch over training-set sizes and seeds",
        description="For each task x training-set size x seed x start, one float + QAT training run (the quick "
        "recipe by default: 3 + 1 epochs at 1e-3 / 1e-4). Cells already finished are reused, unfinished ones "
        "resumed. Writes NAME.json, NAME.md (mean ± sd over the seeds) and one NAME_<task>.png per task "
        "into --out (default RUNS_DIR/results; the project's docs only when named).",
    )
    c.add_argument("--tasks", nargs="+", default=["emotion"], help="task names or task directories (default emotion)")
    c.add_argument("--sizes", nargs="+", default=["300", "1000", "3000", ALL], metavar="N",
                   help="training-set sizes: seeded subsets of the train split, 'all' for the whole split "
                   "(default 300 1000 3000 all)")
    c.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="seeds (subset, validation split, initialisation; default 0 1 2)")
    c.add_argument("--inits", nargs="+", default=[SCRATCH, "tiny_en"], metavar="START",
                   help="starts: 'none' (scratch, task tokenizer), a shipped preset name or pretrained directory, "
                   "or 'tok:PRESET' (scratch weights with that preset's tokenizer) (default none tiny_en)")
    c.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size preset (default tiny)")
    c.add_argument("--max-length", type=positive_int, default=None, help="L (default: each task's)")
    add_recipe_arguments(c, QUICK_RECIPE, why_lr=", embbert run's", seed=False)  # the cells' seeds: --seeds
    c.add_argument("--data-dir", default=None, help="data directory (default $EMBBERT_DATA_DIR, else the hub)")
    c.add_argument("--runs-dir", default="runs/bench/curves", help="where the cell run directories go "
                   "(default runs/bench/curves)")
    c.add_argument("--out", default=None, help="where the results go (default RUNS_DIR/results)")
    c.add_argument("--name", default="curves", help="file name stem of the results: NAME.json, NAME.md, "
                   "NAME_<task>.png (default curves)")
    c.add_argument("--report-only", action="store_true",
                   help="train nothing: write the results of the cells already finished (a size and start with fewer "
                   "seeds than asked is marked partial, one with none 'not run'), e.g. while the grid runs elsewhere")
    c.set_defaults(func=cmd_curves)


# -- arguments (checked before TensorFlow is imported) ---------------------------------------------------
def size_arg(text: str) -> int | None:
    """'all' -> None (the whole train split), else a positive integer."""
    if str(text).lower() == ALL:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"--sizes: expected a positive integer or 'all', got {text!r}")
    return value


def size_tag(size: int | None) -> str:
    return ALL if size is None else str(size)


def start_of(spec: str) -> dict:
    """A start of `--inits`: {'tag', 'spec', 'init' (backbone dir or None), 'tokenizer' (dir or None)}."""
    from embbert.keras_model.presets import init_arg

    if spec == SCRATCH:
        return {"tag": SCRATCH, "spec": spec, "init": None, "tokenizer": None}
    if spec.startswith(TOKENIZER_ONLY):
        source = spec[len(TOKENIZER_ONLY):]
        backbone = init_arg(source)
        tok = EmbBertConfig.load(backbone).tokenizer_dir(backbone)
        if not tok.is_dir():
            raise UsageError(f"--inits {spec}: {tok}: tokenizer directory not found")
        return {"tag": f"tok-{Path(source).name}", "spec": spec, "init": None, "tokenizer": str(tok.resolve())}
    backbone = init_arg(spec)
    return {"tag": Path(spec).name, "spec": spec, "init": backbone, "tokenizer": None}


def check_curves_args(args) -> None:
    from embbert.core import preflight
    from embbert.datasets.loading import data_dir_arg
    from embbert.datasets.tasks import task_arg

    args.tasks = [task_arg(t) for t in dict.fromkeys(args.tasks)]
    sizes = [size_arg(s) for s in args.sizes]
    args.size_values = sorted(dict.fromkeys(sizes), key=lambda s: math.inf if s is None else s)
    args.seeds = list(dict.fromkeys(args.seeds))
    args.starts = [start_of(s) for s in dict.fromkeys(args.inits)]
    tags = [s["tag"] for s in args.starts]
    if len(set(tags)) != len(tags):
        raise UsageError(f"--inits: two starts share the name {sorted(t for t in tags if tags.count(t) > 1)[0]!r}")
    for start in args.starts:
        preflight.fits_preset(args.preset, start["init"], start["tokenizer"])
    preflight.max_length(args.max_length, args.preset)
    args.data_dir = data_dir_arg(args.data_dir)
    preflight.output_dir(args.runs_dir, "--runs-dir")
    preflight.output_dir(out_dir(args), "--out")
    if not args.name or "/" in args.name or "\\" in args.name:
        raise UsageError(f"--name: expected a file name stem, got {args.name!r}")


def out_dir(args) -> Path:
    return Path(args.out) if args.out is not None else Path(args.runs_dir) / "results"


# -- cells ----------------------------------------------------------------------------------------------
def task_name(task: str) -> str:
    return Path(task).name if Path(task).is_dir() else task


def group_dir(args, task: str, L: int) -> Path:
    stem = (f"{task_name(task)}-{args.preset}-L{L}-e{args.epochs}q{args.qat_epochs}-lr{args.learning_rate:g}"
            f"-qlr{args.qat_learning_rate:g}")
    if args.batch_size != QUICK_RECIPE.batch_size:
        stem += f"-bs{args.batch_size}"
    return Path(args.runs_dir) / stem


def cell_dir(args, task: str, L: int, start: dict, size: int | None, seed: int) -> Path:
    return group_dir(args, task, L) / f"{start['tag']}-n{size_tag(size)}-s{seed}"


def cell_config(args, task: str, L: int, start: dict, size: int | None, seed: int) -> EmbBertConfig:
    train = TrainConfig(epochs=args.epochs, qat_epochs=args.qat_epochs, learning_rate=args.learning_rate,
                        qat_learning_rate=args.qat_learning_rate, batch_size=args.batch_size, seed=seed,
                        max_train_examples=size)
    return EmbBertConfig.create(args.preset, L, task=task, data_dir=args.data_dir, train=train,
                                tokenizer=start["tokenizer"])


FIELDS = ("epochs", "qat_epochs", "learning_rate", "qat_learning_rate", "batch_size", "seed", "max_train_examples")


def same_cell(out: Path, wanted: EmbBertConfig) -> None:
    """Refuse to reuse a cell made with another preset, L or recipe (a different grid in the same folder)."""
    same_recipe(out, wanted, FIELDS)


def train_seconds(out: Path) -> float | None:
    """Sum of the per-epoch seconds of history.csv (float and QAT epochs; evaluation included)."""
    import csv

    path = out / layout.HISTORY
    if not path.is_file():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    try:
        return round(sum(float(r["seconds"]) for r in rows), 1)
    except (KeyError, ValueError):
        return None


def run_cell(config: EmbBertConfig, out: Path, start: dict) -> dict:
    """Train one cell (or resume it); returns its metrics. Writes cell.json (start, wall and CPU seconds)."""
    from embbert.keras_model._tf import keras
    from embbert.keras_model.train import train

    resume = (out / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE).is_file()
    wall, cpu = time.time(), time.process_time()
    metrics = train(config, out, init=start["init"], resume=resume, verbose=2)
    info = {"start": start["spec"], "init": start["init"], "tokenizer": start["tokenizer"], "resumed": resume,
            "wall_seconds": round(time.time() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
    atomic_write_text(out / CELL_INFO, json.dumps(info, indent=2) + "\n")
    keras.backend.clear_session()  # the next cell builds its models in a fresh graph
    return metrics


def cell_record(out: Path, task: str, start: dict, size: int | None, seed: int) -> dict:
    metrics = json.loads((out / layout.METRICS).read_text())
    info = json.loads((out / CELL_INFO).read_text()) if (out / CELL_INFO).is_file() else {}
    rec = {"task": task_name(task), "start": start["tag"], "size": size_tag(size), "seed": seed,
           "train_examples": metrics.get("train_examples"), "metric": metrics.get("metric"),
           "train_seconds": train_seconds(out), "wall_seconds": info.get("wall_seconds"),
           "cpu_seconds": info.get("cpu_seconds"), "run_dir": str(out)}
    for key in ("float_val", "qat_val", "float_test", "qat_test"):
        rec[key] = None if metrics.get(key) is None else round(100.0 * float(metrics[key]), 2)
    return rec


def run_curves(args) -> dict:
    from embbert.datasets.tasks import max_length_for

    started = time.time()
    records: list[dict] = []
    out = out_dir(args)
    for task in args.tasks:
        L = max_length_for(task, args.max_length)
        for size in args.size_values:
            for seed in args.seeds:
                for start in args.starts:
                    cell = cell_dir(args, task, L, start, size, seed)
                    wanted = cell_config(args, task, L, start, size, seed)
                    name = f"{task_name(task)} {start['tag']} n={size_tag(size)} seed {seed}"
                    if (cell / layout.METRICS).is_file():
                        same_cell(cell, wanted)
                        print(f"{name}: reusing {cell}", flush=True)
                    elif getattr(args, "report_only", False):
                        print(f"{name}: not run yet ({cell})", flush=True)
                        continue
                    else:
                        print(f"{name}: training in {cell}", flush=True)
                        run_cell(wanted, cell, start)
                    records.append(cell_record(cell, task, start, size, seed))
                    write_results(results_of(args, records, started), out)  # partial results survive a stop
    results = results_of(args, records, started)
    write_results(results, out)
    return results


# -- tables ---------------------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (sd None for fewer than two values)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    m = sum(values) / len(values)
    if len(values) < 2:
        return round(m, 2), None
    return round(m, 2), round(math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)), 2)


def summarise(records: list[dict], seeds: list[int]) -> list[dict]:
    """One row per task, size and start: mean and sd over the seeds of each score, the number of seeds run,
    and the paired difference to the scratch start (same seeds: same subset and validation split)."""
    rows = []
    keys = dict.fromkeys((r["task"], r["size"], r["start"]) for r in records)
    for task, size, start in keys:
        cells = [r for r in records if (r["task"], r["size"], r["start"]) == (task, size, start)]
        row = {"task": task, "size": size, "start": start, "seeds": [r["seed"] for r in cells],
               "complete": len(cells) >= len(seeds), "train_examples": cells[0]["train_examples"]}
        for key in ("float_val", "qat_val", "float_test", "qat_test", "train_seconds"):
            row[key], row[key + "_sd"] = mean_sd([r[key] for r in cells])
        if start != SCRATCH:
            base = {r["seed"]: r for r in records if (r["task"], r["size"], r["start"]) == (task, size, SCRATCH)}
            for key in ("qat_val", "qat_test"):
                diffs = [r[key] - base[r["seed"]][key] for r in cells if r["seed"] in base
                         and r[key] is not None and base[r["seed"]][key] is not None]
                row[f"{key}_minus_scratch"], row[f"{key}_minus_scratch_sd"] = mean_sd(diffs)
                row["paired_seeds"] = len(diffs)
        rows.append(row)
    return rows


def results_of(args, records: list[dict], started: float) -> dict:
    from .accuracy import _versions, invoked_command

    return {"command": invoked_command(), "name": args.name, "preset": args.preset, "max_length": args.max_length, "epochs": args.epochs,
            "qat_epochs": args.qat_epochs, "learning_rate": args.learning_rate,
            "qat_learning_rate": args.qat_learning_rate, "batch_size": args.batch_size,
            "tasks": [task_name(t) for t in args.tasks], "sizes": [size_tag(s) for s in args.size_values],
            "seeds": args.seeds, "starts": [{k: s[k] for k in ("tag", "spec", "init", "tokenizer")} for s in args.starts],
            "duration_s": round(time.time() - started, 1), "versions": _versions(),
            "cells": records, "summary": summarise(records, args.seeds)}


def _cell_text(row: dict, key: str, seeds: int) -> str:
    m, sd = row.get(key), row.get(key + "_sd")
    if m is None:
        return "–"
    text = f"{m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
    n = len(row["seeds"])
    return text + (f" (n={n} of {seeds}, partial)" if n < seeds else "")


def _size_key(size: str) -> float:
    return math.inf if size == ALL else float(size)


def markdown(results: dict) -> str:
    seeds = len(results["seeds"])
    starts = [s["tag"] for s in results["starts"]]
    lines = ["# Learning curves: pretrained start against scratch", ""]
    if results["command"]:
        lines.append(f"Command: `{results['command']}`  ")
    lines.append(f"Preset `{results['preset']}`, {results['epochs']} float + {results['qat_epochs']} QAT epochs at "
                 f"{results['learning_rate']:g} / {results['qat_learning_rate']:g}, batch {results['batch_size']}, "
                 f"seeds {', '.join(map(str, results['seeds']))}; starts: "
                 + ", ".join(f"`{s['tag']}` ({_start_words(s)})" for s in results["starts"])
                 + f"; this invocation {results['duration_s'] / 60:.1f} min.  ")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    lines.append("")
    lines.append("Scores in percent (the task's metric), mean ± sample sd over the seeds; a cell run with fewer "
                 "seeds than asked says so (partial). A seed fixes the training subset, the validation split and "
                 "the initialisation, so the starts are compared on the same texts. Validation decides; test is "
                 "the final figure only. Δ = start − scratch, paired by seed (mean ± sd of the differences).")
    for task in results["tasks"]:
        rows = [r for r in results["summary"] if r["task"] == task]
        if not rows:
            continue
        sizes = sorted(dict.fromkeys(r["size"] for r in rows), key=_size_key)
        by = {(r["size"], r["start"]): r for r in rows}
        for key, title in (("qat_val", "QAT validation (decides)"), ("float_val", "float validation"),
                           ("qat_test", "QAT test (final figure)")):
            lines += ["", f"## {task}: {title}", ""]
            others = [s for s in starts if s != SCRATCH] if SCRATCH in starts and key != "float_val" else []
            head = ["train texts"] + starts + [f"Δ {s}" for s in others]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|---|" + "---:|" * (len(head) - 1))
            for size in sizes:
                n = next((by[(size, s)]["train_examples"] for s in starts if (size, s) in by), None)
                label = f"{size}" if size != ALL else f"all ({n:,})" if n else "all"
                cells = [_cell_text(by[(size, s)], key, seeds) if (size, s) in by else "not run" for s in starts]
                for s in others:
                    r = by.get((size, s))
                    d, dsd = (r.get(f"{key}_minus_scratch"), r.get(f"{key}_minus_scratch_sd")) if r else (None, None)
                    cells.append("–" if d is None else f"{d:+.2f}" + (f" ± {dsd:.2f}" if dsd is not None else ""))
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"![{task} learning curves]({results['name']}_{task}.png)"]
    lines += ["", "Seconds per cell (sum of the epochs in history.csv, evaluation included), mean over the seeds:", ""]
    lines.append("| task | train texts | " + " | ".join(starts) + " |")
    lines.append("|---|---|" + "---:|" * len(starts))
    for task in results["tasks"]:
        rows = [r for r in results["summary"] if r["task"] == task]
        by = {(r["size"], r["start"]): r for r in rows}
        for size in sorted(dict.fromkeys(r["size"] for r in rows), key=_size_key):
            lines.append(f"| {task} | {size} | " + " | ".join(
                "–" if by.get((size, s), {}).get("train_seconds") is None else f"{by[(size, s)]['train_seconds']:.0f}"
                for s in starts) + " |")
    return "\n".join(lines) + "\n"


def _start_words(start: dict) -> str:
    if start["spec"] == SCRATCH:
        return "from scratch, task tokenizer"
    if start["spec"].startswith(TOKENIZER_ONLY):
        return "from scratch with the preset's tokenizer"
    return "pretrained backbone and its tokenizer"


def plot(results: dict, task: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in results["summary"] if r["task"] == task]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "qat_val", "QAT validation (decides)"), (axes[1], "qat_test", "QAT test")):
        for start in [s["tag"] for s in results["starts"]]:
            pts = sorted(((r["train_examples"], r[key], r[key + "_sd"] or 0.0) for r in rows
                          if r["start"] == start and r[key] is not None and r["train_examples"]), key=lambda p: p[0])
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                            capsize=3, label=start)
        ax.set_xscale("log")
        ticks = sorted({r["train_examples"] for r in rows if r["train_examples"]})
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("training texts (log scale)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"{rows[0]['task'] if rows else task}: score (%), mean ± sd over seeds")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: {results['preset']} preset, {results['epochs']} + {results['qat_epochs']} epochs at "
                 f"{results['learning_rate']:g} / {results['qat_learning_rate']:g}")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = results["name"]
    atomic_write_text(out / f"{name}.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", markdown(results))
    for task in results["tasks"]:
        if any(r["task"] == task for r in results["summary"]):
            atomic_write_bytes(out / f"{name}_{task}.png", plot(results, task))


def cmd_curves(args) -> int:
    check_curves_args(args)
    results = run_curves(args)
    print(f"\nwrote {out_dir(args) / (args.name + '.md')} ({len(results['cells'])} cells)")
    return 0
