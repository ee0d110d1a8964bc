"""Extraction end to end on tiny local checkpoints: cached features equal transformers' own outputs,
resume after a crash (a real SIGKILL), cache reuse, and the bad inputs a user can make."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import InputError, ModelError, ProbeError
from probe.features.cache import check_paired
from probe.features.extract import extract_features, plan_batches
from probe.features.inventory import verify_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N = 12
# float32 CPU kernels split work by batch size, so a row's features change (slightly) with the rows that share
# its batch. Where a test changes batch composition on purpose (--limit, OOM halving) it allows this much;
# docs/cache.md gives the measured bound. Where composition is the same, features must be bit-identical.
COMPOSITION_ATOL, COMPOSITION_RTOL = 2e-5, 1e-5


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    words = ["red", "cat", "on", "a", "mat", "big", "blue", "dog", "in", "the", "park", "sky"]
    rows = []
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
        caption = " ".join(words[(i + j) % len(words)] for j in range(1 + i % 7))  # lengths vary: padding is exercised
        rows.append({"id": f"row{i}", "image": f"{i}.png", "caption": caption, "kind": "ab"[i % 2]})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root / "manifest.jsonl"


def _reference_vision(folder: Path, manifest: Path, pool: str) -> np.ndarray:
    """[N, L+1, D] from transformers directly, one image at a time, pooled by hand."""
    from transformers import AutoConfig, AutoImageProcessor, Dinov2Model, ViTModel

    cfg = AutoConfig.from_pretrained(folder)
    cls = Dinov2Model if cfg.model_type == "dinov2" else ViTModel
    model = cls.from_pretrained(folder).eval()
    proc = AutoImageProcessor.from_pretrained(folder)
    out = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        image = Image.open(manifest.parent / rec["image"]).convert("RGB")
        with torch.no_grad():
            hs = model(**proc(images=[image], return_tensors="pt"), output_hidden_states=True).hidden_states
        st = torch.stack(hs, 1)[0]  # [L+1, T, D]
        out.append((st[:, 0] if pool == "cls" else st[:, 1:].mean(1)).numpy())
    return np.stack(out)


def _reference_text(folder: Path, captions: list[str]) -> np.ndarray:
    """[N, L+1, D] mean over all tokens of each caption encoded alone (no padding at all)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = []
    for c in captions:
        with torch.no_grad():
            hs = model(**tok([c], return_tensors="pt"), output_hidden_states=True).hidden_states
        out.append(torch.stack(hs, 1)[0].mean(1).numpy())
    return np.stack(out)


@pytest.mark.parametrize("kind", ["dinov2", "vit_mae"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vision_cache_equals_transformers(tiny_model_dir, tiny_dataset, tmp_path, kind, pool) -> None:
    folder = tiny_model_dir(kind)
    res = extract_features(
        model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, pool=pool, batch_size=5, num_workers=0
    )
    cache = res.open()
    assert cache.num_rows == N and cache.pools == [pool]
    np.testing.assert_allclose(cache.read(), _reference_vision(folder, tiny_dataset, pool), atol=1e-5, rtol=1e-4)
    assert verify_cache(res.path) == []


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_text_cache_equals_transformers_despite_padding(tiny_model_dir, tiny_dataset, tmp_path, kind) -> None:
    folder = tiny_model_dir(kind)
    res = extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, batch_size=4)
    captions = [json.loads(line)["caption"] for line in tiny_dataset.read_text().splitlines()]
    np.testing.assert_allclose(res.open().read(), _reference_text(folder, captions), atol=1e-4, rtol=1e-3)


def test_both_pools_layers_and_reuse(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    folder = tiny_model_dir("dinov2")
    res = extract_features(
        model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, pool="both", layers="0,-1", num_workers=0
    )
    cache = res.open()
    assert cache.pools == ["cls", "mean"] and cache.layers[0] == 0 and len(cache.layers) == 2
    again = extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, pool="both", layers="0,-1")
    assert again.reused and again.path == res.path and again.rows_extracted == 0
    limited = extract_features(
        model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, pool="both", layers="0,-1", limit=5, num_workers=0
    )
    assert limited.path != res.path and limited.open().num_rows == 5
    # 5 rows in one batch instead of 12: another batch composition, so equal within float32 kernel error.
    np.testing.assert_allclose(
        limited.open().read(pool="cls"), cache.read(pool="cls")[:5], atol=COMPOSITION_ATOL, rtol=COMPOSITION_RTOL
    )


def test_settings_object_and_keywords_are_one_request(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    """`extract_features` takes an `ExtractSettings` or its fields as keywords (keywords win), to the same cache."""
    from probe.features.settings import ExtractSettings

    folder = str(tiny_model_dir("vit"))
    res = extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path, layers="0,-1", num_workers=0)
    settings = ExtractSettings(cache_dir=str(tmp_path), layers="all", num_workers=0)
    again = extract_features(model=folder, dataset=tiny_dataset, settings=settings, layers="0,-1")
    assert again.reused and again.path == res.path
    assert settings.cache_dir == tmp_path  # a str folder is kept as a Path
    with pytest.raises(TypeError, match="unknown extraction setting.*batchsize"):
        extract_features(model=folder, dataset=tiny_dataset, settings=settings, batchsize=4)
    with pytest.raises(InputError, match="batch_size=0 must be at least 1"):
        extract_features(model=folder, dataset=tiny_dataset, settings=settings, batch_size=0)


def test_vision_and_text_caches_are_paired(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    v = extract_features(
        model=str(tiny_model_dir("vit")), dataset=tiny_dataset, cache_dir=tmp_path, num_workers=0
    ).open()
    t = extract_features(model=str(tiny_model_dir("bert")), dataset=tiny_dataset, cache_dir=tmp_path).open()
    check_paired(v, t)


def test_out_of_memory_halves_the_batch_and_gives_the_same_features(
    tiny_model_dir, tiny_dataset, tmp_path, monkeypatch
) -> None:
    import probe.models.loading

    folder = tiny_model_dir("vit")
    ref = (
        extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path / "a", batch_size=8, num_workers=0)
        .open()
        .read()
    )
    original = probe.models.loading.LoadedModel.encode
    seen = []

    def fake_encode(self, batch, *, pools):
        n = next(iter(batch.values())).shape[0]
        seen.append(n)
        if n > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, batch, pools=pools)

    monkeypatch.setattr(probe.models.loading.LoadedModel, "encode", fake_encode)
    res = extract_features(
        model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path / "b", batch_size=8, num_workers=0
    )
    assert res.batch_size == 2 and seen[:3] == [8, 4, 2]
    np.testing.assert_allclose(res.open().read(), ref, atol=COMPOSITION_ATOL, rtol=COMPOSITION_RTOL)


_CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import probe.features.writer as cw
    from probe.features.extract import extract_features
    original = cw.PartialWriter.write_batch
    count = {"n": 0}
    def write_then_die(self, rows, features, **kw):
        original(self, rows, features, **kw)
        count["n"] += 1
        if count["n"] == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)  # as if the machine died after this batch
    cw.PartialWriter.write_batch = write_then_die
    extract_features(model=sys.argv[1], dataset=sys.argv[2], cache_dir=sys.argv[3], batch_size=3, num_workers=0)
    """
)


def test_resume_after_sigkill_gives_the_uninterrupted_features(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    folder = tiny_model_dir("dinov2")
    ref = (
        extract_features(
            model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path / "clean", batch_size=3, num_workers=0
        )
        .open()
        .read()
    )
    crashed = tmp_path / "crashed"
    # The killed run must use this process's thread count: BLAS splits work by thread count too.
    threads = str(torch.get_num_threads())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(folder), str(tiny_dataset), str(crashed), "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not list(crashed.rglob("*.h5")), "a killed run must not leave a cache that later commands trust"
    parts = list(crashed.rglob("*.partial"))
    assert len(parts) == 1 and len(list(parts[0].glob("batch-*.npz"))) == 2
    res = extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=crashed, batch_size=3, num_workers=0)
    assert res.rows_extracted == N - 6  # only the rows the killed run had not saved
    np.testing.assert_array_equal(res.open().read(), ref)


def test_batch_plan_is_fixed_and_length_grouped() -> None:
    lengths = [5, 1, 9, 3, 9, 2, 7]
    batches = plan_batches(np.arange(7), 3, lengths=lengths)
    assert sorted(sum(batches, [])) == list(range(7))
    assert [[lengths[i] for i in b] for b in batches] == [[9, 9, 7], [5, 3, 2], [1]]
    assert plan_batches(np.arange(7), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_batches(np.arange(1, 7, 2), 2) == [[1, 3], [5]]  # one shard's rows


def test_token_budget_plan_fills_batches_up_to_the_padded_size() -> None:
    lengths = [5, 1, 9, 3, 9, 2, 7, 40, 1, 1]
    batches = plan_batches(np.arange(10), None, lengths=lengths, max_tokens=20)
    assert sorted(sum(batches, [])) == list(range(10))
    # Longest first; a batch's padded size is rows x its first (longest) row: 40 alone (over budget), then
    # 9+9 (18; a third would make 27), 7+5 (14; a third would make 21), then the rest: 5 rows x 3 = 15.
    assert [[lengths[i] for i in b] for b in batches] == [[40], [9, 9], [7, 5], [3, 2, 1, 1, 1]]
    assert all(len(b) * lengths[b[0]] <= 20 or len(b) == 1 for b in batches)
    # batch_size still caps the rows when it is given too
    capped = plan_batches(np.arange(10), 2, lengths=lengths, max_tokens=20)
    assert [[lengths[i] for i in b] for b in capped] == [[40], [9, 9], [7, 5], [3, 2], [1, 1], [1]]
    assert plan_batches(np.arange(10), None, lengths=lengths, max_tokens=20) == batches  # fixed: same plan every time


def test_token_budget_extraction_matches_fixed_batches_and_resumes_bit_identically(
    tiny_model_dir, tiny_dataset, tmp_path, monkeypatch
) -> None:
    import probe.features.writer as cw

    folder = str(tiny_model_dir("llama"))
    fixed = (
        extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "fixed", batch_size=4).open().read()
    )
    sizes: list[int] = []
    original = cw.PartialWriter.write_batch
    monkeypatch.setattr(
        cw.PartialWriter,
        "write_batch",
        lambda self, rows, f, **kw: sizes.append(len(rows)) or original(self, rows, f, **kw),
    )
    budget = extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "budget", max_tokens=40)
    assert len(set(sizes)) > 1 and sum(sizes) == N  # batches of several sizes: short captions share bigger ones
    assert json.loads(h5py.File(budget.path)["/"].attrs["provenance"])["max_tokens"] == 40
    np.testing.assert_allclose(budget.open().read(), fixed, atol=COMPOSITION_ATOL, rtol=COMPOSITION_RTOL)
    with pytest.raises(InputError, match="max_tokens= applies to text models only"):
        extract_features(model=str(tiny_model_dir("vit")), dataset=tiny_dataset, cache_dir=tmp_path, max_tokens=40)


def test_compiled_network_gives_the_eager_features(tiny_model_dir, tiny_dataset, tmp_path, monkeypatch) -> None:
    # Dynamo traces the real text model (hidden states, every batch its own length, the last and smaller batch);
    # the "eager" backend skips inductor's C++ code generation, which takes a minute on this CPU.
    import functools

    import transformers as tf

    from probe.models.loading import compile_blocks

    compiled = []
    real = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda m, **kw: compiled.append(kw) or functools.partial(real, backend="eager")(m, **kw)
    )
    folder = str(tiny_model_dir("llama"))
    eager = extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "eager", batch_size=5)
    res = extract_features(
        model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "compiled", batch_size=5, compile=True
    )
    assert (
        json.loads(h5py.File(res.path)["/"].attrs["provenance"])["model_identity"]["compiled"]
        == "3 x LlamaDecoderLayer"
    )
    assert compiled == [{"dynamic": True}] * 3  # the three blocks, for any batch and length; nothing else
    np.testing.assert_allclose(res.open().read(), eager.open().read(), atol=1e-6, rtol=1e-6)
    # Vision: the encoder's layer stack, at fixed shapes; CLIP: each tower's stack (the outermost lists only).
    compiled.clear()
    assert (
        compile_blocks(
            tf.Dinov2Model(tf.Dinov2Config(hidden_size=8, num_hidden_layers=2, num_attention_heads=2)), dynamic=False
        )
        == "2 x Dinov2Layer"
    )
    assert compiled == [{"dynamic": False}] * 2
    clip = tf.CLIPModel(
        tf.CLIPConfig(
            text_config=dict(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8),
            vision_config=dict(hidden_size=8, num_hidden_layers=3, num_attention_heads=2, intermediate_size=8),
        )
    )
    assert compile_blocks(clip, dynamic=False) == "2 x CLIPEncoderLayer, 3 x CLIPEncoderLayer"


def test_resume_redoes_whole_planned_batches_of_text(tiny_model_dir, tiny_dataset, tmp_path, monkeypatch) -> None:
    """A text run killed mid-way (simulated by deleting one batch file) redoes exactly that planned batch,
    with the same companions, and the cache is bit-identical to the uninterrupted one."""
    import probe.features.writer as cw

    folder = str(tiny_model_dir("llama"))
    ref = extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "clean", batch_size=5).open().read()
    seen: list[list[int]] = []
    original = cw.PartialWriter.write_batch

    def record(self, rows, features, **kw):
        seen.append(sorted(int(r) for r in rows))
        original(self, rows, features, **kw)

    real_assemble = cw.PartialWriter.assemble
    monkeypatch.setattr(cw.PartialWriter, "write_batch", record)
    monkeypatch.setattr(cw.PartialWriter, "assemble", lambda self, **kw: None)  # stop before assembly
    with pytest.raises(ProbeError, match="missing rows"):
        extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "resumed", batch_size=5)
    planned = list(seen)
    assert len(planned) == 3  # 12 rows in batches of 5, 5, 2
    (partial,) = (tmp_path / "resumed").rglob("*.partial")
    victim = next(p for p in partial.glob("batch-*.npz") if sorted(np.load(p)["rows"].tolist()) == planned[1])
    victim.unlink()
    seen.clear()
    monkeypatch.setattr(cw.PartialWriter, "assemble", real_assemble)
    res = extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "resumed", batch_size=5)
    assert seen == [planned[1]] and res.rows_extracted == len(planned[1])
    np.testing.assert_array_equal(res.open().read(), ref)


def test_bad_inputs(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    vit, bert = str(tiny_model_dir("vit")), str(tiny_model_dir("bert"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (bad / "manifest.jsonl").write_text('{"id": "a", "image": "broken.png", "caption": "x"}\n')
    with pytest.raises(InputError, match="cannot read image .*broken.png"):
        extract_features(model=vit, dataset=bad / "manifest.jsonl", cache_dir=tmp_path, num_workers=0)
    assert not list(tmp_path.rglob("*.h5"))
    (bad / "nocap.jsonl").write_text('{"id": "a", "image": "broken.png"}\n')
    with pytest.raises(InputError, match="no caption"):
        extract_features(model=bert, dataset=bad / "nocap.jsonl", cache_dir=tmp_path)
    with pytest.raises(InputError, match="layers="):
        extract_features(model=vit, dataset=tiny_dataset, cache_dir=tmp_path, layers="99")
    with pytest.raises(InputError, match="pool='last' does not apply to a vision model"):
        extract_features(model=vit, dataset=tiny_dataset, cache_dir=tmp_path, pool="last")
    with pytest.raises(InputError, match="placeholder"):
        extract_features(model=bert, dataset=tiny_dataset, cache_dir=tmp_path, prompt="no slot")
    with pytest.raises(ModelError):
        extract_features(model=str(tmp_path / "no-such-model"), dataset=tiny_dataset, cache_dir=tmp_path)
    with pytest.raises(ModelError, match="(?i)did you mean"):
        extract_features(model="webssl-dinno", dataset=tiny_dataset, cache_dir=tmp_path)
    with pytest.raises(InputError, match="overwrite='never'"):
        extract_features(model=vit, dataset=tiny_dataset, cache_dir=tmp_path / "empty", overwrite="never")
    with pytest.raises(ProbeError):
        extract_features(model=vit, dataset=tmp_path / "missing.jsonl", cache_dir=tmp_path)


def test_two_shards_fill_one_cache_equal_to_a_single_process(tiny_model_dir, tiny_dataset, tmp_path) -> None:
    from probe.features.extract import Shard

    folder = str(tiny_model_dir("vit"))
    single = (
        extract_features(model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "one", num_workers=0).open().read()
    )
    first = extract_features(
        model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "two", num_workers=0, shard=Shard(0, 2)
    )
    assert first.path is None and first.rows_extracted == N // 2  # rank 0 alone cannot complete the file
    second = extract_features(
        model=folder, dataset=tiny_dataset, cache_dir=tmp_path / "two", num_workers=0, shard=Shard(1, 2)
    )
    assert second.rows_extracted == N // 2
    np.testing.assert_array_equal(second.open().read(), single)


def test_a_cache_dir_that_is_a_file_is_one_line_before_any_work(tiny_model_dir, tiny_dataset, tmp_path, cli) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    code, _, err = cli(
        [
            "extract",
            "--model",
            str(tiny_model_dir("vit")),
            "--dataset",
            str(tiny_dataset),
            "--cache-dir",
            str(taken),
            "--no-progress",
        ]
    )
    assert code == 2 and "--cache-dir" in err and "is an existing file" in err and "Traceback" not in err
    assert taken.read_text() == "not a folder"


def test_the_cache_key_does_not_depend_on_the_working_folder(tmp_path, monkeypatch) -> None:
    """The repository's tiny models are found from any working folder, with the same key (no relative path in it)."""
    from probe.features.format import model_key
    from probe.models.names import resolve_model

    keys = []
    for folder in (Path(__file__).resolve().parents[2], tmp_path):
        monkeypatch.chdir(folder)
        keys.append([model_key(resolve_model(name)) for name in ("tiny-ssl-vit", "tiny-random-vit")])
    assert keys[0] == keys[1]
    assert all("local_fingerprint" in key or "base" in json.dumps(key) for key in keys[0])


def test_float16_storage_is_its_own_cache_and_reads_back_the_rounded_float32(
    tiny_model_dir, tiny_dataset, tmp_path
) -> None:
    folder = tiny_model_dir("dinov2")
    full = extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, batch_size=4, num_workers=0)
    half = extract_features(
        model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, batch_size=4, num_workers=0, store_dtype="float16"
    )
    assert half.path != full.path and half.key["store_dtype"] == "float16" and "store_dtype" not in full.key
    got = half.open().read()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, full.open().read().astype(np.float16).astype(np.float32))
    with pytest.raises(InputError, match="store_dtype='bfloat16'"):
        extract_features(model=str(folder), dataset=tiny_dataset, cache_dir=tmp_path, store_dtype="bfloat16")
