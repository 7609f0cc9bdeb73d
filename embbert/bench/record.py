"""`embbert bench record`: the project's benchmark of record.

One recipe on every local task, from the shipped pretrained preset and from scratch: whole splits, the
learning rate chosen per task and start on the QAT model's validation score (never the test split), three
seeds, int8 TFLM metric as mean ± sd, next to the published EmbBERT / EmbBERT-Q figures, plus the
current deployed graph's memory per sequence length.

The unit of work is a *cell*, one (task, start). A finished cell is kept as a small JSON file in
`DOCS_DIR/results_cells/`, so the record can be committed and continued on another machine: a cell
whose file holds the same recipe is never run again. Inside a cell, `bench accuracy`'s own resume
applies (runs under RUNS_DIR/<start>/ are reused run by run). `--import` takes the rows of an earlier
`bench accuracy` results.json whose recipe, start and splits are exactly the record's.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from embbert.core.args import add_recipe_arguments, non_negative_int, positive_float, positive_int
from embbert.core.config import PAPER_RECIPE, PRESETS
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

#: The record's recipe: the paper's fine-tuning length (10 float + 2 QAT epochs, batch 32), the QAT rate at
#: a tenth of the float rate, the float rate chosen on validation from RECORD_LR_GRID.
RECORD_RECIPE = replace(PAPER_RECIPE, learning_rate=5e-4, qat_learning_rate=5e-5)
RECORD_LR_GRID = (2e-4, 5e-4, 1e-3, 2e-3, 5e-3)
RECORD_SEEDS = (0, 1, 2)
RECORD_PRESET = "embbert"
#: Starts compared: the shipped pretrained preset of the embbert size, and no pretraining.
RECORD_INITS = ("embbert_en", "none")
CELLS = "results_cells"


def register(bsub) -> None:
    a = bsub.add_parser(
        "record",
        help="the benchmark of record: every local task, pretrained and scratch, 3 seeds (docs/results.md)",
        description="The project's benchmark of record: every local task of TinyNLP and GLUE at one recipe "
        "(whole splits, the paper's fine-tuning length, learning rate chosen on validation per task and start, "
        "3 seeds, mean ± sd of the int8 TFLM metric), from the shipped pretrained preset and from scratch, with "
        "the current graph's memory per L. Writes results.md, results.json, results.png and one JSON file per "
        "finished (task, start) cell under results_cells/ into --docs-dir (default RUNS_DIR/results; give docs "
        "to update the project's record). Resumes cell by cell (a cell file with the same recipe is not run "
        "again) and, inside a cell, run by run under --runs-dir.")
    a.add_argument("--tasks", nargs="+", default=None,
                   help="task names (default: every TinyNLP and GLUE task whose data is local)")
    a.add_argument("--inits", nargs="+", default=list(RECORD_INITS), metavar="INIT",
                   help="starts to compare: a shipped preset name, an `embbert pretrain` directory, or none "
                   f"(default {' '.join(RECORD_INITS)})")
    add_recipe_arguments(a, RECORD_RECIPE, why_lr=", the base of the QAT rate's ratio", seed=False)
    a.add_argument("--lr-grid", type=positive_float, nargs="+", default=list(RECORD_LR_GRID), metavar="LR",
                   help="float learning rates tried per task and start with the first seed; the best QAT "
                   f"validation score is kept (default {' '.join(f'{x:g}' for x in RECORD_LR_GRID)})")
    a.add_argument("--seeds", type=non_negative_int, nargs="+", default=list(RECORD_SEEDS), metavar="SEED",
                   help="seeds per cell (default 0 1 2)")
    a.add_argument("--preset", choices=sorted(PRESETS), default=RECORD_PRESET,
                   help=f"model size preset (default {RECORD_PRESET}; the starts must be of its size)")
    a.add_argument("--max-length", type=positive_int, default=None, help="L for every task (default: each task's)")
    a.add_argument("--max-train-examples", type=positive_int, default=None,
                   help="seeded subset of each train split (for a quick trial: the record uses whole splits)")
    a.add_argument("--max-test-examples", type=positive_int, default=None,
                   help="limit each check to N test examples (for a quick trial)")
    a.add_argument("--import", dest="imports", nargs="+", default=[], metavar="RESULTS_JSON",
                   help="results.json files of earlier `embbert bench accuracy` calls: each row made with exactly "
                   "this recipe, start and whole splits becomes a finished cell (others are listed and ignored)")
    a.add_argument("--report-only", action="store_true",
                   help="train nothing: rewrite the tables from the finished cells (a length missing from the memory "
                   "table is still measured: one conversion, no training)")
    a.add_argument("--data-dir", default=None, help="data directory (default $EMBBERT_DATA_DIR, else the hub)")
    a.add_argument("--runs-dir", default="runs/bench-record",
                   help="where the run directories go, one folder per start (default runs/bench-record)")
    a.add_argument("--docs-dir", default=None, help="where the record goes (default RUNS_DIR/results)")
    a.set_defaults(func=cmd_record)


# -- the recipe and the cells -------------------------------------------------------------------------------

def init_label(init: str | None) -> str:
    """A start's name in cells and tables: a shipped preset's name, `none`, or a directory's name."""
    if init is None or init == "none":
        return "none"
    return Path(init).name


def recipe_of(args) -> dict[str, Any]:
    return {"preset": args.preset, "max_length": args.max_length, "epochs": args.epochs,
            "qat_epochs": args.qat_epochs, "qat_ratio": round(args.qat_learning_rate / args.learning_rate, 9),
            "batch_size": args.batch_size, "lr_grid": sorted(set(args.lr_grid)),
            "seeds": list(dict.fromkeys(args.seeds)), "max_train_examples": args.max_train_examples,
            "max_test_examples": args.max_test_examples}


def recipe_of_accuracy_results(results: dict) -> dict[str, Any]:
    """The same fields, read from a `bench accuracy` results.json."""
    return {"preset": results.get("preset"), "max_length": results.get("max_length"), "epochs": results.get("epochs"),
            "qat_epochs": results.get("qat_epochs"),
            "qat_ratio": round(results["qat_learning_rate"] / results["learning_rate"], 9)
            if results.get("qat_learning_rate") and results.get("learning_rate") else None,
            "batch_size": results.get("batch_size"), "lr_grid": sorted(set(results.get("lr_grid") or [])),
            "seeds": list(results.get("seeds") or []),
            "max_train_examples": results.get("max_train_examples"),
            "max_test_examples": results.get("max_test_examples")}


def cell_path(docs_dir: Path, task: str, init: str) -> Path:
    return docs_dir / CELLS / f"{task}--{init}.json"


def load_cell(path: Path, recipe: dict) -> dict | None:
    """A finished cell of this recipe, or None (absent); a cell of another recipe is an error, not a silent
    rerun over it."""
    if not path.is_file():
        return None
    try:
        cell = json.loads(path.read_text())
        have = cell["recipe"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbBertError(f"{path}: not a record cell ({exc}); remove it to run the cell again") from None
    if have != recipe:
        diff = ", ".join(f"{k} {have.get(k)} != {v}" for k, v in recipe.items() if have.get(k) != v)
        raise EmbBertError(f"{path} was made with another recipe ({diff}); give another --docs-dir or remove it")
    return cell


def write_cell(path: Path, task: str, init: str, recipe: dict, row: dict, source: str) -> dict:
    cell = {"task": task, "init": init, "recipe": recipe, "source": source,
            "finished": time.strftime("%Y-%m-%d", time.gmtime()), "row": row}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(cell, indent=1) + "\n")
    return cell


def import_cells(args, docs_dir: Path, recipe: dict, tasks: list[str], inits: list[str]) -> None:
    for name in args.imports:
        try:
            results = json.loads(Path(name).read_text())
            rows = results["rows"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbBertError(f"--import {name}: not a `bench accuracy` results.json ({exc})") from None
        theirs = recipe_of_accuracy_results(results)
        init = init_label(results.get("init"))
        diff = [f"{k} {theirs[k]} != {v}" for k, v in recipe.items() if theirs.get(k) != v]
        for row in rows:
            task = row.get("task")
            why = ("; ".join(diff) if diff else None) or (None if init in inits else f"start {init} not asked for") \
                or (None if task in tasks else "task not asked for") \
                or (None if list(row.get("seeds") or []) == recipe["seeds"] else f"seeds {row.get('seeds')}")
            if why:
                print(f"import {name}: {task} ({init}) not taken: {why}", flush=True)
                continue
            path = cell_path(docs_dir, task, init)
            if load_cell(path, recipe) is None:
                write_cell(path, task, init, recipe, row, f"imported from {name}")
                print(f"import {name}: {task} ({init}) taken as a finished cell", flush=True)


def accuracy_namespace(args, init: str) -> argparse.Namespace:
    """The `bench accuracy` settings of one start of the record."""
    from embbert.keras_model.presets import init_arg

    return argparse.Namespace(
        preset=args.preset, max_length=args.max_length, epochs=args.epochs, qat_epochs=args.qat_epochs,
        learning_rate=args.learning_rate, qat_learning_rate=args.qat_learning_rate, batch_size=args.batch_size,
        seed=args.seeds[0], lr_grid=list(args.lr_grid), seeds=list(args.seeds),
        max_train_examples=args.max_train_examples, max_test_examples=args.max_test_examples,
        init=None if init == "none" else init_arg(init), data_dir=args.data_dir,
        runs_dir=str(Path(args.runs_dir) / init_label(init)), docs_dir=None)


# -- memory of the current graph ------------------------------------------------------------------------------

def measure_memory(preset: str, length: int) -> dict[str, Any]:
    """Model bytes, recommended arena and MACs of the current deployed graph of `preset` at L=`length`,
    converted from perturbed random weights exactly as `embbert convert` converts a trained run (the bytes
    do not depend on the weights' values once no gain or bias can be folded away; the head has 6 labels)."""
    from embbert.bench.latency_models import synthetic_int8
    from embbert.tflite.arena import measure_arena

    print(f"memory: converting the {preset} graph at L={length}", flush=True)
    data, info = synthetic_int8(preset, length)
    r = measure_arena(data, info=info)
    return {"preset": preset, "max_length": length, "model_bytes": r["model_bytes"],
            "arena_bytes": r["recommended_arena_bytes"], "min_arena_bytes": r["min_arena_bytes"],
            "total_bytes": r["total_footprint_bytes"], "macs": r["macs"],
            "fits": [b["name"] for b in r["boards"] if b["fits"]],
            "measured": time.strftime("%Y-%m-%d", time.gmtime())}


def memory_rows(docs_dir: Path, preset: str, lengths: list[int], *, measure: bool) -> list[dict]:
    """The memory table, one row per L of the record's tasks, kept in results_cells/memory.json; a length not
    in it is measured (when `measure`)."""
    path = docs_dir / CELLS / "memory.json"
    try:
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        have = {(r["preset"], r["max_length"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbBertError(f"{path}: not the record's memory table ({exc}); remove it to measure again") from None
    missing = [L for L in lengths if (preset, L) not in have]
    if measure and missing:
        rows += [measure_memory(preset, L) for L in missing]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"rows": rows}, indent=1) + "\n")
    return sorted((r for r in rows if r["preset"] == preset and r["max_length"] in lengths),
                  key=lambda r: r["max_length"])


# -- the run ----------------------------------------------------------------------------------------------------

def local_tasks(data_dir) -> list[str]:
    from embbert.bench.accuracy import _skip_reason
    from embbert.datasets.tasks import GLUE, TINYNLP

    return [t for t in list(TINYNLP) + list(GLUE) if _skip_reason(t, data_dir) is None]


def check_record_args(args) -> None:
    from embbert.core import preflight
    from embbert.datasets.loading import data_dir_arg
    from embbert.datasets.tasks import task_arg
    from embbert.keras_model.presets import init_arg

    for task in args.tasks or ():
        task_arg(task)
    for init in args.inits:
        if init != "none":
            preflight.fits_preset(args.preset, init_arg(init), None)  # a start of another size: refused now
    for name in args.imports:
        if not Path(name).is_file():
            raise EmbBertError(f"--import {name}: no such file")
    args.data_dir = data_dir_arg(args.data_dir)
    preflight.output_dir(args.runs_dir, "--runs-dir")
    preflight.output_dir(docs_dir_of(args), "--docs-dir")


def docs_dir_of(args) -> Path:
    return Path(args.docs_dir) if args.docs_dir is not None else Path(args.runs_dir) / "results"


def run_record(args) -> dict[str, Any]:
    from embbert.bench.accuracy import _run_task, _skip_reason, _task_name
    from embbert.datasets.tasks import max_length_for

    docs_dir = docs_dir_of(args)
    recipe = recipe_of(args)
    tasks = args.tasks or local_tasks(args.data_dir)
    if not tasks:
        raise EmbBertError("no task's data is local (give --data-dir or --tasks)")
    names = [_task_name(t) for t in tasks]
    inits = [init_label(i) for i in args.inits]
    lengths = sorted({max_length_for(t, args.max_length) for t in tasks})
    import_cells(args, docs_dir, recipe, names, inits)
    started = time.time()
    if not args.report_only:
        for task, name in zip(tasks, names):
            reason = _skip_reason(task, args.data_dir)
            if reason:
                print(f"skip {name}: {reason}", flush=True)
                continue
            for init, label in zip(args.inits, inits):
                path = cell_path(docs_dir, name, label)
                if load_cell(path, recipe) is not None:
                    print(f"{name} ({label}): finished cell {path}", flush=True)
                    continue
                t0 = time.time()
                row = _run_task(accuracy_namespace(args, init), task, name)
                row["seconds"] = round(time.time() - t0, 1)
                write_cell(path, name, label, recipe, row, "run")
                write_record(docs_dir, recipe, names, inits,
                             memory_rows(docs_dir, args.preset, lengths, measure=False))
    memory = memory_rows(docs_dir, args.preset, lengths, measure=True)
    results = write_record(docs_dir, recipe, names, inits, memory)
    results["seconds"] = round(time.time() - started, 1)
    return results


# -- the report -------------------------------------------------------------------------------------------------

def _f(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "pending"
    r = cell["row"]
    sd = "" if r.get("tflm_std") is None else f" ± {r['tflm_std']:.2f}"
    return f"{_f(r['tflm'])}{sd}"


def collect(docs_dir: Path, recipe: dict, tasks: list[str], inits: list[str]) -> list[dict[str, Any]]:
    from embbert.bench.accuracy import published
    from embbert.datasets.tasks import max_length_for

    pub = published()
    out = []
    for task in tasks:
        try:
            L = max_length_for(task, recipe.get("max_length"))
        except EmbBertError:  # a custom task directory that is gone: its cells still say
            L = None
        cells = {i: load_cell(cell_path(docs_dir, task, i), recipe) for i in inits}
        any_row = next((c["row"] for c in cells.values() if c), None)
        out.append({
            "task": task, "metric": any_row["metric"] if any_row else None,
            "max_length": any_row["max_length"] if any_row else L,
            "cells": {i: (c["row"] | {"source": c["source"], "finished": c["finished"]}) if c else None
                      for i, c in cells.items()},
            "embbert_float32": pub["embbert_float32"]["tasks"].get(task),
            "embbert_q_8bit": pub["embbert_q_8bit"]["tasks"].get(task)})
    return out


def markdown(results: dict) -> str:
    recipe, inits = results["recipe"], results["inits"]
    lines = ["# Results of record", "",
             "Made and continued by `embbert bench record --data-dir DATA --docs-dir docs` (a finished cell is a "
             "file under `results_cells/` and is not run again; the runs of an unfinished cell are reused from "
             f"`--runs-dir`); this page was written by `{results['command'] or 'embbert bench record'}`. "
             f"Preset `{recipe['preset']}`; whole training and test splits; {recipe['epochs']} float + "
             f"{recipe['qat_epochs']} QAT epochs, batch {recipe['batch_size']}; the float learning rate chosen per "
             f"task and start on the QAT model's validation score (held out of the training split) from "
             + ", ".join(f"{x:g}" for x in recipe["lr_grid"])
             + f", the QAT rate x{recipe['qat_ratio']:g}; seeds {', '.join(map(str, recipe['seeds']))}. "
             "Metric: the int8 model in the TFLM interpreter, mean ± sample sd over the seeds, in percent "
             "(CoLA Matthews, MRPC weighted F1, STS-B Spearman, others accuracy; GLUE: the validation split, "
             "whose test labels are hidden). \"pending\": the cell has not run yet.", ""]
    head = "| task | L | " + " | ".join(f"{i} int8 TFLM | lr" for i in inits)
    delta = len(inits) == 2
    head += (f" | {inits[0]} − {inits[1]}" if delta else "") + " | EmbBERT (fp32) | EmbBERT-Q (8-bit) |"
    lines += [head, "|---|---:|" + "---:|---:|" * len(inits) + ("---:|" if delta else "") + "---:|---:|"]
    for r in results["rows"]:
        cells = [r["cells"][i] for i in inits]
        parts = [f"{_cell_text({'row': c} if c else None)} | {c['learning_rate']:g}" if c else "pending | "
                 for c in cells]
        d = (_f(round(cells[0]["tflm"] - cells[1]["tflm"], 2)) if all(cells) else "–") if delta else None
        lines.append(f"| {r['task']} | {r['max_length'] or '–'} | " + " | ".join(parts)
                     + (f" | {d}" if delta else "") + f" | {_f(r['embbert_float32'])} | {_f(r['embbert_q_8bit'])} |")
    lines.append("")
    memory = results.get("memory")
    if memory:
        lines += [f"Memory of the current deployed `{recipe['preset']}` graph (full int8, converted by today's "
                  "converter from untrained weights made to look trained, `quantize.perturb_like_trained`, so the "
                  "graph is a trained model's; 6-label head), in bytes:", "",
                  "| L | model | arena (recommended) | total | MACs | fits |", "|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {m['max_length']} | {m['model_bytes']:,} | {m['arena_bytes']:,} | {m['total_bytes']:,} | "
                  f"{m['macs']:,} | {', '.join(m['fits']) or '–'} |" for m in memory]
        lines.append("")
    lines += ["Per cell (learning rates tried, validation, agreement of TFLM with TFLite, where the cell came "
              "from):", ""]
    for r in results["rows"]:
        for i in inits:
            c = r["cells"][i]
            if not c:
                continue
            grid = ", ".join(f"{g['learning_rate']:g} -> {100 * g['validation']:.2f}" for g in c.get("lr_grid") or [])
            agree = "" if c.get("agreement") is None else f"; TFLM = TFLite on {100 * c['agreement']:.1f} %"
            lines.append(f"- {r['task']}, {i}: QAT validation {grid}; kept {c['learning_rate']:g}; seeds "
                         + ", ".join(f"{v:.2f}" for v in c["by_seed"]["tflm"])
                         + f"{agree}; {c['source']} ({c['finished']})")
    lines += ["", f"Published figures: {results['published_source']}", "", "![results](results.png)", ""]
    return "\n".join(lines)


def plot(results: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embbert.bench.arch import png_bytes

    rows, inits = results["rows"], results["inits"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    width = 0.8 / (len(inits) + 1)
    for k, init in enumerate(inits):
        xs, ys, es = [], [], []
        for j, r in enumerate(rows):
            c = r["cells"][init]
            if c and c.get("tflm") is not None:
                xs.append(j + k * width)
                ys.append(c["tflm"])
                es.append(c.get("tflm_std") or 0.0)
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=f"{init} (int8 TFLM, mean ± sd)")
    pub_x = [j + len(inits) * width for j, r in enumerate(rows) if r["embbert_float32"] is not None]
    pub_y = [r["embbert_float32"] for r in rows if r["embbert_float32"] is not None]
    ax.bar(pub_x, pub_y, width, color="lightgrey", label="published EmbBERT (fp32)")
    ax.set_xticks([j + width * len(inits) / 2 for j in range(len(rows))], [r["task"] for r in rows])
    ax.set_ylabel("score (%)")
    ax.set_title(f"Benchmark of record ({results['recipe']['preset']} preset, "
                 f"{len(results['recipe']['seeds'])} seeds)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def write_record(docs_dir: Path, recipe: dict, tasks: list[str], inits: list[str], memory) -> dict[str, Any]:
    from embbert.bench.accuracy import _versions, invoked_command, published

    results = {"command": invoked_command(), "recipe": recipe, "inits": inits, "tasks": tasks,
               "rows": collect(docs_dir, recipe, tasks, inits),
               "memory": memory, "published_source": published()["source"], "versions": _versions()}
    docs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs_dir / "results.md", markdown(results))
    atomic_write_text(docs_dir / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_bytes(docs_dir / "results.png", plot(results))
    return results


def cmd_record(args) -> int:
    check_record_args(args)
    results = run_record(args)
    done = sum(1 for r in results["rows"] for c in r["cells"].values() if c)
    total = len(results["rows"]) * len(results["inits"])
    print(f"\nwrote {docs_dir_of(args) / 'results.md'} ({done} of {total} cells finished)")
    return 0
