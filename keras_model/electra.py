"""ELECTRA replaced-token detection for the EmbBERT backbone (`embbert pretrain --objective electra`).

Clark, Luong, Le, Manning (ICLR 2020): a small generator is trained with masked LM; its samples replace
the masked tokens; the discriminator (the backbone that is kept) predicts, at every position, whether
the token there is the original or a replacement. Every position gets a loss, not only the 15 %
masked ones, which is why ELECTRA learns more per step of compute.

One addition for a classifier that reads token 0 ([CLS]): a share of the windows (`CLEAN_FRACTION`)
is left uncorrupted, and position 0's detection target is "this window holds a replacement", so the
token the classifier reads is trained on a decision about the whole window (in plain ELECTRA its
target is always "original").

* generator: the same architecture at half the width and half the layers (at least one), the same
  vocabulary and positions, its own embeddings (the paper ties them; the EmbBERT embedder's reduced
  size makes an untied copy cheap), trained with the masked-LM loss on the masked positions;
* corruption: the masked positions take a token sampled from the generator's softmax (no gradient
  through the sample); a sampled token equal to the original counts as original, as in the paper;
* `random_fraction` (0 in the paper): that share of the replacements is a token drawn uniformly from
  the vocabulary instead of the generator's sample. Measured here (docs/pretraining.md): with the
  generator's samples only, a small discriminator stays at the prior ("nothing replaced") for the
  whole short run, because the generator reaches the frequent tokens within the warm-up and its
  replacements are hard from the start; uniform draws keep easy cases to learn from;
* discriminator: the backbone + a linear d -> 1 head on every non-padding position; sigmoid
  cross-entropy, averaged over those positions, weighted by `rtd_weight` (the paper's 50) against
  the generator's loss.

`ElectraPretrainer.call` returns the generator's logits at the masked positions, so the held-out
masked-token accuracy of `pretrain.HeldOutEvaluation` is measured on the generator unchanged.
"""
from __future__ import annotations

from dataclasses import replace

from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError

from ._tf import keras, tf
from .backbone import SEGMENT_IDS, TOKEN_IDS, EmbBertBackbone
from .layers import MaskedLMHead
from .model import MASK_POSITIONS

#: Share of windows left uncorrupted (position 0 then learns "this window holds a replacement" or not).
CLEAN_FRACTION = 0.25


def generator_config(config: EmbBertConfig) -> EmbBertConfig:
    """The generator: half the width (at least 32) and half the layers (at least 1) of the discriminator."""
    m = config.model
    if m.arch not in ("embbert", "bert"):
        raise EmbBertError(f"the {m.arch} architecture has no per-token output for replaced-token detection")
    hidden = max(32, m.hidden // 2)
    if m.arch == "bert":
        heads = max(1, m.heads // 2) if hidden % max(1, m.heads // 2) == 0 else 1
        small = replace(m, hidden=hidden, layers=max(1, m.layers // 2), heads=heads, ffn=max(hidden, m.ffn // 2))
    else:
        small = replace(m, hidden=hidden, layers=max(1, m.layers // 2))
    return config.replace(model=small, preset=f"{config.preset}-generator")


class ElectraPretrainer(keras.Model):
    """Generator (masked LM) + discriminator (replaced-token detection) trained together."""

    def __init__(self, config: EmbBertConfig, rtd_weight: float = 50.0, clean_fraction: float = CLEAN_FRACTION,
                 random_fraction: float = 0.0, **kwargs):
        super().__init__(name="embbert_electra", **kwargs)
        self.rtd_weight = float(rtd_weight)
        self.random_fraction = float(random_fraction)
        self.clean_fraction = float(clean_fraction)
        self.vocab_size = config.model.vocab_size
        self.generator = EmbBertBackbone.create(generator_config(config), name="generator_backbone")
        self.mlm_head = MaskedLMHead(config.model.vocab_size, name="generator_mlm_head")
        self.discriminator = EmbBertBackbone.create(config)
        self.rtd_head = keras.layers.Dense(1, name="rtd_head")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mlm_tracker = keras.metrics.Mean(name="mlm_loss")
        self.rtd_tracker = keras.metrics.Mean(name="rtd_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")  # generator, masked positions
        self.rtd_accuracy_tracker = keras.metrics.Mean(name="rtd_accuracy")  # discriminator, every position

    @property
    def metrics(self):
        return [self.loss_tracker, self.mlm_tracker, self.rtd_tracker, self.accuracy_tracker,
                self.rtd_accuracy_tracker]

    def call(self, inputs, training=False):
        h = self.generator({TOKEN_IDS: inputs[TOKEN_IDS], SEGMENT_IDS: inputs[SEGMENT_IDS]}, training=training)
        return self.mlm_head([h, inputs[MASK_POSITIONS]])

    def discriminate(self, token_ids, segment_ids, training=False):
        """Replaced-token logits (B, L) of the discriminator."""
        h = self.discriminator({TOKEN_IDS: token_ids, SEGMENT_IDS: segment_ids}, training=training)
        return tf.squeeze(self.rtd_head(h), -1)

    def corrupt(self, inputs, ids, weights, gen_logits):
        """(corrupted token ids, replaced labels (B, L) float) from the generator's samples at the masked
        positions; `clean_fraction` of the windows keep their original tokens; position 0's label is
        "this window holds a replacement"."""
        from embbert.datasets.tokenizer import PAD_ID

        masked, positions = inputs[TOKEN_IDS], inputs[MASK_POSITIONS]
        B, P = tf.shape(positions)[0], tf.shape(positions)[1]
        real = weights > 0
        logits = tf.reshape(tf.stop_gradient(gen_logits), [-1, self.vocab_size])
        sampled = tf.reshape(tf.random.categorical(logits, 1, dtype=tf.int32), [B, P])
        if self.random_fraction > 0:  # a share of the replacements drawn uniformly from the non-special ids
            from embbert.datasets.tokenizer import NUM_SPECIAL_TOKENS

            uniform = tf.random.uniform([B, P], NUM_SPECIAL_TOKENS, self.vocab_size, dtype=tf.int32)
            sampled = tf.where(tf.random.uniform([B, P]) < self.random_fraction, uniform, sampled)
        corrupt_window = tf.random.uniform([B]) >= self.clean_fraction
        use_sample = real & corrupt_window[:, None]
        new_ids = tf.where(use_sample, sampled, ids)
        rows = tf.tile(tf.range(B)[:, None], [1, P])
        index = tf.stack([rows, positions], -1)
        # the original window: the masked input with the true ids written back at the real masked positions
        original = tf.tensor_scatter_nd_update(masked, tf.boolean_mask(index, real), tf.boolean_mask(ids, real))
        corrupted = tf.tensor_scatter_nd_update(original, tf.boolean_mask(index, real),
                                                tf.boolean_mask(new_ids, real))
        replaced = tf.cast(tf.not_equal(corrupted, original), tf.float32)
        any_replaced = tf.cast(tf.reduce_any(replaced > 0, axis=-1), tf.float32)
        labels = tf.concat([any_replaced[:, None], replaced[:, 1:]], axis=1)
        valid = tf.cast(tf.not_equal(original, PAD_ID), tf.float32)
        return corrupted, labels, valid

    def train_step(self, data):
        inputs, ids, weights = data
        with tf.GradientTape() as tape:
            gen_logits = self(inputs, training=True)
            ce = keras.losses.sparse_categorical_crossentropy(ids, gen_logits, from_logits=True)
            mlm_loss = tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
            corrupted, labels, valid = self.corrupt(inputs, ids, weights, gen_logits)
            rtd_logits = self.discriminate(corrupted, inputs[SEGMENT_IDS], training=True)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=rtd_logits)
            rtd_loss = tf.reduce_sum(bce * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)
            loss = mlm_loss + self.rtd_weight * rtd_loss
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        hit = tf.cast(tf.equal(tf.argmax(gen_logits, -1, output_type=tf.int32), ids), tf.float32)
        rtd_hit = tf.cast(tf.equal(tf.cast(rtd_logits > 0, tf.float32), labels), tf.float32)
        self.loss_tracker.update_state(loss)
        self.mlm_tracker.update_state(mlm_loss)
        self.rtd_tracker.update_state(rtd_loss)
        self.accuracy_tracker.update_state(tf.reduce_sum(hit * weights) / tf.maximum(tf.reduce_sum(weights), 1.0))
        self.rtd_accuracy_tracker.update_state(tf.reduce_sum(rtd_hit * valid) / tf.maximum(tf.reduce_sum(valid), 1.0))
        return {m.name: m.result() for m in self.metrics}


def build_electra(config: EmbBertConfig, max_predictions: int, rtd_weight: float = 50.0,
                  random_fraction: float = 0.0) -> ElectraPretrainer:
    """The ELECTRA pretrainer, built (its weights exist) for sequences of config.max_length."""
    model = ElectraPretrainer(config, rtd_weight=rtd_weight, random_fraction=random_fraction)
    L = config.max_length
    tok = tf.zeros([1, L], tf.int32)
    model({TOKEN_IDS: tok, SEGMENT_IDS: tf.ones([1, L], tf.int32),
           MASK_POSITIONS: tf.zeros([1, max_predictions], tf.int32)})
    model.discriminate(tok, tf.ones([1, L], tf.int32))
    return model
