"""OS locks on cache entries: `flock` through the `filelock` package, released by the kernel when the holder dies.

A PID written to a file outlives its process (and the PID is reused); an flock does not: no lock is ever stale.
Each cache entry `<final>.h5` has lock files next to it, never inside the `.partial/` folder (which assembly
removes): the *entry lock* `<final>.h5.lock`, held briefly while the folder is set up, cleaned, assembled or
removed, and one *shard lock* `<final>.h5.r<rank>of<world>.lock` per row shard, held for the whole extraction of
that shard, so a second process asking for the same rows waits for the first and then reuses its cache.

The holder writes who it is (pid, host, since when) into the lock file, so a waiter can say whom it waits for.
Lock files are empty of meaning otherwise and stay in place on release (waiters must share the inode);
`probe cache rm` removes them with their entry, while holding them.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from probe.errors import CacheError, describe_os_error
from probe.log import logger

LOCK_SUFFIX = ".lock"


def entry_lock_path(final: Path) -> Path:
    """The entry lock of the cache at `final`: `<final>.lock`."""
    return final.with_name(final.name + LOCK_SUFFIX)


def shard_lock_path(final: Path, *, rank: int, world: int) -> Path:
    """The lock held while shard `rank` of `world` extracts rows for the cache at `final`."""
    return final.with_name(f"{final.name}.r{rank}of{world}{LOCK_SUFFIX}")


def lock_files(final: Path) -> list[Path]:
    """Every lock file of the cache entry at `final` (entry lock and shard locks)."""
    return sorted(p for p in final.parent.glob(f"{final.name}*{LOCK_SUFFIX}") if p.name.startswith(final.name + "."))


def _owner(lock_file: Path) -> str:
    try:
        text = lock_file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return text or "another process"


def _new_lock(lock_file: Path):
    from filelock import FileLock

    # thread_local=False: the lock is a process-wide fact (the fork that assembles inherits it).
    return FileLock(str(lock_file), thread_local=False)


@contextmanager
def hold(lock_file: Path, *, what: str) -> Iterator[None]:
    """Hold the flock on `lock_file`, waiting (and logging whom for) while another process holds it.

    `what` says what the lock protects, for the log line. OSError creating the lock file -> CacheError.
    """
    from filelock import Timeout

    lock = _new_lock(lock_file)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("waiting for %s, which is %s (lock %s)", _owner(lock_file), what, lock_file)
            t0 = time.monotonic()
            lock.acquire()
            logger.warning("lock %s free after %.1f s; continuing", lock_file.name, time.monotonic() - t0)
    except OSError as exc:
        raise CacheError(
            describe_os_error(exc, doing=f"creating lock file {lock_file}", folder=lock_file.parent)
        ) from None
    try:
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            fd = os.open(lock_file, os.O_WRONLY)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # who holds it is information only; the flock is what protects
        yield
    finally:
        lock.release()


def held_by_other(lock_file: Path) -> str | None:
    """Who holds `lock_file` now ("pid ... on ... since ..."), or None when it is free (or absent)."""
    from filelock import Timeout

    if not lock_file.exists():
        return None
    lock = _new_lock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return _owner(lock_file)
    except OSError:
        return None  # cannot even open it (read-only folder): nobody can be holding it for writing there
    lock.release()
    return None


@contextmanager
def hold_all_or_none(files: list[Path]) -> Iterator[str | None]:
    """Try to take every lock in `files` at once without waiting; yield None when all are held by us, else
    the owner of the first busy one (and hold nothing)."""
    from filelock import Timeout

    taken = []
    busy: str | None = None
    try:
        for f in files:
            lock = _new_lock(f)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                busy = _owner(f)
                break
            except OSError:
                continue
            taken.append(lock)
        if busy is not None:
            for lock in reversed(taken):
                lock.release()
            taken.clear()
        yield busy
    finally:
        for lock in reversed(taken):
            lock.release()
