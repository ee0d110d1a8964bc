"""Project exceptions, and the file-system faults they describe.

Every error a user can cause (bad flag, bad file, unknown model) is a `ProbeError` whose message says what
is wrong and what to do. The CLI prints it as one red line and exits with code 2 (with its debug option, the
traceback too). Writes that a fault could cut short go through `write_atomic`, whose OSError `describe_os_error`
turns into that one line.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Union


class ProbeError(Exception):
    """An error the user can act on. The message names the file or flag and the fix."""


class InputError(ProbeError):
    """Bad user input: a flag value, a manifest, an image, a dataset path."""


class ModelError(ProbeError):
    """A model that cannot be found or loaded."""


class CacheError(ProbeError):
    """A feature cache that is missing, incomplete, corrupt or not paired with another."""


def human_bytes(n: float) -> str:
    """A byte count for people, in decimal units as disks are sold: 512 B, 3.4 MB, 12.7 GB. The one byte
    formatter in probe (errors, `probe cache ls`, `probe plan`)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def describe_os_error(exc: OSError, *, doing: str, folder: object, need_bytes: int | None = None) -> str:
    """One line for an OSError while writing under `folder`: what failed, why, the free space there and the fix.

    `doing` says what was being done ("writing batch file X"); `need_bytes` is how much the write needed,
    when known. Used for disk-full (ENOSPC, EDQUOT, EFBIG) and permission (EACCES, EPERM, EROFS) faults.
    """
    import errno
    import shutil
    from pathlib import Path

    place = Path(str(folder))
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = f"{human_bytes(shutil.disk_usage(place).free)} free on the filesystem of {place}"
    except OSError:
        free = f"free space on {place} unknown"
    need = f", about {human_bytes(need_bytes)} needed" if need_bytes else ""
    code = errno.errorcode.get(exc.errno or 0, "error")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {place} writable or pass another cache_dir="
    else:
        fix = "free some space (or choose cache_dir= on a larger disk) and re-run: finished work is kept"
    return f"{doing} failed: {exc.strerror or exc} ({code}); {free}{need}; {fix}"


def write_atomic(path: Path, data: Union[str, bytes, Callable[[Path], object]], *, durable: bool = False) -> Path:
    """Write `data` to `path` whole or not at all; return `path`. The one way probe writes a file.

    `data`: text (UTF-8), bytes, or a function that writes the file at the path it is given (`fig.savefig`,
    `frame.to_csv`). It goes to a unique temporary name beside `path` (`.NAME.<hex>.tmp`, which `probe cache`
    recognises as stale), then `os.replace` puts it in place, so a killed process leaves the old file or the new
    one, never a part. The parent folder is created. `durable`: also fsync the file before the rename and the
    folder after it, so a power cut keeps it too (caches, their keys, score entries). On any error the temporary
    file is removed and the error raised as it is (callers say what failed, e.g. with `describe_os_error`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(
                tmp, "w" if isinstance(data, str) else "wb", **({"encoding": "utf-8"} if isinstance(data, str) else {})
            ) as fh:
                fh.write(data)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fsync_path(path: Path) -> None:
    """fsync the file or folder at `path` (a folder: the names renamed into it survive a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
