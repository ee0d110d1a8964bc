"""The settings of a feature extraction: one frozen object from the CLI flags down to `extract_features`.

Imports neither torch nor the models, so it is cheap to build before any work.

`ExtractSettings` is what `probe extract` parses its flags into, what `extract_features` takes (or builds from
its keyword arguments), what `probe align` / `linear` / `study` / `demo` find or make every cache with
(`probe.runs.inputs.ensure_cache`), and what their results JSON records (`record`). Which model (its revision and
random-init seed), which dataset and which pool are not settings but the call's: one command extracts several
models, each with its own pool, under one `ExtractSettings`. `check_extract_settings` is every check of it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Optional

from probe.datasets.images import DEFAULT_MAX_PIXELS, check_max_pixels
from probe.errors import InputError

Overwrite = Literal["never", "missing", "always"]
StoreDtype = Literal["float32", "float16"]


@dataclass(frozen=True)
class ExtractSettings:
    """How features are extracted and where they are cached.

    cache_dir: the cache folder (None: `probe.features.format.default_cache_dir()` when extracting).
    device: torch device name ("auto": resolved by `probe.devices.resolve_device`). dtype: the model's dtype
    ("auto": bfloat16 on GPU, float32 on CPU). batch_size: rows per forward pass (None: per device kind).
    limit: the first N rows of the dataset (None: all). layers: a layer spec (`probe.features.layers`) over the
    L+1 hidden states. overwrite: `never` (use an existing cache, error if none), `missing` (resume/complete),
    `always` (discard and redo). num_workers: image decoding processes (None: up to 4). trust_remote_code: allow
    model code from the hub. prompt: text template with `{caption}` (text models only). max_pixels: images whose
    header declares more pixels are refused by row before the model is loaded (probe.datasets.images).
    max_tokens: text batches are filled up to this many padded tokens (`plan_batches`) and `batch_size` rows
    (default `MAX_BUDGET_ROWS`); None: fixed batches of `batch_size` rows. Not the default on any device: the one
    H100 measurement (bench/results/gpu_bench.log) found no MFU gain from larger text batches. compile: compile
    the network's repeated blocks with `torch.compile` (`probe.models.loading.compile_blocks`); features equal
    eager ones to float rounding, and the first batch waits for compilation. store_dtype: `float32` or `float16`
    (half the disk; part of the key; readers return float32).
    """

    cache_dir: Optional[Path] = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: Optional[int] = None
    limit: Optional[int] = None
    layers: str = "all"
    overwrite: Overwrite = "missing"
    num_workers: Optional[int] = None
    trust_remote_code: bool = False
    prompt: Optional[str] = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_tokens: Optional[int] = None
    compile: bool = False
    store_dtype: StoreDtype = "float32"

    def __post_init__(self) -> None:
        # A str folder is accepted and stored as a Path, so settings compare by value.
        if self.cache_dir is not None and not isinstance(self.cache_dir, Path):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @classmethod
    def from_options(cls, settings: Optional["ExtractSettings"] = None, **options: Any) -> "ExtractSettings":
        """`settings` (default: the defaults) with the fields named in `options` replaced: what
        `extract_features(model=..., dataset=..., device="cpu")` does with its keyword arguments."""
        base = settings if settings is not None else cls()
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown extraction setting(s): {', '.join(unknown)}; see probe.features.settings.ExtractSettings"
            )
        return replace(base, **options)

    def record(self) -> dict[str, Any]:
        """The `extract` section of a results JSON: every field, `cache_dir` as a string. `store_dtype` only when
        it is not float32, so the records of runs that store float32 (all of them before it could be set here)
        keep their keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["cache_dir"] = str(self.cache_dir)
        if self.store_dtype == "float32":
            del out["store_dtype"]
        return out


def _check_prompt(prompt: Optional[str]) -> None:
    """InputError unless `prompt` is None or a template whose only field is `{caption}`."""
    if prompt is None:
        return
    if "{caption}" not in prompt:
        raise InputError(f"prompt={prompt!r} has no '{{caption}}' placeholder; e.g. prompt='A photo of {{caption}}'")
    try:
        prompt.format(caption="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"prompt={prompt!r} is not a valid template ({exc}); only '{{caption}}' may appear in braces"
        ) from None


def check_extract_settings(settings: ExtractSettings) -> None:
    """Every check of `settings` that needs neither the model nor the data, in the library's names
    (`batch_size=`; the CLI shows its flags). Raises InputError. (What depends on the model, such as a prompt
    given for a vision model, or on the data, such as a layer beyond the model's depth, is checked by
    `extract_features` once it knows them.)"""
    if settings.overwrite not in ("never", "missing", "always"):
        raise InputError(f"overwrite={settings.overwrite!r}: choose 'never', 'missing' or 'always'")
    if settings.batch_size is not None and settings.batch_size < 1:
        raise InputError(f"batch_size={settings.batch_size} must be at least 1")
    if settings.max_tokens is not None and settings.max_tokens < 1:
        raise InputError(f"max_tokens={settings.max_tokens} must be at least 1")
    if settings.store_dtype not in ("float32", "float16"):
        raise InputError(f"store_dtype={settings.store_dtype!r}: choose 'float32' or 'float16'")
    _check_prompt(settings.prompt)
    check_max_pixels(settings.max_pixels)
