"""`EmbBertClassifier`: a Keras model that fits, evaluates and predicts on raw text (keras-hub style).

The graph is `keras_model.model.build_classifier` on the layers of an `EmbBertBackbone` (the same
model `embbert train` trains: its weights files load both ways), and `quantize_model` is
`keras_model.quantize.quantize_model` (the QAT graph of `embbert train`'s second stage).
`fit` / `evaluate` / `predict` accept strings, lists of strings, `(first, second)` tuples of text
pairs, or a `tf.data.Dataset` of `(text, label)`; the preprocessor turns them into model inputs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embbert.core import layout
from embbert.core.config import QUICK_RECIPE, EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.keras_model._tf import keras, tf
from embbert.keras_model import presets
from embbert.keras_model.backbone import EmbBertBackbone
from embbert.keras_model.model import build_classifier, load_model
from embbert.keras_model.quantize import quantize_model as qat_model
from embbert.keras_model.train import calibrate, loss_and_metrics, make_optimizer
from embbert.keras_model.weights import count_params, save_weights

from .preprocessing import EmbBertPreprocessor

#: The default batch size of `fit` / `evaluate` / `predict` on text (the recipes' batch size).
DEFAULT_BATCH_SIZE = QUICK_RECIPE.batch_size


def _is_text(x: Any) -> bool:
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S", "O")
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and all(_is_text(v) for v in x)
    if isinstance(x, tf.Tensor):
        return x.dtype == tf.string
    return False


def label_ids(y, num_classes: int, label_names: Sequence[str] = ()) -> np.ndarray:
    """Labels as the model trains on them: class ids in [0, num_classes) (label names are mapped through
    `label_names`), or float scores for regression (`num_classes=1`); anything else is an EmbBertError."""
    y = np.asarray(y)
    if num_classes == 1:
        if y.dtype.kind not in "iuf":
            raise EmbBertError(f"regression labels must be numbers, got {y.dtype}")
        return y.astype(np.float32)
    if y.dtype.kind in "USO":
        index = {n: i for i, n in enumerate(label_names)}
        if not index:
            raise EmbBertError("labels are strings but the model has no label_names (from_preset(..., label_names=[...]))")
        bad = sorted({str(v) for v in y.reshape(-1)} - set(index))
        if bad:
            raise EmbBertError(f"labels {bad[:3]} are not among the label names {list(label_names)}")
        return np.array([index[str(v)] for v in y.reshape(-1)], np.int64).reshape(y.shape)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise EmbBertError("class labels must be integer class ids (or label names)")
    if y.dtype.kind not in "iuf" or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        lo, hi = (y.min(), y.max()) if y.size and y.dtype.kind in "iuf" else ("?", "?")
        raise EmbBertError(f"class labels must be in 0..{num_classes - 1}, got {lo}..{hi}")
    return y.astype(np.int64)


class EmbBertClassifier(keras.Model):
    """EmbBERT backbone + a head on token 0: logits (batch, num_classes), or one regression output with
    `num_classes=1`. A Keras model: `compile` (a default from the measured recipe), `fit`, `evaluate`,
    `predict`, on raw text through its `preprocessor`.

    >>> clf = EmbBertClassifier.from_preset("tiny_en", num_classes=6, sequence_length=64)
    >>> clf.fit(texts, labels, epochs=3)
    >>> clf.predict(["i feel wonderful today"]).argmax(-1)

    Build one from a backbone with `EmbBertClassifier(backbone, num_classes, preprocessor)`.
    """

    def __init__(self, backbone: EmbBertBackbone | None = None, num_classes: int | None = None,
                 preprocessor: EmbBertPreprocessor | None = None, *, label_names: Sequence[str] = (),
                 sequence_length: int | None = None, name: str = "embbert_classifier", **kwargs: Any):
        graph = kwargs.pop("_graph", None)  # internal: wrap a built graph (the QAT model)
        config = kwargs.pop("_config", None)
        quantized = bool(kwargs.pop("_quantized", False))
        if graph is None:
            if backbone is None or num_classes is None:
                raise EmbBertError("EmbBertClassifier needs a backbone and num_classes "
                                   "(or use EmbBertClassifier.from_preset)")
            if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
                raise EmbBertError(f"num_classes must be an integer >= 1 (1 = regression), got {num_classes!r}")
            length = sequence_length or (preprocessor.sequence_length if preprocessor is not None
                                         else backbone.embbert_config.max_length)
            if preprocessor is not None and preprocessor.sequence_length != length:
                raise EmbBertError(f"sequence_length {length} differs from the preprocessor's "
                                   f"{preprocessor.sequence_length}")
            labels = tuple(str(n) for n in label_names)
            if labels and len(labels) != num_classes:
                raise EmbBertError(f"{len(labels)} label names for {num_classes} classes")
            config = backbone.embbert_config.replace(
                num_labels=int(num_classes), label_names=labels, max_length=int(length), task=None,
                tokenizer=None, data_dir=None, train=QUICK_RECIPE)

            graph = build_classifier(config, backbone=backbone)
        super().__init__(inputs=graph.input, outputs=graph.output, name=name, **kwargs)
        self._embbert_config = config
        self._quantized = quantized
        self.preprocessor = preprocessor
        self.compile()

    # -- facts ------------------------------------------------------------------------------------------
    @property
    def embbert_config(self) -> EmbBertConfig:
        """The `EmbBertConfig` of the model (size preset, L, labels, the default recipe)."""
        return self._embbert_config

    @property
    def num_classes(self) -> int:
        return self._embbert_config.num_labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return self._embbert_config.label_names

    @property
    def quantized(self) -> bool:
        """True for the quantisation-aware model of `embbert.quantize_model`."""
        return self._quantized

    @property
    def backbone(self) -> EmbBertBackbone:
        """The backbone, on this model's own layers (its weights are the classifier's)."""
        return EmbBertBackbone.of(self)

    def _plain(self) -> keras.Model:
        """A plain functional model on the same layers: the weights-file layout of `embbert train`."""
        return keras.Model(self.input, self.output, name=self.name)

    # -- compile: the measured recipe by default ------------------------------------------------------------
    def compile(self, optimizer: Any = "auto", loss: Any = "auto", metrics: Any = "auto", **kwargs: Any) -> None:
        """Keras `compile`; "auto" is the fine-tuning recipe of `embbert run` (docs/presets.md): AdamW,
        learning rate 1e-3 (1e-4 for the QAT model), weight decay 0.05; cross-entropy on the logits and
        accuracy, or mean squared error for regression."""
        recipe = self._embbert_config.train
        auto_loss, auto_metrics = loss_and_metrics(self._embbert_config.regression)
        if isinstance(optimizer, str) and optimizer == "auto":
            rate = recipe.qat_learning_rate if self._quantized else recipe.learning_rate
            optimizer = make_optimizer(rate, recipe.weight_decay)
        super().compile(optimizer=optimizer, loss=auto_loss if isinstance(loss, str) and loss == "auto" else loss,
                        metrics=auto_metrics if isinstance(metrics, str) and metrics == "auto" else metrics, **kwargs)

    # -- text in -------------------------------------------------------------------------------------------
    def _need_preprocessor(self) -> EmbBertPreprocessor:
        if self.preprocessor is None:
            raise EmbBertError("this classifier has no preprocessor: give model inputs "
                               "({'token_ids', 'segment_ids'}) or build it with a preprocessor")
        return self.preprocessor

    def _dataset(self, ds: tf.data.Dataset, batch_size: int | None) -> tf.data.Dataset:
        """A tf.data of text (and labels) -> batched model inputs (batched first if its elements are single)."""
        spec = ds.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) and not _is_pair_spec(spec) else spec
        if isinstance(x_spec, dict):
            return ds  # model inputs already
        first = x_spec[0] if isinstance(x_spec, tuple) else x_spec
        if getattr(first, "dtype", None) != tf.string:
            raise EmbBertError(f"expected a dataset of (text, label), got elements {spec}")
        if first.shape.rank == 0:
            ds = ds.batch(batch_size or DEFAULT_BATCH_SIZE)
        elif batch_size is not None:
            raise EmbBertError("batch_size is not used with a batched dataset (batch it yourself)")
        pre = self._need_preprocessor()
        text_only = _is_pair_spec(spec) or not isinstance(spec, tuple)  # no labels in the elements

        @tf.autograph.experimental.do_not_convert  # plain Python: the BPE runs in tf.numpy_function
        def apply(*element):
            if text_only:
                return pre(element[0] if len(element) == 1 else tuple(element))
            return pre(*element)

        return ds.map(apply).prefetch(tf.data.AUTOTUNE)

    def _inputs(self, x, y=None, sample_weight=None, batch_size=None):
        """(x, y, sample_weight, batch_size) for Keras: text encoded, datasets mapped."""
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise EmbBertError("give labels inside the dataset, as (text, label) elements")
            return self._dataset(x, batch_size), None, sample_weight, None
        if _is_text(x):
            x = self._need_preprocessor()(x)
            if isinstance(x["token_ids"], np.ndarray) and x["token_ids"].ndim == 1:
                x = {k: v[None] for k, v in x.items()}  # one text: a batch of one
            if y is not None:
                y = label_ids(y, self.num_classes, self.label_names)
                if y.ndim == 0:
                    y = y[None]
                if len(y) != len(x["token_ids"]):
                    raise EmbBertError(f"{len(x['token_ids'])} texts but {len(y)} labels")
        elif not isinstance(x, dict):
            raise EmbBertError("expected texts (a string, a list of strings, a (first, second) tuple of pairs), "
                               f"model inputs or a tf.data.Dataset; got {type(x).__name__}")
        return x, y, sample_weight, batch_size or (DEFAULT_BATCH_SIZE if not isinstance(x, tf.data.Dataset) else None)

    def _validation(self, data):
        if data is None or isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, tuple) \
                and isinstance(data.element_spec[0], dict):
            return data
        if isinstance(data, tf.data.Dataset):
            return self._dataset(data, None)
        if isinstance(data, tuple) and len(data) in (2, 3):
            x, y, w, _ = self._inputs(*data)
            return (x, y) if w is None else (x, y, w)
        raise EmbBertError("validation_data: expected (texts, labels) or a tf.data of (text, label)")

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose: Any = "auto",
            validation_data=None, sample_weight=None, **kwargs: Any):
        """Keras `fit` on text: `fit(texts, labels)`, `fit((first, second), labels)` for pairs, or
        `fit(dataset)` of (text, label); model inputs are accepted as well. With texts, labels may be class
        ids or label names (mapped through `label_names`)."""
        x, y, sample_weight, batch_size = self._inputs(x, y, sample_weight, batch_size)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           validation_data=self._validation(validation_data), sample_weight=sample_weight, **kwargs)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose: Any = "auto", sample_weight=None,
                 **kwargs: Any):
        """Keras `evaluate` on text (as `fit`)."""
        x, y, sample_weight, batch_size = self._inputs(x, y, sample_weight, batch_size)
        return super().evaluate(x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight, **kwargs)

    def predict(self, x, batch_size: int | None = None, verbose: Any = 0, **kwargs: Any) -> np.ndarray:
        """Logits [N, num_classes] (or [N, 1] regression scores) of texts, pairs, a dataset or model inputs."""
        x, _, _, batch_size = self._inputs(x, None, None, batch_size)
        return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)

    # -- weights files: the layout of `embbert train` ----------------------------------------------------
    def save_weights(self, filepath, *args: Any, **kwargs: Any):
        return self._plain().save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args: Any, **kwargs: Any):
        return self._plain().load_weights(filepath, *args, **kwargs)

    # -- presets ----------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name_or_dir: str | os.PathLike, num_classes: int | None = None,
                    sequence_length: int | None = None, *, label_names: Sequence[str] | None = None,
                    quantized: bool | None = None) -> "EmbBertClassifier":
        """A classifier from a shipped backbone preset (`tiny_en`, `embbert_en`: a new head of `num_classes`
        outputs, 1 = regression) or from a directory: a `save_to_preset` folder or an `embbert train` run
        directory loads with its head (unless `num_classes` differs: then its backbone and a new head),
        float by default, the QAT model with `quantized=True` (a QAT preset loads as QAT).
        `sequence_length` defaults to the preset's L."""
        directory = presets.resolve(name_or_dir)
        config = EmbBertConfig.load(directory)
        meta = presets.read_metadata(directory)
        has_float = (directory / layout.FLOAT_WEIGHTS).is_file()
        has_qat = (directory / layout.QAT_WEIGHTS).is_file()
        preprocessor = EmbBertPreprocessor.from_preset(directory, sequence_length)
        length = preprocessor.sequence_length
        same_head = num_classes is None or num_classes == config.num_labels
        if (has_float or has_qat) and same_head:
            if quantized is None:
                quantized = bool(meta.get("quantized", not has_float))
            if quantized and not has_qat:
                raise EmbBertError(f"{directory}: no QAT weights ({layout.QAT_WEIGHTS})")
            if not quantized and not has_float:
                raise EmbBertError(f"{directory}: no float weights ({layout.FLOAT_WEIGHTS}); load it with quantized=True")
            names = tuple(label_names) if label_names is not None else config.label_names
            model_config = config.replace(max_length=length, label_names=names, task=None, tokenizer=None,
                                          data_dir=None)
            graph = load_model(directory, qat=quantized, config=config.replace(max_length=length))
            return cls(preprocessor=preprocessor, _graph=graph, _config=model_config, _quantized=quantized)
        if num_classes is None:
            raise EmbBertError(f"{name_or_dir}: a backbone preset; give num_classes (1 for regression)")
        if quantized:
            raise EmbBertError("a new head is float: fine-tune it, then embbert.quantize_model(classifier)")
        return cls(EmbBertBackbone.from_preset(directory), num_classes, preprocessor,
                   label_names=label_names or (), sequence_length=length)

    def save_to_preset(self, directory: str | os.PathLike) -> Path:
        """Write the classifier as a preset (and run directory): config.json, metadata.json, tokenizer/,
        float.weights.h5 + backbone.weights.h5 (or qat.weights.h5 for the QAT model) and a model card.
        `EmbBertClassifier.from_preset(directory)` loads it back bit for bit; the files have the layout of an
        `embbert train` run directory (`keras_model.model.load_model` reads them; a float classifier's
        folder works as `embbert train --init DIR`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pre = self._need_preprocessor()
        pre.tokenizer.save_to_preset(directory)
        config = self._embbert_config.replace(tokenizer=layout.TOKENIZER_DIR, max_length=pre.sequence_length)
        if not self._quantized:
            self.backbone.save_to_preset(directory)  # backbone.weights.h5: fine-tune it again with a new head
        config.save(directory)
        weights = layout.QAT_WEIGHTS if self._quantized else layout.FLOAT_WEIGHTS
        stale = [layout.QAT_WEIGHTS] if not self._quantized else [layout.FLOAT_WEIGHTS, layout.BACKBONE_WEIGHTS]
        for name in stale:  # the folder holds one classifier
            if (directory / name).is_file():
                (directory / name).unlink()
        save_weights(self._plain(), directory / weights)
        params = count_params(self.trainable_weights)
        presets.write_metadata(directory, presets.metadata(
            "classifier", config.preset, params, quantized=self._quantized, num_classes=config.num_labels,
            label_names=list(config.label_names), sequence_length=config.max_length))
        card = directory / layout.MODEL_CARD
        if card.is_file():
            card.unlink()  # the backbone's card: this folder is a classifier
        kind = "regression" if config.regression else f"{config.num_labels} classes"
        presets.write_model_card(directory, f"EmbBERT classifier ({config.preset}, {kind})", [
            f"Size preset `{config.preset}`, L={config.max_length}, {params:,} trainable parameters, "
            f"{'quantisation-aware (QAT)' if self._quantized else 'float'} weights `{weights}`.",
            f"Labels: {', '.join(config.label_names) or ('one regression output' if config.regression else 'unnamed')}.",
            "", "Load with `embbert.EmbBertClassifier.from_preset(<this folder>)`; deploy with `embbert.quantize_model`,",
            "`embbert.convert` and `embbert.export` (docs/python_api.md)."])
        return directory


def _is_pair_spec(spec) -> bool:
    """A dataset element spec that is a (first text, second text) pair without labels."""
    return (isinstance(spec, tuple) and len(spec) == 2 and all(getattr(s, "dtype", None) == tf.string for s in spec))


def quantize_model(classifier: EmbBertClassifier, calibration_data=None, *, batches: int = 8) -> EmbBertClassifier:
    """The quantisation-aware (QAT) model of a float classifier, with its float weights: fake-quant points at
    every tensor that is int8 on the device (`keras_model.quantize`, tfmot). It fits on text like the float
    one (default compile: the QAT learning rate 1e-4). `calibration_data` (texts, pairs or a tf.data of
    text): `batches` forward passes set the activation ranges first, as `embbert train` does; otherwise
    the first training batch sets them (`embbert.convert` refuses a QAT model that has seen no data)."""
    if not isinstance(classifier, EmbBertClassifier):
        raise EmbBertError(f"expected an EmbBertClassifier, got {type(classifier).__name__}")
    if classifier.quantized:
        raise EmbBertError("the classifier is quantized already")
    qat = qat_model(classifier._plain())
    out = EmbBertClassifier(preprocessor=classifier.preprocessor, _graph=qat, _config=classifier.embbert_config,
                            _quantized=True, name=classifier.name)
    if calibration_data is not None:
        x, _, _, batch_size = out._inputs(calibration_data)
        if not isinstance(x, tf.data.Dataset):
            x = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
        calibrate(out, x, batches=batches)
    return out


def calibrated(model: keras.Model) -> bool:
    """True when every activation range of a QAT model has been set from data (training mode)."""
    seen = [v for v in model.non_trainable_weights if v.name.split("/")[-1].split(":")[0].endswith("_seen")]
    return bool(seen) and all(float(v.numpy()) > 0 for v in seen)


__all__ = ["EmbBertClassifier", "quantize_model", "calibrated", "label_ids"]
