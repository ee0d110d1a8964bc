"""Controls: the pixel "models" (pixels-8/16/32) and the random-init twin of any model (random-init:<model>)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import InputError, ModelError
from probe.features.extract import extract_features
from probe.features.format import model_key
from probe.models.loading import load_model
from probe.models.names import list_models, resolve_model

CPU = torch.device("cpu")
# Kinds whose twin is checked against the trained model: a plain ViT, registers, a vision tower read out of a
# dual checkpoint, a config override (ViTMAE's mask_ratio), an encoder and a decoder read through AutoModel.
TWIN_KINDS = ("vit", "dinov2_registers", "clip", "vit_mae", "bert", "llama")
# conftest builds its tiny checkpoints under torch.manual_seed(0), so a seed-0 twin of a class built the same
# way would redraw those very weights: twins here use other seeds.
TWIN_SEED = 7


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six images of odd sizes and every mode extraction converts (RGBA, L, P, RGB), with a manifest."""
    root = tmp_path_factory.mktemp("pixels")
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)),  # sizes no output size divides
        Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8), mode="L"),
        Image.fromarray(rng.integers(0, 256, (41, 29, 3), dtype=np.uint8)).convert("P"),
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (9, 200, 3), dtype=np.uint8)),
    ]
    rows = []
    for i, image in enumerate(images):
        image.save(root / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"{i}.png", "caption": f"image number {i}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"


def _manifest_images(manifest: Path) -> list[Path]:
    return [manifest.parent / json.loads(line)["image"] for line in manifest.read_text().splitlines()]


# ------------------------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("size", [8, 16, 32])
def test_pixel_features_equal_an_independent_pil_computation(size, image_manifest, tmp_path):
    result = extract_features(
        model=f"pixels-{size}", dataset=image_manifest, cache_dir=tmp_path, pool="both", device="cpu", num_workers=0
    )
    cache = result.open()
    assert (cache.num_layers, cache.num_rows, cache.hidden_size) == (1, 6, 3 * size * size)
    assert list(cache.layers) == [0]
    for pool in ("cls", "mean"):
        features = cache.layer(0, pool=pool)
        assert features.dtype == np.float32
        for row, path in enumerate(_manifest_images(image_manifest)):
            with Image.open(path) as image:
                small = image.convert("RGB").resize((size, size), resample=Image.Resampling.BOX)
            expected = np.array(small, dtype=np.float64) / 255.0  # [row, column, channel]
            np.testing.assert_allclose(features[row], expected.reshape(-1), rtol=0, atol=1e-7)
    assert result.key["model"]["pixels"]["size"] == size


def test_pixel_order_is_row_column_channel_and_box_is_the_block_mean(tmp_path):
    """Checked without PIL's resize: a 64x64 image BOX-resized to 16x16 is the mean of each 4x4 block."""
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    array[:4, 4:8] = (255, 0, 0)  # block (row 0, column 1) is pure red
    Image.fromarray(array).save(tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "image": "a.png", "caption": "a"}) + "\n")
    result = extract_features(
        model="pixels-16", dataset=tmp_path / "m.jsonl", cache_dir=tmp_path, device="cpu", num_workers=0
    )
    features = result.open().layer(0)[0]
    blocks = array.astype(np.float64).reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)) / 255.0
    # PIL's fixed-point BOX filter lands within one uint8 level of the exact mean; a wrong order would miss
    # by about a third of the range (the image is uniform noise).
    np.testing.assert_allclose(features, blocks.reshape(-1), rtol=0, atol=1 / 255 + 1e-6)
    np.testing.assert_array_equal(features[3:6], [1.0, 0.0, 0.0])  # (row 0, column 1) = entries 3..5


def test_pixel_caches_differ_per_size_and_are_reused(image_manifest, tmp_path):
    results = {
        s: extract_features(
            model=f"pixels-{s}", dataset=image_manifest, cache_dir=tmp_path, device="cpu", num_workers=0
        )
        for s in (8, 16)
    }
    assert results[8].path != results[16].path and results[8].key["model"] != results[16].key["model"]
    again = extract_features(model="pixels-16", dataset=image_manifest, cache_dir=tmp_path, device="cpu", num_workers=0)
    assert again.reused and again.path == results[16].path


def test_pixel_control_is_a_loaded_model_stand_in(tmp_path):
    loaded = load_model(resolve_model("pixels-8"), device=CPU, dtype=torch.bfloat16, cache_dir=tmp_path)
    assert (loaded.num_states, loaded.hidden_size, loaded.modality, loaded.device.type) == (1, 192, "vision", "cpu")
    assert loaded.identity["pixels"]["size"] == 8 and loaded.identity["dtype"] == "float32"
    images = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("L", (3, 5), 51)]
    copy = pickle.loads(pickle.dumps(loaded))  # collate runs in DataLoader workers
    out = loaded.encode(copy.collate(images), pools=["cls", "mean"])
    assert out["cls"].shape == (2, 1, 192) and out["cls"].dtype == torch.float32
    torch.testing.assert_close(out["cls"], out["mean"], rtol=0, atol=0)
    torch.testing.assert_close(out["cls"][0, 0, :3], torch.tensor([1.0, 0.0, 0.0]), rtol=0, atol=0)
    torch.testing.assert_close(out["cls"][1, 0], torch.full((192,), 0.2), rtol=0, atol=1e-7)
    with pytest.raises(InputError, match="PIL images"):
        loaded.collate(["a caption"])
    with pytest.raises(InputError, match="pool='last'"):
        loaded.encode(loaded.collate(images), pools=["last"])


def test_probe_models_lists_the_pixel_controls(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli(["models", "pixels*"])
    assert code == 0
    assert "3 model(s) matching 'pixels*'" in out
    for size in (8, 16, 32):
        assert f"pixels-{size} " in out and f" {3 * size * size} " in out  # one state of 3 s^2 values
    assert "random-init:<alias" in out  # the caption tells how to get any model's random twin
    assert {s.family for s in list_models("pixels")} == {"control"}


# ------------------------------------------------------------------------------------ random twins


def _state(loaded) -> dict[str, torch.Tensor]:
    return loaded.model.state_dict()


@pytest.mark.parametrize("kind", TWIN_KINDS)
def test_random_twin_has_the_models_architecture_and_fresh_weights(kind, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(kind)
    trained = load_model(resolve_model(str(folder)), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
    spec = resolve_model(f"random-init:{folder}", seed=TWIN_SEED)
    assert spec.source == "random-init" and spec.seed == TWIN_SEED and spec.alias == f"random-init:{folder.name}"
    assert spec.base == resolve_model(str(folder)) and spec.offline
    twin = load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)

    assert type(twin.model) is type(trained.model)
    ignore = {"_name_or_path", "dtype", "transformers_version"}
    config = {k: v for k, v in twin.model.config.to_dict().items() if k not in ignore}
    assert config == {k: v for k, v in trained.model.config.to_dict().items() if k not in ignore}
    trained_state, twin_state = _state(trained), _state(twin)
    for name, tensor in trained_state.items():  # the twin may hold more (ViT's pooler), never fewer or other shapes
        assert twin_state[name].shape == tensor.shape, name
    # Every block's weight matrices are redrawn; only constant-initialised embeddings (zero mask and register
    # tokens, MAE's fixed sin-cos positions) may coincide.
    matrices = [n for n, t in trained_state.items() if t.ndim >= 2 and "layer" in n]
    assert len(matrices) >= 3 and all(not torch.equal(trained_state[n], twin_state[n]) for n in matrices)

    assert twin.identity["weights"] == "random-init" and twin.identity["seed"] == TWIN_SEED
    items = ["a red cat", "the dog"] if twin.modality == "text" else [Image.new("RGB", (40, 30), (9, 99, 199))]
    batch = twin.collate(items)
    for name, value in trained.collate(items).items():  # the same processor or tokenizer
        torch.testing.assert_close(batch[name], value, rtol=0, atol=0)
    pool = spec.default_pool
    assert twin.encode(batch, pools=[pool])[pool].shape == trained.encode(batch, pools=[pool])[pool].shape


def test_seeds_change_weights_and_a_seed_repeats_its_features(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("vit")
    twins = [
        load_model(resolve_model(f"random-init:{folder}", seed=s), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
        for s in (1, 1, 2)
    ]
    weight = next(n for n, t in _state(twins[0]).items() if "layer" in n and t.ndim == 2)
    assert torch.equal(_state(twins[0])[weight], _state(twins[1])[weight])
    assert not torch.equal(_state(twins[0])[weight], _state(twins[2])[weight])
    images = [Image.new("RGB", (33, 47), (200, 10, 50)), Image.new("RGB", (20, 20), (0, 128, 255))]
    a, b, c = (t.encode(t.collate(images), pools=["cls"])["cls"] for t in twins)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a[:, -1], c[:, -1], atol=1e-3)


def test_extract_seed_goes_into_the_key_and_the_features(tiny_model_dir, image_manifest, tmp_path):
    folder = tiny_model_dir("vit")
    run = dict(model=f"random-init:{folder}", dataset=image_manifest, cache_dir=tmp_path, device="cpu", num_workers=0)
    default, seed0, seed3 = extract_features(**run), extract_features(**run, seed=0), extract_features(**run, seed=3)
    assert seed0.reused and seed0.path == default.path  # seed 0 is the default
    assert seed3.path != default.path and seed3.key["model"]["seed"] == 3 and default.key["model"]["seed"] == 0
    assert default.key["model"]["base"]["name"] == folder.name
    last = default.open().num_layers - 1
    assert not np.allclose(default.open().layer(last), seed3.open().layer(last), atol=1e-3)
    with pytest.raises(InputError, match="seed=3 applies to random-init models only"):
        extract_features(model=str(folder), dataset=image_manifest, cache_dir=tmp_path, device="cpu", seed=3)


def test_twin_key_follows_config_and_processor_not_weights(tiny_model_dir, tmp_path):
    folder = tmp_path / "vit"
    shutil.copytree(tiny_model_dir("vit"), folder)
    key = model_key(resolve_model(f"random-init:{folder}"))
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    assert model_key(resolve_model(f"random-init:{folder}")) == key  # retrained weights: same twin
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    processor["image_mean"] = [0.1, 0.2, 0.3]
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    assert model_key(resolve_model(f"random-init:{folder}")) != key


def test_tiny_random_vit_is_the_random_init_twin_of_tiny_ssl_vit(tiny_model_dir, tmp_path, monkeypatch):
    import probe.models.sources as sources
    from probe.ssl import random_init_vit

    assert resolve_model("random-init:tiny-ssl-vit") == resolve_model("tiny-random-vit")
    assert resolve_model("tiny-random-vit").base == resolve_model("tiny-ssl-vit")
    shutil.copytree(tiny_model_dir("vit"), tmp_path / "data" / "tiny-ssl-vit")
    monkeypatch.setattr(sources, "repo_root", lambda: tmp_path)
    for seed in (0, 4):
        twin = load_model(
            resolve_model("tiny-random-vit", seed=seed), device=CPU, dtype=torch.float32, cache_dir=tmp_path
        )
        # The demo's control as the training script builds it, bit for bit.
        legacy = random_init_vit(tmp_path / "data" / "tiny-ssl-vit", seed=seed).state_dict()
        assert _state(twin).keys() == legacy.keys()
        assert all(torch.equal(_state(twin)[k], legacy[k]) for k in legacy)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("random-init:dinov2-smal", "unknown model 'random-init:dinov2-smal'. Did you mean 'random-init:dinov2-small'"),
        ("random-init:", "needs a model after the colon"),
        ("random-init:./no/such/folder", "does not exist"),
        ("random-init:tiny-random-vit", "already has random weights"),
        ("random-init:pixels-16", "has no weights to re-initialise"),
    ],
)
def test_bad_random_init_names_say_what_to_do(name, match):
    with pytest.raises(ModelError, match=match):
        resolve_model(name)


def test_bad_random_init_name_is_one_red_line_in_the_cli(cli, image_manifest, tmp_path):
    code, _, err = cli(
        ["extract", "-m", "random-init:webssl-dino1", "-d", str(image_manifest), "--cache-dir", str(tmp_path)]
    )
    assert code == 2 and "random-init:webssl-dino" in err and "Traceback" not in err


def test_twin_of_a_hub_model_needs_its_config_and_says_so_offline(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    gated = resolve_model("random-init:llama3")  # the twin reads the gated config and tokenizer: still gated
    assert gated.gated and not gated.offline and gated.base.hub_id == "meta-llama/Meta-Llama-3-8B"
    spec = resolve_model("random-init:dinov2-small", seed=2)
    assert model_key(spec)["base"]["revision"] == spec.base.revision == spec.revision
    if isinstance(try_to_load_from_cache(spec.hub_id, "config.json", revision=spec.revision), str):
        pytest.skip("dinov2-small is in this machine's HF cache")
    with pytest.raises(ModelError, match="not cached locally and the hub is unreachable"):
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)
