"""Materialise a Hugging Face hub dataset into a local manifest folder (images + manifest.jsonl).

Needs the `datasets` package (`pip install 'probe[hub]'`) and the hub. Once materialised, the folder is an
ordinary manifest dataset and works offline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from probe.datasets.manifest import write_manifest
from probe.errors import InputError
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
    return write_manifest(root / "manifest.jsonl", out)


def materialise_hub_dataset(spec: HubDatasetSpec, *, root: Path) -> Path:
    """Download `spec` with `datasets.load_dataset` into `root` once; later calls reuse the manifest."""
    manifest = Path(root) / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    try:
        import datasets  # noqa: F401  (optional dependency)
    except ImportError:
        raise InputError(
            f"dataset {spec.hub_id} comes from the Hugging Face hub and needs the 'datasets' package: "
            f"pip install 'datasets>=2.18'"
        ) from None
    from datasets import load_dataset

    logger.info("downloading %s (revision %s, split %s) into %s", spec.hub_id, spec.revision, spec.split, root)
    try:
        ds = load_dataset(spec.hub_id, revision=spec.revision, split=spec.split)
    except Exception as exc:  # network, auth, missing revision: all end the same way for the user
        raise InputError(
            f"could not load hub dataset {spec.hub_id} (revision {spec.revision}): {exc}. It needs the hub; on an "
            f"offline machine use 'openmoji' or a local manifest"
        ) from exc
    return materialise_rows(ds, spec=spec, root=Path(root))
