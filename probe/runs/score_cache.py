"""A cache of computed scores (alignment reports, probe sweeps), so re-running an analysis on unchanged
inputs and settings reads the result instead of recomputing a permutation null.

The key holds the input caches' key hashes, every setting, the probe version and the fingerprint of probe's own
source (`probe.provenance.code_fingerprint`, so uncommitted edits count too), so new features, new settings or
new code all miss the cache. `refresh=True`
(`overwrite=always`) recomputes and replaces.

Entries are JSON files `<cache>/scores/<kind>/<digest>.json` in the exact encoding of `probe.results.to_jsonable`
(arrays as raw bytes, floats exactly), read back by `probe.runs.typed_json`, so a reused entry reproduces the
computed result bit for bit, and reading one never runs code (no pickle: a file placed there by someone else is
at worst refused). Each file names its format, kind, full key digest and result class; the class must be a
dataclass of the `probe` package. An entry that is unreadable, truncated, tampered with or of another format is
recomputed with one warning.
Writes go to a temporary name in the same folder, then `os.replace`, so a reader sees a whole entry or none;
a failed write (disk full, read-only folder) costs only the reuse: the computed value is returned with a warning.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from typing import Any, Callable, TypeVar

from probe.errors import write_atomic
from probe.features.format import key_hash
from probe.log import logger
from probe.results import TypedJsonError, class_name, to_jsonable
from probe.runs.typed_json import from_json

T = TypeVar("T")

FORMAT = "probe-score-cache"
FORMAT_VERSION = 1
SUFFIX = ".json"
# A stored result class: a dotted name inside the probe package, public identifiers only (no `__main__` or
# other underscore module whose import could do more than define things).
_CLASS_NAME = re.compile(r"probe(\.[A-Za-z][A-Za-z0-9_]*)+")


def score_path(cache_dir: Path, kind: str, digest: str) -> Path:
    """Where the entry of `kind` with key digest `digest` lives."""
    return Path(cache_dir) / "scores" / kind / f"{digest[:32]}{SUFFIX}"


def _result_class(name: Any) -> type:
    """The dataclass a stored entry names; TypedJsonError unless it is a dataclass defined in the probe package."""
    if not isinstance(name, str) or not _CLASS_NAME.fullmatch(name):
        raise TypedJsonError(f"result class {name!r} is not a class of the probe package")
    module_name, _, qualname = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError):
        raise TypedJsonError(f"result class {name!r} does not exist in this version of probe") from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module_name):
        raise TypedJsonError(f"{name!r} is not a result dataclass")
    return cls


def encode_entry(value: Any, *, kind: str, digest: str) -> str:
    """The JSON text of one entry holding `value` (a dataclass instance)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypedJsonError(f"score cache values must be dataclass instances, got {type(value).__name__}")
    record = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "key_digest": digest,
        "class": class_name(type(value)),
        "value": to_jsonable(value, exact=True),
    }
    return json.dumps(record, allow_nan=False, separators=(",", ":"))


def decode_entry(text: str, *, kind: str, digest: str) -> Any:
    """The value stored in entry `text` for (`kind`, `digest`); TypedJsonError (or ValueError) when the text is
    not such an entry."""
    record = json.loads(text)
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != FORMAT_VERSION:
        raise TypedJsonError(f"not a {FORMAT} v{FORMAT_VERSION} file")
    if record.get("kind") != kind or record.get("key_digest") != digest:
        raise TypedJsonError("the entry was written for another key (copied or renamed file)")
    return from_json(record.get("value"), _result_class(record.get("class")))


def _digest(key: dict[str, Any]) -> str:
    """The digest of an entry's `key` with the probe version and the fingerprint of its code."""
    from probe import __version__
    from probe.provenance import code_fingerprint

    return key_hash({"key": key, "probe": __version__, "code": code_fingerprint()})


def cached_file(cache_dir: Path, kind: str, key: dict[str, Any], out: Path, render: Callable[[Path], Path]) -> Path:
    """Write the file `render(out)` writes for `key` (a figure: its bytes a function of `key` and probe's code),
    or copy the bytes kept from an earlier render of the same key and code, under
    `<cache>/scores/<kind>/<digest><suffix of out>`. Bytes are only copied, never interpreted. Returns `out`."""
    out = Path(out)
    path = score_path(cache_dir, kind, _digest(key)).with_suffix(out.suffix)
    if path.is_file():
        try:
            return write_atomic(out, path.read_bytes())
        except OSError as exc:
            logger.warning("drawing %s again: the kept copy %s is unreadable (%s)", out.name, path, exc)
    out.parent.mkdir(parents=True, exist_ok=True)
    render(out)
    try:
        write_atomic(path, out.read_bytes())
    except OSError as exc:  # the figure stands; only its reuse is lost
        logger.warning("could not keep %s in %s (%s)", out.name, path.parent, getattr(exc, "strerror", None) or exc)
    return out


def cached_score(
    cache_dir: Path, kind: str, key: dict[str, Any], compute: Callable[[], T], *, refresh: bool = False
) -> T:
    """`compute()` (a dataclass instance), or its earlier result for the same `key` (a JSON-safe dict) and code
    version, read back equal to what was computed (arrays bit-equal)."""
    digest = _digest(key)
    path = score_path(cache_dir, kind, digest)
    if not refresh and path.is_file():
        try:
            value = decode_entry(path.read_text(encoding="utf-8"), kind=kind, digest=digest)
            logger.info("reusing %s scores computed earlier (%s)", kind, path.name)
            return value
        except (
            OSError,
            ValueError,
            RecursionError,
        ) as exc:  # damaged, truncated, tampered or foreign: recomputed, never trusted
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("recomputing %s scores: the cached entry %s is unreadable (%s)", kind, path, reason[:200])
    value = compute()
    try:
        write_atomic(path, encode_entry(value, kind=kind, digest=digest), durable=True)
    except (OSError, TypedJsonError) as exc:  # the result stands; only its reuse is lost
        logger.warning(
            "could not cache the %s scores in %s (%s); they will be recomputed next time",
            kind,
            path.parent,
            getattr(exc, "strerror", None) or exc,
        )
    return value
