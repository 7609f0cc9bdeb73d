"""Small generated tasks and corpora (for tests and quick end-to-end runs)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from embbert.core.errors import EmbBertError

from .tasks import TASK_FILE

FILLER = (
    "the a of and to in is it that was for on with as at by this from or an be are "
    "we they he she you one two some many very more most little big small new old "
    "day time year people way thing world life hand part place case week company"
).split()
CLASS_WORDS = (
    "apple banana cherry grape lemon mango", "river ocean lake stream bay harbor",
    "engine motor wheel piston gear brake", "violin guitar piano drum flute cello",
    "doctor nurse clinic fever tablet ward", "planet comet star orbit galaxy rocket",
    "soccer tennis hockey rugby cricket golf", "winter snow frost chill sleet blizzard",
)


def _class_words(num_labels: int) -> list[list[str]]:
    words = [c.split() for c in CLASS_WORDS]
    for extra in range(len(words), num_labels):  # more classes than word lists: invent keywords
        words.append([f"kw{extra}x{j}" for j in range(6)])
    return words[:num_labels]


def _sentence(rng: random.Random, keywords: list[str] | None, n_min=6, n_max=14) -> str:
    n = rng.randint(n_min, n_max)
    tokens = [rng.choice(FILLER) for _ in range(n)]
    if keywords:
        for _ in range(rng.randint(2, 3)):
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(keywords))
    text = " ".join(tokens)
    return text[0].upper() + text[1:] + rng.choice([".", "!", "?", "."])


def write_synthetic_task(
    directory: str | os.PathLike,
    *,
    num_labels: int = 2,
    n_train: int = 400,
    n_test: int = 100,
    pair: bool = False,
    seed: int = 0,
    name: str = "synthetic",
) -> Path:
    """Write a separable task directory (task.json, train.jsonl, test.jsonl); return its path.

    Single text: each class mixes its own keywords into shared filler words. Pair
    (`pair=True`, two classes at least): the label says which keyword family the second
    text shares with the first (label 0: same family, others: family shifted by label).
    """
    if num_labels < 2:
        raise EmbBertError(f"synthetic task: num_labels must be >= 2, got {num_labels}")
    if n_train < 2 or n_test < 1:
        raise EmbBertError("synthetic task: need n_train >= 2 and n_test >= 1")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    label_names = [f"class_{i}" for i in range(num_labels)]
    families = _class_words(max(num_labels, 2))

    def rows(n: int):
        for i in range(n):
            label = i % num_labels if i < num_labels else rng.randrange(num_labels)
            if pair:
                fam = rng.randrange(len(families))
                other = (fam + label) % len(families)
                yield {"sentence1": _sentence(rng, families[fam]), "sentence2": _sentence(rng, families[other]),
                       "label": label}
            else:
                yield {"text": _sentence(rng, families[label]), "label": label}

    for split, n in (("train", n_train), ("test", n_test)):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows(n):
                f.write(json.dumps(row) + "\n")
    spec = {
        "name": name,
        "text_columns": ["sentence1", "sentence2"] if pair else ["text"],
        "label_column": "label",
        "label_names": label_names,
        "metric": "accuracy",
        "splits": {"train": "train.jsonl", "test": "test.jsonl"},
    }
    (out / TASK_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return out


def write_corpus(path: str | os.PathLike, n_lines: int, seed: int = 0) -> Path:
    """A plain-text corpus (one paragraph a line) of filler and keyword sentences."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    families = _class_words(len(CLASS_WORDS))
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_lines):
            parts = [_sentence(rng, rng.choice(families) if rng.random() < 0.8 else None)
                     for _ in range(rng.randint(1, 3))]
            f.write(" ".join(parts) + "\n")
    return path


__all__ = ["write_synthetic_task", "write_corpus"]
