"""Logistic-regression machinery shared by the class-label and caption-word probes.

Both probes standardise features on the training rows, sweep C on a validation split with
scikit-learn's LogisticRegression (lbfgs), then refit on train + validation at the chosen C.

Speed (measured on the 2-core dev machine, N=1024, D=1024, 10 classes): one probe plus its control
takes about 0.5 s when BLAS runs on one thread; the callers in `probe.linear_labels` and
`probe.linear_multilabel` pin it with `one_blas_thread`, because two BLAS threads on cores that other
processes also use made the same call 10-20x slower. Fitting in an orthonormal basis of the
training rows (exact for an L2 penalty, D -> n_train) was tried and dropped: lbfgs time here is
dominated by per-iteration overhead, not D, so the QR cost made it slower at D = 1024..4096.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from probe.linear_base import ProbeSettings, Split, standardiser
from probe.log import logger


@dataclass(frozen=True)
class Design:
    """Standardised rows of one split: train [n_train, D] and val [n_val, D] serve the C sweep;
    fit [n_train + n_val, D] (train rows, then val rows) and test [n_test, D] serve the refit."""

    train: np.ndarray
    val: np.ndarray
    fit: np.ndarray
    test: np.ndarray


def make_design(features: np.ndarray, split: Split) -> Design:
    """Standardise features [N, D] with the training rows' statistics and cut them by split.

    The standardiser is fitted on the training rows only and reused for the refit, so no statistic
    of the validation or test rows enters the C selection. Returns a Design (see its docstring).
    """
    mean, scale = standardiser(features[split.train])
    standard = (features - mean) / scale
    return Design(
        train=standard[split.train],
        val=standard[split.val],
        fit=standard[split.fit],
        test=standard[split.test],
    )


def _new_model(c: float, settings: ProbeSettings) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=settings.max_iter, tol=settings.tol, warm_start=True)


def _fit_quietly(model: LogisticRegression, rows: np.ndarray, targets: np.ndarray) -> None:
    """Fit, turning lbfgs's ConvergenceWarning into a debug log line (weak C fits often stop at
    max_iter on separable data; their predictions are still what the probe measures)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(rows, targets)
    if int(np.max(model.n_iter_)) >= model.max_iter:
        logger.debug("lbfgs stopped at max_iter=%d for C=%g", model.max_iter, model.C)


def sweep_c(
    train: np.ndarray, train_targets: np.ndarray, val: np.ndarray, *, settings: ProbeSettings
) -> np.ndarray:
    """Fit one logistic model per C of settings.c_grid and return its validation probabilities.

    train [n_train, k], train_targets [n_train] integer classes 0..K-1 (all present), val [n_val, k].
    C runs from strong to weak regularisation, each fit warm-started from the previous one.
    Returns [n_C, n_val, K] class probabilities.
    """
    model = _new_model(settings.c_grid[0], settings)
    probabilities = []
    for c in settings.c_grid:
        model.set_params(C=c)
        _fit_quietly(model, train, train_targets)
        probabilities.append(model.predict_proba(val))
    return np.stack(probabilities)


def fit_and_predict(
    fit: np.ndarray, fit_targets: np.ndarray, test: np.ndarray, *, c: float, settings: ProbeSettings
) -> np.ndarray:
    """Fit at one C on fit [n, k] / fit_targets [n] and return test probabilities [n_test, K]."""
    model = _new_model(c, settings)
    _fit_quietly(model, fit, fit_targets)
    return model.predict_proba(test)
