"""Studies (probe.runs.study) and their plans (probe.runs.plan): TOML files checked before any work, the shipped
presets, the offline plan of the WebSSL scaling study, and a tiny study run end to end and then rerun from
its caches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from probe.errors import InputError
from probe.models.names import RANDOM_INIT_PREFIX, registered, resolve_model
from probe.runs.plan import plan_study
from probe.runs.study import StudySettings, list_presets, load_study

N = 40


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
name = "small"
vision = ["dinov2-small", "random-init:dinov2-base"]
text = ["minilm"]
datasets = ["openmoji"]
metrics = ["mutual_knn", "cka"]
controls = ["pixels-16", "random-init"]
[probes]
labels = ["category", "words"]
text = "smollm2"
[settings]
k = 5
permutations = 20
subsamples = 0
limit = 64
pool_vision = "both"
device = "cpu"
"""


def test_study_file_parses_into_a_frozen_spec(tmp_path) -> None:
    spec = load_study(_write(tmp_path, GOOD))
    assert spec.name == "small" and spec.vision == ("dinov2-small", "random-init:dinov2-base")
    assert spec.text == ("minilm",) and spec.datasets == ("openmoji",) and spec.metrics == ("mutual_knn", "cka")
    assert spec.settings == StudySettings().with_keys(
        metrics=("mutual_knn", "cka"), k=5, permutations=20, subsamples=0, limit=64, pool_vision="both", device="cpu"
    )
    # random-init expands to each trained vision model's twin (not to a twin's twin).
    assert spec.control_models() == ["pixels-16", "random-init:dinov2-small"]
    assert spec.probe_vision() == ["dinov2-small", "random-init:dinov2-base", "pixels-16", "random-init:dinov2-small"]
    with pytest.raises(AttributeError):
        spec.name = "other"  # frozen


def test_rendered_datasets_resolve_their_source_like_any_dataset_of_the_file(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.jsonl").write_text("")
    text = GOOD.replace('datasets = ["openmoji"]', 'datasets = ["rendered:openmoji", "rendered:data/m.jsonl"]')
    spec = load_study(_write(tmp_path, text))
    assert spec.datasets == ("rendered:openmoji", f"rendered:{tmp_path / 'data' / 'm.jsonl'}")
    with pytest.raises(InputError, match="datasets: 'wit-2048' is neither a registered"):
        load_study(_write(tmp_path, GOOD.replace('datasets = ["openmoji"]', 'datasets = ["rendered:wit-2048"]')))


@pytest.mark.parametrize(
    "change, message",
    [
        (("vision = [", "visoin = ["), "small.toml: visoin: unknown key"),
        (("k = 5", "kk = 5"), "small.toml: settings.kk: unknown key"),
        (("k = 5", 'k = "ten"'), "settings.k = 'ten' must be an integer >= 1"),
        (('"dinov2-small",', '"webssl-dino9b",'), "small.toml: vision: unknown model 'webssl-dino9b'"),
        (('text = ["minilm"]', 'text = ["dinov2-small"]'), "text: 'dinov2-small' is a vision model"),
        (('"mutual_knn", "cka"', '"mutual_knn", "ckaa"'), "metrics: unknown metric 'ckaa'. did you mean 'cka'"),
        (('datasets = ["openmoji"]', 'datasets = ["wit-2048"]'), "datasets: 'wit-2048' is neither a registered"),
        (
            ('pool_vision = "both"', 'pool_vision = "last"'),
            "settings.pool_vision = 'last': choose one of cls, mean, both",
        ),
        (('text = "smollm2"', 'text = "pixels-16"'), "probes.text: 'pixels-16' is a vision model"),
        (("permutations = 20", "permutations = 0"), "controls are compared on calibrated scores"),
        (('name = "small"', 'name = "a/b"'), "name = 'a/b'"),
        (("vision = [", "vision = 3\nx = ["), "unknown key"),
        (("[settings]", "[settings"), "not valid toml"),
    ],
)
def test_study_file_errors_name_the_file_and_key(tmp_path, change, message) -> None:
    path = _write(tmp_path, GOOD.replace(*change), "small.toml")
    with pytest.raises(InputError) as info:
        load_study(path)
    assert message.lower() in str(info.value).lower()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_study_errors_are_one_line_on_the_command_line(tmp_path, cli) -> None:
    path = _write(tmp_path, GOOD.replace('"minilm"', '"llama9"'))
    code, out, err = cli(["plan", str(path), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and out == ""
    assert err.strip().startswith("error:") and "unknown model 'llama9'" in err and str(path) in err.replace("\n", "")
    code, _, err = cli(["study", "no-such-preset"])
    assert code == 2 and "presets: demo, prh, webssl-reading, webssl-scaling" in err.replace("\n", " ")


def test_presets_parse_and_name_only_registered_models(cli) -> None:
    assert set(list_presets()) == {"demo", "prh", "webssl-reading", "webssl-scaling"}
    for name in list_presets():
        spec = load_study(name)
        models = [
            *spec.vision,
            *spec.text,
            *spec.control_models(),
            *spec.probe_vision(),
            *([spec.probes.text] if spec.probes and spec.probes.text else []),
        ]
        for model in models:
            base = model.removeprefix(RANDOM_INIT_PREFIX)
            assert registered(base) is not None, (name, model)
            resolve_model(model)  # offline: registered names never reach the hub
    webssl = load_study("webssl-scaling")
    assert sorted(v for v in webssl.vision if v.startswith("webssl-")) == sorted(
        s.alias for s in __import__("probe.models.names", fromlist=["x"]).list_models("webssl-*")
    )
    assert len([v for v in webssl.vision if v.startswith("webssl-")]) == 18
    assert {"dinov2-giant", "clip-vit-l14", "metaclip-l14"} <= set(webssl.vision)
    assert webssl.text == ("llama3",) and webssl.datasets == ("wit-1024",)
    assert webssl.controls == ("pixels-16", "random-init")
    code, out, _ = cli(["study", "--list"])
    assert code == 0 and all(line.split()[0] in list_presets() for line in out.splitlines() if not line.startswith(" "))
    assert max(map(len, out.splitlines())) <= 80


def test_probe_demo_runs_the_demo_preset(tmp_path, cli, monkeypatch) -> None:
    """The demo preset is the demo's one definition: `probe demo` without flags runs its grid with its settings
    (every argument of its align and linear runs comes from the preset), a flag changes only its own setting,
    and the results JSON records the settings run."""
    import json
    from dataclasses import replace
    from types import SimpleNamespace

    import probe.report.terminal
    import probe.runs.demo as D

    calls: list[tuple[str, dict]] = []

    def align(**kwargs):
        calls.append(("align", kwargs))
        empty = dict(pairs=[], control_pairs=[], control_rows=[], ceiling=[], results_path=None)
        return SimpleNamespace(dataset={"name": kwargs["dataset"]}, **empty)

    def linear(**kwargs):
        calls.append(("linear", kwargs))
        return SimpleNamespace(tasks=[], results_path=None)

    monkeypatch.setattr(D, "run_align", align)
    monkeypatch.setattr(D, "run_linear", linear)
    monkeypatch.setattr(probe.report.terminal, "render_demo", lambda run: None)
    spec, cache = load_study("demo"), tmp_path / "cache"
    runs = [([], {}), (["--limit", "96", "--seed", "2", "--device", "cpu"], {"limit": 96, "seed": 2, "device": "cpu"})]
    for i, (flags, changes) in enumerate(runs):
        calls.clear()
        out = tmp_path / f"out{i}"
        code, _, err = cli(["demo", "--cache-dir", str(cache), "--output", str(out), "--no-progress", *flags])
        assert code == 0, err
        demo = replace(spec, settings=spec.settings.with_keys(**changes))
        s = demo.settings
        (kind, aligned), *probed = calls
        assert kind == "align" and aligned["dataset"] == spec.datasets[0] and aligned["controls"] == spec.controls
        assert (aligned["vision"], aligned["text"]) == (spec.vision, spec.text)
        assert aligned["settings"] == s.align and aligned["options"] == replace(s.extract, cache_dir=cache)
        assert (aligned["pool_vision"], aligned["pool_text"]) == (s.pool_vision, s.pool_text)
        assert [c["vision"] for _, c in probed] == spec.probe_vision() and {k for k, _ in probed} == {"linear"}
        for _, c in probed:
            assert c["text"] == spec.probes.text and c["settings"] == demo.linear_settings()
            assert c["options"] == aligned["options"] and (c["pool_vision"], c["pool_text"]) == (None, None)
        (record,) = (out / "latest").glob("demo-*.json")
        assert json.loads(record.read_text())["settings"]["demo"] == {k: getattr(s, k) for k in D.DEMO_KEYS}


def test_plan_of_webssl_scaling_is_offline_and_from_registry_facts(tmp_path, cli, monkeypatch) -> None:
    import probe.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the plan loaded a model"))
    plan = plan_study(load_study("webssl-scaling"), cache_dir=tmp_path)
    assert plan.device_kind == "cuda" and plan.dtype in ("bfloat16", "float16")  # the preset names its device
    vision = [c.model for c in plan.caches if c.role == "vision"]
    assert len([v for v in vision if v.startswith("webssl-")]) == 18 and len(vision) == 21
    assert len([c for c in plan.caches if c.role == "control"]) == 22  # pixels-16 and 21 random-init twins
    (llama,) = [c for c in plan.caches if c.model == "llama3"]
    assert llama.gated and plan.gated == ["llama3"]
    assert llama.bytes == 1024 * 33 * 4096 * 4 and not llama.exists  # N x (32 blocks + embeddings) x width x float32
    (dino7b,) = [c for c in plan.caches if c.model == "webssl-dino7b-full8b-518"]
    assert dino7b.states == 33 and dino7b.width == 4096
    assert plan.new_bytes == sum(c.bytes for c in plan.caches) and 10e9 < plan.new_bytes < 15e9
    assert plan.model_pairs == 43 and plan.extract_seconds > 0 and plan.align_seconds > 0
    code, out, err = cli(["plan", "webssl-scaling", "--cache-dir", str(tmp_path)])
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= 80
    assert "webssl-mae3b-full2b-224" in out and "llama3" in out and "gated" in out and "ASSUMED rates" in out
    assert "12.7 GB" in out and "not downloaded yet" in out
    code, out2, _ = cli(["study", "webssl-scaling", "--dry-run", "--cache-dir", str(tmp_path)])
    assert code == 0 and out2 == out and not (Path("probe-studies")).exists()


def test_webssl_reading_pairs_each_filtered_checkpoint_with_its_full2b_twin_and_plans_offline(
    tmp_path, cli, monkeypatch
) -> None:
    import probe.models.loading as loading
    from probe.datasets.rendered import rendered_source
    from probe.models.names import list_models, unfiltered_twin

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the plan loaded a model"))
    spec = load_study("webssl-reading")
    filtered = {s.alias for s in list_models("webssl-dino*") if unfiltered_twin(s.alias) is not None}
    assert set(spec.vision) == filtered | {unfiltered_twin(v).alias for v in filtered} and len(spec.vision) == 8
    assert spec.text == ("llama3",) and spec.controls == ("pixels-16", "random-init")
    assert spec.datasets == ("wit-1024", "rendered:wit-1024", "openmoji", "openmoji-names")
    pictures = [d for d in spec.datasets if rendered_source(d) is None]
    assert sorted(rendered_source(d) for d in spec.datasets if d not in pictures) == sorted(pictures)
    assert spec.metrics == load_study("webssl-scaling").metrics
    assert spec.settings == load_study("webssl-scaling").settings
    assert spec.probes.labels == ("words", "chars") and len(spec.probe_vision()) == 8 + 9  # + pixels-16, 8 twins
    plan = plan_study(spec, cache_dir=tmp_path)
    assert plan.device_kind == "cuda" and plan.gated == ["llama3"] and plan.model_pairs == 68  # 17 x 4 datasets
    assert plan.probe_runs == 68
    code, out, err = cli(["plan", "webssl-reading", "--cache-dir", str(tmp_path)])
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= 80
    assert "dataset rendered:wit-1024: N = 1024; not drawn yet (from wit-1024's captions)" in out
    assert "18.7 GB" in out and "linear probes: 68 runs (labels words, chars)" in out


def test_demo_dry_run_plans_the_demo_preset_and_does_nothing(tmp_path, cli) -> None:
    code, out, err = cli(
        [
            "demo",
            "--dry-run",
            "--limit",
            "96",
            "--permutations",
            "10",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert code == 0, err
    assert out.startswith("study demo") and "N = 96" in out and "permutations=10" in out
    assert all(m in out for m in ("tiny-ssl-vit", "pixels-16", "tiny-random-vit", "minilm", "smollm2"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "datasets").exists()


def test_tiny_study_runs_into_one_folder_then_reuses_everything(
    tiny_model_dir, labelled_dataset, tmp_path, cli, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    study = _write(
        tmp_path,
        f"""
name = "tiny"
vision = ["{tiny_model_dir("dinov2")}"]
text = ["{tiny_model_dir("bert")}", "{tiny_model_dir("llama")}"]
datasets = ["{labelled_dataset}"]
metrics = ["mutual_knn"]
controls = ["pixels-16", "random-init"]
[probes]
labels = ["colour"]
text = "{tiny_model_dir("bert")}"
vision = ["{tiny_model_dir("dinov2")}", "pixels-16"]
[settings]
k = 5
permutations = 10
subsamples = 3
seed = 1
""",
    )
    cache, out = tmp_path / "cache", tmp_path / "studies"
    args = ["study", str(study), "--cache-dir", str(cache), "--output", str(out), "--no-progress"]
    code, stdout, err = cli(args)
    assert code == 0, err
    first = (out / "latest").resolve()
    assert first.name.startswith("study-tiny-") and f"study tiny: {first}" in stdout
    assert (first / "study.toml").read_text() == study.read_text()
    for name in ("report.html", "report.md", "results.csv", "probes.csv", "command.txt"):
        assert (first / name).is_file(), name
    html = (first / "report.html").read_text()
    assert "<script" not in html and html.count("data:image/png;base64,") >= 3
    runs = sorted(p.name.split("-")[0] for p in first.rglob("*.json"))
    assert runs == ["align", "linear", "linear"]
    table = pd.read_csv(first / "results.csv")
    # dinov2 and its two controls x two text models (one metric: each heatmap PNG costs a second), and the
    # text-vs-text ceiling (bert vs llama).
    assert set(table["vision"]) == {"dinov2", "pixels-16", "random-init:dinov2", "bert"}
    assert len(table[table["vision"].isin(["dinov2", "pixels-16", "random-init:dinov2"])]) == 3 * 2
    assert len(table[table["vision"] == "bert"]) == 1 and set(table["metric"]) == {"mutual_knn"}
    assert set(pd.read_csv(first / "probes.csv")["vision"]) == {"dinov2", "pixels-16"}
    assert "extracted" in err

    # The plan now finds every cache the study made.
    code, plan_out, _ = cli(["plan", str(study), "--cache-dir", str(cache)])
    assert code == 0 and "0 new" in plan_out and " new " not in plan_out.split("caches:")[0]
    # So does `probe align --dry-run` with the same models as flags (the same cache keys), and it writes nothing.
    code, align_plan, err = cli(
        [
            "align",
            "--vision",
            str(tiny_model_dir("dinov2")),
            "--text",
            f"{tiny_model_dir('bert')},{tiny_model_dir('llama')}",
            "--dataset",
            str(labelled_dataset),
            "--controls",
            "pixels-16,random-init",
            "--metric",
            "mutual_knn",
            "--dry-run",
            "--cache-dir",
            str(cache),
            "--output",
            str(tmp_path / "nothing"),
        ],
    )
    assert code == 0, err
    assert "caches: 5 exist, 0 new" in align_plan and not (tmp_path / "nothing").exists()

    # Second run: a new study folder, nothing extracted, every score read from the score cache, same numbers.
    code, _, err2 = cli(args)
    assert code == 0, err2
    second = (out / "latest").resolve()
    assert second != first and (first / "report.html").is_file()
    assert "extracted" not in err2 and "reusing align scores" in err2 and "reusing linear scores" in err2
    again = pd.read_csv(second / "results.csv")
    cols = ["vision", "text", "metric", "best_score", "calibrated", "p_value"]
    pd.testing.assert_frame_equal(
        table[cols].sort_values(cols[:3]).reset_index(drop=True),
        again[cols].sort_values(cols[:3]).reset_index(drop=True),
    )


def test_study_killed_mid_extraction_resumes_from_what_it_finished(
    tiny_model_dir, labelled_dataset, tmp_path, cli, monkeypatch
) -> None:
    """A real kill -9 of `probe study` while it extracts, then the same command: it completes, and extracts only
    the caches the killed run had not finished. The killed run's folder is left without a report and `latest`
    never pointed at it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv("COLUMNS", "200")
    study = _write(
        tmp_path,
        f"""
name = "killed"
vision = ["{tiny_model_dir("dinov2")}", "{tiny_model_dir("vit")}"]
text = ["{tiny_model_dir("bert")}", "{tiny_model_dir("llama")}"]
datasets = ["{labelled_dataset}"]
metrics = ["mutual_knn"]
controls = ["pixels-16"]
[settings]
k = 5
permutations = 5
subsamples = 0
""",
    )
    cache, out = tmp_path / "cache", tmp_path / "studies"
    args = ["study", str(study), "--cache-dir", str(cache), "--output", str(out), "--no-progress"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from probe.cli.main import main; main()", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(cache.glob("features/**/*.h5")):
            time.sleep(0.02)
        assert proc.poll() is None, "the study ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = len(list(cache.glob("features/**/*.h5")))
    assert 1 <= finished <= 5
    (killed,) = out.glob("study-killed-*")
    assert not (killed / "report.html").exists() and not (out / "latest").exists()

    code, _, err = cli(args)
    assert code == 0, err
    done = (out / "latest").resolve()
    assert done != killed and (done / "report.html").is_file()
    assert len(list(cache.glob("features/**/*.h5"))) == 5  # 2 vision + pixels-16 + 2 text, none twice
    # Every cache file the killed run left is complete (assembled under a temporary name, then renamed): reused.
    assert err.count("using cached features") == finished and err.count("extracted ") == 5 - finished
