"""`probe align` as a library call: caches for every vision and text model, scores for every pair, results
JSON and heatmap PNGs. Rendering to the terminal is `probe.report.terminal`'s job."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from probe.features.cache import FeatureCache
from probe.errors import InputError
from probe.log import logger
from probe.runs.inputs import ExtractOptions, ensure_cache, ensure_paired, open_dataset, split_models
from probe.progress import ProgressCallback
from probe.runs.score_cache import cached_score

# PRH's defaults: mutual kNN with k = 10 on 1024 pairs, features clamped at the 0.95 quantile.
DEFAULT_METRICS = ("mutual_knn", "cka", "unbiased_cka", "cknna")
DEFAULT_K = 10
DEFAULT_CLIP_QUANTILE = 0.95
DEFAULT_PERMUTATIONS = 200
DEFAULT_SUBSAMPLES = 100


@dataclass(frozen=True)
class AlignSettings:
    """The scoring settings of one `probe align` run."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    k: int = DEFAULT_K
    clip_quantile: Optional[float] = DEFAULT_CLIP_QUANTILE
    permutations: int = DEFAULT_PERMUTATIONS
    subsamples: int = DEFAULT_SUBSAMPLES
    subsample_fraction: float = 0.8
    seed: int = 0
    device: Optional[str] = None
    # PRH's code adds 1e-6 to CKA/CKNNA denominators; numbers must compare with it, so it is the default.
    denominator_epsilon: float = 1e-6


@dataclass
class AlignPair:
    """One (vision model, text model) comparison: its caches, report (probe.align.stats.AlignmentReport) and plots."""

    vision: "LayerSubset"
    text: "LayerSubset"
    report: Any
    heatmaps: dict[str, Path] = field(default_factory=dict)

    @property
    def vision_name(self) -> str:
        return _name(self.vision.cache)

    @property
    def text_name(self) -> str:
        return _name(self.text.cache)


@dataclass
class AlignRun:
    """Everything a `probe align` run produced."""

    pairs: list[AlignPair]
    settings: AlignSettings
    dataset: dict[str, Any]
    results_path: Optional[Path] = None
    vision_params_m: dict[str, Optional[float]] = field(default_factory=dict)


def _name(cache: FeatureCache) -> str:
    return str(cache.key["model"]["name"])


def _params_m(name: str) -> Optional[float]:
    from probe.models.registry import resolve_model

    try:
        return resolve_model(name).params_m
    except Exception:  # an unregistered folder: the scaling table just has no size for it
        return None


def check_align_settings(settings: AlignSettings, *, num_rows: int) -> None:
    """InputError naming the flag for settings that cannot work on `num_rows` rows."""
    if not 1 <= settings.k <= num_rows - 1:
        raise InputError(f"--topk {settings.k} must be between 1 and N-1 = {num_rows - 1} for {num_rows} rows")
    if settings.clip_quantile is not None and not 0 < settings.clip_quantile <= 1:
        raise InputError(f"--clip-quantile {settings.clip_quantile} must be in (0, 1], or 'none'")
    if settings.permutations < 0:
        raise InputError(f"--permutations {settings.permutations} must be 0 or more")
    if settings.subsamples < 0:
        raise InputError(f"--subsamples {settings.subsamples} must be 0 or more")


@dataclass(frozen=True)
class LayerSubset:
    """Some stored layers of one cache pool, as the layer stack `probe.align.engine` reads: `layers` are their
    hidden-state indices, `dropped` the hidden-state indices left out as constant across rows."""

    cache: FeatureCache
    positions: tuple[int, ...]
    dropped: tuple[int, ...] = ()

    @property
    def num_layers(self) -> int:
        return len(self.positions)

    @property
    def num_rows(self) -> int:
        return self.cache.num_rows

    @property
    def layers(self) -> list[int]:
        return [self.cache.layers[p] for p in self.positions]

    def layer(self, i: int):
        return self.cache.layer(self.positions[i])


def informative_layers(cache: FeatureCache) -> LayerSubset:
    """The cache's layers minus those constant across rows (e.g. a ViT's CLS token at the embedding state 0,
    which is the same learned vector for every image and would make every metric a tie-break artefact).

    Uses the alignment engine's rule: after L2-normalising rows, the layer's total squared deviation from
    its mean row is at most `probe.align.hsic.DEGENERATE_FRACTION` of N.
    """
    import numpy as np

    from probe.align.hsic import DEGENERATE_FRACTION

    keep, dropped = [], []
    for i in range(cache.num_layers):
        x = cache.layer(i).astype(np.float64)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        spread = float(((x - x.mean(0)) ** 2).sum())
        (keep if spread > DEGENERATE_FRACTION * len(x) else dropped).append(i)
    if not keep:
        raise InputError(f"every layer of {cache.path} is constant across rows; nothing to align")
    return LayerSubset(cache, tuple(keep), tuple(cache.layers[i] for i in dropped))


def score_pair(vision: "LayerSubset", text: "LayerSubset", settings: AlignSettings, *, progress: Optional[ProgressCallback] = None):
    """probe.align.stats.score_alignment on two layer subsets (see `informative_layers`) with `settings`."""
    from probe.align.stats import score_alignment

    return score_alignment(
        vision, text, metrics=settings.metrics, k=settings.k, clip_quantile=settings.clip_quantile,
        permutations=settings.permutations, subsamples=settings.subsamples,
        subsample_fraction=settings.subsample_fraction, seed=settings.seed, device=settings.device,
        denominator_epsilon=settings.denominator_epsilon, progress=progress,
    )


def write_heatmaps(pair: AlignPair, output: Path, *, prefix: str = "") -> dict[str, Path]:
    """One PNG per metric of `pair` under `output`; returns metric -> path."""
    from probe.report.plots import heatmap_png

    paths = {}
    for name, m in pair.report.metrics.items():
        slug = f"{prefix}{pair.vision_name}__{pair.text_name}__{name}".replace("/", "--")
        chance = f", chance {m.chance_level:.3f}" if m.chance_level is not None else ""
        title = (f"{name}: {pair.vision_name} vs {pair.text_name}\nbest {m.best_score:.3f} at "
                 f"({pair.vision.layers[m.best_pair[0]]}, {pair.text.layers[m.best_pair[1]]}){chance}, N={pair.vision.num_rows}")
        paths[name] = heatmap_png(
            m.matrix, output / f"{slug}.png", title=title, xlabel=f"{pair.text_name} hidden state",
            ylabel=f"{pair.vision_name} hidden state", xticks=pair.text.layers, yticks=pair.vision.layers,
            best=m.best_pair, chance=m.chance_level,
        )
    return paths


def pair_record(pair: AlignPair) -> dict[str, Any]:
    """The results-JSON entry of one pair: names, stored hidden-state indices, the report and plot paths."""
    return {
        "vision": pair.vision_name,
        "text": pair.text_name,
        "vision_layers": list(pair.vision.layers),
        "text_layers": list(pair.text.layers),
        "dropped_constant_layers": {"vision": list(pair.vision.dropped), "text": list(pair.text.dropped)},
        "report": pair.report.to_dict(),
        "heatmaps": {k: str(v) for k, v in pair.heatmaps.items()},
    }


def run_align(
    *,
    vision: str | Sequence[str],
    text: str | Sequence[str],
    dataset: str | Path,
    settings: AlignSettings,
    options: ExtractOptions,
    output: Optional[Path],
    pool_vision: Optional[str] = None,
    pool_text: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> AlignRun:
    """Score every (vision, text) model pair on `dataset`; write results JSON + PNGs to `output` (if given).

    Missing caches are extracted first with `options`. Caches must be paired row by row.
    """
    from probe.results import cache_input_record, write_results
    from probe.runs.checks import check_run_request

    check_run_request(cache_dir=options.cache_dir, output=output, metrics=settings.metrics)  # before any model or data
    vision_names = split_models(vision, flag="--vision")
    text_names = split_models(text, flag="--text")
    data = open_dataset(dataset, options)
    check_align_settings(settings, num_rows=len(data))
    vcaches = [ensure_cache(m, data, pool=pool_vision, options=options, progress=progress, modality="vision") for m in vision_names]
    tcaches = [ensure_cache(m, data, pool=pool_text, options=options, progress=progress, modality="text") for m in text_names]
    ensure_paired(vcaches + tcaches)
    pairs = []
    vsubsets = [informative_layers(c) for c in vcaches]
    tsubsets = [informative_layers(c) for c in tcaches]
    for v in vsubsets:
        for t in tsubsets:
            t0 = time.perf_counter()
            key = {"vision": v.cache.key, "vision_layers": v.layers, "text": t.cache.key, "text_layers": t.layers,
                   "settings": settings.__dict__}
            report = cached_score(options.cache_dir, "align", key, lambda: score_pair(v, t, settings, progress=progress),
                                  refresh=options.overwrite == "always")
            pair = AlignPair(v, t, report)
            logger.info("scored %s vs %s (%d x %d layer pairs) in %.1f s", pair.vision_name, pair.text_name,
                        v.num_layers, t.num_layers, time.perf_counter() - t0)
            if output is not None:
                pair.heatmaps = write_heatmaps(pair, Path(output))
            pairs.append(pair)
    dataset_info = {"name": data.name, "rows": len(data), "fingerprint": data.fingerprint, "source": data.source}
    run = AlignRun(pairs, settings, dataset_info, vision_params_m={_name(v): _params_m(_name(v)) for v in vcaches})
    if output is not None:
        run.results_path = write_results(
            Path(output), command="align",
            settings={"align": settings.__dict__, "extract": {**options.__dict__, "cache_dir": str(options.cache_dir)},
                      "pool_vision": pool_vision, "pool_text": pool_text},
            inputs=[cache_input_record(c) for c in vcaches + tcaches], dataset=dataset_info,
            results={"pairs": [pair_record(p) for p in pairs], "vision_params_m": run.vision_params_m},
        )
    return run
