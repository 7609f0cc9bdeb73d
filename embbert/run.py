"""`embbert run`: the whole path on one task, from raw text to a TFLM application.

train (float, then QAT) -> convert (full int8) -> check (float / QAT / TFLite /
TFLM metric, TFLM-TFLite agreement) -> arena report -> export (C sources), then a
closing summary of what was done and where every file went.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .cli import non_negative_int, positive_float, positive_int
from .config import PRESETS, EmbBertConfig, TrainConfig, atomic_write_text
from .errors import EmbBertError

DEFAULT_TASK = "emotion"


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the whole path on one task: train, QAT, convert, check, arena report, export",
        description="Run the whole path on a small real default (task emotion, preset tiny, short training): "
        "float training, quantisation-aware training, full-int8 conversion, checks with the TFLite and TFLM "
        "interpreters, the arena-size report and the export of the TFLM application, then a summary.",
    )
    p.add_argument("--task", default=DEFAULT_TASK, help=f"task name or task directory (default {DEFAULT_TASK})")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size preset (default tiny)")
    p.add_argument("--max-length", type=positive_int, default=64, help="sequence length L (default 64)")
    p.add_argument("--epochs", type=non_negative_int, default=3, help="float epochs (default 3)")
    p.add_argument("--qat-epochs", type=non_negative_int, default=1, help="QAT epochs (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--learning-rate", type=positive_float, default=1e-3,
                   help="float learning rate (default 1e-3: a short run from scratch; the paper's 5e-5 is for "
                   "fine-tuning a pretrained model)")
    p.add_argument("--qat-learning-rate", type=positive_float, default=1e-4, help="QAT learning rate (default 1e-4)")
    p.add_argument("--max-train-examples", type=positive_int, default=None, help="use a seeded subset of train")
    p.add_argument("--max-examples", type=positive_int, default=None, help="limit the check to N test examples")
    p.add_argument("--data-dir", default=None, help="data directory in hub layout (default $EMBBERT_DATA_DIR, else the hub)")
    p.add_argument("--init", default=None, help="pretrained backbone directory (`embbert pretrain`)")
    p.add_argument("--out", default=None, help="run directory (default runs/<task>-<preset>-L<L>)")
    p.add_argument("--export-dir", default=None, help="where the C sources go (default: `embbert export`'s default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_run)


def _stage(name: str):
    print(f"\n== {name} ==", flush=True)
    return time.time()


def run_pipeline(config: EmbBertConfig, out: Path, *, init=None, max_examples=None, export_dir=None,
                 verbose: int = 1) -> dict:
    from embbert.keras_model.train import train
    from embbert.tflite.arena import arena_report
    from embbert.tflite.check import check_run
    from embbert.tflite.convert import convert_run
    from embbert.tflite.export import export_micro_app

    timings = {}
    t = _stage(f"1/5 train {config.task} ({config.preset}, L={config.max_length})")
    metrics = train(config, out, init=init, verbose=verbose)
    timings["train_s"] = time.time() - t
    t = _stage("2/5 convert to full int8")
    conversion = convert_run(out)
    timings["convert_s"] = time.time() - t
    t = _stage("3/5 check with Keras, TFLite and TFLM")
    check = check_run(out, max_examples=max_examples)
    timings["check_s"] = time.time() - t
    t = _stage("4/5 arena-size report")
    arena = arena_report(out)
    timings["arena_s"] = time.time() - t
    t = _stage("5/5 export the TFLM application")
    files = export_micro_app(out, export_dir)
    timings["export_s"] = time.time() - t
    return {"metrics": metrics, "conversion": conversion, "check": check, "arena": arena,
            "exported": [str(f) for f in files], "timings": timings}


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
    lines.append(f"  model {arena['model_bytes']:,} B + arena {arena['recommended_arena_bytes']:,} B "
                 f"(minimum {arena['min_arena_bytes']:,} B + margin) = total {arena['total_footprint_bytes']:,} B")
    for b in arena["boards"]:
        lines.append(f"    {b['name']}: {'fits' if b['fits'] else 'does NOT fit'} "
                     f"(RAM headroom {b['ram_headroom_bytes'] / 1024:.0f} KiB, "
                     f"flash headroom {b['flash_headroom_bytes'] / 1024:.0f} KiB)")
    lines.append("  files:")
    for name in ("config.json", "float.weights.h5", "qat.weights.h5", "metrics.json", "history.csv",
                 "model_int8.tflite", "model_float32.tflite", "check.json", "arena_report.md", "arena_report.png"):
        if (out / name).exists():
            lines.append(f"    {out / name}")
    exported = result["exported"]
    if exported:
        lines.append(f"    C sources: {Path(exported[0]).parent} ({len(exported)} files)")
    t = result["timings"]
    lines.append("  time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in t.items()))
    return "\n".join(lines)


def cmd_run(args) -> int:
    train = TrainConfig(
        batch_size=args.batch_size, learning_rate=args.learning_rate, epochs=args.epochs,
        qat_epochs=args.qat_epochs, qat_learning_rate=args.qat_learning_rate, seed=args.seed,
        max_train_examples=args.max_train_examples,
    )
    config = EmbBertConfig.create(args.preset, args.max_length, task=args.task, data_dir=args.data_dir, train=train)
    task_name = Path(args.task).name if Path(args.task).is_dir() else args.task
    out = Path(args.out or f"runs/{task_name}-{args.preset}-L{args.max_length}")
    if (out / "metrics.json").exists() or (out / ".train").exists():
        raise EmbBertError(f"{out} already holds a run: choose another --out, or delete it to start again")
    result = run_pipeline(config, out, init=args.init, max_examples=args.max_examples, export_dir=args.export_dir)
    text = summarise(config, out, result)
    print(text)
    atomic_write_text(out / "summary.txt", text.lstrip() + "\n")
    atomic_write_text(out / "run.json", json.dumps({k: v for k, v in result.items() if k != "conversion"},
                                                   indent=2, default=str) + "\n")
    return 0
