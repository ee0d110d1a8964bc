"""Features: model hidden states over a dataset, pooled and cached in HDF5, read back layer by layer.

`extract` runs a model over a dataset into a cache as its `settings` say (`ExtractSettings`), `writer` writes it
crash-safely, `cache` reads it (`FeatureCache`), `format` names it (the key, the path, the checksums), `inventory`
lists and checks what a cache folder holds, `layers` parses layer specs (`layers=`).

The names below are imported on first use, so `from probe.features.settings import ExtractSettings` stays cheap
(no numpy, no torch) for the CLI.
"""

from typing import Any

_FACE = {
    "ExtractResult": "probe.features.extract",
    "ExtractSettings": "probe.features.settings",
    "FeatureCache": "probe.features.cache",
    "Shard": "probe.features.extract",
    "check_paired": "probe.features.cache",
    "default_cache_dir": "probe.features.format",
    "extract_features": "probe.features.extract",
    "list_entries": "probe.features.inventory",
    "parse_layers": "probe.features.layers",
    "verify_cache": "probe.features.inventory",
}

__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'probe.features' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
