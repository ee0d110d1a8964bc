"""Crash-safe, resumable writing of feature caches.

HDF5 is not safe against `kill -9`: a write cut short can leave the file's metadata unreadable and lose every
row. So extraction never writes the HDF5 file in place. Each finished batch is saved as its own `.npz`
file (row indices + pooled features) in `<final>.partial/`, written to a temporary name and renamed, so a
batch file is either whole or absent. The set of rows written is the union of the batch files: a crash
loses at most the batch in flight, and a resumed run does exactly the missing rows. When every row is
written, the HDF5 file is assembled to a temporary name, marked complete, and renamed to its final path.

Several processes (e.g. ranks under torchrun, each with its own GPU) can fill one `.partial/` folder at
the same time over disjoint rows: batch files carry the writer's rank and a unique suffix, and assembly is
done by whichever process first finds every row written, under the entry's OS lock (`probe.features.locks`).

Faults: an OSError while writing (disk full, quota, file size limit, permissions) becomes one CacheError line
saying what, where, how much was needed and how much is free; what was written whole is kept, so the next
run completes the work. Assembly first checks the free space against the file's expected size, and writes
the HDF5 file in a forked child process: HDF5 can segfault when a write fails (seen on a full disk; the
library is left broken until the process exits), and a crash in the child is reported by the parent as a
CacheError instead of taking it down. Temporary files a killed run leaves are removed by the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from probe.errors import CacheError, describe_os_error, fsync_path, human_bytes, write_atomic
from probe.features.format import FORMAT_VERSION, key_hash, layer_checksum
from probe.features.locks import entry_lock_path, hold, shard_lock_path
from probe.log import logger

_KEY_FILE = "key.json"
_TMP_SUFFIX = ".tmp"
# Room kept beyond the features' bytes when checking free space before assembly: HDF5 metadata, ids, hashes.
_ASSEMBLY_SLACK = 1 << 20
# Most memory assembly gathers layers in (bytes): a cache that fits is assembled reading each batch file once.
_ASSEMBLY_BUFFER = 2 << 30
# Rows `write_array` converts at a time (bytes of the source): bounds the copies made for the store dtype.
_ARRAY_BLOCK_BYTES = 256 << 20


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data, durable=True)
    except OSError as exc:
        raise CacheError(
            describe_os_error(exc, doing=f"writing {path}", folder=path.parent, need_bytes=len(data))
        ) from None


def assembly_tmp_glob(final_path: Path) -> str:
    """Glob (in `final_path.parent`) of the temporary files assembly writes before renaming to `final_path`."""
    return f".{final_path.name}.*{_TMP_SUFFIX}"


class PartialWriter:
    """Collects batches for the cache at `final_path` in `final_path.partial/` and assembles the HDF5 file.

    `key` is the cache key (JSON-safe dict) and `num_rows` the dataset length N. A folder left by an earlier
    run with the same key is resumed; one with another key is refused. `rank`/`world`: this process's row
    shard (see `probe.features.extract.Shard`), which names its batch files and its shard lock. `store_dtype`:
    the dtype features are stored in (float32, or float16 to halve the disk; readers return float32).
    `sync_every` / `sync_seconds`: how often batch files are fsynced (see `write_batch`).
    """

    def __init__(
        self,
        final_path: Path,
        *,
        key: dict[str, Any],
        num_rows: int,
        rank: int = 0,
        world: int = 1,
        store_dtype: str = "float32",
        sync_every: int = 32,
        sync_seconds: float = 30.0,
    ) -> None:
        self.final_path = Path(final_path)
        self.dir = self.final_path.with_name(self.final_path.name + ".partial")
        self.key = key
        self.num_rows = num_rows
        self.rank = rank
        self.world = world
        self.store_dtype = np.dtype(store_dtype)
        if self.store_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"store_dtype={store_dtype!r}: float32 or float16")
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds
        self._unsynced: list[Path] = []
        self.assembly_buffer_bytes = _ASSEMBLY_BUFFER
        self._last_sync = time.monotonic()

    @contextmanager
    def shard_lock(self) -> Iterator[None]:
        """Hold this shard's lock for a whole extraction: a second process of the same shard waits here."""
        what = f"extracting rows of shard {self.rank}/{self.world} into {self.final_path.name}"
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        with hold(shard_lock_path(self.final_path, rank=self.rank, world=self.world), what=what):
            yield

    @contextmanager
    def entry_lock(self) -> Iterator[None]:
        """Hold the entry's lock (set-up, clean-up, assembly, removal): held briefly, never while extracting."""
        with hold(entry_lock_path(self.final_path), what=f"setting up or assembling {self.final_path.name}"):
            yield

    def discard(self) -> None:
        """Remove the complete file and the partial folder of this entry (`overwrite=always`)."""
        with self.entry_lock():
            try:
                self.final_path.unlink(missing_ok=True)
                if self.dir.exists():
                    shutil.rmtree(self.dir)
            except OSError as exc:
                raise CacheError(
                    describe_os_error(exc, doing=f"removing {self.final_path}", folder=self.final_path.parent)
                ) from None

    def begin(self) -> None:
        """Create the partial folder (or check that an existing one belongs to this key) and remove temporary
        files that killed runs left: assembly temporaries next to the final path, and this shard's unfinished
        batch files (other shards may be writing theirs right now)."""
        with self.entry_lock():
            self._remove_stale(self.final_path.parent.glob(assembly_tmp_glob(self.final_path)))
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(describe_os_error(exc, doing=f"creating {self.dir}", folder=self.dir.parent)) from None
            self._remove_stale(self.dir.glob(f".{_KEY_FILE}.*{_TMP_SUFFIX}"))
            key_file = self.dir / _KEY_FILE
            existing = None
            if key_file.is_file():
                try:
                    existing = json.loads(key_file.read_text())
                except (ValueError, OSError):
                    existing = None  # damaged key file: rewritten below
            if existing is not None and key_hash(existing) != key_hash(self.key):
                raise CacheError(f"{self.dir} was started for another key; remove it with 'probe cache rm {self.dir}'")
            if existing is None:
                _atomic_write_bytes(key_file, json.dumps(self.key, sort_keys=True, indent=1).encode())
        self._remove_stale(self.dir.glob(f".batch-r{self.rank}-*{_TMP_SUFFIX}"))

    @staticmethod
    def _remove_stale(paths) -> None:
        for path in paths:
            logger.info("removing %s, left by an interrupted run", path)
            path.unlink(missing_ok=True)

    def _batch_files(self) -> list[Path]:
        return sorted(self.dir.glob("batch-*.npz"))

    def written_mask(self) -> np.ndarray:
        """[N] bool: rows already saved in a whole batch file. Unreadable batch files are dropped (redone)."""
        mask = np.zeros(self.num_rows, dtype=bool)
        for path in self._batch_files():
            try:
                with np.load(path, allow_pickle=False) as z:
                    rows = z["rows"]
                mask[rows] = True
            except FileNotFoundError:
                continue
            except Exception as exc:  # a damaged file (disk full, foreign junk): redo its rows
                logger.warning("dropping unreadable batch file %s (%s); its rows will be extracted again", path, exc)
                path.unlink(missing_ok=True)
        return mask

    def stored_layers(self) -> Optional[list[int]]:
        """The hidden-state indices the batch files hold (written with each batch), or None if none says."""
        for path in self._batch_files():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if "layers" in z.files:
                        return [int(v) for v in z["layers"]]
            except Exception:
                continue
        return None

    def write_batch(
        self, rows: Sequence[int], features: Mapping[str, np.ndarray], *, layers: Optional[Sequence[int]] = None
    ) -> None:
        """Save one batch: `rows` [B] dataset indices, `features` pool -> [B, S, D] float32, `layers` [S] the
        hidden-state indices (kept so a resumed run can assemble without resolving the layer spec again).

        The file is written to a temporary name and renamed (whole or absent after `kill -9`), but fsynced only
        at checkpoints (`sync`: every `sync_every` batches or `sync_seconds`, and before assembly): a power loss
        or OS crash can lose the batches since the last checkpoint (a torn file fails the zip CRC or its
        header and is dropped, its rows redone); a killed process loses none of the files it renamed.
        """
        rows_arr = np.asarray(rows, dtype=np.int64)
        arrays = {"rows": rows_arr}
        if layers is not None:
            arrays["layers"] = np.asarray(layers, dtype=np.int64)
        for pool, x in features.items():
            if x.shape[0] != len(rows_arr):
                raise ValueError(f"pool {pool}: {x.shape[0]} feature rows for {len(rows_arr)} indices")
            arrays[f"feat_{pool}"] = self._stored(x, pool=pool, first_row=int(rows_arr.min()))
        target = self.dir / f"batch-r{self.rank}-{int(rows_arr.min()):08d}-{uuid.uuid4().hex[:8]}.npz"

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a handle: given a name, np.savez would append ".npz" to it
                np.savez(fh, **arrays)

        try:
            write_atomic(target, save)  # not durable: batch files are fsynced at checkpoints (`sync`)
        except OSError as exc:
            need = sum(a.nbytes for a in arrays.values())
            raise CacheError(
                describe_os_error(exc, doing=f"writing batch file {target}", folder=self.dir, need_bytes=need)
            ) from None
        self._unsynced.append(target)
        if len(self._unsynced) >= self.sync_every or time.monotonic() - self._last_sync >= self.sync_seconds:
            self.sync()

    def _stored(self, x: np.ndarray, *, pool: str, first_row: int) -> np.ndarray:
        """`x` [B, S, D] as a contiguous array of the store dtype; CacheError if float16 would overflow."""
        with np.errstate(over="ignore"):  # overflow to float16 Inf is refused just below
            out = np.ascontiguousarray(x, dtype=self.store_dtype)
        if self.store_dtype == np.float16 and np.isinf(out).any():
            raise CacheError(
                f"pool {pool}: features of rows {first_row}.. exceed float16's range (|x| > 65504; large "
                f"activations of some LLM layers do); extract with store_dtype='float32' instead"
            )
        return out

    def sync(self) -> None:
        """Checkpoint: fsync the batch files written since the last one, and the folder (their names)."""
        pending, self._unsynced = self._unsynced, []
        try:
            for path in pending:
                try:
                    fsync_path(path)
                except FileNotFoundError:
                    continue  # removed meanwhile (e.g. by --overwrite always in another process)
            if pending:
                fsync_path(self.dir)
        except OSError as exc:
            raise CacheError(
                describe_os_error(exc, doing=f"syncing batch files in {self.dir}", folder=self.dir)
            ) from None
        self._last_sync = time.monotonic()

    def _expected_bytes(self, shapes: Mapping[str, tuple[int, int]]) -> int:
        """Bytes the assembled file will take: every pool's [S, N, D] in the store dtype, row metadata and slack."""
        total = self.num_rows * (64 + 64 + 64) + _ASSEMBLY_SLACK
        for s, d in shapes.values():
            total += self.store_dtype.itemsize * s * d * self.num_rows
        return total

    def _batch_file_shapes(self, pools: Sequence[str]) -> dict[str, tuple[int, int]]:
        """pool -> (S, D) of the features in the batch files."""
        with np.load(self._batch_files()[0], allow_pickle=False) as z:
            return {pool: tuple(z[f"feat_{pool}"].shape[1:]) for pool in pools}

    def _batch_file_blocks(self, pool: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows [B], features [B, S, D]) of `pool`, one batch file at a time."""
        for path in self._batch_files():
            with np.load(path, allow_pickle=False) as z:
                yield z["rows"], z[f"feat_{pool}"]

    def _write_complete(
        self, *, blocks: Any, shapes: Mapping[str, tuple[int, int]], command: str, **fields: Any
    ) -> Path:
        """Under the entry lock (held by the caller): check free space, write the HDF5 file from `blocks` to a
        temporary name in a forked child, rename it to the final path. `blocks(pool)` yields (rows, [B, S, D]);
        `command` is what the user re-runs after a fault ('probe extract', 'probe cache import')."""
        verb, gerund = ("assemble", "assembling") if self.dir.exists() else ("write", "writing")
        self._remove_stale(self.final_path.parent.glob(assembly_tmp_glob(self.final_path)))
        need = self._expected_bytes(shapes)
        try:
            free = shutil.disk_usage(self.final_path.parent).free
        except OSError:
            free = None
        kept = (
            f"the {len(self._batch_files())} batch files in {self.dir} are kept"
            if self.dir.exists()
            else "nothing was kept"
        )
        rerun = f"re-run '{command}': {kept}"
        if free is not None and free < need:
            raise CacheError(
                f"not enough space to {verb} {self.final_path}: about {human_bytes(need)} needed, "
                f"{human_bytes(free)} free on the filesystem of {self.final_path.parent}; "
                "free some space (or choose cache_dir= on a larger "
                f"disk) and {rerun}"
            )
        try:
            # durable: the file's data is fsynced before the rename and its folder after, so a complete cache
            # survives a power cut once this returns
            return write_atomic(
                self.final_path,
                lambda tmp: self._write_isolated(
                    tmp, need=need, gerund=gerund, rerun=rerun, blocks=blocks, shapes=shapes, **fields
                ),
                durable=True,
            )
        except OSError as exc:
            raise CacheError(
                describe_os_error(
                    exc, doing=f"{gerund} {self.final_path}", folder=self.final_path.parent, need_bytes=need
                )
            ) from None

    def write_array(
        self,
        x: np.ndarray,
        *,
        pool: str,
        ids: Sequence[str],
        image_sha256: Sequence[str],
        caption_sha256: Sequence[str],
        layers: Sequence[int],
        provenance: dict[str, Any],
    ) -> Path:
        """Write the complete cache file straight from `x` [N, S, D] (rows in dataset order; a memory map is read
        once, in row blocks), without batch files: for features that already exist whole (`probe cache import`).
        All or nothing, like assembly (temporary name, forked writer, rename); return the final path."""
        if x.ndim != 3 or x.shape[0] != self.num_rows or x.shape[1] != len(layers):
            raise ValueError(f"features of shape {tuple(x.shape)} for {self.num_rows} rows and {len(layers)} layers")
        step = max(1, _ARRAY_BLOCK_BYTES // max(1, x.shape[1] * x.shape[2] * x.dtype.itemsize))

        def blocks(_pool: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, self.num_rows, step):
                stop = min(start + step, self.num_rows)
                yield np.arange(start, stop), self._stored(x[start:stop], pool=pool, first_row=start)

        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        with self.entry_lock():
            if self.final_path.is_file():
                return self.final_path  # another process wrote it while this one waited for the lock
            return self._write_complete(
                command="probe cache import",
                blocks=blocks,
                shapes={pool: (x.shape[1], x.shape[2])},
                ids=ids,
                image_sha256=image_sha256,
                caption_sha256=caption_sha256,
                layers=layers,
                pools=[pool],
                provenance=provenance,
            )

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
        (other shards still extracting). Takes the entry lock, so one process assembles; a process that gets
        the lock after another assembled returns the finished path."""
        self.sync()  # this process's batches are durable before the file built from them is
        with self.entry_lock():
            if self.final_path.is_file() and not self.dir.exists():
                return self.final_path
            self._remove_stale(self.final_path.parent.glob(assembly_tmp_glob(self.final_path)))
            if not self.written_mask().all():
                return None
            self._write_complete(
                command="probe extract",
                blocks=self._batch_file_blocks,
                shapes=self._batch_file_shapes(pools),
                ids=ids,
                image_sha256=image_sha256,
                caption_sha256=caption_sha256,
                layers=layers,
                pools=pools,
                provenance=provenance,
            )
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.final_path

    def _write_isolated(self, tmp: Path, *, need: int, gerund: str, rerun: str, **fields: Any) -> None:
        """Run `_write_hdf5(tmp, ...)` in a forked child; its error or crash becomes an OSError / CacheError here."""
        if not hasattr(os, "fork"):
            self._write_hdf5(tmp, **fields)
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: write, report on the pipe, leave without running any Python clean-up
            code, message = 0, b"ok"
            try:
                os.close(read_end)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)  # HDF5's own error stack and h5py's "Exception ignored" lines
                self._write_hdf5(tmp, **fields)
            except OSError as exc:
                code, message = 1, json.dumps({"errno": exc.errno, "strerror": exc.strerror or str(exc)}).encode()
            except BaseException as exc:  # noqa: BLE001 - anything else is reported by the parent
                code, message = 1, json.dumps({"errno": None, "strerror": f"{type(exc).__name__}: {exc}"}).encode()
            try:
                os.write(write_end, message)
            finally:
                os._exit(code)
        os.close(write_end)
        chunks = []
        with os.fdopen(read_end, "rb") as fh:
            chunks.append(fh.read())
        _, status = os.waitpid(pid, 0)
        report = b"".join(chunks)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and report == b"ok":
            return
        if report and report != b"ok":
            info = json.loads(report)
            raise OSError(info["errno"], " ".join(str(info["strerror"]).split()))  # HDF5's messages hold newlines
        how = (
            f"signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
            if os.WIFSIGNALED(status)
            else f"exit {os.WEXITSTATUS(status)}"
        )
        free = shutil.disk_usage(tmp.parent).free
        raise CacheError(
            f"{gerund} {self.final_path} crashed in HDF5 ({how}) while writing {tmp}; {human_bytes(free)} free on the "
            f"filesystem of {tmp.parent}, about {human_bytes(need)} needed; free some space and {rerun}"
        )

    def _write_hdf5(
        self,
        tmp: Path,
        *,
        blocks: Any,
        shapes: Mapping[str, tuple[int, int]],
        ids: Sequence[str],
        image_sha256: Sequence[str],
        caption_sha256: Sequence[str],
        layers: Sequence[int],
        pools: Sequence[str],
        provenance: dict[str, Any],
    ) -> None:
        """Write the complete cache file to `tmp` from `blocks` (see `_write_features`); `complete` is set last.
        Not fsynced here: `_write_complete` writes through `write_atomic(durable=True)`, which does."""
        import h5py

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
            sums = self._write_features(grp, pools, blocks=blocks, shapes=shapes)
            f.attrs["layer_sha256"] = json.dumps(sums)
            f.attrs["complete"] = True

    def _write_features(
        self, grp: Any, pools: Sequence[str], *, blocks: Any, shapes: Mapping[str, tuple[int, int]]
    ) -> dict[str, list[str]]:
        """Write `features/<pool>` [S, N, D] layer-major from `blocks(pool)`, which yields (rows [B], [B, S, D])
        covering every row (batch files, or row blocks of an imported array); return pool -> per-layer sha256.

        Layers are gathered in memory in groups of at most `assembly_buffer_bytes` (all layers at once when they
        fit), so the source is read once per group (once in all for most caches), each layer is written once as
        whole chunks, and its checksum is taken from the buffer: nothing is read back.
        """
        sums: dict[str, list[str]] = {}
        dtype = self.store_dtype
        for pool in pools:
            s, d = shapes[pool]
            chunk_rows = max(1, min(self.num_rows, (1 << 20) // max(1, d)))
            ds = grp.create_dataset(pool, shape=(s, self.num_rows, d), dtype=dtype, chunks=(1, chunk_rows, d))
            per_layer = self.num_rows * d * dtype.itemsize
            group = max(1, min(s, self.assembly_buffer_bytes // max(1, per_layer)))
            sums[pool] = []
            for a in range(0, s, group):
                b = min(s, a + group)
                buf = np.empty((b - a, self.num_rows, d), dtype=dtype)
                for rows, feats in blocks(pool):
                    x = feats[:, a:b, :].transpose(1, 0, 2)
                    r0 = int(rows[0]) if len(rows) else 0
                    if len(rows) and int(rows[-1]) - r0 == len(rows) - 1 and (np.diff(rows) == 1).all():
                        buf[:, r0 : r0 + len(rows), :] = x  # consecutive rows (image batches, imports): a slice
                    else:
                        buf[:, rows, :] = x
                for j in range(b - a):
                    ds[a + j] = buf[j]
                    sums[pool].append(layer_checksum(buf[j]))
        return sums

    @staticmethod
    def inspect(partial_dir: Path) -> dict[str, Any]:
        """What an unfinished `.partial` folder holds: its key (or None) and how many rows are written."""
        partial_dir = Path(partial_dir)
        try:
            key = json.loads((partial_dir / _KEY_FILE).read_text())
            if not isinstance(key, dict):
                key = None
        except (OSError, ValueError):
            key = None
        rows = set()
        for path in partial_dir.glob("batch-*.npz"):
            try:
                with np.load(path, allow_pickle=False) as z:
                    rows.update(int(r) for r in z["rows"])
            except Exception:
                continue
        return {"key": key, "rows_written": len(rows)}


class BackgroundWriter:
    """Saves batches through `writer.write_batch` in a thread, so the next forward pass overlaps the save.

    `submit(rows, features, layers=, ready=)` queues a batch (blocking while `depth` batches wait: memory stays
    bounded); `ready`, if given, has a `.synchronize()` (a CUDA event recorded after the device->host copies
    into the pinned `features`) that the thread waits on before reading them. A failure in the thread (a
    CacheError for a full disk, ...) is raised by the next `submit` or by `close` in the caller's thread,
    unchanged; after it the thread drains the queue without writing, so nothing blocks. Used as a context
    manager: on leaving, the batches already queued are written (they are complete) and the thread is joined.
    A killed process loses at most the batches queued or being written (at most `depth` + 1).
    """

    _STOP = object()

    def __init__(self, writer: PartialWriter, *, depth: int = 3) -> None:
        import queue
        import threading

        if depth < 1:
            raise ValueError(f"depth={depth} must be at least 1")
        self.writer = writer
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self.seconds_writing = 0.0
        self._thread = threading.Thread(target=self._run, name="probe-batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None:
                continue  # drain: the caller sees the error at its next submit/close
            rows, features, layers, ready = item
            try:
                t0 = time.perf_counter()
                if ready is not None:
                    ready.synchronize()
                self.writer.write_batch(rows, {p: np.asarray(x) for p, x in features.items()}, layers=layers)
                self.seconds_writing += time.perf_counter() - t0
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(
        self,
        rows: Sequence[int],
        features: Mapping[str, Any],
        *,
        layers: Optional[Sequence[int]] = None,
        ready: Any = None,
    ) -> None:
        """Queue one batch (see `PartialWriter.write_batch` for the shapes); raises an earlier write's error."""
        self._raise_pending()
        self._queue.put((list(rows), dict(features), layers, ready))

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise the thread's error if it had one."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()
        self._raise_pending()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except BaseException as error:  # noqa: BLE001 - the caller's exception is the one to report
            logger.warning("writing a batch also failed: %s", error)
