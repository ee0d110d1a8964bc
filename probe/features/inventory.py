"""What is under a cache folder, and whether each file is sound: `probe cache ls / verify / rm`.

Every function here survives any damaged file (truncated HDF5, key attribute not JSON, features of the wrong
rank, junk in a `.partial/` folder): a damaged cache is listed as `damaged` with the reason, `verify`
explains it, and `remove_entries` deletes it. Temporary files a killed run left (`*.tmp`) are entries too,
so nothing stays behind unseen. Entries in use by a running extraction (its OS lock is held) are not removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from probe.errors import CacheError
from probe.features.cache import FeatureCache
from probe.features.format import CACHE_SUFFIX
from probe.features.locks import LOCK_SUFFIX, held_by_other, hold_all_or_none, lock_files
from probe.features.writer import PartialWriter

State = Literal["complete", "partial", "damaged", "tmp"]
_PARTIAL = ".partial"


@dataclass(frozen=True)
class CacheEntry:
    """A thing found under a cache folder: a complete cache, an unfinished `.partial` folder, a damaged cache
    file, or a temporary file (`*.tmp`) left by an interrupted run. `note` says why for damaged/tmp entries."""

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
    state: State = "complete"
    note: str = ""


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def entry_final_path(path: Path) -> Path:
    """The final cache path an entry belongs to: the `.h5` itself, its `.partial/` folder, or a `.tmp` inside or
    next to them."""
    path = Path(path)
    if path.name.endswith(_PARTIAL):
        return path.with_name(path.name[: -len(_PARTIAL)])
    if path.name.endswith(".tmp"):
        if path.parent.name.endswith(_PARTIAL):
            return entry_final_path(path.parent)
        # assembly temporary: .<final name>.<hex>.tmp
        return path.with_name(path.name[1:].rsplit(".", 2)[0])
    return path


def _in_use(final: Path) -> str | None:
    """Who holds a lock of the entry at `final` right now, or None."""
    for lock in lock_files(final):
        owner = held_by_other(lock)
        if owner:
            return owner
    return None


def _names(path: Path, root: Path) -> tuple[str, str]:
    """(model, dataset) folder names of a path under <cache>/features/<model>/<dataset>/."""
    parts = path.relative_to(root).parts
    return (parts[0] if len(parts) > 2 else "?", parts[1] if len(parts) > 2 else "?")


def list_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every entry under `cache_dir`: complete, damaged and partial caches, and stale temporary files."""
    root = Path(cache_dir) / "features"
    entries: list[CacheEntry] = []
    if not root.is_dir():
        return entries
    for path in sorted(root.rglob(f"*{CACHE_SUFFIX}")):
        if not path.is_file():
            continue
        model, dataset = _names(path, root)
        try:
            c = FeatureCache(path)
        except CacheError as exc:
            entries.append(CacheEntry(path, False, model, dataset, "?", (), 0, 0, 0, _size(path), "damaged", str(exc)))
            continue
        entries.append(
            CacheEntry(
                path,
                True,
                str(c.key["model"].get("name", model)),
                str(c.key.get("dataset", {}).get("name", dataset)),
                c.modality,
                tuple(c.pools),
                c.num_rows,
                c.num_rows,
                c.num_layers,
                _size(path),
            )
        )
    for part in sorted(root.rglob(f"*{_PARTIAL}")):
        if not part.is_dir():
            continue
        model, dataset = _names(part, root)
        info = PartialWriter.inspect(part)
        key = info["key"] or {}
        try:
            rows = int(key.get("dataset", {}).get("rows", 0))
            entries.append(
                CacheEntry(
                    part,
                    False,
                    str(key.get("model", {}).get("name", model)),
                    str(key.get("dataset", {}).get("name", dataset)),
                    str(key.get("modality", "?")),
                    tuple(map(str, key.get("pools", ()))),
                    rows,
                    info["rows_written"],
                    0,
                    _size(part),
                    "partial",
                    "" if info["key"] else "no readable key.json",
                )
            )
        except (AttributeError, TypeError, ValueError):
            entries.append(
                CacheEntry(
                    part,
                    False,
                    model,
                    dataset,
                    "?",
                    (),
                    0,
                    info["rows_written"],
                    0,
                    _size(part),
                    "partial",
                    "damaged key.json",
                )
            )
    for tmp in sorted(root.rglob("*.tmp")):
        if not tmp.is_file():
            continue
        model, dataset = _names(tmp, root)
        owner = _in_use(entry_final_path(tmp))
        note = (
            f"being written by {owner}"
            if owner
            else "left by an interrupted run; 'probe cache rm' or the next run of this entry removes it"
        )
        entries.append(CacheEntry(tmp, False, model, dataset, "?", (), 0, 0, 0, _size(tmp), "tmp", note))
    return entries


def verify_cache(path: Path) -> list[str]:
    """Problems found in the cache at `path` (empty when sound): readability, format, completeness, key against
    path, shapes, finite values and stored checksums of every layer."""
    import h5py

    try:
        cache = FeatureCache(path)
    except CacheError as exc:
        return [str(exc)]
    problems: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            if not bool(np.all(f["written"][()])):
                problems.append("some rows are not marked written")
    except Exception as exc:  # damaged beyond what FeatureCache reads at open
        problems.append(f"cannot read 'written' ({type(exc).__name__}: {exc})")
    for pool in cache.pools:
        for i in range(cache.num_layers):
            try:
                cache.layer(i, pool=pool)
            except CacheError as exc:
                problems.append(str(exc))
    if cache.key.get("dataset", {}).get("rows") not in (None, cache.num_rows):
        problems.append("row count differs from the key's dataset rows")
    return problems


@dataclass(frozen=True)
class Removal:
    """What `remove_entries` did with one entry: removed, or skipped because a running process holds it."""

    entry: CacheEntry
    removed: bool
    reason: str = ""


def remove_entries(entries: Sequence[CacheEntry]) -> list[Removal]:
    """Delete `entries` (files or folders), each while holding its entry's locks; an entry whose lock another
    process holds is skipped. Lock files of entries that no longer exist are removed too."""
    done: list[Removal] = []
    finals: set[Path] = set()
    for e in entries:
        final = entry_final_path(e.path)
        finals.add(final)
        with hold_all_or_none(lock_files(final)) as busy:
            if busy:
                done.append(Removal(e, False, f"in use by {busy}"))
                continue
            try:
                if e.path.is_dir():
                    shutil.rmtree(e.path)
                else:
                    e.path.unlink(missing_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot remove {e.path}: {exc.strerror or exc}; check its permissions") from None
            done.append(Removal(e, True))
    for final in finals:
        _remove_orphan_locks(final)
    return done


def _remove_orphan_locks(final: Path) -> None:
    """Remove the lock files of the entry at `final` when nothing of it is left and nobody holds them."""
    if final.exists() or final.with_name(final.name + _PARTIAL).exists():
        return
    if any(final.parent.glob(f".{final.name}.*.tmp")):
        return
    locks = lock_files(final)
    with hold_all_or_none(locks) as busy:
        if busy:
            return
        for lock in locks:
            lock.unlink(missing_ok=True)


def prune_lock_files(cache_dir: Path) -> int:
    """Remove free lock files under `cache_dir` whose entry has nothing left; return how many entries."""
    root = Path(cache_dir) / "features"
    if not root.is_dir():
        return 0
    finals = {
        p.with_name(p.name[: p.name.index(CACHE_SUFFIX) + len(CACHE_SUFFIX)])
        for p in root.rglob(f"*{LOCK_SUFFIX}")
        if CACHE_SUFFIX in p.name
    }
    for final in finals:
        _remove_orphan_locks(final)
    return len(finals)
