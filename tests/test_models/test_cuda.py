"""CUDA checks, skipped where no GPU is present (CI has none; run them on a GPU machine):
extraction in bfloat16 on the GPU agrees with float32 on the CPU, a real out-of-memory error halves the
batch, and the alignment engine gives the CPU's numbers on the GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.features.extract import extract_features

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
N = 64


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cuda-ds")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"id": str(i), "image": f"{i}.png", "caption": " ".join(["word"] * (1 + i % 9)) + f" {i}"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "m.jsonl"


@pytest.mark.parametrize("kind", ["dinov2", "llama"])
def test_gpu_bf16_matches_cpu_fp32(tiny_model_dir, images, tmp_path, kind) -> None:
    folder = str(tiny_model_dir(kind))
    cpu = (
        extract_features(model=folder, dataset=images, cache_dir=tmp_path, device="cpu", dtype="float32", num_workers=0)
        .open()
        .read()
    )
    gpu32 = (
        extract_features(
            model=folder, dataset=images, cache_dir=tmp_path, device="cuda", dtype="float32", num_workers=2
        )
        .open()
        .read()
    )
    gpu16 = (
        extract_features(
            model=folder, dataset=images, cache_dir=tmp_path, device="cuda", dtype="bfloat16", num_workers=2
        )
        .open()
        .read()
    )
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    assert rel(gpu32, cpu) < 1e-3  # TF32 matmuls may be on
    assert rel(gpu16, cpu) < 3e-2


def test_real_out_of_memory_halves_the_batch(tiny_model_dir, images, tmp_path, monkeypatch) -> None:
    import probe.models.loading

    original = probe.models.loading.LoadedModel.encode

    def encode_with_big_activation(self, batch, *, pools, **kwargs):
        n = next(iter(batch.values())).shape[0]
        if n > 8:  # a real CUDA allocation that cannot fit: ~ n * 64 GiB
            torch.empty((n, 64, 1024, 1024, 256), dtype=torch.float32, device=self.device)
        return original(self, batch, pools=pools, **kwargs)

    monkeypatch.setattr(probe.models.loading.LoadedModel, "encode", encode_with_big_activation)
    res = extract_features(
        model=str(tiny_model_dir("vit")),
        dataset=images,
        cache_dir=tmp_path,
        device="cuda",
        batch_size=32,
        num_workers=0,
    )
    assert res.batch_size == 8 and res.open().num_rows == N


@pytest.mark.parametrize("path", ["dense", "blocked"])  # blocked: CKNNA by cuSPARSE's sampled product
def test_alignment_on_gpu_equals_cpu(path) -> None:
    from probe.align.engine import alignment_matrices

    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 4, 64)).astype(np.float32)
    t = (v[:, :3, :48] + rng.normal(scale=0.5, size=(300, 3, 48))).astype(np.float32)
    metrics = ("mutual_knn", "cka", "unbiased_cka", "cknna")
    cpu = alignment_matrices(v, t, metrics=metrics, device="cpu", path=path)
    gpu = alignment_matrices(v, t, metrics=metrics, device="cuda", path=path)
    for m in metrics:
        np.testing.assert_allclose(gpu[m], cpu[m], atol=2e-3, err_msg=m)


@pytest.mark.parametrize("kind", ["dinov2", "llama"])
def test_gpu_float16_storage_is_the_float32_features_rounded(tiny_model_dir, images, tmp_path, kind) -> None:
    """The CUDA path selects layers and casts to the store dtype on the GPU, then copies non_blocking into
    pinned memory for the writer thread: the result must be the float32 features rounded to float16."""
    folder = str(tiny_model_dir(kind))
    full = (
        extract_features(
            model=folder,
            dataset=images,
            cache_dir=tmp_path,
            device="cuda",
            dtype="float32",
            num_workers=2,
            batch_size=8,
            layers="1,3",
        )
        .open()
        .read()
    )
    half = (
        extract_features(
            model=folder,
            dataset=images,
            cache_dir=tmp_path,
            device="cuda",
            dtype="float32",
            num_workers=2,
            batch_size=8,
            layers="1,3",
            store_dtype="float16",
        )
        .open()
        .read()
    )
    assert full.shape[1] == 2
    rounded = full.astype(np.float16).astype(np.float32)
    # Equal, but for a GPU kernel's last-bit run-to-run change flipping a rounding: at most one float16 step.
    np.testing.assert_allclose(half, rounded, rtol=2**-10, atol=1e-7)
    assert (half == rounded).mean() > 0.99


def test_calibration_and_rows_on_gpu_equal_cpu() -> None:
    """The resampler's batched permutations and subsets, and the per-row agreement, on the GPU: the CPU's numbers
    (TF32 matmuls may flip a near-tie neighbour, hence the tolerance)."""
    from probe.align.stats import score_alignment

    rng = np.random.default_rng(1)
    v = rng.normal(size=(400, 4, 64)).astype(np.float32)
    t = (v[:, :3, :48] + rng.normal(scale=0.5, size=(400, 3, 48))).astype(np.float32)
    options = dict(metrics=("mutual_knn", "cka", "unbiased_cka", "cknna"), permutations=30, subsamples=10, per_row=True)
    cpu = score_alignment(v, t, device="cpu", **options)
    gpu = score_alignment(v, t, device="cuda", **options)
    for name, m in cpu.metrics.items():
        g = gpu.metrics[name]
        assert g.null_max_mean == pytest.approx(m.null_max_mean, abs=2e-3), name
        np.testing.assert_allclose(g.max_interval, m.max_interval, atol=2e-3, err_msg=name)
        assert abs(gpu.rows[name].scores.mean() - g.best_score) < 1e-6, name
