"""Checks a command runs before any work: what would otherwise fail only after minutes of extraction and scoring.

`check_run_request` (the first call of `run_align` / `run_linear`): the metric names, and that `--output` and
`--cache-dir` are folders this process can write to (or create). `check_label_fields` (once the dataset is
open, before any model is loaded): every requested label field exists in every row, and `words` has captions.
Each failure is an InputError naming the argument (`cache_dir=`; the CLI shows --cache-dir) and the fix. Nothing is created: writability is tried with a
temporary file in the nearest existing folder, removed at once (permission bits alone mislead: root ignores
them, and read-only or virtual filesystems refuse writes whatever the bits say).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from probe.datasets import PairedDataset
from probe.errors import InputError


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
        raise InputError(f"{param}={str(path)!r} is an existing file, not a folder; pass a folder (it is created if missing)")
    anchor = _nearest_existing(path)
    if anchor != path and not anchor.is_dir():
        raise InputError(f"{param}={str(path)!r} cannot be created: {anchor} is a file, not a folder")
    try:
        fd, probe_file = tempfile.mkstemp(prefix=".probe-write-check-", dir=anchor)
    except OSError as exc:
        where = "in it" if anchor == path else f"in {anchor}, where it would be created"
        raise InputError(f"{param}={str(path)!r} is not writable: cannot create a file {where} ({exc.strerror or exc}); "
                         f"pass a folder you can write to") from None
    os.close(fd)
    os.unlink(probe_file)


def check_run_request(*, cache_dir: Path, output: Optional[Path], metrics: Sequence[str] = ()) -> None:
    """Everything about an analysis command's request that can be checked without data or models: the
    alignment metric names (if any), and writable `--cache-dir` and `--output` (if given) folders."""
    if metrics:
        from probe.align.specs import metric_specs

        metric_specs(tuple(metrics))  # InputError with suggestions for unknown names
    check_writable_dir(cache_dir, param="cache_dir")
    if output is not None:
        check_writable_dir(output, param="output")


def check_label_fields(data: PairedDataset, labels: Sequence[str], *, words: str) -> None:
    """InputError naming the first requested label field some row lacks (`words`: a row without a caption)."""
    for name in labels:
        if name == words:
            data.require_captions()
        else:
            data.labels(name)
