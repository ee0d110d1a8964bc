"""Class-label probe: how well a logistic readout of one layer predicts a categorical label.

Procedure (dinov2's log-regression protocol; docs/linear.md): stratified train / val / test split;
standardise on train; for each C of the grid fit on train and score accuracy on val; refit on
train + val at the best C; score the test rows. The control runs the identical procedure on the
labels shuffled across rows, so it measures what the same pipeline gets from no signal.

The fits run BLAS on one thread (`one_blas_thread`): on cores that other processes share, a second
thread makes them slower, not faster. They run on the standardised features as given: an orthonormal
basis of the training rows (exact for an L2 penalty) made them slower, as lbfgs time here is
per-iteration overhead more than D. Timings: docs/linear.md (Speed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from probe.errors import InputError
from probe.linear.base import (
    CONTROL_STREAM,
    ProbeResultBase,
    ProbeSettings,
    Split,
    check_features,
    check_same_rows,
    one_blas_thread,
    rng_for,
    standardiser,
    stratified_split,
)
from probe.log import logger

# Every class needs a row in train, val and test.
MIN_ROWS_PER_CLASS = 3


@dataclass(frozen=True)
class ClassifierScores:
    """Test-split scores of one run of the procedure (the probe, or its shuffled-label control).

    val_accuracy is the validation accuracy of the train-only fit at the chosen C; it picks C here
    and picks the best layer in `probe.linear.sweep.probe_layers`, so the test scores stay unselected.
    """

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    chosen_c: float
    val_accuracy: float


@dataclass(frozen=True)
class LabelProbeResult(ProbeResultBase):
    """Result of `label_probe` on one feature matrix.

    probe / control: scores on the true labels / on labels shuffled across rows.
    majority_rate: test accuracy of always answering the most frequent train + val class.
    chance_rate: 1 / number of classes.
    """

    KIND: ClassVar[str] = "labels"
    SELECTION_METRIC: ClassVar[str] = "val_accuracy"

    probe: ClassifierScores
    control: ClassifierScores
    majority_rate: float
    chance_rate: float
    classes: list[str]
    n_train: int
    n_val: int
    n_test: int
    n_features: int
    seed: int
    settings: ProbeSettings

    @property
    def accuracy(self) -> float:
        return self.probe.accuracy

    @property
    def balanced_accuracy(self) -> float:
        return self.probe.balanced_accuracy

    @property
    def macro_f1(self) -> float:
        return self.probe.macro_f1

    @property
    def chosen_c(self) -> float:
        return self.probe.chosen_c

    @property
    def control_accuracy(self) -> float:
        return self.control.accuracy


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


def _sweep_c(train: np.ndarray, train_targets: np.ndarray, val: np.ndarray, *, settings: ProbeSettings) -> np.ndarray:
    """Fit one logistic model per C of settings.c_grid and return its validation probabilities.

    train [n_train, D], train_targets [n_train] integer classes 0..K-1 (all present), val [n_val, D].
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


def _fit_and_predict(
    fit: np.ndarray, fit_targets: np.ndarray, test: np.ndarray, *, c: float, settings: ProbeSettings
) -> np.ndarray:
    """Fit at one C on fit [n, D] / fit_targets [n] and return test probabilities [n_test, K]."""
    model = _new_model(c, settings)
    _fit_quietly(model, fit, fit_targets)
    return model.predict_proba(test)


def encode_labels(labels: Any, *, n_rows: int) -> tuple[list[str], np.ndarray]:
    """Check class labels [N] (numbers or strings) and code them as integers.

    Returns (class names as strings, sorted; codes [N] in 0..K-1). Raises InputError for missing
    values, mixed types, a single class, or a class with fewer than MIN_ROWS_PER_CLASS rows.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError(f"labels must be a [N] vector of class labels, got shape {array.shape}")
    check_same_rows(n_rows, array, name="labels")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise InputError(f"labels has {int(np.isnan(array).sum())} missing value(s) (NaN); drop those rows first")
    try:
        classes, codes = np.unique(array, return_inverse=True)
    except TypeError as error:
        raise InputError(
            "labels mixes types or has missing values (None); give one string or number per row"
        ) from error
    if len(classes) < 2:
        raise InputError(f"labels has a single class ({classes[0]!r}); a probe needs at least two classes")
    counts = np.bincount(codes)
    if counts.min() < MIN_ROWS_PER_CLASS:
        rare = [str(classes[k]) for k in np.flatnonzero(counts < MIN_ROWS_PER_CLASS)]
        raise InputError(
            f"labels: class(es) {rare[:5]} have fewer than {MIN_ROWS_PER_CLASS} rows, too few for "
            "a stratified train/val/test split; drop or merge rare classes"
        )
    return [str(c) for c in classes], codes


def _run(
    features: np.ndarray, codes: np.ndarray, *, seed: int, settings: ProbeSettings
) -> tuple[ClassifierScores, Split]:
    """One pass of the procedure on codes [N]. Returns (test scores, the split used)."""
    split = stratified_split(codes, test_fraction=settings.test_fraction, val_fraction=settings.val_fraction, seed=seed)
    # Standardised with the training rows' statistics only, for the C sweep and the refit alike, so
    # no statistic of the validation or test rows enters the choice of C.
    mean, scale = standardiser(features[split.train])
    standard = (features - mean) / scale
    val_truth = codes[split.val]
    val_probabilities = _sweep_c(standard[split.train], codes[split.train], standard[split.val], settings=settings)
    val_accuracies = (val_probabilities.argmax(axis=2) == val_truth).mean(axis=1)
    # argmax takes the first maximum: on ties, the stronger regularisation.
    best = int(np.argmax(val_accuracies))
    chosen_c = settings.c_grid[best]
    test_probabilities = _fit_and_predict(
        standard[split.fit], codes[split.fit], standard[split.test], c=chosen_c, settings=settings
    )
    predicted = test_probabilities.argmax(axis=1)
    truth = codes[split.test]
    with warnings.catch_warnings():
        # A class the model never predicts triggers an "ill-defined" warning; its F1 is 0.
        warnings.simplefilter("ignore", UserWarning)
        scores = ClassifierScores(
            accuracy=float(accuracy_score(truth, predicted)),
            balanced_accuracy=float(balanced_accuracy_score(truth, predicted)),
            macro_f1=float(
                f1_score(
                    truth,
                    predicted,
                    labels=np.arange(codes.max() + 1),
                    average="macro",
                    zero_division=0,
                )
            ),
            chosen_c=chosen_c,
            val_accuracy=float(val_accuracies[best]),
        )
    return scores, split


def multiclass_probe(
    features: Any, labels: Any, *, seed: int = 0, settings: ProbeSettings | None = None
) -> LabelProbeResult:
    """Linear (logistic) probe of class labels, with a shuffled-label control.

    features: [N, D] finite numbers; labels: [N] class labels (strings or numbers), at least two
    classes with MIN_ROWS_PER_CLASS rows each. Same inputs and seed give the same result.
    Returns a LabelProbeResult (test accuracy, balanced accuracy, macro-F1, chosen C, majority and
    chance rates, and the control's scores).
    """
    settings = settings or ProbeSettings()
    matrix = check_features(features)
    classes, codes = encode_labels(labels, n_rows=len(matrix))
    shuffled = rng_for(seed, CONTROL_STREAM).permutation(codes)
    with one_blas_thread():
        probe, split = _run(matrix, codes, seed=seed, settings=settings)
        control, _ = _run(matrix, shuffled, seed=seed, settings=settings)
    majority_class = int(np.bincount(codes[split.fit]).argmax())
    return LabelProbeResult(
        probe=probe,
        control=control,
        majority_rate=float((codes[split.test] == majority_class).mean()),
        chance_rate=1.0 / len(classes),
        classes=classes,
        n_train=len(split.train),
        n_val=len(split.val),
        n_test=len(split.test),
        n_features=matrix.shape[1],
        seed=seed,
        settings=settings,
    )
