"""All layer pairs at once: equal to per-pair scoring, PRH preprocessing, layer sources, paths, reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from alignment_helpers import one_thread  # noqa: F401  (an autouse fixture)

from probe import metrics
from probe.align import engine as align
from probe.align import hsic, knn
from probe.align.engine import alignment_matrices, alignment_matrix, pair_matrices, prepare_modalities
from probe.align.specs import METRICS
from probe.errors import InputError

BLOCKED_METRICS = ("mutual_knn", "cycle_knn", "jaccard_knn", "cka", "unbiased_cka", "cknna")
ALL_METRICS = tuple(METRICS)


def make_stacks(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """vision [n, 3, 10], text [n, 4, 14]: text layer 2 shares structure with vision layer 1; a few
    'massive activation' dims make the clamp matter."""
    rng = np.random.default_rng(seed)
    vision = rng.standard_normal((n, 3, 10)).astype(np.float32)
    text = rng.standard_normal((n, 4, 14)).astype(np.float32)
    text[:, 2, :10] += 4.0 * vision[:, 1, :]
    text[:, :, 0] += 40.0 * rng.standard_normal((n, 1)).astype(np.float32)
    vision[:, 0, 3] *= 25.0
    return vision, text


def prh_prepare(stack: np.ndarray, quantile: float | None) -> list[np.ndarray]:
    """PRH's preprocessing written out in numpy: per-sample quantile of |x|, mean, clamp, L2 rows."""
    x = stack.astype(np.float64)
    if quantile is not None:
        level = np.quantile(np.abs(x).reshape(len(x), -1), quantile, axis=1).mean()
        x = np.clip(x, -level, level)
    return [x[:, i] / np.linalg.norm(x[:, i], axis=1, keepdims=True) for i in range(x.shape[1])]


@pytest.fixture(scope="module")
def stacks():
    return make_stacks()


@pytest.fixture(scope="module")
def all_matrices(stacks):
    vision, text = stacks
    return alignment_matrices(vision, text, metrics=ALL_METRICS, k=5, device="cpu")


@pytest.mark.parametrize("name", ALL_METRICS)
def test_all_pairs_equal_per_pair_scores(stacks, all_matrices, name):
    vision, text = stacks
    layers_v, layers_t = prh_prepare(vision, 0.95), prh_prepare(text, 0.95)
    expected = np.array([[metrics.pair_score(name, a, b, k=5, device="cpu") for b in layers_t] for a in layers_v])
    tolerance = 1e-6 if name.endswith("knn") else 1e-5
    assert all_matrices[name].shape == (3, 4)
    np.testing.assert_allclose(all_matrices[name], expected, atol=tolerance)


def test_planted_pair_is_the_best(all_matrices):
    for name, matrix in all_matrices.items():
        assert np.unravel_index(np.argmax(matrix), matrix.shape) == (1, 2), name


def test_clip_threshold_is_prh_and_none_turns_it_off(stacks):
    vision, text = stacks
    vision_state, text_state = prepare_modalities(vision, text, metrics=("cka",), device="cpu")
    expected = np.quantile(np.abs(text.astype(np.float64)).reshape(len(text), -1), 0.95, axis=1).mean()
    assert text_state.clip == pytest.approx(expected, rel=1e-6)
    unclipped = alignment_matrix(vision, text, metric="cka", clip_quantile=None, device="cpu")
    layers_v, layers_t = prh_prepare(vision, None), prh_prepare(text, None)
    expected_cka = [[metrics.cka(a, b, device="cpu") for b in layers_t] for a in layers_v]
    np.testing.assert_allclose(unclipped, expected_cka, atol=1e-5)
    clipped = alignment_matrix(vision, text, metric="cka", device="cpu")
    assert np.abs(unclipped - clipped).max() > 0.01  # the outlier dims matter, as in PRH


def test_without_normalising_rows_the_inputs_are_used_as_given(stacks):
    vision, text = stacks
    raw = alignment_matrix(vision, text, metric="mutual_knn", k=5, clip_quantile=None, normalize=False, device="cpu")
    expected = [[metrics.mutual_knn(vision[:, a], text[:, b], k=5, device="cpu") for b in range(4)] for a in range(3)]
    np.testing.assert_allclose(raw, expected, atol=1e-12)


class CountingSource:
    """A feature-cache stand-in: hands out layers [N, D] float32 and counts reads."""

    def __init__(self, stack: np.ndarray) -> None:
        self.stack, self.reads = stack, [0] * stack.shape[1]
        self.num_layers, self.num_rows = stack.shape[1], stack.shape[0]

    def layer(self, index: int) -> np.ndarray:
        self.reads[index] += 1
        return np.ascontiguousarray(self.stack[:, index])


def test_layer_sources_read_each_layer_once_and_match_arrays(stacks, all_matrices):
    vision, text = stacks
    sources = CountingSource(vision), CountingSource(text)
    from_sources = alignment_matrices(*sources, metrics=ALL_METRICS, k=5, device="cpu")
    assert sources[0].reads == [1, 1, 1] and sources[1].reads == [1, 1, 1, 1]
    from_tensors = alignment_matrices(
        torch.from_numpy(vision), torch.from_numpy(text), metrics=ALL_METRICS, k=5, device="cpu"
    )
    for name in ALL_METRICS:
        np.testing.assert_array_equal(from_sources[name], all_matrices[name])
        np.testing.assert_array_equal(from_tensors[name], all_matrices[name])


def test_same_inputs_give_the_same_numbers(stacks, all_matrices):
    again = alignment_matrices(*stacks, metrics=ALL_METRICS, k=5, device="cpu")
    for name in ALL_METRICS:
        np.testing.assert_array_equal(again[name], all_matrices[name])


@pytest.fixture
def small_blocks(monkeypatch):
    """Force several kNN row blocks, feature chunks, kernel slabs, cross-product passes and the
    sorted-key edge lookups."""
    monkeypatch.setattr(knn, "SIMILARITY_BLOCK_BYTES", 4 * 150 * 37)
    monkeypatch.setattr(knn, "BITMAP_MAX_ROWS", 16)
    monkeypatch.setattr(hsic, "FEATURE_CHUNK_ROWS", 41)
    monkeypatch.setattr(hsic, "KERNEL_SLAB_ENTRIES", 3000)
    monkeypatch.setattr(hsic, "CROSS_PRODUCT_BUDGET_BYTES", 8 * 14 * 14 * 3)


def test_blocked_path_equals_dense_path(small_blocks):
    vision, text = make_stacks(n=150, seed=1)
    dense = alignment_matrices(vision, text, metrics=BLOCKED_METRICS, k=7, path="dense", device="cpu")
    blocked = alignment_matrices(vision, text, metrics=BLOCKED_METRICS, k=7, path="blocked", device="cpu")
    for name in BLOCKED_METRICS:
        tolerance = 0 if name.endswith("knn") else 1e-6
        np.testing.assert_allclose(blocked[name], dense[name], atol=tolerance, rtol=0)


def test_permuted_state_equals_recomputing_on_permuted_rows(stacks):
    vision, text = stacks
    order = np.random.default_rng(2).permutation(len(text))
    first, second = prepare_modalities(vision, text, metrics=ALL_METRICS, k=5, device="cpu")
    reused = pair_matrices(first, second.permuted(torch.as_tensor(order)))
    recomputed = alignment_matrices(vision, text[order], metrics=ALL_METRICS, k=5, device="cpu")
    for name in ALL_METRICS:
        np.testing.assert_allclose(reused[name].numpy(), recomputed[name], atol=1e-6)


@pytest.mark.parametrize("path,spare", [("dense", 0), ("blocked", 30), ("blocked", 0)])
def test_restricted_state_equals_recomputing_on_the_subset(small_blocks, path, spare):
    """Row subsets reuse the per-layer work; spare=0 makes every blocked row fall back to recomputing."""
    vision, text = make_stacks(n=150, seed=3)
    names = ALL_METRICS if path == "dense" else BLOCKED_METRICS
    rows = np.sort(np.random.default_rng(4).choice(150, size=120, replace=False))
    first, second = prepare_modalities(
        vision, text, metrics=names, k=7, path=path, spare_neighbours=spare, rbf_sigma=0.9, device="cpu"
    )
    chosen = torch.as_tensor(rows)
    reused = pair_matrices(first.restricted(chosen), second.restricted(chosen))
    # A subset keeps the full data's clamp level (and RBF bandwidth), as the subsampling does.
    expected_inputs = [
        np.clip(stack, -state.clip, state.clip)[rows] for stack, state in ((vision, first), (text, second))
    ]
    recomputed = alignment_matrices(
        *expected_inputs, metrics=names, k=7, clip_quantile=None, path=path, rbf_sigma=0.9, device="cpu"
    )
    for name in names:
        np.testing.assert_allclose(reused[name].numpy(), recomputed[name], atol=1e-6)


def test_dense_only_metrics_refuse_the_blocked_path(stacks, monkeypatch):
    vision, text = stacks
    with pytest.raises(InputError, match="rbf_cka need N x N kernels"):
        alignment_matrices(vision, text, metrics=("mutual_knn", "rbf_cka"), path="blocked", device="cpu")
    monkeypatch.setattr(align, "free_memory_bytes", lambda device: 2500)  # a budget of 1000 bytes
    with pytest.raises(InputError, match="rbf_cka need N x N kernels.*path='dense' to force"):
        alignment_matrices(vision, text, metrics=("rbf_cka",), device="cpu")
    vision_state, _ = prepare_modalities(vision, text, metrics=("mutual_knn", "cka"), device="cpu")
    assert vision_state.plan.path == "blocked"
    forced = alignment_matrix(vision, text, metric="rbf_cka", path="dense", device="cpu")
    assert forced.shape == (3, 4)


def test_input_errors_name_the_problem(stacks):
    vision, text = stacks
    with pytest.raises(InputError, match="Did you mean 'mutual_knn'"):
        alignment_matrix(vision, text, metric="mutual_kn", device="cpu")
    with pytest.raises(InputError, match="`vision` has 60 rows but `text` has 59"):
        alignment_matrix(vision, text[:59], device="cpu")
    with pytest.raises(InputError, match=r"`text` must be an array \[N, L, D\]"):
        alignment_matrix(vision, text[:, 0], device="cpu")
    broken = text.copy()
    broken[5, 2, 1] = np.nan
    with pytest.raises(InputError, match="`text layer 2` contains NaN or Inf"):
        alignment_matrix(vision, broken, device="cpu")
    with pytest.raises(InputError, match="clip_quantile=1.5"):
        alignment_matrix(vision, text, clip_quantile=1.5, device="cpu")
    with pytest.raises(InputError, match="path='sparse'"):
        alignment_matrix(vision, text, path="sparse", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="device='gpu7'"):
        alignment_matrix(vision, text, device="gpu7")


def test_progress_reports_every_layer(stacks):
    seen = []
    alignment_matrices(
        *stacks, metrics=("cka",), device="cpu", progress=lambda done, total, what: seen.append((what, done, total))
    )
    assert ("prepare vision", 3, 3) in seen and ("kernels text", 4, 4) in seen
    assert [done for what, done, _ in seen if what == "kernels vision"] == [1, 2, 3]


def test_clamp_level_counts_the_left_out_layers_as_prh_does():
    """PRH computes the clamp level over every stored layer; a stack that leaves a constant layer out of the
    max still counts it in the clamp (a cache's LayerStack hands it over through clamp_extra_layers)."""
    from probe.align.prep import clip_threshold, prepare_layers

    rng = np.random.default_rng(5)
    all_layers = rng.standard_normal((40, 3, 8)).astype(np.float32)
    all_layers[:, 0, :] = 9.0  # a constant, large first layer: it raises every row's 0.95 quantile

    class Kept:
        num_layers, num_rows = 2, 40

        def layer(self, i):
            return all_layers[:, i + 1]

        def clamp_extra_layers(self):
            return [all_layers[:, 0]]

    prepared = prepare_layers(Kept(), name="v", clip_quantile=0.95, normalize=False, device=torch.device("cpu"))
    every = [torch.as_tensor(all_layers[:, i]) for i in range(3)]
    assert prepared.clip == pytest.approx(clip_threshold(every, quantile=0.95))
    kept_only = clip_threshold(every[1:], quantile=0.95)
    assert prepared.clip > kept_only * 1.5  # the left-out layer changes the level, as in PRH
