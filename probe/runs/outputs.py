"""Run folders: every `probe align` / `linear` / `demo` run writes into a folder of its own, never into another
run's files.

`<output>/<command>-<UTC time>[-n]/` is created exclusively (two runs started in the same second get `-2`,
`-3`, ...), holds the results JSON, the run's PNGs and `command.txt` (the command line that made it), and
`<output>/latest` is a symbolic link to the newest completed run, replaced atomically. Old runs are never
touched. Every file in a run folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
import uuid
from pathlib import Path

from probe.errors import CacheError, describe_os_error, write_atomic

LATEST = "latest"


def new_run_folder(output: Path, command: str) -> Path:
    """Create and return a fresh run folder for `command` under `output` (created if missing)."""
    output = Path(output)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        output.mkdir(parents=True, exist_ok=True)
        for serial in range(1, 1000):
            folder = output / (f"{command}-{stamp}" if serial == 1 else f"{command}-{stamp}-{serial}")
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            write_atomic(folder / "command.txt", shlex.join(sys.argv) + "\n")
            return folder
    except OSError as exc:
        raise CacheError(describe_os_error(exc, doing=f"creating a run folder in {output}", folder=output)) from None
    raise CacheError(f"{output} already holds 999 {command} runs started at {stamp}; use another output folder")


def point_latest(output: Path, run_folder: Path) -> None:
    """Make `<output>/latest` a relative symbolic link to `run_folder`, replacing the old link atomically."""
    link = Path(output) / LATEST
    tmp = link.with_name(f".{LATEST}.{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(run_folder.name, tmp)
        os.replace(tmp, link)
    except OSError:  # a filesystem without symlinks: the run folders alone still say everything
        tmp.unlink(missing_ok=True)
