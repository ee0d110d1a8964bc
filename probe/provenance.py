"""Provenance recorded with every cache and result: package versions, project git revision, date, host."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

_PACKAGES = ("probe", "torch", "transformers", "numpy", "scikit-learn", "h5py", "tokenizers", "gguf")


def package_versions() -> dict[str, Optional[str]]:
    """Installed versions of the packages that change numbers (None when not installed)."""
    out: dict[str, Optional[str]] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def git_revision() -> Optional[str]:
    """The project's git commit (with '-dirty' when the tree has changes), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


_CODE_FINGERPRINT: Optional[str] = None


def code_fingerprint() -> str:
    """sha256 (16 hex digits) of every .py file of the installed probe package, by relative path and content.

    Unlike the git revision it changes with uncommitted edits and exists outside a checkout, so a result
    cached by one version of the code is never served to another. Computed once per process (~100 files)."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        import hashlib

        package = Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_FINGERPRINT = digest.hexdigest()[:16]
    return _CODE_FINGERPRINT


def provenance(**extra: Any) -> dict[str, Any]:
    """A JSON-safe provenance record: versions, git revision, UTC date, python and platform, plus `extra`."""
    record: dict[str, Any] = {
        "packages": package_versions(),
        "git_revision": git_revision(),
        "code_fingerprint": code_fingerprint(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    record.update(extra)
    return record
