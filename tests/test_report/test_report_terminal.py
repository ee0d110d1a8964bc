"""What people read in a terminal: numbers in one convention, tables that fit 80 columns with every name whole,
and heatmaps that still say something without colour."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from probe.report.numbers import fmt_interval, fmt_num, fmt_p, wilson_interval
from probe.report.plots import heatmap_text


def test_numbers_read_as_people_expect() -> None:
    assert fmt_num(0.181234) == "0.181"
    assert fmt_num(0.009775171065493646) == "0.0098"  # a chance level keeps 2 significant digits
    assert fmt_num(-6.3e-05) == "-0.0001"
    assert fmt_num(-0.0000001) == "0.0000"  # never "-0.0000"
    assert fmt_num(None) == "–"
    assert fmt_p(0.004975124378109453, permutations=200) == "<0.005"  # at its floor 1/(P+1)
    assert fmt_p(1 / 11, permutations=10) == "<0.1"
    assert fmt_p(0.0199, permutations=200) == "0.02"
    assert fmt_p(0.134, permutations=200) == "0.13"
    assert fmt_interval((0.1234, 0.2346)) == "0.123–0.235"


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(6, 19)  # 0.316 on 19 test rows
    assert low == pytest.approx(0.1536, abs=1e-3) and high == pytest.approx(0.5399, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(3, 0) is None


def _render(renderable, *, width: int, colour: bool = False) -> str:
    console = Console(width=width, record=True, color_system="truecolor" if colour else None, force_terminal=colour)
    console.print(renderable)
    return console.export_text()


def test_heatmap_without_colour_shows_shades_and_fits_the_width() -> None:
    m = np.arange(6 * 60, dtype=float).reshape(6, 60) / 360
    text = _render(
        heatmap_text(
            m, title="t", row_labels=list(range(6)), col_labels=list(range(60)), best=(5, 59), colour=False, width=80
        ),
        width=80,
    )
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "█" in text and "░" in text and "★" in text and "1 column in 2 shown" in text
    # The lowest row starts at the minimum (blank shade), the top row ends near the maximum.
    assert lines[6].startswith("0   ")


def test_align_tables_fit_80_columns_with_whole_names() -> None:
    from types import SimpleNamespace

    from probe.report.terminal import align_table, scaling_tables

    def metric(best):
        return SimpleNamespace(
            best_score=best,
            best_pair=(1, 2),
            chance_level=0.0098,
            null_max_mean=0.0312,
            calibrated_score=0.1,
            p_value=1 / 201,
            max_interval=(-0.0143, 0.1291),
        )

    long_vision, long_text = "facebook/webssl-dino7b-full8b-518", "NousResearch/Meta-Llama-3-8B"
    names = ("mutual_knn", "cka", "unbiased_cka", "cknna")
    pair = SimpleNamespace(
        vision_name=long_vision,
        text_name=long_text,
        vision=SimpleNamespace(layers=[0, 16, 32]),
        text=SimpleNamespace(layers=[0, 1, 32]),
        report=SimpleNamespace(metrics={n: metric(0.16) for n in names}),
    )
    text = _render(align_table(pair, permutations=200), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert f"{long_vision} vs {long_text}" in text and "unbiased_cka" in text and "…" not in text
    assert "<0.005" in text and "-0.014–0.129" in text and "16,32" in text
    run = SimpleNamespace(settings=SimpleNamespace(metrics=names), pairs=[pair], vision_params_m={long_vision: 7000.0})
    (table,) = scaling_tables(run)
    text = _render(table, width=80)
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert long_vision in text and long_text in text and "7,000M" in text


@pytest.mark.parametrize("args", [["models"], ["datasets"]])
def test_listings_fit_80_columns_with_every_name_whole(args) -> None:
    from typer.testing import CliRunner

    import probe.cli.info  # noqa: F401 - registers the commands
    import probe.cli.models  # noqa: F401
    from probe.cli.main import app
    from probe.models.names import list_models

    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in result.output
    if args == ["models"]:
        first_words = {line.split()[0] for line in lines if line.startswith(" ") and line.split()}
        assert {spec.alias for spec in list_models()} <= first_words  # every alias whole, at the start of a row
        assert "hub, gated" in result.output


def test_cache_listing_fits_80_columns(tmp_path) -> None:
    from pathlib import Path as P
    from types import SimpleNamespace

    from probe.report.listings import caches_table

    entries = [
        SimpleNamespace(
            model="facebook/webssl-dino7b-full8b-518",
            dataset="coco-captions",
            modality="vision",
            pools=("cls", "mean"),
            rows=5000,
            rows_written=5000,
            layers=33,
            size_bytes=2_700_000_000,
            state="complete",
            note="",
            path=P("/c/features/x/vision-cls+mean-0123456789abcdef.h5"),
        )
    ]
    text = _render(caches_table(entries), width=80)
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    assert "facebook/webssl-dino7b-full8b-518" in text and "coco-captions, cls+mean, 33 layers" in text
    assert "2.7 GB" in text and "5,000" in text and "vision-cls+mean-0123456789abcdef.h5" in text


def test_probe_tables_fit_80_columns_at_demo_scale() -> None:
    """The widest probe table (cross-modal) with N=1024-like figures: small R² values take 4 decimals."""
    from types import SimpleNamespace

    from probe.report.terminal import linear_task_table

    def layer(i):
        scores = SimpleNamespace(r2=-0.0062 + i * 0.004, top1=0.0098, top5=0.063, chosen_alpha=1e4)
        control = SimpleNamespace(r2=-0.0058, top1=0.0049, top5=0.0098)
        result = SimpleNamespace(probe=scores, control=control, n_test=205, chance_top1=1 / 205, chance_top5=5 / 205)
        return SimpleNamespace(layer=i, result=result)

    layers = [layer(i) for i in range(7)]
    task = SimpleNamespace(
        name="text:smollm2",
        kind="crossmodal",
        best_state=6,
        hidden_states=list(range(7)),
        sweep=SimpleNamespace(layers=layers, best_layer=6),
    )
    text = _render(linear_task_table(task), width=80)
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text and "1e4" in text
