"""`probe explain`: one pair's per-row agreement from a run's rows file, explained: the extreme rows are the
highest and lowest scoring, the per-label means are those of `probe.load_rows`, Spearman's rho is that of the
average ranks, the output keeps every cell whole at 80 columns, and bad input is one line."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console
from rich.text import Text

import probe
from probe.errors import InputError
from probe.report.explain import (
    MAX_GROUPS,
    MIN_GROUP_ROWS,
    NEIGHBOURS_SHOWN,
    average_ranks,
    explain,
    explain_rows,
    label_agreement,
    labels_table,
    rows_table,
    spearman,
    spearman_test,
)
from probe.report.rows import read_rows

TOP = 4


@pytest.fixture(scope="module")
def logged_run(tiny_model_dir, labelled_dataset, tmp_path_factory):
    """An align run with --log-rows and a control (pixels-8): the run folder."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("explain-run")
    args = [
        "align",
        *("--vision", str(tiny_model_dir("dinov2")), "--text", str(tiny_model_dir("bert"))),
        *("--dataset", str(labelled_dataset), "--cache-dir", str(tmp / "cache"), "--output", str(tmp / "out")),
        *("--permutations", "5", "--subsamples", "3", "--topk", "5", "--controls", "pixels-8"),
        *("--metric", "mutual_knn,cka", "--log-rows", "--no-progress"),
    ]
    proc = subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return (tmp / "out" / "latest").resolve()


def test_extreme_rows_are_the_highest_and_lowest_with_their_neighbours(logged_run) -> None:
    rows = read_rows(logged_run)
    e = explain(logged_run, top=TOP)
    (pair,) = [p for p in rows.pairs if p.role == "model" and p.metric == "mutual_knn"]
    assert (e.vision, e.text, e.role, e.metric) == (pair.vision, pair.text, "model", "mutual_knn")
    ordered = np.sort(pair.scores)
    assert [r.agreement for r in e.top] == ordered[::-1][:TOP].tolist()
    assert [r.agreement for r in e.bottom] == ordered[:TOP].tolist()
    assert math.isclose(e.row_mean, e.score, abs_tol=1e-9) and e.chance == pytest.approx(5 / 39)
    first = e.top[0]
    assert first.id == rows.ids[first.row] and pair.scores[first.row] == pair.scores.max()
    shown = pair.vision_neighbours[first.row][:NEIGHBOURS_SHOWN]
    assert [c for c, _ in first.vision_neighbours] == [rows.captions[n] for n in shown]
    text_all = set(pair.text_neighbours[first.row].tolist())
    assert [shared for _, shared in first.vision_neighbours] == [int(n) in text_all for n in shown]


def test_label_means_are_a_groupby_of_load_rows(logged_run) -> None:
    e = explain(logged_run, metric="cka")
    frame = probe.load_rows(logged_run, vision=e.vision, text=e.text, metric="cka")
    expected = frame.groupby("colour")["score"].agg(["mean", "size"])
    (label,) = e.labels
    assert label.field == "colour" and label.hidden == 0 and label.pooled is None
    assert {g.value: g.rows for g in label.groups} == expected["size"].to_dict()
    assert {g.value: g.mean for g in label.groups} == pytest.approx(expected["mean"].to_dict(), abs=1e-12)
    assert [g.mean for g in label.groups] == sorted((g.mean for g in label.groups), reverse=True)
    assert all(g.interval[0] <= g.mean <= g.interval[1] for g in label.groups)
    assert explain(logged_run, metric="cka").labels == e.labels  # fixed seed: the same intervals


def test_a_control_is_chosen_by_name_and_caption_length_is_ranked(logged_run) -> None:
    rows = read_rows(logged_run)
    e = explain_rows(rows, vision="pixels-8")
    assert e.role == "control" and e.vision == "pixels-8"
    # Every caption has five words: no correlation to speak of.
    assert e.length.rho is None and e.length.p_value is None
    (pair,) = rows.find(vision="pixels-8", metric="mutual_knn")
    captions = [" ".join(["word"] * (1 + i % 7)) for i in range(len(rows.ids))]
    longer = explain_rows(replace(rows, captions=captions), vision="pixels-8")
    assert longer.length.rho == pytest.approx(spearman(pair.scores, [1 + i % 7 for i in range(len(captions))]))
    assert 0 < longer.length.p_value <= 1


def test_spearman_averages_tied_ranks() -> None:
    assert average_ranks([3, 1, 3]).tolist() == [2.5, 1.0, 2.5]
    # x ranks 1, 2.5, 2.5, 4 and y ranks 1, 3, 2, 4: deviations (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5),
    # so rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10).
    assert spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    x = np.arange(50.0)
    strong = spearman_test(x, x**2, permutations=199)
    assert strong.rho == pytest.approx(1.0) and strong.p_value == pytest.approx(1 / 200)
    noise = spearman_test(x, np.random.default_rng(1).permutation(50), permutations=199)
    assert noise.p_value > 0.05 and noise == spearman_test(
        x, np.random.default_rng(1).permutation(50), permutations=199
    )


def test_a_field_with_many_values_shows_its_ends_and_pools_small_values() -> None:
    values = [f"v{i % 20:02d}" for i in range(200)] + ["rare", "rare", "single"]
    scores = np.array([i % 20 for i in range(200)] + [100, 100, 100], dtype=float)
    label = label_agreement(scores, values, field="f")
    assert label.hidden == 20 - MAX_GROUPS and len(label.groups) == MAX_GROUPS
    assert label.groups[0].value == "v19" and label.groups[-1].value == "v00"
    assert (label.pooled.value, label.pooled.rows, label.pooled.mean) == ("2 values", 3, 100.0)
    assert MIN_GROUP_ROWS > 2
    assert label_agreement(scores, [str(i) for i in range(203)], field="id") is None  # every row its own value


def _cells(table) -> list[str]:
    return [
        cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
        for column in table.columns
        for cell in (column.header, *column.cells)
    ]


def test_the_output_keeps_every_cell_whole_at_80_columns(logged_run, cli, monkeypatch) -> None:
    e = explain(logged_run)
    tables = [rows_table("top", e.top, metric=e.metric), rows_table("bottom", e.bottom, metric=e.metric)]
    tables += [labels_table(label, metric=e.metric, chance=e.chance) for label in e.labels]
    for table in tables:
        console = Console(width=80, record=True, color_system=None)
        console.print(table)
        text = console.export_text()
        assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
        words = set(text.split())
        for cell in _cells(table):
            assert set(cell.split()) <= words, f"{cell!r} is cut in\n{text}"
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli(["explain", str(logged_run), "--top", "3"])
    assert code == 0, err
    lines = [line for line in out.splitlines() if not line.startswith("rows file: ")]  # a path, soft-wrapped
    assert all(len(line) <= 80 for line in lines) and "…" not in out, out
    assert "rows that agree most" in out and "mutual_knn per colour" in out and "equals the score" in out
    assert all(r.id in out.split() for r in e.top[:3])


def test_a_demo_folder_holding_one_run_is_read_and_two_are_listed(logged_run, tmp_path) -> None:
    demo = tmp_path / "demo"
    (demo / "align-1").mkdir(parents=True)
    shutil.copy(logged_run / "rows.h5", demo / "align-1" / "rows.h5")
    (demo / "latest").symlink_to("align-1")
    assert explain(demo).score == explain(logged_run).score
    (demo / "align-2").mkdir()
    shutil.copy(logged_run / "rows.h5", demo / "align-2" / "rows.h5")
    with pytest.raises(InputError, match=r"holds 2 rows files \(align-1/rows.h5, align-2/rows.h5\)"):
        explain(demo)


def test_bad_names_and_a_run_without_rows_are_one_line(logged_run, tmp_path, cli) -> None:
    def one_line(args: list[str]) -> str:
        code, out, err = cli(["explain", *args])
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    err = one_line([str(logged_run), "--vision", "nope"])
    assert "--vision nope" in err and "pixels-8 vs" in err and "(control)" in err, err
    err = one_line([str(logged_run), "--metric", "cknna"])
    assert "--metric cknna" in err and "mutual_knn" in err, err
    err = one_line([str(tmp_path)])
    assert "no per-row agreement file" in err and "--log-rows" in err, err
    with pytest.raises(InputError, match="top=0"):
        explain(logged_run, top=0)
