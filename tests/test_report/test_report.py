"""`probe report` on the files of `probe demo --limit 96` (+ a pixels-16 align run) in tests/data/results: every
output file, the CSV equal to the DataFrame, a self-contained HTML page whose every figure is an inlined PNG,
and that page rendered by headless Chromium to a non-blank screenshot."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import needs_chromium, screenshot
from PIL import Image

from probe.cli.main import main
from probe.report.tables import load, load_probes

DATA = Path(__file__).resolve().parents[1] / "data" / "results"
# scaling, depth, one heatmap figure per metric (4), probes
EXPECTED_FIGURES = {
    "scaling",
    "depth",
    "probes",
    *(f"heatmap-{m}-openmoji-96" for m in ("mutual_knn", "cka", "unbiased_cka", "cknna")),
}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "not" / "yet" / "there"  # created by the command
    with pytest.raises(SystemExit) as info:
        main(["-q", "report", str(DATA), "--output", str(out)])
    assert info.value.code in (0, None)
    return out


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_report_files(report_dir) -> None:
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.html", "report.md", "results.csv", "probes.csv", "figures"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert {p.stem for p in (report_dir / "figures").glob("*.png")} == EXPECTED_FIGURES
    md = (report_dir / "report.md").read_text()
    for name in EXPECTED_FIGURES:
        assert f"(figures/{name}.png)" in md
    assert "## Provenance: models" in md and "HuggingFaceTB/SmolLM2-135M-Instruct" in md
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert "results.parquet" not in names
    else:
        pd.testing.assert_frame_equal(pd.read_parquet(report_dir / "results.parquet"), load(DATA), check_dtype=False)


def test_csv_equals_the_dataframe(report_dir) -> None:
    for csv, frame in (("results.csv", load(DATA)), ("probes.csv", load_probes(DATA))):
        read = pd.read_csv(report_dir / csv)
        assert list(read.columns) == list(frame.columns) and len(read) == len(frame)
        for col in frame.columns:
            want, got = frame[col], read[col]
            if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
                np.testing.assert_allclose(
                    got.to_numpy(float), want.to_numpy(float, na_value=np.nan), rtol=1e-12, err_msg=col
                )
            else:
                assert [None if pd.isna(v) else str(v) for v in got] == [
                    None if pd.isna(v) else str(v) for v in want
                ], col


def test_html_is_self_contained_with_every_figure(report_dir) -> None:
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"https?://", page), "the page references the network"
    assert not re.search(r"<script|<link|@import|url\(|<iframe|<object", page, re.I)
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    images = _images(page)
    assert len(images) == len(EXPECTED_FIGURES)
    for png in images:
        img = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        assert img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 5  # drawn, not a blank canvas
    # the tables are there too: a score from the JSON, the dataset fingerprint's start, the git revision
    assert "tiny-ssl-vit" in page and "pixels-16" in page and "3323b166b1ac8b4e" in page and "e19fc84d21fa" in page
    assert 'id="gallery"' not in page  # these runs logged no per-row agreement: no gallery (test_gallery.py)


@needs_chromium
def test_html_renders_in_headless_chromium(report_dir, tmp_path) -> None:
    img = screenshot(report_dir / "report.html", tmp_path / "shot.png", width=1200, height=3000)
    assert img.shape[:2] == (3000, 1200)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot has {len(colours)} colours: the page did not render"
    # figures drew: viridis greens/yellows and the plot blues are on the page, not only text on white
    non_white = (img < 240).any(axis=2).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of the screenshot is not white"
