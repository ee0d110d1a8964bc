"""Hub datasets without the hub: coco-captions read from a local copy of the hub's parquet export, and every way
of not reaching the hub ending in one message that names the offline fallback: `dataset=openmoji` in the library,
`--dataset openmoji` on the command line."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import probe.datasets.hub as hub
from probe.datasets import load_dataset, load_manifest
from probe.datasets.catalog import COCO_CAPTIONS, DATASETS
from probe.errors import InputError

OPENMOJI_HINT = "dataset=openmoji"  # the library's words; the CLI shows "--dataset openmoji"


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_export(folder: Path, *, split_dir: str = "test", shards: tuple[int, ...] = (3, 2)) -> list[list[str]]:
    """A folder laid out like the hub's parquet export of the COCO loading script: TEST/<split>/NNNN.parquet."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    captions: list[list[str]] = []
    (folder / "TEST" / split_dir).mkdir(parents=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for shard, n in enumerate(shards):
        start = len(captions)
        rows = [[f"caption {start + i} first", f"caption {start + i} second"] for i in range(n)]
        captions += rows
        table = pa.table(
            {
                "image": pa.array(
                    [{"bytes": _jpeg(10 * (start + i)), "path": f"COCO_{start + i}.jpg"} for i in range(n)],
                    type=image_type,
                ),
                "caption": pa.array(rows, type=pa.list_(pa.string())),
                "sentids": pa.array([[5 * (start + i)] for i in range(n)], type=pa.list_(pa.int64())),
            }
        )
        pq.write_table(table, folder / "TEST" / split_dir / f"{shard:04d}.parquet")
    return captions


def test_coco_rows_come_from_the_parquet_export_in_order(tmp_path, monkeypatch):
    export = tmp_path / "snapshots" / "0123abcd"
    captions = _write_export(export)
    monkeypatch.setattr(hub, "download_parquet_export", lambda spec, name: export)
    manifest = hub.materialise_hub_dataset(replace(COCO_CAPTIONS, rows=5), root=tmp_path / "coco", name="coco-captions")
    ds = load_manifest(manifest, name="coco-captions")
    assert ds.ids == ["000000", "000001", "000002", "000003", "000004"]
    assert ds.captions == [c[0] for c in captions]  # caption = caption[0], across both shards
    assert [np.asarray(Image.open(r.image)).mean() for r in ds.rows] == pytest.approx([0, 10, 20, 30, 40], abs=2)
    assert all(r.image.suffix == ".jpg" for r in ds.rows)  # the JPEG bytes are kept, not re-encoded
    source = json.loads((tmp_path / "coco" / "source.json").read_text())
    assert source == {
        "hub_id": COCO_CAPTIONS.hub_id,
        "revision": "refs/convert/parquet",
        "commit": "0123abcd",
        "files": ["TEST/test/0000.parquet", "TEST/test/0001.parquet"],
    }


def test_coco_export_with_another_row_count_is_refused(tmp_path, monkeypatch):
    export = tmp_path / "export"
    _write_export(export)
    monkeypatch.setattr(hub, "download_parquet_export", lambda spec, name: export)
    with pytest.raises(InputError, match="gave 5 rows, not the 5000 expected.*dataset=openmoji"):
        load_dataset("coco-captions", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "datasets" / "coco-captions" / "manifest.jsonl").exists()


def test_partial_export_is_refused(tmp_path):
    _write_export(tmp_path, split_dir="partial-test")
    with pytest.raises(InputError, match="partial"):
        hub.parquet_export_files(tmp_path, config="TEST", split="test")


def test_export_files_are_found_in_shard_order_without_pyarrow(tmp_path):
    shards = tmp_path / "TEST" / "test"
    shards.mkdir(parents=True)
    for name in ("0010.parquet", "0002.parquet", "0001.parquet"):
        (shards / name).write_bytes(b"")
    assert [p.name for p in hub.parquet_export_files(tmp_path, config="TEST", split="test")] == [
        "0001.parquet",
        "0002.parquet",
        "0010.parquet",
    ]
    with pytest.raises(InputError, match="no parquet files"):
        hub.parquet_export_files(tmp_path, config="TEST", split="validation")


def test_unreachable_hub_names_openmoji(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1: the download fails as it does on a machine without the hub.
    with pytest.raises(InputError, match="could not download dataset 'coco-captions'") as info:
        hub.download_parquet_export(COCO_CAPTIONS, name="coco-captions")
    assert OPENMOJI_HINT in str(info.value)


@pytest.mark.parametrize("name, module", [("coco-captions", "pyarrow"), ("wit-1024", "datasets")])
def test_missing_package_names_it_and_openmoji(name, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: `import` raises ImportError
    if module == "pyarrow":
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError) as info:
        load_dataset(name, cache_dir=tmp_path)
    message = str(info.value)
    assert f"needs the '{module}' package" in message and OPENMOJI_HINT in message and name in message


def test_registered_rows_are_facts():
    assert DATASETS["openmoji"].rows == 1398 and DATASETS["coco-captions"].rows == COCO_CAPTIONS.rows == 5000
    assert "category/subcategory" in DATASETS["openmoji"].description


def test_datasets_command_shows_the_row_counts():
    from typer.testing import CliRunner

    import probe.cli.info  # noqa: F401 - registers the command
    from probe.cli.main import app

    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {
        line.split()[0]: line.split()[1]
        for line in result.output.splitlines()
        if line.split() and line.split()[0] in ("openmoji", "wit-1024", "coco-captions")
    }
    assert rows == {"openmoji": "1,398", "wit-1024": "1,024", "coco-captions": "5,000"}
    assert "varies" not in result.output


def test_offline_align_with_the_default_dataset_says_use_openmoji(tmp_path, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "datasets", None)
    code, _, err = cli(["align", "-v", "tiny-ssl-vit", "-t", "minilm", "--cache-dir", str(tmp_path)])
    assert code == 2 and "wit-1024" in err and "--dataset openmoji" in err, err
    assert "pip install 'probe[hub]'" in " ".join(err.split())  # brackets survive rich's markup
