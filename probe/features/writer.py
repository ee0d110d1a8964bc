"""Crash-safe, resumable writing of feature caches.

HDF5 is not safe against `kill -9`: a write cut short can leave the file's metadata unreadable and lose every
row. So extraction never writes the HDF5 file in place. Each finished batch is saved as its own `.npz`
file (row indices + pooled features) in `<final>.partial/`, written to a temporary name and renamed, so a
batch file is either whole or absent. The set of rows written is the union of the batch files: a crash
loses at most the batch in flight, and a resumed run does exactly the missing rows. When every row is
written, the HDF5 file is assembled to a temporary name, marked complete, and renamed to its final path.

Several processes (e.g. ranks under torchrun, each with its own GPU) can fill one `.partial/` folder at
the same time over disjoint rows: batch files carry the writer's rank and a unique suffix, and assembly is
done by whichever process first finds every row written and takes the folder's lock.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from probe.features.format import FORMAT_VERSION, key_hash, layer_checksum
from probe.errors import CacheError
from probe.log import logger

_KEY_FILE = "key.json"
_LOCK_FILE = "assemble.lock"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class PartialWriter:
    """Collects batches for the cache at `final_path` in `final_path.partial/` and assembles the HDF5 file.

    `key` is the cache key (JSON-safe dict) and `num_rows` the dataset length N. A folder left by an earlier
    run with the same key is resumed; one with another key is refused.
    """

    def __init__(self, final_path: Path, *, key: dict[str, Any], num_rows: int, rank: int = 0) -> None:
        self.final_path = Path(final_path)
        self.dir = self.final_path.with_name(self.final_path.name + ".partial")
        self.key = key
        self.num_rows = num_rows
        self.rank = rank

    def begin(self) -> None:
        """Create the partial folder (or check that an existing one belongs to this key)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / _KEY_FILE
        text = json.dumps(self.key, sort_keys=True, indent=1)
        if key_file.is_file():
            try:
                existing = json.loads(key_file.read_text())
            except json.JSONDecodeError:
                existing = None
            if existing is not None and key_hash(existing) != key_hash(self.key):
                raise CacheError(f"{self.dir} was started for another key; remove it with 'probe cache rm {self.dir}'")
            if existing is not None:
                return
        _atomic_write_bytes(key_file, text.encode())

    def _batch_files(self) -> list[Path]:
        return sorted(self.dir.glob("batch-*.npz"))

    def written_mask(self) -> np.ndarray:
        """[N] bool: rows already saved in a whole batch file. Unreadable batch files are dropped (redone)."""
        mask = np.zeros(self.num_rows, dtype=bool)
        for path in self._batch_files():
            try:
                with np.load(path) as z:
                    rows = z["rows"]
            except Exception as exc:  # a damaged file (disk full, foreign junk): redo its rows
                logger.warning("dropping unreadable batch file %s (%s); its rows will be extracted again", path, exc)
                path.unlink(missing_ok=True)
                continue
            mask[rows] = True
        return mask

    def write_batch(self, rows: Sequence[int], features: Mapping[str, np.ndarray]) -> None:
        """Save one batch: `rows` [B] dataset indices, `features` pool -> [B, S, D] float32."""
        rows_arr = np.asarray(rows, dtype=np.int64)
        arrays = {"rows": rows_arr}
        for pool, x in features.items():
            if x.shape[0] != len(rows_arr):
                raise ValueError(f"pool {pool}: {x.shape[0]} feature rows for {len(rows_arr)} indices")
            arrays[f"feat_{pool}"] = np.ascontiguousarray(x, dtype=np.float32)
        target = self.dir / f"batch-r{self.rank}-{int(rows_arr.min()):08d}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.dir / f".{target.name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def _take_lock(self) -> bool:
        lock = self.dir / _LOCK_FILE
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
                os.kill(pid, 0)
                return False  # another live process is assembling
            except (ValueError, ProcessLookupError, PermissionError):
                lock.unlink(missing_ok=True)  # stale lock from a crashed assembler
                return self._take_lock()
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True

    def assemble(
        self,
        *,
        ids: Sequence[str],
        image_sha256: Sequence[str],
        caption_sha256: Sequence[str],
        layers: Sequence[int],
        pools: Sequence[str],
        provenance: dict[str, Any],
    ) -> Optional[Path]:
        """Write the complete HDF5 file if every row is written; return its path, or None if rows are missing
        or another process is assembling."""
        import h5py

        if not self.written_mask().all() or not self._take_lock():
            return None
        tmp = self.final_path.with_name(f".{self.final_path.name}.{uuid.uuid4().hex}.tmp")
        try:
            datasets: dict[str, Any] = {}
            with h5py.File(tmp, "w") as f:
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["complete"] = False
                f.attrs["key"] = json.dumps(self.key, sort_keys=True)
                f.attrs["key_hash"] = key_hash(self.key)
                f.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
                f.create_dataset("ids", data=np.array(list(ids), dtype=object), dtype=h5py.string_dtype("utf-8"))
                f.create_dataset("image_sha256", data=np.array(list(image_sha256), dtype="S64"))
                f.create_dataset("caption_sha256", data=np.array(list(caption_sha256), dtype="S64"))
                f.create_dataset("layers", data=np.asarray(layers, dtype=np.int64))
                f.create_dataset("written", data=np.ones(self.num_rows, dtype=bool))
                grp = f.create_group("features")
                for path in self._batch_files():
                    with np.load(path) as z:
                        rows = z["rows"]
                        order = np.argsort(rows)  # h5py fancy indexing needs increasing indices
                        for pool in pools:
                            x = z[f"feat_{pool}"]
                            if pool not in datasets:
                                s, d = x.shape[1], x.shape[2]
                                chunk_rows = max(1, min(self.num_rows, (1 << 20) // max(1, d)))
                                datasets[pool] = grp.create_dataset(
                                    pool, shape=(s, self.num_rows, d), dtype=np.float32, chunks=(1, chunk_rows, d)
                                )
                            datasets[pool][:, rows[order], :] = x[order].transpose(1, 0, 2)
                sums = {pool: [layer_checksum(ds[i]) for i in range(ds.shape[0])] for pool, ds in datasets.items()}
                f.attrs["layer_sha256"] = json.dumps(sums)
                f.attrs["complete"] = True
            os.replace(tmp, self.final_path)
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.final_path

    @staticmethod
    def inspect(partial_dir: Path) -> dict[str, Any]:
        """What an unfinished `.partial` folder holds: its key (or None) and how many rows are written."""
        partial_dir = Path(partial_dir)
        try:
            key = json.loads((partial_dir / _KEY_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            key = None
        rows = set()
        for path in partial_dir.glob("batch-*.npz"):
            try:
                with np.load(path) as z:
                    rows.update(int(r) for r in z["rows"])
            except Exception:
                continue
        return {"key": key, "rows_written": len(rows)}
