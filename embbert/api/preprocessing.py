"""`EmbBertTokenizer` and `EmbBertPreprocessor`: raw text -> `token_ids` / `segment_ids` (keras-hub style).

Both wrap the project's one tokenizer contract (`embbert.datasets.tokenizer`: byte-level BPE,
`pack_batch`), so the ids are exactly those of `embbert train` and of the on-device C tokenizer.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.datasets.tokenizer import REQUIRED_FILES, TOKENIZER_FILE, check_length, encode_texts, load_tokenizer
from embbert.keras_model import presets
from embbert.keras_model._tf import tf


def _tokenizer_dir(name_or_dir: str | os.PathLike) -> Path:
    """The tokenizer folder of a preset name, a preset / run / pretraining directory, or a tokenizer folder."""
    path = Path(name_or_dir)
    if path.is_dir() and (path / TOKENIZER_FILE).is_file():
        return path  # a bare tokenizer folder (`embbert tokenizer train --out`)
    if path.is_dir() and (path / layout.TOKENIZER_DIR / TOKENIZER_FILE).is_file():
        return path / layout.TOKENIZER_DIR
    directory = presets.resolve(name_or_dir)
    return EmbBertConfig.load(directory).tokenizer_dir(directory)


class EmbBertTokenizer:
    """The byte-level BPE tokenizer of a preset: text -> token ids (no special tokens).

    >>> tok = EmbBertTokenizer.from_preset("tiny_en")
    >>> tok("I feel wonderful")          # a list of ids; a list of texts gives a list of lists
    """

    def __init__(self, directory: str | os.PathLike):
        self._bpe = load_tokenizer(directory)
        self.directory = Path(directory)

    @classmethod
    def from_preset(cls, name_or_dir: str | os.PathLike) -> "EmbBertTokenizer":
        """The tokenizer of a shipped preset (`tiny_en`, `embbert_en`), of a preset, run or pretraining
        directory, or of a tokenizer folder."""
        return cls(_tokenizer_dir(name_or_dir))

    @property
    def vocabulary_size(self) -> int:
        """Number of ids (special tokens included)."""
        return self._bpe.vocab_size

    def tokenize(self, text: str | Sequence[str]) -> list[int] | list[list[int]]:
        """Ids of one text (a list), or of each text of a list (a list of lists)."""
        if isinstance(text, str):
            return self._bpe.encode(text)
        return self._bpe.encode_batch(_strings(text))

    __call__ = tokenize

    def detokenize(self, ids: Sequence[int]) -> str:
        """The (normalised, lower-cased) text of ids; special ids are dropped."""
        return self._bpe.decode([int(i) for i in ids])

    def id_to_token(self, i: int) -> str:
        return self._bpe.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self._bpe.token_to_id(token)

    def save_to_preset(self, directory: str | os.PathLike) -> Path:
        """Copy the tokenizer files into `directory/tokenizer/` (and name it in `directory/config.json` when
        there is one); `EmbBertTokenizer.from_preset(directory)` loads it back."""

        directory = Path(directory)
        target = directory / layout.TOKENIZER_DIR
        if target.resolve() != self.directory.resolve():
            tmp = directory / f".{layout.TOKENIZER_DIR}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in REQUIRED_FILES:
                shutil.copyfile(self.directory / name, tmp / name)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        if (directory / layout.CONFIG).is_file():
            config = EmbBertConfig.load(directory)
            if config.tokenizer != layout.TOKENIZER_DIR:
                config.replace(tokenizer=layout.TOKENIZER_DIR).save(directory)
        if not (directory / layout.PRESET_METADATA).is_file():
            presets.write_metadata(directory, presets.metadata("tokenizer", "", None,
                                                               vocabulary_size=self.vocabulary_size))
        return directory

    def __repr__(self) -> str:
        return f"EmbBertTokenizer({str(self.directory)!r}, vocabulary_size={self.vocabulary_size})"


def _strings(texts: Any) -> list[str]:
    """A list of Python strings from a list / tuple / numpy array of str or bytes."""
    if isinstance(texts, np.ndarray):
        texts = texts.reshape(-1).tolist()
    out = []
    for t in texts:
        if isinstance(t, (bytes, np.bytes_)):
            t = bytes(t).decode("utf-8")
        elif isinstance(t, np.str_):
            t = str(t)
        if not isinstance(t, str):
            raise EmbBertError(f"expected texts (str), got {type(t).__name__}")
        out.append(t)
    return out


class EmbBertPreprocessor:
    """Raw text (or text pairs) -> `{"token_ids", "segment_ids"}` int32 [N, L], the model's inputs.

    Inputs: one string (-> [L]), a list / numpy array of strings (-> [N, L]), and for pairs
    (`[CLS] A [SEP] B [SEP]`, longest first truncation) a *tuple* (first texts, second texts) or a list of
    (first, second) tuples.
    String tensors work too (eager, or inside `tf.data.Dataset.map`: the BPE runs in
    `tf.numpy_function`). `preprocessor(x, y)` returns `(inputs, y)`, as keras-hub preprocessors do.
    """

    def __init__(self, tokenizer: EmbBertTokenizer, sequence_length: int, *, config: EmbBertConfig | None = None):
        check_length(sequence_length, False)
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.config = config  # the preset's EmbBertConfig (model size), when known

    @classmethod
    def from_preset(cls, name_or_dir: str | os.PathLike, sequence_length: int | None = None) -> "EmbBertPreprocessor":
        """The preprocessor of a shipped preset or a preset / run / pretraining directory; `sequence_length`
        defaults to the preset's L (64 for `tiny_en`) and may not exceed its position table."""

        directory = presets.resolve(name_or_dir)
        config = EmbBertConfig.load(directory)
        length = config.max_length if sequence_length is None else sequence_length
        if not isinstance(length, (int, np.integer)) or length < 2:
            raise EmbBertError(f"sequence_length must be an integer >= 2, got {length!r}")
        if length > config.model.max_positions:
            raise EmbBertError(f"sequence_length {length} exceeds the preset's {config.model.max_positions} positions")
        return cls(EmbBertTokenizer(config.tokenizer_dir(directory)), int(length), config=config)

    # -- eager: numpy in, numpy out ------------------------------------------------------------------
    def encode(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """token_ids, segment_ids (np.int32 [N, L]) of N texts (or N pairs)."""
        a = _strings(texts_a)
        b = None if texts_b is None else _strings(texts_b)
        if not a:
            raise EmbBertError("no texts to encode")
        return encode_texts(self.tokenizer._bpe, a, b, self.sequence_length)

    def _eager(self, x) -> dict[str, np.ndarray]:
        if isinstance(x, dict):
            if set(x) == {"token_ids", "segment_ids"}:
                return x  # already model inputs
            raise EmbBertError(f"expected texts or {{'token_ids', 'segment_ids'}}, got a dict with keys {sorted(x)}")
        if isinstance(x, tf.Tensor):
            x = x.numpy()
        if isinstance(x, list) and x and all(isinstance(p, tuple) and len(p) == 2 for p in x):
            x = ([a for a, _ in x], [b for _, b in x])  # a list of (first, second) pairs
        if isinstance(x, tuple):
            if len(x) != 2:
                raise EmbBertError(f"a tuple of texts means (first texts, second texts); got {len(x)} parts")
            a, b = (p.numpy() if isinstance(p, tf.Tensor) else p for p in x)
            single = isinstance(a, (str, bytes)) or (isinstance(a, np.ndarray) and a.ndim == 0)
            tok, seg = self.encode([a] if single else a, [b] if single else b)
        else:
            single = isinstance(x, (str, bytes)) or (isinstance(x, np.ndarray) and x.ndim == 0)
            tok, seg = self.encode([x] if single else x)
        if single:
            tok, seg = tok[0], seg[0]
        return {"token_ids": tok, "segment_ids": seg}

    # -- in a TensorFlow graph (tf.data.Dataset.map) ---------------------------------------------------
    def _graph(self, x) -> dict[str, Any]:
        parts = list(x) if isinstance(x, tuple) else [x]
        if len(parts) not in (1, 2):
            raise EmbBertError(f"a tuple of texts means (first texts, second texts); got {len(parts)} parts")
        parts = [tf.convert_to_tensor(p) for p in parts]
        if any(p.dtype != tf.string for p in parts):
            raise EmbBertError(f"expected string tensors, got {[p.dtype.name for p in parts]}")
        rank = parts[0].shape.rank
        if rank not in (0, 1):
            raise EmbBertError(f"expected a scalar or a vector of strings, got shape {parts[0].shape}")

        def encode(*arrays):
            flat = [np.atleast_1d(a) for a in arrays]
            tok, seg = self.encode(flat[0], flat[1] if len(flat) > 1 else None)
            return (tok[0], seg[0]) if rank == 0 else (tok, seg)

        tok, seg = tf.numpy_function(encode, parts, [tf.int32, tf.int32], stateful=False)
        shape = [self.sequence_length] if rank == 0 else [parts[0].shape[0], self.sequence_length]
        tok.set_shape(shape)
        seg.set_shape(shape)
        return {"token_ids": tok, "segment_ids": seg}

    @tf.autograph.experimental.do_not_convert  # plain Python in tf.data.Dataset.map: the BPE is a numpy_function
    def __call__(self, x, y=None, sample_weight=None):
        """Model inputs of `x`; with labels, `(inputs, y)` or `(inputs, y, sample_weight)`."""
        parts = x if isinstance(x, tuple) else (x,)
        if isinstance(x, dict):
            graph = False  # model inputs already: passed through
        else:
            graph = any(isinstance(p, tf.Tensor) and not hasattr(p, "numpy") for p in parts) or (
                not tf.executing_eagerly())
        inputs = self._graph(x) if graph else self._eager(x)
        if y is None and sample_weight is None:
            return inputs
        return (inputs, y) if sample_weight is None else (inputs, y, sample_weight)

    def __repr__(self) -> str:
        return f"EmbBertPreprocessor(tokenizer={self.tokenizer!r}, sequence_length={self.sequence_length})"


__all__ = ["EmbBertTokenizer", "EmbBertPreprocessor"]
