"""How much float16 storage moves alignment scores (issue 12): tiny-ssl-vit vs minilm on openmoji.

Extracts both models with --store-dtype float32 and float16 into one cache folder, scores every (vision
layer, text layer) pair (constant layers such as a ViT's embedding CLS dropped, as `probe align` does) with
PRH's preprocessing for the four default-style metrics, and prints the largest absolute difference per
metric. Usage: python bench/store_dtype_scores.py CACHE_DIR [--limit 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from probe.align.engine import alignment_matrices
from probe.features.extract import extract_features
from probe.runs.align import informative_layers

ap = argparse.ArgumentParser()
ap.add_argument("cache", type=Path)
ap.add_argument("--limit", type=int, default=256)
args = ap.parse_args()
metrics = ("mutual_knn", "cycle_knn", "cka", "unbiased_cka", "cknna")
scores = {}
for store in ("float32", "float16"):
    caches = [
        extract_features(
            model=m,
            dataset="openmoji",
            cache_dir=args.cache,
            limit=args.limit,
            device="cpu",
            store_dtype=store,
            num_workers=0,
        ).open()
        for m in ("tiny-ssl-vit", "minilm")
    ]
    scores[store] = alignment_matrices(
        informative_layers(caches[0]), informative_layers(caches[1]), metrics=metrics, device="cpu"
    )
    sizes = [c.path.stat().st_size for c in caches]
    print(f"{store}: cache files {sizes[0] / 1e6:.2f} MB + {sizes[1] / 1e6:.2f} MB")
for m in metrics:
    a, b = scores["float32"][m], scores["float16"][m]
    print(
        f"{m:14s} {a.shape[0]}x{a.shape[1]} pairs: max |float16 - float32| = {np.abs(a - b).max():.2e} "
        f"(scores {a.min():.3f}..{a.max():.3f}); best pair float32 "
        f"{tuple(int(v) for v in np.unravel_index(a.argmax(), a.shape))} float16 "
        f"{tuple(int(v) for v in np.unravel_index(b.argmax(), b.shape))}"
    )
