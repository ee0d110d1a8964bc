"""The report's gallery, "Where the models agree": for each headline pair of the runs reported, the images whose
neighbourhoods the two models share most and least, a few of them beside their neighbours in each space, and
the mean agreement per category.

In: the results records (`probe.report.tables.records`); an align record that logged per-row agreement names
its rows file (`results.rows`, format in `probe.report.rows`). Out: `Gallery` (its Markdown and HTML, ready for
`probe.report.page.render_page`, and the per-category figures for `figures/`), or None when no run has rows.

Per pair (each model pair of a rows file, then its text model's controls, collapsed), by the pair's
`gallery_metric` (mutual kNN: the share of a row's k nearest neighbours both spaces have in common; its mean
over rows is the score):
- the GALLERY_ROWS most and least agreeing rows: thumbnail, caption, value;
- for the first GALLERY_NEIGHBOURS of each, a strip: the row, then its nearest neighbours in the vision space and
  in the text space (the first NEIGHBOURS_SHOWN of k), the ones in both lists outlined;
- per label field, a bar chart of the mean value per category with its interval (`group_means`) and the chance
  line.

Size: thumbnails are the rows file's JPEGs (at most 96 px a side), inlined as base64; neighbours are re-encoded
at NEIGHBOUR_PIXELS. The whole section is at most GALLERY_BUDGET_BYTES of the page: pairs are taken models
first, then controls, while they fit, and the page says how many were left out. A pair's block holds the same
number of thumbnails at any N (the rows file keeps thumbnails of the gallery's rows only), so the page does not
grow with N; reading keeps only each pair's gallery metric in memory (`read_rows(gallery=True)`: 8 N (1 + k)
bytes per pair, plus ids, captions and labels).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from probe.errors import CacheError, InputError
from probe.log import logger
from probe.report.explain import bootstrap_mean_interval
from probe.report.figures import Figure, _png, _pyplot
from probe.report.numbers import fmt_num
from probe.report.rows import GALLERY_NEIGHBOURS, GALLERY_ROWS, PairRows, RowsFile, extremes, read_rows, rows_path

GALLERY_BUDGET_BYTES = 2_000_000  # the most the gallery section adds to report.html
NEIGHBOUR_PIXELS = 64
NEIGHBOUR_QUALITY = 75
NEIGHBOURS_SHOWN = 10  # of each side's k neighbours
CAPTION_CHARS = 80  # captions are cut here on the cards (the full caption is the tooltip)
MAX_BARS = 15  # categories per label field in the bar chart: the largest ones
MIN_GROUP_ROWS = 3  # a category with fewer rows is left out of the chart
TITLE = "Where the models agree"


@dataclass(frozen=True)
class GroupMean:
    """The mean of the values of one category (`label`) over its `rows`, with its interval [`low`, `high`]."""

    label: str
    rows: int
    mean: float
    low: float
    high: float


def group_means(values: np.ndarray, labels: Sequence[str]) -> list[GroupMean]:
    """Per distinct label of `labels` [N], the mean of `values` [N] over its rows and its 95% interval, the one
    `probe explain` prints (`probe.report.explain.bootstrap_mean_interval`; NaN ends for a single row). Rows share
    neighbours, so they are not independent: read the interval as a guide, not a test. Largest groups first
    (ties by label)."""
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels, dtype=object)
    out = []
    for label in sorted(set(labels.tolist()), key=str):
        group = values[labels == label]
        low, high = bootstrap_mean_interval(group) or (math.nan, math.nan)
        out.append(GroupMean(str(label), len(group), float(group.mean()), low, high))
    return sorted(out, key=lambda g: (-g.rows, g.label))


@dataclass(frozen=True)
class CategoryBars:
    """What one panel of the category chart draws: `field`'s `bars` (largest categories, at most MAX_BARS, each
    with at least MIN_GROUP_ROWS rows) and how many categories were left out."""

    field: str
    bars: list[GroupMean]
    left_out: int


def category_bars(rows: RowsFile, pair: PairRows) -> list[CategoryBars]:
    """Per label field of `rows`, the per-category means of `pair.scores` to draw (`group_means` of the
    MAX_BARS largest categories with at least MIN_GROUP_ROWS rows); fields with fewer than two are skipped."""
    panels = []
    for name, labels in rows.labels.items():
        values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
        order = sorted(range(len(values)), key=lambda i: (-counts[i], str(values[i])))
        drawn = [values[i] for i in order if counts[i] >= MIN_GROUP_ROWS][:MAX_BARS]
        if len(drawn) >= 2:
            keep = np.isin(np.asarray(labels, dtype=object), drawn)
            bars = group_means(pair.scores[keep], [label for label, k in zip(labels, keep) if k])
            panels.append(CategoryBars(name, bars, len(values) - len(drawn)))
    return panels


def draw_categories(panels: Sequence[CategoryBars], *, score: float, chance: Optional[float], metric: str) -> Any:
    """A matplotlib figure of `panels`, one per label field: a horizontal bar per category (its mean, in the
    panel's order, top down) with its interval, the overall mean `score` (dotted) and `chance` (dashed red)."""
    plt = _pyplot()
    most = max(len(p.bars) for p in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.8 * len(panels), 0.26 * most + 1.4), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels):
        y = np.arange(len(panel.bars))
        means = np.array([g.mean for g in panel.bars])
        low = np.array([g.low for g in panel.bars])
        high = np.array([g.high for g in panel.bars])
        ax.barh(y, means, color="tab:blue", alpha=0.8)
        ax.errorbar(means, y, xerr=[means - low, high - means], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
        ax.axvline(score, color="black", linestyle=":", linewidth=1, label=f"all rows {score:.3f}")
        if chance is not None:
            ax.axvline(chance, color="tab:red", linestyle="--", linewidth=1, label=f"chance {chance:.3f}")
        ax.set_yticks(y, [f"{g.label[:28]} ({g.rows})" for g in panel.bars], fontsize=7)
        ax.set_ylim(most - 0.5, -0.5)  # top down, bars as thick in every panel
        ax.set_xlabel(f"mean {metric} per row", fontsize=8)
        more = f"; {panel.left_out} more not shown" if panel.left_out else ""
        ax.set_title(f"by {panel.field}{more}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def category_figure(rows: RowsFile, pair: PairRows, *, name: str) -> Optional[Figure]:
    """The category chart of `pair` (`category_bars`, `draw_categories`) as a Figure called `name`; None when the
    dataset has no label field with two categories of MIN_GROUP_ROWS rows."""
    panels = category_bars(rows, pair)
    if not panels:
        return None
    fig = draw_categories(panels, score=float(pair.scores.mean()), chance=pair.chance, metric=pair.metric)
    png = _palette_png(_png(fig))
    caption = (
        f"Mean per-row {pair.metric} per category (rows in brackets; the largest {MAX_BARS} categories with at "
        f"least {MIN_GROUP_ROWS} rows) with a 95% bootstrap interval of the mean (rows share neighbours, so read "
        "it as a guide). Dotted: all rows (the score); dashed red: chance."
    )
    return Figure(name, f"{pair.vision} vs {pair.text}: agreement by category", png, caption)


def _palette_png(png: bytes, *, colours: int = 64) -> bytes:
    """`png` with at most `colours` colours (a bar chart needs few): about a third of the bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colours).save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- thumbnails and HTML ----------------------------------------------------------------------------------------


class _Thumbnails:
    """Data URIs of a rows file's thumbnails: as stored, or re-encoded smaller for neighbour strips (once each)."""

    def __init__(self, rows: RowsFile) -> None:
        self.rows = rows
        self._small: dict[int, bytes] = {}

    def uri(self, row: int, *, small: bool = False) -> Optional[str]:
        jpeg = self.rows.thumbnails.get(row)
        if jpeg is None:
            return None
        if small:
            if row not in self._small:
                self._small[row] = _shrink(jpeg)
            jpeg = self._small[row]
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _shrink(jpeg: bytes) -> bytes:
    """`jpeg` at most NEIGHBOUR_PIXELS a side, re-encoded at NEIGHBOUR_QUALITY (as is when already smaller)."""
    from PIL import Image

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if max(image.size) <= NEIGHBOUR_PIXELS:
        return jpeg
    image.thumbnail((NEIGHBOUR_PIXELS, NEIGHBOUR_PIXELS))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=NEIGHBOUR_QUALITY, optimize=True)
    return out.getvalue()


def _short(caption: str) -> str:
    return caption if len(caption) <= CAPTION_CHARS else caption[: CAPTION_CHARS - 1].rstrip() + "…"


def _card(thumbs: _Thumbnails, row: int, *, value: Optional[float], small: bool = False, mark: str = "") -> str:
    """One row as an HTML card: thumbnail (or a grey box), caption cut to CAPTION_CHARS, its value if given."""
    caption = thumbs.rows.captions[row]
    uri = thumbs.uri(row, small=small)
    tip = html.escape(f"{thumbs.rows.ids[row]}: {caption}", quote=True)
    image = f'<img alt="{html.escape(thumbs.rows.ids[row], quote=True)}" src="{uri}">' if uri else "<i>no image</i>"
    number = f"<b>{fmt_num(value, digits=2)}</b> " if value is not None else ""
    kind = "card small" if small else "card"
    return (
        f'<figure class="{kind}{mark}" title="{tip}">{image}<figcaption>{number}{html.escape(_short(caption))}'
        "</figcaption></figure>"
    )


def _strip(thumbs: _Thumbnails, pair: PairRows, row: int) -> str:
    """Row `row` beside its first NEIGHBOURS_SHOWN neighbours in each space; those in both lists outlined."""
    vision, text = pair.vision_neighbours[row][:NEIGHBOURS_SHOWN], pair.text_neighbours[row][:NEIGHBOURS_SHOWN]
    both = set(pair.vision_neighbours[row].tolist()) & set(pair.text_neighbours[row].tolist())
    sides = []
    for side, neighbours in (
        (f"{pair.vision} (vision, state {pair.vision_state})", vision),
        (f"{pair.text} (text, state {pair.text_state})", text),
    ):
        cards = "".join(
            _card(thumbs, int(n), value=None, small=True, mark=" both" if int(n) in both else "") for n in neighbours
        )
        sides.append(f'<div class="side"><div class="label">{html.escape(side)}</div>{cards}</div>')
    return (
        f'<div class="strip">{_card(thumbs, row, value=float(pair.scores[row]))}'
        f'<div class="sides">{"".join(sides)}</div></div>'
    )


def _ties(scores: np.ndarray, chosen: list[int]) -> str:
    """A note when more rows share the last shown value than are shown (e.g. the many rows at 0)."""
    if not chosen:
        return ""
    edge = scores[chosen[-1]]
    tied, shown = int((scores == edge).sum()), sum(1 for r in chosen if scores[r] == edge)
    return f" ({tied} rows at {fmt_num(float(edge), digits=2)}: the first {shown} shown)" if tied > shown else ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


@dataclass
class _Block:
    """One pair's gallery: its HTML (figure inlined), Markdown and figure."""

    pair: PairRows
    html: str
    markdown: str
    figure: Optional[Figure]

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))


def pair_block(rows: RowsFile, pair: PairRows, thumbs: _Thumbnails) -> _Block:
    """The gallery of one pair of `rows` (module docstring) as HTML and Markdown, with its category figure."""
    n, k = len(pair.scores), pair.vision_neighbours.shape[1] if pair.vision_neighbours.ndim == 2 else 0
    top, bottom = extremes(pair.scores, GALLERY_ROWS)
    name = f"agreement-{_slug(pair.vision)}-{_slug(pair.text)}-{_slug(rows.dataset)}-{n}"
    figure = category_figure(rows, pair, name=name)
    title = f"{pair.vision} vs {pair.text}"
    facts = (
        f"{pair.metric} per row at hidden states ({pair.vision_state}, {pair.text_state}); {rows.dataset}, N={n}, "
        f"k={k}; score {fmt_num(pair.score)}, chance {fmt_num(pair.chance)}."
    )
    parts = [f"<h3>{html.escape(title)}</h3><p class=note>{html.escape(facts)}</p>"]
    for heading, chosen in (("Most agreeing", top), ("Least agreeing", bottom)):
        cards = "".join(_card(thumbs, r, value=float(pair.scores[r])) for r in chosen)
        parts.append(f'<h4>{heading}{html.escape(_ties(pair.scores, chosen))}</h4><div class="cards">{cards}</div>')
    shown = top[:GALLERY_NEIGHBOURS] + bottom[:GALLERY_NEIGHBOURS]
    parts.append(
        f"<h4>Neighbours of the first {GALLERY_NEIGHBOURS} of each</h4><p class=note>Each row, then its "
        f"{min(NEIGHBOURS_SHOWN, k)} nearest rows (of k={k}) in each space, nearest first; outlined: in both "
        "lists (what the row's value counts).</p>" + "".join(_strip(thumbs, pair, r) for r in shown)
    )
    if figure is not None:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(figure.title, quote=True)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )

    def listed(chosen: list[int]) -> str:
        return "".join(
            f"- {fmt_num(float(pair.scores[r]), digits=2)} `{rows.ids[r]}` {rows.captions[r]}\n" for r in chosen
        )

    md = f"### {title}\n\n{facts}\n\nMost agreeing:\n\n{listed(top)}\nLeast agreeing:\n\n{listed(bottom)}\n"
    if figure is not None:
        md += f"![{figure.title}](figures/{figure.name}.png)\n\n"
    return _Block(pair, "".join(parts), md, figure)


# --- the section ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gallery:
    """The gallery section: `title`, `intro`, its `markdown` and `html` (at most `budget` bytes), the
    per-category `figures` (for figures/ beside report.md), the pairs shown and left out."""

    title: str
    intro: str
    markdown: str
    html: str
    figures: list[Figure] = field(default_factory=list)
    shown: list[tuple[str, str]] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)
    budget: int = GALLERY_BUDGET_BYTES

    @property
    def size(self) -> int:
        """Bytes of `html` (UTF-8)."""
        return len(self.html.encode("utf-8"))


def rows_files(records: Sequence[tuple[Path, dict[str, Any]]]) -> list[Path]:
    """The rows files named by the align records of `records` ((path, record) pairs), each once, in order."""
    out: dict[Path, None] = {}
    for path, rec in records:
        if rec.get("command") == "align" and ((rec.get("results") or {}).get("rows") or {}).get("file"):
            try:
                out[rows_path(path).resolve()] = None
            except InputError as exc:  # a moved rows file costs the gallery, not the report
                logger.warning("no gallery for %s: %s", path.name, exc)
    return list(out)


def build_gallery(
    records: Sequence[tuple[Path, dict[str, Any]]], *, budget: int = GALLERY_BUDGET_BYTES
) -> Optional[Gallery]:
    """The gallery of the runs in `records` that logged per-row agreement (None when none did), at most `budget`
    bytes of HTML: model pairs first, then controls, while they fit (module docstring)."""
    files = []
    for path in rows_files(records):
        try:
            files.append(read_rows(path, gallery=True))
        except CacheError as exc:
            logger.warning("no gallery for %s: %s", path, exc)
    if not files:
        return None
    intro = (
        "Per pair, the images whose nearest neighbours the two models share most and least: each row's value is "
        "the share of its k nearest rows found in both spaces (mutual kNN at the pair's best layers; its mean "
        "over rows is the score). Controls (raw pixels, random-init weights) show what agreement needs no training. "
        f"Thumbnails are inlined; this section is kept under {budget / 1e6:.1f} MB."
    )
    ordered = [(rows, p) for role in ("model", "control") for rows in files for p in rows.pairs if p.role == role]
    # reserved: the heading, the intro, the controls' <details> and the note naming the pairs left out
    used = len(intro.encode("utf-8")) + 1000 + sum(200 + len(f"{p.vision}{p.text}".encode()) for _, p in ordered)
    blocks: dict[int, _Block] = {}  # id(pair) -> block, for the pairs that fit
    left_out: list[tuple[str, str]] = []
    thumbs = {id(rows): _Thumbnails(rows) for rows in files}
    for rows, pair in ordered:
        if used >= budget:
            left_out.append((pair.vision, pair.text))
            continue
        block = pair_block(rows, pair, thumbs[id(rows)])
        if used + block.size > budget:
            left_out.append((pair.vision, pair.text))
            continue
        blocks[id(pair)] = block
        used += block.size
    page, md = [], []
    for rows in files:
        texts = list(dict.fromkeys(p.text for p in rows.pairs if p.role in ("model", "control")))
        for text in texts:
            for pair in rows.find(text=text):
                if pair.role == "model" and id(pair) in blocks:
                    page.append(blocks[id(pair)].html)
                    md.append(blocks[id(pair)].markdown)
            controls = [blocks[id(p)] for p in rows.find(text=text) if p.role == "control" and id(p) in blocks]
            if controls:
                names = ", ".join(b.pair.vision for b in controls)
                page.append(
                    f"<details><summary>Controls with {html.escape(text)}: {html.escape(names)} (click to open)"
                    f"</summary>{''.join(b.html for b in controls)}</details>"
                )
                md.append(f"#### Controls with {text}\n\n" + "".join(b.markdown for b in controls))
    if left_out:
        names = ", ".join(f"{v} vs {t}" for v, t in left_out)
        note = f"{len(left_out)} pairs left out to keep the page small: {names}."
        page.append(f"<p class=note>{html.escape(note)}</p>")
        md.append(note + "\n\n")
    shown = [(b.pair.vision, b.pair.text) for b in blocks.values()]
    md.append("The thumbnails are in report.html.\n\n")
    gallery = Gallery(
        title=TITLE,
        intro=intro,
        markdown="".join(md),
        html=f'<div class="gallery">{"".join(page)}</div>',
        figures=[b.figure for b in blocks.values() if b.figure is not None],
        shown=shown,
        left_out=left_out,
        budget=budget,
    )
    logger.info("gallery: %d pairs in %.0f kB (budget %.0f kB)", len(shown), gallery.size / 1e3, budget / 1e3)
    return gallery


GALLERY_CSS = """
.gallery h3 { margin-top: 1.5em; } .gallery h4 { margin: .8em 0 .3em; font-size: .95em; }
.cards { display: flex; flex-wrap: wrap; gap: 6px; }
.card { margin: 0; width: 104px; font-size: .72em; color: #333; }
.card img { width: 96px; height: 96px; object-fit: contain; border: 1px solid #ddd; background: #fff; }
.card figcaption { overflow: hidden; display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; }
.card.small { width: 68px; font-size: .62em; } .card.small img { width: 64px; height: 64px; }
.card.small figcaption { -webkit-line-clamp: 2; }
.card.both img { border: 2px solid #2a9d3a; }
.strip { display: flex; gap: 12px; align-items: flex-start; border-top: 1px solid #eee; padding: 6px 0; }
.sides { display: flex; flex-direction: column; gap: 4px; }
.side { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-start; }
.side .label { width: 100%; font-size: .72em; color: #555; }
details { margin: 1em 0; } summary { cursor: pointer; font-weight: bold; }
"""
