"""Cross-modal probe: ridge regression from a vision layer to a text layer, scored by R^2 and by
caption retrieval among the held-out pairs.

Procedure: random train / test split of the pairs; standardise x and centre y with the training
rows' statistics; ridge from x to y with alpha picked by exact leave-one-out error on the training
rows (`probe.linear.ridge`: one decomposition per layer serves every alpha); predict the test rows'
text features. The control permutes the rows of y (breaking the pairing) and runs the same steps on
the same split.

Scores:
- r2: variance-weighted R^2 over the text dims, 1 - sum of squared errors / total sum of squares
  (scikit-learn's `variance_weighted`), so dims count by their variance; r2_uniform is the plain
  mean of the per-dim R^2 (dims constant on the test rows are skipped).
- top1 / top5: for each test image, is its own caption among the 1 / 5 test captions whose features
  are nearest (cosine, both sides centred by the training mean of y) to the prediction? Ties count
  against the true caption. Chance: 1 / n_test and 5 / n_test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from probe.linear.base import (
    CONTROL_STREAM,
    ProbeResultBase,
    ProbeSettings,
    check_features,
    check_same_rows,
    one_blas_thread,
    rng_for,
)
from probe.linear.ridge import RidgeBasis, fit_ridge_loo, ridge_basis, ridge_split

RETRIEVAL_KS = (1, 5)


@dataclass(frozen=True)
class RegressionScores:
    """Test scores of one run (the probe, or the shuffled-pair control).

    cv_r2 is the leave-one-out variance-weighted R^2 on the training rows at the chosen alpha; it
    picks alpha here and the best layer in `probe.linear.sweep.probe_layers`.
    """

    r2: float
    r2_uniform: float
    top1: float
    top5: float
    chosen_alpha: float
    cv_r2: float


@dataclass(frozen=True)
class CrossmodalProbeResult(ProbeResultBase):
    """Result of `crossmodal_probe`: the probe, its shuffled-pair control and chance levels."""

    KIND: ClassVar[str] = "crossmodal"
    SELECTION_METRIC: ClassVar[str] = "cv_r2"

    probe: RegressionScores
    control: RegressionScores
    chance_top1: float
    chance_top5: float
    n_train: int
    n_test: int
    n_features_x: int
    n_features_y: int
    seed: int
    settings: ProbeSettings

    @property
    def r2(self) -> float:
        return self.probe.r2

    @property
    def top1(self) -> float:
        return self.probe.top1

    @property
    def top5(self) -> float:
        return self.probe.top5


def _r2(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(variance-weighted, uniform) R^2 of predicted vs truth, both [n, Dy]."""
    errors = ((truth - predicted) ** 2).sum(axis=0)
    totals = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    varying = totals > 0
    if not varying.any():
        return float("nan"), float("nan")
    weighted = 1.0 - errors.sum() / totals.sum()
    uniform = float(np.mean(1.0 - errors[varying] / totals[varying]))
    return float(weighted), uniform


def retrieval_ranks(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of each row's own caption among all captions, by cosine to its prediction.

    predicted, truth: [n, Dy], row i of each belongs to pair i (centre them first). Returns [n]
    ints: how many other captions are at least as similar as the own one (0 = retrieved first).
    """

    def unit(rows: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1.0)

    similarity = unit(predicted) @ unit(truth).T
    own = np.diag(similarity)
    return (similarity >= own[:, None]).sum(axis=1) - 1


def _fit_and_score(
    basis: RidgeBasis, y_train: np.ndarray, y_test: np.ndarray, *, settings: ProbeSettings
) -> RegressionScores:
    """Fit on y_train [n_train, Dy] (alpha by leave-one-out), then score on y_test [n_test, Dy]."""
    fit = fit_ridge_loo(basis, y_train, alphas=settings.alpha_grid)
    r2, r2_uniform = _r2(y_test, fit.test_predictions)
    ranks = retrieval_ranks(fit.test_predictions - fit.train_mean, y_test - fit.train_mean)
    top1, top5 = (float((ranks < k).mean()) for k in RETRIEVAL_KS)
    return RegressionScores(
        r2=r2,
        r2_uniform=r2_uniform,
        top1=top1,
        top5=top5,
        chosen_alpha=fit.alpha,
        cv_r2=1.0 - fit.loo_error / fit.total if fit.total > 0 else float("nan"),
    )


def crossmodal_probe(x: Any, y: Any, *, seed: int = 0, settings: ProbeSettings | None = None) -> CrossmodalProbeResult:
    """Ridge probe from vision features to paired text features, with a shuffled-pair control.

    x: [N, Dx] vision features; y: [N, Dy] text features, row i of both from pair i (preprocess y
    as for the alignment metrics, e.g. the PRH clamp and L2 norm, since R^2 weighs dims by their
    variance). Same inputs and seed give the same result. Returns a CrossmodalProbeResult with
    test R^2 (variance-weighted and uniform), retrieval top-1 / top-5, chance levels and control.
    """
    settings = settings or ProbeSettings()
    x_matrix = check_features(x, name="x")
    y_matrix = check_features(y, name="y")
    check_same_rows(len(x_matrix), y_matrix, name="y")
    split = ridge_split(len(x_matrix), settings=settings, seed=seed)
    y_shuffled = y_matrix[rng_for(seed, CONTROL_STREAM).permutation(len(y_matrix))]
    with one_blas_thread():
        basis = ridge_basis(x_matrix[split.train], x_matrix[split.test])
        probe = _fit_and_score(basis, y_matrix[split.train], y_matrix[split.test], settings=settings)
        control = _fit_and_score(basis, y_shuffled[split.train], y_shuffled[split.test], settings=settings)
    n_test = len(split.test)
    return CrossmodalProbeResult(
        probe=probe,
        control=control,
        chance_top1=min(1, n_test) / n_test,
        chance_top5=min(5, n_test) / n_test,
        n_train=len(split.train),
        n_test=n_test,
        n_features_x=x_matrix.shape[1],
        n_features_y=y_matrix.shape[1],
        seed=seed,
        settings=settings,
    )
