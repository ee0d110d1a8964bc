"""Benchmark: the report's gallery from a rows file of N = 50,000 rows (the size issue 19 names).

A synthetic rows file written by the real writer (tests/test_report/rows_helpers.py: coloured squares, two
metrics per pair, k = 10), then, each timed, and run again for its peak of Python allocations (tracemalloc;
numpy and h5py buffers included):

- `write`: probe.runs.rows.write_rows (arrays in blocks of BLOCK_ROWS rows, thumbnails of the gallery rows only;
  time only);
- `read, gallery metric`: read_rows(gallery=True), what the report reads;
- `read, every metric`: read_rows();
- `gallery`: probe.report.gallery.build_gallery on the run (read, category bootstrap, thumbnails, HTML),
  and the bytes it adds to report.html, beside the same at N = 1,000.

    python bench/bench_gallery_rows.py                 # N=50,000, 4 pairs
    python bench/bench_gallery_rows.py --rows 200000 --pairs 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "test_report"))


def measured(fn, *, again: bool = True):
    """(result, seconds, peak MB of Python allocations) of fn(): timed on its own, then (with `again`) run a
    second time under tracemalloc for the peak (tracemalloc slows allocation several times over)."""
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    if again:
        fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return out, seconds, peak


def gallery_run(folder: Path, rows: int, pairs: list[tuple[str, str, str]]) -> Path:
    """A run folder with an align JSON naming its rows file and a rows file of `rows` rows."""
    from rows_helpers import squares, write_fake_rows

    folder.mkdir(parents=True)
    data = squares(folder / "images", rows)
    record = json.loads((ROOT / "tests" / "data" / "results" / "align-20261130T022344Z.json").read_text())
    record["results"]["rows"] = {"file": "rows.h5"}
    (folder / "align-20261130T022344Z.json").write_text(json.dumps(record))
    _, seconds, _ = measured(lambda: write_fake_rows(folder, data, pairs), again=False)
    print(f"N={rows}: write {seconds:.2f} s, file {(folder / 'rows.h5').stat().st_size / 1e6:.1f} MB")
    return folder


def main() -> None:
    from probe.report.gallery import build_gallery
    from probe.report.rows import read_rows
    from probe.report.tables import records

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--pairs", type=int, default=4)
    args = ap.parse_args()
    names = [("vision", "model"), ("pixels-16", "control"), ("random-init", "control")]
    pairs = [(f"{names[i % 3][0]}-{i}", "text", names[i % 3][1]) for i in range(args.pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (1_000, args.rows):
            run = gallery_run(Path(tmp) / str(rows), rows, pairs)
            for label, fn in (
                ("read, gallery metric", lambda run=run: read_rows(run, gallery=True)),
                ("read, every metric", lambda run=run: read_rows(run)),
                ("gallery", lambda run=run: build_gallery(records(run))),
            ):
                out, seconds, peak = measured(fn)
                extra = f", {out.size / 1e6:.2f} MB of HTML, {len(out.shown)} pairs" if label == "gallery" else ""
                print(f"N={rows}: {label}: {seconds:.2f} s, peak {peak:.0f} MB{extra}")


if __name__ == "__main__":
    main()
