"""The reading study's two report tables (probe.report.reading, rendered by probe.report.page) on synthetic results:
align records laid out as probe.runs.align writes them (model pairs, control pairs and comparisons, each report
with its `subsample_maxima`), scored for real by `score_alignment` on planted features, for the WebSSL DINO
checkpoints of the `webssl-reading` preset against llama3 on two picture datasets and their rendered twins.

- pictures vs rendered text: every (vision, text, metric) on both datasets of a twin pair, with the numbers of
  `probe.report.tables.load`;
- the text filter's effect: filtered - unfiltered calibrated scores with the interval `compare_with_control`
  gives on the same numbers in memory, a verdict from it, and "not comparable" across seeds or rows."""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from probe.align.settings import AlignSettings
from probe.align.stats import compare_with_control, score_alignment
from probe.report import reading
from probe.report.page import filter_table, picture_text_tables
from probe.report.tables import load, records
from probe.results import write_results
from probe.runs.controls import compare_to_controls, control_names

SETTINGS = AlignSettings(metrics=("mutual_knn", "cka"), k=5, permutations=20, subsamples=12, device="cpu")
TEXT = "llama3"
FULL_2B, LIGHT_2B, HEAVY_2B = (f"webssl-dino2b-{d}-224" for d in ("full2b", "light2b", "heavy2b"))
FULL_300M, LIGHT_300M = "webssl-dino300m-full2b-224", "webssl-dino300m-light2b-224"
FULL_3B, LIGHT_3B, HEAVY_3B = (f"webssl-dino3b-{d}-224" for d in ("full2b", "light2b", "heavy2b"))
STUDY = [FULL_300M, LIGHT_300M, FULL_2B, LIGHT_2B, HEAVY_2B, FULL_3B]
CONTROLS = ["pixels-16", "random-init"]
DATASETS = ["wit-1024", "rendered:wit-1024", "openmoji", "openmoji-names"]
# How much of the text geometry each model's features carry (0: none): light2b well above full2b and heavy2b well
# below it at 2B, so the verdicts are certain; the 300M pair close together.
SHARE = {FULL_300M: 0.5, LIGHT_300M: 0.55, FULL_2B: 0.8, LIGHT_2B: 2.0, HEAVY_2B: 0.0, FULL_3B: 0.7}
SHARE.update({LIGHT_3B: 0.8, HEAVY_3B: 0.8, "pixels-16": 0.0, f"random-init:{FULL_2B}": 0.0})
for name in STUDY:
    SHARE.setdefault(f"random-init:{name}", 0.0)


def _features(name: str, dataset: str, n: int) -> np.ndarray:
    """[n, 2, 12] features of model `name` (or of the text model) on `dataset`: the dataset's text geometry
    mixed in at SHARE[name], plus the model's own noise."""
    text = np.random.default_rng(zlib.crc32(dataset.removeprefix("rendered:").encode()))
    base = text.standard_normal((n, 2, 12))
    if name == TEXT:
        return base.astype(np.float32)
    own = np.random.default_rng(zlib.crc32(f"{name} on {dataset}".encode()))
    return (SHARE[name] * base + own.standard_normal((n, 2, 12))).astype(np.float32)


def _pair(vision: str, report) -> dict:
    """One pair's entry, as probe.runs.align.pair_record writes it."""
    out = report.to_dict()
    for m in report.metrics.values():
        out["metrics"][m.metric]["best_hidden_states"] = list(m.best_pair)
    return {
        "vision": vision,
        "text": TEXT,
        "vision_layers": [0, 1],
        "text_layers": [0, 1],
        "dropped_constant_layers": {"vision": [], "text": []},
        "report": out,
        "heatmaps": {},
    }


def _align_record(folder: Path, dataset: str, vision: list[str], *, controls=(), n: int = 80, seed: int = 0) -> dict:
    """Score `vision` (and `controls`) against llama3 on `dataset` and write the align record into `folder`, as
    `probe align` would; returns (vision, text) -> report."""
    settings = replace(SETTINGS, seed=seed)
    text = _features(TEXT, dataset, n)
    cmap = control_names(controls, vision)
    cnames = list(dict.fromkeys(c for cs in cmap.values() for c in cs))
    reports = {(v, TEXT): score_alignment(_features(v, dataset, n), text, settings) for v in [*vision, *cnames]}
    rows = compare_to_controls(reports, cmap, settings=settings)
    write_results(
        folder,
        command="align",
        settings={"align": asdict(settings), "controls": list(controls)},
        inputs=[],
        dataset={"name": dataset, "rows": n, "fingerprint": f"{dataset}-{n}", "source": "synthetic"},
        results={
            "pairs": [_pair(v, reports[(v, TEXT)]) for v in vision],
            "vision_params_m": {},
            "controls": {
                "models": cmap,
                "pairs": [_pair(c, reports[(c, TEXT)]) for c in cnames],
                "comparisons": [r.to_dict() for r in rows],
            },
            "ceiling": [],
        },
    )
    return reports


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(results folder, (dataset, vision) -> report): the preset's grid on its four datasets, plus the 3B
    checkpoints scored apart: light2b with another seed, heavy2b on fewer rows of the same dataset."""
    root = tmp_path_factory.mktemp("reading")
    reports = {}
    for dataset in DATASETS:
        folder = root / dataset.replace(":", "-") / "align-run"
        made = _align_record(folder, dataset, STUDY, controls=CONTROLS)
        reports.update({(dataset, v): r for (v, _), r in made.items()})
    _align_record(root / "other-seed", "wit-1024", [LIGHT_3B], seed=1)
    _align_record(root / "other-rows", "wit-1024", [HEAVY_3B], n=60)
    return root, reports


def test_pictures_beside_their_rendered_text_hold_the_scores_of_each_run(study) -> None:
    root, _ = study
    align = load(root)
    frame = reading.picture_text(align)
    assert list(frame.columns) == list(reading.PICTURE_TEXT_COLUMNS)
    twins = list(dict.fromkeys(zip(frame.pictures, frame.rendered)))
    assert sorted(twins) == [("openmoji", "openmoji-names"), ("wit-1024", "rendered:wit-1024")]
    # models and controls, never the 3B runs scored on one dataset only
    models = [*STUDY, "pixels-16", *(f"random-init:{v}" for v in STUDY)]
    for pictures, rendered in twins:
        mine = frame[frame.pictures == pictures]
        assert sorted(mine.vision.unique()) == sorted(models) and len(mine) == len(models) * 2
        for r in mine.itertuples():
            for dataset, side in ((pictures, "pictures"), (rendered, "rendered")):
                (want,) = align[
                    (align.dataset == dataset) & (align.vision == r.vision) & (align.metric == r.metric)
                ].itertuples()
                assert getattr(r, f"best_{side}") == want.best_score
                assert getattr(r, f"calibrated_{side}") == want.calibrated
                assert getattr(r, f"chance_{side}") == want.chance
                assert getattr(r, f"n_{side}") == 80
    tables = picture_text_tables(frame)
    assert [(p, r) for p, r, _ in tables] == twins
    headers, rows = tables[0][2]
    assert headers[4:7] == ["picture best", "picture calibrated", "picture chance"] and len(rows) == len(models) * 2


def test_the_filter_effect_is_the_paired_comparison_of_the_controls(study) -> None:
    root, reports = study
    frame = reading.filter_effects(records(root))
    assert list(frame.columns) == list(reading.FILTER_COLUMNS)
    comparable = frame[~frame.verdict.str.startswith(reading.NOT_COMPARABLE)]
    # every filtered checkpoint of the grid, on every dataset and metric; sizes in order
    assert len(comparable) == 3 * len(DATASETS) * len(SETTINGS.metrics)
    assert list(dict.fromkeys(frame.full)) == [FULL_300M, FULL_2B, FULL_3B]
    for r in comparable.itertuples():
        model, full = reports[(r.dataset, r.filtered)], reports[(r.dataset, r.full)]
        want = compare_with_control(model.metrics[r.metric], full.metrics[r.metric], fraction=0.8, confidence=0.95)
        assert (r.difference, r.diff_low, r.diff_high) == (want.difference, *want.interval)
        assert r.filtered_calibrated == want.model_calibrated and r.full_calibrated == want.control_calibrated
        assert r.verdict == reading.verdict(want.interval, difference=want.difference)
        assert r.full_data == "full2b" and r.filtered_data == r.filtered.split("-")[-2] and r.n == 80
    at_2b = comparable[comparable.full == FULL_2B].set_index(["filtered_data", "dataset", "metric"]).verdict
    assert set(at_2b["light2b"]) == {reading.ABOVE} and set(at_2b["heavy2b"]) == {reading.BELOW}
    # the 3B checkpoints were scored apart: another seed, other rows
    apart = frame[frame.full == FULL_3B].set_index("filtered").verdict
    assert set(apart[LIGHT_3B]) == {"not comparable (other settings: seed)"}
    assert set(apart[HEAVY_3B]) == {"not comparable (other rows)"}
    assert frame[frame.full == FULL_3B].difference.isna().all()


def test_verdicts_follow_the_interval() -> None:
    assert reading.verdict((0.01, 0.2), difference=0.1) == "above 0"
    assert reading.verdict((-0.2, -0.01), difference=-0.1) == "below 0"
    assert reading.verdict((-0.2, 0.0), difference=-0.1) == "overlaps 0"
    assert reading.verdict(None, difference=0.1) == reading.NO_INTERVAL
    assert reading.verdict(None, difference=None) == reading.NOT_CALIBRATED


def test_the_filter_table_has_one_line_per_size_dataset_and_metric(study) -> None:
    root, _ = study
    headers, rows = filter_table(reading.filter_effects(records(root)))
    assert headers == [
        "full2b checkpoint",
        "dataset",
        "text",
        "metric",
        "full2b calibrated",
        "light2b − full2b",
        "paired interval",
        "verdict",
        "heavy2b − full2b",
        "paired interval",
        "verdict",
    ]
    by_key = {tuple(r[:4]): r for r in rows}
    assert len(rows) == 3 * len(DATASETS) * len(SETTINGS.metrics) - 3 * len(SETTINGS.metrics)  # 3B: wit-1024 only
    assert by_key[(FULL_300M, "openmoji", TEXT, "cka")][8:] == ["–", "–", "–"]  # no heavy2b at 300M
    assert by_key[(FULL_2B, "openmoji-names", TEXT, "cka")][7] == "above 0"
    assert by_key[(FULL_3B, "wit-1024", TEXT, "cka")][5:] == [
        "–",
        "–",
        "not comparable (other settings: seed)",
        "–",
        "–",
        "not comparable (other rows)",
    ]


def test_the_report_shows_both_tables_and_a_report_without_twins_neither(study, tmp_path) -> None:
    from probe.runs.report import write_report

    root, _ = study
    files = write_report([root], output=tmp_path / "report")
    md = files.markdown.read_text()
    for title in (
        "## Pictures vs rendered text: wit-1024 and rendered:wit-1024",
        "## Pictures vs rendered text: openmoji and openmoji-names",
        "## The text filter's effect, per size",
    ):
        assert title in md
    assert "paired 95% jackknife interval" in md
    assert re.search(
        rf"\| {FULL_2B} \| openmoji \| {TEXT} \| cka \| [0-9.]+ \| [0-9.]+ \| [0-9.]+–[0-9.]+ \| above 0 \|", md
    )
    page = files.html.read_text()
    assert "The text filter&#x27;s effect, per size" in page and "not comparable (other rows)" in page
    # pictures alone (no rendered twin, no filtered checkpoint): neither section
    alone = tmp_path / "alone"
    _align_record(alone, "openmoji", [FULL_2B], controls=["pixels-16"])
    md = write_report([alone], output=tmp_path / "report-alone").markdown.read_text()
    assert "Pictures vs rendered text" not in md and "text filter" not in md
    json.loads(next(alone.glob("align-*.json")).read_text())  # a results file as probe writes them
