"""Representation alignment between two layer stacks: metrics, all layer pairs at once, and statistics.

Inside: `prep` (PRH's clamp and L2 rows), `quantiles` (the clamp level), `knn`, `hsic` and `cknna` (the
per-metric kernels), `specs` (the metric table), `state` (each modality's per-layer work, done once),
`engine` (every layer pair of every metric), `stats` (chance, permutation null, intervals, the report).
This package takes arrays or any object with the small layer-source protocol (`prep.LayerSource`); it never
reads feature caches itself.
"""

from probe.align.engine import alignment_matrices, alignment_matrix
from probe.align.prep import LayerSource
from probe.align.specs import METRICS, MetricName
from probe.align.stats import AlignmentReport, MetricReport, score_alignment

__all__ = [
    "METRICS",
    "AlignmentReport",
    "LayerSource",
    "MetricName",
    "MetricReport",
    "alignment_matrices",
    "alignment_matrix",
    "score_alignment",
]
