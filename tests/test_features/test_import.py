"""`probe cache import`: features computed elsewhere (.pt / .npy / .npz) become caches found by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.datasets import load_dataset
from probe.errors import CacheError, InputError
from probe.features import writer as cw
from probe.features.cache import FeatureCache
from probe.features.imports import find_imported, import_features
from probe.features.inventory import verify_cache

N, L, D = 24, 3, 8


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"{i}.png", "caption": f"caption number {i}"})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_dataset(root / "manifest.jsonl", cache_dir=tmp_path / "cache")


def _x(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, L, D)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["pt", "npy", "npz"])
def test_each_format_imports_the_rows_in_dataset_order(fmt, data, tmp_path) -> None:
    x = _x()
    file = tmp_path / f"feats.{fmt}"
    if fmt == "pt":
        torch.save({"feats": torch.from_numpy(x), "num_params": 123}, file)  # as PRH saves them
    elif fmt == "npy":
        np.save(file, x)
    else:
        np.savez(file, feats=x)
    path = import_features(file, model="my-dino", dataset=data, modality="vision", cache_dir=tmp_path / "cache")
    cache = FeatureCache(path, model="my-dino")
    np.testing.assert_array_equal(cache.read(), x)
    assert cache.ids == data.ids and cache.key["model"]["source"] == "import" and cache.pools == ["cls"]
    assert find_imported(tmp_path / "cache", model="my-dino", dataset=data, modality="vision") == path
    assert find_imported(tmp_path / "cache", model="my-dino", dataset=data, modality="text") is None


def test_files_that_would_run_code_are_refused(data, tmp_path) -> None:
    pt = tmp_path / "evil.pt"
    torch.save({"feats": torch.zeros(N, L, D), "obj": Path("x")}, pt)  # a pickled class: not weights_only
    with pytest.raises(InputError, match="weights_only"):
        import_features(pt, model="m1", dataset=data, modality="vision", cache_dir=tmp_path / "cache")
    npz = tmp_path / "evil.npz"
    np.savez(npz, feats=np.array([{"a": 1}] * N, dtype=object))
    with pytest.raises(InputError, match="without pickles"):
        import_features(npz, model="m1", dataset=data, modality="vision", cache_dir=tmp_path / "cache")


def test_row_count_and_names_are_checked(data, tmp_path) -> None:
    np.save(tmp_path / "short.npy", _x(n=N - 1))
    with pytest.raises(InputError, match=f"has {N - 1} rows but dataset .* has {N}"):
        import_features(tmp_path / "short.npy", model="m1", dataset=data, modality="text", cache_dir=tmp_path)
    np.save(tmp_path / "ok.npy", _x())
    with pytest.raises(InputError, match="registered model"):
        import_features(tmp_path / "ok.npy", model="minilm", dataset=data, modality="text", cache_dir=tmp_path)
    with pytest.raises(InputError, match="plain name"):
        import_features(tmp_path / "ok.npy", model="org/name", dataset=data, modality="text", cache_dir=tmp_path)


def test_two_files_under_one_name_are_ambiguous(data, tmp_path) -> None:
    for seed in (0, 1):
        np.save(tmp_path / f"f{seed}.npy", _x(seed))
        import_features(
            tmp_path / f"f{seed}.npy", model="twice", dataset=data, modality="vision", cache_dir=tmp_path / "c"
        )
    with pytest.raises(CacheError, match="2 imported caches are named 'twice'"):
        find_imported(tmp_path / "c", model="twice", dataset=data)


def test_align_finds_imported_caches_by_name(data, tmp_path) -> None:
    cache = tmp_path / "cache"
    np.save(tmp_path / "v.npy", _x(0))
    np.save(tmp_path / "t.npy", _x(0)[:, :, :6] + 0.1 * _x(1)[:, :, :6])  # related to the vision features
    manifest = str(data.source) if Path(str(data.source)).is_file() else str(tmp_path / "ds" / "manifest.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd(), "COLUMNS": "250"}
    cli = [sys.executable, "-c", "from probe.cli.main import main; main()"]
    for name, file, modality in (("vis-imp", "v.npy", "vision"), ("txt-imp", "t.npy", "text")):
        proc = subprocess.run(
            [
                *cli,
                "cache",
                "import",
                str(tmp_path / file),
                "--model",
                name,
                "--dataset",
                manifest,
                "--modality",
                modality,
                "--cache-dir",
                str(cache),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [
            *cli,
            "align",
            "--vision",
            "vis-imp",
            "--text",
            "txt-imp",
            "--dataset",
            manifest,
            "--cache-dir",
            str(cache),
            "--metric",
            "mutual_knn",
            "--topk",
            "3",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    results = json.loads(next((tmp_path / "out").rglob("*.json")).read_text())
    assert "vis-imp" in json.dumps(results) and "txt-imp" in json.dumps(results)
    bad = subprocess.run(
        [
            *cli,
            "cache",
            "import",
            str(tmp_path / "v.npy"),
            "--model",
            "minilm",
            "--dataset",
            manifest,
            "--modality",
            "vision",
            "--cache-dir",
            str(cache),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "registered model" in bad.stderr


@pytest.mark.parametrize("store", ["float32", "float16"])
def test_an_import_is_written_in_one_pass_without_batch_files(store, data, tmp_path, monkeypatch) -> None:
    # Blocks of 5 rows and a buffer of one layer: several row blocks per layer group, several groups.
    monkeypatch.setattr(cw, "_ARRAY_BLOCK_BYTES", 5 * L * D * 8)
    monkeypatch.setattr(cw, "_ASSEMBLY_BUFFER", N * D * 4)
    x = _x().astype(np.float64)  # converted block by block to the store dtype
    np.save(tmp_path / "feats.npy", x)
    made = []
    real_savez = cw.np.savez
    monkeypatch.setattr(cw.np, "savez", lambda *a, **k: made.append(a) or real_savez(*a, **k))
    path = import_features(
        tmp_path / "feats.npy",
        model="my-dino",
        dataset=data,
        modality="vision",
        cache_dir=tmp_path / "cache",
        store_dtype=store,
    )
    assert made == [] and not list((tmp_path / "cache").rglob("*.partial"))
    cache = FeatureCache(path, model="my-dino")
    np.testing.assert_array_equal(cache.read(), x.astype(store).astype(np.float32))
    assert verify_cache(path) == []  # the per-layer checksums taken from the buffers match the file
