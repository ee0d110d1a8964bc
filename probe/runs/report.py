"""`probe report` as a library call: results files -> one folder a person reads and a program loads.

`write_report(paths, output=DIR)` writes into DIR (created if missing), each file via a temporary name and
os.replace (`probe.errors.write_atomic`):
- `report.html`: one self-contained page (figures inlined as base64 PNG, inline CSS only; no script, no
  external style, font or image);
- `report.md` with `figures/*.png` beside it (the same figures and tables);
- `results.csv`: the alignment DataFrame of probe.report.tables.load, as is; `probes.csv`: load_probes;
- `results.parquet` too when pyarrow is importable.

The two documents' text is probe.report.page's; this module gathers the results, draws the figures
(probe.report.figures) and writes the files.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from probe.errors import InputError, write_atomic
from probe.log import logger


@dataclass
class ReportFiles:
    """What `write_report` wrote (paths) and how much it held."""

    html: Path
    markdown: Path
    csv: Path
    probes_csv: Path
    parquet: Optional[Path]
    figures: list[Path] = field(default_factory=list)
    align_rows: int = 0
    probe_rows: int = 0


def write_report(paths: Any, *, output: Path) -> ReportFiles:
    """Gather the results files under `paths` (probe.report.tables) into the report folder `output`."""
    from probe.report import figures as F
    from probe.report.gallery import build_gallery
    from probe.report.page import render_page
    from probe.report.tables import load, load_probes, records

    t0 = _dt.datetime.now(_dt.timezone.utc)
    recs = records(paths)
    align, probes = load(paths), load_probes(paths)
    if align.empty and probes.empty:
        raise InputError(f"the results under {paths} hold no alignment or probe scores to report.")
    figs = [*F.scaling_figure(align), *F.depth_figure(recs), *F.heatmap_figures(recs), *F.probe_figure(probes)]
    gallery = build_gallery(recs)
    out = Path(output)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    page = render_page(
        align=align,
        probes=probes,
        records=recs,
        figures=figs,
        stamp=t0.isoformat(timespec="seconds"),
        gallery=gallery,
    )
    fig_paths = [
        write_atomic(out / "figures" / f"{f.name}.png", f.png) for f in [*figs, *(gallery.figures if gallery else [])]
    ]
    files = ReportFiles(
        html=write_atomic(out / "report.html", page.html),
        markdown=write_atomic(out / "report.md", page.markdown),
        csv=write_atomic(out / "results.csv", lambda tmp: align.to_csv(tmp, index=False)),
        probes_csv=write_atomic(out / "probes.csv", lambda tmp: probes.to_csv(tmp, index=False)),
        parquet=None,
        figures=fig_paths,
        align_rows=len(align),
        probe_rows=len(probes),
    )
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        logger.info("pyarrow is not installed: no results.parquet (results.csv holds the same table)")
    else:
        files.parquet = write_atomic(out / "results.parquet", lambda tmp: align.to_parquet(tmp, index=False))
    logger.info(
        "report of %d alignment rows and %d probe rows in %.1f s: %s",
        len(align),
        len(probes),
        (_dt.datetime.now(_dt.timezone.utc) - t0).total_seconds(),
        files.html,
    )
    return files


def run_compare(a: Any, b: Any, *, csv: Optional[Path] = None) -> Any:
    """probe.report.tables.compare of the results under `a` and `b`; written to `csv` too (atomically) when given."""
    from probe.report.tables import compare

    frame = compare(a, b)
    if csv is not None:
        path = Path(csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return frame
