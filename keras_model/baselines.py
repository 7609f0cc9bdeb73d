"""The baseline architectures of the EmbBERT papers, on the same path as EmbBERT.

Each is an embedder plus a list of encoder blocks with the calling convention of
`layers.EncoderLayer` (inputs `[x, segment_ids]`, the deployed-graph options as keyword
arguments), so `backbone.EmbBertBackbone`, QAT (`quantize.py`), conversion and export treat
them as they treat EmbBERT:

* `bert`: token + position + segment embeddings of width d with LayerNorm, post-LN encoder
  blocks (multi-head attention with query/key/value/output maps, residual, LayerNorm; a
  feed-forward d -> f -> d with GELU, residual, LayerNorm), the [CLS] head;
* `embedder`: the Nano Embedder alone, then a masked mean over the valid tokens;
* `embedder_conv`: the Nano Embedder, then blocks of EmbBERT's convolution path (RMSNorm,
  causal depthwise convolution, SiLU, linear map; no attention), then the masked mean.

Every operator is one TFLM has an int8 kernel for. The masked mean is a softmax of the
key-padding bias (0 for a token, a large negative value for padding) times the sequence:
uniform weights over the valid tokens, with the same GATHER / SOFTMAX / BATCH_MATMUL
operators as the attention. GELU is x * sigmoid(1.702 x) (LOGISTIC and MUL, as SiLU).
"""
from __future__ import annotations

import math

import numpy as np

from ._tf import keras, tf
from .forms import DeployForm
from .layers import (FLOAT_MASK_PENALTY, INT8_MASK_MARGIN, CausalDepthwiseConv, QuantizableLayer, RMSNorm,
                     _linear, transposed_keys)

GELU_SIGMOID_SCALE = 1.702  # GELU(x) ~ x * sigmoid(1.702 x)


def _key_bias(segment_ids, penalty):
    """(B, T) additive bias: -penalty on padding (segment 0), 0 elsewhere."""
    zero = tf.zeros([], tf.float32)
    return tf.gather(tf.stack([-penalty, zero, zero]), segment_ids)


def _split_heads(x, heads: int):
    """(B, T, d) -> (B, heads, T, d / heads)."""
    shape = x.shape
    dh = int(shape[-1]) // heads
    if shape[0] is not None and shape[1] is not None:
        x = tf.reshape(x, [int(shape[0]), int(shape[1]), heads, dh])
    else:
        x = tf.reshape(x, tf.concat([tf.shape(x)[:2], [heads, dh]], axis=0))
    return tf.transpose(x, [0, 2, 1, 3])


def _merge_heads(x):
    """(B, heads, T, dh) -> (B, T, heads * dh)."""
    x = tf.transpose(x, [0, 2, 1, 3])
    shape = x.shape
    d = int(shape[2]) * int(shape[3])
    if shape[0] is not None and shape[1] is not None:
        return tf.reshape(x, [int(shape[0]), int(shape[1]), d])
    return tf.reshape(x, tf.concat([tf.shape(x)[:2], [d]], axis=0))


@keras.utils.register_keras_serializable(package="embbert")
class LayerNorm(QuantizableLayer):
    """y = (x - mean(x)) * rsqrt(var(x) + eps) * g + b over the last axis (as RMSNorm, plus centring)."""

    def __init__(self, epsilon: float = 1e-6, quantize_output: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.quantize_output = bool(quantize_output)  # False: the caller's wrapper quantises the output

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.gain = self.add_weight("gain", (d,), initializer="ones")
        self.beta = self.add_weight("beta", (d,), initializer="zeros")
        self._add_activation_points("centred", "square", "variance", "variance_eps", "rsqrt", "output")
        super().build(input_shape)

    def call(self, x, training=None):
        xc = self.fq("centred", x - tf.reduce_mean(x, axis=-1, keepdims=True), training)
        var = self.fq("variance", tf.reduce_mean(self.fq("square", xc * xc, training), axis=-1, keepdims=True),
                      training)
        if self.quantize:  # as RMSNorm: epsilon is at least one step of the variance's int8 range
            lo, hi = self.range_of("variance")
            var = var + tf.maximum(tf.stop_gradient((hi - lo) / 255.0), self.epsilon)
        else:
            var = var + self.epsilon
        r = self.fq("rsqrt", tf.math.rsqrt(self.fq("variance_eps", var, training)), training)
        y = (xc * r) * self.fqw(self.gain) + self.beta
        return self.fq("output", y, training) if self.quantize_output else y

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, quantize_output=self.quantize_output)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class BertEmbedder(QuantizableLayer):
    """Token (V x d) + position (L x d) + segment (3 x d) tables, summed, then LayerNorm.

    Inputs [token_ids, segment_ids]; outputs [embeddings (B, T, d), segment_ids] (as
    `NanoEmbedder`, so the blocks never read a model input)."""

    def __init__(self, vocab_size, max_positions, hidden, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.max_positions, self.hidden = int(vocab_size), int(max_positions), int(hidden)
        self.norm = LayerNorm(quantize=self.quantize, name="norm")

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.token_table = self.add_weight("token_table", (self.vocab_size, self.hidden), initializer=init)
        self.position_table = self.add_weight("position_table", (self.max_positions, self.hidden), initializer=init)
        self.segment_table = self.add_weight("segment_table", (3, self.hidden), initializer=init)
        self.norm.build(tf.TensorShape(input_shape[0]).concatenate([self.hidden]))
        self._add_activation_points("position", "token_position", "sum")
        super().build(input_shape)

    def positions(self, length: int):
        return self.position_table[:length]

    def call(self, inputs, training=None, constant_positions=None):
        token_ids, segment_ids = inputs
        length = token_ids.shape[1]
        if length is None:
            length = tf.shape(token_ids)[1]
        elif length > self.max_positions:
            raise ValueError(f"sequence length {length} exceeds the {self.max_positions} positions of the model")
        # GATHER keeps the table's int8 scale: no fake-quant point of its own after it (one would make the
        # converter requantise the whole table with a QUANTIZE operator)
        tok = tf.gather(self.fqw(self.token_table), token_ids)
        # the position rows as an int8 activation (a float constant would need a QUANTIZE operator)
        pos = self.fq("position", self.position_table[:length] if constant_positions is None
                      else tf.convert_to_tensor(constant_positions, tf.float32), training)
        x = self.fq("token_position", tok + pos, training)
        x = self.fq("sum", x + tf.gather(self.fqw(self.segment_table), segment_ids), training)
        return [self.norm(x, training=training), tf.identity(segment_ids)]

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape[0])
        return [shape.concatenate([self.hidden]), tf.TensorShape(input_shape[1])]

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, max_positions=self.max_positions, hidden=self.hidden)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class BertBlock(QuantizableLayer):
    """Post-LN BERT encoder block: x = LN(x + MHA(x)); x = LN(x + FFN(x)); FFN = d -> f (GELU) -> d.

    Inputs [x (B, T, d), segment_ids (B, T)]; output (B, T, d), or (B, 1, d) with
    `first_token_only` (deployed graph, last block: only the [CLS] query and its feed-forward)."""

    def __init__(self, heads: int, ffn: int, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.ffn, self.dropout_rate = int(heads), int(ffn), float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.norm1 = LayerNorm(quantize=self.quantize, name="norm1")
        # the block's output: quantised by tfmot's wrapper (QuantizeWrapperV2), not twice
        self.norm2 = LayerNorm(quantize=self.quantize, quantize_output=False, name="norm2")

    def build(self, input_shape):
        x_shape = tf.TensorShape(input_shape[0])
        d = int(x_shape[-1])
        if d % self.heads:
            raise ValueError(f"hidden size {d} is not a multiple of {self.heads} heads")
        self.hidden = d
        for name, shape in (("query", (d, d)), ("key", (d, d)), ("value", (d, d)), ("output", (d, d)),
                            ("ffn_in", (d, self.ffn)), ("ffn_out", (self.ffn, d))):
            setattr(self, f"{name}_kernel", self.add_weight(f"{name}_kernel", shape, initializer="glorot_uniform"))
            setattr(self, f"{name}_bias", self.add_weight(f"{name}_bias", (shape[1],), initializer="zeros"))
        self.norm1.build(x_shape)
        self.norm2.build(x_shape)
        self._add_activation_points("query", "key", "value", "scores", "masked_scores", "context", "attention_out",
                                    "residual1", "ffn_in", "gelu_in", "gelu", "ffn_out", "residual2")
        self._add_unit_points("probs", "gate")
        super().build(input_shape)

    def mask_penalty(self):
        if not self.quantize:
            return tf.constant(FLOAT_MASK_PENALTY, tf.float32)
        lo, hi = self.range_of("scores")
        return tf.stop_gradient(hi - lo) + INT8_MASK_MARGIN

    def call(self, inputs, training=None, form: DeployForm | None = None):
        """`form`: the block's view of the deployed form (`DeployForm.layer_form`); with `first_token_only`
        (the last block) only the [CLS] query and its feed-forward are computed, output (B, 1, d)."""
        first_token_only = form is not None and form.first_token_only
        x, segment_ids = inputs
        h = self.heads
        scale = 1.0 / math.sqrt(self.hidden // h)
        x_q = x[:, :1] if first_token_only else x
        q = self.fq("query", _linear(x_q, self.fqw(self.query_kernel * scale), self.query_bias * scale), training)
        k = self.fq("key", _linear(x, self.fqw(self.key_kernel), self.key_bias), training)
        v = self.fq("value", _linear(x, self.fqw(self.value_kernel), self.value_bias), training)
        qh, kh = _split_heads(q, h), _split_heads(k, h)
        scores = self.fq("scores", tf.matmul(qh, kh, transpose_b=True), training)  # (B, h, Tq, T)
        bias = _key_bias(segment_ids, self.mask_penalty())[:, None, None, :]
        probs = self.fq("probs", tf.nn.softmax(self.fq("masked_scores", scores + bias, training), axis=-1), training)
        probs = self.dropout(probs, training=training)
        # P.v as BATCH_MATMUL(P, (v^T), adj_y=True): no persistent transposed copy of v in TFLM
        vt = tf.transpose(_split_heads(v, h), [0, 1, 3, 2])
        context = self.fq("context", _merge_heads(tf.matmul(probs, vt, transpose_b=True)), training)
        att = self.fq("attention_out", _linear(context, self.fqw(self.output_kernel), self.output_bias), training)
        x1 = self.norm1(self.fq("residual1", x_q + att, training), training=training)
        f = self.fq("ffn_in", _linear(x1, self.fqw(self.ffn_in_kernel), self.ffn_in_bias), training)
        gate = self.fq("gate", tf.sigmoid(self.fq("gelu_in", GELU_SIGMOID_SCALE * f, training)), training)
        f = self.fq("gelu", f * gate, training)
        f = self.fq("ffn_out", _linear(f, self.fqw(self.ffn_out_kernel), self.ffn_out_bias), training)
        return self.norm2(self.fq("residual2", x1 + f, training), training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(heads=self.heads, ffn=self.ffn, dropout=self.dropout_rate)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class ConvBlock(QuantizableLayer):
    """EmbBERT's convolution path alone: RMSNorm, causal depthwise convolution (k, e), SiLU, Linear d*e -> d.

    No attention and, as EmbBERT's layer, no residual. Inputs [x, segment_ids]; output (B, T, d)."""

    def __init__(self, kernel_size: int, expansion: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.expansion = int(kernel_size), int(expansion)
        self.norm = RMSNorm(quantize=self.quantize, name="norm")
        self.conv = CausalDepthwiseConv(self.kernel_size, self.expansion, quantize=self.quantize, name="conv")

    def build(self, input_shape):
        x_shape = tf.TensorShape(input_shape[0])
        d = int(x_shape[-1])
        self.norm.build(x_shape)
        self.conv.build(x_shape)
        self.out_kernel = self.add_weight("out_kernel", (d * self.expansion, d), initializer="glorot_uniform")
        self.out_bias = self.add_weight("out_bias", (d,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs, training=None, form: DeployForm | None = None):
        x, _ = inputs  # every position feeds the mean that follows: no token-0 form
        y = self.conv(self.norm(x, training=training), training=training, form=form)
        return _linear(y, self.fqw(self.out_kernel), self.out_bias)  # quantised by the wrapper

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, expansion=self.expansion)
        return config


@keras.utils.register_keras_serializable(package="embbert")
class MaskedMeanPool(QuantizableLayer):
    """The mean of x over the valid (non-padding) positions: (B, T, d) -> (B, 1, d).

    softmax(key-padding bias) gives weight 1/n to each of the n valid tokens and 0 to padding;
    the mean is that row times x (one BATCH_MATMUL on the transposed sequence)."""

    def build(self, input_shape):
        self._add_unit_points("weights")
        super().build(input_shape)

    def call(self, inputs, training=None, form: DeployForm | None = None):
        x, segment_ids = inputs
        deploy = form is not None and form.transposed_keys
        penalty = tf.constant(FLOAT_MASK_PENALTY if not self.quantize else 64.0, tf.float32)
        weights = self.fq("weights", tf.nn.softmax(_key_bias(segment_ids, penalty), axis=-1), training)
        weights = tf.expand_dims(weights, 1)  # (B, 1, T)
        mean = tf.matmul(weights, transposed_keys(x), transpose_b=True) if deploy else tf.matmul(weights, x)
        return mean  # quantised by the wrapper

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape[0])
        return tf.TensorShape([shape[0], 1, shape[-1]])


@keras.utils.register_keras_serializable(package="embbert")
class MambaBlock(QuantizableLayer):
    """A selective state-space (Mamba) block, pre-norm with a residual: x + out(SSM(u) * SiLU(z)).

    y = RMSNorm(x); u = SiLU(causal depthwise conv_k(y W_u)) (width di = e*d); z = y W_z; B = u W_B and
    C = u W_C (N each). The state h (di x N) follows Mamba's zero-order-hold discretisation with A = -1
    and a step size per channel and state, delta = softplus(-(s + o)) with s = u W_dt1 W_dt2 + b:
    decay = exp(-delta) = sigmoid(s + o) and the input matrix (1 - exp(-delta)) B, so
        h_t = decay_t * h_{t-1} + (1 - decay_t) * (u_t B_t),   y_t = h_t C_t + D * u_t.
    Mamba's own form, exp(delta * A) with a learned A per state, needs EXP, which TFLM runs in float32
    only; this form needs LOGISTIC, SUB, MUL, ADD and SUM, all int8 in TFLM. The per-state offsets o
    start at -log(n) (n = 1..N) so the states start with different memories, as Mamba's A = -1..-N.
    At a static length the scan is unrolled (one scale for every step's state); at a dynamic length (the
    backbone's own graph) it is a `tf.scan`. Inputs [x, segment_ids]; output (B, T, d), quantised by
    the wrapper."""

    def __init__(self, expansion: int = 2, kernel_size: int = 4, state: int = 8, dt_rank: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.expansion, self.kernel_size = int(expansion), int(kernel_size)
        self.state, self.dt_rank = int(state), int(dt_rank)
        self.norm = RMSNorm(quantize=self.quantize, name="norm")
        self.conv = CausalDepthwiseConv(self.kernel_size, 1, quantize=self.quantize, name="conv")

    def build(self, input_shape):
        x_shape = tf.TensorShape(input_shape[0])
        d = int(x_shape[-1])
        di, n, r = d * self.expansion, self.state, self.dt_rank
        self.norm.build(x_shape)
        self.conv.build(x_shape[:-1].concatenate([di]))
        glorot = "glorot_uniform"
        self.in_u = self.add_weight("in_u", (d, di), initializer=glorot)
        self.in_z = self.add_weight("in_z", (d, di), initializer=glorot)
        self.x_dt = self.add_weight("x_dt", (di, r), initializer=glorot)
        self.dt_proj = self.add_weight("dt_proj", (r, di), initializer=glorot)
        # s holds -(delta's softplus argument), so decay = sigmoid(s + o) needs no NEG (float-only in the
        # converter): delta = softplus(-b) starts in [1e-3, 1e-1] as Mamba's, b = -log(expm1(delta))
        self.dt_bias = self.add_weight("dt_bias", (di,), initializer=keras.initializers.RandomUniform(
            -math.log(math.expm1(1e-1)), -math.log(math.expm1(1e-3))))
        self.offset = self.add_weight("offset", (di, n), initializer=keras.initializers.Constant(
            -np.log(np.tile(np.arange(1, n + 1, dtype=np.float32), (di, 1)))))
        self.x_b = self.add_weight("x_b", (di, n), initializer=glorot)
        self.x_c = self.add_weight("x_c", (di, n), initializer=glorot)
        self.d_skip = self.add_weight("d_skip", (di,), initializer="ones")
        self.out = self.add_weight("out", (di, d), initializer=glorot)
        self._add_activation_points("u", "z", "s", "b", "c", "s_o", "input", "bx", "state", "y", "y_skip", "z_silu",
                                    "gated", "out")
        self._add_unit_points("decay", "keep", "z_gate")
        super().build(input_shape)

    def call(self, inputs, training=None, form: DeployForm | None = None):
        x, _ = inputs
        y = self.norm(x, training=training)
        u = self.conv(self.fq("u", _linear(y, self.fqw(self.in_u)), training), training=training, form=form)
        z = self.fq("z", _linear(y, self.fqw(self.in_z)), training)
        s = self.fq("s", _linear(_linear(u, self.fqw(self.x_dt)), self.fqw(self.dt_proj), self.dt_bias), training)
        bm = self.fq("b", _linear(u, self.fqw(self.x_b)), training)  # (B, T, N)
        cm = self.fq("c", _linear(u, self.fqw(self.x_c)), training)
        offset = self.fqw(self.offset)  # (di, N)

        def gates(s_t, u_t, b_t):
            """decay = exp(-softplus(-(s + o))) = sigmoid(s + o) and the step's input (1 - decay) u B."""
            decay = self.fq("decay", tf.sigmoid(self.fq("s_o", s_t[..., None] + offset, training)), training)
            keep = self.fq("keep", 1.0 - decay, training)
            return decay, self.fq("bx", keep * self.fq("input", u_t[..., None] * b_t[..., None, :], training),
                                  training)

        length = x.shape[1]
        if length is not None:  # unrolled, step by step: elementwise int8 operators on (di, N) tensors only
            h, ys = None, []
            for t in range(int(length)):
                decay, bx = gates(s[:, t], u[:, t], bm[:, t])
                h = bx if h is None else self.fq("state", decay * h, training) + bx
                h = self.fq("state", h, training)
                ys.append(tf.reduce_sum(h * cm[:, t, None, :], axis=-1))
            ssm = tf.stack(ys, axis=1)
        else:  # the backbone's own graph (any length): the same recurrence as a tf.scan
            decay, bx = gates(s, u, bm)

            def step(h, inp):
                dec, b_x = inp
                return self.fq("state", self.fq("state", dec * h, training) + b_x, training)

            hs = tf.scan(step, (tf.transpose(decay, [1, 0, 2, 3]), tf.transpose(bx, [1, 0, 2, 3])),
                         initializer=tf.zeros_like(bx[:, 0]))
            ssm = tf.transpose(tf.reduce_sum(hs * tf.transpose(cm, [1, 0, 2])[:, :, None, :], axis=-1), [1, 0, 2])
        y_ssm = self.fq("y_skip", self.fq("y", ssm, training) + u * self.fqw(self.d_skip), training)
        gate = self.fq("z_gate", tf.sigmoid(z), training)
        gated = self.fq("gated", y_ssm * self.fq("z_silu", z * gate, training), training)
        return x + self.fq("out", _linear(gated, self.fqw(self.out)), training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(expansion=self.expansion, kernel_size=self.kernel_size, state=self.state, dt_rank=self.dt_rank)
        return config


ARCH_LAYERS = (LayerNorm, BertEmbedder, BertBlock, ConvBlock, MaskedMeanPool, MambaBlock)
CUSTOM_OBJECTS = {cls.__name__: cls for cls in ARCH_LAYERS}

__all__ = ["LayerNorm", "BertEmbedder", "BertBlock", "ConvBlock", "MaskedMeanPool", "MambaBlock", "CUSTOM_OBJECTS",
           "GELU_SIGMOID_SCALE"]
