"""Benchmark: alignment at large N on the blocked path (no N x N matrix), with time and peak memory.

Default: N = 50,000 rows, 4 layers of 1024 dims per side, metrics mutual_knn, cycle_knn, jaccard_knn,
cka, unbiased_cka and cknna (k = 10) - every metric with a large-N path. kNN sets come from row
blocks of X X^T with top-k, CKA from feature-space products, CKNNA from kernel values at the kNN
edges only. The features are generated one layer at a time by a layer source, as a feature cache
would read them, so the inputs never sit in memory as a whole.

Printed: wall time per phase, the best pair per metric, and the peak resident memory of the process
(ru_maxrss, which includes Python and torch themselves). Optionally checks the blocked path against
the dense one on a row subset (--check-rows).

    python bench/bench_align_scale.py                                    # N = 50,000 (minutes on 2 CPU cores)
    python bench/bench_align_scale.py --rows 12000 --metrics cknna       # CKNNA alone
    python bench/bench_align_scale.py --rows 5000 --check-rows 2000      # quicker, with the dense check
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from probe.align.engine import alignment_matrices, pair_matrices, prepare_modalities, resolve_device
from probe.align.rows import row_agreement

METRICS = ("mutual_knn", "cycle_knn", "jaccard_knn", "cka", "unbiased_cka", "cknna")


class SyntheticLayers:
    """A layer source [N, D] per layer, generated on demand: a shared 32-dim latent, a per-layer
    projection of it and unit Gaussian noise (plus 2 'massive' dims), reproducible per layer."""

    def __init__(self, *, rows: int, layers: int, dims: int, seed: int, latent: np.ndarray, rows_subset=None) -> None:
        self.num_rows, self.num_layers, self.dims, self.seed = rows, layers, dims, seed
        self.latent, self.rows_subset = latent, rows_subset

    def layer(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        features = rng.standard_normal((len(self.latent), self.dims), dtype=np.float32)
        weight = rng.standard_normal((self.latent.shape[1], self.dims), dtype=np.float32) * (0.1 * (index + 1))
        features += self.latent @ weight
        features[:, :2] *= 50.0
        return features if self.rows_subset is None else features[self.rows_subset]


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--check-rows", type=int, default=0, help="also compare blocked and dense on this many rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metric names")
    parser.add_argument("--path", default="blocked", choices=("blocked", "dense", "auto"))
    parser.add_argument("--per-row", action="store_true", help="also time per-row agreement at the best pairs")
    args = parser.parse_args()
    metrics = tuple(name.strip() for name in args.metrics.split(",") if name.strip())
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    latent = np.random.default_rng(args.seed).standard_normal((args.rows, 32), dtype=np.float32)
    sides = [
        SyntheticLayers(rows=args.rows, layers=args.layers, dims=args.dims, seed=args.seed + side, latent=latent)
        for side in (1, 2)
    ]
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), N={args.rows}, k={args.k}, {args.layers} layers x "
        f"{args.dims} dims per side, metrics {', '.join(metrics)}, path {args.path}"
    )
    formed = "one per layer is formed" if args.path != "blocked" else "none is formed"
    print(f"an N x N float32 matrix would take {4 * args.rows**2 / 2**30:.1f} GiB; {formed}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    first, second = prepare_modalities(*sides, metrics=metrics, k=args.k, path=args.path, device=device)
    sync()
    prepared = time.perf_counter() - start
    print(
        f"read + clamp + normalise + kNN lists + self terms ({first.plan.path}): "
        f"{prepared:.1f} s, peak {peak_gib():.2f} GiB"
    )
    start = time.perf_counter()
    matrices = pair_matrices(first, second)
    sync()
    scored = time.perf_counter() - start
    print(
        f"all {args.layers * args.layers} pairs, all metrics (edge lookups, CKA products, CKNNA edges): {scored:.1f} s"
    )
    print(f"total {prepared + scored:.1f} s; peak resident memory of the process {peak_gib():.2f} GiB")
    bests = {}
    for name, matrix in matrices.items():
        values = matrix.cpu().numpy()
        best = np.unravel_index(int(np.argmax(values)), values.shape)
        bests[name] = (int(best[0]), int(best[1]), float(values[best]))
        print(f"  {name:>13}: best {values[best]:.4f} at (vision {best[0]}, text {best[1]}), min {values.min():.4f}")
    if args.per_row:
        start = time.perf_counter()
        rows = {name: row_agreement(first, second, metric=name, pair=(a, b)) for name, (a, b, _) in bests.items()}
        sync()
        print(
            f"per-row agreement at each metric's best pair: {time.perf_counter() - start:.1f} s; "
            f"peak resident memory {peak_gib():.2f} GiB"
        )
        for name, r in rows.items():
            gap = abs(float(r.scores.mean()) - bests[name][2])
            print(f"  {name:>13}: mean of {len(r.scores)} row values - score = {gap:.1e}")

    if args.check_rows:
        subset = np.sort(np.random.default_rng(args.seed).choice(args.rows, size=args.check_rows, replace=False))
        small = [
            SyntheticLayers(
                rows=args.check_rows,
                layers=args.layers,
                dims=args.dims,
                seed=side.seed,
                latent=latent,
                rows_subset=subset,
            )
            for side in sides
        ]
        results = {
            path: alignment_matrices(*small, metrics=metrics, k=args.k, path=path, device=device)
            for path in ("dense", "blocked")
        }
        gaps = {name: float(np.abs(results["dense"][name] - results["blocked"][name]).max()) for name in metrics}
        print(
            f"blocked vs dense on {args.check_rows} rows, max |difference|: "
            + ", ".join(f"{n} {g:.1e}" for n, g in gaps.items())
        )


if __name__ == "__main__":
    main()
