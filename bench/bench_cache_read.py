"""Benchmark: reading one layer of a feature cache, without and with the integrity checks done at use.

A cache of N = 1024 rows x D = 4096 float32 (LLaMA-3-8B width; 16 MiB per layer), 3 stored layers, written by
the real writer. Printed (median of `--repeats`, file in the page cache, as when align reads it):

- `h5py read`: what `FeatureCache.layer` did before the checks (open the file, read the layer's chunks);
- `layer() first read`: the checked read on a fresh FeatureCache (read + sha256 of the bytes + finite check);
- `layer() again`: the same layer from the same object (verified once per object: read only);
- the parts: sha256 over the buffer in place, sha256 of a `tobytes()` copy (the old checksum code), isfinite.

    python bench/bench_cache_read.py            # N=1024, D=4096
    python bench/bench_cache_read.py --rows 4096 --dim 1024
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    import h5py

    from probe.features.cache import FeatureCache
    from probe.features.format import cache_path, layer_checksum
    from probe.features.writer import PartialWriter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    n, d, s = args.rows, args.dim, args.layers
    x = np.random.default_rng(0).normal(size=(n, s, d)).astype(np.float32)
    key = {
        "feature_version": 1,
        "model": {"name": "bench"},
        "modality": "text",
        "pools": ["mean"],
        "layers": list(range(s)),
        "prompt": None,
        "dtype": "float32",
        "dataset": {"name": "bench", "fingerprint": "f", "rows": n},
    }
    with tempfile.TemporaryDirectory() as tmp:
        w = PartialWriter(cache_path(Path(tmp), key), key=key, num_rows=n)
        w.begin()
        w.write_batch(list(range(n)), {"mean": x}, layers=list(range(s)))
        path = w.assemble(
            ids=[str(i) for i in range(n)],
            image_sha256=["0" * 64] * n,
            caption_sha256=["0" * 64] * n,
            layers=list(range(s)),
            pools=["mean"],
            provenance={},
        )
        assert path is not None

        def raw() -> np.ndarray:
            with h5py.File(path, "r") as f:
                return np.asarray(f["features"]["mean"][1], dtype=np.float32)

        layer = raw()
        raw_ms = _median_ms(raw, args.repeats)
        first_ms = _median_ms(lambda: FeatureCache(path).layer(1), args.repeats)
        open_ms = _median_ms(lambda: FeatureCache(path), args.repeats)
        cache = FeatureCache(path)
        cache.layer(1)
        again_ms = _median_ms(lambda: cache.layer(1), args.repeats)
        sha_ms = _median_ms(lambda: layer_checksum(layer), args.repeats)
        sha_copy_ms = _median_ms(
            lambda: hashlib.sha256(np.ascontiguousarray(layer).tobytes()).hexdigest(), args.repeats
        )
        finite_ms = _median_ms(lambda: bool(np.isfinite(layer).all()), args.repeats)
    mib = layer.nbytes / 2**20
    print(f"one layer: {n} x {d} float32 = {mib:.0f} MiB; median of {args.repeats}")
    print(f"  h5py read (before: FeatureCache.layer, unchecked)  {raw_ms:8.1f} ms")
    print(f"  FeatureCache() open (key, shapes checked)           {open_ms:8.1f} ms")
    print(
        f"  open + layer() first read (read+sha256+finite)      {first_ms:8.1f} ms  "
        f"(open + {first_ms - open_ms:.1f} ms for the layer)"
    )
    print(f"  layer() again, same object (verified once)          {again_ms:8.1f} ms")
    print(
        f"  parts: sha256 in place {sha_ms:.1f} ms ({mib / sha_ms * 1e3:.0f} MiB/s); sha256 of a tobytes() copy "
        f"{sha_copy_ms:.1f} ms; isfinite {finite_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
