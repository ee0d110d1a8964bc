"""How scores move with N: the same models scored on nested random subsets of the rows.

Raw mutual-kNN falls as N grows (more rows, sparser neighbourhoods), and so does the max over layer pairs'
inflation; the calibrated score is what compares across N ("Back into Plato's cave"). `score_sizes` scores a
pair of layer stacks on the first n rows of one seeded permutation, for each n, without subsamples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np

from probe.align.settings import AlignSettings, check_settings
from probe.align.state import StateCache
from probe.align.stats import score_alignment
from probe.errors import InputError
from probe.features.cache import LayerStack
from probe.progress import ProgressCallback


@dataclass(frozen=True)
class SizeRow:
    """One (vision, text, N, metric): the max over layer pairs, its chance level, null and calibrated score."""

    vision: str
    text: str
    n: int
    metric: str
    best: float
    chance: Optional[float]
    null_max_mean: Optional[float]
    calibrated: Optional[float]
    p_value: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nested_subsets(num_rows: int, sizes: Sequence[int], *, seed: int) -> list[np.ndarray]:
    """Row indices [n] for each n in `sizes`: prefixes of one seeded permutation, so smaller sets are nested in
    larger ones; each sorted (row order does not change any score)."""
    bad = [n for n in sizes if not 0 < n <= num_rows]
    if bad:
        raise InputError(f"sizes={','.join(map(str, bad))}: each size must be between 1 and N = {num_rows}")
    order = np.random.default_rng(seed).permutation(num_rows)
    return [np.sort(order[:n]) for n in sizes]


def score_sizes(
    vision: LayerStack,
    text: LayerStack,
    sizes: Sequence[int],
    settings: AlignSettings,
    *,
    progress: Optional[ProgressCallback] = None,
    states: Optional[StateCache] = None,
) -> list[SizeRow]:
    """Score `vision` against `text` on nested subsets of `sizes` rows (permutation null included, no
    subsamples); one row per size and metric. `states` as `score_alignment`'s."""
    plain = replace(settings, subsamples=0)
    rows: list[SizeRow] = []
    for n, subset in zip(sizes, nested_subsets(vision.num_rows, sizes, seed=settings.seed)):
        check_settings(plain, num_rows=n)
        report = score_alignment(
            vision.take_rows(subset), text.take_rows(subset), plain, progress=progress, states=states
        )
        for name, m in report.metrics.items():
            rows.append(
                SizeRow(
                    vision.name,
                    text.name,
                    int(n),
                    name,
                    m.best_score,
                    m.chance_level,
                    m.null_max_mean,
                    m.calibrated_score,
                    m.p_value,
                )
            )
    return rows


def parse_sizes(value: str) -> tuple[int, ...]:
    """ "256,512,1024" -> (256, 512, 1024); InputError naming `sizes=` otherwise."""
    try:
        sizes = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise InputError(f"sizes={value!r}: give row counts separated by commas, e.g. 256,512,1024") from None
    if not sizes:
        raise InputError("sizes= is empty; e.g. 256,512,1024")
    return sizes
