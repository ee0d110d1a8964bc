"""Synthetic rows files for the gallery tests and bench/bench_gallery_rows.py, written by the real writer
(`probe.runs.rows.write_rows`) from stand-in scored pairs: N rows of coloured squares labelled by colour and
shape, and per pair mutual kNN lists whose overlap (so whose per-row value) depends on the colour."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
from PIL import Image

from probe.align.rows import RowAgreement
from probe.datasets.paired import PairedDataset, PairedRow
from probe.runs.rows import write_rows

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 30), "blue": (30, 30, 200), "gray": (120, 120, 120)}
SHAPES = ("square", "disc", "bar")
IMAGES = 24  # distinct image files, reused across rows (so 50,000 rows need 24 files)


def squares(root: Path, num_rows: int) -> PairedDataset:
    """`num_rows` rows whose image is one of IMAGES noisy 48x48 drawings in `root`: row i has colour
    list(COLOURS)[i % 4] and shape SHAPES[i % 3], captioned with both and its number."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    files = []
    for j in range(IMAGES):
        colour, shape = names[j % 4], SHAPES[j % 3]
        img = np.full((48, 48, 3), 245.0)
        yy, xx = np.mgrid[:48, :48]
        mask = {"square": (abs(yy - 24) < 14) & (abs(xx - 24) < 14), "disc": (yy - 24) ** 2 + (xx - 24) ** 2 < 256}
        img[mask.get(shape, abs(yy - 24) < 6)] = COLOURS[colour]
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        files.append(root / f"{j}.png")
        Image.fromarray(img).save(files[-1])
    rows = tuple(
        PairedRow(
            id=f"r{i}",
            image=files[i % IMAGES],
            caption=f"a {names[i % 4]} {SHAPES[i % 3]} number {i}",
            labels={"colour": names[i % 4], "shape": SHAPES[i % 3]},
        )
        for i in range(num_rows)
    )
    return PairedDataset(name="squares", source=str(root), rows=rows)


def scored_pair(vision: str, text: str, *, num_rows: int, k: int, shared: Sequence[int], seed: int) -> SimpleNamespace:
    """A stand-in for a scored AlignPair with per-row mutual kNN (and a `cka` copy): row i's two lists share
    exactly `shared[colour of i]` + noise in 0..1 rows, so its value is that over k."""
    rng = np.random.default_rng(seed)
    offsets = rng.permutation(np.arange(1, num_rows))[: 2 * k]  # distinct, never the row itself
    rows = np.arange(num_rows)[:, None]
    vision_lists = (rows + offsets[None, :k]) % num_rows
    common = np.clip(np.asarray(shared)[np.arange(num_rows) % 4] + rng.integers(0, 2, num_rows), 0, k)
    slot = np.arange(k)[None, :]
    text_lists = np.where(slot < common[:, None], vision_lists, (rows + offsets[None, k:]) % num_rows)
    scores = common / k
    agreement = {
        metric: RowAgreement(
            metric=metric,
            pair=(1, 2),
            scores=scores.astype(np.float64),
            first_neighbours=vision_lists.astype(np.int32),
            second_neighbours=text_lists.astype(np.int32),
        )
        for metric in ("mutual_knn", "cka")
    }
    metrics = {
        m: SimpleNamespace(chance_level=k / (num_rows - 1), chance_source="exact", best_score=float(scores.mean()))
        for m in agreement
    }
    return SimpleNamespace(
        vision_name=vision,
        text_name=text,
        vision=SimpleNamespace(layers=[0, 3, 6]),
        text=SimpleNamespace(layers=[0, 2, 4]),
        report=SimpleNamespace(rows=agreement, metrics=metrics),
    )


def write_fake_rows(run_dir: Path, data: PairedDataset, pairs: Sequence[tuple[str, str, str]], *, k: int = 10) -> Path:
    """`run_dir/rows.h5` for `pairs` ((vision, text, role)) scored on `data`; a control shares fewer rows."""
    entries = []
    for i, (vision, text, role) in enumerate(pairs):
        shared = (8, 4, 2, 0) if role == "model" else (3, 1, 1, 0)
        entries.append((scored_pair(vision, text, num_rows=len(data), k=k, shared=shared, seed=i), role))
    return write_rows(run_dir, entries, data=data, max_pixels=1 << 24)
