"""Results JSON: one file per `probe align` / `probe linear` / `probe demo` run (schema in docs/results.md).

Top-level keys: `schema_version`, `command`, `created`, `settings` (every option as used), `inputs` (per
model: alias, hub id, revision, cache file, cache key, extraction provenance), `dataset` (name, rows,
fingerprint), `results` (the command's own section), `provenance` (package versions, git revision, date).

`to_jsonable` turns what probe computes into JSON values: for these files, and, exactly, for the score cache
(`probe.runs.score_cache`, read back by `probe.runs.typed_json`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from probe.errors import write_atomic

SCHEMA_VERSION = 1


class TypedJsonError(ValueError):
    """A value the exact encoding cannot hold, or data that does not decode to the declared type (damaged or
    tampered)."""


# The exact encoding's tagged objects (read back by probe.runs.typed_json) and the array dtypes it stores as raw
# bytes: booleans and numbers (object or string arrays could hold anything).
DATACLASS_TAG = "__dataclass__"
NDARRAY_TAG = "__ndarray__"
FLOAT_TAG = "__float__"
ARRAY_KINDS = "biufc"


def class_name(cls: type) -> str:
    """The dotted name a dataclass is stored under in the exact encoding: module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


def to_jsonable(obj: Any, *, exact: bool = False) -> Any:
    """`obj` as plain JSON types (dict with str keys, list, str, int, float, bool, None). The one JSON converter
    in probe, in one of two encodings.

    Default (results files, provenance, model identities), for people and other tools: objects with a `to_dict`
    (result dataclasses) through it; numpy/torch scalars and arrays as numbers and nested lists; enums as their
    value; paths, and any other object, as str(); dict keys as str(). Non-finite floats become None so that the
    file is strict JSON.

    `exact=True` (the score cache), which `probe.runs.typed_json.from_json` decodes to an equal value: dataclasses
    as {"__dataclass__": "module.QualName", "fields": {init field: value}}; floats as Python's shortest round-trip
    repr, non-finite ones as {"__float__": "nan" | "inf" | "-inf"}; numpy arrays of bool/integer/float/complex
    dtype as {"__ndarray__": {"dtype", "shape", "data": base64 of the little-endian bytes}}; numpy scalars and
    enums as the Python value; dict keys str or int (or an enum of those). Anything else (paths, sets, object
    arrays, tensors) raises TypedJsonError.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if exact and isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, exact=True)
    if isinstance(obj, int):
        return int(obj) if exact else obj
    if not exact and hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isfinite(value):
            return value
        return {FLOAT_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")} if exact else None
    if isinstance(obj, np.ndarray):
        return _array_record(obj) if exact else to_jsonable(obj.tolist())
    if exact and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: to_jsonable(getattr(obj, f.name), exact=True) for f in dataclasses.fields(obj) if f.init}
        return {DATACLASS_TAG: class_name(type(obj)), "fields": fields}
    if isinstance(obj, dict):
        return {_json_key(k, exact=exact): to_jsonable(v, exact=exact) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, exact=exact) for v in obj]
    if exact:
        raise TypedJsonError(f"cannot store a value of type {type(obj).__name__}")
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    enum_value = getattr(obj, "value", None)
    if isinstance(enum_value, (int, str)):
        return enum_value
    return str(obj)


def _json_key(key: Any, *, exact: bool) -> str:
    """A dict key as JSON's str; in the exact encoding only str and int keys (or enums of them), which decode."""
    if not exact:
        return str(key)
    if isinstance(key, enum.Enum):
        key = key.value
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise TypedJsonError(f"cannot store a dict key of type {type(key).__name__} (only str and int)")
    return str(key)


def _array_record(array: np.ndarray) -> dict[str, Any]:
    """The exact encoding of a numpy array: dtype, shape and its little-endian bytes in base64."""
    if array.dtype.kind not in ARRAY_KINDS:
        raise TypedJsonError(f"cannot store an array of dtype {array.dtype} (only bool and numeric arrays)")
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {
        NDARRAY_TAG: {"dtype": dtype.str, "shape": list(array.shape), "data": base64.b64encode(data).decode("ascii")}
    }


def cache_input_record(cache: Any) -> dict[str, Any]:
    """What the results file records about one input cache (`probe.features.cache.FeatureCache`)."""
    model = cache.key.get("model", {})
    return {
        "model": model.get("name"),
        "hub_id": model.get("hub_id"),
        "revision": model.get("revision"),
        "modality": cache.modality,
        "pool": list(cache.pools),
        "layers": list(cache.layers),
        "hidden_size": cache.hidden_size,
        "cache_file": str(cache.path),
        "cache_key": cache.key,
        "extraction": cache.provenance,
    }


def write_results(
    output_dir: Path,
    *,
    command: str,
    settings: dict[str, Any],
    inputs: list[dict[str, Any]],
    dataset: dict[str, Any],
    results: Any,
    filename: Optional[str] = None,
) -> Path:
    """Write the results JSON into `output_dir` atomically and return its path (`<command>-<UTC time>.json`)."""
    from probe.provenance import provenance

    now = _dt.datetime.now(_dt.timezone.utc)
    record = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "created": now.isoformat(timespec="seconds"),
        "settings": settings,
        "inputs": inputs,
        "dataset": dataset,
        "results": results,
        "provenance": provenance(),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (filename or f"{command}-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    serial = 1
    while filename is None and path.exists():  # two runs in one second keep both files
        serial += 1
        path = out / f"{command}-{now.strftime('%Y%m%dT%H%M%SZ')}-{serial}.json"
    return write_atomic(path, json.dumps(to_jsonable(record), indent=1, allow_nan=False))


# --- reading results back -------------------------------------------------------------------------------------

RESULT_COMMANDS = ("align", "linear", "demo")


def read_results(path: Path) -> dict[str, Any]:
    """The record of one results JSON file, checked: strict JSON, a known `command`, and a `schema_version`
    this probe reads (1 up to SCHEMA_VERSION). Raises InputError naming the file and what to do otherwise."""
    from probe.errors import InputError

    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read results file {path}: {exc}") from None
    if not isinstance(record, dict) or "schema_version" not in record or record.get("command") not in RESULT_COMMANDS:
        raise InputError(
            f"{path} is not a probe results file (no schema_version, or command not one of "
            f"{', '.join(RESULT_COMMANDS)}): pass the JSON written by probe align, linear or demo."
        )
    version = record["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{path}: schema_version {version!r} is not a version probe ever wrote (1..{SCHEMA_VERSION}).")
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path} has schema_version {version}, written by a newer probe; reading it needs a probe "
            f"that reads schema_version {version} (this one reads up to {SCHEMA_VERSION}): upgrade probe."
        )
    return record


def _is_results_file(path: Path) -> bool:
    """Cheap test used when walking folders: a `<command>-*.json` file whose top level holds schema_version."""
    if path.name.split("-", 1)[0] not in RESULT_COMMANDS:
        return False
    try:
        with path.open("rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return b'"schema_version"' in head


def find_results(paths: Any) -> list[Path]:
    """Results files named by `paths` (one path or several; files, or folders searched recursively for
    `align-*.json`, `linear-*.json` and `demo-*.json`), sorted and without duplicates. A file named directly is
    always returned (read_results then checks it); InputError for a missing path or when nothing is found."""
    from probe.errors import InputError

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no results path given: pass results JSON files or the folders holding them.")
    found: dict[Path, None] = {}
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if f.is_file() and _is_results_file(f):
                    found.setdefault(f.resolve())
        elif p.is_file():
            found.setdefault(p.resolve())
        else:
            raise InputError(f"results path {p} does not exist: pass a results JSON file or a folder holding some.")
    if not found:
        raise InputError(
            f"no results files (align-*.json, linear-*.json, demo-*.json) under {', '.join(map(str, items))}."
        )
    return sorted(found)
