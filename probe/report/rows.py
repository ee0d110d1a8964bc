"""The per-row agreement file of a run (`rows.h5`, beside its results JSON), and reading it back.

Written by `probe.runs.rows.write_rows` when a run is asked for its rows (`probe align` with per-row logging,
always by `probe demo` and `probe study`); the results JSON names it (`results.rows`). HDF5, read with h5py (no
pickle, nothing that runs code):

    attrs        format = "probe-rows", format_version, num_rows, dataset, k
    ids          [N] str       the dataset's row ids, in the run's row order
    captions     [N] str
    labels/<field>  [N] str    every label field of the dataset
    thumbnails/<row>  uint8 [bytes]   small JPEGs of the rows a gallery shows (top and bottom rows, neighbours)
    pairs/<i>    attrs vision, text, role ("model" | "control" | "ceiling")
      <metric>   attrs vision_state, text_state (hidden-state indices of the metric's best pair), score, chance
        scores             float64 [N]       mean = the score (probe.align.rows)
        vision_neighbours  int32 [N, k]      row numbers, best first, at the vision side's layer
        text_neighbours    int32 [N, k]

`load_rows(run)` turns it into a pandas DataFrame, one row per (pair, metric, dataset row).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from probe.errors import CacheError, InputError

FORMAT = "probe-rows"
FORMAT_VERSION = 1
FILE_NAME = "rows.h5"
ROLES = ("model", "control", "ceiling")
# A gallery shows the GALLERY_ROWS most and least agreeing rows of a pair by its GALLERY_METRIC values, and the
# neighbours of the first GALLERY_NEIGHBOURS of each; the writer makes thumbnails for those rows only.
GALLERY_ROWS = 8
GALLERY_NEIGHBOURS = 3
GALLERY_METRIC = "mutual_knn"
ROW_COLUMNS = (
    "vision",
    "text",
    "role",
    "metric",
    "row",
    "id",
    "caption",
    "score",
    "vision_neighbours",
    "text_neighbours",
    "vision_state",
    "text_state",
)


@dataclass(frozen=True)
class PairRows:
    """One metric of one (vision, text) pair of a rows file: `scores` [N], neighbour row numbers [N, k] per side,
    the best pair's hidden states, the score and its chance level (None when not exact)."""

    vision: str
    text: str
    role: str
    metric: str
    scores: np.ndarray
    vision_neighbours: np.ndarray
    text_neighbours: np.ndarray
    vision_state: int
    text_state: int
    score: float
    chance: Optional[float]


@dataclass(frozen=True)
class RowsFile:
    """A whole rows file in memory: the dataset's rows (ids, captions, labels), every pair's metrics, and the
    thumbnails it holds (row number -> JPEG bytes)."""

    path: Path
    dataset: str
    ids: list[str]
    captions: list[str]
    labels: dict[str, list[str]]
    pairs: list[PairRows]
    thumbnails: dict[int, bytes]

    def find(
        self, *, vision: Optional[str] = None, text: Optional[str] = None, metric: Optional[str] = None
    ) -> list[PairRows]:
        """The pairs matching the names given (all when none is)."""
        return [
            p
            for p in self.pairs
            if (vision is None or p.vision == vision)
            and (text is None or p.text == text)
            and (metric is None or p.metric == metric)
        ]


def gallery_metric(metrics: Any) -> str:
    """The metric whose values a gallery ranks rows by, of the metric names `metrics` one pair has: GALLERY_METRIC
    when there, else the first name in sorted order (the writer and the report pick the same one)."""
    names = list(metrics)
    return GALLERY_METRIC if GALLERY_METRIC in names else sorted(names)[0]


def extremes(scores: np.ndarray, count: int) -> tuple[list[int], list[int]]:
    """The `count` rows with the highest and with the lowest `scores` [N], ties to the lower row number."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    low = np.lexsort((np.arange(len(scores)), scores))
    return order[:count].tolist(), low[:count].tolist()


def _strings(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _inside(folder: Path) -> list[Path]:
    """The rows files in the run folders under `folder`, each once: a demo's align run (`<demo>/align-*/`) or a
    study's (`<study>/<dataset>/align-*/`); no deeper, so a folder that is no run is not searched through."""
    found = sorted([*folder.glob(f"*/{FILE_NAME}"), *folder.glob(f"*/*/{FILE_NAME}")])
    unique: dict[Path, Path] = {}
    for path in found:  # the run folder's own name before a `latest` link to it
        if path.is_file():
            unique.setdefault(path.resolve(), path)
    return sorted(unique.values())


def rows_path(run: Any) -> Path:
    """The rows file of `run`: a run folder, a results JSON (which names its rows file), the file itself, or a
    folder (or results JSON) of a demo or study whose run folders hold exactly one rows file. InputError when
    the run has none (it was not asked for per-row agreement) or several (one line listing them)."""
    path = Path(run)
    if path.is_dir():
        candidates = [path / FILE_NAME] if (path / FILE_NAME).is_file() else _inside(path)
    elif path.suffix == ".json":
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read results file {path}: {exc}") from None
        named = ((record.get("results") or {}).get("rows") or {}).get("file")
        candidates = [path.parent / named] if named else _inside(path.parent)
    else:
        candidates = [path]
    candidates = [c for c in candidates if c.is_file()]
    if len(candidates) > 1:
        where = path if path.is_dir() else path.parent
        listed = ", ".join(str(c.relative_to(where)) for c in candidates)
        raise InputError(f"{path} holds {len(candidates)} rows files ({listed}); pass the one to read")
    if candidates:
        return candidates[0]
    raise InputError(
        f"{path} has no per-row agreement file ({FILE_NAME}): run probe align with log_rows= "
        "(probe demo and probe study always write one)"
    )


def read_rows(run: Any, *, gallery: bool = False) -> RowsFile:
    """Read the rows file of `run` (see `rows_path`): every metric of every pair, or with `gallery` only each
    pair's `gallery_metric` (what a report's gallery shows: 8 N (1 + k) bytes per pair for N rows and k
    neighbours, not that times the metrics). CacheError for a file that is not one or is damaged."""
    import h5py

    path = rows_path(run)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CacheError(f"{path} is not a probe rows file (format {f.attrs.get('format')!r})")
            if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                raise CacheError(
                    f"{path} is rows format {f.attrs.get('format_version')!r}; this probe reads {FORMAT_VERSION}"
                )
            pairs = []
            for key in sorted(f["pairs"], key=int):
                group = f["pairs"][key]
                for metric in [gallery_metric(group)] if gallery else list(group):
                    m = group[metric]
                    chance = m.attrs.get("chance")
                    pairs.append(
                        PairRows(
                            vision=str(group.attrs["vision"]),
                            text=str(group.attrs["text"]),
                            role=str(group.attrs["role"]),
                            metric=metric,
                            scores=m["scores"][()],
                            vision_neighbours=m["vision_neighbours"][()],
                            text_neighbours=m["text_neighbours"][()],
                            vision_state=int(m.attrs["vision_state"]),
                            text_state=int(m.attrs["text_state"]),
                            score=float(m.attrs["score"]),
                            chance=None if chance is None or not np.isfinite(chance) else float(chance),
                        )
                    )
            return RowsFile(
                path=path,
                dataset=str(f.attrs.get("dataset", "")),
                ids=_strings(f["ids"][()]),
                captions=_strings(f["captions"][()]),
                labels={name: _strings(f["labels"][name][()]) for name in f.get("labels", {})},
                pairs=pairs,
                thumbnails={int(k): bytes(f["thumbnails"][k][()]) for k in f.get("thumbnails", {})},
            )
    except (OSError, KeyError, ValueError) as exc:
        raise CacheError(f"{path} is damaged or not a rows file ({exc}); write it again by re-running") from None


def load_rows(
    run: Any, *, vision: Optional[str] = None, text: Optional[str] = None, metric: Optional[str] = None
) -> Any:
    """The per-row agreement of `run` (a run folder, its results JSON or its rows file) as a pandas DataFrame, one
    row per (pair, metric, dataset row): columns ROW_COLUMNS and one per label field (docs/results.md). The
    neighbour columns hold lists of row ids. `vision`, `text`, `metric` keep only the matching pairs."""
    import pandas as pd

    rows = read_rows(run)
    frames = []
    ids = np.asarray(rows.ids, dtype=object)
    for pair in rows.find(vision=vision, text=text, metric=metric):
        frame = pd.DataFrame(
            {
                "vision": pair.vision,
                "text": pair.text,
                "role": pair.role,
                "metric": pair.metric,
                "row": np.arange(len(ids)),
                "id": ids,
                "caption": rows.captions,
                "score": pair.scores,
                "vision_neighbours": [list(ids[n]) for n in pair.vision_neighbours],
                "text_neighbours": [list(ids[n]) for n in pair.text_neighbours],
                "vision_state": pair.vision_state,
                "text_state": pair.text_state,
            }
        )
        for field, values in rows.labels.items():
            frame[field] = values
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(ROW_COLUMNS) + list(rows.labels))
    return pd.concat(frames, ignore_index=True)
