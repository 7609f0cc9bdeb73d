"""EmbBERT layers (Keras 2 / `tf_keras`), exact to `shared/reference/embbert.md`.

Every layer takes `quantize` (default False). A float layer computes the
reference maths. A layer built with `quantize=True` computes the same maths but
inserts fake quantisation (tfmot quantizers, see `quantizers.py`) at every point
where the deployed TFLite graph has an int8 tensor: folded weights, projections,
attention scores, masked scores, softmax output, context, convolution, logistic,
SiLU, and the sums. The tfmot `QuantizeWrapper` (see `quantize.py`) adds the
quantisation of each encoder layer's and the head's output.

Design choices that keep the deployed graph on TFLM int8 kernels:
* gathers on plain weight tables (no Keras Embedding layer);
* every linear map is a 2-D matmul (FULLY_CONNECTED) with static shapes when
  the batch is static;
* the attention scale 1/sqrt(d) is folded into the query weights, and the
  scalars exp(lq1.lk1) / exp(lq2.lk2) of the weighted difference are folded into
  the output maps of the two paths (out = att' + conv', conv' with the minus sign);
* the key-padding mask is an additive bias gathered from a 3-entry table by the
  segment ids (segment 0 = padding): no comparison or select operator. In float
  the bias is -1e9 (exact masking); in the int8 graph it is -(score range + 12),
  just enough to give padded keys zero int8 softmax weight without wasting the
  int8 range of the scores.
"""
from __future__ import annotations

import math

import numpy as np

from ._tf import keras, tf
from .forms import DeployForm
from .quantizers import ActivationQuantizer, WeightQuantizer, unit_interval_quantizer

FLOAT_MASK_PENALTY = 1e9
INT8_MASK_MARGIN = 12.0  # exp(-12) * 256 keys < 1/512: below half an int8 softmax step


def _linear(x, kernel, bias=None):
    """x[..., din] @ kernel[din, dout] (+ bias) as a 2-D matmul (-> FULLY_CONNECTED)."""
    din, dout = kernel.shape[0], kernel.shape[1]
    lead = x.shape[:-1]
    if lead.rank == 1:
        y = tf.matmul(x, kernel)
    else:
        y = tf.matmul(tf.reshape(x, [-1, din]), kernel)
    if bias is not None:
        y = y + bias
    if lead.rank != 1:
        if lead.is_fully_defined():
            y = tf.reshape(y, lead.as_list() + [dout])
        else:
            y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [dout]], axis=0))
    return y


def transposed_keys(y):
    """(B, T, d) -> (B, d, T) as one TRANSPOSE operator.

    The 2-D reshapes around the transpose keep the converter from folding it back into
    the BATCH_MATMUL's adj_y flag (which would bring the persistent copy back)."""
    b, t, d = y.shape
    yt = tf.transpose(tf.reshape(y, [t, d]) if b == 1 else y, [1, 0] if b == 1 else [0, 2, 1])
    return tf.reshape(yt, [1, d, t]) if b == 1 else yt


class QuantizableLayer(keras.layers.Layer):
    """Base: owns named fake-quant points that are identities unless `quantize=True`."""

    def __init__(self, quantize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.quantize = bool(quantize)
        self._act_q: dict[str, tuple] = {}
        self._w_q = WeightQuantizer()

    def _add_activation_points(self, *names: str) -> None:
        if not self.quantize:
            return
        for name in names:
            quantizer = ActivationQuantizer()
            self._act_q[name] = (quantizer, quantizer.build(None, name, self))

    def _add_unit_points(self, *names: str) -> None:
        if not self.quantize:
            return
        for name in names:
            self._act_q[name] = (unit_interval_quantizer(), {})

    def fq(self, name: str, x, training):
        """Fake-quantise activation `x` at point `name` (identity in float)."""
        if not self.quantize:
            return x
        quantizer, variables = self._act_q[name]
        return quantizer(x, bool(training), weights=variables)

    def fqw(self, w):
        """Fake-quantise a (possibly folded) weight (identity in float)."""
        if not self.quantize:
            return w
        return self._w_q(w, False, weights={})

    def range_of(self, name: str):
        quantizer, variables = self._act_q[name]
        return variables["min_var"], variables["max_var"]

    def get_config(self):
        config = super().get_config()
        config["quantize"] = self.quantize
        return config


@keras.utils.register_keras_serializable(package="embbert")
class NanoEmbedder(QuantizableLayer):
    """Token (V x r -> d), position (L x r -> d) and segment (3 x d) paths, summed.

    Inputs: [token_ids, segment_ids], int32 (B, T) with T <= max_positions (the
    first T position rows are used). Outputs: [embeddings (B, T, d), segment_ids]:
    the segment ids are passed through so that the encoder layers (wrapped by
    tfmot) never read a model input directly — tfmot would put a float
    QuantizeLayer on an int32 input. No norm, no dropout.
    """

    def __init__(self, vocab_size, max_positions, hidden, reduced, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.max_positions = int(vocab_size), int(max_positions)
        self.hidden, self.reduced = int(hidden), int(reduced)

    def build(self, input_shape):
        # Every table N(0, 0.02), as BERT: RMSNorm follows, so the scale does not change the forward pass, but
        # Adam moves a weight by about lr per step, so small rows learn in tens of steps (docs/training.md).
        def emb_init(stddev=0.02):
            return keras.initializers.RandomNormal(stddev=stddev)

        self.token_table = self.add_weight("token_table", (self.vocab_size, self.reduced), initializer=emb_init())
        self.token_map = self.add_weight("token_map", (self.reduced, self.hidden), initializer="glorot_uniform")
        self.position_table = self.add_weight(
            "position_table", (self.max_positions, self.reduced), initializer=emb_init()
        )
        self.position_map = self.add_weight("position_map", (self.reduced, self.hidden), initializer="glorot_uniform")
        self.segment_table = self.add_weight("segment_table", (3, self.hidden), initializer=emb_init())
        self._add_activation_points("token", "position", "token_position", "output")
        super().build(input_shape)

    def positions(self, length: int):
        """The position path for positions 0..length-1 before its fake-quant point: (length, d) float."""
        return _linear(self.position_table[:length], self.fqw(self.position_map))

    def call(self, inputs, training=None, constant_positions=None):
        """`constant_positions`: the deployed graph's option of a (length, d) array (the values of
        `positions(length)`, computed once) that replaces the position path: one int8 constant
        instead of a FULLY_CONNECTED on every inference."""
        token_ids, segment_ids = inputs
        length = token_ids.shape[1]
        if length is None:
            length = tf.shape(token_ids)[1]
        elif length > self.max_positions:
            raise ValueError(f"sequence length {length} exceeds the {self.max_positions} positions of the model")
        tok = tf.gather(self.fqw(self.token_table), token_ids)
        tok = self.fq("token", _linear(tok, self.fqw(self.token_map)), training)
        if constant_positions is not None:
            pos = self.fq("position", tf.convert_to_tensor(constant_positions, tf.float32), training)
        else:
            pos = self.fq("position", self.positions(length), training)
        x = self.fq("token_position", tok + pos, training)
        seg = tf.gather(self.fqw(self.segment_table), segment_ids)
        return [self.fq("output", x + seg, training), tf.identity(segment_ids)]

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape[0])
        return [shape.concatenate([self.hidden]), tf.TensorShape(input_shape[1])]

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size, max_positions=self.max_positions, hidden=self.hidden, reduced=self.reduced
        )
        return config


@keras.utils.register_keras_serializable(package="embbert")
class RMSNorm(QuantizableLayer):
    """y = x * rsqrt(mean(x^2) + eps) * g, eps = float32 machine epsilon."""

    def __init__(self, epsilon: float = float(np.finfo(np.float32).eps), **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.gain = self.add_weight("gain", (int(input_shape[-1]),), initializer="ones")
        self._add_activation_points("square", "mean_square", "mean_square_eps", "rsqrt", "output")
        super().build(input_shape)

    def call(self, x, training=None):
        sq = self.fq("square", x * x, training)
        ms = tf.reduce_mean(sq, axis=-1, keepdims=True)
        if self.quantize:
            # At int8 a small row's mean square rounds to 0 and rsqrt(0) has no int8 value:
            # epsilon becomes one step (LSB) of the mean-square range, so the RSQRT input is >= 1 LSB.
            ms = self.fq("mean_square", ms, training)
            lo, hi = self.range_of("mean_square")
            ms = ms + tf.maximum(tf.stop_gradient((hi - lo) / 255.0), self.epsilon)
        else:
            ms = ms + self.epsilon
        ms = self.fq("mean_square_eps", ms, training)
        r = self.fq("rsqrt", tf.math.rsqrt(ms), training)
        # No fake-quant point between the two MULs: with a gain of exactly 1 (its initial value)
        # the converter drops the second MUL and two back-to-back points would conflict; the
        # converter calibrates x * r from the representative dataset instead.
        return self.fq("output", (x * r) * self.fqw(self.gain), training)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.utils.register_keras_serializable(package="embbert")
class EfficientAttention(QuantizableLayer):
    """Single-head attention with keys = values = the normalised input y.

    Q = y Wq + bq; A = softmax(Q y^T / sqrt(d) + key mask); ctx = A y, with the
    rows of padded queries set to zero. The output map of the layer (Wo) lives
    in `EncoderLayer`, where the weighted-difference scalar is folded into it.
    Inputs: [y (B, T, d), segment_ids (B, T)].
    """

    def __init__(self, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.hidden = d
        self.query_kernel = self.add_weight("query_kernel", (d, d), initializer="glorot_uniform")
        self.query_bias = self.add_weight("query_bias", (d,), initializer="zeros")
        self._add_activation_points("query", "scores", "masked_scores", "context", "masked_context")
        self._add_unit_points("probs")
        super().build(input_shape)

    def mask_penalty(self):
        if not self.quantize:
            return tf.constant(FLOAT_MASK_PENALTY, tf.float32)
        lo, hi = self.range_of("scores")
        return tf.stop_gradient(hi - lo) + INT8_MASK_MARGIN

    def key_bias(self, segment_ids):
        """(B, 1, T): the additive key mask, gathered by segment id (segment 0 = padding)."""
        penalty = self.mask_penalty()
        zero = tf.zeros([], tf.float32)
        return tf.expand_dims(tf.gather(tf.stack([-penalty, zero, zero]), segment_ids), 1)

    def call(self, inputs, training=None, form: DeployForm | None = None):
        """`form`: the encoder layer's view of the deployed form (`DeployForm.layer_form`); None is the
        training graph. With transposed keys the context matmul reads y^T (a TRANSPOSE output planned in
        TFLM's shared arena) instead of y: TFLM keeps a persistent transposed copy of the right-hand
        input of every BATCH_MATMUL without adj_y (kernels/batch_matmul.cc, InitializeTemporaries).
        With `first_token_only` only query row 0 is computed; with `query_blocks` > 1 the query rows
        go through scores, mask, softmax and context one block at a time (one block's scores alive at
        a time). Every row's softmax is independent and every block passes the same fake-quant
        points (same int8 scales), so the rows are those of the unblocked graph."""
        y, segment_ids = inputs
        deploy = form is not None and form.transposed_keys
        first = deploy and form.first_token_only
        blocks = form.query_blocks if deploy and not first else 1
        scale = 1.0 / math.sqrt(self.hidden)
        y_q, seg_q = (y[:, :1], segment_ids[:, :1]) if first else (y, segment_ids)
        size = -(-int(y_q.shape[1]) // blocks) if blocks > 1 else None
        spans = [(start, start + size) for start in range(0, int(y_q.shape[1]), size)] if size else [None]
        kernel = key_bias = keys_t = None
        parts = []
        for span in spans:
            rows = y_q if span is None else y_q[:, span[0]:span[1]]
            if kernel is None:  # one folded query map for every block
                kernel, bias = self.fqw(self.query_kernel * scale), self.query_bias * scale
            q = self.fq("query", _linear(rows, kernel, bias), training)
            scores = self.fq("scores", tf.matmul(q, y, transpose_b=True), training)
            if key_bias is None:
                key_bias = self.key_bias(segment_ids)
            masked = self.fq("masked_scores", scores + key_bias, training)
            probs = self.fq("probs", tf.nn.softmax(masked, axis=-1), training)
            probs = self.dropout(probs, training=training)
            if deploy:
                keys_t = transposed_keys(y) if keys_t is None else keys_t
                context = tf.matmul(probs, keys_t, transpose_b=True)
            else:
                context = tf.matmul(probs, y)
            parts.append(self.fq("context", context, training))
        context = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
        query_keep = tf.gather(tf.constant([0.0, 1.0, 1.0]), seg_q)  # padded query rows -> 0
        return self.fq("masked_context", context * tf.expand_dims(query_keep, -1), training)

    def get_config(self):
        config = super().get_config()
        config["dropout"] = self.dropout_rate
        return config


@keras.utils.register_keras_serializable(package="embbert")
class CausalDepthwiseConv(QuantizableLayer):
    """Causal depthwise 1-D convolution over time (kernel k, channel multiplier e), then SiLU.

    Position t sees t-k+1..t only (see `causal_kernel`). Output (B, T, d*e) with
    channel c*e+m for input channel c and multiplier m (PyTorch groups order).
    """

    def __init__(self, kernel_size: int, multiplier: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.multiplier = int(kernel_size), int(multiplier)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.channels = d
        self.kernel = self.add_weight(
            "kernel", (1, self.kernel_size, d, self.multiplier), initializer="glorot_uniform"
        )
        self.bias = self.add_weight("bias", (d * self.multiplier,), initializer="zeros")
        self._add_activation_points("conv", "silu")
        self._add_unit_points("sigmoid")
        super().build(input_shape)

    def causal_kernel(self):
        """(1, 2k-1, d, e): the k trained taps followed by k-1 zero taps for future steps.

        With SAME padding (k-1 steps each side) output t then sees inputs t-k+1..t only:
        causal, with no PAD operator (and no padded tensor in the arena) in the int8 graph.
        """
        zeros = tf.zeros([1, self.kernel_size - 1, self.channels, self.multiplier], self.kernel.dtype)
        return tf.concat([self.kernel, zeros], axis=1)

    def call(self, x, training=None, form: DeployForm | None = None):
        """`form` (the encoder layer's view, `DeployForm.layer_form`): with transposed keys and
        `causal_valid`, k-1 zero steps in front of x (a PAD, which fills with the int8 zero point: no
        constant in flash), then a VALID convolution with the k trained taps only: no zero taps in
        flash, half the MACs, and CMSIS-NN's scratch (2 x channels x taps) halves. Symmetric
        per-tensor weight quantisation: the zero taps never changed the weight scale. Otherwise the
        SAME convolution with `causal_kernel`."""
        if form is not None and form.transposed_keys and form.causal_valid:
            # The PAD reads the 4-D view, so the RESHAPE copies the (L, d) input, not the padded one.
            padded = tf.pad(tf.expand_dims(x, 1), [[0, 0], [0, 0], [self.kernel_size - 1, 0], [0, 0]])
            y = tf.nn.depthwise_conv2d(padded, self.fqw(self.kernel), strides=[1, 1, 1, 1], padding="VALID")
        else:
            y = tf.nn.depthwise_conv2d(
                tf.expand_dims(x, 1), self.fqw(self.causal_kernel()), strides=[1, 1, 1, 1], padding="SAME"
            )
        y = tf.squeeze(y, axis=1) + self.bias
        y = self.fq("conv", y, training)
        gate = self.fq("sigmoid", tf.sigmoid(y), training)
        return self.fq("silu", y * gate, training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.channels * self.multiplier])

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, multiplier=self.multiplier)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class EncoderLayer(QuantizableLayer):
    """RMSNorm, then exp(lq1.lk1) * attention - exp(lq2.lk2) * convolution. No residual.

    Inputs: [x (B, T, d), segment_ids (B, T)]. Output (B, T, d).
    """

    def __init__(self, kernel_size: int, expansion: int = 1, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.expansion, self.dropout_rate = int(kernel_size), int(expansion), float(dropout)
        q = self.quantize
        self.norm = RMSNorm(quantize=q, name="norm")
        self.attention = EfficientAttention(dropout=self.dropout_rate, quantize=q, name="attention")
        self.conv = CausalDepthwiseConv(self.kernel_size, self.expansion, quantize=q, name="conv")

    def build(self, input_shape):
        x_shape = tf.TensorShape(input_shape[0])
        d = int(x_shape[-1])
        self.hidden = d
        self.norm.build(x_shape)
        self.attention.build([x_shape, tf.TensorShape(input_shape[1])])
        self.conv.build(x_shape)
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):  # N(0, 0.1) as the reference
            setattr(self, name, self.add_weight(name, (d,), initializer=keras.initializers.RandomNormal(stddev=0.1)))
        self.attention_out_kernel = self.add_weight("attention_out_kernel", (d, d), initializer="glorot_uniform")
        self.attention_out_bias = self.add_weight("attention_out_bias", (d,), initializer="zeros")
        de = d * self.expansion
        self.conv_out_kernel = self.add_weight("conv_out_kernel", (de, d), initializer="glorot_uniform")
        self.conv_out_bias = self.add_weight("conv_out_bias", (d,), initializer="zeros")
        self._add_activation_points("attention_out", "conv_out")
        super().build(input_shape)

    def path_scales(self):
        """The two scalars of the weighted difference: exp(lq1.lk1), exp(lq2.lk2)."""
        c1 = tf.exp(tf.reduce_sum(self.lambda_q1 * self.lambda_k1))
        c2 = tf.exp(tf.reduce_sum(self.lambda_q2 * self.lambda_k2))
        return c1, c2

    def call(self, inputs, training=None, form: DeployForm | None = None):
        """Training and evaluation: `form` None. `build_deploy_model` passes each layer its view of the
        deployed form (`DeployForm.layer_form`): the same maths in the form TFLM runs in less arena; with
        `first_token_only` (the last layer) only position 0, the one the head reads, is computed (keys
        and values still come from every position), output (B, 1, d)."""
        x, segment_ids = inputs
        first = form is not None and form.transposed_keys and form.first_token_only
        y = self.norm(x, training=training)
        c1, c2 = self.path_scales()
        context = self.attention([y, segment_ids], training=training, form=form)
        att = _linear(context, self.fqw(c1 * self.attention_out_kernel), c1 * self.attention_out_bias)
        att = self.fq("attention_out", att, training)
        # causal: position 0 sees only itself, so the conv of y[:, :1] alone is exact for it
        conv = self.conv(y[:, :1] if first else y, training=training, form=form)
        conv = _linear(conv, self.fqw(-c2 * self.conv_out_kernel), -c2 * self.conv_out_bias)
        conv = self.fq("conv_out", conv, training)
        return att + conv

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, expansion=self.expansion, dropout=self.dropout_rate)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class ClassificationHead(QuantizableLayer):
    """Hidden state of token 0 ([CLS]) -> Linear d -> units (units=1: regression). No pooler."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (d, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, x, training=None):
        return _linear(x[:, 0, :], self.fqw(self.kernel), self.bias)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.units])

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


@keras.utils.register_keras_serializable(package="embbert")
class MaskedLMHead(keras.layers.Layer):
    """Linear d -> V (not tied) applied to the hidden states at the masked positions.

    Inputs: [hidden (B, T, d), mask_positions (B, P) int32]. Output logits (B, P, V).
    Used for pretraining only; never part of the deployed graph.
    """

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.kernel = self.add_weight("kernel", (d, self.vocab_size), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.vocab_size,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        hidden, positions = inputs
        picked = tf.gather(hidden, positions, batch_dims=1)
        return _linear(picked, self.kernel, self.bias)

    def get_config(self):
        config = super().get_config()
        config["vocab_size"] = self.vocab_size
        return config


CUSTOM_OBJECTS = {
    cls.__name__: cls
    for cls in (NanoEmbedder, RMSNorm, EfficientAttention, CausalDepthwiseConv, EncoderLayer, ClassificationHead, MaskedLMHead)
}
