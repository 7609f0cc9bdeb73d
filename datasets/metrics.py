"""Task metrics (scikit-learn / SciPy). Values are raw: [0, 1] or [-1, 1]; `as_percent` scales."""
from __future__ import annotations

import numpy as np

from embbert.core.errors import EmbBertError

METRICS = ("accuracy", "matthews", "f1_weighted", "spearman")


def compute_metric(name: str, y_true, y_pred) -> float:
    """Metric `name` of predictions: class ids (or scores for spearman)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise EmbBertError(f"metric {name}: {y_true.shape[0] if y_true.ndim else 0} labels but "
                           f"predictions of shape {y_pred.shape}")
    if y_true.size == 0:
        raise EmbBertError(f"metric {name}: no examples")
    if name == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    if name == "matthews":
        return float(matthews_corrcoef(y_true, y_pred))
    if name == "f1_weighted":
        return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))
    if name == "spearman":
        if np.all(y_true == y_true.flat[0]) or np.all(y_pred == y_pred.flat[0]):
            return 0.0  # undefined for constant input
        return float(spearmanr(y_true, y_pred).statistic)
    raise EmbBertError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")


def as_percent(value: float) -> float:
    return 100.0 * float(value)


__all__ = ["METRICS", "compute_metric", "as_percent"]
