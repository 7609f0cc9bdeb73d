"""Weights of a Keras model: counted, and saved atomically (below the backbone and the task models)."""
from __future__ import annotations

import os
from pathlib import Path

from ._tf import keras, tf


def count_params(weights) -> int:
    return int(sum(int(tf.size(w)) for w in weights))


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save weights atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")  # same suffix: tf_keras picks the format from it
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


__all__ = ["count_params", "save_weights"]
