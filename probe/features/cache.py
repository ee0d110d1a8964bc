"""Feature caches: one HDF5 file per extraction key, read layer by layer.

Layout of a complete cache file (`FORMAT_VERSION` 1; documented in docs/cache.md):

- attrs `format_version`, `complete` (True, set last), `key` (JSON of everything that changes the
  numbers), `key_hash`, `provenance` (JSON: model identity, package versions, date), `layer_sha256` (JSON:
  pool -> sha256 of each stored layer's float32 bytes, for `probe cache verify`).
- `ids` [N] UTF-8 strings, `image_sha256` [N] and `caption_sha256` [N] ASCII hex: the dataset rows, in order,
  so two caches can be checked to be paired row by row.
- `layers` [S] int: which hidden states are stored (0 = embeddings).
- `written` [N] bool: every row written (all True in a complete file; the partial writer tracks it).
- `features/<pool>` [S, N, D] float32, chunked one layer at a time, so reading one layer reads only it.

Files are created only by `probe.features.writer`, whole, and renamed into place: a file at a final path is a
complete cache. It is still checked before use, because files get damaged, edited or copied over each other:
opening checks format, completeness, shapes, that the stored key hashes to the hash in the file name (and names
the model the caller expects); reading a layer for analysis checks it once per `FeatureCache` object against
its stored sha256 (computed on the bytes just read) and for NaN/Inf. Any failure is a CacheError naming the
file and the fix (re-extract with `overwrite=always`), so damaged numbers are never scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from probe.errors import CacheError
from probe.features.format import FORMAT_VERSION, hash_in_path, key_hash, layer_checksum

_FIX = "re-extract it with 'probe extract ... overwrite=always' (or remove it with 'probe cache rm')"


@dataclass(frozen=True)
class LayerStack:
    """Some stored layers of one pool of a cache, optionally restricted to some rows: the layer source
    (`probe.layer_source.LayerSource`) that alignment and probes read.

    `positions` index the cache's stored layers (None: all), `rows` the dataset rows (None: all),
    `dropped` records hidden-state indices left out on purpose (constant layers), for reports.
    """

    cache: "FeatureCache"
    pool: Optional[str] = None
    positions: Optional[tuple[int, ...]] = None
    rows: Optional[np.ndarray] = field(default=None, compare=False)
    dropped: tuple[int, ...] = ()

    @property
    def _positions(self) -> tuple[int, ...]:
        return self.positions if self.positions is not None else tuple(range(self.cache.num_layers))

    @property
    def num_layers(self) -> int:
        return len(self._positions)

    @property
    def num_rows(self) -> int:
        return self.cache.num_rows if self.rows is None else int(len(self.rows))

    @property
    def layers(self) -> list[int]:
        """Hidden-state indices (0 = embeddings) of the layers in this stack, in order."""
        return [self.cache.layers[p] for p in self._positions]

    @property
    def name(self) -> str:
        """The model's name as the cache key records it."""
        return str(self.cache.key["model"]["name"])

    @property
    def identity(self) -> tuple:
        """What these layers hold, for reuse across pairs (`probe.layer_source.source_identity`): the cache
        entry (its path is a digest of its key), the pool, the stored layers, the rows and the dropped states."""
        rows = None if self.rows is None else hashlib.sha256(np.ascontiguousarray(self.rows).tobytes()).hexdigest()
        return (str(self.cache.path), self.pool, self._positions, rows, self.dropped)

    def layer(self, i: int) -> np.ndarray:
        """Layer `i` of this stack as [num_rows, D] float32."""
        x = self.cache.layer(self._positions[i], pool=self.pool)
        return x if self.rows is None else x[self.rows]

    def clamp_extra_layers(self) -> list[np.ndarray]:
        """The layers left out on purpose (`dropped`), as [num_rows, D] arrays: PRH computes its clamp level over
        every stored layer, including those it then does not align (see `probe.align.prep.prepare_layers`)."""
        out = []
        for state in self.dropped:
            x = self.cache.layer(self.cache.layers.index(state), pool=self.pool)
            out.append(x if self.rows is None else x[self.rows])
        return out

    def select(self, positions: Sequence[int], *, dropped: Sequence[int] = ()) -> "LayerStack":
        """The stack restricted to `positions` (indices into this stack's layers)."""
        mine = self._positions
        return replace(self, positions=tuple(mine[p] for p in positions), dropped=tuple(dropped))

    def take_rows(self, rows: Optional[np.ndarray]) -> "LayerStack":
        """The stack restricted to `rows` (indices into this stack's rows; None: unchanged)."""
        if rows is None:
            return self
        rows = np.asarray(rows)
        return replace(self, rows=rows if self.rows is None else self.rows[rows])


class FeatureCache:
    """Read-only view of a complete cache file. Opening checks that it is complete, of a known format, whole in
    shape, stored under its own key's path and (when `model` is given) a cache of that model name; each layer
    is checked (sha256, finite values) the first time it is read through this object."""

    def __init__(self, path: Path, *, model: Optional[str] = None) -> None:
        import h5py

        self.path = Path(path)
        self._verified: set[tuple[str, int]] = set()
        if not self.path.is_file():
            raise CacheError(f"cache file {self.path} does not exist; run 'probe extract' first")
        try:
            with h5py.File(self.path, "r") as f:
                if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                    raise CacheError(
                        f"{self.path} has cache format {f.attrs.get('format_version')!r}, this probe reads "
                        f"{FORMAT_VERSION}; re-extract with overwrite=always"
                    )
                if not bool(f.attrs.get("complete", False)):
                    raise CacheError(f"{self.path} is not complete; re-run 'probe extract' to finish it")
                self.key: dict[str, Any] = json.loads(f.attrs["key"])
                if not isinstance(self.key, dict) or not isinstance(self.key.get("model"), dict):
                    raise CacheError(f"{self.path}: attribute 'key' is not a cache key; {_FIX}")
                self._check_key(model)
                self.provenance: dict[str, Any] = json.loads(f.attrs.get("provenance", "{}"))
                self.layer_sha256: dict[str, list[str]] = json.loads(f.attrs.get("layer_sha256", "{}"))
                self.ids: list[str] = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()]]
                self.image_sha256: list[str] = [s.decode() for s in f["image_sha256"][()]]
                self.caption_sha256: list[str] = [s.decode() for s in f["caption_sha256"][()]]
                self.layers: list[int] = [int(x) for x in f["layers"][()]]
                self.pools: list[str] = sorted(f["features"].keys())
                if not self.pools:
                    raise CacheError(f"{self.path} holds no features; {_FIX}")
                for pool in self.pools:
                    shape = f["features"][pool].shape
                    if len(shape) != 3 or shape[:2] != (self.num_layers, self.num_rows):
                        raise CacheError(
                            f"{self.path}: features/{pool} has shape {shape}, "
                            f"expected ({self.num_layers}, {self.num_rows}, D); {_FIX}"
                        )
                    sums = self.layer_sha256.get(pool) if isinstance(self.layer_sha256, dict) else None
                    if not isinstance(sums, list) or len(sums) != self.num_layers:
                        raise CacheError(
                            f"{self.path}: the stored checksums of features/{pool} are missing or incomplete; {_FIX}"
                        )
                self.hidden_size = int(f["features"][self.pools[0]].shape[2])
        except CacheError:
            raise
        except Exception as exc:  # any damage (truncated file, wrong types, missing objects) is one clear line
            raise CacheError(
                f"{self.path} is not a readable probe cache ({type(exc).__name__}: {exc}); {_FIX}"
            ) from None

    def _check_key(self, model: Optional[str]) -> None:
        """The stored key must be the one this path was derived from, and of the expected model."""
        stored = key_hash(self.key)
        in_name = hash_in_path(self.path)
        if in_name is not None and stored[:16] != in_name:
            raise CacheError(
                f"{self.path} holds the cache of another key ({self.key['model'].get('name')!r}, "
                f"key hash {stored[:16]}, not {in_name} as its name says): copied or moved over this path; {_FIX}"
            )
        if model is not None and self.key["model"].get("name") != model:
            raise CacheError(f"{self.path} is a cache of {self.key['model'].get('name')!r}, not of {model!r}; {_FIX}")

    def _verify_layer(self, pool: str, i: int, x: np.ndarray) -> None:
        """CacheError unless layer position `i` of `pool` (x: [N, D], just read) matches its stored sha256 and is
        finite. Done once per (pool, layer) per object: later reads of the same layer cost nothing extra."""
        if (pool, i) in self._verified:
            return
        matches = layer_checksum(x) == self.layer_sha256[pool][i]
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.flatnonzero(~finite.all(axis=1))
            rows = ", ".join(f"{r} ({self.ids[r]!r})" for r in bad[:5]) + (
                f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            )
            origin = (
                "they were stored so at extraction (the model produced them: try dtype=float32)"
                if matches
                else "the file was changed after it was written"
            )
            raise CacheError(
                f"{self.path}: features/{pool} layer {self.layers[i]} has NaN/Inf values in rows {rows}; "
                f"{origin}; {_FIX}"
            )
        if not matches:
            raise CacheError(
                f"{self.path}: features/{pool} layer {self.layers[i]} does not match its stored checksum (sha256): "
                f"the file was damaged or edited after it was written; {_FIX}"
            )
        self._verified.add((pool, i))

    @property
    def num_rows(self) -> int:
        return len(self.ids)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def modality(self) -> str:
        return str(self.key["modality"])

    def _pool(self, pool: Optional[str]) -> str:
        if pool is None:
            if len(self.pools) != 1:
                raise CacheError(f"{self.path} holds pools {self.pools}; say which one")
            return self.pools[0]
        if pool not in self.pools:
            raise CacheError(
                f"{self.path} has no pool {pool!r} (it has {', '.join(self.pools)}); extract with pool={pool}"
            )
        return pool

    def layer(self, i: int, *, pool: Optional[str] = None) -> np.ndarray:
        """Stored layer `i` (position in `self.layers`) as [N, D] float32; reads only that layer's chunks and
        checks it (sha256, finite) the first time."""
        import h5py

        if not 0 <= i < self.num_layers:
            raise CacheError(f"{self.path} stores {self.num_layers} layers; layer position {i} does not exist")
        name = self._pool(pool)
        try:
            with h5py.File(self.path, "r") as f:
                x = np.asarray(f["features"][name][i], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise CacheError(
                f"{self.path}: cannot read features/{name} layer {self.layers[i]} ({exc}); {_FIX}"
            ) from None
        self._verify_layer(name, i, x)
        return x

    def read(self, *, pool: Optional[str] = None) -> np.ndarray:
        """All stored layers as [N, S, D] float32, each checked as in `layer`."""
        import h5py

        name = self._pool(pool)
        try:
            with h5py.File(self.path, "r") as f:
                data = np.asarray(f["features"][name][()], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise CacheError(f"{self.path}: cannot read features/{name} ({exc}); {_FIX}") from None
        for i in range(self.num_layers):
            self._verify_layer(name, i, data[i])
        return np.ascontiguousarray(data.transpose(1, 0, 2))

    def stack(self, pool: Optional[str] = None) -> LayerStack:
        """A `LayerStack` view of one pool (all stored layers, all rows), for code that reads layer by layer."""
        return LayerStack(self, self._pool(pool))

    def __repr__(self) -> str:
        return (
            f"FeatureCache({self.path}, {self.modality}, N={self.num_rows}, layers={self.num_layers}, "
            f"D={self.hidden_size}, pools={self.pools})"
        )


def check_paired(a: FeatureCache, b: FeatureCache) -> None:
    """CacheError unless `a` and `b` hold the same dataset rows in the same order (ids and content hashes)."""
    if a.num_rows != b.num_rows:
        raise CacheError(
            f"caches are not paired: {a.path} has {a.num_rows} rows, {b.path} has {b.num_rows}; "
            "extract both with the same dataset= and limit="
        )
    for name in ("ids", "image_sha256", "caption_sha256"):
        xa, xb = getattr(a, name), getattr(b, name)
        if xa != xb:
            i = next(j for j, (u, v) in enumerate(zip(xa, xb)) if u != v)
            raise CacheError(
                f"caches are not paired row by row: {name} differ first at row {i} ({xa[i]!r} vs {xb[i]!r}) between "
                f"{a.path} and {b.path}; extract both from the same dataset version"
            )
