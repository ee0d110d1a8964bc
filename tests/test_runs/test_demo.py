"""`probe demo --limit` end to end, offline: OpenMoji renders, the trained ViT and its random control,
MiniLM and SmolLM2, alignment with a null, probes; then a second run that reads every cache."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_then_reuses_everything(session_cache_dir, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)  # `--threads 1` sets them; restore them for later tests' subprocesses
    args = [
        "--threads",
        "1",
        "demo",
        "--limit",
        "96",
        "--permutations",
        "10",
        "--subsamples",
        "3",
        "--cache-dir",
        str(session_cache_dir),
        "--no-progress",
    ]
    code, out, err = cli(args + ["--output", str(tmp_path / "out")])
    assert code == 0, err
    assert "is the model trained without text above what no learning gives?" in out
    (demo_file,) = (tmp_path / "out" / "latest").glob("demo-*.json")  # the run folder of this run
    summary = json.loads(demo_file.read_text())["results"]["summary"]
    pairs = {(r["vision"], r["text"]) for r in summary["alignment"]}
    assert pairs == {(v, t) for v in ("tiny-ssl-vit", "pixels-16", "tiny-random-vit") for t in ("minilm", "smollm2")}
    # The trained model beside its best control, per text model and metric, with a paired interval and a verdict.
    comparisons = summary["comparisons"]
    assert {(r["text"], r["metric"]) for r in comparisons} == {
        (t, m) for t in ("minilm", "smollm2") for m in ("mutual_knn", "cka", "unbiased_cka", "cknna")
    }
    assert all(r["best_control"] in ("pixels-16", "tiny-random-vit") and len(r["interval"]) == 2 for r in comparisons)
    assert all(r["above"] == (r["interval"][0] > 0) for r in comparisons)
    assert len(summary["verdicts"]) == len(comparisons) + 3 and all(
        "its best control" in v for v in summary["verdicts"]
    )
    assert {r["metric"] for r in summary["ceiling"]} == {"mutual_knn", "cka", "unbiased_cka", "cknna"}
    for r in summary["alignment"]:
        assert r["chance"] is not None and 0 < r["p_value"] <= 1
        if r["metric"] == "mutual_knn":
            assert r["chance"] == pytest.approx(10 / 95)
    tasks = {(r["vision"], r["task"]) for r in summary["linear"]}
    assert ("tiny-ssl-vit", "category") in tasks and ("tiny-random-vit", "text:smollm2") in tasks
    assert ("pixels-16", "category") in tasks and ("pixels-16", "words") in tasks
    assert all(r["baseline_kind"] for r in summary["linear"])
    # Heatmaps: the model and two controls against two text models, and the text-vs-text ceiling; 4 metrics each.
    assert len(list((tmp_path / "out").rglob("*.png"))) == (3 * 2 + 1) * 4

    # The demo preset (`probe study demo`) needs exactly the caches this run made: the plan finds them all.
    code, plan_out, _ = cli(["plan", "demo", "--limit", "96", "--cache-dir", str(session_cache_dir)])
    assert code == 0 and "caches: 5 exist, 0 new" in plan_out

    # Second run: every feature cache and score is reused, and the numbers are identical.
    code, _, err2 = cli(args + ["--output", str(tmp_path / "again")])
    assert code == 0
    assert "extracted" not in err2 and "reusing align scores" in err2
    (again,) = (tmp_path / "again" / "latest").glob("demo-*.json")
    assert json.loads(again.read_text())["results"]["summary"] == summary
