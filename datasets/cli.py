"""`embbert data ...` and `embbert tokenizer ...` sub-commands (no TensorFlow at import)."""
from __future__ import annotations

import json
from pathlib import Path

from embbert.core import preflight
from embbert.core.args import positive_int as _positive_int
from embbert.core.config import PRESETS
from embbert.core.errors import EmbBertError, UsageError

from .loading import data_dir_arg
from .tasks import task_arg

#: The largest `tokenizer train --vocab-size`: the largest preset's vocabulary (the least is the specials + 256 bytes).
MAX_VOCAB_SIZE = max(p.vocab_size for p in PRESETS.values())


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="benchmark tasks and local datasets",
                                 description="Benchmark tasks (TinyNLP, GLUE) and their local data.")
    data_sub = data.add_subparsers(dest="data_command", metavar="<data command>")
    data_sub.required = True
    lst = data_sub.add_parser(
        "list", help="list every task, whether it is available locally, its split sizes and labels",
        description="List every task with local availability, rows per split and number of labels.",
    )
    lst.add_argument("--data-dir", help="local data folder (hub layout; default: $EMBBERT_DATA_DIR)")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=cmd_data_list)

    tok = subparsers.add_parser("tokenizer", help="train or use the byte-level BPE tokenizer",
                                description="Byte-level BPE tokenizer (see docs/tokenizer.md).")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="<tokenizer command>")
    tok_sub.required = True
    train = tok_sub.add_parser(
        "train", help="train a tokenizer on text files or a task's training split",
        description="Train the BPE tokenizer; writes tokenizer.json, vocab.json, merges.txt, tokenizer_config.json.",
    )
    src = train.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", nargs="+", metavar="FILE", help="UTF-8 text files, one text a line")
    src.add_argument("--task", help="a task name or task directory: train on its training texts")
    train.add_argument("--data-dir", help="local data folder for --task (default: $EMBBERT_DATA_DIR)")
    train.add_argument("--vocab-size", type=_positive_int, default=8192,
                       help=f"vocabulary size, at most {MAX_VOCAB_SIZE}, the largest preset's (default 8192)")
    train.add_argument("--out", required=True,
                       help="output folder: new, empty or an earlier tokenizer (replaced whole, atomically, "
                            "keeping its permissions)")
    train.add_argument("--force", action="store_true",
                       help="replace a non-empty --out folder that holds other files (its contents go)")
    train.set_defaults(func=cmd_tokenizer_train)

    enc = tok_sub.add_parser("encode", help="print the token ids of a text (or a packed text pair)",
                             description="Encode text with a trained tokenizer.")
    enc.add_argument("--tokenizer", required=True, help="tokenizer directory")
    enc.add_argument("--text", required=True, help="the text to encode")
    enc.add_argument("--pair-text", help="second text: pack as [CLS] A [SEP] B [SEP]")
    enc.add_argument("--max-length", type=_positive_int,
                     help="pack to this length ([CLS] A ... padded), with segment ids")
    enc.add_argument("--json", action="store_true", help="print JSON")
    enc.set_defaults(func=cmd_tokenizer_encode)


def cmd_data_list(args) -> int:
    from .loading import count_lines, local_files, resolve_data_dir, task_available_locally
    from .tasks import TASKS

    data_dir_arg(args.data_dir)  # a named folder that does not exist: one-line error, exit 2
    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is not None and not any((data_dir / layout).is_dir() for layout in ("hub", "local")):
        raise UsageError(f"{data_dir}: no hub/ (or local/) folder inside: not a data directory (expected "
                         "hub/<owner>/<name>/<split>.jsonl; docs/data.md)")
    rows = []
    for name, spec in TASKS.items():
        files = local_files(spec, data_dir)
        sizes = {split: count_lines(p) for split, p in files.items() if p.is_file()}
        rows.append({
            "task": name, "family": spec.family, "hub_id": spec.hub_id, "config": spec.hub_config,
            "available": task_available_locally(spec, data_dir) if data_dir else False,
            "sizes": sizes, "num_labels": spec.num_labels, "metric": spec.metric, "max_length": spec.max_length,
        })
    if args.json:
        print(json.dumps({"data_dir": str(data_dir) if data_dir else None, "tasks": rows}, indent=2))
        return 0
    print(f"data dir: {data_dir if data_dir else '(none: hub only)'}")
    print(f"{'task':<14} {'family':<8} {'local':<8} {'labels':>6}  {'metric':<12} {'L':>4}  sizes")
    for r in rows:
        local = "yes" if r["available"] else ("partial" if r["sizes"] else "no")
        sizes = ", ".join(f"{k} {v}" for k, v in r["sizes"].items()) or "-"
        print(f"{r['task']:<14} {r['family']:<8} {local:<8} {r['num_labels']:>6}  {r['metric']:<12} "
              f"{r['max_length']:>4}  {sizes}")
    return 0


def cmd_tokenizer_train(args) -> int:
    from .tokenizer import CONFIG_FILE, train_tokenizer
    from .tokenizer.bpe import check_out_dir
    from .tokenizer.spec import NUM_SPECIAL_TOKENS

    if args.vocab_size > MAX_VOCAB_SIZE:
        raise UsageError(f"--vocab-size {args.vocab_size}: more than {MAX_VOCAB_SIZE}, the largest preset's "
                         "vocabulary (no model could use the rest)")
    if args.vocab_size < NUM_SPECIAL_TOKENS + 256:
        raise UsageError(f"--vocab-size {args.vocab_size}: at least {NUM_SPECIAL_TOKENS + 256} ({NUM_SPECIAL_TOKENS} "
                         "special tokens + 256 bytes)")
    check_out_dir(args.out, args.force)  # ours, empty or --force: before the corpus is read

    if args.corpus:
        sources: list = [Path(p) for p in args.corpus]
        for p in sources:
            if not p.is_file():
                what = "not a file" if p.exists() else "corpus file not found"
                raise UsageError(f"{p}: --corpus: {what} (expected a UTF-8 text file)")
            preflight.readable(p, "--corpus")
    else:
        from .loading import load_task

        data = load_task(task_arg(args.task), data_dir_arg(args.data_dir))
        sources = list(data.train.texts_a) + list(data.train.texts_b or [])
    out = train_tokenizer(sources, vocab_size=args.vocab_size, out_dir=args.out, force=args.force).resolve()
    config = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    print(f"tokenizer written to {out} (vocabulary {config['vocab_size']}, {config['num_merges']} merges)")
    return 0


def _utf8_text(text: str, flag: str) -> str:
    """A text from the command line that must be valid UTF-8 (argv bytes that are not arrive as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"U+{ord(bad):04X}"
        raise UsageError(f"{flag}: not valid UTF-8 ({byte} at character {exc.start + 1}); give the text in UTF-8"
                         ) from None
    return text


def cmd_tokenizer_encode(args) -> int:
    from .tokenizer import load_tokenizer

    _utf8_text(args.text, "--text")
    if args.pair_text is not None:
        _utf8_text(args.pair_text, "--pair-text")
    if args.max_length is not None:
        least = 2 if args.pair_text is None else 5
        if args.max_length < least:
            what = ("[CLS] and one token" if args.pair_text is None
                    else "[CLS], two [SEP] and a token of each text")
            raise UsageError(f"--max-length {args.max_length}: at least {least} ({what}), or the text is dropped")
    try:
        tok = load_tokenizer(args.tokenizer)
    except EmbBertError as exc:  # the --tokenizer folder is missing, incomplete or corrupt
        raise UsageError(str(exc)) from None
    ids_a = tok.encode(args.text)
    ids_b = tok.encode(args.pair_text) if args.pair_text is not None else None
    result: dict = {"ids": ids_a}
    if ids_b is not None:
        result["pair_ids"] = ids_b
    if args.max_length or ids_b is not None:
        from .pipeline import pack

        length = args.max_length or (len(ids_a) + (len(ids_b) + 3 if ids_b is not None else 1))
        token_ids, segment_ids = pack(ids_a, ids_b, length)
        result["token_ids"] = token_ids.tolist()
        result["segment_ids"] = segment_ids.tolist()
    if args.json:
        result["tokens"] = [tok.id_to_token(i) for i in ids_a]
        print(json.dumps(result, ensure_ascii=False))
    elif "token_ids" in result:
        print(" ".join(map(str, result["token_ids"])))
        print(" ".join(map(str, result["segment_ids"])))
    else:
        print(" ".join(map(str, ids_a)))
    return 0
