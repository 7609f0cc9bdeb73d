"""Deployable int8 graphs of a preset at a given length, with random weights, for latency only.

TFLM's int8 kernels do the same work whatever the weight values are: the instruction count of
an inference depends on the graph (operators, shapes, kernels), not on what the model learned.
So the latency of, say, the embbert preset at L = 64/128/256 is measured on a graph converted
exactly as `embbert convert` converts a trained run (QAT model -> deployed graph -> full int8 ->
the smaller-arena form of the causal convolution, `tflite.convert._smallest_arena`), from a
classifier whose weights are Keras's random initialisation plus small seeded noise (so that no gain or
bias sits at a value the converter folds away: `quantize.perturb_like_trained`) and whose activation ranges come from
one training-mode batch of random token ids. Its logits mean nothing; its operators, shapes and
kernels are those of a trained model of the same preset and length.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.files import atomic_write_bytes, atomic_write_text

#: Labels of the synthetic classifier (the emotion task's six: the head is a 128 x 6 map either way).
SYNTHETIC_LABELS = 6


def synthetic_int8(preset: str, length: int, *, seed: int = 0, calibration: int = 16,
                   causal_valid: bool | None = None) -> tuple[bytes, dict]:
    """(FlatBuffer, info) of the default deployed graph of `preset` at `length`, random weights.

    `causal_valid` None: the form of the causal convolution `embbert convert` keeps (the smaller
    arena); True / False: that form (PAD + VALID k taps / SAME 2k-1 taps, k-1 of them zero)."""
    import numpy as np

    from embbert.keras_model._tf import tf
    from embbert.keras_model.model import build_classifier
    from embbert.keras_model.quantize import perturb_like_trained, quantize_model
    from embbert.keras_model.forms import DEFAULT
    from embbert.tflite.convert import _smallest_arena, build_int8

    config = EmbBertConfig.create(preset, length, task=None, num_labels=SYNTHETIC_LABELS)
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    vocab = config.model.vocab_size

    def batch(n: int):
        tok = rng.integers(5, vocab, size=(n, length), dtype=np.int32)
        tok[:, 0] = 2  # [CLS]
        seg = np.ones((n, length), dtype=np.int32)
        return tok, seg

    qat = quantize_model(build_classifier(config))
    perturb_like_trained(qat, seed)  # the trained graph's operators (initial gains and biases fold away)
    tok, seg = batch(calibration)
    qat({"token_ids": tf.constant(tok), "segment_ids": tf.constant(seg)}, training=True)  # activation ranges

    def representative():
        for i in range(calibration):
            yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

    if causal_valid is None:
        tries = [DEFAULT, replace(DEFAULT, causal_valid=not DEFAULT.causal_valid)]
    else:
        tries = [replace(DEFAULT, causal_valid=causal_valid)]
    data, info = _smallest_arena([build_int8(qat, config, representative, o) for o in tries])
    info["synthetic"] = {"preset": preset, "length": length, "seed": seed, "weights": "random (Keras initialisers)",
                         "calibration": f"{calibration} random token sequences"}
    return data, info


def write_synthetic_run(out_dir, preset: str, length: int, *, seed: int = 0, causal_valid: bool | None = None) -> Path:
    """A folder with `config.json` and `model_int8.tflite` (+ .sha256, synthetic.json) of the synthetic graph."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data, info = synthetic_int8(preset, length, seed=seed, causal_valid=causal_valid)
    EmbBertConfig.create(preset, length, num_labels=SYNTHETIC_LABELS).save(out)
    atomic_write_bytes(out / layout.INT8_MODEL, data)
    atomic_write_bytes(out / layout.INT8_SHA256, f"{hashlib.sha256(data).hexdigest()}  {layout.INT8_MODEL}\n".encode())
    atomic_write_text(out / "synthetic.json", json.dumps(info, indent=1, default=str) + "\n")
    return out


def write_run_forms(run_dir, out_root, *, max_calibration: int = 200) -> list[Path]:
    """A trained run's QAT model converted in three graph forms, each into OUT/<run>-<form>/ (config.json +
    model_int8.tflite): `before-issue-12` (the graph of the committed example: no pre-transposed keys, last
    layer on every token, SAME convolution with 2k-1 taps), `same` and `valid` (today's default graph with
    either form of the causal convolution). Same weights and calibration, so the logits can be compared."""
    from embbert.datasets.pipeline import encoded_split
    from embbert.keras_model.model import load_model
    from embbert.keras_model.forms import DEFAULT, PLAIN
    from embbert.tflite.convert import build_int8

    run_dir = Path(run_dir)
    config = EmbBertConfig.load(run_dir)
    tok, seg, _, _ = encoded_split(run_dir, config, "train", max_calibration)

    def representative():
        for i in range(tok.shape[0]):
            yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

    qat = load_model(run_dir, qat=True, config=config)
    forms = {"before-issue-12": PLAIN, "same": replace(DEFAULT, causal_valid=False),
             "valid": replace(DEFAULT, causal_valid=True)}
    written = []
    for form, options in forms.items():
        data, info = build_int8(qat, config, representative, options)
        out = Path(out_root) / f"{run_dir.name}-{form}"
        out.mkdir(parents=True, exist_ok=True)
        config.save(out)
        atomic_write_bytes(out / layout.INT8_MODEL, data)
        atomic_write_text(out / "graph.json", json.dumps({"run": str(run_dir), "form": form, "info": info},
                                                         indent=1, default=str) + "\n")
        written.append(out)
        print(out, len(data), flush=True)
    return written


if __name__ == "__main__":  # python -m embbert.bench.latency_models OUT PRESET [same|valid|default] L [L ...]
    import sys

    if sys.argv[1] == "--run-forms":  # python -m embbert.bench.latency_models --run-forms RUN_DIR OUT
        write_run_forms(sys.argv[2], sys.argv[3])
        sys.exit(0)
    out_root, preset_name, form, *lengths = sys.argv[1:]
    valid = {"same": False, "valid": True, "default": None}[form]
    for n in lengths:
        name = f"{preset_name}-L{n}" + ("" if valid is None else f"-{form}")
        print(write_synthetic_run(Path(out_root) / name, preset_name, int(n), causal_valid=valid), flush=True)
