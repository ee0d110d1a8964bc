"""The paired dataset: rows of (id, image, caption, labels), and its fingerprint.

Every source (a JSONL/CSV manifest, a folder of images with a captions file, a hub dataset materialised on
disk, the rendered OpenMoji set) ends up as a `PairedDataset`, so the rest of the pipeline has one shape
to deal with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Optional

from probe.errors import InputError


@dataclass(frozen=True)
class PairedRow:
    """One image/caption pair. `image` is an absolute path (or None), `labels` the manifest's other fields."""

    id: str
    image: Optional[Path]
    caption: Optional[str]
    labels: dict[str, str] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_text(text: Optional[str]) -> str:
    return hashlib.sha256(("" if text is None else text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PairedDataset:
    """A named, ordered list of `PairedRow`s read from `source` (a manifest file or folder)."""

    name: str
    source: str
    rows: tuple[PairedRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    @property
    def captions(self) -> list[Optional[str]]:
        return [r.caption for r in self.rows]

    @property
    def label_fields(self) -> list[str]:
        """Label field names present in every row, in manifest order."""
        if not self.rows:
            return []
        common = set(self.rows[0].labels)
        for r in self.rows[1:]:
            common &= set(r.labels)
        return [k for k in self.rows[0].labels if k in common]

    def labels(self, field_name: str) -> list[str]:
        """The values of label `field_name` for every row; InputError naming the field when a row lacks it."""
        missing = [r.id for r in self.rows if field_name not in r.labels]
        if missing:
            known = ", ".join(self.label_fields) or "none"
            raise InputError(
                f"label field {field_name!r} is missing for {len(missing)} of {len(self.rows)} rows of dataset "
                f"{self.name!r} (first: {missing[0]}); fields present in every row: {known}"
            )
        return [r.labels[field_name] for r in self.rows]

    def head(self, limit: Optional[int]) -> "PairedDataset":
        """The first `limit` rows (all rows when None). The name is unchanged; the fingerprint changes."""
        if limit is None or limit >= len(self.rows):
            return self
        if limit < 1:
            raise InputError(f"limit={limit} must be at least 1")
        return replace(self, rows=self.rows[:limit])

    @cached_property
    def image_hashes(self) -> list[str]:
        """sha256 of each row's image file bytes ('' where a row has no image).

        Hashed by a thread pool: hashlib releases the GIL on large buffers, so reading and hashing thousands
        of files overlaps (computed once per PairedDataset; every run computes it again, as files may change).
        """
        import os
        from concurrent.futures import ThreadPoolExecutor

        def one(r) -> str:
            return sha256_file(r.image) if r.image is not None else ""

        if len(self.rows) < 64:
            return [one(r) for r in self.rows]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(one, self.rows, chunksize=32))

    @cached_property
    def caption_hashes(self) -> list[str]:
        """sha256 of each row's caption (UTF-8)."""
        return [_sha256_text(r.caption) for r in self.rows]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the ordered ids and per-row content hashes: any change of rows, order or content changes it."""
        h = hashlib.sha256()
        for rid, ih, ch in zip(self.ids, self.image_hashes, self.caption_hashes):
            h.update(f"{rid}\t{ih}\t{ch}\n".encode("utf-8"))
        return h.hexdigest()

    def require_images(self) -> None:
        """InputError when any row has no image (vision models need one per row)."""
        for i, r in enumerate(self.rows):
            if r.image is None:
                raise InputError(
                    f"row {i + 1} (id {r.id!r}) of {self.source} has no image; a vision model needs one per row"
                )

    def require_captions(self) -> None:
        """InputError naming the first row without a caption (text models need one per row)."""
        for i, r in enumerate(self.rows):
            if r.caption is None or not r.caption.strip():
                raise InputError(
                    f"row {i + 1} (id {r.id!r}) of {self.source} has no caption; a text model needs a caption "
                    f"in every row: fill the 'caption' field or drop the row"
                )
