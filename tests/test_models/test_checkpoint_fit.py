"""The "checkpoint does not fit" check on load: weights the forward pass never reads may be absent or extra,
every other missing weight is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from probe.errors import ModelError
from probe.models.loading import load_model, unused_by_forward
from probe.models.names import resolve_model

CPU = torch.device("cpu")


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


def _edited_copy(
    source: Path, target: Path, *, drop: str | None = None, add: dict[str, torch.Tensor] | None = None
) -> Path:
    """A copy of the checkpoint folder `source` whose weights lack `drop` and/or hold the extra `add` tensors."""
    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    if drop is not None:
        assert drop in weights, sorted(weights)[:5]
        del weights[drop]
    weights.update(add or {})
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def _features(folder: Path, cache_dir: Path) -> torch.Tensor:
    model = load_model(resolve_model(str(folder)), device=CPU, dtype=torch.float32, cache_dir=cache_dir)
    return model.encode(model.collate(_images(2)), pools=["cls", "mean"])["mean"]


def test_unused_keys_are_the_pooler_and_the_mask_token_only():
    assert unused_by_forward("embeddings.mask_token") and unused_by_forward("vit.embeddings.mask_token")
    assert unused_by_forward("pooler.dense.weight") and unused_by_forward("vit.pooler.dense.bias")
    for used in (
        "embeddings.cls_token",
        "embeddings.position_embeddings",
        "layernorm.weight",
        "encoder.layer.0.norm1.weight",
        "embeddings.patch_embeddings.projection.weight",
    ):
        assert not unused_by_forward(used), used


def test_dinov2_checkpoint_without_its_mask_token_loads_with_the_same_features(tiny_model_dir, tmp_path):
    full = tiny_model_dir("dinov2")
    assert "embeddings.mask_token" in load_file(full / "model.safetensors")
    lacking = _edited_copy(full, tmp_path / "no-mask-token", drop="embeddings.mask_token")
    torch.testing.assert_close(_features(lacking, tmp_path), _features(full, tmp_path), atol=0, rtol=0)


def test_checkpoint_with_an_extra_mask_token_loads_with_the_same_features(tiny_model_dir, tmp_path):
    # WebSSL MAE checkpoints are read with ViTModel, which has no mask token unless asked for one.
    full = tiny_model_dir("vit")
    assert "embeddings.mask_token" not in load_file(full / "model.safetensors")
    extra = _edited_copy(full, tmp_path / "extra-mask-token", add={"embeddings.mask_token": torch.ones(1, 1, 32)})
    torch.testing.assert_close(_features(extra, tmp_path), _features(full, tmp_path), atol=0, rtol=0)


def test_checkpoint_missing_a_weight_the_forward_pass_reads_is_refused(tiny_model_dir, tmp_path):
    lacking = _edited_copy(tiny_model_dir("dinov2"), tmp_path / "no-norm", drop="layernorm.weight")
    with pytest.raises(ModelError, match=r"does not fit Dinov2Model \(1 missing .*layernorm.weight"):
        _features(lacking, tmp_path)
    both = _edited_copy(tiny_model_dir("dinov2"), tmp_path / "no-norm-no-mask", drop="layernorm.weight")
    weights = load_file(both / "model.safetensors")
    del weights["embeddings.mask_token"]
    save_file(weights, both / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"\(1 missing and 0 mismatched weights, e.g. layernorm.weight\)"):
        _features(both, tmp_path)
