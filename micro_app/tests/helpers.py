"""Test helpers for the micro_app tests (tiny tokenizer, tiny int8 model, C builds)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

MICRO_APP = Path(__file__).resolve().parents[1]
SRC = MICRO_APP / "src"
TESTS = MICRO_APP / "tests"

WORDS = ("the a movie film was great terrible not bad good actor plot story i it "
         "loved hated boring fun really very time people best worst don't can't "
         "it's we're they've i'll he'd 2024 100 3.5 café naïve résumé über").split()


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 15))]
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.capitalize() + rng.choice([".", "!", "?", "..."])
        out.append(text)
    return out


def train_tokenizer(directory: Path, vocab_size: int = 600) -> Path:
    """A byte-level BPE tokenizer trained exactly as the spec (docs/tokenizer.md) says."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.Split(Regex(".{1,128}"), behavior="isolated"),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[MASK]", "[SEP]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    tok.model.save(str(directory))
    return directory


class Reference:
    """encode(text) -> ids without special tokens; pack(...) like the Python pipeline."""

    def __init__(self, directory: Path):
        self.project = None
        try:  # the project's own tokenizer once it exists
            from embbert.datasets import tokenizer as project_tok  # type: ignore

            self.project = project_tok.load_tokenizer(directory)
        except Exception:
            self.project = None
        from tokenizers import Tokenizer

        self.hf = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.hf.encode_special_tokens = True
        self.normalizer = self.hf.normalizer

    def encode(self, text: str) -> list[int]:
        if self.project is not None:
            return list(self.project.encode(text))
        return self.hf.encode(text, add_special_tokens=False).ids


def pack(ids_a, ids_b, L):
    """Reference packing (the spec), used when embbert.datasets.pipeline.pack is absent."""
    if ids_b is None:
        toks = [2] + list(ids_a[: L - 1])
        seg = [1] * len(toks)
    else:
        a, b = list(ids_a), list(ids_b)
        while len(a) + len(b) > L - 3:
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        toks = [2] + a + [4] + b + [4]
        seg = [1] * (len(a) + 1) + [2] * (len(b) + 2)
    pad = L - len(toks)
    return toks + [0] * pad, seg + [0] * pad


def build_tiny_tflite(path: Path, L: int, vocab_size: int, num_labels: int = 2, swap_inputs: bool = False) -> Path:
    """A tiny full-int8 model with int32 token_ids/segment_ids inputs (gather -> mean -> dense)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    class Gather(keras.layers.Layer):
        def __init__(self, rows, dim, **kw):
            super().__init__(**kw)
            self.rows, self.dim = rows, dim

        def build(self, shape):
            self.table = self.add_weight(name="table", shape=(self.rows, self.dim), initializer="random_normal")

        def call(self, ids):
            return tf.gather(self.table, ids)

    tok = keras.Input(shape=(L,), batch_size=1, dtype="int32", name="token_ids")
    seg = keras.Input(shape=(L,), batch_size=1, dtype="int32", name="segment_ids")
    x = Gather(vocab_size, 8)(tok) + Gather(3, 8)(seg)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    out = keras.layers.Dense(num_labels, name="logits")(x)
    inputs = [seg, tok] if swap_inputs else [tok, seg]
    model = keras.Model(inputs, out)

    @tf.function(input_signature=[tf.TensorSpec((1, L), tf.int32, name="token_ids"),
                                  tf.TensorSpec((1, L), tf.int32, name="segment_ids")])
    def serve(token_ids, segment_ids):
        return {"logits": model({"token_ids": token_ids, "segment_ids": segment_ids})}

    rng = np.random.default_rng(0)

    def rep():
        for _ in range(16):
            yield {"token_ids": rng.integers(0, vocab_size, (1, L), dtype=np.int32),
                   "segment_ids": rng.integers(0, 3, (1, L), dtype=np.int32)}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_output_type = tf.int8
    data = conv.convert()
    path.write_bytes(data)
    return path


def make_run_dir(root: Path, L: int = 32, num_labels: int = 2) -> Path:
    """A run directory as `embbert convert`/`check` leave it (tiny model)."""
    from embbert.core.config import EmbBertConfig

    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    tok_dir = train_tokenizer(run / "tokenizer")
    vocab = json.loads((tok_dir / "vocab.json").read_text())
    cfg = EmbBertConfig.create("nano", max_length=L, num_labels=num_labels,
                               label_names=[f"class {i}" for i in range(num_labels)], tokenizer="tokenizer")
    cfg = cfg.replace(model=cfg.model.__class__(**{**cfg.model.__dict__, "vocab_size": len(vocab)}))
    cfg.save(run)
    data = build_tiny_tflite(run / "model_int8.tflite", L, len(vocab), num_labels).read_bytes()
    # what `embbert convert` records next to the model, and the arena report's keys export reads
    (run / "model_int8.tflite.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  model_int8.tflite\n")
    # (a 32-bit board: 4000 - 500 + 1000 rounded to 16; a 64-bit host build: 4000 + 1000)
    (run / "arena_report.json").write_text(json.dumps({"recommended_arena_bytes": 4512, "min_arena_bytes": 4000,
                                                       "pointer_savings_bytes": 500, "host_arena_bytes": 5000,
                                                       "margin_bytes": 1000, "model_bytes": len(data)}))
    return run


def cc(compiler: str, sources, out: Path, include_dirs, flags=()) -> Path:
    cmd = [compiler, *flags, *[f"-I{d}" for d in include_dirs], *map(str, sources), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"compile failed: {' '.join(cmd)}\n{res.stderr}")
    return out


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
