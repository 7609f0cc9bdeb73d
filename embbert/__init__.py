"""EmbBERT-Micro: tiny BERT-style text classifiers for microcontrollers, in Keras.

Python API (keras-hub style; docs/python_api.md), imported on first use so that `import embbert`
stays fast:

    EmbBertTokenizer.from_preset(name_or_dir)                       text -> token ids
    EmbBertPreprocessor.from_preset(name_or_dir, sequence_length=L) text (or pairs) -> token_ids, segment_ids
    EmbBertBackbone.from_preset(name_or_dir)                        embedder + encoder layers
    EmbBertClassifier.from_preset(name_or_dir, num_classes=K, sequence_length=L)
                                                                    a Keras model: fit / evaluate / predict on text
    quantize_model(classifier)                                      its quantisation-aware (QAT) model
    convert(model, representative_data=texts) -> TFLiteModel        full-int8 .tflite bytes for TFLM
    check(tflite_bytes, texts, labels)                              TFLite and TFLM metric, agreement
    arena_report(tflite_bytes)                                      exact TFLM arena, board fit
    export(tflite_bytes, preprocessor, target=..., out=...)         Arduino / PlatformIO / ESP-IDF / CMake package
    EmbBertError                                                    the exception every API error raises

Presets: `tiny_en`, `embbert_en` (shipped), or any folder written by `save_to_preset`, `embbert
pretrain` or `embbert train`. The command line (`embbert --help`) runs the same functions.
"""
import os as _os

# tfmot needs Keras 2: make `import tensorflow` pick tf_keras everywhere in the package.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from embbert.core.errors import EmbBertError  # noqa: E402 - after the environment is set

#: The public names, imported from `embbert.api` on first use (TensorFlow loads then).
_API = ("EmbBertTokenizer", "EmbBertPreprocessor", "EmbBertBackbone", "EmbBertClassifier", "quantize_model",
        "convert", "check", "arena_report", "export", "TFLiteModel")

__all__ = ["__version__", "EmbBertError", *_API]


def __getattr__(name: str):
    if name in _API:
        from embbert import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embbert' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
