"""A cache of computed scores (alignment reports, probe sweeps), so re-running an analysis on unchanged
inputs and settings reads the result instead of recomputing a permutation null.

The key holds the input caches' key hashes, every setting, the probe version and the project's git
revision (when in a checkout), so new features, new settings or new code all miss the cache. Entries are
pickles written atomically under `<cache>/scores/<kind>/`. `refresh=True` (the commands'
`--overwrite always`) recomputes and replaces.
"""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

from probe.features.format import key_hash
from probe.log import logger

T = TypeVar("T")


def cached_score(cache_dir: Path, kind: str, key: dict[str, Any], compute: Callable[[], T], *, refresh: bool = False) -> T:
    """`compute()`, or its earlier result for the same `key` (a JSON-safe dict) and code version."""
    from probe import __version__
    from probe.provenance import git_revision

    digest = key_hash({"key": key, "probe": __version__, "git": git_revision()})
    path = Path(cache_dir) / "scores" / kind / f"{digest[:32]}.pkl"
    if not refresh and path.is_file():
        try:
            with open(path, "rb") as fh:
                value = pickle.load(fh)
            logger.info("reusing %s scores computed earlier (%s)", kind, path.name)
            return value
        except Exception as exc:  # a damaged entry is recomputed, never trusted
            logger.warning("ignoring unreadable score cache %s (%s)", path, exc)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return value
