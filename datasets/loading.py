"""Load a task's train / validation / test splits from a local data directory or the hub.

Local layout (that of `../shared/data`, see docs/data.md):
`<data-dir>/hub/<owner>/<name>[/<config>]/<split>.jsonl`, and for cyberbullying a CSV
(`tweet_text,cyberbullying_type`) under `<data-dir>/local/cyberbullying/`.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from embbert.core.errors import EmbBertError, UsageError

from .tasks import TaskSpec, get_task

ENV_DATA_DIR = "EMBBERT_DATA_DIR"
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1
CYBERBULLYING_FILE = "cyberbullying_tweets.csv"


def resolve_data_dir(arg: str | os.PathLike | None) -> Path | None:
    """The `--data-dir` flag, else $EMBBERT_DATA_DIR, else None (hub only).

    A directory that is named but does not exist is an error: never a silent fall-back to the hub.
    """
    if arg:
        path, origin = Path(arg), "data directory"
    elif os.environ.get(ENV_DATA_DIR):
        path, origin = Path(os.environ[ENV_DATA_DIR]), f"data directory (${ENV_DATA_DIR})"
    else:
        return None
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "not found"
        raise EmbBertError(f"{path}: {origin} {what} (expected a folder in hub layout: hub/<owner>/<name>/...)")
    return path


def data_dir_arg(arg: str | None) -> str | None:
    """`--data-dir` (or $EMBBERT_DATA_DIR) as an absolute path; a named folder that does not exist is an error."""
    if arg is not None and not str(arg).strip():
        raise UsageError("--data-dir: empty path")
    try:
        path = resolve_data_dir(arg)
    except EmbBertError as exc:
        raise UsageError(str(exc)) from None
    return str(path.resolve()) if path is not None else None




@dataclass
class Split:
    texts_a: list[str]
    texts_b: list[str] | None
    labels: np.ndarray  # int64 class ids, or float32 for regression

    def __len__(self) -> int:
        return len(self.texts_a)

    def subset(self, indices: Iterable[int]) -> "Split":
        idx = np.asarray(list(indices), dtype=np.int64)
        return Split(
            [self.texts_a[i] for i in idx],
            None if self.texts_b is None else [self.texts_b[i] for i in idx],
            self.labels[idx],
        )

    @staticmethod
    def concat(parts: list["Split"]) -> "Split":
        return Split(
            [t for p in parts for t in p.texts_a],
            None if parts[0].texts_b is None else [t for p in parts for t in p.texts_b],  # type: ignore[union-attr]
            np.concatenate([p.labels for p in parts]),
        )


@dataclass
class TaskData:
    spec: TaskSpec
    train: Split
    validation: Split
    test: Split


# ---------------------------------------------------------------------------
# rows -> Split
# ---------------------------------------------------------------------------
def _label_id(spec: TaskSpec, value: Any, where: str) -> int | float:
    if spec.regression:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise EmbBertError(f"{where}: label {value!r} in column {spec.label_column!r} is not a number (regression task)")
        return float(value)
    names = spec.label_names or ()
    if isinstance(value, str):
        if value in names:
            return names.index(value)
        if spec.family == "custom" and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise EmbBertError(
                f"{where}: unknown label {value!r} in column {spec.label_column!r}; expected one of {', '.join(names)}"
            )
    if spec.string_labels and spec.family != "custom":
        raise EmbBertError(
            f"{where}: unknown label {value!r} in column {spec.label_column!r}; expected one of {', '.join(names)}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise EmbBertError(f"{where}: label {value!r} in column {spec.label_column!r} is not a class id or name")
    if not 0 <= int(value) < len(names):
        raise EmbBertError(
            f"{where}: unknown label {value!r} in column {spec.label_column!r}; expected 0..{len(names) - 1} "
            f"({', '.join(names)})"
        )
    return int(value)


def rows_to_split(spec: TaskSpec, rows: Iterable, source: str, *, numbered: bool = False) -> Split:
    """Map rows (dicts with the task's columns) to a Split; `source` names the file in errors.

    With `numbered`, `rows` holds (line number, row) pairs, so errors name the file's line.
    """
    cols = spec.text_columns
    texts: list[list[str]] = [[] for _ in cols]
    labels: list[int | float] = []
    for n, row in (rows if numbered else enumerate(rows, 1)):
        where = f"{source}:{n}"
        if not isinstance(row, dict):
            raise EmbBertError(f"{where}: expected a JSON object with columns {', '.join(cols + (spec.label_column,))}")
        for i, col in enumerate(cols):
            if col not in row:
                raise EmbBertError(f"{where}: missing text column {col!r} (expected columns {', '.join(cols)})")
            value = row[col]
            if not isinstance(value, str):
                raise EmbBertError(f"{where}: column {col!r} is not a string")
            if not value.strip():
                raise EmbBertError(f"{where}: empty text in column {col!r}")
            texts[i].append(value)
        if spec.label_column not in row:
            raise EmbBertError(f"{where}: missing label column {spec.label_column!r}")
        labels.append(_label_id(spec, row[spec.label_column], where))
    if not labels:
        raise EmbBertError(f"{source}: no rows (expected at least one example)")
    dtype = np.float32 if spec.regression else np.int64
    return Split(texts[0], texts[1] if len(cols) == 2 else None, np.asarray(labels, dtype=dtype))


def read_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line."""
    if not path.is_file():
        raise EmbBertError(f"{path}: file not found (expected JSON Lines, one example a line)")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EmbBertError(f"{path}:{n}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise EmbBertError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def _utf8_lines(path: Path, f) -> Iterable[str]:
    for n, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EmbBertError(f"{path}:{n}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) for every CSV record (the line where the record ends)."""
    with open(path, "rb") as f:
        reader = csv.DictReader(_utf8_lines(path, f))
        try:
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise EmbBertError(f"{path}: missing column(s) {', '.join(missing)} (expected header {','.join(columns)})")
            return [(reader.line_num, row) for row in reader]
        except csv.Error as exc:
            raise EmbBertError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


# ---------------------------------------------------------------------------
# where the files are
# ---------------------------------------------------------------------------
def hub_dir(spec: TaskSpec, data_dir: Path) -> Path:
    """The local folder of a hub task: `<data-dir>/hub/<id>/<config>` or, if absent, `<data-dir>/hub/<id>`."""
    base = Path(data_dir) / "hub" / str(spec.hub_id)
    if spec.hub_config and (base / spec.hub_config).is_dir():
        return base / spec.hub_config
    if spec.hub_config and spec.family == "glue":
        return base / spec.hub_config
    return base


def _needed_splits(spec: TaskSpec) -> list[str]:
    names = list(spec.splits.train)
    for extra in (spec.splits.validation, spec.splits.test):
        if extra and extra not in names:
            names.append(extra)
    return names


def local_files(spec: TaskSpec, data_dir: Path | None) -> dict[str, Path]:
    """split name -> local file path (the files may not exist)."""
    if spec.family == "custom":
        return {split: Path(str(spec.directory)) / name for split, name in spec.files}
    if data_dir is None:
        return {}
    if spec.local_source == "csv":
        folder = Path(data_dir) / "local" / spec.name
        preferred = folder / CYBERBULLYING_FILE
        if preferred.is_file() or not folder.is_dir():
            return {"train": preferred}
        found = sorted(folder.glob("*.csv"))
        return {"train": found[0] if len(found) == 1 else preferred}
    folder = hub_dir(spec, data_dir)
    return {split: folder / f"{split}.jsonl" for split in _needed_splits(spec)}


def task_available_locally(spec: TaskSpec | str, data_dir: str | os.PathLike | None) -> bool:
    spec = get_task(spec)
    files = local_files(spec, Path(data_dir) if data_dir else None)
    return bool(files) and all(p.is_file() for p in files.values())


def _load_local(spec: TaskSpec, files: dict[str, Path]) -> dict[str, Split]:
    out: dict[str, Split] = {}
    for split, path in files.items():
        if not path.is_file():
            raise EmbBertError(f"{path}: file not found (expected the {split} split of task {spec.name})")
        if path.suffix == ".csv":
            rows = read_csv_rows(path, spec.text_columns + (spec.label_column,))
        else:
            rows = read_jsonl(path)
        out[split] = rows_to_split(spec, rows, str(path), numbered=True)
    return out


def _load_from_hub(spec: TaskSpec, data_dir: Path | None) -> dict[str, Split]:
    where = f"under {data_dir}" if data_dir else "(no --data-dir or $EMBBERT_DATA_DIR given)"
    if spec.hub_id is None:
        raise EmbBertError(
            f"task {spec.name} is not available locally {where}: expected a CSV "
            f"({','.join(spec.text_columns + (spec.label_column,))}) in <data-dir>/local/{spec.name}/"
        )
    try:
        import datasets as hf_datasets  # the Hugging Face library

        dd = hf_datasets.load_dataset(spec.hub_id, spec.hub_config)
    except Exception as exc:  # noqa: BLE001 - network, missing dataset, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EmbBertError(
            f"task {spec.name} is not available locally {where} and could not be loaded from the hub "
            f"({spec.hub_id}{'/' + spec.hub_config if spec.hub_config else ''}): {first}"
        ) from None
    out = {}
    for split in _needed_splits(spec):
        if split not in dd:
            raise EmbBertError(f"hub dataset {spec.hub_id}: no split {split!r} (has {', '.join(dd)})")
        out[split] = rows_to_split(spec, iter(dd[split]), f"{spec.hub_id}[{split}]")
    return out


def _first_row(path: Path, spec: TaskSpec) -> tuple[int, Any] | None:
    """(line number, row) of the first example of a local split file, or None when it has none."""
    if path.suffix == ".csv":
        with open(path, "rb") as f:
            reader = csv.DictReader(_utf8_lines(path, f))
            try:
                header = reader.fieldnames or []
                columns = spec.text_columns + (spec.label_column,)
                missing = [c for c in columns if c not in header]
                if missing:
                    raise EmbBertError(f"{path}: missing column(s) {', '.join(missing)} "
                                       f"(expected header {','.join(columns)})")
                return next(((reader.line_num, row) for row in reader), None)
            except csv.Error as exc:
                raise EmbBertError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    return next(iter(read_jsonl(path)), None)


def check_task_data(task: str | TaskSpec, data_dir: str | os.PathLike | None) -> None:
    """What can be checked of a task's local data before TensorFlow is imported (`UsageError`, exit 2):
    every split file is there, has at least one example, and its first example has the task's columns and
    a valid label. A registered task with a data directory (`--data-dir` or $EMBBERT_DATA_DIR) must be in it:
    the hub is used only when no data directory is given."""
    spec = get_task(task)
    data_dir = resolve_data_dir(data_dir)
    if spec.family != "custom" and data_dir is None:
        return  # from the hub
    files = local_files(spec, data_dir)
    for split, path in files.items():
        if not path.is_file():
            where = "" if spec.family == "custom" else (f" under the data directory {data_dir}; the hub is used only "
                                                        "without --data-dir and $EMBBERT_DATA_DIR")
            raise UsageError(f"{path}: file not found (expected the {split} split of task {spec.name}{where})")
        try:
            first = _first_row(path, spec)
            if first is None:
                raise EmbBertError(f"{path}: no rows (expected at least one example of the {split} split)")
            rows_to_split(spec, [first], str(path), numbered=True)
        except EmbBertError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # e.g. no read permission
            raise UsageError(f"{path}: cannot read the {split} split of task {spec.name} ({exc.strerror or exc}); "
                             f"give this user read permission (chmod u+r {path})") from None


def _holdout(split: Split, fraction: float, rng: np.random.Generator, what: str, spec: TaskSpec) -> tuple[Split, Split]:
    n = len(split)
    k = int(round(fraction * n))
    if n < 2:
        raise EmbBertError(f"task {spec.name}: {n} training example(s), too few to hold out a {what} split")
    k = min(max(k, 1), n - 1)
    perm = rng.permutation(n)
    return split.subset(np.sort(perm[k:])), split.subset(np.sort(perm[:k]))


def load_task(task: str | TaskSpec, data_dir: str | os.PathLike | None = None, seed: int = 0) -> TaskData:
    """Load a task: from the data directory (`data_dir`, else $EMBBERT_DATA_DIR) when there is one (never the hub
    then: a missing file is an error), else from the hub."""
    spec = get_task(task)
    data_dir = resolve_data_dir(data_dir)
    if spec.family == "custom" or (data_dir is not None and task_available_locally(spec, data_dir)):
        splits = _load_local(spec, local_files(spec, data_dir))
    else:
        if data_dir is not None:  # a data directory was given: never the hub
            check_task_data(spec, data_dir)  # names the missing file
        splits = _load_from_hub(spec, data_dir)

    rng = np.random.default_rng(seed)
    train = Split.concat([splits[s] for s in spec.splits.train])
    if spec.splits.test is None:
        train, test = _holdout(train, TEST_FRACTION, rng, "test", spec)
    else:
        test = splits[spec.splits.test]
    if spec.splits.validation is None:
        train, validation = _holdout(train, VALIDATION_FRACTION, rng, "validation", spec)
    else:
        validation = splits[spec.splits.validation]
    return TaskData(spec=spec, train=train, validation=validation, test=test)


def count_lines(path: Path) -> int:
    """Rows of a local split file (JSONL lines, or CSV records without the header)."""
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


__all__ = [
    "ENV_DATA_DIR", "Split", "TaskData", "resolve_data_dir", "load_task", "task_available_locally", "check_task_data",
    "local_files", "hub_dir", "rows_to_split", "count_lines",
]


def train_texts(task: str, data_dir: str | os.PathLike | None, limit: int | None) -> int | None:
    """The number of training texts a run of `task` will have (metrics.json's train_examples), counted before
    TensorFlow: the rows of the local train split(s) less `load_task`'s seeded test and validation hold-outs,
    capped by `limit` (--max-train-examples); `limit` (None: unknown) when the task comes from the hub."""
    spec = get_task(task)
    d = resolve_data_dir(data_dir)
    if spec.family != "custom" and not (d is not None and task_available_locally(spec, d)):
        return limit
    files = local_files(spec, d)
    try:
        n = sum(count_lines(files[s]) for s in spec.splits.train)
    except (OSError, KeyError):  # a missing split: check_task_data names it
        return limit
    for fraction, split in ((TEST_FRACTION, spec.splits.test), (VALIDATION_FRACTION, spec.splits.validation)):
        if split is None and n >= 2:
            n -= min(max(int(round(fraction * n)), 1), n - 1)
    return min(n, limit) if limit else n
