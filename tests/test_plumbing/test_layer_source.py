"""probe.layer_source: the one protocol through which alignment and probes read a modality's layers, over an
[N, L, D] array (`ArrayLayers`) and over a feature cache (`probe.features.cache.LayerStack`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from probe.align import alignment_matrix
from probe.datasets import load_dataset
from probe.errors import InputError
from probe.features.cache import FeatureCache, LayerStack
from probe.features.imports import import_features
from probe.layer_source import ArrayLayers, LayerSource, as_layer_source

N, L, D = 12, 4, 6


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, L, D)).astype(np.float32)


@pytest.fixture()
def stack(tmp_path) -> tuple[LayerStack, np.ndarray]:
    """The LayerStack of a cache holding `_x()` (imported for a manifest of N tiny images), and that array."""
    root = tmp_path / "ds"
    root.mkdir()
    rows = []
    for i in range(N):
        Image.fromarray(np.full((8, 8, 3), i * 20, dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"{i}.png", "caption": f"caption {i}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(root / "manifest.jsonl", cache_dir=tmp_path / "cache")
    x = _x()
    np.save(tmp_path / "x.npy", x)
    path = import_features(tmp_path / "x.npy", model="m", dataset=data, modality="vision", cache_dir=tmp_path / "cache")
    return FeatureCache(path, model="m").stack(), x


@pytest.mark.parametrize("to_array", [np.asarray, torch.from_numpy], ids=["numpy", "torch"])
def test_an_array_is_read_layer_by_layer(to_array):
    x = _x()
    source = as_layer_source(to_array(x), name="vision")
    assert isinstance(source, ArrayLayers) and isinstance(source, LayerSource)
    assert (source.num_rows, source.num_layers) == (N, L)
    for i in range(L):
        np.testing.assert_array_equal(np.asarray(source.layer(i)), x[:, i, :])


@pytest.mark.parametrize("shape", [(N, D), (N, L, D, 1)])
def test_an_array_of_another_rank_is_refused_naming_the_argument(shape):
    with pytest.raises(InputError, match=r"`text` must be an array \[N, L, D\].*got shape .*features\[:, None, :\]"):
        as_layer_source(np.zeros(shape), name="text")


def test_anything_else_is_refused_naming_its_type():
    with pytest.raises(InputError, match="`vision` must be an array .* got list"):
        as_layer_source([[1.0, 2.0]], name="vision")


def test_a_cache_stack_is_a_layer_source_passed_through(stack):
    layers, x = stack
    assert isinstance(layers, LayerSource) and as_layer_source(layers, name="vision") is layers
    assert (layers.num_rows, layers.num_layers, layers.layers, layers.name) == (N, L, [0, 1, 2, 3], "m")
    for i in range(L):
        got = layers.layer(i)
        assert got.dtype == np.float32 and got.shape == (N, D)
        np.testing.assert_array_equal(got, x[:, i, :])


def test_select_and_take_rows_compose_like_array_indexing(stack):
    layers, x = stack
    picked = layers.select([3, 1], dropped=[0])
    assert (picked.num_layers, picked.layers, picked.dropped) == (2, [3, 1], (0,))
    np.testing.assert_array_equal(picked.layer(0), x[:, 3, :])
    rows = np.array([5, 0, 7, 2])
    some = picked.take_rows(rows)
    assert some.num_rows == 4 and some.take_rows(None) is some
    np.testing.assert_array_equal(some.layer(1), x[rows, 1, :])
    fewer = some.take_rows(np.array([3, 0]))  # indices into `some`'s rows: dataset rows 2 and 5
    np.testing.assert_array_equal(fewer.layer(0), x[[2, 5], 3, :])
    # the layers left out on purpose, for PRH's clamp level, come with the same rows
    (extra,) = fewer.clamp_extra_layers()
    np.testing.assert_array_equal(extra, x[[2, 5], 0, :])
    assert layers.num_rows == N and layers.num_layers == L  # the original stack is unchanged


class _Counting:
    """A layer source of its own: any object with num_layers, num_rows and layer(i) is one."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.num_layers, self.num_rows, self.reads = x, x.shape[1], x.shape[0], []

    def layer(self, index: int) -> np.ndarray:
        self.reads.append(index)
        return self.x[:, index, :]


def test_alignment_scores_the_same_from_an_array_a_cache_and_any_source_reading_each_layer_once(stack):
    layers, x = stack
    text = _x(seed=1)[:, :3, :]
    own = _Counting(x)
    assert isinstance(own, LayerSource) and as_layer_source(own, name="vision") is own
    expected = alignment_matrix(x, text, metric="mutual_knn", k=3)
    np.testing.assert_array_equal(alignment_matrix(layers, text, metric="mutual_knn", k=3), expected)
    np.testing.assert_array_equal(alignment_matrix(own, text, metric="mutual_knn", k=3), expected)
    assert sorted(own.reads) == list(range(L))
