"""The settings of an alignment: one frozen object from the CLI flags down to the per-layer work.

Imports neither torch nor the engine, so the CLI can read its defaults at start-up.

`AlignSettings` is what `probe align` parses its flags into, what `score_alignment` and
`alignment_matrices` take, what the score cache keys on and what the results JSON records. Defaults follow
PRH (k=10, clamp at the 0.95 quantile, L2 rows, 1e-6 added to CKA/CKNNA denominators) so numbers compare
with published ones; every departure is a field.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, Union

from probe.align.specs import MetricName, MetricSpec, metric_specs
from probe.errors import InputError

if TYPE_CHECKING:
    import torch

PathChoice = Literal["auto", "dense", "blocked"]
DeviceLike = Union[str, "torch.device", None]

DEFAULT_METRICS: tuple[MetricName, ...] = ("mutual_knn", "cka", "unbiased_cka", "cknna")
# PRH's code adds 1e-6 to CKA/CKNNA denominators; 0 gives the textbook definition (differs by ~1e-5 relative
# for CKA, up to ~2e-3 for CKNNA on LLaMA-like features).
PRH_DENOMINATOR_EPSILON = 1e-6


@dataclass(frozen=True)
class AlignSettings:
    """How alignment is scored.

    metrics: metric names (`probe.align.specs.METRICS`). k: neighbours for the kNN metrics and CKNNA.
    clip_quantile: PRH's per-modality clamp (None: no clamp). normalize: L2-normalise rows.
    permutations: re-pairings for the null of the max over layer pairs (0 skips). subsamples: subsets of
    `subsample_fraction` of the rows, without replacement, for intervals at level `confidence` (0 skips).
    seed: fixes permutations and subsets. device: torch device name ("auto": CUDA if available, else
    MPS, else CPU; resolved by `probe.devices.resolve_device`). path: "auto" | "dense" | "blocked" (see
    `probe.align.engine`). rbf_sigma: RBF bandwidth (None: each layer's median distance).
    denominator_epsilon: added to CKA/CKNNA denominators.
    """

    metrics: tuple[MetricName, ...] = DEFAULT_METRICS
    k: int = 10
    clip_quantile: Optional[float] = 0.95
    normalize: bool = True
    permutations: int = 200
    subsamples: int = 100
    subsample_fraction: float = 0.8
    confidence: float = 0.95
    seed: int = 0
    device: str = "auto"
    path: PathChoice = "auto"
    rbf_sigma: Optional[float] = None
    denominator_epsilon: float = PRH_DENOMINATOR_EPSILON

    def __post_init__(self) -> None:
        # A single name or a list is accepted and stored as a tuple, so settings hash and compare by value.
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        if not isinstance(self.device, str):  # None or a torch.device
            object.__setattr__(self, "device", "auto" if self.device is None else str(self.device))

    @classmethod
    def from_options(cls, settings: Optional["AlignSettings"] = None, **options: Any) -> "AlignSettings":
        """`settings` (default: the defaults) with the fields named in `options` replaced: what the library's
        entry points do with their keyword arguments (`alignment_matrices(a, b, k=5)`)."""
        base = settings if settings is not None else cls()
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown alignment setting(s): {', '.join(unknown)}; see probe.align.AlignSettings")
        return replace(base, **options)


def check_sizes(*, num_rows: int, k: int, specs: Sequence[MetricSpec]) -> None:
    """InputError when N or k cannot give the metrics in `specs` (N <= k, k < 1, N <= 3 for unbiased)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k={k!r} must be a positive integer (the number of nearest neighbours).")
    if any(spec.family in ("knn", "cknna") for spec in specs) and num_rows <= k:
        raise InputError(
            f"k={k} must be between 1 and N-1 = {num_rows - 1} for the kNN metrics on N={num_rows} rows; "
            "lower k or add rows."
        )
    if any(spec.family == "cknna" for spec in specs) and k < 2:
        raise InputError(f"k={k}: cknna needs k >= 2 (as PRH); raise k.")
    if any(spec.unbiased for spec in specs) and num_rows <= 3:
        raise InputError(f"unbiased HSIC (unbiased_cka, cknna) needs N > 3 rows; got N={num_rows}.")


def _check_resampling(
    *, permutations: int, subsamples: int, fraction: float, confidence: float, num_rows: int, k: int
) -> int:
    """Validate the resampling settings; returns the subset size."""
    for label, value in (("permutations", permutations), ("subsamples", subsamples)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise InputError(f"{label}={value!r} must be a non-negative integer (0 skips that step).")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence={confidence} must be in (0, 1), e.g. 0.95.")
    if subsamples == 0:
        return 0
    if not 0.0 < fraction < 1.0:
        raise InputError(f"subsample_fraction={fraction} must be in (0, 1), e.g. 0.8 (rows drawn without replacement).")
    rows = int(round(fraction * num_rows))
    if rows <= max(k, 3):
        raise InputError(
            f"subsample_fraction={fraction} keeps {rows} of {num_rows} rows; it must keep more than "
            f"max(k, 3) = {max(k, 3)}. Raise the fraction or use subsamples=0."
        )
    return rows


def check_settings(settings: AlignSettings, *, num_rows: int) -> int:
    """Every check of `settings` against a dataset of `num_rows` rows, in one place and in the library's
    names (`k=`; the CLI shows its flags); callers run it before any extraction. Returns the number of
    rows in each subsample (0 when subsamples is 0). Raises InputError."""
    specs = metric_specs(settings.metrics)
    check_sizes(num_rows=num_rows, k=settings.k, specs=specs)
    if settings.clip_quantile is not None and not 0 < settings.clip_quantile <= 1:
        raise InputError(f"clip_quantile={settings.clip_quantile} must be in (0, 1] (PRH: 0.95), or None for no clamp.")
    if settings.path not in ("auto", "dense", "blocked"):
        raise InputError(f"path={settings.path!r}: choose 'auto', 'dense' or 'blocked'.")
    if settings.denominator_epsilon < 0:
        raise InputError(f"denominator_epsilon={settings.denominator_epsilon} must be 0 or more (PRH: 1e-6).")
    return _check_resampling(
        permutations=settings.permutations,
        subsamples=settings.subsamples,
        fraction=settings.subsample_fraction,
        confidence=settings.confidence,
        num_rows=num_rows,
        k=settings.k,
    )
