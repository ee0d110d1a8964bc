"""What is under a cache folder, and whether each file is sound: `probe cache ls / verify / rm`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.errors import CacheError
from probe.features.cache import FeatureCache
from probe.features.format import CACHE_SUFFIX, layer_checksum
from probe.features.writer import PartialWriter


@dataclass(frozen=True)
class CacheEntry:
    """A file found under a cache folder: complete caches and unfinished `.partial` folders."""

    path: Path
    complete: bool
    model: str
    dataset: str
    modality: str
    pools: tuple[str, ...]
    rows: int
    rows_written: int
    layers: int
    size_bytes: int


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every feature cache under `cache_dir`, complete or partial, sorted by path."""
    root = Path(cache_dir) / "features"
    entries: list[CacheEntry] = []
    if not root.is_dir():
        return entries
    for path in sorted(root.rglob(f"*{CACHE_SUFFIX}")):
        try:
            c = FeatureCache(path)
        except CacheError:
            entries.append(CacheEntry(path, False, "?", "?", "?", (), 0, 0, 0, path.stat().st_size))
            continue
        entries.append(
            CacheEntry(path, True, c.key["model"]["name"], c.key["dataset"]["name"], c.modality, tuple(c.pools),
                       c.num_rows, c.num_rows, c.num_layers, path.stat().st_size)
        )
    for part in sorted(root.rglob("*.partial")):
        info = PartialWriter.inspect(part)
        key = info["key"] or {}
        entries.append(
            CacheEntry(part, False, key.get("model", {}).get("name", "?"), key.get("dataset", {}).get("name", "?"),
                       key.get("modality", "?"), tuple(key.get("pools", ())), int(key.get("dataset", {}).get("rows", 0)),
                       info["rows_written"], 0, _dir_size(part))
        )
    return entries


def verify_cache(path: Path) -> list[str]:
    """Problems found in the cache at `path` (empty when sound): format, completeness, shapes, finite values, checksums."""
    import h5py

    try:
        cache = FeatureCache(path)
    except CacheError as exc:
        return [str(exc)]
    problems: list[str] = []
    with h5py.File(path, "r") as f:
        if not bool(np.all(f["written"][()])):
            problems.append("some rows are not marked written")
        for pool in cache.pools:
            ds = f["features"][pool]
            if ds.shape[:2] != (cache.num_layers, cache.num_rows):
                problems.append(f"features/{pool} has shape {ds.shape}, expected ({cache.num_layers}, {cache.num_rows}, D)")
                continue
            sums = cache.layer_sha256.get(pool, [])
            for i in range(cache.num_layers):
                x = np.asarray(ds[i], dtype=np.float32)
                if not np.isfinite(x).all():
                    problems.append(f"features/{pool} layer {cache.layers[i]} has NaN or Inf values")
                if i < len(sums) and layer_checksum(x) != sums[i]:
                    problems.append(f"features/{pool} layer {cache.layers[i]} does not match its stored checksum")
    if cache.key.get("dataset", {}).get("rows") not in (None, cache.num_rows):
        problems.append("row count differs from the key's dataset rows")
    return problems
