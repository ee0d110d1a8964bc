"""Controls beside every score: what no learning (`random-init:<model>`, the model's own architecture with fresh
weights) and no images beyond their pixels (`pixels-16`: the downsampled RGB image itself) reach on the same
rows, and how far a model is above the best of them.

`control_names` expands `controls=` into model names per vision model; `compare_to_controls` picks, per
(vision, text, metric), the control with the highest calibrated score and compares the model with it on the
same subsamples (`probe.align.stats.compare_with_control`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from probe.align.settings import AlignSettings
from probe.align.stats import AlignmentReport, ControlComparison, compare_with_control
from probe.errors import InputError
from probe.models.names import RANDOM_INIT_PREFIX, is_control

# The --controls word that stands for each vision model's own twin, `random-init:<model>`.
RANDOM_INIT = "random-init"
DEFAULT_CONTROLS = ("pixels-16", RANDOM_INIT)


def control_names(controls: Sequence[str], vision: Sequence[str]) -> dict[str, list[str]]:
    """vision model -> the control models it is compared with. `controls` holds model names (`pixels-16`) or
    `random-init`, which stands for each vision model's own twin (`random-init:<model>`)."""
    out: dict[str, list[str]] = {}
    for v in vision:
        names = []
        for c in controls:
            if c == RANDOM_INIT:
                if not is_control(v):
                    names.append(RANDOM_INIT_PREFIX + v)
            elif c != v:
                names.append(c)
        out[v] = list(dict.fromkeys(names))
    return out


@dataclass(frozen=True)
class ControlRow:
    """One (vision, text, metric): the model beside its best control (highest calibrated score)."""

    vision: str
    text: str
    metric: str
    control: Optional[str]
    comparison: Optional[ControlComparison]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vision": self.vision,
            "text": self.text,
            "metric": self.metric,
            "best_control": self.control,
            **({} if self.comparison is None else self.comparison.to_dict()),
        }


def compare_to_controls(
    reports: dict[tuple[str, str], AlignmentReport],
    controls: dict[str, list[str]],
    *,
    settings: AlignSettings,
) -> list[ControlRow]:
    """For every scored (vision, text) pair in `reports` whose vision model has controls, per metric: the best
    control by calibrated score and the paired comparison with it. `reports` maps (vision, text) names to
    reports of models and controls alike, all made with `settings`."""
    rows = []
    for (vision, text), report in reports.items():
        if vision not in controls or not controls[vision]:
            continue
        for metric, m in report.metrics.items():
            scored = [(c, reports[(c, text)].metrics[metric]) for c in controls[vision] if (c, text) in reports]
            scored = [(c, r) for c, r in scored if r.calibrated_score is not None]
            if not scored:
                rows.append(ControlRow(vision, text, metric, None, None))
                continue
            name, best = max(scored, key=lambda item: item[1].calibrated_score)
            comparison = compare_with_control(
                m, best, fraction=settings.subsample_fraction, confidence=settings.confidence
            )
            rows.append(ControlRow(vision, text, metric, name, comparison))
    return rows


def check_controls(controls: Sequence[str], settings: AlignSettings) -> None:
    """Controls need the permutation null (calibrated scores) and, for a verdict, subsamples."""
    if controls and settings.permutations == 0:
        raise InputError("controls= are compared on calibrated scores, which need permutations= above 0")
