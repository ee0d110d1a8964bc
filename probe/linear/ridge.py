"""Ridge regression with the penalty chosen by exact leave-one-out error, for every alpha and every
target column at once. Shared by the cross-modal probe (text features as targets) and the
caption-word probe (0/1 word indicators as targets).

With the standardised training rows X = U S V^T and the centred targets Y, the ridge fit for alpha
is V diag(s / (s^2 + alpha)) U^T Y, its fitted values U diag(f) U^T Y with f = s^2 / (s^2 + alpha),
and the leave-one-out residual of row i is e_i / (1 - h_i) with h_i = 1/n + sum_j U_ij^2 f_j (the
1/n is the unpenalised intercept; this is what scikit-learn's RidgeCV computes). So a layer costs
one decomposition and each alpha one [n, r] x [r, W] product. A control that permutes the target
rows keeps the same split and hence reuses the decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.errors import InputError
from probe.linear.base import ProbeSettings, Split, random_split, standardiser
from probe.log import logger

# Leave-one-out needs a few training rows, retrieval and ranking metrics a few test rows.
MIN_TRAIN_ROWS = 3
MIN_TEST_ROWS = 2


@dataclass(frozen=True)
class RidgeBasis:
    """Decomposition of the standardised training rows of x, shared by every alpha and target.

    left [n_train, r] = U; squares [r] = s^2; test_cross [n_test, r] = X_test V diag(s), so that the
    centred test prediction for alpha is test_cross diag(1 / (s^2 + alpha)) U^T Y.
    """

    left: np.ndarray
    squares: np.ndarray
    test_cross: np.ndarray


@dataclass(frozen=True)
class RidgeFit:
    """Ridge at the alpha with the least summed squared leave-one-out error over all targets.

    loo_error / total: that error and the summed squares of the centred training targets, so
    1 - loo_error / total is the leave-one-out (variance-weighted) R^2. loo_predictions [n_train, W]
    predict each training row from a fit without it; test_predictions [n_test, W]; train_mean [W].
    """

    alpha: float
    loo_error: float
    total: float
    loo_predictions: np.ndarray
    test_predictions: np.ndarray
    train_mean: np.ndarray


def ridge_split(n_rows: int, *, settings: ProbeSettings, seed: int) -> Split:
    """Random train / test split of n_rows rows (no validation part: alpha is picked by
    leave-one-out). Raises InputError when either part would be too small."""
    if n_rows < MIN_TRAIN_ROWS + MIN_TEST_ROWS:
        raise InputError(f"features have {n_rows} rows; a ridge probe needs at least {MIN_TRAIN_ROWS + MIN_TEST_ROWS}")
    split = random_split(n_rows, test_fraction=settings.test_fraction, val_fraction=0.0, seed=seed)
    if len(split.train) < MIN_TRAIN_ROWS or len(split.test) < MIN_TEST_ROWS:
        raise InputError(
            f"test_fraction={settings.test_fraction} leaves {len(split.train)} training and "
            f"{len(split.test)} test rows of {n_rows}; need at least {MIN_TRAIN_ROWS} and "
            f"{MIN_TEST_ROWS}"
        )
    return split


def ridge_basis(x_train: np.ndarray, x_test: np.ndarray) -> RidgeBasis:
    """Standardise x_train [n, D] / x_test [n_test, D] by x_train and decompose the training rows."""
    mean, scale = standardiser(x_train)
    train, test = (x_train - mean) / scale, (x_test - mean) / scale
    if len(train) <= train.shape[1]:
        # Wide rows: U and s^2 are the eigenvectors and eigenvalues of the [n, n] Gram matrix, and
        # X_test V diag(s) = X_test X^T U. Measured 3x faster than the SVD of [n, D] at n = 820,
        # D = 1024; rounding can leave eigenvalues of order -1e-10, clipped to 0.
        squares, left = np.linalg.eigh(train @ train.T)
        return RidgeBasis(left=left, squares=np.clip(squares, 0.0, None), test_cross=(test @ train.T) @ left)
    left, singular, right_t = np.linalg.svd(train, full_matrices=False)
    return RidgeBasis(left=left, squares=singular**2, test_cross=(test @ right_t.T) * singular)


def _loo_residuals(basis: RidgeBasis, centred: np.ndarray, projected: np.ndarray, alpha: float) -> np.ndarray:
    """Leave-one-out residuals [n_train, W] of the centred targets at one alpha."""
    shrink = basis.squares / (basis.squares + alpha)
    leverage = 1.0 / len(centred) + (basis.left**2) @ shrink
    # In place on the product, saving two [n_train, W] temporaries per alpha (same operations, same
    # numbers as (centred - fitted) / (1 - leverage)).
    residuals = basis.left @ (shrink[:, None] * projected)
    np.subtract(centred, residuals, out=residuals)
    residuals /= (1.0 - leverage)[:, None]
    return residuals


def fit_ridge_loo(basis: RidgeBasis, y_train: np.ndarray, *, alphas: tuple[float, ...]) -> RidgeFit:
    """Pick alpha among `alphas` by leave-one-out error on y_train [n_train, W]; predict the test
    rows of `basis`. Ties go to the smaller alpha. Returns a RidgeFit."""
    train_mean = y_train.mean(axis=0)
    centred = y_train - train_mean
    projected = basis.left.T @ centred  # [r, W]
    squares = np.empty(centred.shape)  # scratch for the squared residuals (float64, as they are)
    errors: list[float] = []
    kept: tuple[int, np.ndarray] | None = None  # the least error so far and its residuals
    for index, alpha in enumerate(alphas):
        residuals = _loo_residuals(basis, centred, projected, alpha)
        errors.append(float(np.square(residuals, out=squares).sum()))
        if kept is None or errors[-1] < errors[kept[0]]:
            kept = (index, residuals)
    best = int(np.argmin(errors))
    alpha = alphas[best]
    if best in (0, len(alphas) - 1) and len(alphas) > 1:
        # Expected for a shuffled control (no signal: the most shrinkage wins).
        logger.debug("ridge alpha %g is at the edge of the grid", alpha)
    # The chosen alpha's residuals are kept from the sweep (argmin and the running minimum agree
    # unless an error is NaN).
    residuals = kept[1] if kept is not None and kept[0] == best else _loo_residuals(basis, centred, projected, alpha)
    test_centred = basis.test_cross @ (projected / (basis.squares + alpha)[:, None])
    return RidgeFit(
        alpha=alpha,
        loo_error=errors[best],
        total=float((centred**2).sum()),
        loo_predictions=y_train - residuals,
        test_predictions=test_centred + train_mean,
        train_mean=train_mean,
    )
