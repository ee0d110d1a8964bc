"""Benchmark: a calibrated score (permutation null + subsample intervals) against the raw score alone.

Two shapes, N = 1024 rows, synthetic features (a shared latent plus noise; timings do not depend on the values),
metrics mutual_knn, cka, unbiased_cka and cknna (k = 10):

- demo: vision [N, 6, 192] (the demo's tiny-ssl-vit) vs text [N, 31, 576] (SmolLM2-135M);
- prh:  vision [N, 41, 1536] (webssl-dino1b) vs text [N, 33, 4096] (LLaMA-3-8B), PRH's headline size.

Printed per shape: `score_alignment` raw (0 permutations, 0 subsamples) and calibrated (200 + 100 by default) in
the same process, their ratio, the time per permutation and per subsample of the resampler
(`probe.align.resample`) and of the reference path (`ModalityState.permuted` / `restricted` then
`pair_matrices`, timed on a few resamples), and the largest difference between the two on those resamples.

    python bench/bench_calibration.py                       # both shapes on the default device
    python bench/bench_calibration.py --shape demo --threads 2
    python bench/bench_calibration.py --device cuda
    python bench/bench_calibration.py --quick               # small sizes, seconds (a check that it runs)
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from bench_align import Sizes, synthetic_stacks

from probe.align.engine import pair_matrices, prepare_modalities
from probe.align.resample import Resampler
from probe.align.stats import score_alignment
from probe.devices import resolve_device

METRICS = ("mutual_knn", "cka", "unbiased_cka", "cknna")
SHAPES = {
    "demo": Sizes(rows=1024, vision_layers=6, vision_dims=192, text_layers=31, text_dims=576, k=10),
    "prh": Sizes(rows=1024, vision_layers=41, vision_dims=1536, text_layers=33, text_dims=4096, k=10),
    "quick": Sizes(rows=256, vision_layers=3, vision_dims=32, text_layers=5, text_dims=48, k=10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(action, device: torch.device) -> tuple[object, float]:
    _sync(device)
    start = time.perf_counter()
    result = action()
    _sync(device)
    return result, time.perf_counter() - start


def per_resample(name: str, sizes: Sizes, device: torch.device, *, check: int, seed: int) -> None:
    """Time the resampler and the reference on `check` permutations and subsets; print their agreement."""
    vision, text = synthetic_stacks(sizes, seed=seed)
    first, second = prepare_modalities(vision, text, metrics=METRICS, k=sizes.k, device=device, spare_neighbours=15)
    resampler = Resampler(first, second)
    rng = np.random.default_rng(seed)
    n = sizes.rows
    orders = torch.as_tensor(np.stack([rng.permutation(n) for _ in range(check)]), device=device)
    subsets = torch.as_tensor(
        np.stack([np.sort(rng.choice(n, size=round(0.8 * n), replace=False)) for _ in range(check)]), device=device
    )
    resampler.restricted(subsets[:1])  # the candidates' kernel values are made at the first subset
    fast_null, null_seconds = timed(lambda: resampler.permuted(orders), device)
    fast_subsets, subset_seconds = timed(lambda: resampler.restricted(subsets), device)
    reference_null, reference_null_seconds = timed(
        lambda: [pair_matrices(first, second.permuted(order)) for order in orders], device
    )
    reference_subsets, reference_subset_seconds = timed(
        lambda: [pair_matrices(first.restricted(rows), second.restricted(rows)) for rows in subsets], device
    )
    print(
        f"  per permutation: {1e3 * null_seconds / check:.1f} ms (reference {1e3 * reference_null_seconds / check:.0f}"
        f" ms); per subsample: {1e3 * subset_seconds / check:.1f} ms (reference "
        f"{1e3 * reference_subset_seconds / check:.0f} ms); batch {resampler.batch_size}"
    )
    for metric in METRICS:
        null_gap = max(float((fast_null[metric][i] - ref[metric]).abs().max()) for i, ref in enumerate(reference_null))
        subset_gap = max(
            float((fast_subsets[metric][i] - ref[metric]).abs().max()) for i, ref in enumerate(reference_subsets)
        )
        print(f"  {metric:>13}: max |resampler - reference| permutations {null_gap:.1e}, subsamples {subset_gap:.1e}")


def calibrated(name: str, sizes: Sizes, device: torch.device, *, permutations: int, subsamples: int, seed: int):
    vision, text = synthetic_stacks(sizes, seed=seed)
    options = dict(metrics=METRICS, k=sizes.k, device=device, seed=seed)
    score_alignment(vision[:64, :2], text[:64, :2], permutations=2, subsamples=2, **options)  # warm-up
    _, raw = timed(lambda: score_alignment(vision, text, permutations=0, subsamples=0, **options), device)
    report, full = timed(
        lambda: score_alignment(vision, text, permutations=permutations, subsamples=subsamples, **options), device
    )
    print(
        f"{name}: vision [{sizes.rows}, {sizes.vision_layers}, {sizes.vision_dims}] vs text [{sizes.rows}, "
        f"{sizes.text_layers}, {sizes.text_dims}], {len(METRICS)} metrics, {report.sizes.path} path on {device}"
    )
    print(
        f"  raw score {raw:.2f} s; calibrated ({permutations} permutations + {subsamples} subsamples) {full:.2f} s"
        f" = {full / raw:.1f}x the raw score"
    )
    for metric, m in report.metrics.items():
        print(
            f"  {metric:>13}: best {m.best_score:.4f}, null max mean {m.null_max_mean:.4f}, "
            f"p {m.p_value:.3g}, calibrated {m.calibrated_score:.4f}, interval "
            f"[{m.max_interval[0]:.4f}, {m.max_interval[1]:.4f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("demo", "prh", "both"), default="both")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--subsamples", type=int, default=100)
    parser.add_argument("--check", type=int, default=4, help="resamples timed against the reference path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, a check that the script runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = ["quick"] if args.quick else (["demo", "prh"] if args.shape == "both" else [args.shape])
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    start = time.perf_counter()
    for name in names:
        sizes = SHAPES[name]
        calibrated(
            name,
            sizes,
            device,
            permutations=20 if args.quick else args.permutations,
            subsamples=10 if args.quick else args.subsamples,
            seed=args.seed,
        )
        per_resample(name, sizes, device, check=args.check, seed=args.seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"total {time.perf_counter() - start:.1f} s; peak resident memory of the process {peak:.2f} GiB")


if __name__ == "__main__":
    main()
