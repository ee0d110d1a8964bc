"""Ranking scores of one binary target: AUROC, average precision and the F1-maximising threshold.

They equal scikit-learn's roc_auc_score, average_precision_score and the best point of
precision_recall_curve (ties in the scores included), computed from one sort. The caption-word probe
needs them for 50 words x (probe, control) x (test, leave-one-out) per layer, where scikit-learn's
per-call input checks cost more than the scores (docs/linear.md, Speed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Curve:
    """Counts at each distinct score, from the highest down: predicting "positive" for scores >=
    thresholds[k] gives true_positives[k] and false_positives[k]."""

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray


def _curve(truth: np.ndarray, scores: np.ndarray) -> _Curve:
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order].astype(bool)
    # Tied scores form one threshold: keep the last row of each tie group.
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    return _Curve(
        thresholds=sorted_scores[group_ends],
        true_positives=np.cumsum(sorted_truth)[group_ends],
        false_positives=np.cumsum(~sorted_truth)[group_ends],
    )


def auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of scores [n] for truth [n] bool (both values present); ties
    count half, so a constant score gives 0.5."""
    curve = _curve(truth, scores)
    tpr = np.r_[0, curve.true_positives] / curve.true_positives[-1]
    fpr = np.r_[0, curve.false_positives] / curve.false_positives[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sum over thresholds of recall gain x precision) of scores [n] for truth
    [n] bool with at least one positive."""
    curve = _curve(truth, scores)
    precision = curve.true_positives / (curve.true_positives + curve.false_positives)
    recall = curve.true_positives / curve.true_positives[-1]
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def best_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """Score threshold t maximising the F1 of "scores >= t" against truth [n] bool; the highest
    such t on ties; +inf (predict nothing) when truth has no positive."""
    n_positive = int(np.sum(truth))
    if n_positive == 0:
        return float("inf")
    curve = _curve(truth, scores)
    f1 = 2 * curve.true_positives / (curve.true_positives + curve.false_positives + n_positive)
    return float(curve.thresholds[int(np.argmax(f1))])


def f1_at(truth: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """F1 of "scores >= threshold" against truth [n] bool; 0 when there is nothing to match."""
    predicted = scores >= threshold
    true_positives = int(np.sum(predicted & truth))
    denominator = int(np.sum(predicted)) + int(np.sum(truth))
    return 2 * true_positives / denominator if denominator else 0.0
