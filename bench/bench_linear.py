"""Per-layer linear-probe sweeps on planted data: how long 25 layers take on this machine.

    python bench/bench_linear.py [--rows 1024] [--dim 1024] [--layers 25] [--classes 10]
                                 [--text-dim 768] [--words 50] [--seed 0]

1. Label probe (`probe_layers(task="labels")`, logistic, C grid, shuffled-label control) over every
   layer of a [rows, layers, dim] stack in which 10 classes are planted with a strength that peaks
   mid-depth. Target from the issue: under 60 s for 25 x 1024 x 1024 on the 2-core dev machine.
2. Cross-modal probe (`probe_layers(task="crossmodal")`, ridge with leave-one-out alpha, shuffled-pair
   control) from the same layers to text features [rows, text-dim] = one layer mapped linearly + noise.
3. Caption-word (multi-label, ridge readout) probe over the same layers with `--words` planted
   binary targets (5-20 % positive) driven by the middle layer.
Prints wall-clock seconds, the best layer and the scores there with their controls.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from probe.linear.sweep import ProbeTask, probe_layers


def planted_stack(*, rows: int, dim: int, layers: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features [rows, layers, dim] float32 with class means scaled by a bump over depth; labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    means = rng.normal(size=(classes, dim)).astype(np.float32)
    depth = np.linspace(0.0, 1.0, layers)
    strengths = 0.12 * np.exp(-(((depth - 0.6) / 0.25) ** 2))  # weak at the ends, peak at 60 %
    stack = rng.normal(size=(rows, layers, dim)).astype(np.float32)
    for layer, strength in enumerate(strengths):
        stack[:, layer] += strength * means[labels]
    return stack, labels


def planted_text(stack: np.ndarray, *, text_dim: int, seed: int) -> np.ndarray:
    """Text features [rows, text_dim]: the middle layer through a random map, plus noise."""
    rng = np.random.default_rng(seed + 1)
    source = stack[:, stack.shape[1] // 2]
    mapping = rng.normal(size=(source.shape[1], text_dim)) / np.sqrt(source.shape[1])
    return source @ mapping + rng.normal(size=(len(source), text_dim))


def timed(label: str, run):
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    stack, labels = planted_stack(
        rows=args.rows, dim=args.dim, layers=args.layers, classes=args.classes, seed=args.seed
    )
    print(f"data: {args.rows} rows x {args.layers} layers x {args.dim} dims, {args.classes} classes")

    sweep, _ = timed(
        f"label probe, {args.layers} layers (+ shuffled-label control)",
        lambda: probe_layers(stack, task=ProbeTask.LABELS, target=labels, seed=args.seed),
    )
    best = sweep.best.result
    accuracies = " ".join(f"{entry.result.accuracy:.2f}" for entry in sweep.layers)
    print(f"  test accuracy per layer: {accuracies}")
    print(
        f"  best layer {sweep.best_layer} (by validation accuracy): accuracy {best.accuracy:.3f}, "
        f"balanced {best.balanced_accuracy:.3f}, macro-F1 {best.macro_f1:.3f}, C {best.chosen_c:g}; "
        f"control {best.control_accuracy:.3f}, majority {best.majority_rate:.3f}, "
        f"chance {best.chance_rate:.3f}"
    )

    text = planted_text(stack, text_dim=args.text_dim, seed=args.seed)
    sweep, _ = timed(
        f"cross-modal probe, {args.layers} layers -> text dim {args.text_dim} (+ shuffled pairs)",
        lambda: probe_layers(stack, task=ProbeTask.CROSSMODAL, target=text, seed=args.seed),
    )
    best = sweep.best.result
    print(
        f"  best layer {sweep.best_layer} (by leave-one-out R^2): R^2 {best.r2:.3f}, "
        f"top1 {best.top1:.3f}, top5 {best.top5:.3f}, alpha {best.probe.chosen_alpha:g}; control R^2 "
        f"{best.control.r2:.3f}, top1 {best.control.top1:.3f}, top5 {best.control.top5:.3f}; "
        f"chance top1 {best.chance_top1:.4f}, top5 {best.chance_top5:.4f}"
    )

    middle = stack[:, args.layers // 2]
    rng = np.random.default_rng(args.seed + 2)
    drive = middle @ (rng.normal(size=(args.dim, args.words)) / np.sqrt(args.dim))
    drive += rng.normal(size=drive.shape)
    rates = rng.uniform(0.05, 0.2, args.words)
    cuts = np.array([np.quantile(drive[:, w], 1.0 - rate) for w, rate in enumerate(rates)])
    sweep, _ = timed(
        f"caption-word probe, {args.layers} layers, {args.words} words (+ row-permuted control)",
        lambda: probe_layers(stack, task=ProbeTask.LABELS, target=drive > cuts, seed=args.seed),
    )
    best = sweep.best.result
    print(
        f"  best layer {sweep.best_layer} (by leave-one-out AP): macro AUROC "
        f"{best.probe.macro_auroc:.3f} (control {best.control.macro_auroc:.3f}), macro AP "
        f"{best.probe.macro_average_precision:.3f} (control {best.control.macro_average_precision:.3f}, "
        f"base rate {best.probe.macro_base_rate:.3f}), macro F1 {best.probe.macro_f1:.3f} "
        f"(all-positive {best.probe.macro_f1_baseline:.3f})"
    )


if __name__ == "__main__":
    main()
