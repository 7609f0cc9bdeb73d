"""Loaders against small files in the hub layout (every TinyNLP and GLUE schema), errors, CLI."""
import json

import numpy as np
import pytest

from embbert.cli import main
from embbert.core.errors import EmbBertError
from embbert.datasets.loading import load_task, resolve_data_dir, task_available_locally
from embbert.datasets.synthetic import write_corpus, write_synthetic_task
from embbert.datasets.tasks import GLUE, TASKS, TINYNLP, get_task

N = 20


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _label(spec, i):
    if spec.regression:
        return round((i % 11) * 0.5, 1)
    if spec.string_labels:
        return spec.label_names[i % spec.num_labels]
    return i % spec.num_labels


def _row(spec, i, split):
    row = {col: f"{split} {col} example number {i}" for col in spec.text_columns}
    row[spec.label_column] = _label(spec, i)
    if spec.name == "limit":
        row.update(id=i, motion_entities=[])
    if spec.family == "glue":
        row["idx"] = i
    if spec.name == "nlu":
        row["label"] = i % 68  # the intent id, not the label we use
    return row


def make_data_dir(root):
    for name, spec in TASKS.items():
        if spec.local_source == "csv":
            folder = root / "local" / name
            folder.mkdir(parents=True)
            lines = ["tweet_text,cyberbullying_type"] + [
                f'"tweet, number {i}",{_label(spec, i)}' for i in range(N)
            ]
            (folder / "cyberbullying_tweets.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            continue
        folder = root / "hub" / spec.hub_id
        if spec.family == "glue":
            folder = folder / spec.hub_config  # emotion: no config folder, as in shared/data
        splits = set(spec.splits.train) | {s for s in (spec.splits.validation, spec.splits.test) if s}
        for split in splits:
            _write(folder / f"{split}.jsonl", [_row(spec, i, split) for i in range(N)])
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_registry():
    assert TINYNLP == ("imdb", "ag_news", "cyberbullying", "limit", "emotion", "nlu", "snips")
    assert set(GLUE) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli-m", "mnli-mm", "qnli", "rte", "wnli"}
    assert get_task("nlu").num_labels == 18 and get_task("snips").num_labels == 7
    assert get_task("cyberbullying").num_labels == 6 and get_task("emotion").num_labels == 6
    assert get_task("stsb").num_labels == 1 and get_task("stsb").metric == "spearman"
    assert get_task("cola").metric == "matthews" and get_task("mrpc").metric == "f1_weighted"
    assert get_task("qqp").text_columns == ("question1", "question2")
    assert get_task("mnli-mm").splits.test == "validation_mismatched"
    assert get_task("emotion").splits.train == ("train", "validation")
    assert get_task("limit").label_names == ("no", "yes")
    with pytest.raises(EmbBertError, match="unknown task 'nope'.*imdb"):
        get_task("nope")


@pytest.mark.parametrize("name", list(TASKS))
def test_load_every_schema(data_dir, name):
    spec = get_task(name)
    assert task_available_locally(spec, data_dir)
    data = load_task(name, data_dir, seed=1)
    n_train = N * len(spec.splits.train)
    if spec.splits.test is None:  # seeded 90/10, then 10 % validation
        assert len(data.test) == 2
        assert len(data.train) + len(data.validation) == n_train - 2
    else:
        assert len(data.test) == N
        assert data.test.texts_a[0].startswith(spec.splits.test)
    assert len(data.validation) == round(0.1 * (n_train - (2 if spec.splits.test is None else 0)))
    assert len(data.train) + len(data.validation) + (2 if spec.splits.test is None else 0) == n_train
    assert (data.train.texts_b is None) == (len(spec.text_columns) == 1)
    if spec.regression:
        assert data.train.labels.dtype == np.float32
    else:
        assert data.train.labels.dtype == np.int64
        all_labels = np.concatenate([data.train.labels, data.validation.labels, data.test.labels])
        assert set(all_labels.tolist()) <= set(range(spec.num_labels))
    # string labels map through the fixed label order
    if spec.string_labels:
        row_text = data.train.texts_a[0]
        i = int(row_text.rsplit(" ", 1)[1])
        assert spec.label_names[data.train.labels[0]] == spec.label_names[i % spec.num_labels]


def test_split_is_seeded(data_dir):
    a, b, c = load_task("nlu", data_dir, seed=0), load_task("nlu", data_dir, seed=0), load_task("nlu", data_dir, seed=5)
    assert a.test.texts_a == b.test.texts_a and a.validation.texts_a == b.validation.texts_a
    assert a.test.texts_a != c.test.texts_a or a.validation.texts_a != c.validation.texts_a
    # no overlap between the three parts
    parts = [set(a.train.texts_a), set(a.validation.texts_a), set(a.test.texts_a)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBBERT_DATA_DIR", raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv("EMBBERT_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    (tmp_path / "x").mkdir()
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(EmbBertError, match="not found"):  # a named folder that is absent: no hub fall-back
        resolve_data_dir(tmp_path / "absent")


def _one_task(tmp_path, rows, name="limit"):
    spec = get_task(name)
    folder = tmp_path / "hub" / spec.hub_id
    for split in ("train", "test"):
        _write(folder / f"{split}.jsonl", rows if split == "train" else [_row(spec, i, "test") for i in range(5)])
    return tmp_path


@pytest.mark.parametrize("bad,match", [
    ({"sentence": "ok", "motion": "maybe"}, "unknown label 'maybe'.*no, yes"),
    ({"sentence": "ok"}, "missing label column 'motion'"),
    ({"text": "ok", "motion": "yes"}, "missing text column 'sentence'"),
    ({"sentence": "   ", "motion": "yes"}, "empty text in column 'sentence'"),
])
def test_bad_rows(tmp_path, bad, match):
    rows = [_row(get_task("limit"), i, "train") for i in range(5)] + [bad]
    _one_task(tmp_path, rows)
    with pytest.raises(EmbBertError, match=match) as info:
        load_task("limit", tmp_path)
    assert "train.jsonl:6" in str(info.value) and "\n" not in str(info.value)


def test_bad_int_label_and_json(tmp_path):
    _write(tmp_path / "hub/stanfordnlp/imdb/train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": -1}])
    _write(tmp_path / "hub/stanfordnlp/imdb/test.jsonl", [{"text": "a", "label": 0}])
    with pytest.raises(EmbBertError, match="train.jsonl:2: unknown label -1"):
        load_task("imdb", tmp_path)
    (tmp_path / "hub/stanfordnlp/imdb/train.jsonl").write_text('{"text": "a", "label": 0}\n{oops\n')
    with pytest.raises(EmbBertError, match="train.jsonl:2: not valid JSON"):
        load_task("imdb", tmp_path)


def test_partial_local_copy_names_missing_file(tmp_path):
    _write(tmp_path / "hub/nyu-mll/glue/qnli/validation.jsonl",
           [{"question": "q", "sentence": "s", "label": 0, "idx": 0}])
    with pytest.raises(EmbBertError, match=r"qnli[/\\]train.jsonl: file not found"):
        load_task("qnli", tmp_path)


def test_hub_fallback_error_is_one_line(tmp_path, monkeypatch):
    import datasets as hf_datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(hf_datasets, "load_dataset", offline)
    monkeypatch.delenv("EMBBERT_DATA_DIR", raising=False)
    with pytest.raises(EmbBertError, match="not available locally .* could not be loaded from the hub") as info:
        load_task("ag_news", None)
    assert "\n" not in str(info.value)
    with pytest.raises(EmbBertError, match="expected a CSV"):
        load_task("cyberbullying", None)


def test_data_dir_without_the_task_never_tries_the_hub(tmp_path, monkeypatch):
    import datasets as hf_datasets

    def hub(*args, **kwargs):
        raise AssertionError("the hub was tried")

    monkeypatch.setattr(hf_datasets, "load_dataset", hub)
    with pytest.raises(EmbBertError, match=r"ag_news[/\\]train.jsonl: file not found .*hub is used only without"):
        load_task("ag_news", tmp_path)
    with pytest.raises(EmbBertError, match="cyberbullying_tweets.csv: file not found"):
        load_task("cyberbullying", tmp_path)


def test_cyberbullying_csv_missing_column(tmp_path):
    folder = tmp_path / "local/cyberbullying"
    folder.mkdir(parents=True)
    (folder / "cyberbullying_tweets.csv").write_text("text,cyberbullying_type\nhello,age\n")
    with pytest.raises(EmbBertError, match="missing column.*tweet_text"):
        load_task("cyberbullying", tmp_path)


def test_custom_task_dir(tmp_path):
    d = write_synthetic_task(tmp_path / "syn", num_labels=3, n_train=50, n_test=10, seed=3)
    spec = get_task(str(d))
    assert spec.family == "custom" and spec.num_labels == 3
    data = load_task(str(d))
    assert len(data.train) == 45 and len(data.validation) == 5 and len(data.test) == 10
    assert set(data.train.labels.tolist()) == {0, 1, 2}
    pair = load_task(str(write_synthetic_task(tmp_path / "pair", pair=True, n_train=20, n_test=4)))
    assert pair.train.texts_b is not None and len(pair.test.texts_b) == 4
    # label names as strings, explicit validation file
    d2 = tmp_path / "named"
    d2.mkdir()
    (d2 / "task.json").write_text(json.dumps({
        "name": "named", "text_columns": ["text"], "label_column": "label", "label_names": ["neg", "pos"],
        "metric": "accuracy", "splits": {"train": "tr.jsonl", "validation": "va.jsonl", "test": "te.jsonl"}}))
    for f in ("tr", "va", "te"):
        _write(d2 / f"{f}.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": 0}])
    named = load_task(str(d2))
    assert named.train.labels.tolist() == [1, 0] and len(named.validation) == 2
    (d2 / "task.json").write_text(json.dumps({"name": "x", "text_columns": ["text"]}))
    with pytest.raises(EmbBertError, match="task.json: expected key 'label_column'"):
        get_task(str(d2))


def test_synthetic_corpus(tmp_path):
    p = write_corpus(tmp_path / "c.txt", 30, seed=1)
    lines = p.read_text().splitlines()
    assert len(lines) == 30 and all(lines)
    assert write_corpus(tmp_path / "d.txt", 30, seed=1).read_text() == p.read_text()


def test_cli_data_list(data_dir, capsys, tmp_path):
    assert main(["data", "list", "--data-dir", str(data_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by = {r["task"]: r for r in out["tasks"]}
    assert set(by) == set(TASKS) and all(r["available"] for r in by.values())
    assert by["emotion"]["sizes"] == {"train": N, "validation": N, "test": N}
    assert by["cyberbullying"]["sizes"] == {"train": N} and by["nlu"]["num_labels"] == 18
    (tmp_path / "hub").mkdir()  # a data directory (hub layout) without any task
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "imdb" in text and "no" in text
    assert main(["data", "list", "--data-dir", str(tmp_path / "missing")]) == 2  # a bad argument
    err = capsys.readouterr().err
    assert err.startswith("embbert: error:") and err.count("\n") == 1
