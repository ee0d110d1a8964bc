"""Single-pair metrics against from-the-definition references (plain numpy loops), and their properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from alignment_helpers import one_thread, unit_rows  # noqa: F401  (one_thread is an autouse fixture)

from probe import metrics
from probe.align.hsic import hsic_biased, hsic_unbiased
from probe.align.knn import ranked_neighbours
from probe.align.specs import METRICS
from probe.errors import InputError

# ---------------------------------------------------------------- references (definitions: docs/metrics.md)


def ref_knn(x: np.ndarray, k: int) -> list[set[int]]:
    """kNN sets by dot product, self excluded, ties to the lower index."""
    sets = []
    for i in range(len(x)):
        scored = [(-float(x[i] @ x[j]), j) for j in range(len(x)) if j != i]
        sets.append({j for _, j in sorted(scored)[:k]})
    return sets


def ref_mutual_knn(a, b, k):
    na, nb = ref_knn(a, k), ref_knn(b, k)
    return float(np.mean([len(na[i] & nb[i]) / k for i in range(len(a))]))


def ref_jaccard_knn(a, b, k):
    na, nb = ref_knn(a, k), ref_knn(b, k)
    return float(np.mean([len(na[i] & nb[i]) / len(na[i] | nb[i]) for i in range(len(a))]))


def ref_cycle_knn(a, b, k):
    na, nb = ref_knn(a, k), ref_knn(b, k)
    return float(np.mean([any(i in na[j] for j in nb[i]) for i in range(len(a))]))


def ref_hsic_biased(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H))


def ref_hsic_unbiased(K, L):
    """Song et al. 2012, eq. 5, with explicit loops for the sums (K, L need not be symmetric)."""
    n = len(K)
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    trace = sum(Kt[i, j] * Lt[j, i] for i in range(n) for j in range(n))
    chained = (
        sum(Kt[i, j] * Lt[j, m] for i in range(n) for j in range(n) for m in range(n)) if n <= 12 else (Kt @ Lt).sum()
    )
    return float((trace + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2)) - 2 * chained / (n - 2)) / (n * (n - 3)))


def ref_rbf(x, sigma):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


def ref_median_distance(x):
    n = len(x)
    return float(np.median([np.linalg.norm(x[i] - x[j]) for i in range(n) for j in range(i + 1, n)]))


def ref_cka(a, b, *, kernel="linear", unbiased=False, eps=0.0):
    if kernel == "linear":
        K, L = a @ a.T, b @ b.T
    else:
        K, L = ref_rbf(a, ref_median_distance(a)), ref_rbf(b, ref_median_distance(b))
    hsic = ref_hsic_unbiased if unbiased else ref_hsic_biased
    return hsic(K, L) / (np.sqrt(hsic(K, K) * hsic(L, L)) + eps)


def ref_cknna(a, b, k, eps=0.0):
    K, L = a @ a.T, b @ b.T

    def mask(sets):
        m = np.zeros((len(sets), len(sets)))
        for i, s in enumerate(sets):
            m[i, list(s)] = 1
        return m

    mk, ml = mask(ref_knn(a, k)), mask(ref_knn(b, k))

    def sim(X, Y, mx, my):
        m = mx * my
        return ref_hsic_unbiased(m * X, m * Y)

    return sim(K, L, mk, ml) / (np.sqrt(sim(K, K, mk, mk) * sim(L, L, ml, ml)) + eps)


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """Two related L2-normalised matrices [40, 6] and [40, 9] (float64)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 6))
    b = np.concatenate([a @ rng.standard_normal((6, 5)), rng.standard_normal((40, 4))], axis=1)
    b += 0.7 * rng.standard_normal(b.shape)
    return unit_rows(a), unit_rows(b)


KNN_METRICS = {
    "mutual_knn": (metrics.mutual_knn, ref_mutual_knn),
    "jaccard_knn": (metrics.jaccard_knn, ref_jaccard_knn),
    "cycle_knn": (metrics.cycle_knn, ref_cycle_knn),
}
KERNEL_CASES = [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)]


# ---------------------------------------------------------------- agreement with the definitions


@pytest.mark.parametrize("name", list(KNN_METRICS))
@pytest.mark.parametrize("k", [1, 5, 12])
def test_knn_metrics_equal_reference(pair, name, k):
    ours, ref = KNN_METRICS[name]
    a, b = pair
    assert ours(a, b, k=k, device="cpu") == pytest.approx(ref(a, b, k), abs=1e-6)
    assert ours(b, a, k=k, device="cpu") == pytest.approx(ref(b, a, k), abs=1e-6)


@pytest.mark.parametrize("kernel,unbiased", KERNEL_CASES)
def test_cka_equals_reference(pair, kernel, unbiased):
    a, b = pair
    expected = ref_cka(a, b, kernel=kernel, unbiased=unbiased)
    assert metrics.cka(a, b, kernel=kernel, unbiased=unbiased, epsilon=0.0, device="cpu") == pytest.approx(
        expected, abs=1e-5
    )


@pytest.mark.parametrize("kernel,unbiased", KERNEL_CASES)
def test_cka_with_prh_epsilon_reproduces_prh(pair, kernel, unbiased):
    """PRH adds 1e-6 to the denominator: epsilon=1e-6 reproduces it; the definition differs by < 1e-4 here."""
    a, b = pair
    prh = ref_cka(a, b, kernel=kernel, unbiased=unbiased, eps=1e-6)
    assert metrics.cka(a, b, kernel=kernel, unbiased=unbiased, epsilon=1e-6, device="cpu") == pytest.approx(
        prh, abs=1e-5
    )
    assert metrics.cka(a, b, kernel=kernel, unbiased=unbiased, epsilon=0.0, device="cpu") == pytest.approx(
        prh, abs=1e-4
    )
    # The default everywhere in probe is PRH's epsilon.
    assert metrics.cka(a, b, kernel=kernel, unbiased=unbiased, device="cpu") == metrics.cka(
        a, b, kernel=kernel, unbiased=unbiased, epsilon=1e-6, device="cpu"
    )


@pytest.mark.parametrize("k", [2, 6])
def test_cknna_equals_reference(pair, k):
    a, b = pair
    assert metrics.cknna(a, b, k=k, epsilon=0.0, device="cpu") == pytest.approx(ref_cknna(a, b, k), abs=1e-5)
    assert metrics.cknna(a, b, k=k, epsilon=1e-6, device="cpu") == pytest.approx(ref_cknna(a, b, k, eps=1e-6), abs=1e-5)


def test_cknna_with_all_neighbours_is_unbiased_cka(pair):
    a, b = pair
    assert metrics.cknna(a, b, k=len(a) - 1, epsilon=0.0, device="cpu") == pytest.approx(
        metrics.cka(a, b, unbiased=True, epsilon=0.0, device="cpu"), abs=1e-7
    )


def test_hsic_formulas_equal_reference():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    K, L = x @ x.T, y @ y.T
    assert hsic_biased(K, L) == pytest.approx(ref_hsic_biased(K, L), rel=1e-10)
    assert hsic_unbiased(K, L) == pytest.approx(ref_hsic_unbiased(K, L), rel=1e-10)


def test_unbiased_hsic_zeroes_the_diagonal():
    """A huge diagonal must not change unbiased HSIC (subtracting it as a broadcast vector would)."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 4))
    K, L = x @ x.T, y @ y.T
    huge = K + np.diag(rng.uniform(1e5, 1e6, size=30))
    expected = ref_hsic_unbiased(K, L)
    assert hsic_unbiased(huge, L) == pytest.approx(expected, rel=1e-9)
    assert hsic_unbiased(huge, L + np.diag(np.full(30, 3e5))) == pytest.approx(expected, rel=1e-9)
    assert hsic_biased(huge, L) != pytest.approx(ref_hsic_biased(K, L), rel=1e-3)


# ---------------------------------------------------------------- properties


def score(name: str, a: np.ndarray, b: np.ndarray) -> float:
    """Metric `name` for one pair, k = 5 where it applies, as defined (no denominator epsilon)."""
    return metrics.pair_score(name, a, b, k=5, denominator_epsilon=0.0, device="cpu")


ALL_METRICS = list(METRICS)
SYMMETRIC = [name for name, spec in METRICS.items() if spec.symmetric]


@pytest.mark.parametrize("name", [name for name in ALL_METRICS if name != "cycle_knn"])
def test_self_similarity_is_one(pair, name):
    a, _ = pair
    assert score(name, a, a) == pytest.approx(1.0, abs=1e-9)


def test_cycle_knn_of_itself_counts_rows_with_a_reciprocal_neighbour(pair):
    """cycle_knn(X, X) is not 1 by PRH's definition: a row comes back only through a reciprocal edge."""
    a, _ = pair
    sets = ref_knn(a, 1)
    expected = np.mean([any(i in sets[j] for j in sets[i]) for i in range(len(a))])
    assert metrics.cycle_knn(a, a, k=1, device="cpu") == pytest.approx(expected, abs=1e-12)
    assert expected < 1.0


@pytest.mark.parametrize("name", ALL_METRICS)
def test_rotation_invariance(pair, name):
    a, b = pair
    rotation, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((a.shape[1], a.shape[1])))
    assert score(name, a @ rotation, b) == pytest.approx(score(name, a, b), abs=1e-6)


@pytest.mark.parametrize("name", ["cka", "unbiased_cka", "rbf_cka", "unbiased_rbf_cka"])
def test_cka_scale_invariance(pair, name):
    a, b = pair
    assert score(name, 7.5 * a, 0.01 * b) == pytest.approx(score(name, a, b), abs=1e-6)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_symmetric_metrics_are_symmetric(pair, name):
    a, b = pair
    assert score(name, a, b) == pytest.approx(score(name, b, a), abs=1e-9)


def test_cycle_knn_and_cknna_are_asymmetric_as_defined(pair):
    """cycle_knn by construction; CKNNA because 1'PQ1 != 1'QP1 for its unsymmetrised masks (as PRH)."""
    a, b = pair
    assert metrics.cycle_knn(a, b, k=3, device="cpu") == pytest.approx(ref_cycle_knn(a, b, 3), abs=1e-12)
    assert metrics.cycle_knn(a, b, k=3, device="cpu") != pytest.approx(metrics.cycle_knn(b, a, k=3, device="cpu"))
    forward, backward = (
        metrics.cknna(a, b, k=5, epsilon=0.0, device="cpu"),
        metrics.cknna(b, a, k=5, epsilon=0.0, device="cpu"),
    )
    assert forward == pytest.approx(ref_cknna(a, b, 5), abs=1e-6)
    assert backward == pytest.approx(ref_cknna(b, a, 5), abs=1e-6)
    assert forward != pytest.approx(backward, abs=1e-5)


def test_shuffled_rows_score_at_chance():
    rng = np.random.default_rng(5)
    n, k = 300, 10
    a = unit_rows(rng.standard_normal((n, 8)))
    b = a @ np.linalg.qr(rng.standard_normal((8, 8)))[0]  # a rotation: same neighbourhoods
    assert metrics.mutual_knn(a, b, k=k, device="cpu") == 1.0
    shuffled = [metrics.mutual_knn(a, b[rng.permutation(n)], k=k, device="cpu") for _ in range(8)]
    assert np.mean(shuffled) == pytest.approx(k / (n - 1), abs=0.006)


# ---------------------------------------------------------------- ties and edge cases


def test_ties_go_to_the_lower_index():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    lists = ranked_neighbours(lambda s, e: x[s:e] @ x.T, num_rows=6, count=3)
    # Row 0: rows 1 and 3 tie at 1.0, then row 5 (0.6); row 2: row 4 (1.0), row 5 (0.8), then 0/1/3 tie at 0.
    assert lists[0].tolist() == [1, 3, 5]
    assert lists[2].tolist() == [4, 5, 0]
    assert lists[4].tolist() == [2, 5, 0]


def test_constant_features_raise_input_error_for_every_metric():
    const = np.ones((12, 3))
    other = np.random.default_rng(6).standard_normal((12, 3))
    for name in ALL_METRICS:
        with pytest.raises(InputError, match="`b` layer 0 is constant across rows"):
            score(name, other, const)
    # Also when equal rows come out of the Gram with float32 rounding noise.
    row = unit_rows(np.random.default_rng(7).standard_normal((1, 64)))
    with pytest.raises(InputError, match="`a` layer 0 is constant"):
        metrics.cka(np.repeat(row, 30, axis=0), np.random.default_rng(8).standard_normal((30, 4)), device="cpu")


def test_constant_similarities_rank_neighbours_by_index():
    lists = ranked_neighbours(lambda s, e: torch.ones(e - s, 12), num_rows=12, count=4)
    assert lists[0].tolist() == [1, 2, 3, 4] and lists[3].tolist() == [0, 1, 2, 4]


def test_too_few_rows_raise_input_error():
    x = np.random.default_rng(7).standard_normal((10, 4))
    with pytest.raises(InputError, match="k=10 must be between 1 and N-1 = 9 for the kNN metrics on N=10 rows"):
        metrics.mutual_knn(x, x, k=10, device="cpu")
    with pytest.raises(InputError, match="N > 3"):
        metrics.cka(x[:3], x[:3], unbiased=True, device="cpu")
    with pytest.raises(InputError, match="k >= 2"):
        metrics.cknna(x, x, k=1, device="cpu")
    with pytest.raises(InputError, match="rows must be paired"):
        metrics.mutual_knn(x, x[:9], k=3, device="cpu")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_input_error(bad):
    x = np.random.default_rng(8).standard_normal((20, 4))
    y = x.copy()
    y[3, 1] = bad
    with pytest.raises(InputError, match="`b` contains NaN or Inf"):
        metrics.cka(x, y, device="cpu")
    with pytest.raises(InputError, match="`a` contains NaN or Inf"):
        metrics.mutual_knn(y, x, k=3, device="cpu")


def test_bad_arguments_raise_input_error():
    x = np.random.default_rng(9).standard_normal((20, 4))
    with pytest.raises(InputError, match="kernel='cosine'"):
        metrics.cka(x, x, kernel="cosine", device="cpu")
    with pytest.raises(InputError, match="matrix"):
        metrics.cka(x[None], x[None], device="cpu")
    with pytest.raises(InputError, match="positive integer"):
        metrics.mutual_knn(x, x, k=0, device="cpu")
