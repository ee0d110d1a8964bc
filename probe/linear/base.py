"""Shared plumbing of the linear probes: settings, result base, input checks, splits, standardisation.

The probes themselves live in `probe.linear.labels` (logistic readouts of class labels and of
caption words) and `probe.linear.crossmodal` (ridge from vision to text features); `probe.linear.sweep`
is the public entry point and runs them over layers.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from probe.errors import InputError
from probe.results import to_jsonable

# Regularisation grid of the logistic probes (inverse strength C, scikit-learn convention), two
# points per decade from 1e-4 to 1e2. dinov2 sweeps 1e-6..1e5 (45 points) on raw features; on
# standardised features the optimum sat inside 1e-4..1e-1 on planted and shuffled targets, and the
# sweep runs from strong to weak regularisation with warm starts, so the weak end costs a few
# iterations. dinov2's 45-point grid gave the same test accuracy at about 2.5x the time.
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(10.0 ** (p / 2)) for p in range(-8, 5))

# Ridge penalties, one point per decade. Once the training rows are decomposed, each alpha costs one
# [n, n] x [n, D_text] product for its leave-one-out error (about 70 ms at n = 820, D_text = 768 on
# one core). On standardised features of width ~1000 the optimum of a real signal lies around
# 1e2..1e5; the shuffled control drives alpha to the top of the grid, as it should.
DEFAULT_ALPHA_GRID: tuple[float, ...] = tuple(float(10.0**p) for p in range(-2, 8))

DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_MAX_ITER = 1000
DEFAULT_TOL = 1e-4

# Stream ids mixed with the user's seed so that the split and the control's shuffle are
# independent random streams but both fixed by `seed`.
SPLIT_STREAM = 0
CONTROL_STREAM = 1


@dataclass(frozen=True)
class ProbeSettings:
    """Knobs of the linear probes. Defaults and why: docs/linear.md (Class labels, Settings).

    c_grid: inverse L2 strengths tried by the class-label (logistic) probe, ascending.
    alpha_grid: ridge penalties tried by the caption-word and cross-modal probes, ascending.
    test_fraction: share of rows held out for the reported scores (all probes).
    val_fraction: share of rows (of all N) on which the class-label probe picks C; the ridge probes
        pick alpha by leave-one-out on their training rows instead and ignore it.
    max_iter, tol: lbfgs stopping rules of the class-label probe (scikit-learn meaning).
    """

    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    alpha_grid: tuple[float, ...] = DEFAULT_ALPHA_GRID
    test_fraction: float = DEFAULT_TEST_FRACTION
    val_fraction: float = DEFAULT_VAL_FRACTION
    max_iter: int = DEFAULT_MAX_ITER
    tol: float = DEFAULT_TOL

    def __post_init__(self) -> None:
        for name in ("c_grid", "alpha_grid"):
            grid = tuple(float(v) for v in getattr(self, name))
            if not grid or not all(math.isfinite(v) and v > 0 for v in grid):
                raise InputError(f"{name} must be a non-empty list of positive numbers, got {grid}")
            object.__setattr__(self, name, tuple(sorted(set(grid))))
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise InputError(f"{name} must lie strictly between 0 and 1, got {value}")
        if self.test_fraction + self.val_fraction >= 1.0:
            raise InputError(
                f"test_fraction + val_fraction must be below 1 to leave training rows, "
                f"got {self.test_fraction} + {self.val_fraction}"
            )
        if self.max_iter < 1 or not self.tol > 0:
            raise InputError(f"max_iter must be >= 1 and tol > 0, got {self.max_iter}, {self.tol}")


class ProbeResultBase:
    """What every probe result shares: `probe` and `control` scores, the validation score that
    ranks layers, and JSON output. Subclasses are frozen dataclasses that set the two constants."""

    KIND: ClassVar[str]  # "labels", "multilabel" or "crossmodal", the `kind` key of to_dict()
    SELECTION_METRIC: ClassVar[str]  # the field of `probe` that ranks layers (a validation score)
    probe: Any  # the subclass's score dataclass for the true targets

    @property
    def selection_score(self) -> float:
        """The validation score of the probe (not the control) named by SELECTION_METRIC."""
        return float(getattr(self.probe, self.SELECTION_METRIC))

    def to_dict(self) -> dict[str, Any]:
        """All fields, settings included, as a JSON-safe dict (NaN -> None)."""
        return to_jsonable({"kind": self.KIND, **asdict(self)})  # type: ignore[call-overload]


@dataclass(frozen=True)
class Split:
    """Row indices of the three parts of a split; `val` may be empty (cross-modal probe)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fit: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fit", np.concatenate([self.train, self.val]))


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A generator fixed by (seed, stream); different streams are independent."""
    return np.random.default_rng([int(seed), stream])


def _part_sizes(n: int, *, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    """(n_test, n_val) for a group of n rows: each part gets at least one row, train keeps one."""
    n_test = min(max(1, round(test_fraction * n)), n - 2)
    n_val = 0 if val_fraction == 0 else min(max(1, round(val_fraction * n)), n - n_test - 1)
    return n_test, n_val


def stratified_split(codes: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Split rows so that every class has rows in train, val and test.

    codes: [N] integer class codes 0..K-1, each class with at least 3 rows (checked by callers).
    Each class is shuffled and cut by the fractions (rounded, at least one row per part).
    Returns a Split of sorted index arrays.
    """
    rng = rng_for(seed, SPLIT_STREAM)
    parts: list[list[np.ndarray]] = [[], [], []]
    for k in range(int(codes.max()) + 1):
        rows = rng.permutation(np.flatnonzero(codes == k))
        n_test, n_val = _part_sizes(len(rows), test_fraction=test_fraction, val_fraction=val_fraction)
        parts[0].append(rows[n_test + n_val :])
        parts[1].append(rows[n_test : n_test + n_val])
        parts[2].append(rows[:n_test])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return Split(train=train, val=val, test=test)


def random_split(n: int, *, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Split N rows at random into train / val / test (val empty when val_fraction is 0).

    Used where targets are not single classes (caption words, text features). Needs N >= 3.
    """
    rows = rng_for(seed, SPLIT_STREAM).permutation(n)
    n_test, n_val = _part_sizes(n, test_fraction=test_fraction, val_fraction=val_fraction)
    return Split(
        train=np.sort(rows[n_test + n_val :]),
        val=np.sort(rows[n_test : n_test + n_val]),
        test=np.sort(rows[:n_test]),
    )


def check_features(features: Any, *, name: str = "features") -> np.ndarray:
    """Validate a feature matrix and return it as float64.

    features: [N, D] array-like of finite numbers. Raises InputError naming `name` otherwise.
    """
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty [N, D] matrix, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise InputError(
            f"{name} has NaN or infinite values in {len(bad_rows)} row(s), first row {bad_rows[0]}; "
            "drop or repair those rows before probing"
        )
    return array


def check_same_rows(n_rows: int, other: np.ndarray, *, name: str) -> None:
    """Raise InputError unless `other` has n_rows rows (the features' N)."""
    if len(other) != n_rows:
        raise InputError(f"{name} has {len(other)} rows but the features have {n_rows}; rows must be paired")


def standardiser(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column of rows [n, D], each [D]; constant columns get scale 1."""
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def one_blas_thread() -> AbstractContextManager[Any]:
    """Context that runs BLAS/LAPACK on one thread, for the matrix factorisations (QR, SVD).

    At probe sizes (about 1000 x 1000) a factorisation gains little from a second thread, and when
    other processes share the cores multithreaded LAPACK stalls (timings: docs/linear.md, Speed).
    """
    return threadpool_limits(limits=1, user_api="blas")
