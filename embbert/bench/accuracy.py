"""`embbert bench accuracy`: the TinyNLP and GLUE tasks end to end, next to the published figures."""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from embbert.core import layout
from embbert.core.args import add_recipe_arguments, non_negative_int, positive_float, positive_int, recipe_from_args
from embbert.core.config import PAPER_RECIPE, PRESETS, EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text
from embbert.datasets.loading import data_dir_arg
from embbert.datasets.tasks import max_length_for
from embbert.keras_model.presets import init_arg



def published() -> dict:
    return json.loads((Path(__file__).parent / "data" / "published.json").read_text())


def register(bsub) -> None:
    a = bsub.add_parser(
        "accuracy",
        help="train, quantise, convert and check every available TinyNLP and GLUE task",
        description="For each task: float, QAT and int8-TFLM metric, model bytes, arena bytes, total footprint. "
        "Writes results.md, results.json and results.png (into RUNS_DIR/results, or --docs-dir), next to the "
        "published EmbBERT and EmbBERT-Q figures. Tasks whose data is absent are listed as skipped, with the "
        "reason; if no task ran, nothing is written and the exit status is 1.",
    )
    a.add_argument("--tasks", nargs="+", default=None, help="task names or task directories (default: all TinyNLP + GLUE)")
    a.add_argument("--preset", choices=sorted(PRESETS), default="embbert", help="model preset (default embbert)")
    a.add_argument("--max-length", type=positive_int, default=None, help="L for every task (default: each task's, `embbert data list`)")
    add_recipe_arguments(a, PAPER_RECIPE, why_lr=", the paper's")
    a.add_argument("--lr-grid", type=positive_float, nargs="+", default=None, metavar="LR",
                   help="train each task at each of these float learning rates with the first seed (the QAT rate "
                   "scaled alike: LR x --qat-learning-rate / --learning-rate) and keep the one whose QAT model has "
                   "the best validation score (never the test split); only that one is converted and checked, "
                   "and the other --seeds run at it alone")
    a.add_argument("--seeds", type=non_negative_int, nargs="+", default=None, metavar="SEED",
                   help="run each task once per seed; the table gives the mean and the standard deviation "
                   "(default: --seed alone)")
    a.add_argument("--max-train-examples", type=positive_int, default=None, help="seeded subset of each train split")
    a.add_argument("--max-test-examples", type=positive_int, default=None, help="limit each check to N test examples")
    a.add_argument("--init", default=None, help="pretrained backbone for every task: a directory from `embbert pretrain` or a shipped preset name (embbert_en)")
    a.add_argument("--data-dir", default=None, help="data directory (default $EMBBERT_DATA_DIR, else the hub)")
    a.add_argument("--runs-dir", default="runs/bench", help="where the run directories go (default runs/bench)")
    a.add_argument("--docs-dir", default=None,
                   help="where results.md/.json/.png go (default RUNS_DIR/results; the project's docs/results.md "
                   "is the benchmark of record, written by `embbert bench record`)")
    a.set_defaults(func=cmd_accuracy)


def _task_name(task: str) -> str:
    return Path(task).name if Path(task).is_dir() else task


def _skip_reason(task: str, data_dir) -> str | None:
    from embbert.datasets.loading import local_files, resolve_data_dir, task_available_locally
    from embbert.datasets.tasks import get_task

    try:
        spec = get_task(task)
    except EmbBertError as exc:
        return str(exc)
    if spec.family == "custom":
        return None
    data_dir = resolve_data_dir(data_dir)
    if data_dir is not None and task_available_locally(spec, data_dir):
        return None
    missing = [str(p) for p in local_files(spec, data_dir).values() if not p.is_file()] if data_dir else []
    where = f"not under {data_dir} (missing {missing[0]})" if missing else "no data directory given"
    return f"data absent: {where}; the hub is not reachable from here"


def run_accuracy(args) -> dict:
    from embbert.datasets.tasks import GLUE, TINYNLP

    tasks = args.tasks or list(TINYNLP) + list(GLUE)
    docs_dir = results_dir(args)
    started = time.time()
    rows, skipped = [], []
    for task in tasks:
        name = _task_name(task)
        reason = _skip_reason(task, args.data_dir)
        if reason:
            print(f"skip {name}: {reason}", flush=True)
            skipped.append({"task": name, "reason": reason})
            continue
        t0 = time.time()
        try:
            row = _run_task(args, task, name)
        except EmbBertError as exc:
            print(f"skip {name}: {exc}", flush=True)
            skipped.append({"task": name, "reason": str(exc)})
            continue
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        write_results(_results(args, rows, skipped, started), docs_dir)  # partial results survive a stop
    if not rows:  # nothing ran: leave every earlier result as it was
        return {"rows": rows, "skipped": skipped}
    results = _results(args, rows, skipped, started)
    write_results(results, docs_dir)
    return results


def learning_rates(args) -> list[tuple[float, float]]:
    """(float, QAT) learning rates to try: --learning-rate alone, or each of --lr-grid with the QAT rate
    scaled alike (the recipe's QAT/float ratio kept)."""
    if not args.lr_grid:
        return [(args.learning_rate, args.qat_learning_rate)]
    ratio = args.qat_learning_rate / args.learning_rate
    return [(lr, lr * ratio) for lr in dict.fromkeys(args.lr_grid)]


def seeds_of(args) -> list[int]:
    return list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]


def run_dir_for(args, name: str, max_length: int, lr: float, seed: int) -> Path:
    """RUNS_DIR/TASK-PRESET-LL, with -lrX when --lr-grid is given and -sN when --seeds is given (so a later
    call with more seeds or learning rates reuses the runs already made)."""
    stem = f"{name}-{args.preset}-L{max_length}"
    if args.lr_grid:
        stem += f"-lr{lr:g}"
    if args.seeds:
        stem += f"-s{seed}"
    return Path(args.runs_dir) / stem


def _validation_score(metrics: dict) -> float:
    """The score a learning rate is chosen by: the deployed (QAT) model's validation metric."""
    return float(metrics["qat_val"] if "qat_val" in metrics else metrics["float_val"])


def grid_edge_note(grid: list[dict], kept: float) -> str:
    """A warning when the kept learning rate is the smallest or the largest of the grid: the validation
    optimum may lie outside it, so a wider grid may score better."""
    rates = sorted({g["learning_rate"] for g in grid})
    if len(rates) < 2 or rates[0] < kept < rates[-1]:
        return ""
    side = "largest" if kept == rates[-1] else "smallest"
    return f" (the grid's {side} rate: the validation optimum may lie beyond it)"


def _run_task(args, task: str, name: str) -> dict:
    """Train the task at every learning rate with the first seed, keep the one with the best validation
    score, run the other seeds at it, convert, check and export those runs, and return the task's row
    (means over the seeds)."""
    from embbert.run import run_pipeline, stages_done

    L = max_length_for(task, args.max_length)
    seeds = seeds_of(args)

    def config_for(lr: float, qat_lr: float, seed: int) -> EmbBertConfig:
        train = replace(recipe_from_args(args, max_train_examples=args.max_train_examples),
                        learning_rate=lr, qat_learning_rate=qat_lr, seed=seed)
        return EmbBertConfig.create(args.preset, L, task=task, data_dir=args.data_dir, train=train)

    rates = learning_rates(args)
    grid: list[dict] = []
    if len(rates) > 1:  # train every candidate first (first seed); only the chosen one goes on
        seed = seeds[0]
        for lr, qat_lr in rates:
            out = run_dir_for(args, name, L, lr, seed)
            if "train" in stages_done(out)["done"]:
                same_recipe(out, config_for(lr, qat_lr, seed))
                print(f"{name}: lr {lr:g}, seed {seed}: reusing the trained run in {out}", flush=True)
                metrics = json.loads((out / layout.METRICS).read_text())
            else:
                metrics = run_pipeline(config_for(lr, qat_lr, seed), out, init=args.init, verbose=2,
                                       last_stage="train")["metrics"]
            grid.append({"learning_rate": lr, "qat_learning_rate": qat_lr, "seed": seed,
                         "validation": _validation_score(metrics)})
        best = max(grid, key=lambda g: g["validation"])  # the first of equal scores
        print(f"{name}: learning rate {best['learning_rate']:g} chosen on validation "
              + ", ".join(f"{g['learning_rate']:g}: {100 * g['validation']:.2f}" for g in grid)
              + grid_edge_note(grid, best["learning_rate"]), flush=True)
        lr, qat_lr = best["learning_rate"], best["qat_learning_rate"]
    else:
        lr, qat_lr = rates[0]
    per_seed = []
    for seed in seeds:
        out = run_dir_for(args, name, L, lr, seed)
        if _finished(out):  # an interrupted benchmark goes on where it stopped
            same_recipe(out, config_for(lr, qat_lr, seed))
            print(f"{name}: reusing the finished run in {out}", flush=True)
            result = _load_finished(out)
            if not _check_covers(result["check"], args.max_test_examples):
                from embbert.tflite.check import check_run

                print(f"{name}: its check covered {result['check']['examples']} test examples; checking again "
                      f"with {args.max_test_examples or 'the whole split'}", flush=True)
                result["check"] = check_run(out, max_examples=args.max_test_examples)
        else:
            result = run_pipeline(config_for(lr, qat_lr, seed), out, init=args.init,
                                  max_examples=args.max_test_examples, export_dir=out / layout.EXPORT_DIR,
                                  verbose=2)
        per_seed.append((seed, out, result))
    return _task_row(name, L, lr, qat_lr, grid, per_seed)


def _task_row(name: str, L: int, lr: float, qat_lr: float, grid: list[dict], per_seed: list) -> dict:
    checks = [r["check"] for _, _, r in per_seed]
    arenas = [r["arena"] for _, _, r in per_seed]
    largest = max(arenas, key=lambda a: a["total_footprint_bytes"])  # seeds share the graph; keep the worst
    by_seed = {key: [_pct(c, model) for c in checks] for key, model in
               (("float", "float_keras"), ("qat", "qat_keras"), ("tflite", "int8_tflite"), ("tflm", "int8_tflm"))}
    metrics = per_seed[0][2]["metrics"]
    return {
        "task": name, "metric": metrics["metric"], "max_length": L,
        **{key: _mean(values) for key, values in by_seed.items()},
        "tflm_std": _std(by_seed["tflm"]),
        "seeds": [seed for seed, _, _ in per_seed], "by_seed": by_seed,
        "learning_rate": lr, "qat_learning_rate": qat_lr, "lr_grid": grid,
        "validation": _mean([round(100 * _validation_score(r["metrics"]), 2) for _, _, r in per_seed]),
        "agreement": _mean_raw([c["tflm_vs_tflite"]["agreement"] for c in checks]),
        "max_lsb_diff": max(c["tflm_vs_tflite"]["max_logit_diff_lsb"] for c in checks),
        "model_bytes": largest["model_bytes"], "arena_bytes": largest["recommended_arena_bytes"],
        "min_arena_bytes": largest["min_arena_bytes"], "total_bytes": largest["total_footprint_bytes"],
        "train_examples": metrics.get("train_examples"), "test_examples": checks[0].get("examples"),
        "run_dirs": [str(out) for _, out, _ in per_seed],
    }


RECIPE_FIELDS = ("epochs", "qat_epochs", "learning_rate", "qat_learning_rate", "batch_size", "seed",
                 "weight_decay", "max_train_examples")


def same_recipe(out: Path, wanted: EmbBertConfig, fields=RECIPE_FIELDS) -> None:
    """Refuse to reuse a run directory made with another preset, length or training recipe (`fields` of it)."""
    import math

    have = EmbBertConfig.load(out)
    diffs = [f"preset {have.preset} != {wanted.preset}"] if have.preset != wanted.preset else []
    if have.max_length != wanted.max_length:
        diffs.append(f"L {have.max_length} != {wanted.max_length}")
    for name in fields:
        a, b = getattr(have.train, name), getattr(wanted.train, name)
        same = math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) and isinstance(b, float) else a == b
        if not same:
            diffs.append(f"{name.replace('_', ' ')} {a} != {b}")
    if diffs:
        raise EmbBertError(f"{out} holds a run made with other settings ({'; '.join(diffs)}); "
                           "give another --runs-dir or remove it")


def _check_covers(check: dict, max_examples: int | None) -> bool:
    """Whether a finished run's check used the test examples now asked for (a check written before the
    limit was recorded counts when its size is exactly the limit asked for)."""
    if "max_examples" in check:
        return check["max_examples"] == max_examples
    return max_examples is not None and check.get("examples") == max_examples


def results_dir(args) -> Path:
    return Path(args.docs_dir) if args.docs_dir is not None else Path(args.runs_dir) / "results"


def check_accuracy_args(args) -> None:
    """What `bench accuracy` can check before TensorFlow is imported: a task of --tasks that is neither a
    task name nor a task directory is an error (a task whose data is absent is skipped, not an error)."""
    from embbert.core import preflight
    from embbert.datasets.tasks import task_arg

    for task in args.tasks or ():
        task_arg(task)
    preflight.max_length(args.max_length, args.preset)
    args.data_dir = data_dir_arg(args.data_dir)
    args.init = init_arg(args.init)
    preflight.output_dir(args.runs_dir, "--runs-dir")
    preflight.output_dir(results_dir(args), "--docs-dir")


FINISHED_FILES = (layout.METRICS, layout.CHECK, layout.ARENA_JSON)


def _finished(run_dir: Path) -> bool:
    return all((run_dir / name).is_file() for name in FINISHED_FILES)


def _load_finished(run_dir: Path) -> dict:
    metrics, check, arena = (json.loads((run_dir / name).read_text()) for name in FINISHED_FILES)
    return {"metrics": metrics, "check": check, "arena": arena}


def _results(args, rows, skipped, started) -> dict:
    return {
        "command": invoked_command(),
        "preset": args.preset, "seed": args.seed, "seeds": seeds_of(args), "epochs": args.epochs,
        "qat_epochs": args.qat_epochs, "learning_rate": args.learning_rate,
        "qat_learning_rate": args.qat_learning_rate, "lr_grid": [lr for lr, _ in learning_rates(args)]
        if args.lr_grid else None, "batch_size": args.batch_size,
        "max_train_examples": args.max_train_examples, "max_test_examples": args.max_test_examples,
        "init": args.init, "duration_s": round(time.time() - started, 1), "versions": _versions(),
        "rows": rows, "skipped": skipped, "published": published(),
    }


def _pct(check: dict, key: str):
    return round(100.0 * float(check["models"][key]["metric"]), 2)


def invoked_command() -> str | None:
    """The `embbert ...` command line of this process (None when not run as the `embbert` command), recorded
    in a benchmark's results."""
    return "embbert " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("embbert") else None


def _versions() -> dict:
    """Python, machine and the installed versions of the packages a result depends on (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": f"{platform.machine()} {platform.system()}"}
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-nlp", "tokenizers",
                 "ai-edge-litert", "numpy", "tflite-micro"):
        try:
            out[dist.replace("-", "_")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_")] = "not installed"
    return out


def _mean_raw(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _mean(values):
    m = _mean_raw(values)
    return None if m is None else round(m, 2)


def _std(values):
    """Sample standard deviation (None for fewer than two values)."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return round((sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5, 2)


def write_results(results: dict, docs_dir: Path) -> None:
    from embbert.datasets.tasks import GLUE, TINYNLP

    pub = results["published"]
    docs_dir.mkdir(parents=True, exist_ok=True)
    rows = results["rows"]
    ours_tiny = _mean([r["tflm"] for r in rows if r["task"] in TINYNLP])
    ours_glue = _mean([r["tflm"] for r in rows if r["task"] in GLUE])
    results["tinynlp_mean_tflm"], results["glue_mean_tflm"] = ours_tiny, ours_glue
    lines = ["# Accuracy benchmark: EmbBERT-Micro against the published EmbBERT / EmbBERT-Q", ""]
    lines.append(f"Command: `{results['command']}`  ")
    seeds = results["seeds"]
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} (mean ± sd)"
    lr_text = (f"lr {results['learning_rate']:g} (QAT {results['qat_learning_rate']:g})" if not results["lr_grid"] else
               "lr chosen per task on the QAT model's validation score from "
               + ", ".join(f"{lr:g}" for lr in results["lr_grid"])
               + f" (QAT lr x{results['qat_learning_rate'] / results['learning_rate']:g})")
    lines.append(f"Preset `{results['preset']}`, {seed_text}, {results['epochs']} float + "
                 f"{results['qat_epochs']} QAT epochs, {lr_text}, batch {results['batch_size']}, "
                 f"train subset {results['max_train_examples'] or 'all'}, test subset {results['max_test_examples'] or 'all'}, "
                 f"init {results['init'] or 'none (from scratch)'}; duration {results['duration_s'] / 60:.1f} min.  ")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    lines.append("")
    lines.append("Metrics in percent (CoLA Matthews, MRPC F1 weighted, STS-B Spearman, others accuracy), on the "
                 "test split (GLUE: validation). Memory: int8 model bytes + recommended TFLM arena.")
    lines.append("")
    lines.append("| task | L | lr | QAT val | float | QAT | int8 TFLM | TFLM=TFLite | EmbBERT (fp32) | EmbBERT-Q (8-bit) | TFLM − EmbBERT-Q | model kB | arena kB | total kB |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = pub["embbert_float32"]["tasks"].get(r["task"])
        ref_q = pub["embbert_q_8bit"]["tasks"].get(r["task"])
        diff = None if (ref_q is None or r["tflm"] is None) else round(r["tflm"] - ref_q, 2)
        agree = "" if r["agreement"] is None else f"{100 * r['agreement']:.1f}%"
        spread = "" if r["tflm_std"] is None else f" ± {r['tflm_std']:.2f}"
        lines.append(
            f"| {r['task']} | {r['max_length']} | {r['learning_rate']:g} | {_f(r['validation'])} | {_f(r['float'])} | "
            f"{_f(r['qat'])} | {_f(r['tflm'])}{spread} | {agree} | "
            f"{_f(ref)} | {_f(ref_q)} | {_f(diff)} | {r['model_bytes'] / 1000:.1f} | {r['arena_bytes'] / 1000:.1f} | "
            f"{r['total_bytes'] / 1000:.1f} |"
        )
    lines.append("")
    lines.append("TFLM=TFLite: share of test examples where the TFLM and TFLite int8 models predict the same class "
                 "(STS-B, a regression: outputs within 1 LSB). lr: the float learning rate of the runs in the row; "
                 "QAT val: the QAT model's score on the validation data (held out of the train split, never the "
                 "test split)" + (", mean over the seeds; int8 TFLM: mean ± sample standard deviation over the "
                                  "seeds." if len(seeds) > 1 else "."))
    lines.append("")
    grids = [r for r in rows if r.get("lr_grid")]
    if grids:
        lines += [f"Learning rate chosen on validation (QAT val of each candidate, seed {seeds[0]}):", ""]
        lines += [f"- {r['task']}: " + ", ".join(f"{g['learning_rate']:g} -> {100 * g['validation']:.2f}"
                                                 for g in r["lr_grid"]) + f"; kept {r['learning_rate']:g}"
                  + grid_edge_note(r["lr_grid"], r["learning_rate"]) for r in grids]
        lines.append("")
    for family, names, ours in (("TinyNLP", TINYNLP, ours_tiny), ("GLUE", GLUE, ours_glue)):
        run, compared, ours_compared, ref, ref_q = _like_for_like(results, names)
        if not run:
            continue
        line = f"{family} mean over the {len(run)} tasks run ({', '.join(run)}): int8 TFLM {_f(ours)}"
        if compared and compared != run:
            line += (f"; over the {len(compared)} of them with a published figure ({', '.join(compared)}): "
                     f"int8 TFLM {_f(ours_compared)}, published EmbBERT {_f(ref)}")
        elif compared:
            line += f"; published EmbBERT on the same tasks {_f(ref)}"
        else:
            line += "; no published figure for these tasks"
        lines.append(line + (f", EmbBERT-Q {_f(ref_q)}" if ref_q is not None else "") + ".  ")
    lines.append(f"(Published means over all tasks: TinyNLP {pub['embbert_float32']['tinynlp_mean']} (7 tasks), "
                 f"GLUE {pub['embbert_float32']['glue_mean']} (EmbBERT) / {pub['embbert_q_8bit']['glue_mean']} (EmbBERT-Q).)")
    if results["skipped"]:
        lines += ["", "Skipped:", ""]
        lines += [f"- {s['task']}: {s['reason']}" for s in results["skipped"]]
    lines += ["", f"Published figures: {pub['source']}", "", "![accuracy against memory](results.png)", ""]
    atomic_write_text(docs_dir / "results.md", "\n".join(lines))
    atomic_write_text(docs_dir / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_bytes(docs_dir / "results.png", _plot(results))


def _f(v):
    return "–" if v is None else f"{v:.2f}"


def _like_for_like(results: dict, names) -> tuple[list[str], list[str], float | None, float | None, float | None]:
    """The tasks of a family that were run; those of them with a published EmbBERT figure, our int8 TFLM
    mean over those, and the published EmbBERT / EmbBERT-Q means over the same tasks (EmbBERT-Q: None
    unless it has a figure for every one of them)."""
    pub_f, pub_q = results["published"]["embbert_float32"]["tasks"], results["published"]["embbert_q_8bit"]["tasks"]
    rows = [r for r in results["rows"] if r["task"] in names]
    compared = [r for r in rows if r["task"] in pub_f]
    tasks = [r["task"] for r in compared]
    ref_q = [pub_q.get(t) for t in tasks]
    return ([r["task"] for r in rows], tasks, _mean([r["tflm"] for r in compared]) if compared else None,
            _mean([pub_f[t] for t in tasks]) if tasks else None,
            _mean(ref_q) if tasks and None not in ref_q else None)


def _plot(results: dict) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embbert.datasets.tasks import GLUE, TINYNLP

    pub = results["published"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = pub["glue_mean_by_size"]
    for kind, marker, label in (("float32", "o", "published float32"), ("8bit", "s", "published 8-bit")):
        pts = [(v[kind][1], v[kind][0], k) for k, v in sizes.items() if kind in v]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, alpha=0.35, color="grey" if kind == "float32" else "tan",
                   label=f"{label}, GLUE mean of all 10 tasks (context)")
        for x, y, n in pts:
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points", alpha=0.6)
    rows = results["rows"]
    if rows:
        mem = max(r["total_bytes"] for r in rows) / 1e6
        for family, names, color in (("TinyNLP", TINYNLP, "tab:red"), ("GLUE", GLUE, "tab:green")):
            _, compared, ours, ref, ref_q = _like_for_like(results, names)
            if not compared or ours is None:
                continue
            tag = f"{family}, {len(compared)} tasks run with a published figure"
            ax.scatter([mem], [ours], marker="*", s=220, color=color,
                       label=f"ours int8 TFLM ({results['preset']}), {tag}")
            if ref is not None:
                ax.scatter([pub["embbert_float32"]["memory_mb"]], [ref], marker="o", s=90, facecolors="none",
                           edgecolors=color, linewidths=2, label=f"published EmbBERT float32, same {tag}")
            if ref_q is not None:
                ax.scatter([pub["embbert_q_8bit"]["memory_mb"]], [ref_q], marker="s", s=90, facecolors="none",
                           edgecolors=color, linewidths=2, label=f"published EmbBERT-Q 8-bit, same {tag}")
    ax.set_xscale("log")
    ax.set_xlabel("total memory, MB (weights + activations; log scale)")
    ax.set_ylabel("score (%)")
    ax.set_title("Accuracy against memory (ours: max over the tasks' footprints)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def cmd_accuracy(args) -> int:
    check_accuracy_args(args)
    results = run_accuracy(args)
    if not results["rows"]:
        skipped = results["skipped"]
        first = f"{skipped[0]['task']}: {skipped[0]['reason']}" if skipped else "no task given"
        more = f"; {len(skipped) - 1} more skipped, listed above" if len(skipped) > 1 else ""
        raise EmbBertError(f"no task ran, nothing written ({first}{more})")
    print(f"\nwrote {results_dir(args) / 'results.md'} ({len(results['rows'])} tasks run, "
          f"{len(results['skipped'])} skipped)")
    return 0
