"""`embbert run`: the whole path on one task, from raw text to a TFLM application.

train (float, then QAT) -> convert (full int8) -> check (float / QAT / TFLite /
TFLM metric, TFLM-TFLite agreement) -> arena report -> export (C sources), then a
closing summary of what was done and where every file went.

Every finished stage is recorded in RUN_DIR/stages.json. `embbert run --resume`
continues from the last finished stage (an interrupted training resumes from its
last epoch); a finished stage is never redone unless asked with `--force`, which
starts the run again from scratch.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from embbert.core import layout, preflight
from embbert.core.boards import BOARD_KEYS
from embbert.core.args import add_recipe_arguments, positive_int, recipe_from_args
from embbert.core.config import ARCHS, DEFAULTS, PRESETS, QUICK_RECIPE, EmbBertConfig
from embbert.core.errors import EmbBertError, Interrupted, UsageError
from embbert.core.files import atomic_write_text, check_output_folder, remove_named
from embbert.datasets.loading import check_task_data, data_dir_arg, train_texts
from embbert.datasets.tasks import max_length_for, task_arg
from embbert.keras_model.presets import init_arg
from embbert.tflite.export import is_export

DEFAULT_TASK = DEFAULTS.task


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the whole path on one task: train, QAT, convert, check, arena report, export",
        description="Run the whole path on a small real default (task emotion, preset tiny fine-tuned from the "
        "pretrained tiny_en, short training): "
        "float training, quantisation-aware training, full-int8 conversion, checks with the TFLite and TFLM "
        "interpreters, the arena-size report and the export of the TFLM application, then a summary.",
    )
    p.add_argument("--task", default=DEFAULT_TASK, help=f"task name or task directory (default {DEFAULT_TASK})")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="size preset (default: tiny for embbert, the architecture's own size for the others)")
    p.add_argument("--arch", choices=ARCHS, default=None,
                   help="architecture (default embbert): EmbBERT or a baseline of the papers (docs/baselines.md)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help=f"sequence length L (default: the task's, `embbert data list`: {DEFAULTS.task_lengths[DEFAULTS.task]} for "
                   f"{DEFAULTS.task})")
    add_recipe_arguments(p, QUICK_RECIPE, why_lr=": chosen on emotion validation accuracy for the 3-epoch "
                         "fine-tune from tiny_en, against 3e-4; docs/presets.md")
    p.add_argument("--max-train-examples", type=positive_int, default=None, help="use a seeded subset of train")
    p.add_argument("--max-examples", type=positive_int, default=None, help="limit the check to N test examples")
    p.add_argument("--data-dir", default=None, help="data directory in hub layout (default $EMBBERT_DATA_DIR, else the hub)")
    p.add_argument("--init", default="auto",
                   help="pretrained backbone: a directory from `embbert pretrain`, a shipped preset name, 'none' "
                   "(train from scratch) or 'auto' (default: tiny -> tiny_en from 16,000 training texts, scratch "
                   "below, where its corpus tokenizer costs more than its weights give; from scratch for the other "
                   "sizes, where no shipped preset was measured to help: docs/experiments/small_data.md)")
    p.add_argument("--out", default=None, help="run directory (default runs/<task>-<preset>-L<L>)")
    p.add_argument("--export-dir", default=None, help="where the C sources go (default: `embbert export`'s default)")
    p.add_argument("--board", choices=BOARD_KEYS, default=None,
                   help="target board: convert with the graph options whose recommended arena fits the RAM the "
                   "board leaves for it (docs/memory.md), or stop at conversion naming the smallest reachable arena")
    p.add_argument("--tune", action="store_true",
                   help="with --board: let `embbert tune` choose the architecture, size and L (its default "
                   "candidates, measured on their converted graphs before any training, successive halving on "
                   "validation, this command's recipe) and run the winner; --out is the tuning folder (default "
                   "runs/<task>-tune-<board>, resumed when called again), the winner's run directory is OUT/best")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last finished stage with its own settings (an "
                       "option that differs from them is an error)")
    again.add_argument("--force", action="store_true", help="delete the run in --out and start it again (and replace the contents of an --export-dir "
                       "that holds files `embbert export` did not write)")
    p.set_defaults(func=cmd_run)


STAGES = ("train", "convert", "check", "arena", "export")


def stages_done(out: Path) -> dict:
    """The run's record of finished stages ({"done": [...], ...}); an older run counts train by metrics.json."""
    try:
        record = json.loads((out / layout.STAGES).read_text(encoding="utf-8"))
        if not isinstance(record.get("done"), list):
            raise ValueError
    except FileNotFoundError:
        record = {"done": []}
    except (OSError, ValueError, AttributeError):
        raise EmbBertError(f"{out / layout.STAGES}: not a valid stage record; use --force to start the run again") from None
    if "train" not in record["done"] and (out / layout.METRICS).is_file() and not (out / layout.TRAIN_STATE_DIR).exists():
        record["done"].insert(0, "train")
    return record


def holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in (layout.CONFIG, layout.TRAIN_STATE_DIR, layout.METRICS, layout.STAGES))


def clear_run(out: Path) -> None:
    """`--force`: remove the run's artefacts (only the names a run writes)."""
    remove_named(out, layout.RUN_FILES)


def _stage(name: str):
    print(f"\n== {name} ==", flush=True)
    return time.time()


def run_pipeline(config: EmbBertConfig, out: Path, *, init=None, max_examples=None, export_dir=None,
                 verbose: int = 1, arena_budget: int | None = None, last_stage: str = STAGES[-1],
                 force_export: bool = False) -> dict:
    """Run the stages up to LAST_STAGE that are not recorded as finished in OUT/stages.json, recording each one."""
    from embbert.keras_model.train import train
    from embbert.tflite.arena import arena_report
    from embbert.tflite.check import check_run
    from embbert.tflite.convert import convert_run
    from embbert.tflite.export import export_micro_app

    if last_stage not in ("train", STAGES[-1]):
        raise ValueError(f"last_stage must be 'train' or {STAGES[-1]!r}, got {last_stage!r}")
    out = Path(out)
    record = stages_done(out)
    done = record["done"]
    timings: dict = {}
    result: dict = {"timings": timings, "resumed_stages": [s for s in STAGES if s in done]}

    def finish(stage: str, started: float, **extra) -> None:
        timings[f"{stage}_s"] = time.time() - started
        done.append(stage)
        record.update(extra)
        atomic_write_text(out / layout.STAGES, json.dumps(record, indent=2) + "\n")

    def skip(number: int, stage: str) -> None:
        print(f"\n== {number}/5 {stage}: already done ==", flush=True)

    if "train" in done:
        skip(1, "train")
        result["metrics"] = json.loads((out / layout.METRICS).read_text())
    else:
        resume = (out / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE).is_file()
        t = _stage(f"1/5 train {config.task} ({config.preset}, L={config.max_length})"
                   + (" - resuming the interrupted training" if resume else ""))
        result["metrics"] = train(config, out, init=init, resume=resume, verbose=verbose)
        finish("train", t)
    if last_stage == "train":
        return result
    if "convert" in done:
        skip(2, "convert")
        result["conversion"] = None
    else:
        t = _stage("2/5 convert to full int8")
        result["conversion"] = convert_run(out, arena_budget=arena_budget)
        finish("convert", t)
    if "check" in done:
        skip(3, "check")
        result["check"] = json.loads((out / layout.CHECK).read_text())
    else:
        t = _stage("3/5 check with Keras, TFLite and TFLM")
        result["check"] = check_run(out, max_examples=max_examples)
        finish("check", t)
    if "arena" in done:
        skip(4, "arena-size report")
        result["arena"] = json.loads((out / layout.ARENA_JSON).read_text())
    else:
        t = _stage("4/5 arena-size report")
        result["arena"] = arena_report(out)
        finish("arena", t)
    if "export" in done and record.get("export_dir_arg") == (None if export_dir is None else str(export_dir)):
        skip(5, "export")
        result["exported"] = record.get("exported", [])
    else:
        t = _stage("5/5 export the TFLM application")
        result["exported"] = [str(f) for f in export_micro_app(out, export_dir, force=force_export)]
        if "export" in done:
            done.remove("export")
        finish("export", t, exported=result["exported"],
               export_dir_arg=None if export_dir is None else str(export_dir))
    return result


MODEL_KEYS = (("float Keras", "float_keras"), ("QAT Keras", "qat_keras"), ("int8 TFLite", "int8_tflite"),
              ("int8 TFLM", "int8_tflm"))


def summarise(config: EmbBertConfig, out: Path, result: dict) -> str:
    check, arena = result["check"], result["arena"]
    metric = check["metric"]
    lines = [f"\nEmbBERT run: task {config.task}, preset {config.preset}, L={config.max_length} -> {out}"]
    lines.append(f"  test {metric} on {check['examples']} examples:")
    for label, key in MODEL_KEYS:
        lines.append(f"    {label:<12} {check['models'][key]['metric']:.4f}")
    a = check["tflm_vs_tflite"]
    lines.append(f"  TFLM vs TFLite: {100 * a['agreement']:.2f}% agree ({a['agreement_rule']}), "
                 f"largest logit difference {a['max_logit_diff_lsb']} LSB")
    saving = arena.get("pointer_savings_bytes", 0)
    lines.append(f"  model {arena['model_bytes']:,} B + arena {arena['recommended_arena_bytes']:,} B "
                 f"(32-bit board: host minimum {arena['min_arena_bytes']:,} B - {saving:,} B + scratch "
                 f"{arena['margin_bytes']:,} B) = total {arena['total_footprint_bytes']:,} B")
    for b in arena["boards"]:
        lines.append(f"    {b['name']}: {'fits' if b['fits'] else 'does NOT fit'} "
                     f"(RAM headroom {b['ram_headroom_bytes'] / 1024:.0f} KiB, "
                     f"flash headroom {b['flash_headroom_bytes'] / 1024:.0f} KiB)")
    est = arena.get("latency_estimate")
    if est:  # tflite/latency.py: predicted Cortex-M4 instructions x an assumed CPI range, not a measurement
        stock = est.get("stock_instructions")  # absent from reports written before the package estimate
        what = ("the exported package: CMSIS-NN + the project's kernels; stock TFLM "
                f"{stock['cmsis-nn']:,}" if stock else "CMSIS-NN")
        lines.append(f"  latency per inference, ESTIMATED (not measured; docs/latency.md): ~{est['instructions']['cmsis-nn']:,} "
                     f"Cortex-M4 instructions ({what}), at the assumed cycles per instruction:")
        for b in est["boards"]:
            lines.append(f"    {b['board'].split(' (')[0]}: {b['ms_low']:.0f}-{b['ms_high']:.0f} ms "
                         f"(CPI {b['cpi_low']:g}-{b['cpi_high']:g} at {b['mhz']:.0f} MHz)")
    lines.append(f"  files (paths relative to {out}):")
    for name in (layout.CONFIG, layout.FLOAT_WEIGHTS, layout.QAT_WEIGHTS, layout.METRICS, layout.HISTORY,
                 layout.INT8_MODEL, layout.FLOAT_MODEL, layout.CHECK, layout.ARENA_JSON, layout.ARENA_MD,
                 layout.ARENA_PNG):
        if (out / name).exists():
            lines.append(f"    {name}")
    lines.append(f"    {layout.SUMMARY}, {layout.RUN_RECORD}  (this summary; the run's record, written with it)")
    exported = result["exported"]
    if exported:
        where = os.path.relpath(Path(exported[0]).parent.resolve(), Path(out).resolve())
        lines.append(f"    C sources: {where} ({len(exported)} files)")
    t = result["timings"]
    lines.append("  time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in t.items()))
    return "\n".join(lines)


def pretrained_choice(init: str | None, preset: str, train_texts: int | None = None) -> tuple[str | None, str | None]:
    """--init as given, with 'auto' = the shipped preset of this model size where it was measured to help at
    this many training texts (`DEFAULTS.pretrained_min_train_texts`; None: not known before loading, the
    preset) and 'none' = scratch; and the line that says so (printed for a new run only: a resumed run keeps
    the start it had)."""
    from embbert.keras_model.presets import default_for

    if init == "none":
        return None, "--init none: training from scratch"
    if init == "auto":
        init = default_for(preset)
        if init is None:
            return None, f"no pretrained preset is shipped for the {preset} size: training from scratch"
        least = DEFAULTS.pretrained_min_train_texts.get(init)
        if least and train_texts is not None and train_texts < least:
            return None, (f"training from scratch: {init} helps only from {least:,} training texts, this run has "
                          f"{train_texts:,} (docs/experiments/small_data.md); --init {init} starts from it anyway")
        why = (f"it helps from {least:,} training texts, this run has {train_texts:,}" if least and train_texts
               is not None else "the training-set size is known only after loading from the hub")
        return init, (f"starting from the pretrained preset {init}: {why} (docs/experiments/small_data.md); "
                      "--init none trains from scratch")
    return init, None


def check_run_args(args) -> tuple[EmbBertConfig, Path]:
    """Everything `embbert run` can check before TensorFlow is imported: the config and the run folder."""
    args.preset = preflight.arch_preset(args.arch, args.preset)
    task = task_arg(args.task)
    args.max_length = preflight.max_length(max_length_for(task, args.max_length), args.preset)
    data_dir = data_dir_arg(args.data_dir)
    args.init, said = pretrained_choice(args.init, args.preset,
                                        train_texts(task, data_dir, args.max_train_examples))
    args.init = init_arg(args.init)
    task_name = Path(task).name if Path(task).is_absolute() else task
    out = preflight.output_dir(args.out or f"runs/{task_name}-{args.preset}-L{args.max_length}")
    if args.export_dir is not None:
        # refused now, not after the training: a folder that holds files `embbert export` did not write
        check_output_folder(args.export_dir, is_export, "embbert export", force=args.force, flag="--export-dir")
    if holds_run(out):
        done = stages_done(out)["done"]
        if args.force:
            pass
        elif not args.resume:
            state = f"finished stages: {', '.join(done)}" if done else "an unfinished training"
            raise UsageError(f"{out} already holds a run ({state}): use --resume to continue it, "
                             "--force to start it again, or choose another --out")
        elif not (out / layout.CONFIG).is_file():
            raise UsageError(f"{out}: the run has no config.json to resume from; use --force to start it again")
        else:
            config = preflight.resumed_run(out, args, task, "drop them to continue the run, or use --force to "
                                           "start it again")  # the run's own settings
            print(f"resuming the run in {out} with its own settings and start (pretrained or from scratch)",
                  flush=True)
            if args.data_dir is not None:  # the data has moved: record where it is now
                config = config.replace(data_dir=data_dir)
            elif config.data_dir and not Path(config.data_dir).is_dir():
                raise UsageError(f"{out}/config.json: recorded data directory {config.data_dir} not found; "
                                 "give --data-dir")
            return config, out
    elif args.resume:
        print(f"{out}: no run to resume there: starting a new run", flush=True)
    check_task_data(task, data_dir)  # split files, columns, rows; a --data-dir without the task: never the hub
    preflight.fits_preset(args.preset, args.init, None)
    if said:
        print(said, flush=True)
    train = recipe_from_args(args, max_train_examples=args.max_train_examples)
    config = EmbBertConfig.create(args.preset, args.max_length, task=task, data_dir=data_dir, train=train)
    return config, out


def tune_namespace(args) -> argparse.Namespace:
    """`embbert tune`'s settings for `run --tune`: its default search, this run's task, board, data and recipe;
    refuses the options the tuner chooses or does not take."""
    from embbert.tune import register as register_tune

    if not args.board:
        raise UsageError("--tune needs --board (the board whose RAM and flash bound the search)")
    chosen = [flag for flag, value in (("--preset", args.preset), ("--arch", args.arch),
                                       ("--max-length", args.max_length)) if value is not None]
    if chosen:
        raise UsageError(f"--tune chooses the architecture, size and L itself: drop {', '.join(chosen)} "
                         "(or use `embbert tune --presets ... --lengths ...`)")
    others = [flag for flag, given in (("--init", args.init not in ("auto", "none")), ("--resume", args.resume),
                                       ("--force", args.force), ("--export-dir", args.export_dir is not None),
                                       ("--max-examples", args.max_examples is not None)) if given]
    if others:
        raise UsageError(f"{', '.join(others)}: not taken with --tune (the tuner trains from scratch, resumes the "
                         "tuning folder by itself and exports the winner into OUT/best)")
    task_name = Path(args.task).name if Path(args.task).is_dir() else args.task
    parser = argparse.ArgumentParser(prog="embbert")  # `embbert tune`'s own flags and defaults, one definition
    register_tune(parser.add_subparsers())
    targs = parser.parse_args(["tune", f"--task={args.task}", f"--board={args.board}",
                               f"--out={args.out or f'runs/{task_name}-tune-{args.board}'}"])
    for name in ("epochs", "qat_epochs", "learning_rate", "qat_learning_rate", "batch_size", "seed",
                 "max_train_examples", "data_dir"):  # this run's recipe and data
        setattr(targs, name, getattr(args, name))
    return targs


def cmd_run_tuned(args) -> int:
    from embbert.core.boards import board
    from embbert.tune import check_tune_args, tune

    targs = tune_namespace(args)
    check_tune_args(targs)
    result = tune(targs)
    best = Path(result["best_run"])
    text = summarise(EmbBertConfig.load(best), best, result["final"])
    text += (f"\n  chosen by `embbert tune` for the {board(args.board)['name']}: {result['best']} among "
             f"{len(result['candidates'])} candidates; report {Path(targs.out) / 'tune.md'}")
    print(text)
    atomic_write_text(best / layout.SUMMARY, text.lstrip() + "\n")
    atomic_write_text(best / layout.RUN_RECORD, json.dumps({k: v for k, v in result["final"].items()
                                                            if k != "conversion"}, indent=2, default=str) + "\n")
    return 0


def cmd_run(args) -> int:
    if getattr(args, "tune", False):
        return cmd_run_tuned(args)
    config, out = check_run_args(args)
    if args.force and holds_run(out):
        print(f"--force: removing the run in {out}", flush=True)
        clear_run(out)
    elif args.resume and holds_run(out) and args.data_dir is not None:
        config.save(out)
    budget = None
    if getattr(args, "board", None):
        from embbert.tflite.arena import arena_budget_for

        budget = arena_budget_for(args.board)
    try:
        result = run_pipeline(config, out, init=args.init, max_examples=args.max_examples,
                              export_dir=args.export_dir, arena_budget=budget, force_export=args.force)
    except KeyboardInterrupt:
        if holds_run(out):
            raise Interrupted(f"interrupted; {out} keeps what was done: continue with the same command "
                              "and --resume") from None
        raise
    except EmbBertError as exc:
        if holds_run(out) and not isinstance(exc, UsageError):
            raise EmbBertError(f"{exc} ({out} keeps the finished stages: fix this, then run the same command "
                               "with --resume)") from None
        raise
    config = EmbBertConfig.load(out)
    text = summarise(config, out, result)
    print(text)
    atomic_write_text(out / layout.SUMMARY, text.lstrip() + "\n")
    atomic_write_text(out / layout.RUN_RECORD, json.dumps({k: v for k, v in result.items() if k != "conversion"},
                                                   indent=2, default=str) + "\n")
    return 0
