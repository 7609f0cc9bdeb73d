"""The Python API (keras-hub style): presets, text in, a TFLM package out. `docs/python_api.md`.

    import embbert
    clf = embbert.EmbBertClassifier.from_preset("tiny_en", num_classes=6, sequence_length=64)
    clf.fit(texts, labels, epochs=3)
    qat = embbert.quantize_model(clf, calibration_data=texts); qat.fit(texts, labels)
    model = embbert.convert(qat, representative_data=texts)           # bytes
    embbert.check(model, test_texts, test_labels)                     # TFLite and TFLM metric, agreement
    embbert.export(model, clf.preprocessor, target="arduino", out="EmbBERT")

It sits on top of the stages (datasets, keras_model, tflite) like the command line, and runs the same
functions the commands run.
"""
from __future__ import annotations

from embbert.keras_model.backbone import EmbBertBackbone

from .classifier import EmbBertClassifier, quantize_model
from .deploy import TFLiteModel, arena_report, check, convert, export
from .preprocessing import EmbBertPreprocessor, EmbBertTokenizer

__all__ = ["EmbBertTokenizer", "EmbBertPreprocessor", "EmbBertBackbone", "EmbBertClassifier", "quantize_model",
           "convert", "check", "arena_report", "export", "TFLiteModel"]
