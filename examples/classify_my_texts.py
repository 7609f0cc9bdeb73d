"""Fine-tune the shipped `tiny_en` EmbBERT on a small CSV of your own texts and get an Arduino library.

    python examples/classify_my_texts.py                      # the bundled examples/my_texts.csv
    python examples/classify_my_texts.py --csv my.csv --out runs/my_texts

The CSV has a header with the columns `text` and `label` (any label strings). Steps, all through the
Python API (docs/python_api.md): fine-tune in float, quantisation-aware training, full-int8
conversion, the check in the TFLite and TFLM interpreters, the arena report, and the export of an
Arduino library (any target of `embbert export` with --target). Writes into --out: `model_int8.tflite`,
`float/` and `qat/` (presets: `EmbBertClassifier.from_preset` loads them), `check.json`,
`arena_report.json` and the package folder (`EmbBERT/` for Arduino).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
            sys.exit(f"{path}: expected a header with the columns text and label, got {reader.fieldnames}")
        rows = [(r["text"], r["label"]) for r in reader if r["text"].strip()]
    if not rows:
        sys.exit(f"{path}: no rows")
    return [t for t, _ in rows], [lab for _, lab in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, default=HERE / "my_texts.csv", help="CSV with text,label columns")
    p.add_argument("--out", type=Path, default=Path("runs/my_texts"), help="output folder")
    p.add_argument("--preset", default="tiny_en", help="pretrained preset or directory (default tiny_en)")
    p.add_argument("--sequence-length", type=int, default=32, help="L: tokens per text (default 32)")
    p.add_argument("--epochs", type=int, default=10, help="float fine-tuning epochs (default 10)")
    p.add_argument("--qat-epochs", type=int, default=2, help="quantisation-aware epochs (default 2)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="held-out share of the CSV (default 0.25)")
    p.add_argument("--max-examples", type=int, default=None, help="use only the first N rows (quick runs)")
    p.add_argument("--target", default="arduino",
                   choices=("sources", "arduino", "platformio", "esp-idf", "cmake"), help="package to export")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import embbert
    from tf_keras.utils import set_random_seed

    t0 = time.time()
    texts, labels = read_csv(args.csv)
    if args.max_examples:
        texts, labels = texts[:args.max_examples], labels[:args.max_examples]
    names = sorted(set(labels))
    y = [names.index(lab) for lab in labels]
    order = list(range(len(texts)))
    random.Random(args.seed).shuffle(order)
    n_test = max(1, round(args.test_fraction * len(order)))
    test, train = order[:n_test], order[n_test:]
    train_x, train_y = [texts[i] for i in train], [y[i] for i in train]
    test_x, test_y = [texts[i] for i in test], [y[i] for i in test]
    print(f"{len(train_x)} training and {len(test_x)} test texts, labels {names}")

    set_random_seed(args.seed)
    clf = embbert.EmbBertClassifier.from_preset(args.preset, num_classes=len(names),
                                               sequence_length=args.sequence_length, label_names=names)
    clf.fit(train_x, train_y, epochs=args.epochs, batch_size=16, verbose=2)
    float_acc = clf.evaluate(test_x, test_y, verbose=0)[1]
    clf.save_to_preset(args.out / "float")

    qat = embbert.quantize_model(clf, calibration_data=train_x)
    if args.qat_epochs:
        qat.fit(train_x, train_y, epochs=args.qat_epochs, batch_size=16, verbose=2)
    qat_acc = qat.evaluate(test_x, test_y, verbose=0)[1]
    qat.save_to_preset(args.out / "qat")

    model = embbert.convert(qat, representative_data=train_x)
    model.save(args.out / "model_int8.tflite")
    report = embbert.check(model, test_x, test_y)
    arena = embbert.arena_report(model)
    folder = args.out / ("EmbBERT" if args.target == "arduino" else args.target)
    files = embbert.export(model, clf.preprocessor, target=args.target, out=folder, name=args.out.name)
    (args.out / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "arena_report.json").write_text(json.dumps(arena, indent=2) + "\n")

    m = report["models"]
    print(f"\ntest accuracy on {report['examples']} texts: float Keras {float_acc:.4f}, QAT Keras {qat_acc:.4f}, "
          f"int8 TFLite {m['int8_tflite']['metric']:.4f}, int8 TFLM {m['int8_tflm']['metric']:.4f}")
    print(f"TFLM vs TFLite: {100 * report['tflm_vs_tflite']['agreement']:.1f}% same class, largest logit "
          f"difference {report['tflm_vs_tflite']['max_logit_diff_lsb']} LSB")
    print(f"model {len(model):,} B + recommended arena {arena['recommended_arena_bytes']:,} B "
          f"(measured minimum {arena['min_arena_bytes']:,} B on the host)")
    for b in arena["boards"]:
        print(f"  {b['name']}: {'fits' if b['fits'] else 'does NOT fit'}")
    print(f"wrote {len(files)} files ({args.target}) to {folder}; {time.time() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
