"""Materialise a Hugging Face hub dataset into a local manifest folder (images + manifest.jsonl).

Two ways in, both needing the hub once: `datasets.load_dataset` (for datasets stored as data files, such as
PRH's `minhuh/prh`), or the hub's own parquet export of a dataset (branch `refs/convert/parquet`, laid out as
`<config>/<split>/<NNNN>.parquet`), read with pyarrow: the way to reach a loading-script dataset, which
`datasets` >= 4 refuses to run and 3.x runs only with `trust_remote_code=True`. `pip install 'probe[hub]'`
installs both. Once materialised, the folder is an ordinary manifest dataset and works offline.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from probe.datasets.manifest import write_manifest
from probe.errors import InputError, write_atomic
from probe.log import logger


@dataclass(frozen=True)
class HubDatasetSpec:
    """Where a paired dataset lives on the hub and which fields hold its image and caption."""

    hub_id: str
    revision: Optional[str]
    split: str
    image_field: str = "image"
    caption_field: str = "text"
    caption_index: Optional[int] = None  # caption = field[index] when the field is a list (PRH: text[0])
    id_field: Optional[str] = None  # None: ids are the zero-padded row numbers
    label_fields: tuple[str, ...] = ()
    # Set: read the hub's parquet export of this config (revision PARQUET_EXPORT) instead of `datasets`.
    parquet_config: Optional[str] = None
    rows: Optional[int] = None  # set: any other row count is refused (a partial or changed export)


PARQUET_EXPORT = "refs/convert/parquet"
# What every "cannot get it" message ends with: the offline way on.
OFFLINE_HINT = "Without the hub, use dataset=openmoji (bundled, no network) or a local manifest."


def _image_bytes(value: Any) -> tuple[bytes, str]:
    """PNG/JPEG bytes and a suffix from what `datasets` yields for an image column (PIL image or dict)."""
    if isinstance(value, dict) and value.get("bytes"):
        data = value["bytes"]
        return data, ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"
    if hasattr(value, "save"):
        buf = io.BytesIO()
        value.convert("RGB").save(buf, format="PNG")
        return buf.getvalue(), ".png"
    raise InputError(f"cannot read an image from a value of type {type(value).__name__}")


def materialise_rows(records: Iterable[dict[str, Any]], *, spec: HubDatasetSpec, root: Path) -> Path:
    """Write `records` (dicts as `datasets` yields them) as images + manifest.jsonl under `root`.

    Returns the manifest path. The manifest is written last and atomically, so a folder without it is an
    interrupted download that the next call redoes.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i, rec in enumerate(records):
        rid = str(rec[spec.id_field]) if spec.id_field else f"{i:06d}"
        caption = rec.get(spec.caption_field)
        if isinstance(caption, (list, tuple)):
            caption = caption[spec.caption_index or 0] if caption else None
        data, suffix = _image_bytes(rec[spec.image_field])
        rel = f"images/{rid}{suffix}"
        (root / rel).write_bytes(data)
        row = {"id": rid, "image": rel, "caption": caption}
        row.update({f: str(rec[f]) for f in spec.label_fields if rec.get(f) is not None})
        out.append(row)
    if spec.rows is not None and len(out) != spec.rows:
        raise InputError(
            f"hub dataset {spec.hub_id} gave {len(out)} rows, not the {spec.rows} expected: the hub's copy is "
            f"partial or has changed, so it is not used. {OFFLINE_HINT}"
        )
    return write_manifest(root / "manifest.jsonl", out)


def parquet_export_files(folder: Path, *, config: str, split: str) -> list[Path]:
    """The parquet files of `config`/`split`, in order, in a folder laid out like the hub's parquet export.

    The export holds `<config>/<split>/0000.parquet`, `0001.parquet`, ...; a split too large to convert
    whole is exported as `<config>/partial-<split>/`, which is refused (it would silently drop rows).
    """
    files = sorted(Path(folder, config, split).glob("*.parquet"))
    if files:
        return files
    if any(Path(folder, config, f"partial-{split}").glob("*.parquet")):
        raise InputError(
            f"the hub's parquet export of {config}/{split} is partial (the hub converted only part of the split); "
            f"probe does not use a truncated dataset. {OFFLINE_HINT}"
        )
    raise InputError(
        f"no parquet files under {Path(folder, config, split)}: is {config!r}/{split!r} the right config/split?"
    )


def read_parquet_rows(files: Iterable[Path], *, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Rows of `files` in order as dicts (an image column as {"bytes", "path"}), a batch at a time."""
    import pyarrow.parquet as pq

    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()


def download_parquet_export(spec: HubDatasetSpec, *, name: str) -> Path:
    """Fetch `spec`'s parquet files from the hub's export (or the HF cache); the local snapshot folder.

    InputError, saying how to go on offline, when the hub cannot be reached and nothing is cached.
    """
    from huggingface_hub import snapshot_download

    config, split = spec.parquet_config, spec.split
    try:
        folder = snapshot_download(
            spec.hub_id,
            repo_type="dataset",
            revision=PARQUET_EXPORT,
            allow_patterns=[f"{config}/{split}/*.parquet", f"{config}/partial-{split}/*.parquet"],
        )
    except Exception as exc:  # offline, unreachable, auth: the way on is the same
        raise InputError(
            f"could not download dataset {name!r} ({spec.hub_id}, parquet export {config}/{split}) from the Hugging "
            f"Face hub: {_first_line(exc)}. {OFFLINE_HINT}"
        ) from exc
    return Path(folder)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:300] if text else type(exc).__name__).rstrip(".")


def _require(module: str, *, package: str, name: str, spec: HubDatasetSpec, install: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise InputError(
            f"dataset {name!r} comes from the Hugging Face hub ({spec.hub_id}) and needs the {package!r} package: "
            f"{install} (or `pip install 'probe[hub]'`). {OFFLINE_HINT}"
        ) from None


def _write_source(root: Path, source: dict[str, Any]) -> None:
    """Record where the rows came from (hub id, revision, the commit it resolved to) beside the manifest."""
    write_atomic(root / "source.json", json.dumps(source, indent=1, sort_keys=True))


def materialise_hub_dataset(spec: HubDatasetSpec, *, root: Path, name: Optional[str] = None) -> Path:
    """Download `spec` into `root` once; later calls reuse the manifest. `name` is the registered name, for messages.

    With `spec.parquet_config` the rows come from the hub's parquet export (needs pyarrow), otherwise from
    `datasets.load_dataset` (needs datasets). Every failure is an InputError that names the offline fallback,
    dataset=openmoji.
    """
    root = Path(root)
    name = name or spec.hub_id
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    if spec.parquet_config is not None:
        _require("pyarrow.parquet", package="pyarrow", name=name, spec=spec, install="pip install pyarrow")
        logger.info("downloading %s (parquet export %s/%s) into %s", spec.hub_id, spec.parquet_config, spec.split, root)
        folder = download_parquet_export(spec, name=name)
        files = parquet_export_files(folder, config=spec.parquet_config, split=spec.split)
        # The export branch moves when the hub reconverts: keep the commit these rows come from. Written
        # before the manifest, which marks the folder complete.
        root.mkdir(parents=True, exist_ok=True)
        _write_source(
            root,
            {
                "hub_id": spec.hub_id,
                "revision": PARQUET_EXPORT,
                "commit": folder.name,
                "files": [f.relative_to(folder).as_posix() for f in files],
            },
        )
        return materialise_rows(read_parquet_rows(files), spec=spec, root=root)
    _require("datasets", package="datasets", name=name, spec=spec, install="pip install 'datasets>=2.18'")
    from datasets import load_dataset

    logger.info("downloading %s (revision %s, split %s) into %s", spec.hub_id, spec.revision, spec.split, root)
    try:
        ds = load_dataset(spec.hub_id, revision=spec.revision, split=spec.split)
    except Exception as exc:  # network, auth, missing revision: all end the same way for the user
        raise InputError(
            f"could not load dataset {name!r} ({spec.hub_id}, revision {spec.revision}) from the Hugging Face hub: "
            f"{_first_line(exc)}. {OFFLINE_HINT}"
        ) from exc
    return materialise_rows(ds, spec=spec, root=root)
