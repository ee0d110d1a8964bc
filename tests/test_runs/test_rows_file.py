"""The per-row agreement file of a run (rows.h5): written by `probe align --log-rows`, named by the results JSON,
read back by `probe.load_rows` with per-pair means equal to the scores, thumbnails for the gallery rows."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import probe
from probe.errors import CacheError, InputError
from probe.report.rows import read_rows
from probe.runs.rows import GALLERY_ROWS, extremes, gallery_rows

N = 40


@pytest.fixture(scope="module")
def logged_run(tiny_model_dir, labelled_dataset, tmp_path_factory):
    """An align run with --log-rows and a control: the run folder."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("rows-run")
    args = [
        "align",
        "--vision",
        str(tiny_model_dir("dinov2")),
        "--text",
        str(tiny_model_dir("bert")),
        "--dataset",
        str(labelled_dataset),
        "--cache-dir",
        str(tmp / "cache"),
        "--output",
        str(tmp / "out"),
        "--permutations",
        "5",
        "--subsamples",
        "3",
        "--topk",
        "5",
        "--controls",
        "pixels-8",
        "--log-rows",
        "--no-progress",
    ]
    proc = subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (results,) = (tmp / "out" / "latest").glob("align-*.json")
    return results


def test_results_name_the_rows_file_and_means_equal_the_scores(logged_run) -> None:
    record = json.loads(logged_run.read_text())
    assert record["results"]["rows"] == {"file": "rows.h5"}
    frame = probe.load_rows(logged_run)
    scored = {(p["vision"], p["text"]): p for p in record["results"]["pairs"] + record["results"]["controls"]["pairs"]}
    assert set(zip(frame["vision"], frame["text"])) == set(scored)
    for (vision, text, metric), rows in frame.groupby(["vision", "text", "metric"]):
        m = scored[(vision, text)]["report"]["metrics"][metric]
        assert len(rows) == N and abs(rows["score"].mean() - m["best_score"]) < 1e-9
        assert (rows["vision_state"].iloc[0], rows["text_state"].iloc[0]) == tuple(m["best_hidden_states"])
    assert set(frame["role"]) == {"model", "control"}
    row = frame[(frame["metric"] == "mutual_knn") & (frame["role"] == "model")].iloc[3]
    assert len(row["vision_neighbours"]) == 5 and row["id"] not in row["vision_neighbours"]
    assert {"caption", "id"} <= set(frame.columns) and "colour" in frame.columns  # the dataset's label field


def test_gallery_rows_have_thumbnails_and_filters_work(logged_run) -> None:
    rows = read_rows(logged_run.parent)
    (pair,) = rows.find(vision=rows.pairs[0].vision, text=rows.pairs[0].text, metric="mutual_knn")
    top, bottom = extremes(pair.scores, GALLERY_ROWS)
    assert pair.scores[top[0]] == pair.scores.max() and pair.scores[bottom[0]] == pair.scores.min()
    assert set(top) | set(bottom) <= set(rows.thumbnails)
    assert all(jpeg[:2] == b"\xff\xd8" for jpeg in rows.thumbnails.values())  # JPEG magic
    assert len(probe.load_rows(logged_run, metric="cka")["metric"].unique()) == 1


def test_a_run_without_rows_and_a_damaged_file_are_one_line(logged_run, tmp_path) -> None:
    with pytest.raises(InputError, match="no per-row agreement file"):
        probe.load_rows(tmp_path)
    broken = tmp_path / "rows.h5"
    with h5py.File(broken, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(CacheError, match="not a probe rows file"):
        probe.load_rows(broken)


def test_gallery_rows_are_extremes_and_their_neighbours() -> None:
    from types import SimpleNamespace

    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.3])
    first = np.array([[1], [0], [3], [4], [2]])
    second = np.array([[2], [2], [0], [1], [1]])
    top, bottom = extremes(scores, 2)
    assert top == [1, 3] and bottom == [2, 4]  # ties to the lower row
    shown = gallery_rows(SimpleNamespace(scores=scores, first_neighbours=first, second_neighbours=second))
    assert shown == {0, 1, 2, 3, 4}
