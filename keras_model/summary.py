"""`embbert model summary`: parameter counts, weight bytes and the largest activation."""
from __future__ import annotations

from embbert.core.config import EmbBertConfig

from .model import parameter_counts


def int8_weight_bytes(config: EmbBertConfig, length: int | None = None) -> int:
    """Bytes of the constant tensors of the converted int8 graph (weights int8, biases int32).

    EmbBERT, as converted: the position path (table rows 0..L-1 times its map) folds into one
    L x d constant, the weighted-difference scalars fold into the output maps, and the
    causal convolution kernel carries k-1 zero taps (2k-1 taps, see CausalDepthwiseConv).
    The baselines (`arch` other than embbert): every matrix and table at int8, every vector at
    int32 (biases; a norm's vectors are int8 in the graph, so it is an upper bound), the
    position rows beyond L dropped; `embbert bench arch` reports the converted graph's bytes.
    """
    m, n = config.model, config.num_labels
    length = length or config.max_length
    d, de = m.hidden, m.hidden * m.expansion
    head = d * n + 4 * n
    if m.arch == "bert":
        embedder = m.vocab_size * d + length * d + 3 * d + 2 * 4 * d
        per_layer = 4 * (d * d + 4 * d) + (d * m.ffn + 4 * m.ffn) + (m.ffn * d + 4 * d) + 4 * 4 * d
        return embedder + m.layers * per_layer + head
    embedder = m.vocab_size * m.reduced + m.reduced * d + length * d + 3 * d
    if m.arch in ("embedder", "embedder_conv"):
        per_layer = 4 * d + m.kernel * de + 4 * de + de * d + 4 * d  # norm, conv kernel + bias, output map + bias
        return embedder + m.layers * per_layer + head
    if m.arch == "mamba":
        r = -(-d // 16)  # the step size's rank
        per_layer = (4 * d + 2 * d * de + m.kernel * de + 4 * de + de * r + r * de + 4 * de + 3 * de * m.state
                     + 4 * de + de * d)
        return embedder + m.layers * per_layer + head
    per_layer = d  # RMSNorm gain
    per_layer += d * d + 4 * d  # query map + int32 bias
    per_layer += d * d + 4 * d  # attention output map + bias
    per_layer += de * d + 4 * d  # convolution output map + bias
    per_layer += (2 * m.kernel - 1) * de + 4 * de  # depthwise kernel + bias
    return embedder + m.layers * per_layer + head


def activations(config: EmbBertConfig, length: int | None = None) -> dict[str, int]:
    """int8 bytes of the main activation tensors at batch 1."""
    m = config.model
    L = length or config.max_length
    if m.arch == "bert":
        return {f"attention scores ({m.heads} x L x L)": m.heads * L * L, "feed-forward (L x f)": L * m.ffn,
                "hidden state (L x d)": L * m.hidden}
    if m.arch == "mamba":
        return {"block input and gate (L x d*e)": L * m.hidden * m.expansion, "hidden state (L x d)": L * m.hidden,
                "state per step (d*e x N)": m.hidden * m.expansion * m.state}
    if m.arch in ("embedder", "embedder_conv"):
        acts = {"hidden state (L x d)": L * m.hidden, "token embedding (L x r)": L * m.reduced}
        if m.layers:
            acts["convolution output (L x d*e)"] = L * m.hidden * m.expansion
        return acts
    return {
        "attention scores (L x L)": L * L,
        "convolution output (L x d*e)": L * m.hidden * m.expansion,
        "hidden state (L x d)": L * m.hidden,
        "token embedding (L x r)": L * m.reduced,
    }


def model_summary(config: EmbBertConfig) -> dict:
    counts = parameter_counts(config)
    acts = activations(config)
    name, size = max(acts.items(), key=lambda kv: kv[1])
    m = config.model
    return {
        "preset": config.preset,
        "arch": m.arch,
        "vocab_size": m.vocab_size,
        "max_length": config.max_length,
        "hidden": m.hidden,
        "reduced": m.reduced,
        "expansion": m.expansion,
        "kernel": m.kernel,
        "layers": m.layers,
        "heads": m.heads,
        "ffn": m.ffn,
        "num_labels": config.num_labels,
        **counts,
        "float32_weight_bytes": 4 * counts["total_params"],
        "int8_weight_bytes": int8_weight_bytes(config),
        "largest_activation": name,
        "largest_activation_bytes": size,
    }
