"""Extraction throughput on this machine's CPU, and length-grouped text batching vs padding the corpus.

    python bench/bench_extract.py [--rows 256] [--cache-dir DIR]

1. Full pipeline (`extract_features`: decode in DataLoader workers, model, crash-safe cache write):
   a DINOv2 ViT-S/14 at 224 px (random weights, 22M parameters) on OpenMoji renders, and MiniLM-L6 on their
   captions: items/s.
2. Text batching, forward passes only (MiniLM, batch 64): batches of captions grouped by token length (what
   probe does) against every caption padded to the corpus's longest caption, on OpenMoji names and on a
   long-tailed synthetic caption set (lognormal word counts, like web alt-text). Prints tokens computed,
   seconds and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vit_s14(folder: Path) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=224)
    Dinov2Model(cfg).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def _time_batches(loaded, batches: list[list[str]], *, pad_to: int | None) -> tuple[float, int]:
    tok = loaded.processor
    tokens = 0
    t0 = time.perf_counter()
    for texts in batches:
        if pad_to is None:
            inputs = loaded.collate(texts)
        else:
            enc = tok(texts, padding="max_length", max_length=pad_to, truncation=True, return_tensors="pt")
            inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        tokens += int(inputs["input_ids"].numel())
        loaded.encode(inputs, pools=("mean",))
    return time.perf_counter() - t0, tokens


def bench_batching(loaded, captions: list[str], name: str, batch: int = 64) -> None:
    from probe.features.extract import plan_batches

    lengths = loaded.text_lengths(captions)
    grouped = [[captions[i] for i in b] for b in plan_batches(np.arange(len(captions)), batch, lengths=lengths)]
    padded = [captions[s : s + batch] for s in range(0, len(captions), batch)]
    _time_batches(loaded, grouped[:2], pad_to=None)  # warm-up
    tg, ng = _time_batches(loaded, grouped, pad_to=None)
    tp, np_ = _time_batches(loaded, padded, pad_to=max(lengths))
    print(
        f"  {name:<28} N={len(captions):5d}  tokens mean {np.mean(lengths):5.1f} max {max(lengths):4d} | "
        f"grouped {tg:6.2f}s ({ng:7d} tokens) | pad-all {tp:6.2f}s ({np_:7d} tokens) | speed-up {tp / tg:4.1f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    from probe.datasets import load_dataset
    from probe.devices import resolve_device
    from probe.features.extract import extract_features
    from probe.models.loading import load_model
    from probe.models.names import resolve_model

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp) / "cache"
        data = load_dataset("openmoji", cache_dir=cache, limit=args.rows)
        print(f"1. full extraction pipeline, {len(data)} OpenMoji rows, float32 on CPU")
        vit = _vit_s14(Path(tmp) / "vit-s14")
        for label, model, kwargs in (
            ("DINOv2 ViT-S/14 224px (22M)", str(vit), {"batch_size": 32}),
            ("MiniLM-L6 (22M), captions", "minilm", {"batch_size": 64}),
        ):
            res = extract_features(
                model=model, dataset=data, cache_dir=Path(tmp) / "bench-cache", overwrite="always", **kwargs
            )
            print(
                f"  {label:<28} {res.rows_extracted / res.seconds:8.1f} items/s  "
                f"({res.seconds:.1f}s incl. model load and cache write)"
            )
        print("2. length-grouped batches vs padding the whole corpus (MiniLM forward passes, batch 64)")
        loaded = load_model(resolve_model("minilm"), device=resolve_device("cpu"), dtype=torch.float32, cache_dir=cache)
        full = load_dataset("openmoji", cache_dir=cache)
        names = [c for c in full.captions if c]
        bench_batching(loaded, names[:1024], "OpenMoji names")
        rng = np.random.default_rng(0)
        words = " ".join(names).split()
        counts = np.clip(rng.lognormal(mean=2.3, sigma=0.8, size=1024).astype(int), 1, 200)
        synthetic = [" ".join(rng.choice(words, size=c)) for c in counts]
        bench_batching(loaded, synthetic, "long-tailed synthetic")


if __name__ == "__main__":
    main()
