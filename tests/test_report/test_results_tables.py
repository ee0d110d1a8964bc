"""Results as data: probe.report.tables.load / load_probes on the files `probe demo --limit 96 --permutations 10
--subsamples 3` and `probe align --vision pixels-16 --text minilm,smollm2` wrote (tests/data/results, kept as
written: absolute /tmp paths inside, so the demo's links must be found beside it), checked against the raw
JSON; schema versions; bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from probe.errors import InputError
from probe.report.tables import ALIGN_COLUMNS, PROBE_COLUMNS, load, load_probes
from probe.results import SCHEMA_VERSION, read_results

DATA = Path(__file__).resolve().parents[1] / "data" / "results"
DEMO_ALIGN = DATA / "align-20261130T022344Z.json"
PIXELS_ALIGN = DATA / "align-20261130T022445Z.json"
DEMO = DATA / "demo-20261130T022407Z.json"
LINEAR_SSL = DATA / "linear-20261130T022358Z.json"


def test_load_alignment_rows_match_the_json() -> None:
    df = load(DATA)
    assert list(df.columns) == list(ALIGN_COLUMNS)
    # 3 vision models x 2 text models x 4 metrics, the demo's summary not counted twice
    assert len(df) == 24 and set(df.run) == {DEMO_ALIGN.stem, PIXELS_ALIGN.stem}
    assert not df.duplicated(["run", "vision", "text", "metric"]).any()
    record = json.loads(DEMO_ALIGN.read_text())
    for pair in record["results"]["pairs"]:
        for metric, m in pair["report"]["metrics"].items():
            (row,) = df[
                (df.run == DEMO_ALIGN.stem)
                & (df.vision == pair["vision"])
                & (df.text == pair["text"])
                & (df.metric == metric)
            ].itertuples()
            matrix = np.array(m["matrix"])
            r, c = np.unravel_index(np.argmax(matrix), matrix.shape)
            assert row.best_score == pytest.approx(matrix.max())
            # hidden-state indices, not positions: tiny-ssl-vit's state 0 (constant CLS) is dropped
            assert row.best_vision_state == pair["vision_layers"][r] and row.best_text_state == pair["text_layers"][c]
            assert row.calibrated == pytest.approx((m["best_score"] - m["null_max_mean"]) / (1 - m["null_max_mean"]))
            assert (row.ci_low, row.ci_high) == tuple(m["max_interval"])
            assert row.n == 96 and row.k == 10 and row.dataset == "openmoji"
    assert (df[df.vision == "tiny-ssl-vit"].best_vision_state >= 1).all()


def test_model_facts_from_the_registry() -> None:
    df = load(DATA)
    facts = df.drop_duplicates("vision").set_index("vision")
    assert (
        facts.loc["tiny-ssl-vit", "vision_family"] == "tiny-ssl"
        and facts.loc["tiny-ssl-vit", "vision_params_m"] == 2.83
    )
    assert not facts.loc["tiny-ssl-vit", "vision_control"]
    assert facts.loc["tiny-random-vit", "vision_control"] and facts.loc["pixels-16", "vision_control"]
    assert facts.loc["pixels-16", "vision_family"] == "control"


def test_unknown_model_gets_nan(tmp_path) -> None:
    record = json.loads(PIXELS_ALIGN.read_text())
    for pair in record["results"]["pairs"]:
        pair["vision"] = "someone/unregistered-model"  # a hub id: must not be looked up on the network
    (tmp_path / "align-x.json").write_text(json.dumps(record))
    df = load(tmp_path)
    assert df.vision_family.isna().all() and df.vision_params_m.isna().all()
    assert df.text_family.notna().all()


def test_load_probes_rows_and_best_layer() -> None:
    df = load_probes(DATA)
    assert list(df.columns) == list(PROBE_COLUMNS)
    record = json.loads(LINEAR_SSL.read_text())
    n_layers = sum(len(t["layers"]) for t in record["results"]["tasks"])
    assert len(df[df.run == LINEAR_SSL.stem]) == n_layers
    best = df[df.best & (df.vision == "tiny-ssl-vit")].set_index("task")
    assert set(best.index) == {"category", "words", "text:smollm2"}
    # the same figures as the demo's own summary table
    summary = json.loads(DEMO.read_text())["results"]["summary"]["linear"]
    for s in summary:
        (row,) = df[df.best & (df.vision == s["vision"]) & (df.task == s["task"])].itertuples()
        assert (row.value, row.control, row.chance, row.hidden_state) == pytest.approx(
            (s["value"], s["control"], s["chance"], s["best_hidden_state"])
        )
        assert row.n_test > 0


def test_demo_file_alone_brings_its_runs(tmp_path) -> None:
    """A demo file names its align/linear files by absolute /tmp paths that do not exist here: found beside it."""
    assert len(load(DEMO)) == 16 and set(load(DEMO).run) == {DEMO_ALIGN.stem}
    assert set(load_probes(DEMO).vision) == {"tiny-ssl-vit", "tiny-random-vit"}
    record = json.loads(DEMO.read_text())  # its align file gone: the summary gives the rows
    record["results"]["align_results"] = str(tmp_path / "gone" / "align-x.json")
    record["results"]["linear_results"] = {}
    (tmp_path / DEMO.name).write_text(json.dumps(record))
    df = load(tmp_path)
    assert len(df) == 16 and set(df.command) == {"demo"}
    assert df.best_vision_state.notna().all() and math.isnan(df.vision_depth.iloc[0])


def test_schema_versions(tmp_path) -> None:
    record = json.loads(PIXELS_ALIGN.read_text())
    assert read_results(PIXELS_ALIGN)["schema_version"] == SCHEMA_VERSION == 1
    record["schema_version"] = SCHEMA_VERSION + 1
    newer = tmp_path / "align-new.json"
    newer.write_text(json.dumps(record))
    with pytest.raises(
        InputError, match=f"schema_version {SCHEMA_VERSION + 1}.*newer probe.*reads up to {SCHEMA_VERSION}"
    ):
        load(newer)
    record["schema_version"] = 0
    newer.write_text(json.dumps(record))
    with pytest.raises(InputError, match="schema_version 0"):
        load(newer)


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(InputError, match="no results files"):
        load(tmp_path)
    (tmp_path / "align-broken.json").write_text('{"schema_version": 1, "command": "align", ')
    with pytest.raises(InputError, match="cannot read results file"):
        load(tmp_path / "align-broken.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a probe results file"):
        load(tmp_path / "other.json")


def test_compare_two_runs(tmp_path, cli, monkeypatch) -> None:
    """B is A with one score raised by 0.05 and written by a newer probe run: the difference is exactly that,
    the table fits 80 columns, the CSV holds every shared (vision, text, metric) and says 'unpaired'."""
    import pandas as pd

    record = json.loads(DEMO_ALIGN.read_text())
    metric = record["results"]["pairs"][0]["report"]["metrics"]["cka"]
    metric["best_score"] += 0.05
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "align-b.json").write_text(json.dumps(record))
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli(["compare", str(DEMO_ALIGN), str(tmp_path / "b"), "--csv", str(tmp_path / "c.csv")])
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "tiny-ssl-vit vs minilm" in out and "+0.050" in out and "unpaired" in out
    frame = pd.read_csv(tmp_path / "c.csv")
    assert len(frame) == 16 and set(frame.paired) == {"unpaired"} and frame.same_rows.all()
    changed = frame[frame.difference != 0]
    assert list(changed.metric) == ["cka"] and changed.difference.iloc[0] == pytest.approx(0.05)


def test_compare_nothing_shared(tmp_path, cli) -> None:
    code, _, err = cli(["compare", str(DEMO_ALIGN), str(PIXELS_ALIGN)])
    assert code == 2 and "share no (vision, text, metric)" in err
