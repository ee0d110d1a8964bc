"""Chance levels, the permutation null of the max, subsample intervals and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from alignment_helpers import one_thread  # noqa: F401  (an autouse fixture)

from probe.align import stats
from probe.align.engine import pair_matrices, prepare_modalities
from probe.align.resample import Resampler
from probe.align.stats import (
    cycle_knn_chance,
    cycle_knn_regular_chance,
    jaccard_knn_chance,
    jackknife_interval,
    mutual_knn_chance,
    score_alignment,
)
from probe.errors import InputError


def independent(n: int, seed: int, layers: tuple[int, int] = (2, 3)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, layers[0], 6)), rng.standard_normal((n, layers[1], 7))


def planted(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Text layer 1 is a noisy linear image of vision layer 0."""
    vision, text = independent(n, seed)
    rng = np.random.default_rng(seed + 100)
    text[:, 1] = vision[:, 0] @ rng.standard_normal((6, 7)) + 0.5 * rng.standard_normal((n, 7))
    return vision, text


# ---------------------------------------------------------------- chance levels


def null_scores_at(name: str, vision, text, *, k: int, permutations: int, seed: int) -> np.ndarray:
    """A metric's score for (vision layer 0, text layer 0) under `permutations` random pairings."""
    first, second = prepare_modalities(vision, text, metrics=(name,), k=k, device="cpu")
    rng = np.random.default_rng(seed)
    orders = (torch.as_tensor(rng.permutation(len(text))) for _ in range(permutations))
    return np.array([float(pair_matrices(first, second.permuted(order))[name][0, 0]) for order in orders])


def test_mutual_and_jaccard_chance_are_exact_hypergeometric_means():
    assert mutual_knn_chance(num_rows=1024, k=10) == pytest.approx(10 / 1023)
    probabilities = stats._overlap_probabilities(num_rows=50, k=6)
    assert probabilities.sum() == pytest.approx(1.0)
    assert (probabilities * np.arange(7)).sum() / 6 == pytest.approx(mutual_knn_chance(num_rows=50, k=6))
    assert jaccard_knn_chance(num_rows=50, k=6) < mutual_knn_chance(num_rows=50, k=6)


@pytest.mark.parametrize(
    "name,chance",
    [
        ("mutual_knn", lambda n, k, first: mutual_knn_chance(num_rows=n, k=k)),
        ("jaccard_knn", lambda n, k, first: jaccard_knn_chance(num_rows=n, k=k)),
        ("cycle_knn", lambda n, k, first: cycle_knn_chance(torch.bincount(first.flatten(), minlength=n).numpy(), k=k)),
    ],
)
def test_chance_levels_match_the_permutation_mean(name, chance):
    n, k = 60, 5
    vision, text = independent(n, seed=1)
    first, _ = prepare_modalities(vision, text, metrics=(name,), k=k, device="cpu")
    scores = null_scores_at(name, vision, text, k=k, permutations=400, seed=2)
    expected = chance(n, k, first.neighbours.indices[0])
    assert scores.mean() == pytest.approx(expected, abs=4 * scores.std() / math.sqrt(len(scores)))


def test_cycle_chance_is_lower_with_hubs():
    n, k = 100, 5
    regular = cycle_knn_regular_chance(num_rows=n, k=k)
    hubs = np.zeros(n)
    hubs[:5] = n * k / 5  # five rows are everybody's neighbours
    assert cycle_knn_chance(np.full(n, k), k=k) == pytest.approx(regular)
    assert cycle_knn_chance(hubs, k=k) < 0.5 * regular
    assert regular == pytest.approx(1 - math.comb(n - 1 - k, k) / math.comb(n - 1, k))


# ---------------------------------------------------------------- permutation null


def test_planted_alignment_has_the_smallest_p_value():
    vision, text = planted()
    report = score_alignment(
        vision,
        text,
        metrics=("mutual_knn", "cka", "unbiased_cka", "cknna"),
        k=5,
        permutations=99,
        subsamples=0,
        device="cpu",
    )
    for name, result in report.metrics.items():
        assert result.best_pair == (0, 1), name
        assert result.p_value == pytest.approx(0.01), name
        assert result.calibrated_score > 0.1, name
        assert result.z_score > 5, name


def test_independent_data_give_spread_out_p_values():
    p_values, calibrated = [], []
    for seed in range(12):
        report = score_alignment(
            *independent(50, seed=10 + seed), metrics=("mutual_knn",), k=5, permutations=39, subsamples=0, device="cpu"
        )
        p_values.append(report.metrics["mutual_knn"].p_value)
        calibrated.append(report.metrics["mutual_knn"].calibrated_score)
    p_values = np.array(p_values)
    assert 0.25 < p_values.mean() < 0.75
    assert (p_values <= 0.05).sum() <= 2 and p_values.max() > 0.5
    assert np.abs(calibrated).max() < 0.05


def test_null_is_of_the_max_over_pairs():
    """With 6 pairs the null max sits above the single-pair chance level; a best-pair-only null would not."""
    report = score_alignment(
        *independent(60, seed=3), metrics=("mutual_knn",), k=5, permutations=60, subsamples=0, device="cpu"
    )
    result = report.metrics["mutual_knn"]
    assert result.chance_level == pytest.approx(5 / 59)
    assert result.null_max_mean > result.chance_level + 2 * result.null_max_std / math.sqrt(60)


def test_kernel_chance_comes_from_the_null_and_needs_permutations():
    vision, text = independent(40, seed=4)
    with_null = score_alignment(vision, text, metrics=("cka",), permutations=20, subsamples=0, device="cpu").metrics[
        "cka"
    ]
    without = score_alignment(vision, text, metrics=("cka",), permutations=0, subsamples=0, device="cpu").metrics["cka"]
    assert with_null.chance_source == "null" and 0 < with_null.chance_level < with_null.null_max_mean
    assert without.chance_source == "unavailable" and without.chance_level is None and without.p_value is None


# ---------------------------------------------------------------- subsample intervals


def test_jackknife_interval_recovers_the_sampling_spread_of_a_mean():
    rng = np.random.default_rng(5)
    sample = rng.standard_normal(400)
    subsets = np.array([rng.choice(sample, size=320, replace=False).mean() for _ in range(2000)])
    low, high = jackknife_interval(float(sample.mean()), subsets, fraction=0.8, confidence=0.95)
    assert low < sample.mean() < high
    # The sampling sd of a mean of 400 standard normals is 0.05: the interval is about +-1.96 of it.
    assert high - low == pytest.approx(2 * 1.96 * 0.05, rel=0.1)


def test_subsamples_draw_distinct_rows(monkeypatch):
    drawn = []
    original = Resampler.restricted

    def spy(self, rows):
        drawn.extend(rows.clone())
        return original(self, rows)

    monkeypatch.setattr(Resampler, "restricted", spy)
    report = score_alignment(*planted(50), metrics=("mutual_knn",), k=5, permutations=0, subsamples=7, device="cpu")
    assert len(drawn) == 7
    for rows in drawn:
        assert rows.numel() == 40 and rows.unique().numel() == 40 and bool((rows[1:] > rows[:-1]).all())
    assert len({tuple(rows.tolist()) for rows in drawn}) == 7
    low, high = report.metrics["mutual_knn"].max_interval
    assert low < report.metrics["mutual_knn"].best_score < high


# ---------------------------------------------------------------- determinism, report, settings


def test_a_seed_fixes_every_number_and_streams_are_independent():
    data = planted(60)
    kwargs = dict(metrics=("mutual_knn", "cycle_knn"), k=5, subsamples=6, device="cpu")
    first = score_alignment(*data, permutations=15, seed=7, **kwargs).to_dict()
    again = score_alignment(*data, permutations=15, seed=7, **kwargs).to_dict()
    other = score_alignment(*data, permutations=15, seed=8, **kwargs).to_dict()
    fewer = score_alignment(*data, permutations=5, seed=7, **kwargs).to_dict()
    assert first == again
    assert first["metrics"]["mutual_knn"]["null_max_mean"] != other["metrics"]["mutual_knn"]["null_max_mean"]
    assert first["metrics"]["mutual_knn"]["max_interval"] == fewer["metrics"]["mutual_knn"]["max_interval"]


def test_report_is_json_safe_and_complete():
    seen = []
    report = score_alignment(
        *planted(40),
        metrics=("mutual_knn", "unbiased_cka"),
        k=4,
        permutations=5,
        subsamples=3,
        device="cpu",
        progress=lambda done, total, what: seen.append((what, done, total)),
    )
    data = json.loads(json.dumps(report.to_dict()))
    settings = data["settings"]
    assert settings["num_rows"] == 40 and settings["k"] == 4 and settings["permutations"] == 5
    assert settings["subsample_rows"] == 32 and settings["seed"] == 0 and settings["path"] == "dense"
    assert settings["vision_clip"] > 0 and settings["metrics"] == ["mutual_knn", "unbiased_cka"]
    assert settings["denominator_epsilon"] == 1e-6  # PRH's, the default everywhere
    entry = data["metrics"]["mutual_knn"]
    assert np.array(entry["matrix"]).shape == (2, 3)
    assert entry["best_score"] == max(max(row) for row in entry["matrix"])
    assert entry["chance_source"] == "exact" and len(entry["best_pair_interval"]) == 2
    assert ("permutation null", 5, 5) in seen and ("subsamples", 3, 3) in seen


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(subsample_fraction=1.0), "subsample_fraction=1.0"),
        (dict(subsample_fraction=0.05), "keeps 2 of 40 rows"),
        (dict(permutations=-1), "permutations=-1"),
        (dict(confidence=95), "confidence=95"),
    ],
)
def test_bad_settings_raise_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        score_alignment(*planted(40), **kwargs, device="cpu")


def test_blocked_path_reports_the_same_as_dense():
    data = planted(90, seed=6)
    kwargs = dict(
        metrics=("mutual_knn", "cycle_knn", "cka", "unbiased_cka"), k=5, permutations=10, subsamples=5, device="cpu"
    )
    dense = score_alignment(*data, path="dense", **kwargs).to_dict()["metrics"]
    blocked = score_alignment(*data, path="blocked", **kwargs).to_dict()["metrics"]
    for name in dense:
        for key in ("best_score", "null_max_mean", "p_value", "chance_level"):
            assert blocked[name][key] == pytest.approx(dense[name][key], abs=1e-6), (name, key)
        np.testing.assert_allclose(blocked[name]["max_interval"], dense[name]["max_interval"], atol=1e-6)
