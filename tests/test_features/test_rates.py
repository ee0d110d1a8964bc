"""Extraction records (probe.features.rates): what a finished extraction measured, one JSON file each in
`<cache>/rates/`, read back safely (damaged, foreign or duplicate files never break a plan)."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.features.extract import extract_features
from probe.features.rates import RATES_DIR, read_extractions, record_extraction

ROWS = 6


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rates-ds")
    rng = np.random.default_rng(0)
    for i in range(ROWS):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "m.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "image": f"{i}.png", "caption": f"c {i}"}) + "\n" for i in range(ROWS))
    )
    return root / "m.jsonl"


def test_a_real_extraction_records_itself_once_and_a_reuse_not_at_all(tiny_model_dir, manifest, tmp_path) -> None:
    result = extract_features(model=str(tiny_model_dir("vit")), dataset=manifest, cache_dir=tmp_path, device="cpu")
    (path,) = (tmp_path / RATES_DIR).glob("*.json")  # extract_features wrote it
    assert not list(path.parent.glob("*.tmp")) and not list(path.parent.glob(".*"))
    (record,) = read_extractions(tmp_path, host=platform.node())
    assert (record.model, record.modality, record.dtype, record.rows, record.device, record.device_kind) == (
        result.key["model"]["name"],
        "vision",
        "float32",
        ROWS,
        "cpu",
        "cpu",
    )
    assert record.seconds == result.seconds > record.load_seconds == result.load_seconds > 0
    assert record.batch_size == result.batch_size
    assert record.cache == str(result.path.relative_to(tmp_path)) and (tmp_path / record.cache).is_file()
    # The same run recorded by a second caller counts once; another host's records are not this machine's.
    record_extraction(tmp_path, result, device="cpu")
    assert len(list((tmp_path / RATES_DIR).glob("*.json"))) == 2 and len(read_extractions(tmp_path)) == 1
    assert read_extractions(tmp_path, host=platform.node() + "-other") == []
    again = extract_features(model=str(tiny_model_dir("vit")), dataset=manifest, cache_dir=tmp_path, device="cpu")
    assert again.reused and len(list((tmp_path / RATES_DIR).glob("*.json"))) == 2
    assert record_extraction(tmp_path, dataclasses.replace(result, rows_extracted=0), device="cpu") is None


def test_damaged_and_foreign_records_are_skipped_with_a_warning(tiny_model_dir, manifest, tmp_path, caplog) -> None:
    result = extract_features(model=str(tiny_model_dir("bert")), dataset=manifest, cache_dir=tmp_path, device="cpu")
    good = record_extraction(tmp_path, result, device="cpu")
    folder = good.parent
    (folder / "a-truncated.json").write_text(good.read_text()[:40])
    (folder / "b-binary.json").write_bytes(b"\xff\xfe\x00junk")
    for name, change in (
        ("c-negative", {"rows": -3}),
        ("d-version", {"version": 99}),
        ("e-nan", {"seconds": "nan"}),
        ("f-list", None),
    ):
        data = json.loads(good.read_text())
        (folder / f"{name}.json").write_text(json.dumps([data] if change is None else {**data, **change}))
    with caplog.at_level(logging.WARNING, logger="probe"):
        records = read_extractions(tmp_path)
    assert [r.modality for r in records] == ["text"]
    assert "skipped 6 unreadable extraction records" in caplog.text and "a-truncated.json" in caplog.text


def test_an_unwritable_record_never_fails_the_extraction(tiny_model_dir, manifest, tmp_path, caplog) -> None:
    (tmp_path / RATES_DIR).write_text("a file where the folder goes")
    with caplog.at_level(logging.WARNING, logger="probe"):
        result = extract_features(model=str(tiny_model_dir("vit")), dataset=manifest, cache_dir=tmp_path, device="cpu")
    assert result.rows_extracted == ROWS and result.open().num_rows == ROWS
    assert "could not record the extraction time" in caplog.text and read_extractions(tmp_path) == []
