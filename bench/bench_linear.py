"""Per-layer linear-probe sweeps on planted data: how long 25 layers take on this machine; and the
demo's probing workload, timed per task against an earlier revision.

    python bench/bench_linear.py [--rows 1024] [--dim 1024] [--layers 25] [--classes 10]
                                 [--text-dim 768] [--words 50] [--seed 0]
    python bench/bench_linear.py --demo [--cache-dir DIR] [--subcategory] [--baseline REV] [--repeat 2]

1. Label probe (`probe_layers(task="labels")`, logistic, C grid, shuffled-label control) over every
   layer of a [rows, layers, dim] stack in which 10 classes are planted with a strength that peaks
   mid-depth. Target from the issue: under 60 s for 25 x 1024 x 1024 on the 2-core dev machine.
2. Cross-modal probe (`probe_layers(task="crossmodal")`, ridge with leave-one-out alpha, shuffled-pair
   control) from the same layers to text features [rows, text-dim] = one layer mapped linearly + noise.
3. Caption-word (multi-label, ridge readout) probe over the same layers with `--words` planted
   binary targets (5-20 % positive) driven by the middle layer.
Prints wall-clock seconds, the best layer and the scores there with their controls.

`--demo`: what `probe demo` probes (probe/runs/demo.py): for each of its three vision models
(tiny-ssl-vit and tiny-random-vit, 7 hidden states x 192; pixels-16, 1 x 768) the Unicode `category`
label (9 classes), the caption words (45) and a ridge to SmolLM2's last layer (576), N = 1024 - 15
layers per task. `--cache-dir` reads the features and targets from a `probe demo` cache (run
`probe --cache-dir DIR demo` first); without it they are planted with the same shapes and class sizes.
`--subcategory` adds the 87-class `subcategory` label as a fourth task. Each task's probe_layers
sweeps are timed in CPU seconds (time.process_time, BLAS on one thread as the probes run it), the
best of --repeat rounds. `--baseline REV` also runs the workload with the `probe` package of git
revision REV (exported with git archive) in alternating rounds, prints both times and the speed-up,
and counts the reported numbers (per layer: chosen C or alpha, validation and test scores, probe and
control; the best layer) that differ between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


DEMO_VISION = (("tiny-ssl-vit", 7, 192), ("pixels-16", 1, 768), ("tiny-random-vit", 7, 192))
DEMO_ROWS = 1024
DEMO_TEXT_DIM = 576
# Class sizes of OpenMoji's `category` over the demo's 1024 rows, largest first (9 classes).
DEMO_CATEGORY_SIZES = (200, 156, 145, 130, 125, 110, 91, 62, 5)
DEMO_WORDS = 45
DEMO_WORD_RATES = (0.005, 0.085)  # the demo's caption words occur in 0.5-8.5 % of the rows
# Scales of the 32 latent directions: a few carry most of the variance (effective rank about 5
# after standardising, as in the demo's ViT layers), the ill-conditioning that sets lbfgs's steps.
DECAY = 0.75 ** np.arange(32)
DEMO_SUBCATEGORIES = 87
# The numbers compared between revisions: (probe and control) fields of each result kind.
COMPARED_FIELDS = {
    "labels": ("chosen_c", "val_accuracy", "accuracy", "balanced_accuracy", "macro_f1"),
    "multilabel": ("chosen_alpha", "cv_average_precision", "macro_auroc", "macro_average_precision", "macro_f1"),
    "crossmodal": ("chosen_alpha", "cv_r2", "r2", "r2_uniform", "top1", "top5"),
}


def planted_demo(*, subcategory: bool, seed: int) -> dict[str, np.ndarray]:
    """Demo-shaped planted inputs: per vision model `<name>/layers` [N, L, D] float32; `category` [N]
    (DEMO_CATEGORY_SIZES), `words` [N, 45] bool, `text` [N, 576] L2-normalised rows, and with
    subcategory `subcategory` [N] (87 classes nested in the categories). All driven by one latent."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(DEMO_ROWS, 32))
    category = np.repeat(np.arange(len(DEMO_CATEGORY_SIZES)), DEMO_CATEGORY_SIZES)
    rng.shuffle(category)
    # Subcategories: consecutive runs of about 12 rows in category order, so they nest (mostly).
    subcategories = np.empty(DEMO_ROWS, dtype=int)
    subcategories[np.argsort(category, kind="stable")] = np.arange(DEMO_ROWS) * DEMO_SUBCATEGORIES // DEMO_ROWS
    latent[:, :12] += 2.0 * rng.normal(size=(DEMO_SUBCATEGORIES, 12))[subcategories]
    inputs: dict[str, np.ndarray] = {"category": category}
    for name, layers, dim in DEMO_VISION:
        stack = np.empty((DEMO_ROWS, layers, dim), dtype=np.float32)
        for layer in range(layers):
            strength = 0.3 + 0.7 * layer / max(layers - 1, 1)
            mixed = strength * (latent * DECAY) @ rng.normal(size=(32, dim)) + 0.3 * rng.normal(size=(DEMO_ROWS, dim))
            stack[:, layer] = mixed * rng.lognormal(0.0, 1.0, size=dim)  # unequal scales, as in hidden states
        inputs[f"{name}/layers"] = stack
    drive = latent @ rng.normal(size=(32, DEMO_WORDS)) + 2.0 * rng.normal(size=(DEMO_ROWS, DEMO_WORDS))
    rates = rng.uniform(*DEMO_WORD_RATES, DEMO_WORDS)
    inputs["words"] = drive > np.array([np.quantile(drive[:, w], 1.0 - rate) for w, rate in enumerate(rates)])
    text = latent @ rng.normal(size=(32, DEMO_TEXT_DIM)) + 3.0 * rng.normal(size=(DEMO_ROWS, DEMO_TEXT_DIM))
    inputs["text"] = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    if subcategory:
        inputs["subcategory"] = subcategories
    return inputs


def cached_demo(cache_dir: Path, *, subcategory: bool) -> dict[str, np.ndarray]:
    """The same inputs as planted_demo, read from a `probe demo` cache as `probe demo` builds them."""
    from probe.runs.demo import CROSSMODAL_TEXT, DEMO_DATASET
    from probe.runs.inputs import ExtractOptions, ensure_cache, open_dataset
    from probe.runs.linear import LinearSettings, label_targets, prh_target, ridge_position

    options = ExtractOptions(cache_dir=cache_dir, limit=DEMO_ROWS)
    data = open_dataset(DEMO_DATASET, options)
    inputs: dict[str, np.ndarray] = {}
    for name, _, _ in DEMO_VISION:
        stack = ensure_cache(name, data, pool=None, options=options, modality="vision").stack()
        inputs[f"{name}/layers"] = np.stack([stack.layer(i) for i in range(stack.num_layers)], axis=1)
    for field in ("category", "words", *(("subcategory",) if subcategory else ())):
        target, _, rows, _ = label_targets(data, field, LinearSettings())
        inputs[field] = np.asarray(target)
        if rows is not None:
            inputs[f"{field}/rows"] = rows
    text = ensure_cache(CROSSMODAL_TEXT, data, pool=None, options=options, modality="text")
    inputs["text"] = prh_target(text, ridge_position(text.layers, "-1"))
    return inputs


def run_demo_workload(inputs: Any) -> dict[str, Any]:
    """Every demo task over every model's layers with probe_layers: {task: {"seconds", "results"}}.

    results: {"<model>/<layer>/<probe|control>/<field>": number, "<model>/best_layer": index}.
    """
    from threadpoolctl import threadpool_limits

    tasks = [t for t in ("category", "subcategory", "words", "text") if t in inputs]
    out: dict[str, Any] = {}
    # One BLAS thread throughout, as the probes' own factorisations run (probe.linear.base.one_blas_thread).
    with threadpool_limits(limits=1, user_api="blas"):
        for task in tasks:
            seconds, results = 0.0, {}
            for name, _, _ in DEMO_VISION:
                layers = inputs[f"{name}/layers"]
                start = time.process_time()
                if task == "text":
                    sweep = probe_layers(layers, task=ProbeTask.CROSSMODAL, target=inputs["text"], seed=0)
                else:
                    rows = inputs[f"{task}/rows"] if f"{task}/rows" in inputs else slice(None)
                    sweep = probe_layers(layers[rows], task=ProbeTask.LABELS, target=inputs[task], seed=0)
                seconds += time.process_time() - start
                results[f"{name}/best_layer"] = sweep.best_layer
                for entry in sweep.layers:
                    fields = COMPARED_FIELDS[entry.result.KIND]
                    for part in ("probe", "control"):
                        scores = getattr(entry.result, part)
                        for field in fields:
                            results[f"{name}/{entry.layer}/{part}/{field}"] = float(getattr(scores, field))
            out[task] = {"seconds": seconds, "results": results}
    return out


def export_revision(revision: str, folder: Path) -> Path:
    """The `probe` package of git revision `revision`, unpacked under folder (for PYTHONPATH)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "probe"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def demo_worker(tree: Path, inputs_path: Path) -> dict[str, Any]:
    """run_demo_workload in a fresh process that imports `probe` from tree."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--demo-worker", str(inputs_path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(done.stdout.splitlines()[-1])


def demo_main(args: argparse.Namespace) -> None:
    """--demo: time the demo's probe tasks (and a baseline revision's), compare their numbers."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs = (
            cached_demo(args.cache_dir, subcategory=args.subcategory)
            if args.cache_dir
            else planted_demo(subcategory=args.subcategory, seed=args.seed)
        )
        source = f"the probe demo cache in {args.cache_dir}" if args.cache_dir else "planted demo-shaped data"
        print(f"demo probing workload on {source}: 15 layers per task (7 x 192, 1 x 768, 7 x 192), N = 1024")
        np.savez(folder / "inputs.npz", **inputs)
        trees = {"current": Path(__file__).resolve().parent.parent}
        if args.baseline:
            (folder / "baseline").mkdir()
            trees = {f"baseline {args.baseline}": export_revision(args.baseline, folder / "baseline"), **trees}
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
        for _ in range(args.repeat):
            for label, tree in trees.items():  # alternating rounds: both see the same machine load
                runs[label].append(demo_worker(tree, folder / "inputs.npz"))
    labels = list(trees)
    tasks = list(runs[labels[0]][0])
    best = {label: {t: min(r[t]["seconds"] for r in runs[label]) for t in tasks} for label in labels}
    header = " | ".join(f"{label} (s)" for label in labels)
    print(f"| task | {header} |" + (" speed-up |" if len(labels) == 2 else ""))
    for task in [*tasks, "total"]:
        times = [sum(best[label].values()) if task == "total" else best[label][task] for label in labels]
        row = " | ".join(f"{t:.1f}" for t in times)
        print(f"| {task} | {row} |" + (f" {times[0] / times[1]:.2f}x |" if len(labels) == 2 else ""))
    if len(labels) == 2:
        for task in tasks:
            old, new = (runs[label][0][task]["results"] for label in labels)
            changed = [key for key in old if old[key] != new[key]]
            print(f"{task}: {len(changed)} of {len(old)} reported numbers differ")
            for key in changed:
                print(f"  {key}: {old[key]:.6g} -> {new[key]:.6g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", action="store_true", help="time the demo's probe tasks instead")
    parser.add_argument("--cache-dir", type=Path, help="--demo: read the features from this probe demo cache")
    parser.add_argument("--subcategory", action="store_true", help="--demo: add the 87-class label task")
    parser.add_argument("--baseline", help="--demo: also time the probe package of this git revision")
    parser.add_argument("--repeat", type=int, default=2, help="--demo: rounds; the best time counts")
    parser.add_argument("--demo-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.demo_worker:
        with np.load(args.demo_worker) as stored:
            print(json.dumps(run_demo_workload(dict(stored))))
        return
    if args.demo:
        demo_main(args)
        return

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
