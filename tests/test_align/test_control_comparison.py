"""A model beside its best control: the paired interval of the difference in calibrated scores, computed on the
same subsamples for both, and the verdict it gives."""

from __future__ import annotations

import numpy as np
import pytest

from probe.align.settings import AlignSettings
from probe.align.stats import compare_with_control, score_alignment
from probe.runs.controls import compare_to_controls, control_names

SETTINGS = AlignSettings(metrics=("mutual_knn", "cka"), k=5, permutations=30, subsamples=30, device="cpu")


def _features(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text [N, 2, 16], a vision side that shares its geometry [N, 2, 24], an unrelated one [N, 2, 24])."""
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, 2, 16))
    mixing = rng.standard_normal((16, 24))
    related = text @ mixing + 0.5 * rng.standard_normal((n, 2, 24))
    unrelated = rng.standard_normal((n, 2, 24))
    return text.astype(np.float32), related.astype(np.float32), unrelated.astype(np.float32)


def test_a_model_identical_to_its_control_is_never_called_above() -> None:
    text, related, _ = _features(0)
    model = score_alignment(related, text, SETTINGS)
    control = score_alignment(related.copy(), text, SETTINGS)  # the same features under another name
    for metric in SETTINGS.metrics:
        c = compare_with_control(model.metrics[metric], control.metrics[metric], fraction=0.8, confidence=0.95)
        assert c.difference == 0.0 and c.interval == (0.0, 0.0) and c.above is False


def test_a_model_sharing_the_text_geometry_is_above_an_unrelated_control() -> None:
    text, related, unrelated = _features(1)
    model = score_alignment(related, text, SETTINGS)
    control = score_alignment(unrelated, text, SETTINGS)
    for metric in SETTINGS.metrics:
        c = compare_with_control(model.metrics[metric], control.metrics[metric], fraction=0.8, confidence=0.95)
        assert c.difference > 0.1 and c.interval[0] > 0 and c.above is True
        # Paired: the same rows in subsample s for both, so the interval is the model's spread around the
        # difference, not the sum of two independent spreads.
        assert c.interval[0] <= c.difference <= c.interval[1]


def test_the_best_control_is_the_one_with_the_highest_calibrated_score() -> None:
    text, related, unrelated = _features(2)
    reports = {
        ("m", "t"): score_alignment(related, text, SETTINGS),
        ("weak", "t"): score_alignment(unrelated, text, SETTINGS),
        ("strong", "t"): score_alignment(related[:, ::-1].copy(), text, SETTINGS),
    }
    rows = compare_to_controls(reports, {"m": ["weak", "strong"]}, settings=SETTINGS)
    assert [(r.metric, r.control) for r in rows] == [("mutual_knn", "strong"), ("cka", "strong")]
    assert all(r.comparison.above is False for r in rows)  # the strong control has the same geometry


def test_random_init_stands_for_each_models_own_twin() -> None:
    assert control_names(["pixels-16", "random-init"], ["a", "pixels-16"]) == {
        "a": ["pixels-16", "random-init:a"],
        "pixels-16": [],
    }


def test_unequal_subsample_counts_are_refused() -> None:
    text, related, _ = _features(3)
    a = score_alignment(related, text, SETTINGS)
    b = score_alignment(related, text, SETTINGS, subsamples=10)
    from probe.errors import InputError

    with pytest.raises(InputError, match="same settings"):
        compare_with_control(a.metrics["cka"], b.metrics["cka"], fraction=0.8, confidence=0.95)


def test_a_comparison_read_back_from_json_is_the_one_made_in_memory() -> None:
    """`MetricReport.from_dict` undoes `to_dict` through JSON, so a report can pair models from results files
    with the same `compare_with_control` the runs use."""
    import json

    from probe.align.stats import MetricReport

    text, related, unrelated = _features(3)
    model, control = (score_alignment(v, text, SETTINGS) for v in (related, unrelated))
    for metric in SETTINGS.metrics:
        back = [
            MetricReport.from_dict(
                {**json.loads(json.dumps(r.metrics[metric].to_dict())), "best_hidden_states": [1, 1]}
            )
            for r in (model, control)
        ]
        for original, read in zip((model.metrics[metric], control.metrics[metric]), back):
            assert read.to_dict() == original.to_dict()
        assert compare_with_control(*back, fraction=0.8, confidence=0.95) == compare_with_control(
            model.metrics[metric], control.metrics[metric], fraction=0.8, confidence=0.95
        )
