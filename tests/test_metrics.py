import math

import pytest

from embbert.core.errors import EmbBertError
from embbert.datasets.metrics import METRICS, as_percent, compute_metric


def test_accuracy():
    assert compute_metric("accuracy", [0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(0.75)


def test_matthews_known_value():
    # tp=2 tn=1 fp=1 fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert compute_metric("matthews", [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)
    assert compute_metric("matthews", [0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_f1_weighted_known_value():
    # class 1: p=2/3 r=2/3 f=2/3 (support 3); class 0: p=1/2 r=1/2 f=1/2 (support 2)
    expected = (3 * (2 / 3) + 2 * 0.5) / 5
    assert compute_metric("f1_weighted", [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(expected)


def test_spearman():
    assert compute_metric("spearman", [0.1, 0.5, 2.0, 4.0], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert compute_metric("spearman", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert compute_metric("spearman", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert compute_metric("spearman", [1.0, 2.0], [5.0, 5.0]) == 0.0


def test_percent_and_errors():
    assert as_percent(0.5) == 50.0
    assert set(METRICS) == {"accuracy", "matthews", "f1_weighted", "spearman"}
    with pytest.raises(EmbBertError, match="unknown metric"):
        compute_metric("bleu", [1], [1])
    with pytest.raises(EmbBertError):
        compute_metric("accuracy", [1, 0], [1])
    assert not math.isnan(compute_metric("matthews", [1, 1], [1, 1]))
