"""A 1 GB import (`probe cache import` path) against np.save of the same array (issue 12).

Builds a caption-only dataset of 8,192 rows and an [8192, 32, 1024] float32 array (1.07 GB), times np.save of
it, then `import_features` of the .npy (read, file hash, one HDF5 write with per-layer checksums, fsync).

    python bench/bench_import.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from probe.datasets import load_dataset
from probe.features.imports import import_features

ap = argparse.ArgumentParser()
ap.add_argument("--dir", type=Path, default=None)
args = ap.parse_args()
N, L, D = 8192, 32, 1024
with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
    root = Path(tmp)
    (root / "manifest.jsonl").write_text(
        "".join(json.dumps({"id": f"r{i}", "caption": f"caption {i}"}) + "\n" for i in range(N))
    )
    data = load_dataset(root / "manifest.jsonl", cache_dir=root / "cache")
    x = np.random.default_rng(0).standard_normal((N, L, D), dtype=np.float32)
    t0 = time.perf_counter()
    with open(root / "feats.npy", "wb") as fh:
        np.save(fh, x)
        fh.flush()
        os.fsync(fh.fileno())
    t_save = time.perf_counter() - t0
    del x
    t0 = time.perf_counter()
    path = import_features(
        root / "feats.npy", model="bench-import", dataset=data, modality="text", cache_dir=root / "cache"
    )
    t_import = time.perf_counter() - t0
    gb = N * L * D * 4 / 1e9
    print(
        f"{gb:.2f} GB [{N}, {L}, {D}] float32: np.save + fsync {t_save:.1f} s ({gb / t_save:.2f} GB/s); "
        f"import {t_import:.1f} s ({gb / t_import:.2f} GB/s); ratio {t_import / t_save:.1f}x; "
        f"file {path.stat().st_size / 1e9:.2f} GB"
    )
