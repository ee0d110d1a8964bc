"""The writer thread, checkpoint fsyncs, one-pass assembly and float16 storage of `probe.features.writer`."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import probe.features.writer as cw
from probe.errors import CacheError
from probe.features.cache import FeatureCache
from probe.features.format import cache_path
from probe.features.writer import BackgroundWriter, PartialWriter

N, S, D = 40, 3, 5


def _key(store: str = "float32") -> dict:
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
    if store != "float32":
        key["store_dtype"] = store
    return key


def _writer(root, store: str = "float32", **kw) -> PartialWriter:
    w = PartialWriter(cache_path(root, _key(store)), key=_key(store), num_rows=N, store_dtype=store, **kw)
    w.begin()
    return w


def _assemble(w: PartialWriter):
    return w.assemble(
        ids=[f"id{i}" for i in range(N)],
        image_sha256=["a" * 64] * N,
        caption_sha256=["b" * 64] * N,
        layers=[0, 1, 2],
        pools=["cls"],
        provenance={},
    )


def _features() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, S, D)).astype(np.float32)


def test_an_error_in_the_writer_thread_is_the_same_cache_error_in_the_caller(tmp_path, monkeypatch) -> None:
    w = _writer(tmp_path)
    original = PartialWriter.write_batch
    calls = []

    def fail_second(self, rows, features, **kw):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise CacheError("disk full (simulated)")
        original(self, rows, features, **kw)

    monkeypatch.setattr(PartialWriter, "write_batch", fail_second)
    x = _features()
    with pytest.raises(CacheError, match="disk full"):
        with BackgroundWriter(w, depth=2) as saver:
            for start in range(0, N, 4):  # 10 batches: the error must stop the loop, not hang it
                saver.submit(range(start, start + 4), {"cls": x[start : start + 4]}, layers=[0, 1, 2])
    assert calls[0] == "probe-batch-writer"
    assert len(list(w.dir.glob("batch-*.npz"))) == 1  # the batch written before the error is kept
    assert threading.active_count() == 1 or all(t.name != "probe-batch-writer" for t in threading.enumerate())


def test_the_callers_exception_wins_and_queued_batches_are_still_written(tmp_path) -> None:
    w = _writer(tmp_path)
    x = _features()
    with pytest.raises(KeyError):
        with BackgroundWriter(w, depth=3) as saver:
            saver.submit(range(0, 4), {"cls": x[:4]}, layers=[0, 1, 2])
            saver.submit(range(4, 8), {"cls": x[4:8]}, layers=[0, 1, 2])
            raise KeyError("a decode failure in the main loop")
    assert w.written_mask().sum() == 8


def test_batches_are_fsynced_at_checkpoints_not_one_by_one(tmp_path, monkeypatch) -> None:
    synced = []
    real_fsync = cw.os.fsync
    monkeypatch.setattr(cw.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    w = _writer(tmp_path, sync_every=4, sync_seconds=1e9)
    synced.clear()
    x = _features()
    for start in range(0, 12, 2):  # 6 batches: one checkpoint after the 4th (4 files + the folder)
        w.write_batch(list(range(start, start + 2)), {"cls": x[start : start + 2]}, layers=[0, 1, 2])
    assert len(synced) == 5 and len(w._unsynced) == 2
    w.sync()
    assert len(w._unsynced) == 0


@pytest.mark.parametrize("buffer_layers", [1, 2, 3])
def test_assembly_in_layer_groups_gives_the_same_checked_cache(tmp_path, buffer_layers, monkeypatch) -> None:
    x = _features()
    w = _writer(tmp_path)
    w.assembly_buffer_bytes = buffer_layers * N * D * 4
    order = np.random.default_rng(1).permutation(N)  # rows in batch files out of order, as text batches are
    for start in range(0, N, 7):
        rows = order[start : start + 7]
        w.write_batch(rows.tolist(), {"cls": x[rows]}, layers=[0, 1, 2])
    loads = []
    real_load = cw.np.load
    monkeypatch.setattr(cw.np, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    monkeypatch.delattr(cw.os, "fork")  # assemble in this process, so its reads are counted here
    path = _assemble(w)
    files = 6
    groups = -(-S // buffer_layers)
    # written_mask reads each file once, the shape probe (also the size estimate) one, and each layer group
    # once per file
    assert len(loads) == files + 1 + files * groups
    np.testing.assert_array_equal(FeatureCache(path).read(), x)


def test_float16_storage_reads_back_as_float32_and_has_its_own_key(tmp_path) -> None:
    x = _features()
    w = _writer(tmp_path, store="float16")
    w.write_batch(list(range(N)), {"cls": x}, layers=[0, 1, 2])
    path = _assemble(w)
    cache = FeatureCache(path)
    got = cache.read()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32))
    import h5py

    with h5py.File(path) as f:
        assert f["features/cls"].dtype == np.float16
    assert path != cache_path(tmp_path, _key("float32"))


def test_values_beyond_float16_are_refused_at_extraction_not_stored_as_inf(tmp_path) -> None:
    w = _writer(tmp_path, store="float16")
    x = _features()
    x[3, 1, 2] = 7e4
    with pytest.raises(CacheError, match="exceed float16's range.*store_dtype='float32'"):
        w.write_batch(list(range(N)), {"cls": x}, layers=[0, 1, 2])


def test_prefetched_keeps_order_and_raises_the_producers_error_in_the_consumer() -> None:
    from probe.features.extract import _prefetched

    def produce():
        yield from range(5)
        raise ValueError("tokenizer failed on row 5")

    got = []
    with pytest.raises(ValueError, match="row 5"):
        for item in _prefetched(produce(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    stopped = _prefetched(iter(range(1000)), depth=2)
    assert next(stopped) == 0
    stopped.close()  # the consumer leaves early: the producer thread ends instead of blocking on a full queue
    import time

    time.sleep(0.3)
    assert all(t.name != "probe-prefetch" for t in threading.enumerate())


def test_the_assembled_file_and_its_name_are_durable_before_assemble_returns(tmp_path, monkeypatch) -> None:
    """A power loss after `assemble` returns keeps the file: its data is fsynced before the rename and, after
    the rename, so is the folder that holds its name."""
    import os

    w = _writer(tmp_path)
    w.write_batch(list(range(N)), {"cls": _features()}, layers=[0, 1, 2])
    events: list[tuple[str, str]] = []
    real_replace, real_fsync = cw.os.replace, cw.os.fsync
    monkeypatch.setattr(cw.os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    monkeypatch.setattr(
        cw.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd)
    )
    path = _assemble(w)
    renamed = events.index(("replace", str(path)))
    assert ("fsync", str(path.parent)) in events[renamed + 1 :]
    assert any(
        kind == "fsync" and os.path.basename(name).startswith(f".{path.name}.") for kind, name in events[:renamed]
    )


@pytest.mark.parametrize("durable", [False, True])
def test_write_atomic_leaves_the_old_file_or_the_new_one_and_no_temporary(tmp_path, durable) -> None:
    from probe.errors import write_atomic

    target = tmp_path / "sub" / "out.json"
    assert write_atomic(target, "old", durable=durable) == target and target.read_text() == "old"

    def dies(tmp):  # a writer that fails half way, as savefig or to_csv can
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, dies, durable=durable)
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
    write_atomic(target, b"\x00new", durable=durable)
    assert target.read_bytes() == b"\x00new"
