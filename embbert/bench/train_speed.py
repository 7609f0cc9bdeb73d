"""`embbert bench train-speed`: training steps per second, float vs QAT.

Both models are built from the same preset and trained on the same random token
batches in one process; the first steps (graph tracing, warm-up) are not timed, then the
two models take turns step by step and the fastest step of each is reported (wall clock
and CPU time), so the ratio survives a noisy, shared machine.
"""
from __future__ import annotations

import json
import time

from embbert.core.args import positive_int
from embbert.core.config import PRESETS, EmbBertConfig
from embbert.core.errors import EmbBertError

WARMUP_STEPS = 2


def _random_batch(config: EmbBertConfig, batch_size: int, seed: int):
    import numpy as np

    from embbert.datasets.tokenizer import CLS_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEGMENT_A, SEGMENT_PAD

    rng = np.random.default_rng(seed)
    L = config.max_length
    tokens = rng.integers(NUM_SPECIAL_TOKENS, config.model.vocab_size, size=(batch_size, L), dtype=np.int32)
    tokens[:, 0] = CLS_ID
    lengths = rng.integers(2, L + 1, size=batch_size)
    positions = np.arange(L)[None, :]
    pad = positions >= lengths[:, None]
    tokens[pad] = PAD_ID
    segments = np.where(pad, SEGMENT_PAD, SEGMENT_A).astype(np.int32)
    labels = rng.integers(0, max(config.num_labels, 2), size=batch_size).astype(np.int64)
    if config.regression:
        labels = rng.random(batch_size).astype(np.float32)
    return {"token_ids": tokens, "segment_ids": segments}, labels


def _interleaved_minima(models, x, y, steps: int) -> list[tuple[float, float]]:
    """(fastest wall-clock seconds, fastest CPU seconds) of one `train_on_batch` step of each model.

    After WARMUP_STEPS untimed steps each, the models take turns, one step each, `steps` times: a
    load that comes and goes on a shared machine hits both alike, and the minimum over the steps is
    the time of a step the load did not touch."""
    for model in models:
        for _ in range(WARMUP_STEPS):
            model.train_on_batch(x, y)
    wall = [[] for _ in models]
    cpu = [[] for _ in models]
    for _ in range(steps):
        for k, model in enumerate(models):
            w0, c0 = time.perf_counter(), time.process_time()
            model.train_on_batch(x, y)
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return [(min(w), min(c)) for w, c in zip(wall, cpu)]


def train_speed(preset: str, max_length: int, batch_size: int = 32, steps: int = 20, seed: int = 0) -> dict:
    """Training steps per second of the float and the QAT classifier (and QAT/float ratio), their steps
    interleaved; steps/s from the fastest step (wall clock), CPU milliseconds of the fastest step."""
    if batch_size < 1 or steps < 1:
        raise EmbBertError("batch size and steps must be >= 1")
    from embbert.keras_model._tf import keras
    from embbert.keras_model.model import build_classifier
    from embbert.keras_model.quantize import quantize_model
    from embbert.keras_model.train import compile_classifier

    config = EmbBertConfig.create(preset, max_length, num_labels=2)
    keras.utils.set_random_seed(seed)
    x, y = _random_batch(config, batch_size, seed)

    float_model = build_classifier(config)
    compile_classifier(float_model, config, 1e-4)
    qat_model = quantize_model(float_model)
    compile_classifier(qat_model, config, 1e-4)
    (float_wall, float_cpu), (qat_wall, qat_cpu) = _interleaved_minima([float_model, qat_model], x, y, steps)
    float_sps = 1.0 / float_wall if float_wall > 0 else float("inf")
    qat_sps = 1.0 / qat_wall if qat_wall > 0 else float("inf")

    return {
        "preset": preset,
        "max_length": config.max_length,
        "batch_size": batch_size,
        "steps": steps,
        "warmup_steps": WARMUP_STEPS,
        "float_steps_per_s": float_sps,
        "qat_steps_per_s": qat_sps,
        "qat_over_float": qat_sps / float_sps if float_sps > 0 else float("nan"),
        "float_cpu_ms_per_step": 1000.0 * float_cpu,
        "qat_cpu_ms_per_step": 1000.0 * qat_cpu,
        "interleaved": True,
    }


def _cmd_train_speed(args) -> int:
    result = train_speed(args.preset, args.max_length, batch_size=args.batch_size, steps=args.steps)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"train speed, preset {result['preset']}, L={result['max_length']}, batch {result['batch_size']}, "
          f"{result['steps']} timed steps of each model, interleaved ({result['warmup_steps']} warm-up steps "
          "not timed); fastest step")
    print(f"  float  {result['float_steps_per_s']:8.2f} steps/s  {result['float_cpu_ms_per_step']:8.1f} CPU ms/step")
    print(f"  QAT    {result['qat_steps_per_s']:8.2f} steps/s  {result['qat_cpu_ms_per_step']:8.1f} CPU ms/step  "
          f"({result['qat_over_float']:.2f}x float)")
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "train-speed",
        help="training steps per second of the float and the QAT model",
        description="Train the float and the QAT classifier of a preset on random token batches and report "
        "steps per second of each (warm-up steps excluded; the two take turns step by step, fastest step "
        "reported, wall clock and CPU time) and their ratio.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), required=True, help="model size preset")
    p.add_argument("--max-length", type=positive_int, required=True, help="sequence length L")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_train_speed)


__all__ = ["train_speed", "register"]
