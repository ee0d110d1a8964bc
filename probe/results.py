"""Results JSON: one file per `probe align` / `probe linear` / `probe demo` run (schema in docs/results.md).

Top-level keys: `schema_version`, `command`, `created`, `settings` (every option as used), `inputs` (per
model: alias, hub id, revision, cache file, cache key, extraction provenance), `dataset` (name, rows,
fingerprint), `results` (the command's own section), `provenance` (package versions, git revision, date).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

SCHEMA_VERSION = 1


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy/torch scalars and arrays, dataclasses (via to_dict), enums (their value),
    paths and tuples; any other object becomes its str(). The one JSON-safe converter in probe.

    Non-finite floats become None so that the file is strict JSON.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    enum_value = getattr(obj, "value", None)
    if isinstance(enum_value, (int, str)):
        return enum_value
    return str(obj)


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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_jsonable(record), indent=1, allow_nan=False))
    os.replace(tmp, path)
    return path
