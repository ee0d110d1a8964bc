"""End to end against forward only: does `probe extract` keep the device busy? (issue 12)

Builds, with random weights and no network, a Dinov2 of the webssl-dino1b shape (1536 x 40, SwiGLU, patch 14,
224 px) and a LLaMA of the Llama-3.2-1B shape (2048 x 16, GQA 32/8, MLP 8192, vocab 128256), saved as local
checkpoint folders (weights, image processor, a word-level tokenizer) in a temporary folder, and a synthetic
paired set of JPEGs (256-640 px a side) and captions (4-60 words). For each modality it prints:

- forward only: `LoadedModel.encode` (every hidden state, pooled, left on the device) on batches collated
  beforehand, device-synchronised: what the model alone can take;
- end to end: `extract_features` on the manifest (decode, collate, forward, copy, batch files, assembly), timed
  from its first progress call (model loaded, dataset hashed) to its return, and the whole call;
- their ratio (the issue's goal: >= 90 % on a GPU), and the cache write rate: stored feature bytes / the
  end-to-end seconds;
- for text, `probe extract` again with batches filled to a token budget (`--max-tokens`) instead of fixed
  batches: whether larger length-sorted batches gain (not the default: see docs/cache.md);
- with `--compile`, the forward-only rates again through `torch.compile` (compilation in the warm-up batch).

    python bench/gpu_e2e.py              # CUDA: real shapes, 8,192 rows, bfloat16, batch 128 (vision) / 256 (text)
    python bench/gpu_e2e.py --tiny       # tiny shapes on CPU in well under a minute (default without CUDA)
    python bench/gpu_e2e.py --compile    # also forward only through torch.compile (minutes of compilation)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

WORDS = [f"w{i}" for i in range(2000)]


def _jpeg(args: tuple[Path, int, int, int]) -> None:
    """One synthetic photo-like JPEG: a smooth random gradient plus mild noise (compresses like a photo)."""
    from PIL import Image

    path, w, h, seed = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [np.sin(xx / rng.uniform(8, 60) + c) * np.cos(yy / rng.uniform(8, 60) - c) for c in rng.uniform(0, 6, 3)], -1
    )
    img = (127 + 100 * base + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def make_dataset(root: Path, *, rows: int, sizes: tuple[int, int], seed: int = 0) -> Path:
    """`rows` JPEGs with sides drawn from `sizes` and captions of 4-60 words; returns the manifest path."""
    rng = np.random.default_rng(seed)
    jobs, records = [], []
    for i in range(rows):
        w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        jobs.append((root / f"{i:06d}.jpg", w, h, seed * 1_000_003 + i))
        caption = " ".join(rng.choice(WORDS, int(rng.integers(4, 61))))
        records.append({"id": f"r{i}", "image": f"{i:06d}.jpg", "caption": caption})
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(_jpeg, jobs, chunksize=64))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return manifest


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=512, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def make_models(root: Path, *, tiny: bool) -> dict[str, Path]:
    """Random-weight checkpoint folders {'vision': ..., 'text': ...} of the shapes above (tiny: small shapes)."""
    import transformers as tf

    torch.manual_seed(0)
    if tiny:
        vcfg = tf.Dinov2Config(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=56,
            patch_size=14,
            use_swiglu_ffn=True,
        )
        tcfg = tf.LlamaConfig(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=len(WORDS) + 3,
            bos_token_id=1,
            eos_token_id=2,
        )
        crop = 56
    else:
        vcfg = tf.Dinov2Config(
            hidden_size=1536,
            num_hidden_layers=40,
            num_attention_heads=24,
            mlp_ratio=4,
            use_swiglu_ffn=True,
            image_size=224,
            patch_size=14,
            layerscale_value=1e-5,
        )
        tcfg = tf.LlamaConfig(
            hidden_size=2048,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=8192,
            vocab_size=128256,
            rope_theta=500000.0,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        )
        crop = 224
    folders = {"vision": root / "dino", "text": root / "llama"}
    dtype = torch.float32 if tiny else torch.bfloat16
    tf.Dinov2Model(vcfg).to(dtype).save_pretrained(folders["vision"])
    tf.BitImageProcessor(
        size={"shortest_edge": crop * 256 // 224},
        crop_size={"height": crop, "width": crop},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folders["vision"])
    tf.LlamaModel(tcfg).to(dtype).save_pretrained(folders["text"])
    _tokenizer().save_pretrained(folders["text"])
    return folders


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_rate(
    folder: Path,
    manifest: Path,
    *,
    modality: str,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    batches: int,
    cache: Path,
    compile: bool = False,
) -> float:
    """Rows/s of `encode` alone on `batches` pre-collated batches (one warm-up batch first, not timed)."""
    from PIL import Image

    from probe.models.loading import load_model
    from probe.models.names import resolve_model

    loaded = load_model(resolve_model(str(folder)), device=device, dtype=dtype, cache_dir=cache, compile=compile)
    records = [json.loads(line) for line in manifest.read_text().splitlines()][: batch * (batches + 1)]
    pools = ["cls"] if modality == "vision" else ["mean"]
    collated = []
    for s in range(0, len(records), batch):
        part = records[s : s + batch]
        if modality == "vision":
            items = [Image.open(manifest.parent / r["image"]).convert("RGB") for r in part]
        else:
            items = [r["caption"] for r in part]
        inputs = loaded.collate(items)
        if device.type == "cuda":
            inputs = {k: v.pin_memory() for k, v in inputs.items()}
        collated.append(inputs)
    kwargs = {"on_device": True} if device.type == "cuda" else {}
    loaded.encode(collated[0], pools=pools, **kwargs)
    _sync(device)
    t0 = time.perf_counter()
    rows = 0
    for inputs in collated[1:]:
        loaded.encode(inputs, pools=pools, **kwargs)
        rows += next(iter(inputs.values())).shape[0]
    _sync(device)
    del loaded
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows / (time.perf_counter() - t0)


def e2e(
    folder: Path,
    manifest: Path,
    *,
    batch: int | None,
    device: str,
    dtype: str,
    cache: Path,
    workers: int,
    max_tokens: int | None = None,
) -> dict:
    from probe.features.cache import FeatureCache
    from probe.features.extract import extract_features

    marks: list[float] = []
    t0 = time.perf_counter()
    res = extract_features(
        model=str(folder),
        dataset=manifest,
        cache_dir=cache,
        batch_size=batch,
        device=device,
        dtype=dtype,
        num_workers=workers,
        max_tokens=max_tokens,
        overwrite="always",
        progress=lambda done, total, what: marks.append(time.perf_counter()),
    )
    t1 = time.perf_counter()
    c = FeatureCache(res.path)
    stored = c.num_rows * c.num_layers * c.hidden_size * 4 * len(c.pools)
    loop = t1 - marks[0]
    return {
        "rows": res.rows_extracted,
        "rate": res.rows_extracted / loop,
        "loop_s": loop,
        "call_s": t1 - t0,
        "mb": stored / 1e6,
        "write_mb_s": stored / 1e6 / loop,
        "file_mb": res.path.stat().st_size / 1e6,
        "batch": res.batch_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (default when CUDA is absent)")
    ap.add_argument("--rows", type=int, default=None, help="dataset rows (default 8192; tiny: 192)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(8, cores - 1))")
    ap.add_argument(
        "--keep", type=Path, default=None, help="build in this folder and keep it (default: a temporary one)"
    )
    ap.add_argument("--compile", action="store_true", help="also time forward only through torch.compile")
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="text token budget to compare (default 32768; tiny: 2048)"
    )
    args = ap.parse_args()
    tiny = args.tiny or not torch.cuda.is_available()
    device = torch.device("cpu" if tiny else "cuda")
    dtype = torch.float32 if tiny else torch.bfloat16
    rows = args.rows or (192 if tiny else 8192)
    batch = {"vision": 32 if tiny else 128, "text": 32 if tiny else 256}
    workers = args.workers if args.workers is not None else (2 if tiny else min(8, (os.cpu_count() or 2) - 1))
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        (root / "data").mkdir()
        manifest = make_dataset(root / "data", rows=rows, sizes=(64, 160) if tiny else (256, 640))
        folders = make_models(root / "models", tiny=tiny)
        print(
            f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), dtype "
            f"{str(dtype).removeprefix('torch.')}, {rows} rows, workers {workers}, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}; built data and models in {time.perf_counter() - t:.1f} s"
        )
        for modality in ("vision", "text"):
            unit = "img/s" if modality == "vision" else "captions/s"
            fwd = forward_rate(
                folders[modality],
                manifest,
                modality=modality,
                batch=batch[modality],
                device=device,
                dtype=dtype,
                batches=min(8, rows // batch[modality] - 1),
                cache=root / "cache",
            )
            out = e2e(
                folders[modality],
                manifest,
                batch=batch[modality],
                device=device.type,
                dtype=str(dtype).removeprefix("torch."),
                cache=root / "cache",
                workers=workers,
            )
            print(
                f"{modality:6s} batch {batch[modality]:3d}: forward only {fwd:8.1f} {unit}; probe extract "
                f"{out['rate']:8.1f} {unit} (loop {out['loop_s']:.1f} s, whole call {out['call_s']:.1f} s); ratio "
                f"{out['rate'] / fwd:5.1%}; cache {out['mb']:.1f} MB at {out['write_mb_s']:.1f} MB/s"
            )
            if modality == "text":
                tokens = args.max_tokens or (2048 if tiny else 32768)
                budget = e2e(
                    folders[modality],
                    manifest,
                    batch=None,
                    device=device.type,
                    max_tokens=tokens,
                    dtype=str(dtype).removeprefix("torch."),
                    cache=root / "cache",
                    workers=workers,
                )
                print(
                    f"text   max-tokens {tokens}: probe extract {budget['rate']:8.1f} {unit} (batches of up to "
                    f"{budget['batch']} rows; loop {budget['loop_s']:.1f} s): {budget['rate'] / out['rate']:.2f}x the "
                    f"fixed batches, {budget['rate'] / fwd:5.1%} of their forward only"
                )
            if args.compile:
                t = time.perf_counter()
                fast = forward_rate(
                    folders[modality],
                    manifest,
                    modality=modality,
                    batch=batch[modality],
                    device=device,
                    dtype=dtype,
                    batches=min(8, rows // batch[modality] - 1),
                    cache=root / "cache",
                    compile=True,
                )
                print(
                    f"{modality:6s} torch.compile: forward only {fast:8.1f} {unit}: {fast / fwd:.2f}x eager "
                    f"(whole measurement with compilation {time.perf_counter() - t:.0f} s)"
                )


if __name__ == "__main__":
    main()
