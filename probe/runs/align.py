"""`probe align` as a library call: caches for every vision and text model, scores for every pair, results
JSON and heatmap PNGs. Rendering to the terminal is `probe.report.terminal`'s job."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from probe.align.engine import state_cache_budget
from probe.align.prep import constant_layers
from probe.align.settings import AlignSettings, check_settings
from probe.align.state import StateCache
from probe.align.stats import AlignmentReport, score_alignment
from probe.devices import resolve_device
from probe.errors import InputError
from probe.features.cache import FeatureCache, LayerStack
from probe.features.settings import ExtractSettings
from probe.log import logger
from probe.progress import ProgressCallback
from probe.report.numbers import fmt_num, fmt_p
from probe.runs.controls import ControlRow, check_controls, compare_to_controls, control_names
from probe.runs.inputs import ensure_cache, ensure_paired, open_dataset, split_models
from probe.runs.outputs import new_run_folder, point_latest
from probe.runs.rows import write_rows
from probe.runs.score_cache import cached_file, cached_score
from probe.runs.sizes import SizeRow, nested_subsets, score_sizes


@dataclass
class AlignPair:
    """One (vision model, text model) comparison: its caches, report (probe.align.stats.AlignmentReport) and plots."""

    vision: LayerStack
    text: LayerStack
    report: AlignmentReport
    heatmaps: dict[str, Path] = field(default_factory=dict)

    @property
    def vision_name(self) -> str:
        return self.vision.name

    @property
    def text_name(self) -> str:
        return self.text.name


@dataclass
class AlignRun:
    """Everything a `probe align` run produced: the model pairs, the control pairs and each model's comparison
    with its best control, the text-vs-text ceiling, and scores at several N."""

    pairs: list[AlignPair]
    settings: AlignSettings
    dataset: dict[str, Any]
    results_path: Optional[Path] = None
    vision_params_m: dict[str, Optional[float]] = field(default_factory=dict)
    control_pairs: list[AlignPair] = field(default_factory=list)
    control_rows: list[ControlRow] = field(default_factory=list)
    ceiling: list[AlignPair] = field(default_factory=list)
    size_rows: list[SizeRow] = field(default_factory=list)
    size_plots: dict[str, Path] = field(default_factory=dict)
    rows_path: Optional[Path] = None


def _params_m(name: str) -> Optional[float]:
    from probe.models.names import resolve_model

    try:
        return resolve_model(name).params_m
    except Exception:  # an unregistered folder: the scaling table just has no size for it
        return None


def informative_layers(cache: FeatureCache) -> LayerStack:
    """The cache's layers minus those constant across rows (e.g. a ViT's CLS token at the embedding state 0,
    which is the same learned vector for every image and would make every metric a tie-break artefact), by
    the alignment engine's own rule (`probe.align.prep.constant_layers`). The dropped hidden-state indices
    are kept on the stack for the report."""
    stack = cache.stack()
    constant = set(constant_layers(stack, name=str(cache.path)))
    if len(constant) == stack.num_layers:
        raise InputError(f"every layer of {cache.path} is constant across rows; nothing to align")
    keep = [i for i in range(stack.num_layers) if i not in constant]
    return stack.select(keep, dropped=[stack.layers[i] for i in sorted(constant)])


def write_heatmaps(
    pair: AlignPair,
    output: Path,
    *,
    prefix: str = "",
    cache_dir: Optional[Path] = None,
    score_key: Optional[dict[str, Any]] = None,
) -> dict[str, Path]:
    """One PNG per metric of `pair` under `output`; returns metric -> path. With `cache_dir` and the key its
    scores were cached under (`score_key`), a figure drawn before for the same scores is copied, not drawn."""
    from probe.report.plots import heatmap_png

    paths = {}
    for name, m in pair.report.metrics.items():
        slug = f"{prefix}{pair.vision_name}__{pair.text_name}__{name}".replace("/", "--").replace(":", "-")
        chance = f", chance {m.chance_level:.3f}" if m.chance_level is not None else ""
        title = (
            f"{name}: {pair.vision_name} vs {pair.text_name}\nbest {m.best_score:.3f} at "
            f"({pair.vision.layers[m.best_pair[0]]}, {pair.text.layers[m.best_pair[1]]}){chance}, "
            f"N={pair.vision.num_rows}"
        )

        def draw(path: Path, m: Any = m, title: str = title) -> Path:
            return heatmap_png(
                m.matrix,
                path,
                title=title,
                xlabel=f"{pair.text_name} hidden state",
                ylabel=f"{pair.vision_name} hidden state",
                xticks=pair.text.layers,
                yticks=pair.vision.layers,
                best=m.best_pair,
                chance=m.chance_level,
            )

        out = output / f"{slug}.png"
        if cache_dir is None or score_key is None:
            paths[name] = draw(out)
        else:
            figure_key = {"scores": score_key, "metric": name, "title": title, "figure": "heatmap"}
            paths[name] = cached_file(cache_dir, "figures", figure_key, out, draw)
    return paths


def _with_hidden_states(pair: AlignPair) -> dict[str, Any]:
    """The report as a dict, each metric also giving its best pair as hidden-state indices (`best_hidden_states`,
    0 = embeddings: the numbering people read everywhere) beside `best_pair` (positions in the matrix)."""
    report = pair.report.to_dict()
    for name, m in pair.report.metrics.items():
        report["metrics"][name]["best_hidden_states"] = [
            pair.vision.layers[m.best_pair[0]],
            pair.text.layers[m.best_pair[1]],
        ]
    return report


def pair_record(pair: AlignPair) -> dict[str, Any]:
    """The results-JSON entry of one pair: names, stored hidden-state indices, the report and plot paths."""
    return {
        "vision": pair.vision_name,
        "text": pair.text_name,
        "vision_layers": list(pair.vision.layers),
        "text_layers": list(pair.text.layers),
        "dropped_constant_layers": {"vision": list(pair.vision.dropped), "text": list(pair.text.dropped)},
        "report": _with_hidden_states(pair),
        "heatmaps": {k: str(v) for k, v in pair.heatmaps.items()},
    }


def run_align(
    *,
    vision: str | Sequence[str],
    text: str | Sequence[str],
    dataset: str | Path,
    settings: AlignSettings,
    options: ExtractSettings,
    output: Optional[Path],
    pool_vision: Optional[str] = None,
    pool_text: Optional[str] = None,
    controls: Sequence[str] = (),
    sizes: Sequence[int] = (),
    progress: Optional[ProgressCallback] = None,
    states: Optional[StateCache] = None,
    log_rows: bool = False,
) -> AlignRun:
    """Score every (vision, text) model pair on `dataset`; write results JSON + PNGs into a new run folder under
    `output` (if given; `probe.runs.outputs`: `<output>/align-<time>/`, and `<output>/latest` points at it).

    `controls`: control models (`pixels-16`, or `random-init` for each vision model's own twin) scored on the
    same rows and text models; each model is compared with its best control on the same subsamples. With two
    or more text models, their text-vs-text alignment is the ceiling. `sizes`: also score every pair on nested
    subsets of these many rows. Missing caches are extracted first with `options`; caches must be paired row
    by row. `states` keeps each model's per-layer work for all its pairs (default: a `StateCache` of this run,
    within `probe.align.engine.state_cache_budget` of the device's free memory); a study passes one to all its
    runs. `log_rows`: also each pair's per-row agreement (`probe.align.rows`), written to the run folder's
    `rows.h5` (`probe.runs.rows`; read it with `probe.load_rows`).
    """
    from probe.results import cache_input_record, write_results
    from probe.runs.checks import check_run_request

    check_run_request(cache_dir=options.cache_dir, output=output, metrics=settings.metrics)  # before any model or data
    vision_names = split_models(vision, param="vision")
    text_names = split_models(text, param="text")
    check_controls(controls, settings)
    control_map = control_names(controls, vision_names)
    control_models = list(dict.fromkeys(c for names in control_map.values() for c in names if c not in vision_names))
    data = open_dataset(dataset, options)
    check_settings(settings, num_rows=len(data))  # before any model is loaded
    if sizes:
        nested_subsets(len(data), sizes, seed=settings.seed)  # checks the sizes before any work

    def caches(names: Sequence[str], modality: str, pool: Optional[str]) -> list[FeatureCache]:
        return [ensure_cache(m, data, pool=pool, options=options, progress=progress, modality=modality) for m in names]

    vcaches, ccaches, tcaches = (
        caches(vision_names, "vision", pool_vision),
        caches(control_models, "vision", pool_vision),
        caches(text_names, "text", pool_text),
    )
    ensure_paired(vcaches + ccaches + tcaches)
    run_dir = new_run_folder(output, "align") if output is not None else None
    # Controls by the name their caches record (`random-init:tiny-ssl-vit` is registered as `tiny-random-vit`).
    recorded = {
        **dict(zip(vision_names, (str(c.key["model"]["name"]) for c in vcaches))),
        **dict(zip(control_models, (str(c.key["model"]["name"]) for c in ccaches))),
    }
    control_map = {recorded[v]: [recorded[c] for c in names] for v, names in control_map.items()}
    vstacks, cstacks, tstacks = ([informative_layers(c) for c in group] for group in (vcaches, ccaches, tcaches))
    if states is None:
        states = StateCache(budget_bytes=state_cache_budget(resolve_device(settings.device)))

    def score(v: LayerStack, t: LayerStack) -> AlignPair:
        t0 = time.perf_counter()
        key = {
            "vision": v.cache.key,
            "vision_layers": v.layers,
            "text": t.cache.key,
            "text_layers": t.layers,
            "settings": asdict(settings),
            **({"per_row": True} if log_rows else {}),
        }
        report = cached_score(
            options.cache_dir,
            "align",
            key,
            lambda: score_alignment(v, t, settings, progress=progress, states=states, per_row=log_rows),
            refresh=options.overwrite == "always",
        )
        pair = AlignPair(v, t, report)
        logger.info(
            "scored %s vs %s (%d x %d layer pairs) in %.1f s",
            pair.vision_name,
            pair.text_name,
            v.num_layers,
            t.num_layers,
            time.perf_counter() - t0,
        )
        for name, m in report.metrics.items():
            logger.info(
                "  %s: best %s at hidden states (%d, %d), chance %s, calibrated %s, p %s",
                name,
                fmt_num(m.best_score),
                v.layers[m.best_pair[0]],
                t.layers[m.best_pair[1]],
                fmt_num(m.chance_level),
                fmt_num(m.calibrated_score),
                fmt_p(m.p_value, permutations=settings.permutations),
            )
        if run_dir is not None:
            pair.heatmaps = write_heatmaps(pair, run_dir, cache_dir=options.cache_dir, score_key=key)
        return pair

    pairs = [score(v, t) for v in vstacks for t in tstacks]
    control_pairs = [score(c, t) for c in cstacks for t in tstacks]
    reports = {(p.vision_name, p.text_name): p.report for p in pairs + control_pairs}
    control_rows = compare_to_controls(reports, control_map, settings=settings)
    ceiling = [score(a, b) for i, a in enumerate(tstacks) for b in tstacks[i + 1 :]]
    size_rows = (
        [
            row
            for v in vstacks + cstacks
            for t in tstacks
            for row in score_sizes(v, t, sizes, settings, progress=progress, states=states)
        ]
        if sizes
        else []
    )
    dataset_info = {"name": data.name, "rows": len(data), "fingerprint": data.fingerprint, "source": data.source}
    run = AlignRun(
        pairs,
        settings,
        dataset_info,
        vision_params_m={v.name: _params_m(v.name) for v in vstacks + cstacks},
        control_pairs=control_pairs,
        control_rows=control_rows,
        ceiling=ceiling,
        size_rows=size_rows,
    )
    if run_dir is not None:
        if size_rows:
            run.size_plots = write_size_plots(size_rows, run_dir)
        roles = (
            [(p, "model") for p in pairs] + [(p, "control") for p in control_pairs] + [(p, "ceiling") for p in ceiling]
        )
        run.rows_path = write_rows(run_dir, roles, data=data, max_pixels=options.max_pixels) if log_rows else None
        run.results_path = write_results(
            run_dir,
            command="align",
            settings={
                "align": asdict(settings),
                "extract": options.record(),
                "pool_vision": pool_vision,
                "pool_text": pool_text,
                "controls": list(controls),
                "sizes": list(sizes),
            },
            inputs=[cache_input_record(c) for c in vcaches + ccaches + tcaches],
            dataset=dataset_info,
            results={
                "pairs": [pair_record(p) for p in pairs],
                "vision_params_m": run.vision_params_m,
                "controls": {
                    "models": control_map,
                    "pairs": [pair_record(p) for p in control_pairs],
                    "comparisons": [r.to_dict() for r in control_rows],
                },
                "ceiling": [pair_record(p) for p in ceiling],
                "sizes": {
                    "rows": [r.to_dict() for r in size_rows],
                    "plots": {k: str(v) for k, v in run.size_plots.items()},
                },
                **({"rows": {"file": run.rows_path.name}} if run.rows_path is not None else {}),
            },
        )
        point_latest(Path(output), run_dir)
    return run


def write_size_plots(rows: Sequence[SizeRow], output: Path) -> dict[str, Path]:
    """One PNG per (vision, text) pair: raw and calibrated score of each metric against N."""
    from probe.report.plots import sizes_png

    paths = {}
    for vision, text in dict.fromkeys((r.vision, r.text) for r in rows):
        mine = [r for r in rows if r.vision == vision and r.text == text]
        slug = f"{vision}__{text}__sizes".replace("/", "--").replace(":", "-")
        paths[f"{vision} vs {text}"] = sizes_png(
            mine, output / f"{slug}.png", title=f"{vision} vs {text}: scores against N"
        )
    return paths
