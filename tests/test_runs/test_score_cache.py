"""The score cache: JSON entries that give back exactly what was computed, and never run code from the file.

Real computations (an alignment report with permutation null and intervals; label, word and cross-modal
probe sweeps) are cached, read back and compared field by field, arrays bit for bit; damaged, tampered and
foreign entries (a crafted pickle, truncated JSON, an entry copied to another key) are recomputed with one
warning, and the pickle's payload never runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probe.results import TypedJsonError, to_jsonable
from probe.runs import score_cache
from probe.runs.score_cache import cached_score
from probe.runs.typed_json import from_json


def assert_identical(a: Any, b: Any, where: str = "value") -> None:
    """Same types and values all the way down; numpy arrays with the same dtype, shape and bytes."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def report():
    import torch

    from probe.align.stats import score_alignment

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(60, 8))
    vision = np.stack([shared @ rng.normal(size=(8, 12)) + rng.normal(size=(60, 12)) for _ in range(3)], axis=1).astype(
        np.float32
    )
    text = np.stack([shared @ rng.normal(size=(8, 10)) + rng.normal(size=(60, 10)) for _ in range(4)], axis=1).astype(
        np.float32
    )
    return score_alignment(
        vision,
        text,
        metrics=("mutual_knn", "cycle_knn", "cka", "unbiased_cka", "cknna"),
        k=5,
        permutations=20,
        subsamples=5,
        seed=1,
        denominator_epsilon=1e-6,
    )


@pytest.fixture(scope="module")
def sweeps():
    from probe.linear.sweep import ProbeTask, probe_layers

    rng = np.random.default_rng(2)
    labels = np.repeat(np.array(["a", "b", "c"]), 20)
    layers = rng.normal(size=(60, 2, 6)) + (labels[:, None, None] == "a")
    words = rng.random((60, 4)) < 0.3
    words[:, 3] = False  # a column absent from every row: NaN scores must survive the round trip
    text = layers[:, 1, :] @ rng.normal(size=(6, 5))
    return {
        "labels": probe_layers(layers, task=ProbeTask.LABELS, target=labels, seed=3),
        "words": probe_layers(layers, task=ProbeTask.LABELS, target=words, names=["w0", "w1", "w2", "w3"], seed=3),
        "crossmodal": probe_layers(layers, task=ProbeTask.CROSSMODAL, target=text, seed=3),
    }


def _compute_once(value):
    calls = []
    return calls, (lambda: calls.append(1) or value)


def test_alignment_report_comes_back_identical(report, tmp_path) -> None:
    from probe.align.stats import AlignmentReport

    calls, compute = _compute_once(report)
    key = {"pair": "v/t", "settings": {"k": 5}}
    first = cached_score(tmp_path, "align", key, compute)
    second = cached_score(tmp_path, "align", key, compute)
    assert calls == [1]  # the second call read the entry
    assert type(second) is AlignmentReport and second is not report
    assert_identical(report, second)
    # the results JSON written from the reused report is byte-identical
    assert json.dumps(second.to_dict()) == json.dumps(first.to_dict())
    (entry,) = (tmp_path / "scores" / "align").iterdir()
    assert entry.suffix == ".json" and json.loads(entry.read_text())["format"] == "probe-score-cache"


def test_probe_sweeps_come_back_identical(sweeps, tmp_path) -> None:
    from probe.linear.sweep import LayerSweepResult
    from probe.results import to_jsonable

    assert any(np.isnan(w.auroc) for layer in sweeps["words"].layers for w in layer.result.probe.words)
    for name, sweep in sweeps.items():
        calls, compute = _compute_once(sweep)
        cached_score(tmp_path, "linear", {"task": name}, compute)
        again = cached_score(tmp_path, "linear", {"task": name}, compute)
        assert calls == [1] and type(again) is LayerSweepResult
        assert_identical(sweep, again, name)
        assert json.dumps(to_jsonable(again.to_dict())) == json.dumps(to_jsonable(sweep.to_dict()))


class _Payload:
    """Unpickling this runs `open(marker, "w")`: the file appears only if the cache executes pickle data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _entry_path(tmp_path: Path, kind: str, key: dict) -> Path:
    from probe import __version__
    from probe.features.format import key_hash
    from probe.provenance import code_fingerprint

    return score_cache.score_path(
        tmp_path, kind, key_hash({"key": key, "probe": __version__, "code": code_fingerprint()})
    )


def test_a_crafted_pickle_is_never_executed_and_is_recomputed(report, tmp_path, caplog) -> None:
    marker = tmp_path / "pwned"
    crafted = pickle.dumps(_Payload(marker))
    pickle.loads(crafted).close()  # the payload is live: loading it does create the file
    assert marker.exists()
    marker.unlink()
    key = {"pair": "crafted"}
    path = _entry_path(tmp_path, "align", key)
    path.parent.mkdir(parents=True)
    path.write_bytes(crafted)
    path.with_suffix(".pkl").write_bytes(crafted)  # where the old pickle cache kept its entries
    calls, compute = _compute_once(report)
    with caplog.at_level(logging.WARNING, logger="probe"):
        value = cached_score(tmp_path, "align", key, compute)
    assert calls == [1] and value is report and not marker.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    # the recomputed entry replaced the crafted one and is reused from then on
    assert cached_score(tmp_path, "align", key, compute) is not report and calls == [1]


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "empty",
        "not-utf8",
        "other-class",
        "tampered-array",
        "extra-field",
        "copied-from-other-key",
        "foreign-module",
        "private-module",
        "deep-nesting",
    ],
)
def test_damaged_entries_are_recomputed_with_one_warning(report, tmp_path, caplog, damage) -> None:
    key = {"pair": damage}
    calls, compute = _compute_once(report)
    cached_score(tmp_path, "align", key, compute)
    path = _entry_path(tmp_path, "align", key)
    text = path.read_text()
    record = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "empty":
        path.write_text("")
    elif damage == "not-utf8":
        path.write_bytes(b"\xff\xfe" + text.encode()[:100])
    elif damage == "other-class":
        record["class"] = "probe.align.stats.AlignmentSettings"
        path.write_text(json.dumps(record))
    elif damage == "tampered-array":
        record["value"]["fields"]["metrics"]["cka"]["fields"]["matrix"]["__ndarray__"]["shape"] = [99, 99]
        path.write_text(json.dumps(record))
    elif damage == "extra-field":
        record["value"]["fields"]["settings"]["fields"]["surprise"] = 1
        path.write_text(json.dumps(record))
    elif damage == "copied-from-other-key":
        cached_score(tmp_path, "align", {"pair": "elsewhere"}, lambda: report)
        path.write_text(_entry_path(tmp_path, "align", {"pair": "elsewhere"}).read_text())
    elif damage == "foreign-module":
        record["class"] = "os.system"
        path.write_text(json.dumps(record))
    elif damage == "private-module":
        record["class"] = "probe.__main__.main"
        path.write_text(json.dumps(record))
    elif damage == "deep-nesting":
        path.write_text("[" * 100000 + "]" * 100000)
    with caplog.at_level(logging.WARNING, logger="probe"):
        again = cached_score(tmp_path, "align", key, compute)
    assert calls == [1, 1] and again is report
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "recomputing align scores" in warnings[0], warnings
    assert_identical(report, cached_score(tmp_path, "align", key, compute))  # rewritten whole
    assert calls == [1, 1]


def test_writes_leave_no_temporary_files_and_a_failed_write_keeps_the_old_entry(
    report, tmp_path, monkeypatch, caplog
) -> None:
    key = {"pair": "atomic"}
    cached_score(tmp_path, "align", key, lambda: report)
    path = _entry_path(tmp_path, "align", key)
    before = path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    import probe.errors

    monkeypatch.setattr(probe.errors.os, "fsync", full_disk)  # the fsync of probe.errors.write_atomic
    recomputed = dataclasses.replace(report, metrics={})
    with caplog.at_level(logging.WARNING, logger="probe"):
        value = cached_score(tmp_path, "align", key, lambda: recomputed, refresh=True)
    assert value is recomputed  # the computed result is returned; only its reuse is lost
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "could not cache the align scores" in warning and "No space left on device" in warning
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]


def test_typed_json_refuses_what_it_cannot_store_exactly() -> None:
    @dataclasses.dataclass
    class Holder:
        value: Any

    with pytest.raises(TypedJsonError, match="dtype object"):
        to_jsonable(Holder(np.array([object()])), exact=True)
    with pytest.raises(TypedJsonError, match="cannot store a value of type set"):
        to_jsonable(Holder({1, 2}), exact=True)
    with pytest.raises(TypeError):
        from_json({}, dict)  # only dataclasses are decoded at the top


def test_entries_are_strict_json(report, tmp_path) -> None:
    """NaN and infinities are tagged, so any JSON reader can open an entry."""
    from probe.align.stats import MetricReport

    m = report.metrics["cka"]
    odd = dataclasses.replace(
        m, best_score=float("nan"), z_score=float("-inf"), matrix=np.array([[np.inf, -0.0]], dtype=np.float32)
    )
    calls, compute = _compute_once(odd)
    cached_score(tmp_path, "metric", {"odd": 1}, compute)
    text = _entry_path(tmp_path, "metric", {"odd": 1}).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    back = cached_score(tmp_path, "metric", {"odd": 1}, compute)
    assert calls == [1] and type(back) is MetricReport
    assert_identical(odd, back)
    assert np.signbit(back.matrix[0, 1])
    assert os.path.getsize(_entry_path(tmp_path, "metric", {"odd": 1})) < 5000


def test_a_figure_is_drawn_once_per_key_and_copied_after(tmp_path) -> None:
    """cached_file: the first run draws and keeps the bytes; a second run with the same key copies them (no
    drawing); another key draws again; the copy is byte-identical."""
    from probe.runs.score_cache import cached_file

    drawn = []

    def draw(path):
        drawn.append(path)
        path.write_bytes(b"\x89PNG fake " + str(len(drawn)).encode())
        return path

    first = cached_file(tmp_path / "cache", "figures", {"k": 1}, tmp_path / "run1" / "a.png", draw)
    second = cached_file(tmp_path / "cache", "figures", {"k": 1}, tmp_path / "run2" / "a.png", draw)
    assert len(drawn) == 1 and first.read_bytes() == second.read_bytes()
    cached_file(tmp_path / "cache", "figures", {"k": 2}, tmp_path / "run3" / "a.png", draw)
    assert len(drawn) == 2
    (kept,) = [p for p in (tmp_path / "cache").rglob("*.png") if p.read_bytes() == first.read_bytes()]
    assert kept.parent.name == "figures"
