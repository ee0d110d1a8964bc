"""What a feature cache is called and what it must hold: the key, the path derived from it, checksums.

The key (`build_key`) holds everything that changes the stored numbers (docs/cache.md); the file name is
derived from its hash, so two runs that would store different numbers never share a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from probe.datasets import PairedDataset
from probe.errors import InputError
from probe.models.pixels import pixel_recipe
from probe.models.sources import weights_fingerprint

FORMAT_VERSION = 1
# Bump when what a stored feature means changes (pooling rule, padding rule, state indexing).
FEATURE_VERSION = 1
CACHE_SUFFIX = ".h5"


def key_hash(key: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `key`."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip("/"))
    return keep[-80:] or "model"


def cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    """Where the cache for `key` lives: `<cache_dir>/features/<model>/<dataset>/<modality>-<pools>-<hash16>.h5`."""
    model = _slug(str(key["model"]["name"]).replace("/", "--"))
    dataset = _slug(str(key["dataset"]["name"]))
    pools = "+".join(key["pools"])
    return (
        Path(cache_dir) / "features" / model / dataset / f"{key['modality']}-{pools}-{key_hash(key)[:16]}{CACHE_SUFFIX}"
    )


def default_cache_dir() -> Path:
    """`$PROBE_CACHE`, else `~/.cache/probe`."""
    import os

    env = os.environ.get("PROBE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "probe"


def layer_checksum(x: np.ndarray) -> str:
    """sha256 of a layer's float32 bytes (C order). Hashes the array's buffer in place (no copy)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(x, dtype=np.float32)).cast("B")).hexdigest()


def hash_in_path(path: Path) -> Optional[str]:
    """The 16 hex digits of the key hash that `cache_path` put in the file name, or None if it has none."""
    stem = Path(path).name.removesuffix(CACHE_SUFFIX)
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) == 16 and all(c in "0123456789abcdef" for c in tail) else None


def model_key(spec: Any) -> dict[str, Any]:
    """The part of the cache key that names the model: hub id + revision, or a local folder's fingerprint.

    A random-init twin adds its seed and its base model (name, hub id, revision, source; its fingerprint is
    that of the base's config and processor); a pixels control adds its recipe and size.
    """
    key: dict[str, Any] = {
        "name": spec.alias or spec.hub_id,
        "hub_id": spec.hub_id,
        "revision": spec.revision,
        "source": spec.source,
    }
    fingerprint = weights_fingerprint(spec)
    if fingerprint is not None:
        key["local_fingerprint"] = fingerprint
    if getattr(spec, "seed", None) is not None:
        key["seed"] = spec.seed
    base = getattr(spec, "base", None)
    if base is not None:
        key["base"] = {
            "name": base.alias or base.hub_id,
            "hub_id": base.hub_id,
            "revision": base.revision,
            "source": base.source,
        }
    if spec.source == "pixels":
        key["pixels"] = pixel_recipe(spec.image_size)
    return key


def build_key(
    *,
    spec: Any,
    dataset: PairedDataset,
    pools: Sequence[str],
    layers: Sequence[int] | str,
    prompt: Optional[str],
    dtype: str,
    store_dtype: str = "float32",
) -> dict[str, Any]:
    """Everything that changes the stored numbers, as a JSON-safe dict (see docs/cache.md).

    `store_dtype` is in the key only when it is not float32, so float32 caches keep the keys (and paths)
    they had before the option existed."""
    key = {
        "feature_version": FEATURE_VERSION,
        "model": model_key(spec),
        "modality": spec.modality,
        "pools": list(pools),
        "layers": list(layers) if not isinstance(layers, str) else layers,
        "prompt": prompt,
        "dtype": dtype,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "rows": len(dataset)},
    }
    if store_dtype != "float32":
        key["store_dtype"] = store_dtype
    return key


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (the folder in which `mkdir -p path` would start)."""
    current = path
    while True:
        try:
            if current.exists() or current == current.parent:
                return current
        except OSError:  # e.g. no permission to look inside a parent: the write test below reports it
            return current
        current = current.parent


def check_writable_dir(path: Path, *, param: str) -> None:
    """InputError naming `param` unless `path` is a folder this process can write in, or can be created as one."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{param}={str(path)!r} is an existing file, not a folder; pass a folder (it is created if missing)"
        )
    anchor = _nearest_existing(path)
    if anchor != path and not anchor.is_dir():
        raise InputError(f"{param}={str(path)!r} cannot be created: {anchor} is a file, not a folder")
    try:
        fd, probe_file = tempfile.mkstemp(prefix=".probe-write-check-", dir=anchor)
    except OSError as exc:
        where = "in it" if anchor == path else f"in {anchor}, where it would be created"
        raise InputError(
            f"{param}={str(path)!r} is not writable: cannot create a file {where} ({exc.strerror or exc}); "
            f"pass a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe_file)
