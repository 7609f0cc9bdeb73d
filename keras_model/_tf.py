"""Import point for TensorFlow and Keras 2 (`tf_keras`).

tfmot 0.8.1 works only with Keras 2, so the model is built with `tf_keras`;
`TF_USE_LEGACY_KERAS=1` must be set before TensorFlow is imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
