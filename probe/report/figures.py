"""The study's figures (matplotlib, Agg), each returned as PNG bytes for the report to inline or save.

In: the tables of probe.report.tables (`load`, `load_probes`) and, for heatmaps and depth curves, the align
records themselves (their full layer x layer matrices). Out: `Figure(name, title, png, caption)`, or nothing
when the results hold nothing to draw (e.g. no model with a known size for the scaling figure).
`draw_scaling`, `draw_depth` and `draw_probes` return the matplotlib figure itself (for a notebook, or a test
that reads its artists). Each figure has one legend, below its panels: outside every axes, never on the data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from probe.report.plots import draw_heatmap

DPI = 110


@dataclass(frozen=True)
class Figure:
    """One figure: a file-safe `name`, a `title` for the report, the PNG bytes and a caption saying how to read it."""

    name: str
    title: str
    png: bytes
    caption: str


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _grid(
    n: int, *, cols: int = 2, width: float = 5.2, height: float = 3.8, layout: Any = "constrained"
) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout=layout)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig: Any, axes: list[Any], *, handlelength: float = 2.0) -> None:
    """One legend for all `axes` of `fig` (a constrained-layout figure), below the panels: a legend inside an
    axes hides the data it sits on, and the panels of one figure share their colours and styles. Its keys are
    the labelled artists drawn on `axes`, one entry per label (from the first axes that has it, in drawing
    order), so each key shows that artist's colour, line style and marker; artists sharing a label on that axes
    (a band and its line) are drawn one over the other in the key. `handlelength` (in font sizes): long enough
    to show the line style."""
    from matplotlib.legend_handler import HandlerTuple

    entries: dict[str, tuple[Any, ...]] = {}
    for ax in axes:
        mine: dict[str, tuple[Any, ...]] = {}
        for handle, label in zip(*ax.get_legend_handles_labels()):
            mine[label] = (*mine.get(label, ()), handle)
        for label, handles in mine.items():
            entries.setdefault(label, handles)
    if not entries:
        return
    cols = max(1, min(len(entries), int(fig.get_figwidth() // 3.2)))  # ~3 inches per entry at 8 pt
    fig.legend(
        [h[0] if len(h) == 1 else h for h in entries.values()],
        list(entries),
        loc="outside lower center",
        ncols=cols,
        fontsize=8,
        frameon=False,
        handlelength=handlelength,
        handler_map={tuple: HandlerTuple(ndivide=None)},  # overlaid, not side by side
    )


def _calibrate(value: Any, null_mean: Any) -> float:
    """An interval end calibrated as the score is (`probe.align.stats.calibrate`); NaN where that has no null to
    calibrate against, so the band is left out."""
    from probe.align.stats import calibrate

    calibrated = calibrate(float(value), null_mean=float(null_mean))
    return math.nan if calibrated is None else calibrated


def _calibrated_interval(rows: Any) -> tuple[list[float], list[float]]:
    """The subsample interval of the max of each of `rows` (align rows: ci_low, ci_high, null_max_mean),
    calibrated as the score is: (lows, highs), NaN where there is none."""
    low = [_calibrate(a, b) for a, b in zip(rows.ci_low, rows.null_max_mean)]
    high = [_calibrate(a, b) for a, b in zip(rows.ci_high, rows.null_max_mean)]
    return low, high


def draw_scaling(align: Any) -> Any:
    """The scaling figure of `align` (the `load` table) as a matplotlib figure, or None when no vision model
    has a known size: calibrated score against vision parameters (log x), one panel per (dataset, N, metric),
    one line per (vision family, text model) with its interval as a band.

    The x axis holds the vision models only. Controls (probe.models.names.is_control) are horizontal lines in
    their text model's colour, dashed or dotted; the text-vs-text ceiling (rows whose `role` is "ceiling": two
    language models, the first in the vision column) is a black horizontal line over a grey band, its interval.
    Neither has a place on a size axis: a control has no parameters of its own and the ceiling's first model
    is a text model. One legend for all panels, below them."""
    df = align[np.isfinite(align["calibrated"].astype(float))]
    ceiling = df["role"].eq("ceiling")
    vision = df[~ceiling]
    models = vision[
        ~vision["vision_control"]
        & np.isfinite(vision["vision_params_m"].astype(float))
        & (vision["vision_params_m"] > 0)
    ]
    if models.empty:
        return None
    plt = _pyplot()
    panels = sorted(models.groupby(["dataset", "n", "metric"], sort=False).groups, key=str)
    fig, axes = _grid(len(panels))
    texts = sorted(vision["text"].unique())
    colours = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(texts)}
    families = sorted(models["vision_family"].fillna("unknown").unique())
    markers = dict(zip(families, "osD^v<>ph*"))
    dashes = ["--", ":", "-.", (0, (6, 2, 1, 2))] * 4
    control_styles = dict(zip(sorted(vision[vision.vision_control].vision.unique()), dashes))
    ceiling_pairs = sorted(set(zip(df[ceiling].vision, df[ceiling].text)))
    ceiling_styles = dict(zip(ceiling_pairs, ["-", *dashes]))
    for ax, (dataset, n, metric) in zip(axes, panels):
        in_panel = (df.dataset == dataset) & (df.n == n) & (df.metric == metric)
        panel = models[(models.dataset == dataset) & (models.n == n) & (models.metric == metric)]
        for (family, text), line in panel.groupby([panel.vision_family.fillna("unknown"), "text"]):
            line = (
                line.groupby("vision_params_m", as_index=False).mean(numeric_only=True).sort_values("vision_params_m")
            )
            x = line.vision_params_m.to_numpy(float)
            ax.plot(
                x, line.calibrated, marker=markers.get(family, "o"), color=colours[text], label=f"{family} vs {text}"
            )
            low, high = _calibrated_interval(line)
            if np.all(np.isfinite(low + high)):
                if len(x) > 1:
                    ax.fill_between(x, low, high, color=colours[text], alpha=0.18, linewidth=0)
                else:  # one size: a band has no width, so an error bar
                    ax.errorbar(
                        x,
                        line.calibrated,
                        yerr=[line.calibrated - low, np.array(high) - line.calibrated],
                        color=colours[text],
                        capsize=4,
                        linewidth=1,
                    )
        for c in df[in_panel & ~ceiling & df.vision_control].itertuples():
            ax.axhline(
                c.calibrated,
                color=colours.get(c.text, "grey"),
                linestyle=control_styles[c.vision],
                linewidth=1.3,
                label=f"control: {c.vision} vs {c.text}",
            )
        top = df[in_panel & ceiling]
        for c, low, high in zip(top.itertuples(), *_calibrated_interval(top)):
            label = f"ceiling: {c.vision} vs {c.text}"
            if math.isfinite(low) and math.isfinite(high):  # same label: the key shows the band under the line
                ax.axhspan(low, high, color="grey", alpha=0.2, linewidth=0, label=label)
            ax.axhline(
                c.calibrated, color="black", linestyle=ceiling_styles[(c.vision, c.text)], linewidth=1.6, label=label
            )
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("vision parameters (millions, log scale)")
        ax.set_ylabel(f"calibrated {metric}")
        ax.set_title(f"{metric}: {dataset}, N={n}", fontsize=10)
    fig.suptitle("Alignment with language models against vision model size", fontsize=12)
    _legend_below(fig, axes, handlelength=3.0)
    return fig


def scaling_figure(align: Any) -> list[Figure]:
    """The figure of `draw_scaling(align)` (`align`: the `load` table) as a `Figure`; nothing when it has none."""
    fig = draw_scaling(align)
    if fig is None:
        return []
    caption = (
        "Calibrated score = (best over layer pairs - permutation-null mean of that max) / (1 - null mean); "
        "0 = what shuffled pairs give. Bands/bars: the subsample interval of the max, calibrated the same "
        "way. Horizontal lines, not on the size axis: controls (pixels, random-init weights; dashed or dotted, "
        "in the colour of their text model) and the text-vs-text ceiling (black, its interval as a grey band)."
    )
    return [Figure("scaling", "Scaling: calibrated alignment against vision parameters", _png(fig), caption)]


def _align_pairs(records: Iterable[tuple[Path, dict[str, Any]]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(run, record, pair) for every pair of every align record."""
    return [
        (path.stem, rec, pair)
        for path, rec in records
        if rec["command"] == "align"
        for pair in rec["results"].get("pairs", [])
    ]


def draw_depth(records: Iterable[tuple[Path, dict[str, Any]]]) -> Any:
    """The layer-depth figure of the align `records` ((path, record) pairs) as a matplotlib figure, or None
    when they hold no pair: per metric, one line per (vision, text) pair, coloured by vision model and styled
    by text model (solid, dashed, ...), the best score over text layers at each vision hidden state against
    relative depth (hidden state / last hidden state stored: 0 = embeddings, 1 = last). One legend below the
    panels, its keys the plotted lines, long enough to show a dash on each side of the marker."""
    pairs = _align_pairs(records)
    metrics = sorted({m for _, _, p in pairs for m in p["report"]["metrics"]})
    if not metrics:
        return None
    plt = _pyplot()
    fig, axes = _grid(len(metrics))
    visions = sorted({p["vision"] for _, _, p in pairs})
    colours = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(visions)}
    texts = sorted({p["text"] for _, _, p in pairs})
    styles = dict(zip(texts, ["-", "--", ":", "-."] * 3))
    for ax, metric in zip(axes, metrics):
        for _run, _rec, pair in pairs:
            m = pair["report"]["metrics"].get(metric)
            if m is None:
                continue
            layers = list(pair["vision_layers"])
            last = max([*layers, *pair.get("dropped_constant_layers", {}).get("vision", [])]) or 1
            best = np.nanmax(np.array(m["matrix"], dtype=float), axis=1)
            ax.plot(
                np.array(layers) / last,
                best,
                marker=".",
                color=colours[pair["vision"]],
                linestyle=styles[pair["text"]],
                label=f"{pair['vision']} vs {pair['text']}",
            )
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("relative depth of the vision hidden state")
        ax.set_ylabel(f"{metric} (best over text layers)")
        ax.set_title(metric, fontsize=10)
    fig.suptitle("Where alignment lives: score against vision depth", fontsize=12)
    _legend_below(fig, axes, handlelength=4.5)
    return fig


def depth_figure(records: Iterable[tuple[Path, dict[str, Any]]]) -> list[Figure]:
    """The figure of `draw_depth(records)` as a `Figure`; nothing when it has none."""
    fig = draw_depth(records)
    if fig is None:
        return []
    caption = (
        "Each point: the best score over all text hidden states at one vision hidden state (raw, not calibrated). "
        "Colour: the vision model; line style: the text model."
    )
    return [Figure("depth", "Layer depth", _png(fig), caption)]


def heatmap_figures(records: Iterable[tuple[Path, dict[str, Any]]]) -> list[Figure]:
    """One figure per (dataset, N, metric): every pair's layer x layer matrix on one shared colour scale, a
    labelled colour bar, the best cell starred; rows are vision hidden states, columns text hidden states."""
    from matplotlib.colors import Normalize

    pairs = _align_pairs(records)
    groups: dict[tuple[str, int, str], list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for run, rec, pair in pairs:
        n = pair["report"].get("settings", {}).get("num_rows", rec.get("dataset", {}).get("rows"))
        for metric in pair["report"]["metrics"]:
            groups.setdefault((rec.get("dataset", {}).get("name", "?"), n, metric), []).append((run, rec, pair))
    out = []
    for (dataset, n, metric), members in sorted(groups.items(), key=str):
        mats = [np.array(p["report"]["metrics"][metric]["matrix"], dtype=float) for _, _, p in members]
        norm = Normalize(vmin=min(np.nanmin(x) for x in mats), vmax=max(np.nanmax(x) for x in mats))
        # no layout engine: constrained layout takes seconds per figure with a colour bar spanning the grid
        fig, axes = _grid(len(members), cols=min(4, len(members)), width=3.6, height=3.5, layout=None)
        fig.subplots_adjust(hspace=0.55, wspace=0.45, top=1 - 1.1 / fig.get_figheight())
        image = None
        for ax, (_, _, pair), mat in zip(axes, members, mats):
            m = pair["report"]["metrics"][metric]
            r, c = m["best_pair"]
            image = draw_heatmap(
                ax,
                mat,
                best=(r, c),
                xticks=pair["text_layers"],
                yticks=pair["vision_layers"],
                norm=norm,
                tick_count=8,
                tick_fontsize=7,
                star_size=11,
            )
            ax.set_title(
                f"{pair['vision']} vs {pair['text']}\nbest {m['best_score']:.3f} at "
                f"({pair['vision_layers'][r]}, {pair['text_layers'][c]})",
                fontsize=8,
            )
            ax.set_xlabel(f"{pair['text']} hidden state", fontsize=8)
            ax.set_ylabel(f"{pair['vision']} hidden state", fontsize=8)
        bar = fig.colorbar(image, ax=axes, shrink=0.9)
        bar.set_label(f"{metric} (one scale for all panels)")
        fig.suptitle(f"{metric}: {dataset}, N={n}", fontsize=12)
        caption = f"Layer x layer {metric}; the star marks the best pair (hidden-state indices, 0 = embeddings)."
        out.append(
            Figure(f"heatmap-{metric}-{dataset}-{n}", f"Heatmaps: {metric}, {dataset}, N={n}", _png(fig), caption)
        )
    return out


def draw_probes(probes: Any) -> Any:
    """The probe figure of `probes` (the `load_probes` table) as a matplotlib figure, or None without a best
    layer: the best layer's test figure per (task, vision model), beside its shuffled control, with the chance
    level as a black tick; one panel per task (figures differ between tasks); one legend below the panels."""
    best = probes[probes["best"]]
    if best.empty:
        return None
    tasks = list(dict.fromkeys(best.task))
    fig, axes = _grid(len(tasks), cols=3, width=4.2, height=3.6)
    for ax, task in zip(axes, tasks):
        rows = best[best.task == task].drop_duplicates(["run", "vision"])
        x = np.arange(len(rows))
        ax.bar(x - 0.2, rows.value, width=0.4, color="tab:blue", label="probe")
        ax.bar(
            x + 0.2, rows.control, width=0.4, color="lightgrey", hatch="//", edgecolor="grey", label="shuffled control"
        )
        for i, chance in enumerate(rows.chance):
            ax.hlines(chance, i - 0.45, i + 0.45, color="black", linewidth=1.5, label="chance" if i == 0 else None)
        ax.set_xticks(x, [f"{v}\n(state {s})" for v, s in zip(rows.vision, rows.hidden_state)], fontsize=7)
        ax.set_ylabel(rows.figure.iloc[0])
        ax.set_title(f"{task} (chance: {rows.chance_kind.iloc[0]})", fontsize=9)
        ax.set_ylim(0, max(1e-3, float(np.nanmax(rows[["value", "control", "chance"]].to_numpy(float)))) * 1.15)
    fig.suptitle("Linear probes: best layer (chosen on validation) on the test rows", fontsize=12)
    _legend_below(fig, axes)
    return fig


def probe_figure(probes: Any) -> list[Figure]:
    """The figure of `draw_probes(probes)` as a `Figure`; nothing when it has none."""
    fig = draw_probes(probes)
    if fig is None:
        return []
    caption = "Blue: the probe; hatched: the same procedure on shuffled labels/pairs; black tick: chance."
    return [Figure("probes", "Linear probes beside their controls", _png(fig), caption)]
