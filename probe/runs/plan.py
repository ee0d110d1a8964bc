"""`probe plan`: what a study would run and cost, from registry facts and the cache folder alone.

No model is loaded and nothing touches the network: `plan_study` reads the registry (`probe.models.names`:
widths, depths, parameters, `gated`) and, for a dataset already prepared in the cache, its manifest (to
compute the exact feature-cache keys with `probe.features.format.build_key` and look for the files at
`cache_path`). A dataset not yet downloaded has no caches yet, so every cache is new.

Disk per new cache = N rows x stored hidden states x width x 4 bytes (float32) x pools. Extraction time is
estimated from this machine's MEASURED rate when the cache folder holds records of extractions run here on the
same device kind and dtype (`probe.features.rates`; `measured_rate`): total model FLOPs over total wall seconds
less model loading, so decoding, forward passes and writing are folded into one effective FLOP/s. Extractions
whose remaining seconds are under `MIN_MEASURED_SECONDS` are left out: too short to say what a study's take.
Without usable records, and always for alignment, time comes from ASSUMED rates per device kind
(`ASSUMED_RATES`). The plan says which, and why.

The plan is data (`StudyPlan`); its text, what `probe plan` and the dry runs print, is
`probe.report.plan_text.format_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from probe.report.plan_text import format_plan
from probe.runs.study import StudySettings, StudySpec

# Assumed throughputs, per device kind. Forward passes: cuda from bench/results/gpu_bench.log (H100, bf16: ~33% of
# 989 TFLOP/s), cpu and mps rough guesses (about 0.5 / 5 TFLOP/s float32). Cache writes through h5py assumed at
# 50 MB/s (bench/results/h200-2026-12-04/gpu_e2e.log measured about 100 MB/s on an H200). Alignment, per layer
# pair at N = 1024 with 4 metrics: the score (reading, preprocessing and kernels included) and each resample of
# the null and the intervals, which reuse the score's state (probe.align.resample); cuda from
# bench/results/h200-2026-12-04/bench_calibration_gpu.log at PRH's shape, cpu from bench/bench_calibration.py at
# the demo's shape on a 2-core machine, mps a guess between the two.
TEXT_TOKENS = 32  # assumed tokens per caption (PRH's wit-1024 captions are a sentence or two)
# A recorded extraction with fewer seconds than this after model loading is left out of the measured rate: its
# fixed costs (dataset hashing, assembly, the first batch's warm-up) say little about a real study's throughput.
MIN_MEASURED_SECONDS = 10.0


@dataclass(frozen=True)
class AssumedRates:
    """How fast a device kind is assumed to be (not measured here)."""

    forward_tflops: float  # effective model FLOP/s in the forward pass, in TFLOP/s
    write_mb_s: float  # cache writes, MB/s
    align_unit_s: float  # seconds per layer pair for the score, at N=1024 with 4 metrics
    resample_unit_s: float  # seconds per layer pair for each permutation or subsample, likewise
    source: str


ASSUMED_RATES: dict[str, AssumedRates] = {
    "cuda": AssumedRates(300.0, 50.0, 4e-4, 4e-5, "H100/H200 benchmarks in bench/results"),
    "mps": AssumedRates(5.0, 50.0, 1.5e-3, 2e-4, "a guess"),
    "cpu": AssumedRates(0.5, 50.0, 2.5e-3, 1.2e-4, "a guess for forward passes, 2-core benchmarks for alignment"),
}


@dataclass(frozen=True)
class MeasuredRate:
    """The effective extraction speed of this machine on one device kind and dtype, from recorded extractions:
    their model FLOPs (the same count `plan_study` uses) over their wall seconds (model loading excluded,
    decoding and writing included). `flops_per_s` is None when no record is usable; the counts say why."""

    device_kind: str
    dtype: str
    flops_per_s: Optional[float]
    extractions: int  # records used
    seconds: float  # their wall seconds, together
    short: int = 0  # records left out as shorter than MIN_MEASURED_SECONDS
    unsized: int = 0  # records left out as their model's size is not in the registry (or it has no forward pass)
    min_seconds: float = MIN_MEASURED_SECONDS  # the threshold `short` records fell under

    def extract_seconds(self, flops: float) -> float:
        assert self.flops_per_s is not None
        return flops / self.flops_per_s


@dataclass(frozen=True)
class CachePlan:
    """One feature cache the study needs: where it stands and what a new one costs."""

    model: str
    role: str  # vision | control | text | probe
    modality: str
    dataset: str
    rows: int
    states: Optional[int]  # stored hidden states (L+1 with layers=all); None when unknown before loading
    width: Optional[int]
    pools: tuple[str, ...]
    params_m: Optional[float]
    gated: bool
    exists: bool
    path: Optional[Path]
    bytes: Optional[int]  # disk of the cache (None when sizes are unknown)
    seconds: Optional[float]  # estimated extraction time when new (measured rate, else assumed)
    stored: Optional[tuple[int, ...]] = None  # the hidden states it stores (None when unknown before loading)


@dataclass(frozen=True)
class ProbePlan:
    """One `probe linear` run of the study: the hidden states its probes read and its ridge target."""

    dataset: str
    vision: str
    states: Optional[tuple[int, ...]]  # vision hidden states probed (None: unknown before loading)
    stored: Optional[int]  # how many the vision cache stores
    text: Optional[str]  # the ridge target's text model (None: labels only)
    text_state: Optional[int]  # its hidden state the ridge predicts (None: no ridge, or unknown before loading)


@dataclass(frozen=True)
class DatasetPlan:
    """A dataset of the study: N after the limit, and whether it is prepared in the cache."""

    name: str
    rows: Optional[int]
    prepared: bool
    note: str


@dataclass
class StudyPlan:
    """What `run_study` would do, with its costs (`probe.report.plan_text.format_plan` writes it as text)."""

    spec: StudySpec
    device_kind: str
    dtype: str
    measured: Optional[MeasuredRate] = None  # flops_per_s None (or no plan of it): extraction from ASSUMED_RATES
    datasets: list[DatasetPlan] = field(default_factory=list)
    caches: list[CachePlan] = field(default_factory=list)
    model_pairs: int = 0
    layer_pairs: int = 0
    align_seconds: float = 0.0
    probes: list[ProbePlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def probe_runs(self) -> int:
        return len(self.probes)

    @property
    def new(self) -> list[CachePlan]:
        return [c for c in self.caches if not c.exists]

    @property
    def new_bytes(self) -> int:
        return sum(c.bytes or 0 for c in self.new)

    @property
    def extract_seconds(self) -> float:
        return sum(c.seconds or 0.0 for c in self.new)

    @property
    def gated(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.caches if c.gated))

    @property
    def assumed(self) -> AssumedRates:
        """The rates assumed for this plan's device kind (a kind without its own: the CPU's)."""
        return ASSUMED_RATES.get(self.device_kind, ASSUMED_RATES["cpu"])


def _device(settings: Any) -> tuple[str, str]:
    """(device kind, dtype name) the study would run with. `auto` is resolved on this machine; a named device
    is taken at its word (a GPU study can be planned on a laptop)."""
    from probe.devices import DTYPE_NAMES, auto_dtype, resolve_device

    kind = resolve_device("auto").type if settings.device == "auto" else str(settings.device).split(":")[0].lower()
    dtype = auto_dtype(kind) if settings.dtype == "auto" else DTYPE_NAMES.get(settings.dtype.lower(), settings.dtype)
    return kind, str(dtype).removeprefix("torch.")


def _open_dataset(name: str, *, cache_dir: Path, limit: Optional[int]) -> tuple[DatasetPlan, Any]:
    """The dataset plan and, when its rows are on disk (prepared in the cache, or a manifest path), the
    PairedDataset after `limit` (None otherwise). Never downloads or renders anything."""
    from probe.datasets.catalog import DATASETS
    from probe.datasets.manifest import load_manifest
    from probe.datasets.rendered import rendered_folder, rendered_name, split_rendered

    inner = split_rendered(name)
    if inner is not None:  # drawn from the whole source, found by the source's identity
        source_plan, source = _open_dataset(inner, cache_dir=cache_dir, limit=None)
        manifest = None if source is None else rendered_folder(source, datasets_dir=Path(cache_dir) / "datasets")
        if manifest is not None and (manifest / "manifest.jsonl").is_file():
            data = load_manifest(manifest / "manifest.jsonl", name=rendered_name(source.name)).head(limit)
            return DatasetPlan(name, len(data), True, f"drawn in {manifest}"), data
        rows = source_plan.rows if limit is None or source_plan.rows is None else min(limit, source_plan.rows)
        return DatasetPlan(name, rows, False, f"not drawn yet (from {inner}'s captions): every cache is new"), None
    spec = DATASETS.get(name)
    if spec is None:
        data = load_manifest(Path(name)).head(limit)
        return DatasetPlan(name, len(data), True, "local manifest"), data
    manifest = Path(cache_dir) / "datasets" / name / "manifest.jsonl"
    if manifest.is_file():
        data = load_manifest(manifest, name=name).head(limit)
        return DatasetPlan(name, len(data), True, f"prepared in {manifest.parent}"), data
    rows = spec.rows if limit is None or spec.rows is None else min(limit, spec.rows)
    how = "rendered" if spec.source == "package" else "downloaded"
    return DatasetPlan(name, rows, False, f"not {how} yet ({spec.needs}): every cache is new"), None


def _tokens(spec: Any) -> int:
    """Tokens one row costs the model: patches + CLS for a ViT, TEXT_TOKENS for a caption."""
    if spec.modality == "text":
        return TEXT_TOKENS
    if spec.image_size and spec.patch_size:
        return (spec.image_size // spec.patch_size) ** 2 + 1
    return 257


def _flops(spec: Any, rows: int) -> Optional[float]:
    """Forward-pass FLOPs of `rows` rows through `spec`: 2 x parameters x tokens per row (None: size unknown)."""
    return None if spec.params_m is None else 2 * spec.params_m * 1e6 * _tokens(spec) * rows


def measured_rate(cache_dir: Path, *, device_kind: str, dtype: str) -> MeasuredRate:
    """This machine's effective extraction rate on `device_kind` in `dtype`, from the extraction records in
    `cache_dir` (`probe.features.rates`) of this host (`flops_per_s` None when no record is usable). Left out:
    records shorter than MIN_MEASURED_SECONDS, and those of models whose size the registry does not give (local
    folders, hub ids) or that have no forward pass (pixels), as their FLOPs cannot be counted. Reads no model
    and no network."""
    import platform

    from probe.features.rates import read_extractions
    from probe.models.names import hub_only, resolve_model

    flops = seconds = 0.0
    used = short = unsized = 0
    for record in read_extractions(cache_dir, host=platform.node()):
        if record.device_kind != device_kind or record.dtype != dtype:
            continue
        working = record.seconds - record.load_seconds
        if working < MIN_MEASURED_SECONDS:
            short += 1
            continue
        try:
            spec = None if hub_only(record.model) else resolve_model(record.model)
        except Exception:  # a folder since removed, a name no longer registered: its size is unknown
            spec = None
        count = _flops(spec, record.rows) if spec is not None else None
        if not count:
            unsized += 1
            continue
        flops, seconds, used = flops + count, seconds + working, used + 1
    return MeasuredRate(device_kind, dtype, flops / seconds if used else None, used, seconds, short, unsized)


def _cache_plan(
    name: str,
    role: str,
    dataset: DatasetPlan,
    data: Any,
    *,
    pool: Optional[str],
    dtype: str,
    layers_spec: str,
    cache_dir: Path,
    rates: AssumedRates,
    measured: Optional[MeasuredRate],
) -> CachePlan:
    from probe.features.extract import resolve_pools
    from probe.features.format import build_key, cache_path
    from probe.features.layers import parse_layers
    from probe.models.names import hub_only, resolve_model

    try:
        spec = resolve_model(name) if not hub_only(name) else None
    except Exception:  # a folder that vanished since the study was parsed: the run will say so
        spec = None
    if spec is None:
        return CachePlan(
            name, role, "?", dataset.name, dataset.rows or 0, None, None, (), None, False, False, None, None, None
        )
    pools = resolve_pools(pool, modality=spec.modality, default=spec.default_pool)
    layers = parse_layers(layers_spec, num_states=spec.num_layers + 1) if spec.num_layers is not None else None
    states = len(layers) if layers is not None else None
    path, exists = None, False
    if data is not None and layers is not None:
        key = build_key(spec=spec, dataset=data, pools=pools, layers=layers, prompt=None, dtype=dtype)
        path = cache_path(cache_dir, key)
        exists = path.is_file()
    rows = dataset.rows or 0
    size = rows * states * spec.hidden_size * 4 * len(pools) if states and spec.hidden_size else None
    seconds, flops = None, _flops(spec, rows)
    if flops is not None:
        seconds = (
            measured.extract_seconds(flops)
            if measured is not None and measured.flops_per_s is not None
            else flops / (rates.forward_tflops * 1e12) + (size or 0) / (rates.write_mb_s * 1e6)
        )
    return CachePlan(
        spec.alias if spec.source != "local" else name,
        role,
        spec.modality,
        dataset.name,
        rows,
        states,
        spec.hidden_size,
        tuple(pools),
        spec.params_m,
        bool(spec.gated or (spec.base and spec.base.gated)),
        exists,
        path,
        size,
        seconds,
        tuple(layers) if layers is not None else None,
    )


def _alias(name: str) -> str:
    """The registered alias `name` resolves to (`random-init:tiny-ssl-vit` -> `tiny-random-vit`), else `name`."""
    from probe.models.names import hub_only, resolve_model

    try:
        return name if hub_only(name) else resolve_model(name).alias
    except Exception:  # a folder that vanished: the run will say so
        return name


def plan_study(spec: StudySpec, *, cache_dir: Path) -> StudyPlan:
    """The plan of `spec` against the caches in `cache_dir` (see the module docstring)."""
    s = spec.settings
    kind, dtype = _device(s)
    measured = measured_rate(Path(cache_dir), device_kind=kind, dtype=dtype)
    plan = StudyPlan(spec, kind, dtype, measured)
    rates = plan.assumed
    controls = spec.control_models()
    roles = [
        *((v, "vision") for v in spec.vision),
        *((c, "control") for c in controls),
        *((t, "text") for t in spec.text),
    ]
    if spec.probes is not None:  # models probed but not aligned (a twin counts under its registered name)
        listed = {_alias(name) for name, _ in roles}
        roles += [(v, "probe") for v in spec.probe_vision() if _alias(v) not in listed]
        if spec.probes.text and _alias(spec.probes.text) not in listed:
            roles.append((spec.probes.text, "probe"))
    for name in spec.datasets:
        dataset, data = _open_dataset(name, cache_dir=Path(cache_dir), limit=s.limit)
        plan.datasets.append(dataset)
        caches = [
            _cache_plan(
                m,
                role,
                dataset,
                data,
                dtype=dtype,
                layers_spec=s.layers,
                cache_dir=Path(cache_dir),
                rates=rates,
                measured=measured,
                pool=s.pool_text
                if role == "text" or (role == "probe" and m == (spec.probes and spec.probes.text))
                else s.pool_vision,
            )
            for m, role in roles
        ]
        plan.caches += caches
        vis = [c for c in caches if c.role in ("vision", "control")]
        txt = [c for c in caches if c.role == "text"]
        pairs = [(v, t) for v in vis for t in txt] + [(a, b) for i, a in enumerate(txt) for b in txt[i + 1 :]]
        plan.model_pairs += len(pairs)
        layer_pairs = sum((v.states or 0) * len(v.pools) * (t.states or 0) * len(t.pools) for v, t in pairs)
        plan.layer_pairs += layer_pairs
        scale = ((dataset.rows or 1024) / 1024) ** 2 * len(spec.metrics) / 4
        resamples = s.permutations + s.subsamples
        plan.align_seconds += layer_pairs * scale * (rates.align_unit_s + resamples * rates.resample_unit_s)
        if spec.probes is not None:
            by_name = {_alias(m): c for (m, _), c in zip(roles, caches)}
            target = by_name.get(_alias(spec.probes.text)) if spec.probes.text else None
            plan.probes += [_probe_plan(spec.probes, by_name[_alias(v)], target) for v in spec.probe_vision()]
    unknown = [c.model for c in plan.caches if c.states is None]
    if unknown:
        plan.notes.append(f"sizes unknown until loaded (not registered): {', '.join(dict.fromkeys(unknown))}")
    return plan


def _probe_plan(probes: Any, vision: CachePlan, text: Optional[CachePlan]) -> ProbePlan:
    """What one linear run of `probes` reads from the `vision` cache and its ridge target in the `text` cache,
    resolved as `run_linear` resolves them (an impossible `layers`/`text_layer` fails here as it would there)."""
    from probe.runs.linear import ridge_position, stored_positions

    states = None
    if vision.stored is not None:
        states = tuple(vision.stored[p] for p in stored_positions(list(vision.stored), probes.layers, param="layers"))
    text_state = None
    if text is not None and text.stored is not None:
        text_state = text.stored[ridge_position(list(text.stored), probes.text_layer)]
    return ProbePlan(
        vision.dataset,
        vision.model,
        states,
        len(vision.stored) if vision.stored is not None else None,
        text.model if text is not None else probes.text,
        text_state,
    )


def print_flags_plan(
    *, command: str, vision: Any, text: Any, dataset: str, controls: Any, cache_dir: Path, settings: StudySettings
) -> str:
    """The plan text of a `probe align` command line (its dry run): its flags as a one-dataset study, whose
    `settings` are the command's own (its `AlignSettings`, `ExtractSettings` and pools)."""
    from probe.runs.controls import RANDOM_INIT
    from probe.runs.study import StudySpec, check_model

    here = Path.cwd()
    vision = [check_model(v, modality="vision", where="vision", base_dir=here) for v in vision]
    text = [check_model(t, modality="text", where="text", base_dir=here) for t in text]
    controls = [
        c if c == RANDOM_INIT else check_model(c, modality="vision", where="controls", base_dir=here) for c in controls
    ]
    spec = StudySpec(
        name=command,
        source=f"probe {command} flags",
        vision=tuple(vision),
        text=tuple(text),
        datasets=(str(dataset),),
        controls=tuple(controls),
        settings=settings,
    )
    return format_plan(plan_study(spec, cache_dir=cache_dir))


def print_linear_plan(
    *,
    vision: str,
    dataset: str,
    labels: Any,
    text: Optional[str],
    cache_dir: Path,
    probe_layers: str = "all",
    text_layer: str = "-1",
    **settings: Any,
) -> str:
    """The plan text of a `probe linear` command line (its dry run): its flags as a one-dataset study of probes
    only (no alignment), so the caches, disk, gated models and time come from `plan_study` like any study's.
    `settings` are study-file keys (limit, seed, pool_vision, pool_text, device, dtype); the caches store
    every hidden state, as `probe linear` extracts them."""
    from probe.runs.linear import check_request
    from probe.runs.study import ProbeSpec, StudySettings, StudySpec, check_model

    here = Path.cwd()
    name = check_request(vision=vision, labels=tuple(labels), text=text)
    probes = ProbeSpec(
        labels=tuple(labels),
        vision=(check_model(name, modality="vision", where="vision", base_dir=here),),
        text=check_model(text, modality="text", where="text", base_dir=here) if text is not None else None,
        layers=probe_layers,
        text_layer=text_layer,
    )
    spec = StudySpec(
        name="linear",
        source="probe linear flags",
        vision=(),
        text=(),
        datasets=(str(dataset),),
        probes=probes,
        settings=StudySettings().with_keys(metrics=(), **settings),
    )
    return format_plan(plan_study(spec, cache_dir=cache_dir))
