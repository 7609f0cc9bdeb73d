"""tfmot `Quantizer`s used by EmbBERT's quantisation-aware training.

Three kinds of fake-quantisation points exist in the int8 graph:

* weights (`WeightQuantizer`): symmetric, narrow range [-127, 127], per tensor,
  with the range taken from the weight itself at every call, so the range is
  always the one of the current (possibly folded) weight — also right after
  loading float weights, before any QAT step;
* activations (`ActivationQuantizer`): asymmetric 8-bit with an exponential
  moving average of the batch range. Unlike tfmot's `MovingAverageQuantizer`
  (ranges start at [-6, 6] and move with decay 0.999, i.e. thousands of steps)
  the first training batch sets the range, so a short QAT run starts from
  calibrated ranges;
* outputs whose int8 range TFLite fixes (softmax and logistic: scale 1/256,
  zero point -128): tfmot's `FixedQuantizer` on [0, 255/256].
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from ._tf import keras

_Quantizer = tfmot.quantization.keras.quantizers.Quantizer

#: The int8 range TFLite/TFLM require for SOFTMAX and LOGISTIC outputs.
UNIT_INTERVAL_MIN = 0.0
UNIT_INTERVAL_MAX = 255.0 / 256.0


@keras.utils.register_keras_serializable(package="embbert")
class ActivationQuantizer(_Quantizer):
    """8-bit asymmetric fake quantisation with an EMA range initialised from the first batch."""

    def __init__(self, ema_decay: float = 0.99, num_bits: int = 8):
        self.ema_decay = float(ema_decay)
        self.num_bits = int(num_bits)

    def build(self, tensor_shape, name, layer):
        init = keras.initializers.Constant
        return {
            "min_var": layer.add_weight(name + "_min", shape=(), initializer=init(-6.0), trainable=False),
            "max_var": layer.add_weight(name + "_max", shape=(), initializer=init(6.0), trainable=False),
            "seen_var": layer.add_weight(name + "_seen", shape=(), initializer=init(0.0), trainable=False),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        min_var, max_var, seen = weights["min_var"], weights["max_var"], weights["seen_var"]
        if training:
            finite = tf.where(tf.math.is_finite(inputs), inputs, tf.zeros_like(inputs))
            batch_min = tf.minimum(tf.reduce_min(finite), 0.0)
            batch_max = tf.maximum(tf.reduce_max(finite), 0.0)
            decay = tf.where(seen > 0.0, self.ema_decay, 0.0)
            new_min = min_var.assign(decay * min_var + (1.0 - decay) * batch_min)
            new_max = max_var.assign(decay * max_var + (1.0 - decay) * batch_max)
            with tf.control_dependencies([new_min, new_max]):
                seen.assign(1.0)
            return tf.quantization.fake_quant_with_min_max_vars(inputs, new_min, new_max, num_bits=self.num_bits)
        return tf.quantization.fake_quant_with_min_max_vars(inputs, min_var, max_var, num_bits=self.num_bits)

    def get_config(self):
        return {"ema_decay": self.ema_decay, "num_bits": self.num_bits}

    def __eq__(self, other):
        return isinstance(other, ActivationQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="embbert")
class WeightQuantizer(_Quantizer):
    """Symmetric narrow-range 8-bit fake quantisation of a weight (per tensor), range = max |w|."""

    def __init__(self, num_bits: int = 8):
        self.num_bits = int(num_bits)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        bound = tf.maximum(tf.reduce_max(tf.abs(inputs)), 1e-8)
        return tf.quantization.fake_quant_with_min_max_vars(
            inputs, -bound, bound, num_bits=self.num_bits, narrow_range=True
        )

    def get_config(self):
        return {"num_bits": self.num_bits}

    def __eq__(self, other):
        return isinstance(other, WeightQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


def unit_interval_quantizer():
    """Fixed [0, 255/256] range: exactly TFLite's int8 softmax / logistic output quantisation."""
    return tfmot.quantization.keras.quantizers.FixedQuantizer(
        num_bits=8, init_min=UNIT_INTERVAL_MIN, init_max=UNIT_INTERVAL_MAX, narrow_range=False
    )
