"""Manifest, folder and hub-row parsing into PairedDataset, with the bad inputs a user can make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.datasets import load_dataset, load_manifest
from probe.datasets.hub import HubDatasetSpec, materialise_rows
from probe.errors import InputError


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    for i in range(3):
        _png(tmp_path / "img" / f"{i}.png", 40 * i)
    rows = [
        {"id": f"r{i}", "image": f"img/{i}.png", "caption": f"caption {i}", "colour": ["red", "green", "blue"][i]}
        for i in range(3)
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path


def test_jsonl_manifest_rows_labels_and_paths(manifest_dir: Path) -> None:
    ds = load_manifest(manifest_dir / "data.jsonl")
    assert ds.name == "data"
    assert ds.ids == ["r0", "r1", "r2"]
    assert ds.captions == ["caption 0", "caption 1", "caption 2"]
    assert ds.rows[1].image == (manifest_dir / "img" / "1.png").resolve()
    assert ds.labels("colour") == ["red", "green", "blue"]
    assert ds.label_fields == ["colour"]


def test_csv_manifest_equals_jsonl(manifest_dir: Path) -> None:
    lines = ["id,image,caption,colour"] + [
        f"r{i},img/{i}.png,caption {i},{c}" for i, c in enumerate(["red", "green", "blue"])
    ]
    (manifest_dir / "data.csv").write_text("\n".join(lines) + "\n")
    a, b = load_manifest(manifest_dir / "data.jsonl"), load_manifest(manifest_dir / "data.csv")
    assert a.fingerprint == b.fingerprint
    assert a.labels("colour") == b.labels("colour")


def test_folder_with_captions_tsv(tmp_path: Path) -> None:
    _png(tmp_path / "cat.png", 10)
    _png(tmp_path / "dog.png", 200)
    (tmp_path / "captions.tsv").write_text("cat.png\ta cat\ndog.png\ta dog\n")
    ds = load_dataset(tmp_path, cache_dir=tmp_path / "cache")
    assert ds.ids == ["cat", "dog"] and ds.captions == ["a cat", "a dog"]
    assert ds.name == tmp_path.name


def test_fingerprint_tracks_content_order_and_limit(manifest_dir: Path) -> None:
    ds = load_manifest(manifest_dir / "data.jsonl")
    fp = ds.fingerprint
    assert load_manifest(manifest_dir / "data.jsonl").fingerprint == fp  # deterministic
    assert ds.head(2).fingerprint != fp and len(ds.head(2)) == 2
    _png(manifest_dir / "img" / "1.png", 41)  # one pixel value changes
    assert load_manifest(manifest_dir / "data.jsonl").fingerprint != fp
    rows = [json.loads(line) for line in (manifest_dir / "data.jsonl").read_text().splitlines()]
    (manifest_dir / "swapped.jsonl").write_text("\n".join(json.dumps(r) for r in rows[::-1]))
    assert (
        load_manifest(manifest_dir / "swapped.jsonl").fingerprint
        != load_manifest(manifest_dir / "data.jsonl").fingerprint
    )


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("not json at all\n", ".jsonl", "line 1: not valid JSON"),
        ('{"id": "a", "image": "missing.png", "caption": "x"}\n', ".jsonl", "does not exist"),
        ('{"id": "a", "caption": "x"}\n{"id": "a", "caption": "y"}\n', ".jsonl", "repeats row 1"),
        ("", ".jsonl", "empty"),
        ("name,caption\nx,y\n", ".csv", "no id, image column"),
        ("<xml/>", ".xml", "unsupported manifest type '.xml'"),
        ('{"image": "a.png"}\n', ".jsonl", "no 'id'"),
    ],
)
def test_bad_manifests_name_the_file_and_problem(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        load_manifest(path)
    assert str(path) in str(err.value)


def test_missing_path_and_unknown_name_suggest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl", cache_dir=tmp_path)
    with pytest.raises(InputError, match="did you mean openmoji"):
        load_dataset("openmoj", cache_dir=tmp_path)


def test_row_without_caption_is_an_error_only_for_text(manifest_dir: Path) -> None:
    (manifest_dir / "nocap.jsonl").write_text(
        '{"id": "a", "image": "img/0.png"}\n{"id": "b", "image": "img/1.png", "caption": " "}\n'
    )
    ds = load_manifest(manifest_dir / "nocap.jsonl")
    ds.require_images()
    with pytest.raises(InputError, match=r"row 1 \(id 'a'\).*no caption"):
        ds.require_captions()


def test_unknown_label_field_lists_known_ones(manifest_dir: Path) -> None:
    ds = load_manifest(manifest_dir / "data.jsonl")
    with pytest.raises(InputError, match="'size' is missing.*colour"):
        ds.labels("size")


def test_hub_rows_materialise_to_a_manifest(tmp_path: Path) -> None:
    records = [
        {"image": Image.fromarray(np.full((4, 4, 3), v, dtype=np.uint8)), "text": [f"cap {v}", "other"]}
        for v in (0, 255)
    ]
    spec = HubDatasetSpec(hub_id="x/y", revision="r", split="train", caption_field="text", caption_index=0)
    manifest = materialise_rows(records, spec=spec, root=tmp_path / "wit")
    ds = load_manifest(manifest, name="wit")
    assert ds.ids == ["000000", "000001"] and ds.captions == ["cap 0", "cap 255"]
    assert np.asarray(Image.open(ds.rows[1].image)).min() == 255
