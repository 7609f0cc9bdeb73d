"""`embbert bench train-speed`: training steps per second, float vs QAT.

Both models are built from the same preset and trained on the same random token
batches in one process; the first steps (graph tracing, warm-up) are not timed.
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


def _steps_per_second(model, x, y, steps: int) -> float:
    """Time `steps` optimizer steps of `model.train_on_batch` after WARMUP_STEPS untimed ones."""
    for _ in range(WARMUP_STEPS):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    elapsed = time.perf_counter() - start
    return steps / elapsed if elapsed > 0 else float("inf")


def train_speed(preset: str, max_length: int, batch_size: int = 32, steps: int = 20, seed: int = 0) -> dict:
    """Training steps per second of the float and the QAT classifier (and QAT/float ratio)."""
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
    float_sps = _steps_per_second(float_model, x, y, steps)

    qat_model = quantize_model(float_model)
    compile_classifier(qat_model, config, 1e-4)
    qat_sps = _steps_per_second(qat_model, x, y, steps)

    return {
        "preset": preset,
        "max_length": config.max_length,
        "batch_size": batch_size,
        "steps": steps,
        "warmup_steps": WARMUP_STEPS,
        "float_steps_per_s": float_sps,
        "qat_steps_per_s": qat_sps,
        "qat_over_float": qat_sps / float_sps if float_sps > 0 else float("nan"),
    }


def _cmd_train_speed(args) -> int:
    result = train_speed(args.preset, args.max_length, batch_size=args.batch_size, steps=args.steps)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"train speed, preset {result['preset']}, L={result['max_length']}, batch {result['batch_size']}, "
          f"{result['steps']} timed steps ({result['warmup_steps']} warm-up steps not timed)")
    print(f"  float  {result['float_steps_per_s']:8.2f} steps/s")
    print(f"  QAT    {result['qat_steps_per_s']:8.2f} steps/s  ({result['qat_over_float']:.2f}x float)")
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "train-speed",
        help="training steps per second of the float and the QAT model",
        description="Train the float and the QAT classifier of a preset on random token batches and report "
        "steps per second of each (warm-up steps excluded) and their ratio.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), required=True, help="model size preset")
    p.add_argument("--max-length", type=positive_int, required=True, help="sequence length L")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps per model (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_train_speed)


__all__ = ["train_speed", "register"]
