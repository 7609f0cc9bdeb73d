"""Registry of the benchmark tasks (TinyNLP and GLUE) and of custom task directories.

Split mapping (`SplitMap`):
* `train`: hub splits concatenated for training (emotion: train + validation);
* `validation`: a hub split, or None = 10 % of the training rows, seeded;
* `test`: a hub split, or None = a seeded random 90/10 split of the training rows
  (nlu, cyberbullying); GLUE uses its validation split as the test split.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from embbert.core.config import DEFAULT_MAX_LENGTH, DEFAULTS
from embbert.core.errors import EmbBertError, UsageError

from .metrics import METRICS

TASK_FILE = "task.json"


@dataclass(frozen=True)
class SplitMap:
    train: tuple[str, ...]
    validation: str | None = None
    test: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    hub_id: str | None
    hub_config: str | None
    text_columns: tuple[str, ...]
    label_column: str
    label_names: tuple[str, ...] | None  # None: regression
    metric: str
    family: str  # "tinynlp" | "glue" | "custom"
    splits: SplitMap
    #: Labels stored as strings (mapped through label_names) rather than int ids.
    string_labels: bool = False
    #: For custom tasks: the directory holding task.json.
    directory: str | None = None
    #: For custom tasks: split name -> file name inside `directory`.
    files: tuple[tuple[str, str], ...] = ()
    #: Local source other than the hub layout ("csv": `<data-dir>/local/<name>/*.csv`).
    local_source: str | None = None
    #: The sequence length L a command uses for this task when none is given (`TASK_LENGTHS`).
    max_length: int = DEFAULT_MAX_LENGTH

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def regression(self) -> bool:
        return self.label_names is None

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2


def _t(name, hub_id, config, cols, label, names, metric, family, train=("train",), val=None, test="test", **kw):
    return TaskSpec(
        name=name, hub_id=hub_id, hub_config=config, text_columns=tuple(cols), label_column=label,
        label_names=None if names is None else tuple(names), metric=metric, family=family,
        splits=SplitMap(tuple(train), val, test), **kw,
    )


NLU_SCENARIOS = (
    "alarm", "audio", "calendar", "cooking", "datetime", "email", "general", "iot", "lists",
    "music", "news", "play", "qa", "recommendation", "social", "takeaway", "transport", "weather",
)
SNIPS_INTENTS = (
    "AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
    "SearchCreativeWork", "SearchScreeningEvent",
)
CYBERBULLYING_TYPES = ("age", "ethnicity", "gender", "not_cyberbullying", "other_cyberbullying", "religion")

_TINYNLP = [
    _t("imdb", "stanfordnlp/imdb", None, ["text"], "label", ["neg", "pos"], "accuracy", "tinynlp"),
    _t("ag_news", "fancyzhx/ag_news", None, ["text"], "label", ["World", "Sports", "Business", "Sci/Tech"],
       "accuracy", "tinynlp"),
    _t("cyberbullying", None, None, ["tweet_text"], "cyberbullying_type", CYBERBULLYING_TYPES, "accuracy",
       "tinynlp", test=None, string_labels=True, local_source="csv"),
    _t("limit", "IBM/limit", None, ["sentence"], "motion", ["no", "yes"], "accuracy", "tinynlp",
       string_labels=True),
    _t("emotion", "dair-ai/emotion", "split", ["text"], "label",
       ["sadness", "joy", "love", "anger", "fear", "surprise"], "accuracy", "tinynlp",
       train=("train", "validation")),
    _t("nlu", "xingkunliuxtracta/nlu_evaluation_data", None, ["text"], "scenario", NLU_SCENARIOS, "accuracy",
       "tinynlp", test=None, string_labels=True),
    _t("snips", "benayas/snips", None, ["text"], "category", SNIPS_INTENTS, "accuracy", "tinynlp",
       string_labels=True),
]

_G = "nyu-mll/glue"
_GLUE = [
    _t("cola", _G, "cola", ["sentence"], "label", ["unacceptable", "acceptable"], "matthews", "glue", test="validation"),
    _t("sst2", _G, "sst2", ["sentence"], "label", ["negative", "positive"], "accuracy", "glue", test="validation"),
    _t("mrpc", _G, "mrpc", ["sentence1", "sentence2"], "label", ["not_equivalent", "equivalent"], "f1_weighted",
       "glue", test="validation"),
    _t("stsb", _G, "stsb", ["sentence1", "sentence2"], "label", None, "spearman", "glue", test="validation"),
    _t("qqp", _G, "qqp", ["question1", "question2"], "label", ["not_duplicate", "duplicate"], "f1_weighted",
       "glue", test="validation"),
    _t("mnli-m", _G, "mnli", ["premise", "hypothesis"], "label", ["entailment", "neutral", "contradiction"],
       "accuracy", "glue", test="validation_matched"),
    _t("mnli-mm", _G, "mnli", ["premise", "hypothesis"], "label", ["entailment", "neutral", "contradiction"],
       "accuracy", "glue", test="validation_mismatched"),
    _t("qnli", _G, "qnli", ["question", "sentence"], "label", ["entailment", "not_entailment"], "accuracy",
       "glue", test="validation"),
    _t("rte", _G, "rte", ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"], "accuracy",
       "glue", test="validation"),
    _t("wnli", _G, "wnli", ["sentence1", "sentence2"], "label", ["not_entailment", "entailment"], "accuracy",
       "glue", test="validation"),
]

#: Default sequence length per task (`embbert.core.config.DEFAULTS`).
TASK_LENGTHS = DEFAULTS.task_lengths
TASKS: dict[str, TaskSpec] = {t.name: replace(t, max_length=TASK_LENGTHS.get(t.name, DEFAULT_MAX_LENGTH))
                              for t in _TINYNLP + _GLUE}
TINYNLP: tuple[str, ...] = tuple(t.name for t in _TINYNLP)
GLUE: tuple[str, ...] = tuple(t.name for t in _GLUE)
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli_matched": "mnli-m", "mnli_mismatched": "mnli-mm",
           "mnli": "mnli-m", "ag-news": "ag_news"}


def load_task_dir(directory: str | os.PathLike) -> TaskSpec:
    """A custom task: a directory with task.json (see docs/data.md)."""
    path = Path(directory)
    file = path / TASK_FILE
    if not file.is_file():
        raise EmbBertError(f"{file}: not found (a task directory needs a {TASK_FILE})")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbBertError(f"{file}: not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise EmbBertError(f"{file}: expected a JSON object")

    def need(key, kind, desc):
        if key not in d or not isinstance(d[key], kind):
            raise EmbBertError(f"{file}: expected key {key!r} with {desc}")
        return d[key]

    name = need("name", str, "a task name (string)")
    cols = need("text_columns", list, "a list of one or two column names")
    if len(cols) not in (1, 2) or not all(isinstance(c, str) and c for c in cols):
        raise EmbBertError(f"{file}: 'text_columns' must list one or two column names, got {cols!r}")
    label = need("label_column", str, "the label column name (string)")
    names = d.get("label_names")
    if names is not None:
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise EmbBertError(f"{file}: 'label_names' must be a list of at least two strings, or null for regression")
        if len(set(names)) != len(names):
            raise EmbBertError(f"{file}: 'label_names' has duplicates")
    metric = d.get("metric", "accuracy" if names is not None else "spearman")
    if metric not in METRICS:
        raise EmbBertError(f"{file}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    splits = need("splits", dict, "an object {\"train\": file, \"test\": file, \"validation\": file (optional)}")
    for key in ("train", "test"):
        if not isinstance(splits.get(key), str):
            raise EmbBertError(f"{file}: 'splits' needs a {key!r} file name")
    unknown = set(splits) - {"train", "validation", "test"}
    if unknown:
        raise EmbBertError(f"{file}: unknown split(s) {sorted(unknown)}; expected train, validation, test")
    if "validation" in splits and not isinstance(splits["validation"], str):
        raise EmbBertError(f"{file}: 'splits.validation' must be a file name")
    return TaskSpec(
        name=name, hub_id=None, hub_config=None, text_columns=tuple(cols), label_column=label,
        label_names=None if names is None else tuple(names), metric=metric, family="custom",
        splits=SplitMap(("train",), "validation" if "validation" in splits else None, "test"),
        directory=str(path.resolve()), files=tuple(sorted(splits.items())),
    )


def get_task(name_or_dir: str | os.PathLike | TaskSpec) -> TaskSpec:
    """A registered task by name, or a custom task directory (with task.json)."""
    if isinstance(name_or_dir, TaskSpec):
        return name_or_dir
    text = str(name_or_dir)
    key = ALIASES.get(text.lower(), text.lower())
    if key in TASKS:
        return TASKS[key]
    if Path(text).is_dir():
        return load_task_dir(text)
    raise EmbBertError(
        f"unknown task {text!r}; expected a task directory with {TASK_FILE} or one of: {', '.join(TASKS)}"
    )


__all__ = ["TaskSpec", "SplitMap", "TASKS", "TINYNLP", "GLUE", "get_task", "load_task_dir", "TASK_FILE", "TASK_LENGTHS",
           "task_arg", "max_length_for"]


def task_arg(name: str) -> str:
    """A registered task name, or a task directory (returned as an absolute path)."""
    try:
        spec = get_task(name)
    except EmbBertError as exc:
        raise UsageError(str(exc)) from None
    return str(Path(name).resolve()) if spec.family == "custom" else name


def max_length_for(task: str | os.PathLike | TaskSpec | None, given: int | None = None) -> int:
    """The one default rule for L: the value given, else the task's (`TASK_LENGTHS`), else DEFAULT_MAX_LENGTH."""
    if given is not None:
        return given
    return get_task(task).max_length if task is not None else DEFAULT_MAX_LENGTH
