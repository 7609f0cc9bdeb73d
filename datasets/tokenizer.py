"""Byte-level BPE tokenizer (GPT-2 style) with lower-casing and accent stripping.

Two implementations with identical ids (see `docs/tokenizer.md` for the exact algorithm):

* `BpeTokenizer`: the Hugging Face `tokenizers` implementation (training, Python-side encoding);
* `keras_nlp_tokenizer(dir)` / `tf_tokenize(...)`: the TensorFlow graph implementation used
  inside `tf.data` (normalisation with tensorflow-text ops, then keras-nlp's
  `BytePairTokenizer`).

Special tokens occupy ids 0..4 of the vocabulary, but the encoder never produces them
from text: "[SEP]" inside user text is ordinary text.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from embbert.core.errors import EmbBertError

PAD_ID = 0
UNK_ID = 1
CLS_ID = 2
MASK_ID = 3
SEP_ID = 4
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[MASK]", "[SEP]"]

DEFAULT_VOCAB_SIZE = 8192
#: Longest pre-tokenised piece, in bytes: longer pieces are cut into chunks of this size.
MAX_PIECE_BYTES = 128
MERGES_HEADER = "#version: 0.2"

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "tokenizer_config.json"
REQUIRED_FILES = (TOKENIZER_FILE, VOCAB_FILE, MERGES_FILE, CONFIG_FILE)

NORMALIZATION = "NFD, strip combining marks (Unicode category Mn), lowercase"
PRE_TOKENIZATION = (
    "GPT-2 regex split ('s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+), "
    f"byte-to-unicode mapping, pieces cut into chunks of at most {MAX_PIECE_BYTES} bytes"
)


# ---------------------------------------------------------------------------
# tokenizers (Hugging Face) side
# ---------------------------------------------------------------------------
def _normalizer():
    from tokenizers import normalizers

    return normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            pre_tokenizers.Split(Regex(f".{{1,{MAX_PIECE_BYTES}}}"), behavior="isolated"),
        ]
    )


def _build_encoder(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A `tokenizers.Tokenizer` with no added tokens: special strings in text stay text."""
    from tokenizers import Tokenizer, decoders, models

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    return tok


def _iter_texts(texts_or_files: Iterable) -> Iterable[str]:
    for item in texts_or_files:
        if isinstance(item, Path):
            if not item.is_file():
                raise EmbBertError(f"{item}: corpus file not found (expected a UTF-8 text file)")
            with open(item, "rb") as f:
                for n, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8").rstrip("\n")
                    except UnicodeDecodeError as exc:
                        raise EmbBertError(f"{item}:{n}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1} "
                                           "of the line)") from None
                    if line:
                        yield line
        else:
            yield str(item)


def train_tokenizer(
    texts_or_files: Iterable[str] | Sequence[Path],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    out_dir: str | os.PathLike = "tokenizer",
) -> Path:
    """Train the byte-level BPE on texts (strings) or corpus files (`Path`s, one text a line).

    Writes tokenizer.json, vocab.json, merges.txt and tokenizer_config.json into `out_dir`
    (through a temporary folder, renamed at the end: never half-written). Returns `out_dir`.
    """
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    minimum = len(SPECIAL_TOKENS) + 256
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise EmbBertError(f"vocabulary size must be an integer >= {minimum} (5 specials + 256 bytes), got {vocab_size!r}")
    items = list(texts_or_files) if not isinstance(texts_or_files, (str, Path)) else [texts_or_files]
    for item in items:
        if isinstance(item, Path) and not item.is_file():
            raise EmbBertError(f"{item}: corpus file not found (expected a UTF-8 text file)")

    tok = Tokenizer(models.BPE())
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=False,
    )
    count = 0

    def counted():
        nonlocal count
        for text in _iter_texts(items):
            count += 1
            yield text

    tok.train_from_iterator(counted(), trainer)
    if count == 0:
        raise EmbBertError("tokenizer training corpus is empty (expected at least one non-empty line of text)")

    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for i, special in enumerate(SPECIAL_TOKENS):
        if vocab.get(special) != i:
            raise EmbBertError(f"tokenizer training: special token {special} did not get id {i}")
    encoder = _build_encoder(vocab, merges)

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    from embbert.core.files import public_mode

    public_mode(tmp)  # mkdtemp makes 0700: give the folder the user's umask (0755 under 022)
    try:
        encoder.save(str(tmp / TOKENIZER_FILE))
        ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        (tmp / VOCAB_FILE).write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
        (tmp / MERGES_FILE).write_text(
            MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
        )
        config = {
            "type": "byte_level_bpe",
            "vocab_size": len(vocab),
            "requested_vocab_size": vocab_size,
            "num_merges": len(merges),
            "max_piece_bytes": MAX_PIECE_BYTES,
            "normalization": NORMALIZATION,
            "pre_tokenization": PRE_TOKENIZATION,
            "special_tokens": {tok_: i for i, tok_ in enumerate(SPECIAL_TOKENS)},
            "lowercase": True,
            "strip_accents": True,
            "training_texts": count,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            if not out.is_dir():
                raise EmbBertError(f"{out}: exists and is not a directory (expected a tokenizer output folder)")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------
def _check_dir(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise EmbBertError(f"{path}: tokenizer directory not found (expected {', '.join(REQUIRED_FILES)})")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise EmbBertError(f"{path / name}: missing tokenizer file (expected {', '.join(REQUIRED_FILES)})")
    return path


def read_vocab_and_merges(directory: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Read vocab.json and merges.txt (GPT-2 format) of a tokenizer directory."""
    path = _check_dir(directory)
    try:
        vocab = json.loads((path / VOCAB_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbBertError(f"{path / VOCAB_FILE}: not valid JSON (expected a token -> id object): {exc}") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise EmbBertError(f"{path / VOCAB_FILE}: expected a JSON object mapping tokens to integer ids")
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate((path / MERGES_FILE).read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or parts[0] not in vocab or parts[1] not in vocab or parts[0] + parts[1] not in vocab:
            raise EmbBertError(f"{path / MERGES_FILE}:{lineno}: expected 'A B' with A, B and AB in the vocabulary")
        merges.append((parts[0], parts[1]))
    for i, special in enumerate(SPECIAL_TOKENS):
        if vocab.get(special) != i:
            raise EmbBertError(f"{path / VOCAB_FILE}: special token {special} must have id {i}")
    return vocab, merges


class BpeTokenizer:
    """The `tokenizers` implementation: `encode(text)` gives ids without special tokens."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = _check_dir(directory)
        self.vocab, self.merges = read_vocab_and_merges(self.directory)
        self._inverse = {i: t for t, i in self.vocab.items()}
        self._tok = _build_encoder(self.vocab, self.merges)
        try:
            self.config = json.loads((self.directory / CONFIG_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EmbBertError(f"{self.directory / CONFIG_FILE}: not valid JSON: {exc}") from None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise EmbBertError(f"tokenizer: expected a string to encode, got {type(text).__name__}")
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise EmbBertError(f"tokenizer: expected strings to encode, got {type(t).__name__}")
        return [list(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def id_to_token(self, i: int) -> str:
        try:
            return self._inverse[int(i)]
        except KeyError:
            raise EmbBertError(f"token id {i} is outside the vocabulary (0..{self.vocab_size - 1})") from None

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([i for i in ids if i >= len(SPECIAL_TOKENS)], skip_special_tokens=True)


def load_tokenizer(directory: str | os.PathLike) -> BpeTokenizer:
    return BpeTokenizer(directory)


# ---------------------------------------------------------------------------
# TensorFlow / keras-nlp side
# ---------------------------------------------------------------------------
def keras_nlp_tokenizer(directory: str | os.PathLike):
    """keras-nlp `BytePairTokenizer` with this tokenizer's vocab and merges.

    No unsplittable tokens (special strings in text are text), `sequence_length=None`
    (ragged output; packing is done by `embbert.datasets.pipeline`), always the
    TensorFlow path (`_allow_python_workflow=False`). Use it through `tf_tokenize`, which
    normalises, pre-tokenises exactly like `tokenizers` and lets this layer do the merges.
    """
    import keras_nlp

    vocab, merges = read_vocab_and_merges(directory)
    return keras_nlp.tokenizers.BytePairTokenizer(
        vocabulary=vocab,
        merges=[f"{a} {b}" for a, b in merges],
        sequence_length=None,
        add_prefix_space=False,
        unsplittable_tokens=[],
        dtype="int32",
        _allow_python_workflow=False,
    )


#: Unicode White_Space, the `\s` of the Oniguruma regex used by `tokenizers` (RE2's `\s` is ASCII only).
WHITESPACE_CLASS = r"\t\n\x{0b}\f\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
#: A split marker that cannot occur in normalised text (a combining mark: removed by the normaliser).
_MARK = "\u0300"
_MARK_RE = r"\x{300}"
#: The GPT-2 pattern without its look-ahead branch (that one is emulated by the marker).
TF_PIECE_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+"
    rf"| ?[^{WHITESPACE_CLASS}\p{{L}}\p{{N}}{_MARK_RE}]+|[{WHITESPACE_CLASS}]+"
)


def tf_normalize(texts):
    """NFD, drop combining marks (\\p{Mn}), lowercase: the normaliser of `tokenizers`, in TF ops.

    Capital sigma is lowered to U+03C3 first: `tf.strings.lower` would apply the
    final-sigma rule, `tokenizers` does not.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    texts = tf_text.normalize_utf8(texts, "NFD")
    texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
    texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
    return tf.strings.lower(texts, encoding="utf-8")


def tf_pre_tokenize(texts):
    """GPT-2 split of normalised texts, then pieces cut to <= 128 bytes: ragged [B, pieces] strings.

    `\\s+(?!\\S)` is emulated: in a whitespace run of length >= 2 followed by a
    non-space, a marker is put before the run's last character; the marker is a split
    delimiter that is dropped.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    ws = f"[{WHITESPACE_CLASS}]"
    marked = tf.strings.regex_replace(texts, f"({ws}+)({ws})([^{WHITESPACE_CLASS}])", "\\1" + _MARK + "\\2\\3")
    pieces = tf_text.regex_split(marked, f"{TF_PIECE_PATTERN}|{_MARK_RE}", TF_PIECE_PATTERN)
    # Cut pieces longer than MAX_PIECE_BYTES into byte chunks (as Split(".{1,128}") on byte-level chars).
    flat = pieces.flat_values
    lengths = tf.strings.length(flat, unit="BYTE")
    counts = tf.maximum((lengths + MAX_PIECE_BYTES - 1) // MAX_PIECE_BYTES, 1)
    starts = tf.ragged.range(counts) * MAX_PIECE_BYTES
    positions = starts.flat_values
    chunks = tf.strings.substr(
        tf.repeat(flat, counts), positions, tf.fill(tf.shape(positions), MAX_PIECE_BYTES), unit="BYTE"
    )
    chunked = tf.RaggedTensor.from_row_splits(chunks, starts.row_splits)
    return tf.RaggedTensor.from_row_splits(chunked.values, tf.gather(chunked.row_splits, pieces.row_splits))


def tf_tokenize(layer, texts):
    """Normalise, pre-tokenise and BPE-encode a 1-D string tensor: ragged int32 ids [B, tokens].

    The merges are done by the keras-nlp layer (its cache and graph BPE); its own
    pre-tokenisation is bypassed because RE2 has no look-ahead and an ASCII-only `\\s`.
    """
    import tensorflow as tf

    layer._maybe_initialized_tf()
    pieces = tf_pre_tokenize(tf_normalize(texts))
    flat = pieces.flat_values
    cached = layer.cache.lookup(flat)
    unseen = tf.equal(cached, "") & tf.not_equal(flat, "")

    def merge_unseen():
        layer._bpe_merge_and_update_cache_tf(tf.boolean_mask(flat, unseen))
        return layer.cache.lookup(flat)

    words = tf.cond(tf.reduce_any(unseen), merge_unseen, lambda: cached)
    tokens = tf.strings.split(words, sep=" ")
    ids = tf.cast(layer.token_to_id_map.lookup(tokens), tf.int32)
    return tf.RaggedTensor.from_row_splits(ids.flat_values, tf.gather(ids.row_splits, pieces.row_splits))


__all__ = [
    "PAD_ID", "UNK_ID", "CLS_ID", "MASK_ID", "SEP_ID", "SPECIAL_TOKENS", "MAX_PIECE_BYTES",
    "DEFAULT_VOCAB_SIZE", "train_tokenizer", "load_tokenizer", "BpeTokenizer",
    "keras_nlp_tokenizer", "tf_normalize", "tf_pre_tokenize", "tf_tokenize", "read_vocab_and_merges",
]
