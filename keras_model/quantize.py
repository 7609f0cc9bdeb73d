"""Quantisation-aware training with tensorflow-model-optimization.

`quantize_model(float_model)` returns the QAT model:

1. every EmbBERT layer is rebuilt with `quantize=True` (its internal fake-quant
   points: folded weights, projections, scores, softmax, convolution, SiLU, ...),
   with the float weights copied in;
2. the encoder layers and the head are annotated with
   `tfmot.quantization.keras.quantize_annotate_layer` and an
   `EmbBertLayerQuantizeConfig`, whose output quantizer fake-quantises the tensor
   each layer hands to the next; the embedder, which consumes the int32 token
   ids, is not annotated (it quantises its own output);
3. `tfmot.quantization.keras.quantize_apply` (inside `quantize_scope`) wraps the
   annotated layers in `QuantizeWrapperV2`.
"""
from __future__ import annotations

import tensorflow_model_optimization as tfmot

from ._tf import keras
from .backbone import unwrapped
from .backbone import EMBEDDERS
from .baselines import CUSTOM_OBJECTS as BASELINE_OBJECTS
from .layers import CUSTOM_OBJECTS, QuantizableLayer
from .quantizers import ActivationQuantizer, WeightQuantizer

_qk = tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="embbert")
class EmbBertLayerQuantizeConfig(_qk.QuantizeConfig):
    """QuantizeConfig of the EmbBERT layers.

    The weights are quantised inside the layer (after folding the attention scale
    and the weighted-difference scalars into them, which a weight quantizer of the
    wrapper could not see), so no weight or activation attribute is handed to the
    wrapper; the wrapper quantises the layer's output with an `ActivationQuantizer`.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        if quantize_weights:
            raise ValueError("EmbBERT layers quantise their own weights")

    def set_quantize_activations(self, layer, quantize_activations):
        if quantize_activations:
            raise ValueError("EmbBERT layers quantise their own activations")

    def get_output_quantizers(self, layer):
        return [ActivationQuantizer()]

    def get_config(self):
        return {}


def quantize_scope():
    """tfmot's quantize_scope with every EmbBERT custom object registered."""
    objects = dict(CUSTOM_OBJECTS)
    objects.update(BASELINE_OBJECTS)
    objects.update(
        EmbBertLayerQuantizeConfig=EmbBertLayerQuantizeConfig,
        ActivationQuantizer=ActivationQuantizer,
        WeightQuantizer=WeightQuantizer,
    )
    return _qk.quantize_scope(objects)


def quantize_model(float_model: keras.Model) -> keras.Model:
    """The QAT version of an EmbBERT classifier, initialised with its float weights."""

    def clone(layer):
        if isinstance(layer, QuantizableLayer):
            config = layer.get_config()
            config["quantize"] = True
            new = layer.__class__.from_config(config)
            if isinstance(layer, EMBEDDERS):
                return new
            return _qk.quantize_annotate_layer(new, quantize_config=EmbBertLayerQuantizeConfig())
        return layer.__class__.from_config(layer.get_config())

    with quantize_scope():
        annotated = keras.models.clone_model(float_model, clone_function=clone)
        qat = _qk.quantize_apply(annotated)
    copy_float_weights(float_model, qat)
    return qat


def copy_float_weights(float_model: keras.Model, qat_model: keras.Model) -> None:
    """Copy every trainable weight of the float model into the QAT model it was cloned from.

    Layers are paired by position (`clone_model` and `quantize_apply` keep the layer order; a
    QAT layer is the float one's class, possibly inside tfmot's QuantizeWrapperV2), and weights by
    their order in the layer; each pair is checked (class, shape, name within the layer)."""
    if len(float_model.layers) != len(qat_model.layers):
        raise ValueError(f"QAT model has {len(qat_model.layers)} layers, the float model {len(float_model.layers)}")
    for source, layer in zip(float_model.layers, qat_model.layers):
        inner = unwrapped(layer)
        if type(inner) is not type(source):
            raise ValueError(f"QAT layer {layer.name} ({type(inner).__name__}) does not match float layer "
                             f"{source.name} ({type(source).__name__})")
        targets, values = inner.trainable_weights, source.trainable_weights
        if len(targets) != len(values):
            raise ValueError(f"QAT layer {layer.name} has {len(targets)} trainable weights, {source.name} {len(values)}")
        for w, v in zip(targets, values):
            if w.name.split("/", 1)[1] != v.name.split("/", 1)[1] or w.shape != v.shape:
                raise ValueError(f"QAT weight {w.name} {w.shape} has no float counterpart (got {v.name} {v.shape})")
            w.assign(v)


def perturb_like_trained(qat_model: keras.Model, seed: int = 0, scale: float = 0.05) -> None:
    """Add small seeded noise to every float weight of an untrained model, in place.

    Trained weights are never exactly their initial values; initial ones are (gains of exactly 1, biases
    of exactly 0), and the converter folds such constants away: the embbert preset at L=64 converts to
    110 operators untrained and to 114 trained (one more per encoder layer), 10,688 bytes more.
    A graph converted after this perturbation has the trained graph's operators and bytes, so memory and
    latency measured on it are those of a trained model of the same preset and length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    qat_model.set_weights([w + rng.normal(0, scale, w.shape).astype(w.dtype) if w.dtype.kind == "f" and w.ndim else w
                           for w in qat_model.get_weights()])
