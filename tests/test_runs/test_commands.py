"""`probe align` and `probe linear` end to end on tiny local checkpoints: caches extracted on demand,
results JSON written with every documented key, PNG heatmaps, and bad flags refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

N = 40


def test_align_end_to_end(tiny_model_dir, labelled_dataset, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out_dir = tmp_path / "out"
    code, out, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("dinov2")),
            "--text",
            f"{tiny_model_dir('bert')},{tiny_model_dir('llama')}",
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(out_dir),
            "--permutations",
            "20",
            "--subsamples",
            "5",
            "--topk",
            "5",
            "--no-progress",
        ],
    )
    assert code == 0, err
    assert "mutual_knn" in out and "calib." in out and "<0.05" in out  # p at its floor 1/21
    (results,) = (out_dir / "latest").glob("align-*.json")
    record = json.loads(results.read_text())
    assert record["schema_version"] == 1 and record["command"] == "align"
    assert {"settings", "inputs", "dataset", "results", "provenance"} <= set(record)
    assert record["dataset"]["rows"] == N and len(record["inputs"]) == 3
    pair = record["results"]["pairs"][0]
    assert pair["dropped_constant_layers"]["vision"] == [0]  # the CLS token of the embedding state
    m = pair["report"]["metrics"]["mutual_knn"]
    matrix = np.array(m["matrix"])
    assert matrix.shape == (len(pair["vision_layers"]), len(pair["text_layers"]))
    assert m["best_score"] == pytest.approx(matrix.max())
    assert m["chance_level"] == pytest.approx(5 / (N - 1))
    assert 0 < m["p_value"] <= 1 and len(m["max_interval"]) == 2
    assert set(record["results"]["pairs"][0]["report"]["metrics"]) == {"mutual_knn", "cka", "unbiased_cka", "cknna"}
    assert len(list((out_dir / "latest").glob("*.png"))) == (2 + 1) * 4  # two pairs and the text-vs-text ceiling
    assert (out_dir / "latest" / "command.txt").read_text().strip()
    assert record["provenance"]["packages"]["torch"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--topk", "40"], "--topk 40 must be between 1 and N-1 = 39"),
        (["--clip-quantile", "high"], "--clip-quantile"),
        (["--metric", "mutual_knn,ckaa"], "did you mean 'cka'"),
    ],
)
def test_align_bad_flags(tiny_model_dir, labelled_dataset, tmp_path, cli, args, message) -> None:
    code, _, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("vit")),
            "--text",
            str(tiny_model_dir("bert")),
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
            "--no-progress",
            "--permutations",
            "0",
            "--subsamples",
            "0",
            *args,
        ],
    )
    assert code == 2 and message.lower() in err.lower(), err


def test_align_refuses_swapped_modalities(tiny_model_dir, labelled_dataset, tmp_path, cli) -> None:
    code, _, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("bert")),
            "--text",
            str(tiny_model_dir("vit")),
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert code == 2 and "is a text model" in err


def test_linear_end_to_end(tiny_model_dir, labelled_dataset, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out_dir = tmp_path / "out"
    code, out, err = cli(
        [
            "linear",
            "--vision",
            str(tiny_model_dir("vit")),
            "--labels",
            "colour,words",
            "--text",
            str(tiny_model_dir("bert")),
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(out_dir),
            "--no-progress",
        ],
    )
    assert code == 0, err
    (results,) = (out_dir / "latest").glob("linear-*.json")
    tasks = {t["name"]: t for t in json.loads(results.read_text())["results"]["tasks"]}
    assert set(tasks) == {"colour", "words", f"text:{tiny_model_dir('bert').name}"}
    colour = tasks["colour"]
    # colour is planted in the pixels: even a random-weight ViT separates four flat colours linearly
    best = next(e for e in colour["layers"] if e["layer"] == colour["best_layer"])
    assert best["probe"]["accuracy"] >= 0.75 and best["control"]["accuracy"] <= 0.6
    assert "colour" in out and "shuffled" in out and "test rows" in out
    assert tasks[f"text:{tiny_model_dir('bert').name}"]["target_preprocessing"].startswith("PRH: clamp")


def test_linear_reads_letters_and_words_off_rendered_captions(labelled_dataset, tmp_path, cli) -> None:
    """`--labels chars,words` on `rendered:<manifest>`: the captions drawn as text, probed from pixels-16."""
    from probe.linear.chars import caption_char_targets

    out_dir = tmp_path / "out"
    code, out, err = cli(
        [
            "linear",
            "--vision",
            "pixels-16",
            "--labels",
            "chars,words",
            "--dataset",
            f"rendered:{labelled_dataset}",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(out_dir),
            "--no-progress",
        ],
    )
    assert code == 0, err
    (results,) = (out_dir / "latest").glob("linear-*.json")
    record = json.loads(results.read_text())
    assert record["dataset"]["name"] == f"rendered:{labelled_dataset.parent.name}" and record["dataset"]["rows"] == N
    tasks = {t["name"]: t for t in record["results"]["tasks"]}
    assert set(tasks) == {"chars", "words"} and tasks["chars"]["kind"] == tasks["words"]["kind"] == "words"
    captions = [json.loads(line)["caption"] for line in labelled_dataset.read_text().splitlines()]
    assert tasks["chars"]["letters"] == caption_char_targets(captions)[0]
    best = next(e for e in tasks["chars"]["layers"] if e["layer"] == tasks["chars"]["best_layer"])
    assert {w["word"] for w in best["probe"]["words"]} == set(tasks["chars"]["letters"])
    assert "chars (words)" in out


def test_ridge_target_is_clamped_and_l2_normalised_as_for_alignment(tiny_model_dir, labelled_dataset, tmp_path) -> None:
    from probe.align.prep import clip_threshold
    from probe.features.extract import extract_features
    from probe.runs.linear import prh_target

    cache = extract_features(model=str(tiny_model_dir("bert")), dataset=labelled_dataset, cache_dir=tmp_path).open()
    target = prh_target(cache, cache.num_layers - 1)
    np.testing.assert_allclose(np.linalg.norm(target, axis=1), 1.0, rtol=1e-5)
    raw = cache.read()  # [N, S, D]
    q = clip_threshold([torch.as_tensor(raw[:, i]) for i in range(raw.shape[1])], quantile=0.95)
    expected = np.clip(raw[:, -1], -q, q)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(target, expected, atol=1e-6)


def test_linear_bad_inputs(tiny_model_dir, labelled_dataset, tmp_path, cli) -> None:
    base = [
        "linear",
        "--vision",
        str(tiny_model_dir("vit")),
        "--dataset",
        str(labelled_dataset),
        "--cache-dir",
        str(tmp_path),
        "--no-progress",
    ]
    code, _, err = cli(base + ["--labels", "shape"])
    assert code == 2 and "'shape' is missing" in err and "colour" in err
    code, _, err = cli(base)
    assert code == 2 and "nothing to probe" in err


def test_scores_are_reused_until_inputs_settings_or_overwrite_change(
    tiny_model_dir, labelled_dataset, tmp_path, cli, monkeypatch
) -> None:
    import probe.runs.align

    calls = []
    real = probe.runs.align.score_alignment
    monkeypatch.setattr(probe.runs.align, "score_alignment", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    base = [
        "align",
        "--vision",
        str(tiny_model_dir("vit")),
        "--text",
        str(tiny_model_dir("bert")),
        "--dataset",
        str(labelled_dataset),
        "--cache-dir",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        "--permutations",
        "5",
        "--subsamples",
        "0",
        "--no-progress",
    ]
    outs = []
    for extra in ([], [], ["--topk", "3"], ["--overwrite", "always"]):
        code, _, err = cli(base + extra)
        assert code == 0, err
        outs.append(next((tmp_path / "o" / "latest").glob("align-*.json")).read_text())
    assert len(calls) == 3  # the second run read the first one's scores; new k and --overwrite always recompute
    first, second = (json.loads(o)["results"]["pairs"][0]["report"] for o in outs[:2])
    assert first == second


def test_runs_never_overwrite_each_other(tiny_model_dir, labelled_dataset, tmp_path, cli) -> None:
    """Two align runs with different settings into one --output: two run folders, each with its own JSON and
    PNGs whose paths point inside it; `latest` names the second; nothing of the first changed."""
    out = tmp_path / "o"
    base = [
        "align",
        "--vision",
        str(tiny_model_dir("vit")),
        "--text",
        str(tiny_model_dir("bert")),
        "--dataset",
        str(labelled_dataset),
        "--cache-dir",
        str(tmp_path / "c"),
        "--output",
        str(out),
        "--permutations",
        "5",
        "--subsamples",
        "0",
        "--no-progress",
        "--metric",
        "mutual_knn",
    ]
    assert cli(base + ["--topk", "3"])[0] == 0
    (first,) = [p for p in out.iterdir() if p.name.startswith("align-")]
    before = {p: p.read_bytes() for p in first.iterdir()}
    assert cli(base + ["--topk", "5"])[0] == 0
    runs = sorted(p for p in out.iterdir() if p.name.startswith("align-"))
    assert len(runs) == 2 and (out / "latest").resolve() == runs[1].resolve() != first.resolve()
    assert {p: p.read_bytes() for p in first.iterdir()} == before
    for run in runs:
        (results,) = run.glob("align-*.json")
        record = json.loads(results.read_text())
        heatmaps = record["results"]["pairs"][0]["heatmaps"].values()
        assert heatmaps and all(Path(h).parent == run and Path(h).is_file() for h in heatmaps)
    assert not list(out.rglob("*.tmp"))


def test_controls_reach_the_table_and_compare_pairs_subsamples(tiny_model_dir, labelled_dataset, tmp_path, cli) -> None:
    """An align run with --controls: the loaded table has the model's comparison with its best control, the
    control's own rows and the ceiling; comparing two runs on the same rows gives a paired interval."""
    import probe
    from probe.report.tables import compare

    base = [
        "align",
        "--vision",
        str(tiny_model_dir("vit")),
        "--text",
        f"{tiny_model_dir('bert')},{tiny_model_dir('llama')}",
        "--dataset",
        str(labelled_dataset),
        "--cache-dir",
        str(tmp_path / "c"),
        "--permutations",
        "10",
        "--subsamples",
        "6",
        "--topk",
        "5",
        "--metric",
        "mutual_knn,cka",
        "--controls",
        "pixels-8",
        "--no-progress",
    ]
    code, out, err = cli(base + ["--output", str(tmp_path / "a")])
    assert code == 0, err
    assert "against the best control" in out and "control: pixels-8" in out and "ceiling" in out
    table = probe.load_results(tmp_path / "a")
    assert set(table.role) == {"model", "control", "ceiling"}
    model = table[table.role == "model"]
    assert set(model.best_control) == {"pixels-8"} and model.control_diff_low.notna().all()
    assert (model.above_control == (model.control_diff_low > 0)).all()
    code, _, err = cli(base + ["--output", str(tmp_path / "b"), "--overwrite", "always"])
    assert code == 0, err
    diff = compare(tmp_path / "a", tmp_path / "b")
    assert (diff.paired == "paired").all() and (diff.difference == 0).all()
    assert (diff.diff_low == 0).all() and (diff.diff_high == 0).all()  # same rows, same subsets, same scores


def test_sizes_score_nested_subsets_and_plot_them(tiny_model_dir, labelled_dataset, tmp_path, cli) -> None:
    from probe.runs.sizes import nested_subsets

    small, large = nested_subsets(N, (20, 30), seed=0)
    assert set(small) <= set(large) and len(set(large)) == 30  # nested, without repeats
    code, out, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("vit")),
            "--text",
            str(tiny_model_dir("bert")),
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path / "c"),
            "--output",
            str(tmp_path / "o"),
            "--permutations",
            "10",
            "--subsamples",
            "0",
            "--topk",
            "5",
            "--metric",
            "mutual_knn",
            "--sizes",
            f"20,{N}",
            "--no-progress",
        ],
    )
    assert code == 0, err
    assert "at several N" in out and "compare calibrated" in out
    record = json.loads(next((tmp_path / "o" / "latest").glob("align-*.json")).read_text())
    rows = {r["n"]: r for r in record["results"]["sizes"]["rows"]}
    assert set(rows) == {20, N}
    assert rows[20]["chance"] == pytest.approx(5 / 19) and rows[N]["chance"] == pytest.approx(5 / (N - 1))
    # At full N the size row is the run's own score.
    full = record["results"]["pairs"][0]["report"]["metrics"]["mutual_knn"]
    assert rows[N]["best"] == pytest.approx(full["best_score"])
    (plot,) = record["results"]["sizes"]["plots"].values()
    assert Path(plot).is_file() and Path(plot).stat().st_size > 1000
    code, _, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("vit")),
            "--text",
            str(tiny_model_dir("bert")),
            "--dataset",
            str(labelled_dataset),
            "--cache-dir",
            str(tmp_path / "c"),
            "--sizes",
            "10,99999",
            "--no-progress",
        ],
    )
    assert code == 2 and "--sizes 99999" in err
