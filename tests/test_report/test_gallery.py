"""The report's gallery ("Where the models agree", probe.report.gallery): `probe report` on the results of
tests/data/results with rows files written beside its two align runs (rows_helpers: the real writer on
synthetic agreement). A section per model pair and, collapsed, per control; inlined thumbnails that are JPEGs;
the top cards are the highest-scoring rows; the section within its byte budget (pairs left out beyond it); the
category bars equal the per-group means of probe.load_rows; the same page size at N = 50,000; and the page
rendered by headless Chromium with every image decoded."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from browser import broken_images, needs_chromium, screenshot
from PIL import Image
from rows_helpers import squares, write_fake_rows

import probe
from probe.cli.main import main
from probe.report.gallery import (
    GALLERY_BUDGET_BYTES,
    build_gallery,
    category_bars,
    draw_categories,
    group_means,
)
from probe.report.rows import GALLERY_NEIGHBOURS, GALLERY_ROWS, read_rows
from probe.report.tables import records

DATA = Path(__file__).resolve().parents[1] / "data" / "results"
N = 96  # rows of the runs in DATA
K = 10
MODELS = [("tiny-ssl-vit", "minilm", "model"), ("tiny-ssl-vit", "smollm2", "model")]
CONTROLS = [("tiny-random-vit", "minilm", "control"), ("tiny-random-vit", "smollm2", "control")]
PIXELS = [("pixels-16", "minilm", "control"), ("pixels-16", "smollm2", "control")]
THUMBS_PER_PAIR = 2 * GALLERY_ROWS + 2 * GALLERY_NEIGHBOURS * (1 + 2 * K)


def _name_rows(align_json: Path) -> None:
    record = json.loads(align_json.read_text())
    record["results"]["rows"] = {"file": "rows.h5"}
    align_json.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """DATA copied, the demo's align run beside a rows file of its models and random-init controls, the
    pixels-16 run moved into a folder of its own with a rows file of its controls."""
    root = tmp_path_factory.mktemp("gallery")
    out = root / "results"
    shutil.copytree(DATA, out)
    data = squares(root / "images", N)
    _name_rows(out / "align-20261130T022344Z.json")
    write_fake_rows(out, data, MODELS + CONTROLS, k=K)
    (out / "pixels").mkdir()
    shutil.move(out / "align-20261130T022445Z.json", out / "pixels" / "align-20261130T022445Z.json")
    _name_rows(out / "pixels" / "align-20261130T022445Z.json")
    write_fake_rows(out / "pixels", data, PIXELS, k=K)
    return out


@pytest.fixture(scope="module")
def report_dir(results) -> Path:
    out = results.parent / "report"
    with pytest.raises(SystemExit) as info:
        main(["-q", "report", str(results), "--output", str(out)])
    assert info.value.code in (0, None)
    return out


def _section(page: str) -> str:
    start = page.index('<h2 id="gallery">')
    return page[start : page.index("<h2", start + 1)]


def _blocks(section: str) -> dict[str, str]:
    """Each pair's HTML block by its title ("vision vs text")."""
    parts = re.split(r"<h3>(.*?)</h3>", section)
    return {html.unescape(title): body for title, body in zip(parts[1::2], parts[2::2])}


def test_a_section_per_model_pair_and_the_controls_collapsed(report_dir) -> None:
    page = (report_dir / "report.html").read_text()
    section = _section(page)
    assert "Where the models agree" in section
    blocks = _blocks(section)
    assert set(blocks) == {f"{v} vs {t}" for v, t, _ in MODELS + CONTROLS + PIXELS}
    collapsed = "".join(re.findall(r"<details>.*?</details>", section, re.S))
    for vision, text, _ in CONTROLS + PIXELS:
        assert f"<h3>{vision} vs {text}</h3>" in collapsed
    for vision, text, _ in MODELS:
        assert f"<h3>{vision} vs {text}</h3>" not in collapsed
    for body in blocks.values():
        assert "Most agreeing" in body and "Least agreeing" in body and "Neighbours of the first" in body
    # report.md: the text version, and the category charts beside it
    md = (report_dir / "report.md").read_text()
    assert "## Where the models agree" in md and "### tiny-ssl-vit vs minilm" in md
    for name in re.findall(r"\(figures/(agreement-[^)]+\.png)\)", md):
        assert (report_dir / "figures" / name).is_file()
    assert (report_dir / "figures" / "agreement-tiny-ssl-vit-minilm-squares-96.png").is_file()


def test_thumbnails_are_inlined_jpegs(report_dir) -> None:
    section = _section((report_dir / "report.html").read_text())
    for title, body in _blocks(section).items():
        jpegs = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', body)
        assert len(jpegs) == THUMBS_PER_PAIR, title
        for data in jpegs:
            jpeg = base64.b64decode(data, validate=True)
            assert jpeg[:3] == b"\xff\xd8\xff" and jpeg[-2:] == b"\xff\xd9"
            assert max(Image.open(io.BytesIO(jpeg)).size) <= 96
        assert len(re.findall(r'src="data:image/png;base64,', body)) == 1, title  # the category chart
    assert not re.search(r"https?://|<script|<link|url\(", section)


def test_top_and_bottom_cards_are_the_extreme_rows(report_dir, results) -> None:
    frame = probe.load_rows(results, metric="mutual_knn")
    section = _section((report_dir / "report.html").read_text())
    for (vision, text), rows in frame.groupby(["vision", "text"]):
        if vision == "pixels-16":
            continue  # in its own rows file, checked below through the same code
        body = _blocks(section)[f"{vision} vs {text}"]
        top = body[body.index("Most agreeing") : body.index("Least agreeing")]
        bottom = body[body.index("Least agreeing") : body.index("Neighbours of the first")]
        score = dict(zip(rows["id"], rows["score"]))
        for part, expected in ((top, rows["score"].nlargest(GALLERY_ROWS)), (bottom, rows["score"].nsmallest(8))):
            ids = re.findall(r'<figure class="card" title="([^":]+):', part)
            assert len(ids) == GALLERY_ROWS
            assert sorted(score[i] for i in ids) == sorted(expected)
            shown = [float(v) for v in re.findall(r"<b>([0-9.]+)</b>", part)]
            assert shown == pytest.approx([score[i] for i in ids], abs=0.005)


def test_the_gallery_keeps_within_its_budget(report_dir, results) -> None:
    section = _section((report_dir / "report.html").read_text())
    assert len(section.encode("utf-8")) <= GALLERY_BUDGET_BYTES
    full = build_gallery(records(results))
    assert full.size <= GALLERY_BUDGET_BYTES and not full.left_out and len(full.shown) == 6
    one_pair = max(len(b.encode()) for b in _blocks(section).values())
    small = build_gallery(records(results), budget=3 * one_pair)
    assert small.size <= 3 * one_pair
    assert small.shown[:2] == [(v, t) for v, t, _ in MODELS]  # models first
    assert len(small.shown) + len(small.left_out) == 6 and small.left_out
    assert f"{len(small.left_out)} pairs left out" in small.html and "left out" in small.markdown


def test_category_bars_are_the_per_group_means_of_load_rows(results) -> None:
    rows = read_rows(results)
    (pair,) = rows.find(vision="tiny-ssl-vit", text="minilm", metric="mutual_knn")
    frame = probe.load_rows(results, vision="tiny-ssl-vit", text="minilm", metric="mutual_knn")
    panels = {p.field: p for p in category_bars(rows, pair)}
    assert set(panels) == {"colour", "shape"}
    fig = draw_categories(list(panels.values()), score=pair.score, chance=pair.chance, metric="mutual_knn")
    for ax, (name, panel) in zip(fig.axes, panels.items()):
        means = frame.groupby(name)["score"].mean()
        assert {g.label: g.mean for g in panel.bars} == pytest.approx(means.to_dict(), abs=1e-12)
        widths = [bar.get_width() for bar in ax.patches]
        assert widths == pytest.approx([means[g.label] for g in panel.bars], abs=1e-12)
        lines = {round(float(line.get_xdata()[0]), 12) for line in ax.lines if len(set(line.get_xdata())) == 1}
        assert round(pair.chance, 12) in lines and round(float(frame["score"].mean()), 12) in lines


def test_group_means_intervals() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(0, 11, 40) / 10, rng.integers(0, 11, 1500) / 10, [0.5]])
    labels = ["small"] * 40 + ["large"] * 1500 + ["one"]
    groups = {g.label: g for g in group_means(values, labels)}
    assert [g.label for g in group_means(values, labels)] == ["large", "small", "one"]  # largest first
    small, large = groups["small"], groups["large"]
    assert small.rows == 40 and small.mean == pytest.approx(values[:40].mean())
    assert values[:40].min() <= small.low < small.mean < small.high <= values[:40].max()  # bootstrap: in range
    half = 1.959964 * values[40:-1].std(ddof=1) / np.sqrt(large.rows)  # a large group's: near the normal one
    assert (large.low, large.high) == pytest.approx((large.mean - half, large.mean + half), rel=0.02)
    assert np.isnan(groups["one"].low) and groups["one"].mean == 0.5
    assert group_means(values, labels) == group_means(values, labels)  # seeded


def test_fifty_thousand_rows_same_page_size_fast_read(results, tmp_path) -> None:
    """At N = 50,000 the rows file holds the same thumbnails, so the gallery is no bigger; reading it keeps only
    the gallery metric: its memory is stated in docs/results.md (about 8 N (1 + k) bytes per pair + strings)."""
    n = 50_000
    run = tmp_path / "big"
    run.mkdir()
    data = squares(tmp_path / "images", n)
    write_fake_rows(run, data, MODELS + CONTROLS, k=K)
    (run / "align-20261130T022344Z.json").write_text((results / "align-20261130T022344Z.json").read_text())
    t0 = time.perf_counter()
    rows = read_rows(run, gallery=True)
    seconds = time.perf_counter() - t0  # about 0.4 s here (bench/bench_gallery_rows.py)
    tracemalloc.start()
    read_rows(run, gallery=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(rows.ids) == n and len(rows.pairs) == 4  # one metric per pair
    # 4 pairs x 8 N (1 + k) = 17.6 MB of arrays, plus ids, captions, labels as Python strings
    assert peak < 80e6, f"reading {n} rows took {peak / 1e6:.0f} MB"
    assert seconds < 10
    big = build_gallery(records(run))
    small = build_gallery([r for r in records(results) if r[0].parent == results])
    assert len(big.shown) == len(small.shown) == 4
    assert abs(big.size - small.size) < 0.1 * small.size  # the same thumbnails; captions differ in length
    assert big.html.count("data:image/jpeg") == small.html.count("data:image/jpeg")


@needs_chromium
def test_the_gallery_renders_in_headless_chromium(report_dir, tmp_path) -> None:
    images, broken = broken_images(report_dir / "report.html", tmp_path)
    assert broken == 0 and images >= 6 * THUMBS_PER_PAIR
    # the gallery on a page of its own (the report's head and CSS, its section), to see it at the top
    page = (report_dir / "report.html").read_text()
    alone = tmp_path / "gallery.html"
    alone.write_text(page[: page.index("<body>") + 6] + _section(page) + "</body></html>")
    img = screenshot(alone, tmp_path / "gallery.png", width=1200, height=2400)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"screenshot has {len(colours)} colours: the thumbnails did not render"
    # the red, green and blue squares of the thumbnails are on screen
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        strong = (img[..., channel] > 150) & (img[..., others] < 90).all(axis=-1)
        assert strong.mean() > 0.001, f"no thumbnail of colour channel {channel} on screen"
