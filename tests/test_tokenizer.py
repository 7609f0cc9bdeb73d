"""Tokenizer training, encoding, packing and the tf.data pipeline (exactly `encode_texts`' arrays)."""
import json
import random

import numpy as np
import pytest

from embbert.cli import main
from embbert.datasets.loading import Split, load_task
from embbert.datasets.pipeline import encode_texts, make_dataset, pack, segment_ids_from_token_ids, truncate_pair
from embbert.datasets.synthetic import write_corpus, write_synthetic_task
from embbert.datasets.tokenizer import (
    CLS_ID, MAX_PIECE_BYTES, PAD_ID, SEP_ID, SPECIAL_TOKENS, load_tokenizer, pack_batch, train_tokenizer,
)
from embbert.core.errors import EmbBertError

WORDS = ("the quick brown fox jumps over lazy dog it's don't we're they've i'm you'll he'd café naïve résumé "
         "123 4567 hello!!! what?? ... -- état Ünïcödé 😀 🎉👍 straße ﬁ ßßßßßßßßßßßß xxxxxxxxxxxxxxxx 日本語 "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").split()

WHITESPACE = [chr(c) for c in (9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x2005, 0x2028, 0x202F, 0x3000)]

PARITY_TEXTS = [
    "", "Hello, World!", "  multiple   spaces  ", "new\nline\n\n tab\t\tx", "\r\n end", "trailing space ", " leading",
    "\t", "   ", "a  \n  b", "It's don't WE'RE they've I'm you'll he'd 'S", "mixed123abc ab12 'tis a'''s '' 's's",
    "digits 12345 3.14 1,000,000", "punct!!! ??? ...--- (a)[b]{c} #@%^&*", "Café NAÏVE résumé état Ü Ångström",
    "emoji 😀🎉 👍🏽 ❤️ x 👨‍👩‍👧", "a" * 100, "x" * 129, "x" * 300 + " tail", "supercalifragilisticexpialidocious" * 3,
    "é" * 100, "ß" * 70, " " + "ß" * 90, "x" * 127 + "ß" * 5, "日本語" * 20, "!" * 300, " " * 300 + "a", "1" * 200,
    "[SEP] [CLS] [PAD] [MASK] [UNK] text", "straße ﬁ İstanbul ΣΑΣ σας", "日本語 テキスト", "x\u00a0y\u2009z",
]
for _w in WHITESPACE:
    PARITY_TEXTS += [f"a{_w}b", f"a {_w}b", f"a{_w} b", f"a{_w}{_w}b", f"a{_w}", f"{_w}a", f"a{_w}!", f"a{_w}'s",
                     f"1{_w}{_w} 2", f"x {_w} {_w}  y"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15))) for _ in range(1500)]
    return train_tokenizer(corpus, vocab_size=380, out_dir=tmp_path_factory.mktemp("tok") / "bpe")


def test_training_outputs(tok_dir):
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tok_dir / name).is_file()
    tok = load_tokenizer(tok_dir)
    assert tok.vocab_size == 380 == json.loads((tok_dir / "tokenizer_config.json").read_text())["vocab_size"]
    assert [tok.id_to_token(i) for i in range(5)] == SPECIAL_TOKENS
    assert len(tok.merges) == 380 - 5 - 256  # specials + all 256 byte symbols + merges
    merges_lines = (tok_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges_lines[0].startswith("#version") and merges_lines[1] == " ".join(tok.merges[0])
    assert all(a + b in tok.vocab for a, b in tok.merges)
    # every byte is covered: no [UNK] for any text
    assert 1 not in tok.encode("\x00\x7f ÿ 𝔘𝔫𝔦 ☃ \u0301")


def test_normalisation_and_specials_are_text(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert tok.encode("CAFÉ Naïve") == tok.encode("cafe naive")
    assert tok.encode("") == []
    for special in SPECIAL_TOKENS:
        ids = tok.encode(f"x {special} y")
        assert not set(ids) & {0, 1, 2, 3, 4}
    assert tok.encode_batch(["a b", "Café"]) == [tok.encode("a b"), tok.encode("Café")]


def test_long_pieces_are_chunked(tok_dir):
    tok = load_tokenizer(tok_dir)
    ids = tok.encode("a" * (3 * MAX_PIECE_BYTES))
    # the corpus contains 32-a words, so merges exist; chunks never merge across 128 bytes
    pieces = [tok.id_to_token(i) for i in ids]
    assert "".join(pieces) == "a" * (3 * MAX_PIECE_BYTES)
    assert tok.encode("a" * (2 * MAX_PIECE_BYTES)) == tok.encode("a" * MAX_PIECE_BYTES) * 2


def _reference_pack(ids_a, ids_b, L):
    """The packing rule written as the loop of docs/tokenizer.md (independent of the vectorised packer)."""
    a = list(ids_a)
    if ids_b is None:
        tokens = [CLS_ID] + a[: L - 1]
        segments = [1] * len(tokens)
    else:
        b = list(ids_b)
        while len(a) + len(b) > L - 3:
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        tokens = [CLS_ID] + a + [SEP_ID] + b + [SEP_ID]
        segments = [1] * (1 + len(a)) + [2] * (len(b) + 2)
    return tokens + [PAD_ID] * (L - len(tokens)), segments + [0] * (L - len(segments))


@pytest.mark.parametrize("pair", [False, True])
def test_dataset_is_exactly_encode_texts_on_every_parity_text(tok_dir, pair):
    tok = load_tokenizer(tok_dir)
    texts_a = list(PARITY_TEXTS)
    texts_b = list(reversed(PARITY_TEXTS)) if pair else None
    split = Split(texts_a, texts_b, np.arange(len(texts_a), dtype=np.int64) % 3)
    for L in (3, 8, 40, 400):  # 3: the shortest pair length; 400: longer than every single text
        ref_t, ref_s = encode_texts(tok, texts_a, texts_b, L)
        assert ref_t.dtype == np.int32 and ref_s.dtype == np.int32 and ref_t.shape == (len(texts_a), L)
        ids_a = tok.encode_batch(texts_a)
        ids_b = tok.encode_batch(texts_b) if pair else [None] * len(ids_a)
        want = [_reference_pack(a, b, L) for a, b in zip(ids_a, ids_b)]
        assert ref_t.tolist() == [t for t, _ in want] and ref_s.tolist() == [s for _, s in want]
        xs = list(make_dataset(split, tok_dir, L, 16))
        assert all(x["token_ids"].dtype.name == "int32" and x["segment_ids"].dtype.name == "int32" for x, _ in xs)
        np.testing.assert_array_equal(np.concatenate([x["token_ids"].numpy() for x, _ in xs]), ref_t)
        np.testing.assert_array_equal(np.concatenate([x["segment_ids"].numpy() for x, _ in xs]), ref_s)
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in xs]), split.labels)
    assert any(len(e) > 0 for e in tok.encode_batch(texts_a))


def test_pack_batch_of_numpy_and_empty_rows():
    t, s = pack_batch([np.array([7, 8, 9], np.int32), [], [5]], None, 3)
    assert t.tolist() == [[CLS_ID, 7, 8], [CLS_ID, 0, 0], [CLS_ID, 5, 0]]
    assert s.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    t, s = pack_batch([], [], 5)
    assert t.shape == s.shape == (0, 5) and t.dtype == s.dtype == np.int32
    with pytest.raises(EmbBertError, match="2 first texts but 1 second"):
        pack_batch([[1], [2]], [[3]], 5)


def test_pack_single_and_pair():
    t, s = pack([10, 11, 12], None, 6)
    assert t.tolist() == [CLS_ID, 10, 11, 12, 0, 0] and s.tolist() == [1, 1, 1, 1, 0, 0]
    t, s = pack(list(range(10, 20)), None, 4)
    assert t.tolist() == [CLS_ID, 10, 11, 12] and s.tolist() == [1, 1, 1, 1]
    t, s = pack([10, 11], [20], 8)
    assert t.tolist() == [CLS_ID, 10, 11, SEP_ID, 20, SEP_ID, 0, 0]
    assert s.tolist() == [1, 1, 1, 2, 2, 2, 0, 0]
    # longest first, A on a tie: A=5, B=5, budget 7 -> A 3, B 4
    t, s = pack([10, 11, 12, 13, 14], [20, 21, 22, 23, 24], 10)
    assert t.tolist() == [CLS_ID, 10, 11, 12, SEP_ID, 20, 21, 22, 23, SEP_ID]
    t, _ = pack([10] * 9, [20, 21], 8)
    assert t.tolist() == [CLS_ID, 10, 10, 10, SEP_ID, 20, 21, SEP_ID]
    t, s = pack([], [], 5)
    assert t.tolist() == [CLS_ID, SEP_ID, SEP_ID, PAD_ID, PAD_ID] and s.tolist() == [1, 2, 2, 0, 0]
    with pytest.raises(EmbBertError):
        pack([1], [2], 2)


def test_truncate_closed_form_matches_loop():
    for la in range(0, 12):
        for lb in range(0, 12):
            for budget in range(0, 15):
                a, b = la, lb
                while a + b > budget:
                    if a >= b:
                        a -= 1
                    else:
                        b -= 1
                assert truncate_pair(la, lb, budget) == (a, b)


def test_segment_rule():
    t, s = pack([10, 11], [20, 21, 22], 10)
    assert segment_ids_from_token_ids(t).tolist() == s.tolist()
    batch = np.stack([pack([5, 6, 7], None, 6)[0], pack([5], [6], 6)[0]])
    assert segment_ids_from_token_ids(batch).tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 2, 2, 2, 0]]


@pytest.mark.parametrize("pair", [False, True])
def test_dataset_matches_encode_texts_and_is_deterministic(tok_dir, tmp_path, pair):
    data = load_task(str(write_synthetic_task(tmp_path / "t", n_train=60, n_test=10, pair=pair)))
    extra = PARITY_TEXTS[1:16] + PARITY_TEXTS[32:36]  # short, varied texts
    split = Split(data.train.texts_a[:40] + extra,
                  None if not pair else data.train.texts_b[:40] + extra[::-1],
                  np.arange(59, dtype=np.int64) % 2)
    ds = make_dataset(split, tok_dir, 16, 8)
    xs = list(ds)
    tokens = np.concatenate([x["token_ids"].numpy() for x, _ in xs])
    segments = np.concatenate([x["segment_ids"].numpy() for x, _ in xs])
    labels = np.concatenate([y.numpy() for _, y in xs])
    ref_t, ref_s = encode_texts(tok_dir, split.texts_a, split.texts_b, 16)
    assert tokens.dtype == np.int32 and tokens.shape == (59, 16)
    np.testing.assert_array_equal(tokens, ref_t)
    np.testing.assert_array_equal(segments, ref_s)
    np.testing.assert_array_equal(labels, split.labels)
    np.testing.assert_array_equal(segment_ids_from_token_ids(ref_t), ref_s)

    if pair:  # shuffling is the same code for pairs; keep the suite fast
        return

    def order(seed):
        d = make_dataset(split, tok_dir, 16, 8, shuffle=True, seed=seed, drop_remainder=True)
        return np.concatenate([x["token_ids"].numpy() for x, _ in d])

    first = order(3)
    assert first.shape == (56, 16)
    np.testing.assert_array_equal(first, order(3))
    assert not np.array_equal(first, order(4))


def test_cli_train_and_encode(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.txt", 200, seed=0)
    out = tmp_path / "tk"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--text", "Apple [SEP] river", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ids"] == load_tokenizer(out).encode("Apple [SEP] river") and SEP_ID not in result["ids"]
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--text", "a b", "--pair-text", "c",
                 "--max-length", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["token_ids"][0] == CLS_ID and result["segment_ids"].count(2) == 3
    # errors: one line, exit 2 (bad arguments), nothing written
    assert main(["tokenizer", "train", "--corpus", str(tmp_path / "none.txt"), "--out", str(tmp_path / "x")]) == 2
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "y")]) == 2
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path), "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("embbert: error:") == 3 and err.count("\n") == 3
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "tk"]
