"""Linear probes: planted structure is found, controls sit at chance, results repeat, bad input fails
with InputError, and the ridge shortcuts agree with scikit-learn's direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    r2_score,
    roc_auc_score,
)

from probe.errors import InputError
from probe.linear import (
    CrossmodalProbeResult,
    LabelProbeResult,
    MultiLabelProbeResult,
    ProbeSettings,
    ProbeTask,
    crossmodal_probe,
    label_probe,
    probe_layers,
)
from probe.linear.base import random_split, standardiser, stratified_split
from probe.linear.crossmodal import retrieval_ranks
from probe.linear.ranking import auroc, average_precision, best_f1_threshold, f1_at
from probe.linear.ridge import fit_ridge_loo, ridge_basis


def planted_classes(
    *, n: int = 240, dim: int = 40, classes: int = 4, strength: float = 1.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Features [n, dim] whose class means differ along random directions; labels [n]."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    means = rng.normal(size=(classes, dim)) * strength / np.sqrt(dim) * 3
    return rng.normal(size=(n, dim)) + means[labels], labels


def planted_pairs(
    *, n: int = 200, dim_x: int = 30, dim_y: int = 20, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Vision-like x [n, dim_x] and text-like y = x W + noise [n, dim_y]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim_x))
    y = x @ rng.normal(size=(dim_x, dim_y)) / np.sqrt(dim_x) + noise * rng.normal(size=(n, dim_y))
    return x, y


# ---------------------------------------------------------------- class labels


def test_label_probe_finds_planted_classes_and_control_is_at_chance() -> None:
    features, labels = planted_classes()
    result = label_probe(features, labels, seed=0)
    assert isinstance(result, LabelProbeResult)
    assert result.accuracy >= 0.9
    assert result.balanced_accuracy >= 0.9 and result.macro_f1 >= 0.9
    assert result.chance_rate == pytest.approx(0.25)
    assert result.majority_rate == pytest.approx(0.25, abs=0.05)
    assert result.chosen_c in result.settings.c_grid
    assert result.n_train + result.n_val + result.n_test == len(labels)
    # Shuffled labels: over a few seeds the control's accuracy averages to chance.
    controls = [label_probe(features, labels, seed=s).control_accuracy for s in range(4)]
    assert np.mean(controls) == pytest.approx(0.25, abs=0.08)


def test_label_probe_accepts_string_labels_and_reports_classes() -> None:
    features, labels = planted_classes(classes=3, n=150)
    names = np.array(["cat", "dog", "eel"])[labels]
    result = label_probe(features, names, seed=1)
    assert result.classes == ["cat", "dog", "eel"]
    assert result.accuracy >= 0.9


def test_majority_rate_follows_the_largest_class() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0] * 140 + [1] * 40 + [2] * 20)
    result = label_probe(rng.normal(size=(200, 10)), labels, seed=0)
    assert result.majority_rate == pytest.approx(0.7, abs=0.03)
    # Without signal the probe can only do about as well as the majority answer.
    assert result.accuracy <= result.majority_rate + 0.1


def test_label_probe_repeats_for_a_seed_and_changes_with_it() -> None:
    features, labels = planted_classes(strength=0.4)
    first = label_probe(features, labels, seed=7).to_dict()
    assert first == label_probe(features, labels, seed=7).to_dict()
    assert first != label_probe(features, labels, seed=8).to_dict()
    json.dumps(first, allow_nan=False)


def test_stratified_split_keeps_every_class_in_every_part() -> None:
    codes = np.repeat(np.arange(5), [3, 4, 10, 50, 7])
    split = stratified_split(codes, test_fraction=0.2, val_fraction=0.2, seed=0)
    parts = [split.train, split.val, split.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(codes)))
    for part in parts:
        assert set(codes[part]) == set(range(5))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros(30, dtype=int), "single class"),
        (np.array([0] * 28 + [1] * 2), "fewer than 3 rows"),
        (np.arange(29) % 2, "29 rows but the features have 30"),
        (np.array([0.0, np.nan] * 15), "missing value"),
        (np.array(["a", None] * 15, dtype=object), "mixes types"),
    ],
)
def test_label_probe_rejects_bad_labels(labels: np.ndarray, message: str) -> None:
    features = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(InputError, match=message):
        label_probe(features, labels)


def test_probes_reject_nan_features_and_bad_settings() -> None:
    features, labels = planted_classes(n=30)
    features[4, 2] = np.nan
    with pytest.raises(InputError, match="NaN or infinite values in 1 row.*first row 4"):
        label_probe(features, labels)
    with pytest.raises(InputError, match="must be a non-empty"):
        label_probe(np.zeros(30), labels)
    with pytest.raises(InputError, match="test_fraction"):
        ProbeSettings(test_fraction=0.6, val_fraction=0.5)
    with pytest.raises(InputError, match="c_grid"):
        ProbeSettings(c_grid=(1.0, -1.0))


# ---------------------------------------------------------------- multi-label (caption words)


def planted_words(*, n: int = 300, dim: int = 20, words: int = 5, seed: int = 0):
    """Features [n, dim] and binary targets [n, words]: each word fires where a direction is high."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, dim))
    targets = features[:, :words] + 0.3 * rng.normal(size=(n, words)) > 0.8
    return features, targets


def test_multilabel_probe_finds_planted_words_and_control_is_at_chance() -> None:
    features, targets = planted_words()
    names = ["sky", "dog", "tree", "car", "sea"]
    result = label_probe(features, targets, names=names, seed=0)
    assert isinstance(result, MultiLabelProbeResult)
    assert [w.word for w in result.probe.words] == names
    assert result.probe.macro_auroc >= 0.9 and result.probe.n_words_scored == 5
    for word in result.probe.words:
        assert word.average_precision > word.base_rate + 0.3
        assert word.f1 > word.f1_baseline
    assert result.probe.macro_f1 > result.probe.macro_f1_baseline + 0.2
    assert result.control.macro_auroc == pytest.approx(0.5, abs=0.1)
    assert result.control.macro_average_precision == pytest.approx(result.control.macro_base_rate, abs=0.1)
    json.dumps(result.to_dict(), allow_nan=False)


def test_multilabel_probe_handles_a_word_absent_from_training_rows() -> None:
    features, targets = planted_words(words=2)
    split = random_split(len(features), test_fraction=0.2, val_fraction=0.0, seed=0)
    rare = np.zeros(len(features), dtype=bool)
    rare[split.test[:3]] = True  # positive only in test rows: the probe cannot learn it
    result = label_probe(features, np.column_stack([targets, rare]), seed=0)
    rare_score = result.probe.words[2]
    assert rare_score.n_positive_test == 3
    assert rare_score.auroc == pytest.approx(0.5)  # constant prediction
    assert result.probe.words[0].auroc > 0.9


@pytest.mark.parametrize("levels", [None, 4])  # continuous scores, and scores with many ties
def test_ranking_scores_match_scikit_learn(levels: int | None) -> None:
    rng = np.random.default_rng(levels or 0)
    truth = rng.random(200) < 0.2
    scores = truth * 0.8 + rng.normal(size=200)
    if levels:
        scores = np.round(scores * levels / 4)
    assert auroc(truth, scores) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)
    threshold = best_f1_threshold(truth, scores)
    precision, recall, _ = precision_recall_curve(truth, scores)
    with np.errstate(invalid="ignore"):
        best_f1 = np.nanmax(2 * precision * recall / (precision + recall))
    assert f1_at(truth, scores, threshold) == pytest.approx(best_f1, abs=1e-12)
    assert f1_at(truth, scores, threshold) == pytest.approx(f1_score(truth, scores >= threshold))
    assert auroc(truth, np.zeros(200)) == 0.5
    assert best_f1_threshold(np.zeros(5, dtype=bool), np.arange(5.0)) == np.inf


def test_multilabel_probe_rejects_non_binary_targets() -> None:
    features, targets = planted_words()
    with pytest.raises(InputError, match="0/1"):
        label_probe(features, targets * 2.5)
    with pytest.raises(InputError, match="names has 1 entries"):
        label_probe(features, targets, names=["only"])


# ---------------------------------------------------------------- cross-modal ridge


def test_crossmodal_probe_finds_planted_map_and_control_is_at_chance() -> None:
    x, y = planted_pairs()
    result = crossmodal_probe(x, y, seed=0)
    assert isinstance(result, CrossmodalProbeResult)
    assert result.r2 >= 0.7 and result.probe.r2_uniform >= 0.6
    assert result.chance_top1 == pytest.approx(1 / result.n_test)
    assert result.top1 >= 10 * result.chance_top1 and result.top5 >= result.top1
    assert result.control.r2 <= 0.05
    assert result.control.top5 <= 4 * result.chance_top5


def test_crossmodal_control_retrieval_averages_to_chance() -> None:
    x, y = planted_pairs(n=100)
    tops = [crossmodal_probe(x, y, seed=s).control.top5 for s in range(6)]
    assert np.mean(tops) == pytest.approx(5 / 20, abs=0.15)


@pytest.mark.parametrize("dim_x", [150, 20])  # wider than the 96 training rows (Gram), narrower (SVD)
def test_crossmodal_alpha_and_r2_match_scikit_learn(dim_x: int) -> None:
    x, y = planted_pairs(n=120, dim_x=dim_x, noise=1.0)
    settings = ProbeSettings(alpha_grid=tuple(10.0 ** (p / 4) for p in range(-4, 16)))
    result = crossmodal_probe(x, y, seed=2, settings=settings)
    split = random_split(len(x), test_fraction=settings.test_fraction, val_fraction=0.0, seed=2)
    mean, scale = standardiser(x[split.train])
    train, test = (x[split.train] - mean) / scale, (x[split.test] - mean) / scale
    reference = RidgeCV(alphas=settings.alpha_grid).fit(train, y[split.train])
    assert result.probe.chosen_alpha == pytest.approx(reference.alpha_)
    predicted = Ridge(alpha=result.probe.chosen_alpha).fit(train, y[split.train]).predict(test)
    expected = r2_score(y[split.test], predicted, multioutput="variance_weighted")
    assert result.r2 == pytest.approx(expected, abs=1e-9)
    assert result.probe.r2_uniform == pytest.approx(
        r2_score(y[split.test], predicted, multioutput="uniform_average"), abs=1e-9
    )


def test_leave_one_out_predictions_equal_refits_without_each_row() -> None:
    x, y = planted_pairs(n=40, dim_x=50, dim_y=3, noise=1.0)
    train, test = x[:30], x[30:]
    fit = fit_ridge_loo(ridge_basis(train, test), y[:30], alphas=(1.0, 30.0, 1000.0))
    mean, scale = standardiser(train)
    rows = (train - mean) / scale
    for i in (0, 7, 29):
        keep = np.arange(30) != i
        refit = Ridge(alpha=fit.alpha).fit(rows[keep], y[:30][keep])
        np.testing.assert_allclose(fit.loo_predictions[i], refit.predict(rows[i : i + 1])[0])
    full = Ridge(alpha=fit.alpha).fit(rows, y[:30]).predict((test - mean) / scale)
    np.testing.assert_allclose(fit.test_predictions, full)


@pytest.mark.parametrize("dim_x", [50, 12])  # wider than the 60 training rows' rank or not
def test_ridge_sweep_keeps_the_chosen_alphas_fit_as_solved_alone(dim_x: int) -> None:
    x, y = planted_pairs(n=80, dim_x=dim_x, dim_y=6, noise=1.0)
    basis = ridge_basis(x[:60], x[60:])
    alphas = tuple(10.0**p for p in range(-2, 6))
    swept = fit_ridge_loo(basis, y[:60], alphas=alphas)
    assert swept.alpha not in (alphas[0], alphas[-1])  # the kept fit is not simply the last one
    alone = fit_ridge_loo(basis, y[:60], alphas=(swept.alpha,))
    assert swept.loo_error == alone.loo_error and swept.total == alone.total
    np.testing.assert_array_equal(swept.loo_predictions, alone.loo_predictions)
    np.testing.assert_array_equal(swept.test_predictions, alone.test_predictions)


def test_retrieval_ranks_count_ties_against_the_true_caption() -> None:
    truth = np.eye(3)
    assert retrieval_ranks(truth, truth).tolist() == [0, 0, 0]
    predicted = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    # Row 0 points at caption 1 (its own caption ties caption 2 at cosine 0, both count);
    # row 2 is as close to caption 0 as to its own.
    assert retrieval_ranks(predicted, truth).tolist() == [2, 0, 1]


def test_crossmodal_probe_repeats_and_rejects_bad_input() -> None:
    x, y = planted_pairs(n=60)
    assert crossmodal_probe(x, y, seed=3).to_dict() == crossmodal_probe(x, y, seed=3).to_dict()
    with pytest.raises(InputError, match="y has 59 rows"):
        crossmodal_probe(x, y[:-1])
    with pytest.raises(InputError, match="needs at least 5"):
        crossmodal_probe(x[:4], y[:4])
    y[10, 0] = np.inf
    with pytest.raises(InputError, match="^y has NaN"):
        crossmodal_probe(x, y)


# ---------------------------------------------------------------- per-layer driver


class FakeCache:
    """Feature-cache stand-in that records which layers were read."""

    def __init__(self, stack: np.ndarray) -> None:
        self.stack = stack
        self.num_rows, self.num_layers = stack.shape[:2]
        self.read: list[int] = []

    def layer(self, index: int) -> np.ndarray:
        self.read.append(index)
        return self.stack[:, index]


def layered_classes(*, signal_layer: int, layers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """[N, L, D] noise, with planted classes on one layer only; labels [N]."""
    features, labels = planted_classes(n=150, dim=10, classes=3)
    stack = np.random.default_rng(5).normal(size=(150, layers, 10))
    stack[:, signal_layer] = features
    return stack, labels


def test_probe_layers_finds_the_layer_with_signal_from_every_source() -> None:
    stack, labels = layered_classes(signal_layer=2)
    calls: list[tuple[int, int, str]] = []
    sweep = probe_layers(stack, task="labels", target=labels, progress=lambda *a: calls.append(a))
    assert sweep.best_layer == 2 and sweep.selection_metric == "val_accuracy"
    assert sweep.best.result.accuracy >= 0.9
    assert calls == [(i + 1, 4, f"layer {i}") for i in range(4)]
    cache = FakeCache(stack)
    from_cache = probe_layers(cache, task=ProbeTask.LABELS, target=labels)
    assert cache.read == [0, 1, 2, 3]
    from_pairs = probe_layers([(10 + i, stack[:, i]) for i in (1, 2)], task="labels", target=labels)
    assert from_pairs.best_layer == 12
    from_mapping = probe_layers({i: stack[:, i] for i in range(4)}, task="labels", target=labels)
    assert from_cache.to_dict() == from_mapping.to_dict() == sweep.to_dict()
    json.dumps(sweep.to_dict(), allow_nan=False)


def test_probe_layers_runs_the_crossmodal_probe() -> None:
    x, y = planted_pairs(n=120)
    stack = np.stack([np.random.default_rng(1).normal(size=x.shape), x], axis=1)
    sweep = probe_layers(stack, task="crossmodal", target=y)
    assert sweep.best_layer == 1 and sweep.selection_metric == "cv_r2"
    assert sweep.layers[0].result.r2 < 0.1 < 0.5 < sweep.layers[1].result.r2


def test_probe_layers_rejects_bad_arguments() -> None:
    stack, labels = layered_classes(signal_layer=0)
    with pytest.raises(InputError, match="task must be one of labels, crossmodal"):
        probe_layers(stack, task="ridge", target=labels)
    with pytest.raises(InputError, match=r"\[N, L, D\]"):
        probe_layers(stack[:, 0], task="labels", target=labels)
    with pytest.raises(InputError, match="empty"):
        probe_layers([], task="labels", target=labels)
