"""probe: how much language-related structure emerges in vision models trained without text.

The pipeline reads one way, and the folders show it:

    datasets/ -> models/ -> features/ (HDF5 cache) -> align/ , linear/ -> results.py -> report/ ;
    runs/ ; cli/ (the command line)

This face holds the version, the errors, and lazy re-exports of the entry points (nothing heavy is imported
until a name is used, so `import probe` stays cheap). See docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from probe.errors import CacheError, InputError, ModelError, ProbeError  # noqa: E402

# name -> "module:attribute", imported on first use (the lm-eval registry pattern).
_ENTRY_POINTS = {
    "load_dataset": "probe.datasets:load_dataset",
    "list_datasets": "probe.datasets:list_datasets",
    "resolve_model": "probe.models:resolve_model",
    "list_models": "probe.models:list_models",
    "load_model": "probe.models.loading:load_model",
    "extract_features": "probe.features.extract:extract_features",
    "ExtractSettings": "probe.features.settings:ExtractSettings",
    "FeatureCache": "probe.features.cache:FeatureCache",
    "AlignSettings": "probe.align.settings:AlignSettings",
    "alignment_matrices": "probe.align.engine:alignment_matrices",
    "score_alignment": "probe.align.stats:score_alignment",
    "probe_layers": "probe.linear.sweep:probe_layers",
    "run_align": "probe.runs.align:run_align",
    "run_linear": "probe.runs.linear:run_linear",
    "run_demo": "probe.runs.demo:run_demo",
    "load_results": "probe.report.tables:load",
    "load_probes": "probe.report.tables:load_probes",
    "load_rows": "probe.report.rows:load_rows",
    "explain": "probe.report.explain:explain",
}

__all__ = ["__version__", "ProbeError", "InputError", "ModelError", "CacheError", *_ENTRY_POINTS]


def __getattr__(name: str) -> Any:
    target = _ENTRY_POINTS.get(name)
    if target is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    import importlib

    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)
