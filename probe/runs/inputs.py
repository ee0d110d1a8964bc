"""Getting paired feature caches for the analysis commands, extracting whatever is missing first.

`probe align`, `probe linear` and `probe demo` all start the same way: for each requested model, find
the complete cache for (model, dataset, pooling, ...) or extract it, then check that every cache holds
the same rows in the same order, all under one `probe.features.settings.ExtractSettings` (the command's
`probe extract` flags).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from probe.datasets import PairedDataset, load_dataset
from probe.errors import InputError
from probe.features.cache import FeatureCache, check_paired
from probe.features.settings import ExtractSettings
from probe.progress import ProgressCallback


def split_models(value: str | Sequence[str], *, param: str) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c']; InputError naming `param` when empty or repeated."""
    items = [value] if isinstance(value, str) else list(value)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not names:
        raise InputError(f"{param}= needs at least one name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{param}= names {', '.join(dupes)} more than once")
    return names


def open_dataset(dataset: str | Path | PairedDataset, options: ExtractSettings) -> PairedDataset:
    """The dataset with `options.limit` applied (registered datasets are prepared in the cache once)."""
    if isinstance(dataset, PairedDataset):
        return dataset.head(options.limit)
    return load_dataset(dataset, cache_dir=options.cache_dir, limit=options.limit)


def ensure_cache(
    model: str,
    data: PairedDataset,
    *,
    pool: Optional[str],
    options: ExtractSettings,
    progress: Optional[ProgressCallback] = None,
    modality: Optional[str] = None,
) -> FeatureCache:
    """The complete cache of `model` on `data` (extracted now if missing), checked to be of `modality`; a name
    imported with `probe cache import` gives its imported cache (`probe.features.imports.find_imported`)."""
    from probe.features.extract import extract_features
    from probe.features.imports import find_imported

    # A name given to `probe cache import` is not in the registry: its cache is found by name in the cache folder.
    imported = find_imported(options.cache_dir, model=model, dataset=data, modality=modality, pool=pool)
    if imported is not None:
        return FeatureCache(imported, model=model)
    if modality != "text":  # a command's prompt and token budget are for its text models; a vision model refuses them
        options = replace(options, prompt=None, max_tokens=None)
    result = extract_features(model=model, dataset=data, settings=options, pool=pool, progress=progress)
    cache = result.open()
    if not result.reused:
        from probe.log import logger

        logger.info("extracted %s on %s: %d rows in %.1f s", model, data.name, result.rows_extracted, result.seconds)
    if modality is not None and cache.modality != modality:
        raise InputError(f"{modality}={model!r} is a {cache.modality} model; pass a {modality} model there")
    return cache


def ensure_paired(caches: Sequence[FeatureCache]) -> None:
    """CacheError unless every cache holds the same rows as the first, in the same order."""
    for other in caches[1:]:
        check_paired(caches[0], other)
