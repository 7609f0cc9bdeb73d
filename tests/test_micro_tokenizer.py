"""On-device tokenizer (micro_app/src, C99) against the Python tokenizer: ids, packing, safety."""
from __future__ import annotations

import importlib.util
import random
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("micro_helpers", HERE.parent / "micro_app" / "tests" / "helpers.py")
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

L = 32
CAP = 4096
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from embbert.datasets.tokenizer import build_tokenizer_tables, tokenizer_sources

    root = tmp_path_factory.mktemp("micro_tok")
    tok_dir = h.train_tokenizer(root / "tokenizer")
    tables = build_tokenizer_tables(tok_dir)
    gen = root / "generated"
    gen.mkdir()
    hdr, src = tokenizer_sources(tables, "test")
    (gen / "embbert_tokenizer_tables.h").write_text(hdr)
    (gen / "embbert_tokenizer_tables.c").write_text(src)
    if not h.have("gcc"):
        pytest.skip("gcc is not installed")
    exe = h.cc("gcc", [h.SRC / "embbert_tokenizer.c", gen / "embbert_tokenizer_tables.c", h.TESTS / "tokenize_main.c"],
               root / "tokmain", [h.SRC, gen], STRICT[:-1] + ["-O1", "-g", "-fsanitize=address,undefined",
                                                              "-fno-sanitize-recover=all"])
    return {"root": root, "tok_dir": tok_dir, "tables": tables, "gen": gen, "exe": exe,
            "ref": h.Reference(tok_dir), "unsupported": set(tables.unsupported)}


def run_c(exe, lines, L=L, cap=CAP):
    res = subprocess.run([str(exe), str(L), str(cap)], input="".join(lines).encode(), capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    return res.stdout.decode().splitlines()


POOLS = {
    "ascii": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "digits": list("0123456789"),
    "punct": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\x0b", "\x85"],
    "accents": list("àáâãäåçèéêëìíîïñòóôõöùúûüýÿÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝßæøœŒÆØłŁđĐħıİĳǅǈǋ"),
    "greek_cyr": list("ΑΒΓΔΣσςάέΆΈЖжЁёЙйПривет"),
    "marks": ["e\u0301", "a\u0308", "\u0301", "o\u0302\u0323", "n\u0303"],
    "emoji": ["😀", "👍🏽", "🇮🇹", "❤️", "👨‍👩‍👧"],
    "cjk": list("漢字かなカナ한국어"),
    "contractions": ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'RE", "'x"],
    "specials": ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"],
    "other": ["ẞ", "Ω", "K", "Å", "ﬁ", "①", "Ⅻ", "ｈｅｌｌｏ", "𝐀", "\u0000", "\x01", "\ufffd", "\u200b", "\u2028"],
}
WORDS = h.WORDS + ["The", "MOVIE", "Café", "NAÏVE", "Über", "don't", "I'M", "rock'n'roll"]
#: characters outside the supported normalisation (passed through unchanged by the C code)
BEYOND = ["Աբգ", "Ⴀ", "𐐀", "豈", "Ᏸ", "Ⰰ", "ǅ"]
INVALID = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x9f", b"\xf0\x9f\x98", b"\x80\x80", b"\xe2\x82",
           b"\xc0\xaf", b"\xf5\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xfe"]


def make_texts(n: int, seed: int = 1234) -> list[bytes]:
    rng = random.Random(seed)
    keys = list(POOLS)
    out = []
    for i in range(n):
        parts = []
        if i % 50 == 0:  # very long: long letter runs, long space runs, many words
            for _ in range(rng.randint(50, 400)):
                r = rng.random()
                if r < 0.1:
                    parts.append(rng.choice("ab\u00e9") * rng.randint(100, 400))
                elif r < 0.2:
                    parts.append(rng.choice([" ", "\t", "\u3000"]) * rng.randint(100, 300))
                else:
                    parts.append(rng.choice(WORDS) + rng.choice([" ", ", ", ". "]))
            out.append("".join(parts).encode())
            continue
        for _ in range(rng.randint(0, 25)):
            r = rng.random()
            if r < 0.45:
                w = rng.choice(WORDS)
                parts.append(w.upper() if rng.random() < 0.1 else w)
                parts.append(rng.choice([" ", " ", " ", "", ", ", "  "]))
            else:
                parts.append(rng.choice(POOLS[rng.choice(keys)]))
        if rng.random() < 0.05:
            parts.insert(rng.randint(0, len(parts)), rng.choice(BEYOND))
        data = "".join(parts).encode("utf-8")
        if rng.random() < 0.15:  # invalid UTF-8 spliced in at random byte positions
            for _ in range(rng.randint(1, 3)):
                pos = rng.randint(0, len(data))
                data = data[:pos] + rng.choice(INVALID) + data[pos:]
        if rng.random() < 0.03:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
        out.append(data)
    return out


def supported(text: str, unsupported: set[int]) -> bool:
    return not any(ord(ch) in unsupported for ch in text)


def test_tokenizer_compiles_strict_c99(built, tmp_path):
    for compiler in ("gcc", "clang"):
        if not h.have(compiler):
            continue
        obj = tmp_path / f"tok_{compiler}.o"
        res = subprocess.run([compiler, *STRICT, "-O2", "-c", f"-I{h.SRC}", f"-I{built['gen']}",
                              str(h.SRC / "embbert_tokenizer.c"), "-o", str(obj)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        res = subprocess.run([compiler, *STRICT, "-O2", "-c", f"-I{built['gen']}",
                              str(built["gen"] / "embbert_tokenizer_tables.c"), "-o", str(obj)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_parity_10000_texts(built):
    texts = make_texts(10000)
    lines = [f"T {t.hex()}\n" for t in texts]
    got = run_c(built["exe"], lines)
    assert len(got) == len(texts)
    ref = built["ref"]
    n_sup = ok_sup = n_uns = ok_uns = 0
    failures = []
    for raw, line in zip(texts, got):
        text = raw.decode("utf-8", "replace")
        want = ref.encode(text)[:CAP]
        ids = [int(x) for x in line.split()]
        assert all(0 <= i < built["tables"].vocab_size for i in ids)
        assert not any(i < 5 for i in ids), "special ids from user text"
        if supported(text, built["unsupported"]):
            n_sup += 1
            ok_sup += ids == want
            if ids != want and len(failures) < 5:
                failures.append((text[:200], ids[:40], want[:40]))
        else:
            n_uns += 1
            ok_uns += ids == want
    print(f"\nparity: supported {ok_sup}/{n_sup} (100 % required); "
          f"outside the supported normalisation {ok_uns}/{n_uns} = {100.0 * ok_uns / max(n_uns, 1):.1f} %")
    assert n_sup >= 8000
    assert ok_sup == n_sup, failures


def test_packing_single_and_pair(built):
    try:
        from embbert.datasets.tokenizer import pack as project_pack  # type: ignore
    except Exception:
        project_pack = None
    texts = make_texts(1200, seed=99)
    ref = built["ref"]
    lines, want = [], []
    for i in range(0, len(texts) - 1, 2):
        a, b = texts[i], texts[i + 1]
        ia, ib = ref.encode(a.decode("utf-8", "replace")), ref.encode(b.decode("utf-8", "replace"))
        if not (supported(a.decode("utf-8", "replace"), built["unsupported"])
                and supported(b.decode("utf-8", "replace"), built["unsupported"])):
            continue
        for line, pair in ((f"S {a.hex()}\n", None), (f"P {a.hex()} {b.hex()}\n", ib)):
            lines.append(line)
            if project_pack is not None:  # the pipeline's own packing once it exists
                toks, seg = project_pack(ia, pair, L)
                want.append(([int(x) for x in toks], [int(x) for x in seg]))
            else:
                want.append(h.pack(ia, pair, L))
    got = run_c(built["exe"], lines)
    for line, (toks, seg) in zip(got, want):
        left, right = line.split("|")
        assert [int(x) for x in left.split()] == toks
        assert [int(x) for x in right.split()] == seg


@pytest.mark.parametrize("raw,text", [
    (b"\xf0\x9f\x98", "\ufffd"), (b"\xed\xa0\x80a", "\ufffd\ufffd\ufffda"), (b"\xc3\x28", "\ufffd("),
    (b"\xe2\x82\xacx\xff", "\u20acx\ufffd"), (b"", ""), (b"\x00\x00", "\x00\x00"),
])
def test_invalid_utf8_like_python_replace(built, raw, text):
    assert raw.decode("utf-8", "replace") == text
    got = run_c(built["exe"], [f"T {raw.hex()}\n"])
    assert [int(x) for x in got[0].split()] == built["ref"].encode(text)


def test_truncation_is_bounded_by_output(built):
    raw = ("word " * 200000).encode()  # 1 MB: stops after L-1 ids
    got = run_c(built["exe"], [f"S {raw.hex()}\n"], cap=8)
    toks = [int(x) for x in got[0].split("|")[0].split()]
    assert toks == h.pack(built["ref"].encode("word " * 100), None, L)[0]


def test_c_side_and_python_side_take_special_ids_from_one_place(tmp_path):
    """The C-table compiler and the Python encoder read vocab.json through one reader that checks the
    special ids of `tokenizer.spec`; the C sources and the generated settings use those same ids."""
    import json
    import re

    from embbert.core.errors import EmbBertError
    from embbert.datasets.tokenizer import bpe, ctables, spec

    ids = {"PAD": spec.PAD_ID, "UNK": spec.UNK_ID, "CLS": spec.CLS_ID, "MASK": spec.MASK_ID, "SEP": spec.SEP_ID}
    assert [spec.SPECIAL_TOKENS[i] for i in ids.values()] == [f"[{name}]" for name in ids]
    assert ctables.read_vocab_and_merges is bpe.read_vocab_and_merges  # the one reader
    c_header = (h.SRC / "embbert_tokenizer.h").read_text()
    tables = (h.MICRO_APP / "generated" / "embbert_tokenizer_tables.h").read_text()  # generated from spec
    settings = (h.MICRO_APP / "generated" / "model_settings.h").read_text()
    assert '#include "embbert_tokenizer_tables.h"' in c_header
    for name, i in ids.items():
        assert re.search(rf"#define EMBBERT_{name}_ID {i}\b", tables), name
        assert re.search(rf"kEmbBert{name.capitalize()}Id = {i},", settings), name
    assert re.search(rf"#define EMBBERT_TOK_CHUNK_BYTES {spec.MAX_PIECE_BYTES}\b", c_header)

    tok_dir = bpe.train_tokenizer(h.corpus()[:200], vocab_size=300, out_dir=tmp_path / "tok")
    tok = bpe.load_tokenizer(tok_dir)
    assert [tok.token_to_id(t) for t in spec.SPECIAL_TOKENS] == list(range(spec.NUM_SPECIAL_TOKENS))
    assert ctables.build_tokenizer_tables(tok_dir).byte_ids == [tok.token_to_id(c)
                                                               for c in spec.bytes_to_unicode().values()]
    vocab = json.loads((tok_dir / spec.VOCAB_FILE).read_text(encoding="utf-8"))
    vocab["[CLS]"], vocab["[SEP]"] = vocab["[SEP]"], vocab["[CLS]"]
    (tok_dir / spec.VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    for build in (bpe.load_tokenizer, ctables.build_tokenizer_tables):
        with pytest.raises(EmbBertError, match=r"special token \[CLS\] must have id 2"):
            build(tok_dir)
