"""Representation alignment between two layer stacks: metrics, all layer pairs at once, and statistics.

Inside: `settings` (AlignSettings, the one settings object), `prep` (PRH's clamp and L2 rows, the
constant-layer rule), `quantiles` (the clamp level), `knn`, `hsic` and `cknna` (the per-metric kernels),
`specs` (the metric table), `state` (each modality's per-layer work, done once), `engine` (every layer pair
of every metric), `stats` (chance, permutation null, intervals, the report). This package takes arrays or
any `probe.layer_source.LayerSource`; it never reads feature caches itself.

The names below are imported on first use, so `from probe.align.settings import AlignSettings` stays cheap
(no torch) for the CLI.
"""

from typing import Any

_FACE = {
    "AlignSettings": "probe.align.settings",
    "alignment_matrices": "probe.align.engine",
    "alignment_matrix": "probe.align.engine",
    "score_alignment": "probe.align.stats",
    "AlignmentReport": "probe.align.stats",
    "MetricReport": "probe.align.stats",
    "METRICS": "probe.align.specs",
    "MetricName": "probe.align.specs",
}

__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'probe.align' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
