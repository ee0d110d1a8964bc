"""The crash-safe writer, the HDF5 reader, pairing checks and verification."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from probe.errors import CacheError
from probe.features.cache import FeatureCache, check_paired
from probe.features.format import cache_path, key_hash
from probe.features.inventory import list_entries, verify_cache
from probe.features.writer import PartialWriter

N, S, D = 10, 3, 4


def _key(**changes):
    key = {
        "feature_version": 1,
        "model": {"name": "m", "revision": "main"},
        "modality": "vision",
        "pools": ["cls"],
        "layers": [0, 1, 2],
        "prompt": None,
        "dtype": "float32",
        "dataset": {"name": "d", "fingerprint": "f", "rows": N},
    }
    key.update(changes)
    return key


def _features(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, S, D)).astype(np.float32)


def _assemble(writer: PartialWriter, ids=None):
    return writer.assemble(
        ids=ids or [f"id{i}" for i in range(N)],
        image_sha256=["a" * 64] * N,
        caption_sha256=["b" * 64] * N,
        layers=[0, 1, 2],
        pools=["cls"],
        provenance={"test": True},
    )


def test_batches_in_any_order_assemble_to_the_full_array(tmp_path: Path) -> None:
    x = _features()
    w = PartialWriter(cache_path(tmp_path, _key()), key=_key(), num_rows=N)
    w.begin()
    for rows in ([7, 2, 9], [0, 1], [3, 4, 5, 6], [8]):
        assert _assemble(w) is None  # not complete yet: nothing at the final path
        assert not w.final_path.exists()
        w.write_batch(rows, {"cls": x[rows]})
    path = _assemble(w)
    assert path == w.final_path and path.is_file() and not w.dir.exists()
    c = FeatureCache(path)
    np.testing.assert_array_equal(c.read(), x)
    np.testing.assert_array_equal(c.layer(1), x[:, 1])
    assert c.ids == [f"id{i}" for i in range(N)] and c.layers == [0, 1, 2] and c.hidden_size == D
    assert verify_cache(path) == []


def test_resume_after_crash_keeps_whole_batches_and_drops_damaged_ones(tmp_path: Path) -> None:
    x = _features()
    final = cache_path(tmp_path, _key())
    w = PartialWriter(final, key=_key(), num_rows=N)
    w.begin()
    w.write_batch([0, 1, 2], {"cls": x[:3]})
    (w.dir / ".batch-r0-00000003-dead.npz.tmp").write_bytes(b"half a batch")  # crash mid-write
    (w.dir / "batch-r0-00000009-junk.npz").write_bytes(b"damaged")  # damaged file at a final name
    w2 = PartialWriter(final, key=_key(), num_rows=N)  # the next run
    w2.begin()
    mask = w2.written_mask()
    assert mask.tolist() == [True] * 3 + [False] * 7
    w2.write_batch(list(range(3, N)), {"cls": x[3:]})
    np.testing.assert_array_equal(FeatureCache(_assemble(w2)).read(), x)


def test_partial_folder_of_another_key_is_refused(tmp_path: Path) -> None:
    final = cache_path(tmp_path, _key())
    PartialWriter(final, key=_key(), num_rows=N).begin()
    with pytest.raises(CacheError, match="another key"):
        PartialWriter(final, key=_key(dtype="bfloat16"), num_rows=N).begin()


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"name": "m2", "revision": "main"}},
        {"model": {"name": "m", "revision": "abc"}},
        {"pools": ["mean"]},
        {"layers": [2]},
        {"prompt": "a {caption}"},
        {"dtype": "bfloat16"},
        {"feature_version": 2},
        {"modality": "text"},
        {"dataset": {"name": "d", "fingerprint": "g", "rows": N}},
    ],
)
def test_every_key_part_changes_the_path(tmp_path: Path, change: dict) -> None:
    assert key_hash(_key(**change)) != key_hash(_key())
    assert cache_path(tmp_path, _key(**change)) != cache_path(tmp_path, _key())


def test_reading_one_layer_reads_only_its_chunks(tmp_path: Path) -> None:
    w = PartialWriter(cache_path(tmp_path, _key()), key=_key(), num_rows=N)
    w.begin()
    w.write_batch(list(range(N)), {"cls": _features()})
    path = _assemble(w)
    with h5py.File(path, "r") as f:
        ds = f["features/cls"]
        assert ds.chunks[0] == 1 and ds.shape == (S, N, D)  # one layer per chunk


def test_incomplete_or_tampered_files_are_caught(tmp_path: Path) -> None:
    w = PartialWriter(cache_path(tmp_path, _key()), key=_key(), num_rows=N)
    w.begin()
    w.write_batch(list(range(N)), {"cls": _features()})
    path = _assemble(w)
    with h5py.File(path, "r+") as f:
        f["features/cls"][1, 0, 0] += 1.0
    assert any("checksum" in p for p in verify_cache(path))
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(CacheError, match="not complete"):
        FeatureCache(path)


def test_check_paired(tmp_path: Path) -> None:
    paths = []
    for name, ids in (("a", None), ("b", None), ("c", [f"id{i}" for i in range(N - 1)] + ["other"])):
        key = _key(model={"name": name, "revision": "main"})
        w = PartialWriter(cache_path(tmp_path, key), key=key, num_rows=N)
        w.begin()
        w.write_batch(list(range(N)), {"cls": _features()})
        paths.append(_assemble(w, ids=ids))
    a, b, c = (FeatureCache(p) for p in paths)
    check_paired(a, b)
    with pytest.raises(CacheError, match="ids differ first at row 9"):
        check_paired(a, c)


def test_list_entries_reports_partial_and_complete(tmp_path: Path) -> None:
    k1, k2 = _key(), _key(model={"name": "other", "revision": "main"})
    w1 = PartialWriter(cache_path(tmp_path, k1), key=k1, num_rows=N)
    w1.begin()
    w1.write_batch(list(range(N)), {"cls": _features()})
    _assemble(w1)
    w2 = PartialWriter(cache_path(tmp_path, k2), key=k2, num_rows=N)
    w2.begin()
    w2.write_batch([0, 1, 2, 3], {"cls": _features()[:4]})
    entries = {e.model: e for e in list_entries(tmp_path)}
    assert entries["m"].complete and entries["m"].rows == N and entries["m"].layers == S
    assert not entries["other"].complete and entries["other"].rows_written == 4
    assert json.loads((w2.dir / "key.json").read_text())["model"]["name"] == "other"
