"""Alignment metrics between two paired feature matrices (one layer each), as defined by PRH.

Every function takes `a` [N, Da] and `b` [N, Db] (numpy or torch; row i of both describes the same
sample), uses them as given (no clamping or normalising: PRH applies those before scoring; see
`probe.align.engine` for that and for all layer pairs at once) and returns a float. Definitions: docs/metrics.md
(Metrics). kNN is by dot product, self excluded, ties to the lower row index.

These run the same code as the all-pairs path, on a single pair.
"""

from __future__ import annotations

from typing import Optional

from probe.align.engine import pair_matrices, prepare_modalities
from probe.align.prep import ArrayLike, as_matrix
from probe.align.settings import PRH_DENOMINATOR_EPSILON, AlignSettings, DeviceLike
from probe.align.specs import KernelName, MetricName
from probe.devices import resolve_device
from probe.errors import InputError

EPSILON = PRH_DENOMINATOR_EPSILON


def pair_score(
    metric: MetricName,
    a: ArrayLike,
    b: ArrayLike,
    *,
    k: int = 10,
    rbf_sigma: Optional[float] = None,
    denominator_epsilon: float = EPSILON,
    device: DeviceLike = None,
) -> float:
    """Metric `metric` (a name from `probe.align.specs.METRICS`) for one pair `a` [N, Da], `b` [N, Db].

    `k` is used by the kNN metrics and CKNNA, `rbf_sigma` by the RBF ones, `denominator_epsilon` by
    CKA and CKNNA. Runs the all-pairs machinery on a single pair.
    """
    torch_device = resolve_device(device)
    first, second = as_matrix(a, name="a", device=torch_device), as_matrix(b, name="b", device=torch_device)
    if first.shape[0] != second.shape[0]:
        raise InputError(f"`a` has {first.shape[0]} rows but `b` has {second.shape[0]}; rows must be paired.")
    settings = AlignSettings(
        metrics=(metric,),
        k=k,
        clip_quantile=None,
        normalize=False,
        device=str(torch_device),
        rbf_sigma=rbf_sigma,
        denominator_epsilon=denominator_epsilon,
    )
    states = prepare_modalities(first[:, None, :], second[:, None, :], settings, names=("a", "b"))
    return float(pair_matrices(*states)[metric][0, 0])


def mutual_knn(a: ArrayLike, b: ArrayLike, *, k: int = 10, device: DeviceLike = None) -> float:
    """mean_i |kNN_a(i) & kNN_b(i)| / k for `a` [N, Da], `b` [N, Db]. 1 for identical neighbourhoods;
    k/(N-1) expected when the pairing is random."""
    return pair_score("mutual_knn", a, b, k=k, device=device)


def jaccard_knn(a: ArrayLike, b: ArrayLike, *, k: int = 10, device: DeviceLike = None) -> float:
    """mean_i |kNN_a(i) & kNN_b(i)| / |kNN_a(i) | kNN_b(i)| for `a` [N, Da], `b` [N, Db]."""
    return pair_score("jaccard_knn", a, b, k=k, device=device)


def cycle_knn(a: ArrayLike, b: ArrayLike, *, k: int = 10, device: DeviceLike = None) -> float:
    """Fraction of rows i that are among the a-neighbours of at least one b-neighbour of i.

    `a` [N, Da], `b` [N, Db]; asymmetric (PRH: `knn_A[knn_B]`, with A the vision side in its runs).
    """
    return pair_score("cycle_knn", a, b, k=k, device=device)


def cka(
    a: ArrayLike,
    b: ArrayLike,
    *,
    kernel: KernelName = "linear",
    sigma: Optional[float] = None,
    unbiased: bool = False,
    epsilon: float = EPSILON,
    device: DeviceLike = None,
) -> float:
    """Centred kernel alignment HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for `a` [N, Da], `b` [N, Db].

    `kernel`: "linear" (K = a a^T) or "rbf" (exp(-|a_i - a_j|^2 / (2 sigma^2)); `sigma` None = the
    median pairwise distance of each input). `unbiased`: Song et al.'s unbiased HSIC (needs N > 3).
    `epsilon` is added to the denominator: PRH's code uses 1e-6 (the default here and everywhere in probe);
    0 is the definition.
    """
    if kernel not in ("linear", "rbf"):
        raise InputError(f"kernel={kernel!r}: choose 'linear' or 'rbf'.")
    name = ("unbiased_" if unbiased else "") + ("rbf_cka" if kernel == "rbf" else "cka")
    return pair_score(name, a, b, rbf_sigma=sigma, denominator_epsilon=epsilon, device=device)  # type: ignore[arg-type]


def cknna(a: ArrayLike, b: ArrayLike, *, k: int = 10, epsilon: float = EPSILON, device: DeviceLike = None) -> float:
    """CKNNA (PRH): unbiased HSIC on the kNN edges shared by `a` [N, Da] and `b` [N, Db], normalised by
    each input's own-edge term (+ `epsilon`; default PRH's 1e-6). Needs 2 <= k < N and N > 3; k = N - 1
    gives unbiased linear CKA. Asymmetric, as PRH defines it."""
    return pair_score("cknna", a, b, k=k, denominator_epsilon=epsilon, device=device)


__all__ = ["mutual_knn", "jaccard_knn", "cycle_knn", "cka", "cknna", "pair_score"]
