"""`probe study`: a grid of runs declared in a TOML file (or a shipped preset), run into one study folder
and gathered into one report.

A study file declares vision models x text models x datasets x metrics x controls, optional linear probes,
and settings (see docs/results.md, "Studies", and the presets in probe/runs/presets/*.toml):

    name = "my-study"
    vision = ["webssl-dino300m-full2b-224", "dinov2-large"]
    text = ["llama3"]
    datasets = ["wit-1024"]
    metrics = ["mutual_knn", "cka", "unbiased_cka", "cknna"]   # default: these four
    controls = ["pixels-16", "random-init"]                       # default: none
    [probes]                                                      # optional
    labels = ["words"]          # label fields of the dataset, `words` or `chars`
    text = "llama3"             # ridge from each vision layer to this text model's features
    vision = ["dinov2-large"]   # default: every vision model and control of the study
    [settings]                  # optional; defaults as `probe align`
    k = 10
    permutations = 200
    subsamples = 100
    limit = 1024
    seed = 0
    pool_vision = "cls"
    pool_text = "mean"
    device = "auto"
    dtype = "auto"
    layers = "all"              # hidden states each cache keeps: all | -1 | 0,12,24 | ::4

`load_study(FILE | PRESET)` parses and checks it into a frozen `StudySpec` (unknown keys, wrong types, unknown
or wrong-modality models, unknown metrics or datasets: one InputError naming the file and key, before any
work; nothing touches the network). `run_study` runs it: one `probe align` run per dataset (every vision model
and control against every text model) and one `probe linear` run per (dataset, probed vision model), each
reusing feature caches and the score cache, so a rerun (or a run after a kill) does only what is missing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from probe.align.settings import AlignSettings
from probe.errors import InputError, ModelError
from probe.features.settings import ExtractSettings
from probe.progress import ProgressCallback

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
PRESET_SUFFIX = ".toml"

_TOP_KEYS = ("name", "description", "vision", "text", "datasets", "metrics", "controls", "probes", "settings")
_PROBE_KEYS = ("labels", "text", "vision")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# The keys of a study file's [settings] table, and the settings object each one sets (with the top-level
# `metrics`). `device` sets both the scoring's and the extraction's; `seed` the scoring's, which the probes take
# too (`StudySpec.linear_settings`).
SETTINGS_KEYS = (
    "k",
    "permutations",
    "subsamples",
    "limit",
    "seed",
    "pool_vision",
    "pool_text",
    "device",
    "dtype",
    "layers",
)
_ALIGN_KEYS = ("metrics", "k", "permutations", "subsamples", "seed", "device")
_EXTRACT_KEYS = ("limit", "device", "dtype", "layers")
_POOL_KEYS = ("pool_vision", "pool_text")
_INTEGER_KEYS = (("k", 1), ("permutations", 0), ("subsamples", 0), ("limit", 1), ("seed", 0))


@dataclass(frozen=True)
class StudySettings:
    """The settings every run of a study shares, as the objects its commands take: `align` scores every pair
    (the study's `metrics`, `k`, `permutations`, `subsamples`, `seed`, `device`), `extract` finds or makes every
    cache (`limit`: first N rows of each dataset, None: all; `device`, `dtype`, `layers`: the hidden states each
    cache keeps, 0 = embeddings; its `cache_dir` is the one the study runs with), and the probes take `align.seed`
    (`StudySpec.linear_settings`). `pool_vision`/`pool_text`: None = each model's default.

    A study file's keys are set with `with_keys` (each on every object that uses it) and read back as properties
    of the same names (`settings.k` is `settings.align.k`, `settings.limit` is `settings.extract.limit`)."""

    align: AlignSettings = AlignSettings()
    extract: ExtractSettings = ExtractSettings()
    pool_vision: Optional[str] = None
    pool_text: Optional[str] = None

    def with_keys(self, **keys: Any) -> "StudySettings":
        """These settings with the study-file keys in `keys` set: those of [settings] (`k=5, device="cpu"`) and
        the top-level `metrics`. Values are taken as given (`load_study` checks a file's); TypeError for any
        other name."""
        unknown = sorted(set(keys) - {*SETTINGS_KEYS, "metrics"})
        if unknown:
            raise TypeError(
                f"unknown study setting(s): {', '.join(unknown)}; the keys are metrics, {', '.join(SETTINGS_KEYS)}"
            )
        return replace(
            self,
            align=replace(self.align, **{k: v for k, v in keys.items() if k in _ALIGN_KEYS}),
            extract=replace(self.extract, **{k: v for k, v in keys.items() if k in _EXTRACT_KEYS}),
            **{k: v for k, v in keys.items() if k in _POOL_KEYS},
        )

    @property
    def k(self) -> int:
        return self.align.k

    @property
    def permutations(self) -> int:
        return self.align.permutations

    @property
    def subsamples(self) -> int:
        return self.align.subsamples

    @property
    def seed(self) -> int:
        return self.align.seed

    @property
    def limit(self) -> Optional[int]:
        return self.extract.limit

    @property
    def device(self) -> str:
        return self.extract.device

    @property
    def dtype(self) -> str:
        return self.extract.dtype

    @property
    def layers(self) -> str:
        return self.extract.layers


@dataclass(frozen=True)
class ProbeSpec:
    """The linear probes of a study: label fields and/or `words` / `chars`, and/or a ridge to `text`'s features, for
    each model of `vision` (empty: every vision model and control of the study). `layers`: the vision layers
    probed and `text_layer`: the ridge target (the `layers=`/`text_layer=` of linear probes; a study file keeps the
    defaults, a `probe linear` command line planned as a study sets them)."""

    labels: tuple[str, ...] = ()
    text: Optional[str] = None
    vision: tuple[str, ...] = ()
    layers: str = "all"
    text_layer: str = "-1"


@dataclass(frozen=True)
class StudySpec:
    """A study as declared: the grid and its settings (the grid's metrics are kept in `settings.align`, and read
    as `metrics`). `source` is the file it came from; `toml` its text, as read (copied into the study folder)."""

    name: str
    vision: tuple[str, ...]
    text: tuple[str, ...]
    datasets: tuple[str, ...]
    controls: tuple[str, ...] = ()
    probes: Optional[ProbeSpec] = None
    settings: StudySettings = StudySettings()
    description: str = ""
    source: str = ""
    toml: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        """The study's metrics (the file's top-level `metrics`), kept with the rest of the scoring settings."""
        return self.settings.align.metrics

    def linear_settings(self) -> Any:
        """The `probe.runs.linear.LinearSettings` of each probe run: the probes' labels and layers, the study's seed."""
        from probe.runs.linear import LinearSettings

        if self.probes is None:
            raise InputError(f"study {self.name!r} has no [probes]")
        return LinearSettings(
            labels=self.probes.labels,
            seed=self.settings.seed,
            probe_layers=self.probes.layers,
            text_layer=self.probes.text_layer,
        )

    def control_models(self) -> list[str]:
        """The control models the controls expand to (`random-init` -> `random-init:<each vision model>`)."""
        from probe.runs.controls import control_names

        names = control_names(self.controls, self.vision)
        return list(dict.fromkeys(c for cs in names.values() for c in cs if c not in self.vision))

    def probe_vision(self) -> list[str]:
        """The vision models probed: `probes.vision`, else every vision model and control."""
        if self.probes is None:
            return []
        return list(self.probes.vision) or [*self.vision, *self.control_models()]


def list_presets() -> dict[str, Path]:
    """Shipped preset name -> its TOML file."""
    return {p.name.removesuffix(PRESET_SUFFIX): p for p in sorted(PRESETS_DIR.glob(f"*{PRESET_SUFFIX}"))}


def preset_descriptions() -> dict[str, str]:
    """Preset name -> its one-line description."""
    return {name: load_study(path).description for name, path in list_presets().items()}


def load_study(target: str | Path) -> StudySpec:
    """The `StudySpec` of a study file, or of a shipped preset by name. InputError naming the file and the key
    for anything wrong in it."""
    presets = list_presets()
    path = Path(target).expanduser()
    if not path.is_file():
        if str(target) in presets:
            path = presets[str(target)]
        else:
            raise InputError(
                f"study {str(target)!r} is neither a TOML file nor a preset; presets: {', '.join(presets)}"
            )
    text, data = _read(path)
    return parse_study(data, source=path, text=text)


def preset_settings(name: str) -> StudySettings:
    """The settings of the shipped preset `name` (its [settings] and `metrics`), read and checked as `load_study`
    reads them but without resolving its models, so the command line can show them as flag defaults at start-up
    (`probe demo`)."""
    path = list_presets()[name]
    _, data = _read(path)
    top = _Reader(data, source=path, section="", allowed=_TOP_KEYS)
    return _settings(data, source=path, top=top, metrics=_metrics(top), controls=top.names("controls"))


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The text of the study file `path` and its parsed TOML (InputError naming the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read study file {path}: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


class _Reader:
    """Typed access to one table of the file, naming `<file>: [table] key` in every error."""

    def __init__(self, table: dict[str, Any], *, source: Path, section: str, allowed: Sequence[str]) -> None:
        self.table, self.source, self.section = table, source, section
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise InputError(
                f"{self.where(unknown[0])}: unknown key; the keys of {section or 'the top level'} are "
                f"{', '.join(allowed)}"
            )

    def where(self, key: str) -> str:
        return f"{self.source}: {self.section + '.' if self.section else ''}{key}"

    def names(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.table.get(key)
        if value is None:
            if required:
                raise InputError(f'{self.where(key)} is missing: give a list of names, e.g. {key} = ["..."]')
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputError(f"{self.where(key)} must be a list of names (strings), not {value!r}")
        names = tuple(v.strip() for v in value)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"{self.where(key)} names {', '.join(dupes)} more than once")
        if required and not names:
            raise InputError(f"{self.where(key)} is empty: give at least one name")
        return names

    def string(self, key: str, default: Optional[str]) -> Optional[str]:
        value = self.table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{self.where(key)} must be a string, not {value!r}")
        return value

    def integer(self, key: str, default: Optional[int], *, minimum: int) -> Optional[int]:
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{self.where(key)} = {value!r} must be an integer >= {minimum}")
        return value


def check_model(name: str, *, modality: str, where: str, base_dir: Path) -> str:
    """`name` checked offline: a registered model, a folder (relative to the study file's folder or the current
    one), a hub id (checked when run), or `random-init:` one of those, of `modality`. Returns the name to run."""
    from probe.models.names import hub_only, registered, resolve_model, split_twin

    prefix, base = split_twin(name)
    local = base_dir / base
    if registered(base) is None and not Path(base).expanduser().exists() and local.exists():
        base = str(local)
    elif hub_only(base):
        return prefix + base  # an unregistered hub id: its config is fetched when the study runs
    try:
        spec = resolve_model(prefix + base)
    except (ModelError, InputError) as exc:
        raise InputError(f"{where}: {exc}") from None
    if spec.modality != modality:
        raise InputError(
            f"{where}: {name!r} is a {spec.modality} model; list it under "
            f"{'vision' if spec.modality == 'vision' else 'text'} instead"
        )
    return prefix + base


def _dataset(name: str, *, where: str, base_dir: Path) -> str:
    from probe.datasets.catalog import DATASETS
    from probe.datasets.rendered import rendered_name, split_rendered

    inner = split_rendered(name)
    if inner is not None:  # rendered:<dataset>: its source, resolved as any dataset of the file
        return rendered_name(_dataset(inner, where=where, base_dir=base_dir))
    if name in DATASETS:
        return name
    for path in (Path(name).expanduser(), base_dir / name):
        if path.exists():
            return str(path)
    raise InputError(
        f"{where}: {name!r} is neither a registered dataset ({', '.join(DATASETS)}) nor an existing "
        "manifest file or folder"
    )


def _metrics(top: _Reader) -> tuple[str, ...]:
    """The file's top-level `metrics`, checked (empty when it names none: the default)."""
    from probe.align.specs import metric_specs

    metrics = top.names("metrics")
    if metrics:
        try:
            metric_specs(metrics)
        except InputError as exc:
            raise InputError(f"{top.where('metrics')}: {exc}") from None
    return metrics


def _settings(
    data: dict[str, Any], *, source: Path, top: _Reader, metrics: Sequence[str], controls: Sequence[str]
) -> StudySettings:
    """The file's [settings] table (and its `metrics`) checked and parsed into `StudySettings`; a key left out
    keeps the default of the object it sets. `controls`: the file's, which need permutations."""
    table = data.get("settings", {})
    if not isinstance(table, dict):
        raise InputError(f"{top.where('settings')} must be a table ([settings])")
    s = _Reader(table, source=source, section="settings", allowed=SETTINGS_KEYS)
    keys: dict[str, Any] = {"metrics": tuple(metrics)} if metrics else {}
    for key, minimum in _INTEGER_KEYS:
        if key in table:
            keys[key] = s.integer(key, None, minimum=minimum)
    for key in _POOL_KEYS:
        if key in table:
            keys[key] = s.string(key, None)
    for key in ("device", "dtype", "layers"):
        if s.string(key, None):  # an empty string is the default, as a key left out
            keys[key] = table[key]
    settings = StudySettings().with_keys(**keys)
    try:
        from probe.features.layers import parse_layers

        parse_layers(settings.layers, num_states=10_000, param="layers")  # the syntax; the range is checked per model
    except InputError as exc:
        raise InputError(f"{s.where('layers')}: {exc}") from None
    for key, modality, extra in (("pool_vision", "vision", ("both",)), ("pool_text", "text", ())):
        value = getattr(settings, key)
        if value is not None:
            from probe.models.spec import POOLS_BY_MODALITY

            allowed = (*POOLS_BY_MODALITY[modality], *extra)
            if value not in allowed:
                raise InputError(f"{s.where(key)} = {value!r}: choose one of {', '.join(allowed)}")
    if controls and settings.permutations == 0:
        raise InputError(
            f"{s.where('permutations')} = 0: controls are compared on calibrated scores, which need "
            "permutations above 0"
        )
    return settings


def parse_study(data: dict[str, Any], *, source: Path, text: str = "") -> StudySpec:
    """Check the parsed TOML `data` of `source` and build the `StudySpec` (see the module docstring)."""
    from probe.runs.controls import RANDOM_INIT

    base_dir = Path(source).parent
    top = _Reader(data, source=source, section="", allowed=_TOP_KEYS)
    name = top.string("name", Path(source).stem) or ""
    if not _NAME.match(name):
        raise InputError(
            f"{top.where('name')} = {name!r}: use letters, digits, '-', '_' or '.' (it names the study folder)"
        )
    vision = tuple(
        check_model(v, modality="vision", where=top.where("vision"), base_dir=base_dir)
        for v in top.names("vision", required=True)
    )
    textm = tuple(
        check_model(t, modality="text", where=top.where("text"), base_dir=base_dir)
        for t in top.names("text", required=True)
    )
    datasets = tuple(
        _dataset(d, where=top.where("datasets"), base_dir=base_dir) for d in top.names("datasets", required=True)
    )
    metrics = _metrics(top)
    controls = tuple(
        c if c == RANDOM_INIT else check_model(c, modality="vision", where=top.where("controls"), base_dir=base_dir)
        for c in top.names("controls")
    )
    settings = _settings(data, source=source, top=top, metrics=metrics, controls=controls)

    probes = None
    if "probes" in data:
        if not isinstance(data["probes"], dict):
            raise InputError(f"{top.where('probes')} must be a table ([probes])")
        p = _Reader(data["probes"], source=source, section="probes", allowed=_PROBE_KEYS)
        probe_text = p.string("text", None)
        if probe_text is not None:
            probe_text = check_model(probe_text, modality="text", where=p.where("text"), base_dir=base_dir)
        probes = ProbeSpec(
            labels=p.names("labels"),
            text=probe_text,
            vision=tuple(
                check_model(v, modality="vision", where=p.where("vision"), base_dir=base_dir) for v in p.names("vision")
            ),
        )
        if not probes.labels and probes.text is None:
            raise InputError(
                f"{top.where('probes')}: nothing to probe; give labels (label fields, 'words' or 'chars') and/or text"
            )
    return StudySpec(
        name=name,
        vision=vision,
        text=textm,
        datasets=datasets,
        controls=controls,
        probes=probes,
        settings=settings,
        description=top.string("description", "") or "",
        source=str(source),
        toml=text,
    )


@dataclass
class StudyRun:
    """What `run_study` produced: the study folder, its align and linear runs, and the report files."""

    spec: StudySpec
    folder: Path
    align: dict[str, Any] = field(default_factory=dict)  # dataset -> probe.runs.align.AlignRun
    linear: dict[tuple[str, str], Any] = field(default_factory=dict)  # (dataset, vision) -> LinearRun
    report: Any = None  # probe.runs.report.ReportFiles


def dataset_folder(dataset: str) -> str:
    """The study sub-folder of a dataset: its registered name, or a manifest path made into one name."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", dataset.strip("/")).strip("-")[-80:] or "dataset"


def run_study(
    spec: StudySpec, *, cache_dir: Path, output: Path, progress: Optional[ProgressCallback] = None
) -> StudyRun:
    """Run every part of `spec` into a new study folder `<output>/study-<name>-<UTC time>/` (`<output>/latest`
    points at it once complete), then write the report there.

    The folder holds `study.toml` (the spec as read), one sub-folder per dataset with its `align-*/` run and
    its `linear-*/` runs, and the report (`report.html`, `report.md`, `results.csv`, `probes.csv`, `figures/`).
    Feature caches and scores come from `cache_dir` when they exist, so a rerun (after a kill, or a change to
    part of the grid) computes only what is missing.
    """
    from probe.align.engine import state_cache_budget
    from probe.align.state import StateCache
    from probe.devices import resolve_device
    from probe.errors import write_atomic
    from probe.log import logger
    from probe.runs.align import run_align
    from probe.runs.checks import check_run_request
    from probe.runs.linear import run_linear
    from probe.runs.outputs import new_run_folder, point_latest
    from probe.runs.report import write_report

    check_run_request(cache_dir=Path(cache_dir), output=Path(output), metrics=spec.metrics)
    s = spec.settings
    folder = new_run_folder(Path(output), f"study-{spec.name}")
    write_atomic(folder / "study.toml", spec.toml or f"# {spec}\n")
    run = StudyRun(spec, folder)
    options = replace(s.extract, cache_dir=Path(cache_dir))
    states = StateCache(budget_bytes=state_cache_budget(resolve_device(s.align.device)))
    for dataset in spec.datasets:
        where = folder / dataset_folder(dataset)
        logger.info(
            "study %s: aligning %d vision models (+%d controls) with %d text models on %s",
            spec.name,
            len(spec.vision),
            len(spec.control_models()),
            len(spec.text),
            dataset,
        )
        run.align[dataset] = run_align(
            vision=spec.vision,
            text=spec.text,
            dataset=dataset,
            settings=s.align,
            options=options,
            output=where,
            pool_vision=s.pool_vision,
            pool_text=s.pool_text,
            controls=spec.controls,
            progress=progress,
            states=states,
            log_rows=True,
        )
        if spec.probes is not None:
            for vision in spec.probe_vision():
                run.linear[(dataset, vision)] = run_linear(
                    vision=vision,
                    dataset=dataset,
                    text=spec.probes.text,
                    options=options,
                    output=where,
                    settings=spec.linear_settings(),
                    pool_vision=s.pool_vision,
                    pool_text=s.pool_text,
                    progress=progress,
                )
    run.report = write_report([folder], output=folder)
    point_latest(Path(output), folder)
    return run
