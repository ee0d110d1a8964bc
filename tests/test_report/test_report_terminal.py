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


def _demo_run():
    """A `probe demo` run as its terminal report reads it, with values of a real one (N=1024, CPU): the trained
    ViT and its two controls against both text models, the ceiling, each model's comparison with its best
    control, and three probe tasks per vision model. Where tiny-random-vit is the best control, its 15
    characters, a 4-decimal difference and a 13-character interval make the widest control table the demo
    prints."""
    from types import SimpleNamespace as NS

    import numpy as np

    from probe.align.stats import ControlComparison
    from probe.runs.controls import ControlRow
    from probe.runs.demo import summarise

    metrics = ("mutual_knn", "cka", "unbiased_cka", "cknna")
    states = {"tiny-ssl-vit": 7, "pixels-16": 1, "tiny-random-vit": 7, "minilm": 7, "smollm2": 31}
    # per metric: best, chance, null max mean, calibrated, interval of the best
    scores = {
        "mutual_knn": (0.091, 0.0098, 0.012, 0.080, (0.074, 0.104)),
        "cka": (0.136, 0.021, 0.022, 0.116, (0.119, 0.157)),
        "unbiased_cka": (0.121, 0.0005, 0.0016, 0.120, (0.104, 0.145)),
        "cknna": (0.116, 0.0063, 0.0080, 0.109, (0.099, 0.139)),
    }

    def pair(vision, text, scale=1.0):
        def metric(best, chance, null, calibrated, interval):
            rows, cols = states[vision], states[text]
            return NS(
                best_score=best * scale,
                best_pair=(rows - 1, 0),
                chance_level=chance,
                null_max_mean=null,
                calibrated_score=calibrated * scale,
                p_value=1 / 51,
                max_interval=(interval[0] * scale, interval[1] * scale),
                matrix=np.linspace(0, best * scale, rows * cols).reshape(rows, cols),
            )

        return NS(
            vision_name=vision,
            text_name=text,
            vision=NS(layers=list(range(states[vision]))),
            text=NS(layers=list(range(states[text]))),
            report=NS(metrics={m: metric(*scores[m]) for m in metrics}),
        )

    texts = ("minilm", "smollm2")
    comparisons = {  # metric -> best control, comparison
        "mutual_knn": ("tiny-random-vit", ControlComparison(0.080, 0.086, -0.0060, (-0.017, 0.0090), False)),
        "cka": ("pixels-16", ControlComparison(0.116, 0.116, 0.0003, (-0.011, 0.0096), False)),
        "unbiased_cka": ("tiny-random-vit", ControlComparison(0.120, 0.088, 0.032, (0.019, 0.046), True)),
        "cknna": ("pixels-16", ControlComparison(0.109, 0.149, -0.040, (-0.068, -0.016), False)),
    }
    align = NS(
        settings=NS(
            k=10, clip_quantile=0.95, permutations=50, subsamples=20, subsample_fraction=0.8, seed=0, metrics=metrics
        ),
        dataset={"name": "openmoji", "rows": 1024},
        pairs=[pair("tiny-ssl-vit", t) for t in texts],
        control_pairs=[pair(v, t, 0.8) for v in ("pixels-16", "tiny-random-vit") for t in texts],
        ceiling=[pair("minilm", "smollm2", 3.0)],
        control_rows=[ControlRow("tiny-ssl-vit", t, m, *comparisons[m]) for t in texts for m in metrics],
        size_rows=[],
        vision_params_m={"tiny-ssl-vit": 2.83, "pixels-16": 0.0, "tiny-random-vit": 2.83},
        results_path=None,
    )

    def tasks(n):
        labels = NS(
            probe=NS(accuracy=0.431, balanced_accuracy=0.372, macro_f1=0.332, chosen_c=1e-4),
            control=NS(accuracy=0.201),
            majority_rate=0.196,
        )
        words = NS(
            probe=NS(macro_average_precision=0.408, macro_base_rate=0.015, macro_auroc=0.807, chosen_alpha=1e2),
            control=NS(macro_average_precision=0.041, macro_auroc=0.471),
        )
        crossmodal = NS(
            probe=NS(r2=-0.0062, top1=0.0098, top5=0.063, chosen_alpha=1e4),
            control=NS(r2=-0.0058, top1=0.0049, top5=0.015),
            chance_top1=1 / 205,
            chance_top5=5 / 205,
        )
        out = []
        for name, kind, result in (
            ("category", "labels", labels),
            ("words", "words", words),
            ("text:smollm2", "crossmodal", crossmodal),
        ):
            result.n_test = 205
            layers = [NS(layer=i, result=result) for i in range(n)]
            sweep = NS(layers=layers, best_layer=n - 1, best=layers[-1])
            out.append(NS(name=name, kind=kind, sweep=sweep, hidden_states=list(range(n)), best_state=n - 1))
        return out

    linear = {
        v: NS(
            vision=NS(key={"model": {"name": v}}),
            dataset={"name": "openmoji", "rows": 1024},
            settings=NS(seed=0),
            tasks=tasks(states[v]),
            results_path=None,
        )
        for v in ("tiny-ssl-vit", "pixels-16", "tiny-random-vit")
    }
    return NS(align=align, linear=linear, summary=summarise(align, linear, trained="tiny-ssl-vit"), results_path=None)


def _cells(table) -> list[str]:
    """The plain text of every header and cell of a rich Table."""
    from rich.text import Text

    return [
        cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
        for column in table.columns
        for cell in (column.header, *column.cells)
    ]


def test_demo_tables_keep_every_cell_whole_at_80_columns() -> None:
    """Every table `probe demo` prints, at 80 columns: no line longer, no cell cut short with "…", and every word
    of every header and cell whole in the output (a cell too wide wraps at its spaces)."""
    from probe.report.terminal import (
        align_table,
        controls_table,
        demo_tables,
        linear_task_table,
        render_demo,
        scaling_tables,
    )

    run = _demo_run()
    align = run.align
    controls = [
        controls_table([r for r in align.control_rows if r.text == p.text_name], vision=p.vision_name, text=p.text_name)
        for p in align.pairs
    ]
    tables = [
        *(align_table(p, permutations=50) for p in align.pairs + align.control_pairs + align.ceiling),
        *controls,
        *scaling_tables(align),
        *(linear_task_table(task) for lin in run.linear.values() for task in lin.tasks),
        *demo_tables(run.summary),
    ]
    for table in tables:
        text = _render(table, width=80)
        assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
        words = set(text.split())
        for cell in _cells(table):
            assert set(cell.split()) <= words, f"{cell!r} is cut in\n{text}"
    for table in controls:  # the verdicts whole: one "not" per row that is not above, one "above" per row
        words = _render(table, width=80).split()
        assert words.count("not") == 3 and words.count("above") == 4 and "tiny-random-vit" in words

    console = Console(width=80, record=True, color_system=None)
    render_demo(run, console)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
