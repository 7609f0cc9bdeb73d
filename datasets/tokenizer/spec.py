"""The tokenizer contract: special tokens and ids, file names, normalisation and pre-tokenisation.

Everything else (training and encoding in `bpe`, packing in `packing`, the tables of the
on-device C tokenizer in `ctables`) takes these constants and builders from here;
`docs/tokenizer.md` is the prose version.
"""
from __future__ import annotations

from tokenizers import Regex, normalizers, pre_tokenizers

PAD_ID = 0
UNK_ID = 1
CLS_ID = 2
MASK_ID = 3
SEP_ID = 4
#: Special tokens, in id order: they occupy ids 0..4 of every vocabulary.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[MASK]", "[SEP]"]
#: Ids below this are special; text never encodes to them.
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)
#: Segment ids: padding, [CLS] and the first text, the first [SEP] onwards.
SEGMENT_PAD, SEGMENT_A, SEGMENT_B = 0, 1, 2

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


def build_normalizer():
    """The `tokenizers` normaliser of NORMALIZATION."""
    return normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])


def build_byte_level():
    """The GPT-2 regex split and byte-to-unicode mapping (first step of the pre-tokeniser)."""
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def build_pre_tokenizer():
    """The `tokenizers` pre-tokeniser of PRE_TOKENIZATION."""
    return pre_tokenizers.Sequence(
        [build_byte_level(), pre_tokenizers.Split(Regex(f".{{1,{MAX_PIECE_BYTES}}}"), behavior="isolated")]
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping = {}
    extra = 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


__all__ = [
    "SPECIAL_TOKENS", "PAD_ID", "UNK_ID", "CLS_ID", "MASK_ID", "SEP_ID", "NUM_SPECIAL_TOKENS",
    "SEGMENT_PAD", "SEGMENT_A", "SEGMENT_B", "DEFAULT_VOCAB_SIZE", "MAX_PIECE_BYTES", "MERGES_HEADER",
    "TOKENIZER_FILE", "VOCAB_FILE", "MERGES_FILE", "CONFIG_FILE", "REQUIRED_FILES", "NORMALIZATION",
    "PRE_TOKENIZATION", "build_normalizer", "build_byte_level", "build_pre_tokenizer", "bytes_to_unicode",
]
