"""Multi-label probe: which binary targets (e.g. caption words) a linear readout of a layer predicts.

Readout: ridge regression from the standardised features to the 0/1 target columns (a linear
probability model, as in scikit-learn's RidgeClassifier), one alpha shared by all columns and picked
by exact leave-one-out error on the training rows (`probe.linear.ridge`). One decomposition of the
training rows serves every word and every alpha, so 50 words cost about as much as one. Not one-vs-rest
logistic regression: it gave the same validation average precision at many times the cost (figures in
docs/linear.md, Caption words). The scores below only need a ranking, which ridge gives.

Rows are split at random into train / test (a multi-label target has no single class to stratify
by). The control permutes the rows of the target matrix, which keeps each word's base rate and the
words' co-occurrence but breaks their link to the images, and runs the same procedure on the same
split.

Per-word test scores: AUROC (chance 0.5), average precision (chance = the word's test base rate) and
F1 at the threshold that maximises F1 on the leave-one-out predictions of the training rows (compare
with `f1_baseline`, the F1 of calling every row positive, 2p / (1 + p)). A word with one value on
the training rows gets a constant prediction (AUROC 0.5). A score undefined on the test rows (one
value there) is NaN and left out of the macro means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from probe.errors import InputError
from probe.linear.base import (
    CONTROL_STREAM,
    ProbeResultBase,
    ProbeSettings,
    check_features,
    check_same_rows,
    one_blas_thread,
    rng_for,
)
from probe.linear.ranking import auroc, average_precision, best_f1_threshold, f1_at
from probe.linear.ridge import RidgeBasis, fit_ridge_loo, ridge_basis, ridge_split


@dataclass(frozen=True)
class WordScore:
    """Test scores of one target column. NaN where the test rows hold one value only."""

    word: str
    n_positive_test: int
    base_rate: float
    auroc: float
    average_precision: float
    f1: float
    f1_baseline: float


@dataclass(frozen=True)
class MultiLabelScores:
    """Macro means over the scored columns, and every column's scores, for one run.

    cv_average_precision: mean over words of the average precision of the leave-one-out predictions
    on the training rows; it ranks layers in `probe.linear.sweep.probe_layers`.
    """

    macro_auroc: float
    macro_average_precision: float
    macro_base_rate: float
    macro_f1: float
    macro_f1_baseline: float
    chosen_alpha: float
    cv_average_precision: float
    n_words_scored: int
    words: list[WordScore]


@dataclass(frozen=True)
class MultiLabelProbeResult(ProbeResultBase):
    """Result of `multilabel_probe`: probe on the true targets, control on row-permuted targets."""

    KIND: ClassVar[str] = "multilabel"
    SELECTION_METRIC: ClassVar[str] = "cv_average_precision"

    probe: MultiLabelScores
    control: MultiLabelScores
    n_train: int
    n_test: int
    n_features: int
    seed: int
    settings: ProbeSettings


def check_targets(targets: Any, *, n_rows: int) -> np.ndarray:
    """Check a binary target matrix [N, W] (bool or 0/1) and return it as bool."""
    array = np.asarray(targets)
    if array.ndim != 2 or array.shape[1] == 0:
        raise InputError(f"targets must be a [N, W] 0/1 matrix, got shape {array.shape}")
    check_same_rows(n_rows, array, name="targets")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise InputError("targets must hold only 0/1 or True/False values")
    return array.astype(bool)


def _both_values(column: np.ndarray) -> bool:
    return bool(column.any() and not column.all())


def _mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over columns with both values of the average precision; truth, scores [n, W]."""
    values = [average_precision(truth[:, w], scores[:, w]) for w in range(truth.shape[1]) if _both_values(truth[:, w])]
    return float(np.mean(values)) if values else float("nan")


def _word_score(word: str, truth: np.ndarray, scores: np.ndarray, threshold: float) -> WordScore:
    """Scores of one column on test rows: truth [n] bool, scores [n] readout values."""
    n_positive = int(truth.sum())
    base_rate = n_positive / len(truth)
    if not _both_values(truth):
        nan = float("nan")
        return WordScore(word, n_positive, base_rate, nan, nan, nan, nan)
    return WordScore(
        word=word,
        n_positive_test=n_positive,
        base_rate=base_rate,
        auroc=auroc(truth, scores),
        average_precision=average_precision(truth, scores),
        f1=f1_at(truth, scores, threshold),
        f1_baseline=2 * base_rate / (1 + base_rate),
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _fit_and_score(
    basis: RidgeBasis,
    train_targets: np.ndarray,
    test_targets: np.ndarray,
    names: list[str],
    *,
    settings: ProbeSettings,
) -> MultiLabelScores:
    """Fit the readout on train_targets [n_train, W] and score test_targets [n_test, W]."""
    fit = fit_ridge_loo(basis, train_targets.astype(np.float64), alphas=settings.alpha_grid)
    words = [
        _word_score(
            name,
            test_targets[:, w],
            fit.test_predictions[:, w],
            best_f1_threshold(train_targets[:, w], fit.loo_predictions[:, w]),
        )
        for w, name in enumerate(names)
    ]
    scored = [s for s in words if np.isfinite(s.auroc)]
    return MultiLabelScores(
        macro_auroc=_nanmean([s.auroc for s in scored]),
        macro_average_precision=_nanmean([s.average_precision for s in scored]),
        macro_base_rate=_nanmean([s.base_rate for s in scored]),
        macro_f1=_nanmean([s.f1 for s in scored]),
        macro_f1_baseline=_nanmean([s.f1_baseline for s in scored]),
        chosen_alpha=fit.alpha,
        cv_average_precision=_mean_average_precision(train_targets, fit.loo_predictions),
        n_words_scored=len(scored),
        words=words,
    )


def multilabel_probe(
    features: Any,
    targets: Any,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    settings: ProbeSettings | None = None,
) -> MultiLabelProbeResult:
    """Linear (ridge) probe of binary targets, with a row-permuted control.

    features: [N, D] finite numbers; targets: [N, W] bool or 0/1 (e.g. `caption_word_targets`);
    names: W column names (default "0".."W-1"). Same inputs and seed give the same result.
    Returns a MultiLabelProbeResult with per-word AUROC / average precision / F1 against base rates
    and their macro means, for the probe and for the control.
    """
    settings = settings or ProbeSettings()
    matrix = check_features(features)
    target_matrix = check_targets(targets, n_rows=len(matrix))
    n_words = target_matrix.shape[1]
    column_names = [str(n) for n in names] if names is not None else [str(w) for w in range(n_words)]
    if len(column_names) != n_words:
        raise InputError(f"names has {len(column_names)} entries but targets has {n_words} columns")
    split = ridge_split(len(matrix), settings=settings, seed=seed)
    shuffled = target_matrix[rng_for(seed, CONTROL_STREAM).permutation(len(target_matrix))]
    with one_blas_thread():
        basis = ridge_basis(matrix[split.train], matrix[split.test])
        probe = _fit_and_score(
            basis,
            target_matrix[split.train],
            target_matrix[split.test],
            column_names,
            settings=settings,
        )
        control = _fit_and_score(basis, shuffled[split.train], shuffled[split.test], column_names, settings=settings)
    return MultiLabelProbeResult(
        probe=probe,
        control=control,
        n_train=len(split.train),
        n_test=len(split.test),
        n_features=matrix.shape[1],
        seed=seed,
        settings=settings,
    )
