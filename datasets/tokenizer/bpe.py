"""Byte-level BPE with the Hugging Face `tokenizers` library: training, the vocab/merges reader, encoding.

`read_vocab_and_merges` is the one reader of vocab.json and merges.txt: the Python encoder
(`BpeTokenizer`) and the C-table compiler (`ctables`) both build on it. Special strings in
text stay text: the encoder has no added tokens.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, trainers
from tokenizers.pre_tokenizers import ByteLevel

from embbert.core.errors import EmbBertError, UsageError
from embbert.core.files import check_output_folder, write_folder

from .spec import (
    CONFIG_FILE, DEFAULT_VOCAB_SIZE, MAX_PIECE_BYTES, MERGES_FILE, MERGES_HEADER, NORMALIZATION,
    NUM_SPECIAL_TOKENS, PRE_TOKENIZATION, REQUIRED_FILES, SPECIAL_TOKENS, TOKENIZER_FILE, VOCAB_FILE,
    build_normalizer, build_pre_tokenizer,
)


TMP_PREFIX = ".tokenizer-"


def is_tokenizer_folder(folder: Path) -> bool:
    """A folder `train_tokenizer` wrote: nothing but its four files, tokenizer_config.json of a byte-level BPE."""
    try:
        names = set(os.listdir(folder))
        config = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return names <= set(REQUIRED_FILES) and isinstance(config, dict) and config.get("type") == "byte_level_bpe"


def check_out_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """`out_dir` absent, empty or an earlier tokenizer, else one line and exit 2 (unless `force`)."""
    return check_output_folder(out_dir, is_tokenizer_folder, "embbert tokenizer train", force=force)


def _build_encoder(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A `tokenizers.Tokenizer` with no added tokens: special strings in text stay text."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False))
    tok.normalizer = build_normalizer()
    tok.pre_tokenizer = build_pre_tokenizer()
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
    force: bool = False,
) -> Path:
    """Train the byte-level BPE on texts (strings) or corpus files (`Path`s, one text a line).

    Writes tokenizer.json, vocab.json, merges.txt and tokenizer_config.json as the whole
    content of `out_dir` (built aside, swapped in with one rename: never half-written; an
    existing folder keeps its mode). `out_dir` must be new, empty or an earlier tokenizer
    (`is_tokenizer_folder`), unless `force`. Returns `out_dir`.
    """
    minimum = NUM_SPECIAL_TOKENS + 256
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise EmbBertError(f"vocabulary size must be an integer >= {minimum} ({NUM_SPECIAL_TOKENS} specials + "
                           f"256 bytes), got {vocab_size!r}")
    check_out_dir(out_dir, force)  # before the training takes its time
    items = list(texts_or_files) if not isinstance(texts_or_files, (str, Path)) else [texts_or_files]
    for item in items:
        if isinstance(item, Path) and not item.is_file():
            raise EmbBertError(f"{item}: corpus file not found (expected a UTF-8 text file)")

    tok = Tokenizer(models.BPE())
    tok.normalizer = build_normalizer()
    tok.pre_tokenizer = build_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=False,
    )
    count = with_text = 0

    def counted():
        nonlocal count, with_text
        for text in _iter_texts(items):
            count += 1
            with_text += bool(text.strip())
            yield text

    tok.train_from_iterator(counted(), trainer)
    if with_text == 0:
        what = "is empty" if count == 0 else f"has only blank lines ({count})"
        raise UsageError(f"tokenizer training corpus {what} (expected at least one line of text)")

    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for i, special in enumerate(SPECIAL_TOKENS):
        if vocab.get(special) != i:
            raise EmbBertError(f"tokenizer training: special token {special} did not get id {i}")
    encoder = _build_encoder(vocab, merges)

    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
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
    files = {  # tokenizer_config.json, the marker of a tokenizer folder, last
        TOKENIZER_FILE: encoder.to_str(pretty=True).encode("utf-8"),
        VOCAB_FILE: json.dumps(ordered, ensure_ascii=False).encode("utf-8"),
        MERGES_FILE: (MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode("utf-8"),
        CONFIG_FILE: (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    }
    check_out_dir(out_dir, force)  # again: the folder may have changed during training
    write_folder(out_dir, files, TMP_PREFIX)
    return Path(out_dir)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def _check_dir(directory: str | os.PathLike, required: Sequence[str] = REQUIRED_FILES) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise EmbBertError(f"{path}: tokenizer directory not found (expected {', '.join(required)})")
    for name in required:
        if not (path / name).is_file():
            raise EmbBertError(f"{path / name}: missing tokenizer file (expected {', '.join(required)})")
    return path


def read_vocab_and_merges(directory: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json and merges.txt (GPT-2 format) of a tokenizer directory, checked.

    Every merge `A B` has A, B and AB in the vocabulary; the special tokens have ids 0..4.
    Needs only these two files (the C-table compiler reads directories without a
    tokenizer_config.json).
    """
    path = _check_dir(directory, (VOCAB_FILE, MERGES_FILE))
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
        self.config = _read_json(self.directory / CONFIG_FILE)
        if not isinstance(self.config, dict) or self.config.get("type") != "byte_level_bpe" \
                or self.config.get("vocab_size") != len(self.vocab):
            raise EmbBertError(f"{self.directory / CONFIG_FILE}: expected the config of a byte-level BPE with "
                               f"\"type\": \"byte_level_bpe\" and \"vocab_size\": {len(self.vocab)} (that of "
                               f"{VOCAB_FILE}); write the folder again with `embbert tokenizer train`")
        model = _read_json(self.directory / TOKENIZER_FILE)
        model = model.get("model") if isinstance(model, dict) else None
        if not isinstance(model, dict) or model.get("type") != "BPE" or model.get("vocab") != self.vocab:
            raise EmbBertError(f"{self.directory / TOKENIZER_FILE}: not the BPE of {VOCAB_FILE} (another tokenizer's, "
                               "or damaged); write the folder again with `embbert tokenizer train`")

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
        return self._tok.decode([i for i in ids if i >= NUM_SPECIAL_TOKENS], skip_special_tokens=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise EmbBertError(f"{path}: not valid JSON ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def load_tokenizer(directory: str | os.PathLike) -> BpeTokenizer:
    return BpeTokenizer(directory)


def as_tokenizer(tokenizer) -> BpeTokenizer:
    """A `BpeTokenizer` as is, or the tokenizer of a directory."""
    if isinstance(tokenizer, BpeTokenizer):
        return tokenizer
    return load_tokenizer(tokenizer)


__all__ = ["train_tokenizer", "is_tokenizer_folder", "read_vocab_and_merges", "BpeTokenizer", "load_tokenizer", "as_tokenizer"]
