"""Benchmark: all (vision layer, text layer) pairs at PRH's scale, against scoring each pair from scratch.

Default sizes follow PRH's headline setting: N = 1024 rows, a 25-state ViT-L (1024 dims) against a
33-state LLaMA-3-8B (4096 dims), 825 pairs, metrics mutual_knn, cka, unbiased_cka and cknna (k = 10).
Features are synthetic (a shared latent plus noise, with a few 'massive activation' dims on the text
side); timings do not depend on the values.

Printed: the time of `probe.align.engine.alignment_matrices` for all metrics and pairs; the time of the Gram
matrices alone (the floor); and the per-pair approach of PRH's published code (normalise the pair,
then each metric from scratch: Grams, a full argsort for kNN, N^3 products for HSIC), timed on a few
pairs per metric and extrapolated to all pairs, with the agreement of both on those pairs.

    python bench/bench_align.py                  # PRH scale (about a minute on 2 CPU cores)
    python bench/bench_align.py --quick          # small sizes, seconds
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probe.align.engine import alignment_matrices, resolve_device
from probe.align.prep import prepare_layers
from probe.align.stats import score_alignment

METRICS = ("mutual_knn", "cka", "unbiased_cka", "cknna")


@dataclass(frozen=True)
class Sizes:
    rows: int
    vision_layers: int
    vision_dims: int
    text_layers: int
    text_dims: int
    k: int


def synthetic_stacks(sizes: Sizes, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """vision [N, Lv, Dv] and text [N, Lt, Dt] float32 sharing a 64-dim latent, text with 4 massive dims."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((sizes.rows, 64), dtype=np.float32)
    vision = rng.standard_normal((sizes.rows, sizes.vision_layers, sizes.vision_dims), dtype=np.float32)
    vision += (latent @ rng.standard_normal((64, sizes.vision_dims), dtype=np.float32))[:, None, :] * 0.1
    text = rng.standard_normal((sizes.rows, sizes.text_layers, sizes.text_dims), dtype=np.float32)
    text += (latent @ rng.standard_normal((64, sizes.text_dims), dtype=np.float32))[:, None, :] * 0.1
    text[:, :, :4] *= 100.0
    return vision, text


# ------------------------------------------------------------------ the per-pair approach (PRH's algorithm)


def _knn_lists(x: torch.Tensor, k: int) -> torch.Tensor:
    """PRH's kNN: full similarity, self pushed to -1e8, full descending argsort, first k."""
    return (x @ x.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]


def _pair_mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    n = a.shape[0]
    rows = torch.arange(n)[:, None]
    mask_a, mask_b = torch.zeros(n, n, dtype=a.dtype), torch.zeros(n, n, dtype=a.dtype)
    mask_a[rows, _knn_lists(a, k)] = 1.0
    mask_b[rows, _knn_lists(b, k)] = 1.0
    return float(((mask_a * mask_b).sum(dim=1) / k).mean())


def _hsic_biased(kernel_a: torch.Tensor, kernel_b: torch.Tensor) -> torch.Tensor:
    centring = torch.eye(kernel_a.shape[0], dtype=kernel_a.dtype) - 1.0 / kernel_a.shape[0]
    return torch.trace(kernel_a @ centring @ kernel_b @ centring)


def _hsic_unbiased(kernel_a: torch.Tensor, kernel_b: torch.Tensor) -> torch.Tensor:
    n = kernel_a.shape[0]
    a, b = kernel_a.clone().fill_diagonal_(0), kernel_b.clone().fill_diagonal_(0)
    value = (a * b.T).sum() + a.sum() * b.sum() / ((n - 1) * (n - 2)) - 2 * (a @ b).sum() / (n - 2)
    return value / (n * (n - 3))


def _pair_cka(a: torch.Tensor, b: torch.Tensor, *, unbiased: bool) -> float:
    hsic = _hsic_unbiased if unbiased else _hsic_biased
    kernel_a, kernel_b = a @ a.T, b @ b.T
    return float(hsic(kernel_a, kernel_b) / (torch.sqrt(hsic(kernel_a, kernel_a) * hsic(kernel_b, kernel_b)) + 1e-6))


def _pair_cknna(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    n = a.shape[0]
    kernel_a, kernel_b = a @ a.T, b @ b.T

    def similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        top_first = first.clone().fill_diagonal_(float("-inf")).topk(k, dim=1).indices
        top_second = second.clone().fill_diagonal_(float("-inf")).topk(k, dim=1).indices
        empty = torch.zeros(n, n, dtype=first.dtype)
        mask = empty.clone().scatter_(1, top_first, 1) * empty.scatter_(1, top_second, 1)
        return _hsic_unbiased(mask * first, mask * second)

    cross = similarity(kernel_a, kernel_b)
    return float(cross / (torch.sqrt(similarity(kernel_a, kernel_a) * similarity(kernel_b, kernel_b)) + 1e-6))


def per_pair_score(metric: str, a: torch.Tensor, b: torch.Tensor, *, k: int) -> float:
    """One pair [N, Da], [N, Db] from scratch, as PRH's measure_alignment: normalise both, then the metric
    (in the inputs' dtype)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    if metric == "mutual_knn":
        return _pair_mutual_knn(a, b, k)
    if metric in ("cka", "unbiased_cka"):
        return _pair_cka(a, b, unbiased=metric == "unbiased_cka")
    return _pair_cknna(a, b, k)


# ------------------------------------------------------------------ timing


def timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def sample_pairs(sizes: Sizes, count: int) -> list[tuple[int, int]]:
    """`count` pairs spread along the diagonal of the layer grid."""
    steps = np.linspace(0, 1, count)
    return [(round(s * (sizes.vision_layers - 1)), round(s * (sizes.text_layers - 1))) for s in steps]


def time_statistics(vision, text, *, sizes: Sizes, device: torch.device, permutations: int, subsamples: int) -> None:
    """Time score_alignment and its phases (from the progress callback's timestamps)."""
    stamps: dict[str, list[float]] = {}

    def progress(done: int, total: int, what: str) -> None:
        stamps.setdefault(what, []).append(time.perf_counter())

    start = time.perf_counter()
    report = score_alignment(
        vision,
        text,
        metrics=METRICS,
        k=sizes.k,
        permutations=permutations,
        subsamples=subsamples,
        device=device,
        progress=progress,
        seed=0,
    )
    total = time.perf_counter() - start
    print(f"score_alignment with {permutations} permutations and {subsamples} subsets: {total:.1f} s")
    for what, count in (("permutation null", permutations), ("subsamples", subsamples)):
        if count > 1:
            times = stamps[what]
            print(
                f"  {what}: {(times[-1] - times[0]) / (count - 1):.2f} s each (all {len(METRICS)} metrics, all pairs)"
            )
    for name, result in report.metrics.items():
        print(
            f"  {name:>13}: best {result.best_score:.4f} at {result.best_pair}, chance {result.chance_level}, "
            f"p {result.p_value}, calibrated {result.calibrated_score}, max interval {result.max_interval}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per metric timed for the per-pair baseline")
    parser.add_argument("--device", default="cpu", help="torch device for probe (the baseline runs on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--permutations", type=int, default=0, help="also time score_alignment with this many permutations"
    )
    parser.add_argument("--subsamples", type=int, default=0, help="... and this many subsets of 80%% of the rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = Sizes(256, 5, 128, 7, 512, 10) if args.quick else Sizes(1024, 25, 1024, 33, 4096, 10)
    device = resolve_device(args.device)
    total_pairs = sizes.vision_layers * sizes.text_layers
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), N={sizes.rows}, k={sizes.k}, "
        f"vision {sizes.vision_layers}x{sizes.vision_dims}, text {sizes.text_layers}x{sizes.text_dims}, "
        f"{total_pairs} pairs, metrics {', '.join(METRICS)}"
    )
    vision, text = synthetic_stacks(sizes, seed=args.seed)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    alignment_matrices(vision[:64, :2], text[:64, :2], metrics=METRICS, k=sizes.k, device=device)  # warm-up
    sync()
    ours, ours_seconds = timed(
        lambda: (alignment_matrices(vision, text, metrics=METRICS, k=sizes.k, device=device), sync())[0]
    )
    print(f"all pairs, all metrics (probe.align.engine.alignment_matrices): {ours_seconds:.2f} s")

    prepared = {}
    prepare_seconds = 0.0
    for name, stack in (("vision", vision), ("text", text)):
        result, seconds = timed(
            lambda stack=stack, name=name: prepare_layers(
                stack, name=name, clip_quantile=0.95, normalize=True, device=device
            )
        )
        prepared[name], prepare_seconds = result.layers, prepare_seconds + seconds
    layers = prepared["vision"] + prepared["text"]
    _, gram_seconds = timed(lambda: ([x @ x.T for x in layers], sync()))
    print(
        f"Gram matrices alone ({len(layers)} x X X^T, float32, prepared features): {gram_seconds:.2f} s "
        f"-> all pairs take {ours_seconds / gram_seconds:.2f}x the Grams "
        f"(clamp + L2 preprocessing alone: {prepare_seconds:.2f} s)"
    )

    clipped = {}
    for name, stack in (("vision", vision), ("text", text)):
        threshold = prepare_layers(stack, name=name, clip_quantile=0.95, normalize=False, device="cpu").clip
        clipped[name] = torch.from_numpy(np.clip(stack, -threshold, threshold))
    pairs = sample_pairs(sizes, args.pairs)
    baseline_total = prepare_seconds
    print(
        f"per-pair baseline (PRH's algorithm, each pair from scratch, float32, CPU): {len(pairs)} pairs per metric "
        f"timed, extrapolated to {total_pairs}"
    )
    for metric in METRICS:
        seconds = []
        for a, b in pairs:
            seconds.append(
                timed(
                    lambda metric=metric, a=a, b=b: per_pair_score(
                        metric, clipped["vision"][:, a], clipped["text"][:, b], k=sizes.k
                    )
                )[1]
            )
        per_pair = float(np.mean(seconds))
        baseline_total += per_pair * total_pairs
        print(f"  {metric:>13}: {per_pair:.3f} s per pair -> {per_pair * total_pairs:.1f} s for {total_pairs} pairs")
    print(f"  total (with the same preprocessing): {baseline_total:.1f} s (extrapolated)")
    print(f"speed-up of all pairs over per-pair: {baseline_total / ours_seconds:.0f}x")

    # Agreement, in float64 on both sides (PRH's float32 sums carry ~1e-5 of their own error), with
    # PRH's 1e-6 in the CKA denominators, on the same pre-clamped features.
    vision_index, text_index = [a for a, _ in pairs], [b for _, b in pairs]
    ours_prh = alignment_matrices(
        clipped["vision"][:, vision_index].double(),
        clipped["text"][:, text_index].double(),
        metrics=METRICS,
        k=sizes.k,
        clip_quantile=None,
        denominator_epsilon=1e-6,
        device=device,
    )
    gaps = {
        metric: max(
            abs(
                per_pair_score(metric, clipped["vision"][:, a].double(), clipped["text"][:, b].double(), k=sizes.k)
                - ours_prh[metric][i, i]
            )
            for i, (a, b) in enumerate(pairs)
        )
        for metric in METRICS
    }
    print(
        "agreement with per-pair on the timed pairs (float64 per-pair, probe with PRH's 1e-6 epsilon), "
        "max |difference|:"
    )
    print("  " + ", ".join(f"{metric} {gap:.1e}" for metric, gap in gaps.items()))
    default_gaps = {
        metric: float(np.abs(ours[metric][vision_index, text_index] - np.diag(ours_prh[metric])).max())
        for metric in METRICS
    }
    print("effect of the epsilon (and float32 features) on the same pairs, max |default - PRH epsilon|:")
    print("  " + ", ".join(f"{metric} {gap:.1e}" for metric, gap in default_gaps.items()))
    if args.permutations or args.subsamples:
        time_statistics(
            vision, text, sizes=sizes, device=device, permutations=args.permutations, subsamples=args.subsamples
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"peak resident memory of this process: {peak:.2f} GiB "
        f"(inputs: {(vision.nbytes + text.nbytes) / 2**30:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
