"""Calibrating alignment scores: chance levels, a permutation null of the max, and subsample intervals.

`score_alignment` is the one entry point for the CLI and the demo. It reports, per metric, the full
[Lv, Lt] matrix, the best pair and its score (the headline statistic is the max over pairs), and:

- chance level: the expected score of the best pair when the pairing of rows is random. Exact for
  the kNN metrics (`mutual_knn_chance`, `jaccard_knn_chance`, `cycle_knn_chance`); for the kernel
  metrics the null mean of the best pair's score.
- permutation null of the max: P shuffles of the pairing (one side's rows reordered; its kNN lists
  and kernels are relabelled, nothing is recomputed from features: `probe.align.resample`), the max over
  all layer pairs taken each time, exactly as for the observed score. Reported: null mean and std of the max, the
  p-value (1 + #{null max >= observed max}) / (P + 1), the z-score, and the calibrated score
  (observed max - null max mean) / (1 - null max mean): 0 at what the max reaches by chance, 1 at
  perfect alignment (Cohen's-kappa style).
- intervals over samples: S subsets of a fraction f of the rows drawn WITHOUT replacement (with
  replacement, duplicated rows would be each other's nearest neighbours). A subset's score varies
  less than a fresh sample's and kNN scores drift with N, so the interval is the delete-d jackknife
  one: observed + sqrt(f / (1 - f)) * (subset quantiles - subset mean).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Literal, Optional, TypeVar

import numpy as np
import torch

from probe.align.engine import pair_matrices, prepare_modalities
from probe.align.prep import LayerInput, as_layer_source
from probe.align.resample import Resampler
from probe.align.rows import RowAgreement, row_agreement
from probe.align.settings import AlignSettings, check_settings
from probe.align.specs import metric_specs
from probe.align.state import ModalityState, StateCache
from probe.errors import InputError
from probe.progress import ProgressCallback

ChanceSource = Literal["exact", "null", "unavailable"]
Score = TypeVar("Score", float, np.ndarray)
# A null max this close to the observed one (relative) counts as reaching it, against float noise.
TIE_TOLERANCE = 1e-12


def mutual_knn_chance(*, num_rows: int, k: int) -> float:
    """Expected mutual_knn under a random pairing: k / (N - 1) (exact: a row's other-side neighbours
    are then a uniform k-subset of the N - 1 other rows)."""
    return k / (num_rows - 1)


def _overlap_probabilities(*, num_rows: int, k: int) -> np.ndarray:
    """P(|kNN_a(i) & kNN_b(i)| = c), c = 0..k, under a random pairing (hypergeometric), float64 [k + 1]."""
    population = num_rows - 1
    total = math.comb(population, k)
    return np.array([math.comb(k, c) * math.comb(population - k, k - c) / total for c in range(k + 1)])


def jaccard_knn_chance(*, num_rows: int, k: int) -> float:
    """Expected jaccard_knn under a random pairing: E[c / (2k - c)], c hypergeometric (exact)."""
    overlap = np.arange(k + 1)
    return float((_overlap_probabilities(num_rows=num_rows, k=k) * overlap / (2 * k - overlap)).sum())


def cycle_knn_chance(in_degrees: np.ndarray, *, k: int) -> float:
    """Expected cycle_knn(A, B) under a random pairing, given the in-degrees [N] of A's kNN graph.

    Row i comes back iff one of its k (random) B-neighbours has i among its A-neighbours, i.e. lies
    among i's d_i in-neighbours: P = 1 - C(N-1-d_i, k) / C(N-1, k). Hubs (uneven d_i) lower the mean;
    equal in-degrees d_i = k give the largest value (`cycle_knn_regular_chance`).
    """
    degrees = np.asarray(in_degrees, dtype=np.float64)
    others = len(degrees) - 1
    miss = np.ones_like(degrees)
    for step in range(k):
        miss *= np.clip(others - degrees - step, 0, None) / (others - step)
    return float((1.0 - miss).mean())


def cycle_knn_regular_chance(*, num_rows: int, k: int) -> float:
    """`cycle_knn_chance` when every row has in-degree k: an upper bound on the chance level."""
    return cycle_knn_chance(np.full(num_rows, k), k=k)


@dataclass(frozen=True)
class MetricReport:
    """Everything reported for one metric. `matrix` is [Lv, Lt]; `best_pair` is (vision layer, text layer)
    (ties to the lowest vision, then text index). Fields are None when their step was not run."""

    metric: str
    matrix: np.ndarray
    best_score: float
    best_pair: tuple[int, int]
    chance_level: Optional[float]
    chance_source: ChanceSource
    null_max_mean: Optional[float]
    null_max_std: Optional[float]
    p_value: Optional[float]
    z_score: Optional[float]
    calibrated_score: Optional[float]
    max_interval: Optional[tuple[float, float]]
    best_pair_interval: Optional[tuple[float, float]]
    # The max over layer pairs on each subsample [S], in draw order: the subsets depend only on N, the seed and
    # the fraction, so two reports made with the same ones can be compared subsample by subsample.
    subsample_maxima: Optional[np.ndarray] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain types (the matrix as nested lists)."""
        out = asdict(self)
        out["matrix"] = np.asarray(self.matrix, dtype=float).tolist()
        if self.subsample_maxima is not None:
            out["subsample_maxima"] = np.asarray(self.subsample_maxima, dtype=float).tolist()
        for key in ("best_pair", "max_interval", "best_pair_interval"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MetricReport":
        """The report `to_dict` wrote (a results JSON's `metrics.<name>`), back as a MetricReport: lists become
        the matrix and `subsample_maxima` arrays and the pair and intervals tuples; keys that are no field
        (the results JSON's `best_hidden_states`) are ignored, optional fields left out are None (`chance_source`
        "unavailable"). KeyError when `metric`, `matrix`, `best_score` or `best_pair` is missing."""
        optional = {f.name for f in fields(cls)} - {"metric", "matrix", "best_score", "best_pair"}
        values = {name: data.get(name) for name in optional}
        for key in ("max_interval", "best_pair_interval"):
            values[key] = None if values[key] is None else tuple(values[key])
        if values["subsample_maxima"] is not None:
            values["subsample_maxima"] = np.asarray(values["subsample_maxima"], dtype=float)
        return cls(
            metric=data["metric"],
            matrix=np.asarray(data["matrix"], dtype=float),
            best_score=float(data["best_score"]),
            best_pair=(int(data["best_pair"][0]), int(data["best_pair"][1])),
            **{**values, "chance_source": values["chance_source"] or "unavailable"},
        )


@dataclass(frozen=True)
class ScoredSizes:
    """What scoring found or decided from the inputs and `AlignSettings`: sizes, clamp levels, resolved path
    and device (all plain types)."""

    num_rows: int
    vision_layers: int
    text_layers: int
    vision_clip: Optional[float]
    text_clip: Optional[float]
    subsample_rows: int
    path: str
    device: str


INTERVAL_METHOD = "delete-d jackknife over subsets without replacement"
P_VALUE_RULE = "(1 + #{null max >= observed max}) / (permutations + 1)"
CALIBRATED_RULE = "(observed max - null max mean) / (1 - null max mean)"


@dataclass(frozen=True)
class AlignmentReport:
    """`metrics`: name -> MetricReport; `settings`: what was asked; `sizes`: what it ran on; `rows`: name ->
    per-row agreement at the metric's best pair, when asked for (`score_alignment(per_row=True)`; not in
    `to_dict`: it goes to its own file)."""

    metrics: dict[str, MetricReport]
    settings: AlignSettings
    sizes: ScoredSizes
    rows: Optional[dict[str, RowAgreement]] = None

    def settings_record(self) -> dict[str, Any]:
        """The settings and sizes as one flat JSON-safe dict (the results JSON's `settings`)."""
        s, z = self.settings, self.sizes
        return {
            "num_rows": z.num_rows,
            "vision_layers": z.vision_layers,
            "text_layers": z.text_layers,
            "metrics": list(s.metrics),
            "k": s.k,
            "clip_quantile": s.clip_quantile,
            "vision_clip": z.vision_clip,
            "text_clip": z.text_clip,
            "normalize": s.normalize,
            "permutations": s.permutations,
            "subsamples": s.subsamples,
            "subsample_fraction": s.subsample_fraction,
            "subsample_rows": z.subsample_rows,
            "confidence": s.confidence,
            "seed": s.seed,
            "path": z.path,
            "device": z.device,
            "rbf_sigma": s.rbf_sigma,
            "denominator_epsilon": s.denominator_epsilon,
            "interval_method": INTERVAL_METHOD,
            "p_value_rule": P_VALUE_RULE,
            "calibrated_rule": CALIBRATED_RULE,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain types: {"settings": {...}, "metrics": {name: {...}}}."""
        return {"settings": self.settings_record(), "metrics": {name: r.to_dict() for name, r in self.metrics.items()}}


@dataclass(frozen=True)
class ResampledScores:
    """Per metric, over resamples: the max over pairs [R] and the score of the observed best pair [R]."""

    maxima: dict[str, np.ndarray]
    at_best: dict[str, np.ndarray]


def best_pair(matrix: np.ndarray) -> tuple[int, int]:
    """(row, column) of the largest entry of `matrix` [Lv, Lt], ties to the first in row-major order."""
    flat = int(np.argmax(matrix))
    return flat // matrix.shape[1], flat % matrix.shape[1]


def _collect(batches: list[dict[str, torch.Tensor]], best: dict[str, tuple[int, int]]) -> ResampledScores:
    """Per metric, the max over pairs and the best pair's score of every resample, from batches of score
    matrices name -> [B, La, Lb] in draw order."""
    maxima = {name: np.concatenate([b[name].flatten(1).amax(dim=1).cpu().numpy() for b in batches]) for name in best}
    at_best = {name: np.concatenate([b[name][:, i, j].cpu().numpy() for b in batches]) for name, (i, j) in best.items()}
    return ResampledScores(maxima=maxima, at_best=at_best)


def _in_batches(
    score: Callable[[list[np.ndarray]], dict[str, torch.Tensor]],
    draw: Callable[[], np.ndarray],
    *,
    count: int,
    batch: int,
    best: dict[str, tuple[int, int]],
    what: str,
    progress: Optional[ProgressCallback],
) -> ResampledScores:
    """`count` resamples, drawn one after another by `draw` and scored `batch` at a time by `score`, reporting
    progress as `what`."""
    batches = []
    done = 0
    while done < count:
        size = min(batch, count - done)
        batches.append(score([draw() for _ in range(size)]))
        done += size
        if progress is not None:
            progress(done, count, what)
    return _collect(batches, best)


def permutation_null(
    resampler: Resampler,
    *,
    permutations: int,
    best: dict[str, tuple[int, int]],
    rng: np.random.Generator,
    progress: Optional[ProgressCallback] = None,
) -> ResampledScores:
    """Scores under `permutations` random re-pairings of the rows (the second side reordered by
    `rng.permutation(N)`, one after another), from the state `resampler` holds."""
    device, num_rows = resampler.first.device, resampler.first.num_rows
    return _in_batches(
        lambda orders: resampler.permuted(torch.as_tensor(np.stack(orders), device=device)),
        lambda: rng.permutation(num_rows),
        count=permutations,
        batch=resampler.batch_size,
        best=best,
        what="permutation null",
        progress=progress,
    )


def subsample_scores(
    resampler: Resampler,
    *,
    subsamples: int,
    rows: int,
    best: dict[str, tuple[int, int]],
    rng: np.random.Generator,
    progress: Optional[ProgressCallback] = None,
) -> ResampledScores:
    """Scores on `subsamples` subsets of `rows` rows drawn without replacement (`rng.choice`, sorted)."""
    device, num_rows = resampler.first.device, resampler.first.num_rows
    return _in_batches(
        lambda subsets: resampler.restricted(torch.as_tensor(np.stack(subsets), device=device)),
        lambda: np.sort(rng.choice(num_rows, size=rows, replace=False)),
        count=subsamples,
        batch=resampler.batch_size,
        best=best,
        what="subsamples",
        progress=progress,
    )


def jackknife_interval(
    observed: float, resampled: np.ndarray, *, fraction: float, confidence: float
) -> tuple[float, float]:
    """Delete-d jackknife interval: observed + sqrt(f/(1-f)) * (quantiles of `resampled` [S] - their mean)."""
    scale = math.sqrt(fraction / (1.0 - fraction))
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1.0 - tail]) - resampled.mean()
    return observed + scale * float(low), observed + scale * float(high)


def calibrate(value: Score, *, null_mean: Optional[float]) -> Optional[Score]:
    """`value` (a max over layer pairs, or an array [...] of them) calibrated against the permutation null's mean
    of that max: (value - null_mean) / (1 - null_mean), 0 at what the max reaches by chance, 1 at perfect
    alignment; elementwise for an array. None when the null leaves nothing to calibrate against: `null_mean`
    None, NaN, or at or above 1 (the max reaches perfect alignment by chance)."""
    if null_mean is None or not null_mean < 1:
        return None
    return (value - null_mean) / (1 - null_mean)


def null_summary(observed: float, null_maxima: Optional[np.ndarray]) -> dict[str, Optional[float]]:
    """Null mean/std of the max, p-value, z-score and calibrated score of an `observed` max, given the
    null maxima [P] (all None without them)."""
    if null_maxima is None:
        return dict.fromkeys(("null_max_mean", "null_max_std", "p_value", "z_score", "calibrated_score"))
    count = len(null_maxima)
    mean = float(null_maxima.mean())
    std = float(null_maxima.std(ddof=1)) if count > 1 else 0.0
    reached = int((null_maxima >= observed - TIE_TOLERANCE * max(1.0, abs(observed))).sum())
    return {
        "null_max_mean": mean,
        "null_max_std": std,
        "p_value": (1 + reached) / (count + 1),
        "z_score": (observed - mean) / std if std > 0 else None,
        "calibrated_score": calibrate(observed, null_mean=mean),
    }


def interval_summary(
    observed: float, spread: Optional[ResampledScores], name: str, *, fraction: float, confidence: float
) -> dict[str, Optional[tuple[float, float]]]:
    """Jackknife intervals of the max and of the best pair's score of metric `name` (None without subsets)."""
    if spread is None:
        return {"max_interval": None, "best_pair_interval": None, "subsample_maxima": None}
    return {
        "max_interval": jackknife_interval(observed, spread.maxima[name], fraction=fraction, confidence=confidence),
        "best_pair_interval": jackknife_interval(
            observed, spread.at_best[name], fraction=fraction, confidence=confidence
        ),
        "subsample_maxima": spread.maxima[name],
    }


@dataclass(frozen=True)
class ControlComparison:
    """A model's calibrated score against a control's on the same rows: `difference` = model - control, with a
    paired jackknife interval over the shared subsamples (None without them); `above` when its low end is > 0."""

    model_calibrated: Optional[float]
    control_calibrated: Optional[float]
    difference: Optional[float]
    interval: Optional[tuple[float, float]]
    above: Optional[bool]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = None if self.interval is None else list(self.interval)
        return out


def compare_with_control(
    model: MetricReport, control: MetricReport, *, fraction: float, confidence: float
) -> ControlComparison:
    """Calibrated score of `model` minus that of `control` (one metric, the same text model, rows, seed and
    settings), with an interval from the per-subsample differences: subsample s is the same set of rows for
    both, so the interval is paired and narrower than two separate ones. Each side is calibrated against its
    own permutation null. `above`: the whole interval lies above 0 (at level `confidence`)."""
    if model.calibrated_score is None or control.calibrated_score is None:
        return ControlComparison(model.calibrated_score, control.calibrated_score, None, None, None)
    difference = model.calibrated_score - control.calibrated_score
    interval = None
    if model.subsample_maxima is not None and control.subsample_maxima is not None:
        a, b = np.asarray(model.subsample_maxima), np.asarray(control.subsample_maxima)
        if len(a) != len(b):
            raise InputError(
                f"{len(a)} and {len(b)} subsamples: a model and its control must be scored with the same settings"
            )
        model_side = calibrate(a, null_mean=model.null_max_mean)
        control_side = calibrate(b, null_mean=control.null_max_mean)
        # Both calibrated scores exist, so both null means passed the same guard.
        assert model_side is not None and control_side is not None
        per_subset = model_side - control_side
        interval = jackknife_interval(difference, per_subset, fraction=fraction, confidence=confidence)
    above = None if interval is None else bool(interval[0] > 0)
    return ControlComparison(model.calibrated_score, control.calibrated_score, difference, interval, above)


def _chance(
    name: str, *, first: ModalityState, pair: tuple[int, int], k: int, null_at_best: Optional[np.ndarray]
) -> tuple[Optional[float], ChanceSource]:
    """Chance level of metric `name` at the best `pair`, and where it comes from."""
    if name == "mutual_knn":
        return mutual_knn_chance(num_rows=first.num_rows, k=k), "exact"
    if name == "jaccard_knn":
        return jaccard_knn_chance(num_rows=first.num_rows, k=k), "exact"
    if name == "cycle_knn":
        lists = first.neighbours.indices[pair[0]].flatten()
        degrees = torch.bincount(lists, minlength=first.num_rows).cpu().numpy()
        return cycle_knn_chance(degrees, k=k), "exact"
    if null_at_best is not None:
        return float(null_at_best.mean()), "null"
    return None, "unavailable"


def score_alignment(
    vision: LayerInput,
    text: LayerInput,
    settings: Optional[AlignSettings] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    states: Optional[StateCache] = None,
    per_row: bool = False,
    **options: Any,
) -> AlignmentReport:
    """Alignment of all (vision layer, text layer) pairs with chance, permutation null and intervals.

    Inputs as `probe.align.engine.alignment_matrices` (vision [N, Lv, Dv], text [N, Lt, Dt] or layer
    sources). `settings` (`AlignSettings`; default PRH's) or any of its fields as keywords: besides the
    metric options, `permutations` (P) re-pairings give the null of the max over pairs; `subsamples` (S)
    subsets of `subsample_fraction` of the rows, without replacement, give intervals at level `confidence`
    for the max and for the best pair's score. 0 skips either step. `seed` fixes both (they draw from
    independent streams, so changing P leaves the subsets unchanged). `progress(done, total, what)` is
    called per layer and per batch of permutations and subsamples. `states`: a `probe.align.state.StateCache`
    shared by the pairs of a run, so that a model's per-layer work is done once for all its pairs. `per_row`:
    also each metric's per-row agreement at its best pair (`probe.align.rows`), in the report's `rows`.

    Returns an AlignmentReport (module docstring defines every field). Raises InputError for bad
    inputs or settings.
    """
    settings = AlignSettings.from_options(settings, **options)
    k, subsample_fraction, confidence = settings.k, settings.subsample_fraction, settings.confidence
    names = [spec.name for spec in metric_specs(settings.metrics)]
    num_rows = int(as_layer_source(vision, name="vision").num_rows)
    subset_rows = check_settings(settings, num_rows=num_rows)
    # On the blocked path, longer kNN lists let subsets find their neighbours without recomputing.
    spare = math.ceil(2 * k * (1 / subsample_fraction - 1)) + 10 if settings.subsamples else 0
    first, second = prepare_modalities(vision, text, settings, spare_neighbours=spare, progress=progress, states=states)
    observed = {name: matrix.cpu().numpy() for name, matrix in pair_matrices(first, second).items()}
    best = {name: best_pair(matrix) for name, matrix in observed.items()}
    null_stream, subset_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2))
    resampler = Resampler(first, second)
    null = None
    if settings.permutations:
        null = permutation_null(
            resampler, permutations=settings.permutations, best=best, rng=null_stream, progress=progress
        )
    spread = None
    if settings.subsamples:
        spread = subsample_scores(
            resampler,
            subsamples=settings.subsamples,
            rows=subset_rows,
            best=best,
            rng=subset_stream,
            progress=progress,
        )
    reports = {}
    for name in names:
        score = float(observed[name][best[name]])
        chance, source = _chance(
            name, first=first, pair=best[name], k=k, null_at_best=None if null is None else null.at_best[name]
        )
        reports[name] = MetricReport(
            metric=name,
            matrix=observed[name],
            best_score=score,
            best_pair=best[name],
            chance_level=chance,
            chance_source=source,
            **null_summary(score, None if null is None else null.maxima[name]),
            **interval_summary(score, spread, name, fraction=subsample_fraction, confidence=confidence),
        )
    rows = {name: row_agreement(first, second, metric=name, pair=best[name]) for name in names} if per_row else None
    sizes = ScoredSizes(
        num_rows=num_rows,
        vision_layers=first.num_layers,
        text_layers=second.num_layers,
        vision_clip=first.clip,
        text_clip=second.clip,
        subsample_rows=subset_rows,
        path=first.plan.path,
        device=str(first.device),
    )
    return AlignmentReport(metrics=reports, settings=settings, sizes=sizes, rows=rows)
