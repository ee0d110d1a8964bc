"""The resampler (probe.align.resample) against the reference path it replaces in the null and the intervals:
`ModalityState.permuted` / `restricted` then `pair_matrices`, which rebuild each resample from scratch. The same
permutations and subsets must give the same numbers: kNN metrics exactly, kernel metrics to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from alignment_helpers import one_thread  # noqa: F401  (an autouse fixture)

from probe.align.engine import pair_matrices, prepare_modalities
from probe.align.resample import Resampler, subset_neighbours
from probe.align.specs import METRICS
from probe.align.state import StateCache
from probe.align.stats import score_alignment
from probe.layer_source import ArrayLayers

DENSE = tuple(METRICS)
BLOCKED = ("mutual_knn", "cycle_knn", "jaccard_knn", "cka", "unbiased_cka", "cknna")


def stacks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """vision [n, 3, 12] and text [n, 5, 16] sharing structure at one layer pair, with a massive text dim."""
    rng = np.random.default_rng(seed)
    vision = rng.standard_normal((n, 3, 12)).astype(np.float32)
    text = rng.standard_normal((n, 5, 16)).astype(np.float32)
    text[:, 3, :12] += 2.0 * vision[:, 1, :]
    text[:, :, 0] += 30.0 * rng.standard_normal((n, 1)).astype(np.float32)
    return vision, text


def assert_same(fast: dict, reference: list[dict], metrics: tuple[str, ...]) -> None:
    for i, expected in enumerate(reference):
        for name in metrics:
            got, want = fast[name][i], expected[name]
            if name.endswith("knn"):
                assert torch.equal(got, want), name  # the same kNN sets: the same counts, exactly
            else:
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize(("path", "metrics"), [("dense", DENSE), ("blocked", BLOCKED)])
def test_permutations_equal_the_reference(path, metrics) -> None:
    vision, text = stacks(120)
    first, second = prepare_modalities(vision, text, metrics=metrics, k=6, path=path, device="cpu")
    rng = np.random.default_rng(1)
    orders = torch.as_tensor(np.stack([rng.permutation(120) for _ in range(5)]))
    fast = Resampler(first, second).permuted(orders)
    assert fast["cka"].shape == (5, 3, 5)
    assert_same(fast, [pair_matrices(first, second.permuted(order)) for order in orders], metrics)


@pytest.mark.parametrize(("path", "metrics"), [("dense", DENSE), ("blocked", BLOCKED)])
def test_subsets_equal_the_reference(path, metrics) -> None:
    vision, text = stacks(120)
    first, second = prepare_modalities(vision, text, metrics=metrics, k=6, path=path, device="cpu", spare_neighbours=12)
    rng = np.random.default_rng(2)
    subsets = torch.as_tensor(np.stack([np.sort(rng.choice(120, size=96, replace=False)) for _ in range(5)]))
    fast = Resampler(first, second).restricted(subsets)
    reference = [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets]
    assert_same(fast, reference, metrics)


def test_the_side_with_fewer_layers_is_gathered_either_way() -> None:
    """Swapping which input has fewer layers swaps which one is gathered or masked: the same numbers."""
    vision, text = stacks(90)
    first, second = prepare_modalities(text, vision, metrics=("cka", "unbiased_rbf_cka"), device="cpu")
    rng = np.random.default_rng(3)
    orders = torch.as_tensor(np.stack([rng.permutation(90) for _ in range(3)]))
    subsets = torch.as_tensor(np.stack([np.sort(rng.choice(90, size=70, replace=False)) for _ in range(3)]))
    resampler = Resampler(first, second)
    assert_same(resampler.permuted(orders), [pair_matrices(first, second.permuted(o)) for o in orders], ("cka",))
    reference = [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets]
    assert_same(resampler.restricted(subsets), reference, ("cka", "unbiased_rbf_cka"))


def test_near_ties_in_a_subset_fall_as_the_reference_decides() -> None:
    """Features on a coarse grid give many equal similarities: survivors of the ranked lists tie with the
    rows left out, and the lower-index rule (and the subset kernel's rounding) must pick the same sets."""
    rng = np.random.default_rng(4)
    vision = rng.integers(-2, 3, size=(80, 2, 3)).astype(np.float32) + np.array([5, 0, 0], dtype=np.float32)
    text = rng.integers(-2, 3, size=(80, 3, 3)).astype(np.float32) + np.array([0, 5, 0], dtype=np.float32)
    first, second = prepare_modalities(
        vision, text, metrics=("mutual_knn", "cknna"), k=5, clip_quantile=None, device="cpu", spare_neighbours=8
    )
    subsets = torch.as_tensor(np.stack([np.sort(rng.choice(80, size=60, replace=False)) for _ in range(8)]))
    for rows in subsets:
        fast, _ = subset_neighbours(first.neighbours, first.linear, rows)
        reference = first.restricted(rows).neighbours.indices
        assert torch.equal(fast.indices.sort(dim=2).values, reference.sort(dim=2).values)
    reference = [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets]
    assert_same(Resampler(first, second).restricted(subsets), reference, ("mutual_knn",))


def test_batches_of_any_size_give_the_same_scores() -> None:
    vision, text = stacks(70)
    first, second = prepare_modalities(vision, text, metrics=("cka", "unbiased_cka"), device="cpu")
    resampler = Resampler(first, second)
    rng = np.random.default_rng(5)
    orders = torch.as_tensor(np.stack([rng.permutation(70) for _ in range(4)]))
    together = resampler.permuted(orders)
    one_by_one = [resampler.permuted(order[None]) for order in orders]
    for name in ("cka", "unbiased_cka"):
        torch.testing.assert_close(together[name], torch.cat([part[name] for part in one_by_one]), rtol=1e-9, atol=0)


def test_score_alignment_null_and_intervals_equal_a_loop_over_the_reference() -> None:
    """The whole calibrated report against the null maxima and subsample maxima of the reference path, drawn
    from the same seeded streams as score_alignment draws them."""
    vision, text = stacks(100)
    settings = dict(metrics=("mutual_knn", "cka", "unbiased_cka", "cknna"), k=5, device="cpu", seed=7)
    report = score_alignment(vision, text, permutations=12, subsamples=6, **settings)
    first, second = prepare_modalities(vision, text, spare_neighbours=0, **settings)
    null_stream, subset_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(7).spawn(2))
    null = [pair_matrices(first, second.permuted(torch.as_tensor(null_stream.permutation(100)))) for _ in range(12)]
    subsets = [torch.as_tensor(np.sort(subset_stream.choice(100, size=80, replace=False))) for _ in range(6)]
    spread = [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets]
    for name, m in report.metrics.items():
        null_max = np.array([float(scores[name].max()) for scores in null])
        subset_max = np.array([float(scores[name].max()) for scores in spread])
        assert m.null_max_mean == pytest.approx(null_max.mean(), abs=1e-7)
        np.testing.assert_allclose(m.subsample_maxima, subset_max, atol=1e-7)


def test_a_state_cache_prepares_a_shared_model_once() -> None:
    """Two pairs sharing their text side: the second pair reads and prepares only its vision side, and its
    report equals one made without the cache."""
    vision, text = stacks(60)
    other = stacks(60, seed=9)[0]

    class Source(ArrayLayers):
        reads = 0

        @property
        def identity(self) -> tuple:
            return (id(self.features),)

        def layer(self, index: int):
            Source.reads += 1
            return super().layer(index)

    text_source = Source(text)
    states = StateCache(budget_bytes=2**30)
    options = dict(metrics=("mutual_knn", "cka", "cknna"), k=5, permutations=5, subsamples=3, device="cpu")
    score_alignment(Source(vision), text_source, states=states, **options)
    reads = Source.reads
    second = score_alignment(Source(other), text_source, states=states, **options)
    assert Source.reads - reads == 3  # the new vision side's 3 layers; the text side came from the cache
    assert states.hits == 1 and len(states) == 3
    plain = score_alignment(other, text, **options)
    for name, m in second.metrics.items():
        np.testing.assert_array_equal(m.matrix, plain.metrics[name].matrix)
        assert m.null_max_mean == plain.metrics[name].null_max_mean


def test_a_state_larger_than_the_budget_is_used_but_not_kept() -> None:
    vision, text = stacks(60)

    class Source(ArrayLayers):
        @property
        def identity(self) -> tuple:
            return (id(self.features),)

    states = StateCache(budget_bytes=60 * 60 * 4 * 4)  # room for the 3-layer vision side, not the 5-layer text
    score_alignment(Source(vision), Source(text), metrics=("cka",), permutations=0, subsamples=0, states=states)
    assert len(states) == 1 and states.nbytes <= states.budget_bytes


def test_kNN_metrics_of_stacked_re_pairings_equal_one_at_a_time() -> None:
    """The GPU's way (re-pairings stacked as layers of one second side) gives the CPU's way's numbers."""
    vision, text = stacks(90)
    first, second = prepare_modalities(vision, text, metrics=("mutual_knn", "cycle_knn", "cknna"), k=5, device="cpu")
    resampler = Resampler(first, second)
    rng = np.random.default_rng(6)
    orders = torch.as_tensor(np.stack([rng.permutation(90) for _ in range(4)]))
    stacked = resampler._permuted_knn(orders, resampler.knn_specs)
    for i, order in enumerate(orders):
        reference = pair_matrices(first, second.permuted(order))
        for name in ("mutual_knn", "cycle_knn"):
            assert torch.equal(stacked[name][i], reference[name]), name
        torch.testing.assert_close(stacked["cknna"][i], reference["cknna"], rtol=1e-12, atol=1e-14)


KNN_MASKED = ("mutual_knn", "jaccard_knn", "cycle_knn", "cknna")


@pytest.mark.parametrize("swap", [False, True])
def test_kNN_metrics_from_masks_equal_the_reference_whichever_side_is_asked(swap) -> None:
    """The masks belong to the side with more layers and the other side's edges are asked of them: with the
    inputs swapped, the first side is the one asked, and CKNNA's asymmetry and jaccard's rows must follow."""
    vision, text = stacks(110, seed=3)
    first_input, second_input = (text, vision) if swap else (vision, text)
    first, second = prepare_modalities(
        first_input, second_input, metrics=KNN_MASKED, k=6, device="cpu", spare_neighbours=12
    )
    resampler = Resampler(first, second)
    assert [spec.name for spec in resampler.masked_specs] == ["mutual_knn", "jaccard_knn", "cknna"]
    assert resampler.query_is_first is not swap
    rng = np.random.default_rng(8)
    orders = torch.as_tensor(np.stack([rng.permutation(110) for _ in range(4)]))
    subsets = torch.as_tensor(np.stack([np.sort(rng.choice(110, size=88, replace=False)) for _ in range(4)]))
    assert_same(resampler.permuted(orders), [pair_matrices(first, second.permuted(o)) for o in orders], KNN_MASKED)
    reference = [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets]
    assert_same(resampler.restricted(subsets), reference, KNN_MASKED)


def test_re_pairings_split_into_batches_give_the_same_kNN_scores(monkeypatch) -> None:
    vision, text = stacks(70)
    first, second = prepare_modalities(vision, text, metrics=("mutual_knn", "cknna"), k=5, device="cpu")
    rng = np.random.default_rng(9)
    orders = torch.as_tensor(np.stack([rng.permutation(70) for _ in range(5)]))
    together = Resampler(first, second).permuted(orders)
    monkeypatch.setattr("probe.align.resample.MASK_BATCH_ENTRIES", 2 * 3 * 5 * 70)  # two re-pairings a batch
    split = Resampler(first, second).permuted(orders)
    assert torch.equal(together["mutual_knn"], split["mutual_knn"])
    torch.testing.assert_close(together["cknna"], split["cknna"], rtol=1e-12, atol=1e-14)
