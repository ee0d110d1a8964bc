"""The report's figures as matplotlib objects (probe.report.figures.draw_*), not pixels: the scaling figure's x
axis holds vision models only, with the text-vs-text ceiling a horizontal line and band; no legend lies on an
axes; the depth legend shows each line's style. On tests/data/results, plus a ceiling pair (minilm vs smollm2,
as `probe demo` now writes it) added to a copy of its align record: the stored files predate the ceiling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from probe.report.figures import draw_depth, draw_probes, draw_scaling
from probe.report.tables import load, load_probes, records

DATA = Path(__file__).resolve().parents[1] / "data" / "results"
ALIGN = "align-20261130T022344Z.json"
CEILING_BEST = {"mutual_knn": 0.52, "cka": 0.81, "unbiased_cka": 0.47, "cknna": 0.58}  # raw max, as text-text is


def _ceiling_pair(record: dict) -> dict:
    """A minilm vs smollm2 pair record (the layout of probe.runs.align's `ceiling` entries) with made-up scores
    well above the vision pairs', its null taken from the tiny-ssl-vit vs smollm2 pair."""
    pairs = {(p["vision"], p["text"]): p for p in record["results"]["pairs"]}
    minilm, smollm2 = pairs["tiny-ssl-vit", "minilm"], pairs["tiny-ssl-vit", "smollm2"]
    rows, cols = len(minilm["text_layers"]), len(smollm2["text_layers"])
    metrics = {}
    for name, best in CEILING_BEST.items():
        m = dict(smollm2["report"]["metrics"][name])
        matrix = best * np.outer(np.linspace(0.6, 1.0, rows), np.linspace(0.7, 1.0, cols))  # max at the last cell
        null = m["null_max_mean"]
        m.update(
            matrix=matrix.tolist(),
            best_score=best,
            best_pair=[rows - 1, cols - 1],
            calibrated_score=(best - null) / (1 - null),
            max_interval=[best - 0.03, best + 0.02],
            best_pair_interval=[best - 0.03, best + 0.02],
        )
        metrics[name] = m
    return {
        "vision": "minilm",
        "text": "smollm2",
        "vision_layers": minilm["text_layers"],
        "text_layers": smollm2["text_layers"],
        "dropped_constant_layers": {"vision": [], "text": []},
        "report": {"settings": smollm2["report"]["settings"], "metrics": metrics},
        "heatmaps": {},
    }


@pytest.fixture(scope="module")
def with_ceiling(tmp_path_factory) -> Path:
    """A copy of tests/data/results whose align record holds a `ceiling` list with one text-vs-text pair."""
    out = tmp_path_factory.mktemp("ceiling") / "results"
    shutil.copytree(DATA, out)
    record = json.loads((out / ALIGN).read_text())
    record["results"]["ceiling"] = [_ceiling_pair(record)]
    (out / ALIGN).write_text(json.dumps(record))
    return out


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_scaling_axis_holds_vision_models_and_the_ceiling_is_a_line_with_its_band(with_ceiling) -> None:
    align = load(with_ceiling)
    ceiling = align[align.role == "ceiling"]
    assert set(ceiling.vision) == {"minilm"} and float(ceiling.vision_params_m.iloc[0]) == pytest.approx(22.7)
    vision_sizes = set(align[(align.role != "ceiling") & ~align.vision_control].vision_params_m.astype(float))
    fig = draw_scaling(align)
    try:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == 4  # one per metric
        for ax in axes:
            metric = ax.get_title().split(":")[0]
            # x data: only the vision models' sizes; horizontal lines and bands add none
            assert set(ax.dataLim.intervalx) <= vision_sizes
            low, high = ax.get_xlim()
            assert not low <= 22.7 <= high, "the ceiling's text model has a place on the size axis"
            for line in ax.get_lines():
                if (
                    line.get_label().startswith(("control:", "ceiling:"))
                    or line.get_transform() == ax.get_yaxis_transform()
                ):
                    continue
                assert set(np.asarray(line.get_xdata(), float)) <= vision_sizes, line.get_label()
            # the ceiling: a horizontal line at its calibrated score, over a band of its calibrated interval
            row = ceiling[ceiling.metric == metric].iloc[0]
            (line,) = [x for x in ax.get_lines() if x.get_label() == "ceiling: minilm vs smollm2"]
            assert list(line.get_xdata()) == [0, 1] and line.get_transform() == ax.get_yaxis_transform()
            np.testing.assert_allclose(line.get_ydata(), [row.calibrated] * 2)
            null = row.null_max_mean
            want = sorted((b - null) / (1 - null) for b in (row.ci_low, row.ci_high))
            to_data = ax.transData.inverted()
            bands = [
                sorted(
                    {round(y, 9) for y in to_data.transform(p.get_transform().transform(p.get_path().vertices))[:, 1]}
                )
                for p in ax.patches
            ]
            assert any(len(b) == 2 and np.allclose(b, want) for b in bands), bands
            # the controls keep their look: horizontal, dashed or dotted (tiny-random-vit, pixels-16 x 2 text models)
            controls = [x for x in ax.get_lines() if x.get_label().startswith("control:")]
            assert len(controls) == 4 and all(x.get_linestyle() in ("--", ":") for x in controls)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "ceiling: minilm vs smollm2" in labels and "tiny-ssl vs minilm" in labels
    finally:
        _close(fig)


def test_scaling_without_a_ceiling_is_unchanged() -> None:
    fig = draw_scaling(load(DATA))
    try:
        assert not [x for ax in fig.axes for x in ax.get_lines() if x.get_label().startswith("ceiling:")]
    finally:
        _close(fig)


def test_no_legend_lies_on_an_axes(with_ceiling) -> None:
    recs = records(with_ceiling)
    figs = [draw_scaling(load(with_ceiling)), draw_depth(recs), draw_probes(load_probes(with_ceiling))]
    try:
        for fig in figs:
            fig.canvas.draw()  # the Agg canvas: lays out (constrained layout) and places the legends
            renderer = fig.canvas.get_renderer()
            legends = [*fig.legends, *[ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]]
            assert len(legends) == 1, fig.get_suptitle()
            box = legends[0].get_window_extent(renderer)
            inside = fig.bbox
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0, "legend clipped"
            for ax in fig.axes:
                if ax.get_visible():
                    assert not box.overlaps(ax.get_window_extent(renderer)), (fig.get_suptitle(), ax.get_title())
    finally:
        for fig in figs:
            _close(fig)


def test_depth_legend_shows_each_line_style() -> None:
    fig = draw_depth(records(DATA))
    try:
        (legend,) = fig.legends
        lines = {x.get_label(): x for ax in fig.axes for x in ax.get_lines()}
        styles = set()
        for text, handle in zip(legend.get_texts(), legend.legend_handles):
            line = lines[text.get_text()]
            assert handle.get_linestyle() == line.get_linestyle(), text.get_text()
            assert handle.get_color() == line.get_color() and handle.get_marker() == line.get_marker()
            styles.add(handle.get_linestyle())
            if handle.get_linestyle() == "--":
                # a dash and a gap on each side of the marker: a key under ~3 dash periods reads as solid
                period = sum(matplotlib.rcParams["lines.dashed_pattern"]) * handle.get_linewidth()
                assert legend.handlelength * legend.prop.get_size_in_points() >= 3 * period
        assert styles == {"-", "--"}
        assert len(legend.get_texts()) == 6  # 3 vision x 2 text models
    finally:
        _close(fig)
