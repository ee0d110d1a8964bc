"""Measured extraction times, kept in the cache folder so `probe plan` can estimate from this machine's speed.

One small JSON file per finished extraction, `<cache_dir>/rates/<UTC time>-<pid>-<hex>.json`, each written
to a temporary name and renamed into place (concurrent runs never share a file, so nothing is rewritten or
locked). A record holds what the run measured and no more: the model name of the cache key, its modality
and dtype, the rows this run extracted, the wall seconds it took (model loading, forward passes and cache
writes together) and of those the seconds spent loading the model, the batch size, the device (`cuda:0`,
`cpu`) and the host name (`platform.node()`, so a cache folder shared between machines keeps each machine's
figures apart). `probe.runs.plan` turns records into an effective FLOP/s rate with the registry's parameter
counts.

`probe cache ls/verify/rm` look only under `<cache_dir>/features`; removing caches keeps their records
(they describe the machine, not the cache).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from probe.errors import write_atomic
from probe.log import logger

RATES_DIR = "rates"
RECORD_VERSION = 1


@dataclass(frozen=True)
class ExtractionRecord:
    """One finished extraction as measured (see the module docstring)."""

    model: str
    modality: str
    dtype: str
    rows: int
    seconds: float
    batch_size: int
    load_seconds: float
    device: str
    host: str
    date: str
    cache: Optional[str]  # the cache path relative to the cache folder (None: other shards still running)

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0].lower()


def record_extraction(cache_dir: Path, result: Any, *, device: str) -> Optional[Path]:
    """Record an extraction that did work. `result` is a `probe.features.extract.ExtractResult` (its `key`,
    `path`, `reused`, `rows_extracted`, `seconds`, `batch_size`, `load_seconds`); `device` the torch device it
    ran on. A reused cache or a run that extracted no row records nothing (returns None); otherwise returns the
    record's path.
    A record that cannot be written is logged and skipped: it never fails the extraction it describes."""
    if result.reused or result.rows_extracted <= 0 or result.seconds <= 0:
        return None
    cache_dir = Path(cache_dir)
    cache = None
    if result.path is not None:
        try:
            cache = str(Path(result.path).resolve().relative_to(cache_dir.resolve()))
        except ValueError:  # a cache outside the folder (not written by this probe): keep its full path
            cache = str(result.path)
    now = _dt.datetime.now(_dt.timezone.utc)
    record = {
        "version": RECORD_VERSION,
        "model": str(result.key["model"]["name"]),
        "modality": str(result.key["modality"]),
        "dtype": str(result.key["dtype"]),
        "rows": int(result.rows_extracted),
        "seconds": float(result.seconds),
        "batch_size": int(result.batch_size),
        "load_seconds": float(result.load_seconds),
        "device": str(device),
        "host": platform.node(),
        "date": now.isoformat(timespec="seconds"),
        "cache": cache,
    }
    folder = cache_dir / RATES_DIR
    name = f"{now.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.json"
    try:
        return write_atomic(folder / name, json.dumps(record, sort_keys=True) + "\n")
    except OSError as exc:
        logger.warning("could not record the extraction time in %s (%s); plans will not use it", folder, exc)
        return None


def _parse(data: Any) -> ExtractionRecord:
    """The record of a parsed JSON object; ValueError/KeyError/TypeError when it is not one."""
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise ValueError("not a version-1 record")
    rows, seconds = data["rows"], data["seconds"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        raise ValueError(f"rows={rows!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        raise ValueError(f"seconds={seconds!r}")
    text = {k: data[k] for k in ("model", "modality", "dtype", "device", "host", "date")}
    if not all(isinstance(v, str) for v in text.values()):
        raise TypeError("a text field is not a string")
    cache = data.get("cache")
    load = data.get("load_seconds") or 0.0
    if isinstance(load, bool) or not isinstance(load, (int, float)) or not 0 <= load <= seconds:
        raise ValueError(f"load_seconds={load!r}")
    return ExtractionRecord(
        rows=rows,
        seconds=float(seconds),
        batch_size=int(data.get("batch_size") or 0),
        load_seconds=float(load),
        cache=cache if isinstance(cache, str) else None,
        **text,
    )


def read_extractions(cache_dir: Path, *, host: Optional[str] = None) -> list[ExtractionRecord]:
    """The records under `cache_dir`, oldest first; only those of `host` when given (`platform.node()` for this
    machine). Identical records (one run recorded by two callers) count once. Unreadable or foreign files are
    skipped with one warning naming them (a plan never fails on them); `probe cache` leaves the folder alone, so
    delete such files by hand."""
    folder = Path(cache_dir) / RATES_DIR
    records, bad = [], []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = _parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            bad.append(path.name)
            continue
        if (host is None or record.host == host) and record not in records:  # the same run recorded twice counts once
            records.append(record)
    if bad:
        logger.warning("skipped %d unreadable extraction records in %s: %s", len(bad), folder, ", ".join(bad[:3]))
    return records
