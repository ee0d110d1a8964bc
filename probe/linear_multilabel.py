"""Multi-label probe: which binary targets (e.g. caption words) a linear readout of a layer predicts.

One-vs-rest logistic regression, one scikit-learn model per target column, with one C shared by all
columns: for each C of the grid every column is fitted on train, and the C with the best mean
validation average precision wins (a shared C is steadier than one per word, whose validation split
may hold only a handful of positives). Then each column is refitted on train + val at that C and
scored on the test rows. Rows are split at random (a multi-label target has no single class to
stratify by). The control permutes the rows of the target matrix, which keeps each word's base rate
and the words' co-occurrence but breaks their link to the images, and runs the same procedure.

Per-word scores: AUROC (chance 0.5), average precision (chance = the word's test base rate) and F1
at a threshold picked on the validation split (compare with `f1_baseline`, the F1 of calling every
row positive, 2p / (1 + p)). A column with one value on the fitting rows gets the constant
prediction of its rate there; a score that is undefined on the test rows (one value there) is NaN
and left out of the macro means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from probe.errors import InputError
from probe.linear_base import (
    CONTROL_STREAM,
    ProbeSettings,
    Split,
    check_features,
    check_same_rows,
    one_blas_thread,
    random_split,
    rng_for,
    to_json_safe,
)
from probe.linear_logistic import Design, fit_and_predict, make_design, sweep_c


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
    """Macro means over the scored columns, and every column's scores, for one run."""

    macro_auroc: float
    macro_average_precision: float
    macro_base_rate: float
    macro_f1: float
    macro_f1_baseline: float
    chosen_c: float
    val_average_precision: float
    n_words_scored: int
    words: list[WordScore]


@dataclass(frozen=True)
class MultiLabelProbeResult:
    """Result of `multilabel_probe`: probe on the true targets, control on row-permuted targets."""

    probe: MultiLabelScores
    control: MultiLabelScores
    n_train: int
    n_val: int
    n_test: int
    n_features: int
    seed: int
    settings: ProbeSettings

    @property
    def macro_auroc(self) -> float:
        return self.probe.macro_auroc

    @property
    def macro_average_precision(self) -> float:
        return self.probe.macro_average_precision

    @property
    def chosen_c(self) -> float:
        return self.probe.chosen_c

    @property
    def selection_score(self) -> float:
        """Validation score that ranks layers (mean validation average precision)."""
        return self.probe.val_average_precision

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-safe dict (NaN -> None)."""
        return to_json_safe(
            {"kind": "multilabel", **asdict(self), "settings": self.settings.to_dict()}
        )


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


def _column_probabilities(
    design: Design, targets: np.ndarray, split: Split, *, settings: ProbeSettings
) -> np.ndarray:
    """Validation probabilities of every column at every C: [n_C, n_val, W]."""
    n_c, n_val, n_words = len(settings.c_grid), len(split.val), targets.shape[1]
    probabilities = np.empty((n_c, n_val, n_words))
    for w in range(n_words):
        train_column = targets[split.train, w]
        if _both_values(train_column):
            probabilities[:, :, w] = sweep_c(
                design.train, train_column.astype(int), design.val, settings=settings
            )[:, :, 1]
        else:
            probabilities[:, :, w] = train_column.mean()
    return probabilities


def _mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over columns with both values of the average precision; truth, scores [n, W]."""
    values = [
        average_precision_score(truth[:, w], scores[:, w])
        for w in range(truth.shape[1])
        if _both_values(truth[:, w])
    ]
    return float(np.mean(values)) if values else float("nan")


def _f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """Probability threshold that maximises F1 on validation rows; 0.5 when they have no positive."""
    if not truth.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _word_score(
    word: str, truth: np.ndarray, scores: np.ndarray, threshold: float
) -> WordScore:
    """Scores of one column on test rows: truth [n] bool, scores [n] probabilities."""
    n_positive = int(truth.sum())
    base_rate = n_positive / len(truth)
    defined = _both_values(truth)
    nan = float("nan")
    return WordScore(
        word=word,
        n_positive_test=n_positive,
        base_rate=base_rate,
        auroc=float(roc_auc_score(truth, scores)) if defined else nan,
        average_precision=float(average_precision_score(truth, scores)) if defined else nan,
        f1=float(f1_score(truth, scores >= threshold, zero_division=0)) if defined else nan,
        f1_baseline=2 * base_rate / (1 + base_rate) if defined else nan,
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _run(
    features: np.ndarray,
    targets: np.ndarray,
    names: list[str],
    *,
    seed: int,
    settings: ProbeSettings,
) -> tuple[MultiLabelScores, Split]:
    """One pass of the procedure on targets [N, W]. Returns (test scores, the split used)."""
    split = random_split(
        len(features),
        test_fraction=settings.test_fraction,
        val_fraction=settings.val_fraction,
        seed=seed,
    )
    design = make_design(features, split)
    val_truth = targets[split.val]
    val_probabilities = _column_probabilities(design, targets, split, settings=settings)
    val_ap = np.array([_mean_average_precision(val_truth, p) for p in val_probabilities])
    if np.isnan(val_ap).all():
        raise InputError(
            "targets: no column has both positive and negative rows in the validation split; "
            "give more rows or keep only more frequent words"
        )
    best = int(np.nanargmax(val_ap))
    chosen_c = settings.c_grid[best]
    words = []
    for w, name in enumerate(names):
        fit_column = targets[split.fit, w]
        if _both_values(fit_column):
            test_scores = fit_and_predict(
                design.fit, fit_column.astype(int), design.test, c=chosen_c, settings=settings
            )[:, 1]
        else:
            test_scores = np.full(len(split.test), fit_column.mean())
        threshold = _f1_threshold(val_truth[:, w], val_probabilities[best, :, w])
        words.append(_word_score(name, targets[split.test, w], test_scores, threshold))
    scores = MultiLabelScores(
        macro_auroc=_nanmean([s.auroc for s in words]),
        macro_average_precision=_nanmean([s.average_precision for s in words]),
        macro_base_rate=_nanmean([s.base_rate if np.isfinite(s.auroc) else np.nan for s in words]),
        macro_f1=_nanmean([s.f1 for s in words]),
        macro_f1_baseline=_nanmean([s.f1_baseline for s in words]),
        chosen_c=chosen_c,
        val_average_precision=float(val_ap[best]),
        n_words_scored=sum(np.isfinite(s.auroc) for s in words),
        words=words,
    )
    return scores, split


def multilabel_probe(
    features: Any,
    targets: Any,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    settings: ProbeSettings | None = None,
) -> MultiLabelProbeResult:
    """Linear (one-vs-rest logistic) probe of binary targets, with a row-permuted control.

    features: [N, D] finite numbers; targets: [N, W] bool or 0/1 (e.g. `caption_word_targets`);
    names: W column names (default "0".."W-1"). Same inputs and seed give the same result.
    Returns a MultiLabelProbeResult with per-word AUROC / average precision / F1 against base rates
    and their macro means, for the probe and for the control.
    """
    settings = settings or ProbeSettings()
    matrix = check_features(features)
    target_matrix = check_targets(targets, n_rows=len(matrix))
    if len(matrix) < 3:
        raise InputError(f"features has {len(matrix)} rows; a train/val/test split needs at least 3")
    column_names = [str(n) for n in names] if names is not None else None
    if column_names is None:
        column_names = [str(w) for w in range(target_matrix.shape[1])]
    if len(column_names) != target_matrix.shape[1]:
        raise InputError(
            f"names has {len(column_names)} entries but targets has {target_matrix.shape[1]} columns"
        )
    shuffled = target_matrix[rng_for(seed, CONTROL_STREAM).permutation(len(target_matrix))]
    with one_blas_thread():
        probe, split = _run(matrix, target_matrix, column_names, seed=seed, settings=settings)
        control, _ = _run(matrix, shuffled, column_names, seed=seed, settings=settings)
    return MultiLabelProbeResult(
        probe=probe,
        control=control,
        n_train=len(split.train),
        n_val=len(split.val),
        n_test=len(split.test),
        n_features=matrix.shape[1],
        seed=seed,
        settings=settings,
    )
