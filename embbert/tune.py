"""`embbert tune`: the most accurate model that fits a board, among architectures x sizes x lengths.

1. Candidates: every size preset of --presets at every length of --lengths. Each one is measured
   before any training: its QAT classifier (untrained weights, same graph) is converted to full
   int8 and its TFLM arena measured (tflite/arena.py), with the task tokenizer's tables; a
   candidate whose RAM (recommended 32-bit arena + TFLM statics) or flash (model + tables +
   runtime) exceeds what the board leaves, or whose MACs exceed --max-macs, is never trained.
2. Successive halving on the validation split: rung r trains the survivors for EPOCHS x 2^r float
   epochs (no QAT), the best half (by validation score) goes on, until one is left or the
   --budget-minutes are spent (the best so far wins then); a single candidate needs no rung.
3. The winner is trained with the full recipe (float + QAT), converted, checked, reported and
   exported into OUT/best; OUT/tune.md, tune.json and tune.png hold the candidates, the rungs and
   the Pareto front of validation score against measured memory.

Everything is kept under OUT (tokenizers, candidates.json, rung runs): a second call resumes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from embbert.core import layout, preflight
from embbert.core.args import add_recipe_arguments, positive_float, positive_int, recipe_from_args
from embbert.core.boards import BOARD_KEYS, board
from embbert.core.config import ARCH_DEFAULT_PRESET, PRESETS, QUICK_RECIPE, EmbBertConfig
from embbert.core.errors import EmbBertError, UsageError
from embbert.core.files import atomic_write_bytes, atomic_write_text

#: mamba's unrolled scan takes minutes to convert (docs/baselines.md): searched only when named in --presets
DEFAULT_PRESETS = ("nano", "tiny", "embbert") + tuple(p for a, p in ARCH_DEFAULT_PRESET.items()
                                                 if a not in ("embbert", "mamba"))
CANDIDATES_FILE = "candidates.json"


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="the most accurate model that fits a board: architectures x sizes x lengths, successive halving",
        description="Measure every candidate (size preset x length) by converting it to full int8 and measuring "
        "its TFLM arena before any training; train those that fit the board with successive halving on the "
        "validation split; train, convert, check and export the winner into OUT/best. Writes OUT/tune.md, "
        "tune.json and tune.png. A second call with the same OUT resumes.",
    )
    p.add_argument("--task", required=True, help="task name or task directory")
    p.add_argument("--board", choices=BOARD_KEYS, required=True, help="target board (its RAM and flash bound the search)")
    p.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(DEFAULT_PRESETS), metavar="PRESET",
                   help="size presets to search, of any architecture (default: " + " ".join(DEFAULT_PRESETS) + ")")
    p.add_argument("--lengths", nargs="+", type=positive_int, default=None, metavar="L",
                   help="sequence lengths to search (default: the task's L and half of it)")
    p.add_argument("--max-macs", type=positive_int, default=None, help="leave out candidates with more MACs per inference")
    p.add_argument("--budget-minutes", type=positive_float, default=None,
                   help="stop halving after this much training time; the best so far wins")
    p.add_argument("--rung-epochs", type=positive_int, default=1, help="float epochs of the first rung (doubled per rung)")
    add_recipe_arguments(p, QUICK_RECIPE, why_lr=", embbert run's")
    p.add_argument("--max-train-examples", type=positive_int, default=None, help="seeded subset of the train split")
    p.add_argument("--data-dir", default=None, help="data directory (default $EMBBERT_DATA_DIR, else the hub)")
    p.add_argument("--out", required=True, help="tuning folder (resumed when it holds an earlier tune of the same task)")
    p.set_defaults(func=cmd_tune)


def _lengths(args, task: str) -> list[int]:
    from embbert.datasets.tasks import max_length_for

    if args.lengths:
        return sorted(set(args.lengths), reverse=True)
    L = max_length_for(task, None) or 128
    return [L, max(8, L // 2)]


def _tokenizer(out: Path, vocab_size: int, texts) -> Path:
    """The task tokenizer of this vocabulary size, trained once and shared by every candidate that has it."""
    from embbert.datasets.tokenizer import TOKENIZER_FILE, train_tokenizer

    path = out / "tokenizers" / f"V{vocab_size}"
    if not (path / TOKENIZER_FILE).is_file():
        train_tokenizer(list(texts), vocab_size=vocab_size, out_dir=path)
    return path


def measure_candidate(preset: str, length: int, num_labels: int, tokenizer_dir: Path, board_key: str) -> dict[str, Any]:
    """Convert the untrained QAT classifier of `preset` at `length` to full int8 and measure it for the board."""
    import numpy as np

    from embbert.keras_model._tf import keras
    from embbert.keras_model.model import build_classifier, parameter_counts
    from embbert.keras_model.quantize import perturb_like_trained, quantize_model
    from embbert.tflite.arena import measure_arena, table_bytes
    from embbert.tflite.convert import convert_qat

    config = EmbBertConfig.create(preset, length, num_labels=num_labels)
    keras.utils.set_random_seed(0)
    qat = quantize_model(build_classifier(config))
    rng = np.random.default_rng(0)
    n = 8
    tok = rng.integers(5, config.model.vocab_size, size=(n, length), dtype=np.int32)
    seg = np.ones((n, length), np.int32)
    for i in range(n):  # texts of several lengths, padded
        used = int(rng.integers(2, length + 1))
        tok[i, used:], seg[i, used:] = 0, 0
    tok[:, 0] = 2
    perturb_like_trained(qat, seed=0)  # the trained graph's operators; activation ranges from a forward pass
    qat({"token_ids": tok, "segment_ids": seg}, training=True)
    data, info = convert_qat(qat, config, tok, seg)
    tables = table_bytes(tokenizer_dir)
    report = measure_arena(data, info=info, tokenizer_bytes=tables)
    fit = next(b for b in report["boards"] if b["key"] == board_key)
    return {"preset": preset, "arch": config.model.arch, "length": length,
            "backbone_params": parameter_counts(config)["backbone_params"], "vocab_size": config.model.vocab_size,
            "model_bytes": report["model_bytes"], "arena_bytes": report["recommended_arena_bytes"],
            "total_bytes": report["total_footprint_bytes"], "tokenizer_table_bytes": tables,
            "flash_needed_bytes": fit["flash_needed_bytes"], "ram_headroom_bytes": fit["ram_headroom_bytes"],
            "flash_headroom_bytes": fit["flash_headroom_bytes"], "fits": fit["fits"], "macs": report["macs"]}


def _key(c: dict) -> str:
    return f"{c['preset']}-L{c['length']}"


def _score(metrics: dict) -> float:
    return float(metrics["qat_val"] if "qat_val" in metrics else metrics["float_val"])


def tune(args) -> dict[str, Any]:
    from embbert.datasets.loading import load_task
    from embbert.run import run_pipeline, stages_done

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = load_task(args.task, args.data_dir)
    num_labels = data.spec.num_labels
    lengths = _lengths(args, args.task)
    store = out / CANDIDATES_FILE
    measured: dict[str, dict] = json.loads(store.read_text()) if store.is_file() else {}
    candidates = []
    for preset in args.presets:
        for length in lengths:
            if length > PRESETS[preset].max_positions:
                continue
            key = f"{preset}-L{length}"
            if key not in measured:
                tok_dir = _tokenizer(out, PRESETS[preset].vocab_size, data.train.texts_a)
                print(f"measuring {key} for the {board(args.board)['name']} (untrained weights, same graph)", flush=True)
                measured[key] = measure_candidate(preset, length, num_labels, tok_dir, args.board)
                atomic_write_text(store, json.dumps(measured, indent=1) + "\n")
            c = dict(measured[key])
            c["excluded"] = ("does not fit the board" if not c["fits"] else
                             f"more than {args.max_macs:,} MACs" if args.max_macs and c["macs"] > args.max_macs else None)
            candidates.append(c)
    alive = [c for c in candidates if not c["excluded"]]
    for c in candidates:
        print(f"  {_key(c):<22} total {c['total_bytes']:>9,} B  MACs {c['macs']:>12,}  "
              + (f"excluded: {c['excluded']}" if c["excluded"] else "candidate"), flush=True)
    if not alive:
        raise EmbBertError(f"no candidate fits the {board(args.board)['name']}"
                           + (f" within {args.max_macs:,} MACs" if args.max_macs else "")
                           + f" (smallest: {min(candidates, key=lambda c: c['total_bytes'])['total_bytes']:,} B total);"
                           " try shorter --lengths or smaller --presets")
    base = recipe_from_args(args, max_train_examples=args.max_train_examples)
    rungs: list[list[dict]] = []
    rung = 0
    while len(alive) > 1:
        epochs = args.rung_epochs * 2 ** rung
        results = []
        for c in alive:
            run = out / f"rung{rung}" / _key(c)
            config = EmbBertConfig.create(c["preset"], c["length"], task=args.task, data_dir=args.data_dir,
                                          tokenizer=str((out / "tokenizers" / f"V{c['vocab_size']}").resolve()),
                                          train=replace(base, epochs=epochs, qat_epochs=0))
            if "train" in stages_done(run)["done"]:
                metrics = json.loads((run / layout.METRICS).read_text())
            else:
                print(f"\n== rung {rung}: {_key(c)}, {epochs} float epochs ==", flush=True)
                metrics = run_pipeline(config, run, verbose=2, last_stage="train")["metrics"]
            results.append({"key": _key(c), "epochs": epochs, "validation": _score(metrics)})
        rungs.append(results)
        ranked = sorted(zip(alive, results), key=lambda cr: -cr[1]["validation"])
        keep = max(1, math.ceil(len(alive) / 2))
        alive = [c for c, _ in ranked[:keep]]
        spent = (time.time() - started) / 60
        if args.budget_minutes and spent >= args.budget_minutes:
            print(f"budget of {args.budget_minutes:g} minutes spent after rung {rung}: the best so far wins", flush=True)
            break
        rung += 1
    best = alive[0]
    print(f"\n== best: {_key(best)} ({best['arch']}); the full recipe into {out / 'best'} ==", flush=True)
    config = EmbBertConfig.create(best["preset"], best["length"], task=args.task, data_dir=args.data_dir,
                                  tokenizer=str((out / "tokenizers" / f"V{best['vocab_size']}").resolve()), train=base)
    final = run_pipeline(config, out / "best", verbose=2, export_dir=out / "best" / layout.EXPORT_DIR)
    result = {"task": args.task, "board": args.board, "lengths": lengths, "presets": args.presets,
              "max_macs": args.max_macs, "budget_minutes": args.budget_minutes, "candidates": candidates,
              "rungs": rungs, "best": _key(best), "best_run": str(out / "best"),
              "best_check": final["check"], "best_arena": {k: final["arena"][k] for k in
                                                           ("model_bytes", "recommended_arena_bytes",
                                                            "total_footprint_bytes", "macs")},
              "minutes": round((time.time() - started) / 60, 1)}
    write_report(result, out)
    return {**result, "final": final}  # the winner's whole pipeline result (`run --tune` summarises it)


def write_report(result: dict[str, Any], out: Path) -> None:
    last_score = {}
    for rung in result["rungs"]:
        for r in rung:
            last_score[r["key"]] = r
    lines = [f"# Tuning {result['task']} for the {board(result['board'])['name']}", "",
             f"Best: **{result['best']}**, run directory `{result['best_run']}`: int8 TFLM "
             f"{100 * result['best_check']['models']['int8_tflm']['metric']:.2f} on the test split, "
             f"{result['best_arena']['total_footprint_bytes']:,} B total (model + recommended arena), "
             f"{result['best_arena']['macs']:,} MACs. Candidates measured on their converted graph before training; "
             f"validation scores from the last rung each reached. {result['minutes']} minutes.", "",
             "| candidate | arch | params | total B | RAM headroom B | flash headroom B | MACs | status | epochs | validation |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for c in result["candidates"]:
        k = _key(c)
        r = last_score.get(k)
        status = c["excluded"] or ("best" if k == result["best"] else "trained" if r else "not trained")
        score = f"{100 * r['validation']:.2f}" if r else "–"
        lines.append(f"| {k} | {c['arch']} | {c['backbone_params']:,} | {c['total_bytes']:,} | "
                     f"{c['ram_headroom_bytes']:,} | {c['flash_headroom_bytes']:,} | {c['macs']:,} | {status} | "
                     f"{r['epochs'] if r else '–'} | {score} |")
    atomic_write_text(out / "tune.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "tune.json", json.dumps(result, indent=1) + "\n")
    atomic_write_bytes(out / "tune.png", _plot(result, last_score))


def _plot(result: dict, last_score: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embbert.bench.arch import pareto, png_bytes

    pts = [(c["total_bytes"] / 1024, 100 * last_score[_key(c)]["validation"], _key(c)) for c in result["candidates"]
           if _key(c) in last_score]
    front = pareto([(m, s) for m, s, _ in pts])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for (m, s, k), on in zip(pts, front):
        ax.plot(m, s, "o" if on else "x", color="C0" if on else "0.5")
        ax.annotate(k, (m, s), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for c in result["candidates"]:
        if c["excluded"]:
            ax.axvline(c["total_bytes"] / 1024, color="C3", alpha=0.15)
    ax.set_xlabel("total memory, KiB (model + arena; red lines: excluded candidates)")
    ax.set_ylabel("validation score (%), last rung reached")
    ax.set_title(f"{result['task']} on {board(result['board'])['name']}")
    return png_bytes(fig)


def check_tune_args(args) -> None:
    from embbert.datasets.loading import check_task_data, data_dir_arg
    from embbert.datasets.tasks import task_arg

    args.task = task_arg(args.task)
    args.data_dir = data_dir_arg(args.data_dir)
    check_task_data(args.task, args.data_dir)
    for length in args.lengths or ():
        if length < 2:
            raise UsageError(f"--lengths {length}: expected at least 2 ([CLS] and one token)")
    if args.lengths and not any(length <= PRESETS[p].max_positions for p in args.presets for length in args.lengths):
        raise UsageError("--lengths: no length fits the position table of any --presets")
    preflight.output_dir(args.out)
    args.presets = list(dict.fromkeys(args.presets))


def cmd_tune(args) -> int:
    check_tune_args(args)
    result = tune(args)
    print(f"\nbest for the {board(args.board)['name']}: {result['best']} -> {result['best_run']}; "
          f"report {Path(args.out) / 'tune.md'}")
    return 0


__all__ = ["register", "tune", "measure_candidate", "cmd_tune"]
