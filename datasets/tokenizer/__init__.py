"""The tokenizer contract, in one package: byte-level BPE (GPT-2 style) with lower-casing and accent stripping.

* `spec`: special tokens and ids ([PAD]=0 [UNK]=1 [CLS]=2 [MASK]=3 [SEP]=4), segment ids,
  file names, the piece length, the normalisation and pre-tokenisation rules and their
  `tokenizers` builders;
* `bpe`: training, `read_vocab_and_merges` (the one reader of vocab.json / merges.txt),
  `BpeTokenizer` (encoding with Hugging Face `tokenizers`), `load_tokenizer`;
* `packing`: the one packer (`[CLS] A` / `[CLS] A [SEP] B [SEP]`, longest-first truncation,
  segment ids), `encode_texts` (texts -> numpy arrays), the pretraining stream packer;
* `ctables`: the compiler of the tables of the on-device C tokenizer (micro_app/src).

Special tokens occupy ids 0..4 of the vocabulary, but the encoder never produces them
from text: "[SEP]" inside user text is ordinary text. `docs/tokenizer.md` has the exact
algorithm.
"""
from __future__ import annotations

from .bpe import BpeTokenizer, as_tokenizer, load_tokenizer, read_vocab_and_merges, train_tokenizer
from .ctables import (
    GENERATED_HEADER, NORM_RANGES, TokenizerTables, build_tokenizer_tables, char_classes, context_sensitive,
    normalisation_map, table_flash_bytes, tokenizer_sources,
)
from .packing import (
    check_length, encode_texts, pack, pack_batch, pack_sequences, packing_stats, segment_ids_from_token_ids,
    truncate_pair,
)
from .spec import (
    CLS_ID, CONFIG_FILE, DEFAULT_VOCAB_SIZE, MASK_ID, MAX_PIECE_BYTES, MERGES_FILE, MERGES_HEADER, NORMALIZATION,
    NUM_SPECIAL_TOKENS, PAD_ID, PRE_TOKENIZATION, REQUIRED_FILES, SEGMENT_A, SEGMENT_B, SEGMENT_PAD, SEP_ID,
    SPECIAL_TOKENS, TOKENIZER_FILE, UNK_ID, VOCAB_FILE, build_byte_level, build_normalizer, build_pre_tokenizer,
    bytes_to_unicode,
)

__all__ = [
    # spec
    "PAD_ID", "UNK_ID", "CLS_ID", "MASK_ID", "SEP_ID", "SPECIAL_TOKENS", "NUM_SPECIAL_TOKENS",
    "SEGMENT_PAD", "SEGMENT_A", "SEGMENT_B", "DEFAULT_VOCAB_SIZE", "MAX_PIECE_BYTES", "MERGES_HEADER",
    "TOKENIZER_FILE", "VOCAB_FILE", "MERGES_FILE", "CONFIG_FILE", "REQUIRED_FILES", "NORMALIZATION",
    "PRE_TOKENIZATION", "build_normalizer", "build_byte_level", "build_pre_tokenizer", "bytes_to_unicode",
    # bpe
    "train_tokenizer", "read_vocab_and_merges", "BpeTokenizer", "load_tokenizer", "as_tokenizer",
    # packing
    "check_length", "truncate_pair", "pack_batch", "pack", "segment_ids_from_token_ids", "encode_texts",
    "pack_sequences", "packing_stats",
    # ctables
    "TokenizerTables", "build_tokenizer_tables", "tokenizer_sources", "table_flash_bytes", "normalisation_map", "context_sensitive",
    "char_classes", "NORM_RANGES", "GENERATED_HEADER",
]
