"""Shared fixtures."""
from __future__ import annotations

import pytest


def make_tiny_run_dir(root, *, num_labels: int = 3, steps: int = 200, qat_steps: int = 40, seed: int = 0,
                      preset: str = "tiny"):
    """A run directory as `embbert train` leaves it: a size preset (tiny), a few steps on synthetic data."""
    from embbert.core.config import EmbBertConfig
    from embbert.datasets.loading import load_task
    from embbert.datasets.pipeline import encode_texts
    from embbert.datasets.synthetic import write_synthetic_task
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model._tf import keras
    from embbert.keras_model.model import build_classifier, save_model
    from embbert.keras_model.quantize import quantize_model

    root.mkdir(parents=True, exist_ok=True)
    task_dir = write_synthetic_task(root / "task", num_labels=num_labels, n_train=600, n_test=300, seed=seed)
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    data = load_task(str(task_dir))
    train_tokenizer(list(data.train.texts_a), 300, run / "tokenizer")
    config = EmbBertConfig.create(preset, max_length=32, num_labels=num_labels, task=str(task_dir),
                                  tokenizer="tokenizer", label_names=[f"class_{i}" for i in range(num_labels)])
    tok, seg = encode_texts(run / "tokenizer", data.train.texts_a, None, config.max_length)
    x = {"token_ids": tok, "segment_ids": seg}
    y = data.train.labels.astype("int64")
    keras.utils.set_random_seed(seed)  # reproducible weights: the agreement tests need a settled model
    model = build_classifier(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # whole epochs: with numpy inputs, fit() stops at the end of the data whatever steps_per_epoch says
    model.fit(x, y, batch_size=16, epochs=max(1, round(steps * 16 / len(y))), verbose=0)
    qat = quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(3e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=16, epochs=max(1, round(qat_steps * 16 / len(y))), verbose=0)
    save_model(model, config, run)
    save_model(qat, config, run, qat=True)
    return run


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """Tiny preset (L=32, 3 classes) trained for a few steps; float + QAT weights, tokenizer, config."""
    return make_tiny_run_dir(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def tiny_run_accuracy(tiny_run_dir):
    """Test accuracy of the fixture's QAT model (the agreement tests assume a trained, decisive model)."""
    import numpy as np

    from embbert.core.config import EmbBertConfig
    from embbert.keras_model.model import load_model
    from embbert.datasets.pipeline import encoded_split

    config = EmbBertConfig.load(tiny_run_dir)
    tok, seg, labels, _ = encoded_split(tiny_run_dir, config, "test", None)
    scores = load_model(tiny_run_dir, qat=True).predict({"token_ids": tok, "segment_ids": seg}, verbose=0)
    return float(np.mean(scores.argmax(-1) == labels))


@pytest.fixture
def make_run():
    """`make_tiny_run_dir` for a test that needs its own run (another preset or architecture)."""
    return make_tiny_run_dir


def make_unfinished_train(folder, *, history: bool = False):
    """A run directory as an interrupted `embbert train` (or `embbert run`) leaves it, with a file of the user's
    (`neighbour.txt`) beside it; `history`: with the history.csv row of its first epoch."""
    from embbert.core.config import EmbBertConfig

    folder.mkdir()
    EmbBertConfig.create("nano", 16, task="emotion", num_labels=6, tokenizer="tokenizer").save(folder)
    (folder / ".train").mkdir()
    (folder / ".train" / "state.json").write_text('{"float_done": false}')
    if history:
        (folder / "history.csv").write_text("epoch,stage\n1,float\n")
    (folder / "neighbour.txt").write_text("keep me\n")
    return folder


@pytest.fixture
def unfinished_train():
    """`make_unfinished_train` for the command-line tests."""
    return make_unfinished_train
