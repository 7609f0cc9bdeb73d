"""`embbert run --init auto`: the shipped preset only from the training-set size where it was measured to help
(docs/experiments/small_data.md), counted before TensorFlow."""
from __future__ import annotations


def test_auto_starts_from_the_preset_only_from_its_threshold():
    from embbert.core.config import DEFAULTS
    from embbert.run import pretrained_choice

    least = DEFAULTS.pretrained_min_train_texts["tiny_en"]
    init, said = pretrained_choice("auto", "tiny", least - 1)
    assert init is None and said.startswith("training from scratch: tiny_en helps only from")
    init, said = pretrained_choice("auto", "tiny", least)
    assert init == "tiny_en" and "it helps from" in said
    assert pretrained_choice("auto", "tiny", None)[0] == "tiny_en"  # unknown before loading (hub): as measured
    assert pretrained_choice("tiny_en", "tiny", 10)[0] == "tiny_en"  # named: always
    assert pretrained_choice("auto", "nano", 10**6)[0] is None  # no preset for that size


def test_train_texts_counts_the_local_split_less_the_hold_outs(tmp_path):
    from embbert.datasets.loading import load_task, train_texts
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "task", num_labels=3, n_train=300, n_test=100, seed=0)
    n = train_texts(str(task), None, None)
    assert n == len(load_task(str(task)).train.labels)
    assert train_texts(str(task), None, 50) == 50
    assert train_texts("emotion", None, 123) == 123  # from the hub: not known before loading
