"""Features: model hidden states over a dataset, pooled and cached in HDF5, read back layer by layer.

`extract` runs a model over a dataset into a cache as its `settings` say (`ExtractSettings`), `writer` writes it
crash-safely, `cache` reads it (`FeatureCache`), `format` names it (the key, the path, the checksums), `inventory`
lists and checks what a cache folder holds, `layers` parses `--layers` specs.
"""

from probe.features.cache import FeatureCache, check_paired
from probe.features.extract import ExtractResult, Shard, extract_features
from probe.features.format import default_cache_dir
from probe.features.inventory import list_entries, verify_cache
from probe.features.layers import parse_layers
from probe.features.settings import ExtractSettings

__all__ = [
    "ExtractResult",
    "ExtractSettings",
    "FeatureCache",
    "Shard",
    "check_paired",
    "default_cache_dir",
    "extract_features",
    "list_entries",
    "parse_layers",
    "verify_cache",
]
