"""Writing a run's per-row agreement file (`rows.h5`; the format is `probe.report.rows`'s docstring).

`write_rows` takes the scored pairs of an alignment run whose reports carry per-row agreement
(`score_alignment(per_row=True)`) and the dataset they were scored on, and writes one HDF5 file: the dataset's
ids, captions and labels once, each pair's per-metric values and neighbour lists, and small JPEG thumbnails of
the rows a report's gallery shows (the most and least agreeing rows of each pair and their neighbours), so that
`probe report` and `probe explain` need neither the dataset nor its images. Arrays are written in blocks of
BLOCK_ROWS rows; what is held in memory is what the reports already hold (N values and 2 N k row numbers per
pair and metric).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from probe.datasets.paired import PairedDataset
from probe.errors import CacheError, describe_os_error, write_atomic
from probe.log import logger
from probe.report.rows import (
    FILE_NAME,
    FORMAT,
    FORMAT_VERSION,
    GALLERY_NEIGHBOURS,
    GALLERY_ROWS,
    extremes,
    gallery_metric,
)

BLOCK_ROWS = 1 << 16
THUMBNAIL_PIXELS = 96
THUMBNAIL_QUALITY = 80


def gallery_rows(rows: Any) -> set[int]:
    """The row numbers a gallery of one pair's `RowAgreement` shows: its extremes and their neighbours."""
    top, bottom = extremes(rows.scores, GALLERY_ROWS)
    shown = set(top) | set(bottom)
    for row in top[:GALLERY_NEIGHBOURS] + bottom[:GALLERY_NEIGHBOURS]:
        shown.update(int(n) for n in rows.first_neighbours[row])
        shown.update(int(n) for n in rows.second_neighbours[row])
    return shown


def thumbnail(path: Optional[Path], *, max_pixels: int) -> Optional[bytes]:
    """A JPEG of at most THUMBNAIL_PIXELS a side of the image at `path` (None without one, or if unreadable)."""
    if path is None:
        return None
    from probe.datasets.images import load_rgb

    try:
        image = load_rgb(path, max_pixels=max_pixels)
    except (OSError, ValueError) as exc:  # a gallery without one picture beats a run that fails at its end
        logger.warning("no thumbnail for %s: %s", path, exc)
        return None
    image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def _write_strings(group: Any, name: str, values: Sequence[str]) -> None:
    import h5py

    dataset = group.create_dataset(name, shape=(len(values),), dtype=h5py.string_dtype("utf-8"))
    for start in range(0, len(values), BLOCK_ROWS):
        dataset[start : start + BLOCK_ROWS] = list(values[start : start + BLOCK_ROWS])


def _write_array(group: Any, name: str, values: np.ndarray) -> None:
    dataset = group.create_dataset(name, shape=values.shape, dtype=values.dtype)
    for start in range(0, len(values), BLOCK_ROWS):
        dataset[start : start + BLOCK_ROWS] = values[start : start + BLOCK_ROWS]


def write_rows(
    run_dir: Path, pairs: Iterable[tuple[Any, str]], *, data: PairedDataset, max_pixels: int
) -> Optional[Path]:
    """Write `run_dir/rows.h5` from `pairs` ((AlignPair, role) with role "model", "control" or "ceiling"; only
    those whose report has rows), the rows of `data` they were scored on. Returns its path, None when no pair
    has rows. CacheError (one line) when the file cannot be written."""
    import h5py

    entries = [(pair, role) for pair, role in pairs if pair.report.rows]
    if not entries:
        return None
    shown: set[int] = set()
    for pair, _ in entries:
        shown |= gallery_rows(pair.report.rows[gallery_metric(pair.report.rows)])
    images = {row: thumbnail(data.rows[row].image, max_pixels=max_pixels) for row in sorted(shown)}
    k = next(iter(entries[0][0].report.rows.values())).first_neighbours.shape[1]

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, num_rows=len(data), dataset=data.name, k=k)
            _write_strings(f, "ids", data.ids)
            _write_strings(f, "captions", [c or "" for c in data.captions])
            labels = f.create_group("labels")
            for field in data.label_fields:
                _write_strings(labels, field, data.labels(field))
            thumbnails = f.create_group("thumbnails")
            for row, jpeg in images.items():
                if jpeg is not None:
                    thumbnails.create_dataset(str(row), data=np.frombuffer(jpeg, dtype=np.uint8))
            for index, (pair, role) in enumerate(entries):
                group = f.create_group(f"pairs/{index}")
                group.attrs.update(vision=pair.vision_name, text=pair.text_name, role=role)
                for name, rows in pair.report.rows.items():
                    m = pair.report.metrics[name]
                    a, b = rows.pair
                    chance = m.chance_level if m.chance_source == "exact" else float("nan")
                    metric = group.create_group(name)
                    metric.attrs.update(
                        vision_state=pair.vision.layers[a],
                        text_state=pair.text.layers[b],
                        score=m.best_score,
                        chance=chance,
                    )
                    _write_array(metric, "scores", np.asarray(rows.scores, dtype=np.float64))
                    _write_array(metric, "vision_neighbours", np.asarray(rows.first_neighbours, dtype=np.int32))
                    _write_array(metric, "text_neighbours", np.asarray(rows.second_neighbours, dtype=np.int32))

    path = Path(run_dir) / FILE_NAME
    try:
        return write_atomic(path, write)
    except OSError as exc:
        raise CacheError(describe_os_error(exc, doing=f"writing {path}", folder=path.parent)) from None
