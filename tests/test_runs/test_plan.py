"""Plans (probe.runs.plan) of `probe linear` command lines: the flags as a study of probes only, resolved
offline from registry facts as `run_linear` would resolve them (the probed layers, the ridge target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.errors import InputError
from probe.runs.plan import ProbePlan, plan_study, print_linear_plan
from probe.runs.study import ProbeSpec, StudySettings, StudySpec, load_study


@pytest.fixture(autouse=True)
def _no_model_loads(monkeypatch) -> None:
    import probe.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the plan loaded a model"))


def _linear_spec(**probes) -> StudySpec:
    return StudySpec(
        name="linear",
        vision=(),
        text=(),
        datasets=("wit-1024",),
        probes=ProbeSpec(**probes),
        settings=StudySettings().with_keys(metrics=(), device="cuda"),
    )


def test_linear_plan_resolves_probed_layers_and_ridge_target_from_the_registry(tmp_path) -> None:
    plan = plan_study(
        _linear_spec(
            labels=("words",), text="llama3", vision=("webssl-dino1b-full2b-224",), layers="::4", text_layer="16"
        ),
        cache_dir=tmp_path,
    )
    # webssl-dino1b: 40 blocks + embeddings = 41 stored states; llama3: 33. No alignment in a linear plan.
    assert plan.probes == [ProbePlan("wit-1024", "webssl-dino1b-full2b-224", tuple(range(0, 41, 4)), 41, "llama3", 16)]
    assert plan.model_pairs == 0 and plan.layer_pairs == 0 and plan.align_seconds == 0
    assert [(c.model, c.role, c.exists) for c in plan.caches] == [
        ("webssl-dino1b-full2b-224", "probe", False),
        ("llama3", "probe", False),
    ]
    assert plan.gated == ["llama3"] and plan.new_bytes == 1024 * (41 * 1536 + 33 * 4096) * 4


def test_linear_plan_text(tmp_path) -> None:
    out = print_linear_plan(
        vision="webssl-dino1b-full2b-224",
        dataset="wit-1024",
        labels=("words",),
        text="llama3",
        probe_layers="::4",
        text_layer="16",
        cache_dir=tmp_path,
        device="cuda",
        limit=None,
        seed=3,
    )
    assert out.startswith(
        "study linear (probe linear flags)\nsettings: limit=all, seed=3, caches store layers=all, device cuda"
    )
    assert max(map(len, out.splitlines())) <= 80
    assert "webssl-dino1b-full2b-224 probe        41x1536 new     257.9 MB\n" in out
    assert "llama3                   probe        33x4096 new     553.6 MB gated\n" in out
    flat = " ".join(out.split())
    assert "linear probes: 1 run (labels words; ridge to llama3's hidden state 16 (text_layer=16))" in flat
    assert "vision hidden states probed: 0, 4, 8, 12, 16, 20, ..., 40 (11 of 41 stored; layers=::4)" in flat
    assert "caches: 0 exist, 2 new, needing 811.6 MB" in flat and "gated (need a Hugging Face token" in flat
    assert "alignment" not in out and "grid:" not in out and "probes not estimated" in flat


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": "llama3", "text_layer": "0:2"}, "text_layer='0:2' selects 2 layers"),
        ({"text": "llama3", "text_layer": "40"}, "text_layer='40': state 40 does not exist"),
        ({"labels": ("words",), "probe_layers": "41"}, "layers='41': state 41 does not exist"),
        ({}, "nothing to probe"),
        ({"labels": ("words",), "vision": "webssl-dino1b-full2b-224,dinov2-small"}, "names 2 models"),
        ({"labels": ("words",), "text": "dinov2-small"}, "'dinov2-small' is a vision model"),
    ],
)
def test_linear_plan_fails_as_the_run_would(tmp_path, kwargs, message) -> None:
    args = {"vision": "webssl-dino1b-full2b-224", "labels": (), "text": None, **kwargs}
    with pytest.raises(InputError) as info:
        print_linear_plan(dataset="wit-1024", cache_dir=tmp_path, device="cuda", **args)
    assert message in str(info.value)


def test_study_plan_lists_one_probe_run_per_probed_model(tmp_path) -> None:
    plan = plan_study(load_study("demo"), cache_dir=tmp_path)
    assert [p.vision for p in plan.probes] == ["tiny-ssl-vit", "pixels-16", "tiny-random-vit"]
    assert [(p.states, p.stored) for p in plan.probes] == [(tuple(range(7)), 7), ((0,), 1), (tuple(range(7)), 7)]
    assert {(p.text, p.text_state) for p in plan.probes} == {("smollm2", 30)} and plan.probe_runs == 3


# ------------------------------------------------------------------ measured extraction rates

ROWS = 8


@pytest.fixture(scope="module")
def measured_cache(tmp_path_factory):
    """A cache folder where `ensure_cache` (what align/linear/study run) extracted the registered tiny-ssl-vit on
    ROWS images on the CPU, and so recorded that extraction; and the manifest."""
    import json

    import numpy as np
    from PIL import Image

    from probe.features.settings import ExtractSettings
    from probe.runs.inputs import ensure_cache, open_dataset

    root = tmp_path_factory.mktemp("measured")
    rng = np.random.default_rng(1)
    for i in range(ROWS):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    manifest = root / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"id": str(i), "image": f"{i}.png", "caption": f"a photo {i}"}) + "\n" for i in range(ROWS))
    )
    options = ExtractSettings(cache_dir=root / "cache", device="cpu")
    ensure_cache("tiny-ssl-vit", open_dataset(manifest, options), pool=None, options=options, modality="vision")
    return root / "cache", manifest


def _cpu_linear(manifest, **probes) -> StudySpec:
    return StudySpec(
        name="linear",
        vision=(),
        text=(),
        datasets=(str(manifest),),
        probes=ProbeSpec(vision=("tiny-ssl-vit",), **probes),
        settings=StudySettings().with_keys(metrics=(), device="cpu"),
    )


def test_short_extractions_are_not_taken_for_a_rate(measured_cache) -> None:
    from probe.report.plan_text import format_plan
    from probe.runs.plan import ASSUMED_RATES, MIN_MEASURED_SECONDS

    cache, manifest = measured_cache
    (record,) = __import__("probe.features.rates", fromlist=["x"]).read_extractions(cache)
    assert record.model == "tiny-ssl-vit" and record.rows == ROWS and record.seconds < MIN_MEASURED_SECONDS
    plan = plan_study(_cpu_linear(manifest, text="minilm"), cache_dir=cache)
    assert plan.measured.flops_per_s is None and (plan.measured.short, plan.measured.extractions) == (1, 0)
    vit, minilm = plan.caches
    assert vit.exists and not minilm.exists
    cpu = ASSUMED_RATES["cpu"]
    assumed = 2 * 22.7e6 * 32 * ROWS / (cpu.forward_tflops * 1e12) + minilm.bytes / (cpu.write_mb_s * 1e6)
    assert minilm.params_m == 22.7 and minilm.seconds == pytest.approx(assumed)
    flat = " ".join(format_plan(plan).split())
    assert "time, from ASSUMED rates for cpu" in flat
    assert (
        "(not measured: the extractions recorded on this machine on cpu in float32 are unusable: "
        "1 shorter than 10 s after loading" in flat
    )


def test_plan_times_new_caches_from_this_machines_measured_rate(measured_cache, tmp_path) -> None:
    import json
    import platform
    import shutil

    from probe.features.cache import FeatureCache
    from probe.features.extract import ExtractResult
    from probe.features.rates import RATES_DIR, record_extraction
    from probe.report.plan_text import format_plan

    cache, manifest = measured_cache
    cache = Path(shutil.copytree(cache, tmp_path / "cache"))
    (h5,) = (cache / "features").rglob("*.h5")
    key = FeatureCache(h5).key
    # The same cache, as if a longer run had extracted it in 40 s (extraction itself cannot take 40 s in a test).
    record_extraction(cache, ExtractResult(h5, key, False, ROWS, ROWS, 40.0, 32), device="cpu")
    # A longer run that was mostly model loading (38 of 45 s) says nothing about throughput: left out.
    record_extraction(cache, ExtractResult(h5, key, False, ROWS, ROWS, 45.0, 32, 38.0), device="cpu")
    # Records that are not this machine's CPU in float32 are not used for it.
    other = record_extraction(cache, ExtractResult(h5, key, False, ROWS, ROWS, 400.0, 32), device="cpu")
    other.write_text(json.dumps({**json.loads(other.read_text()), "host": platform.node() + "-elsewhere"}))
    gpu = record_extraction(cache, ExtractResult(h5, key, False, ROWS, ROWS, 50.0, 32), device="cuda:0")
    gpu.write_text(json.dumps({**json.loads(gpu.read_text()), "dtype": "bfloat16"}))
    assert len(list((cache / RATES_DIR).glob("*.json"))) == 5

    plan = plan_study(_cpu_linear(manifest, text="minilm", labels=("x",)), cache_dir=cache)
    vit_flops = 2 * 2.83e6 * ((128 // 16) ** 2 + 1) * ROWS  # tiny-ssl-vit: 128 px, patch 16 -> 64 patches + CLS
    rate = vit_flops / 40.0
    m = plan.measured
    assert (m.extractions, m.short, m.unsized, m.seconds) == (1, 2, 0, 40.0) and m.flops_per_s == pytest.approx(rate)
    (minilm,) = plan.new
    assert minilm.model == "minilm" and minilm.seconds == pytest.approx(2 * 22.7e6 * 32 * ROWS / rate)
    flat = " ".join(format_plan(plan).split())
    assert 150 < minilm.seconds < 170 and f"{rate / 1e9:.3g}" == "0.0736"
    assert (
        "time: extraction ~3 min, MEASURED on this machine (1 extraction on cpu in float32, 40 s in all: "
        "0.0736 GFLOP/s effective, model loading not included; left out: 2 shorter than 10 s "
        "after loading), probes not estimated"
    ) in flat
    assert "ASSUMED" not in flat  # a probes-only plan has no alignment to assume a rate for

    # A GPU plan uses only the GPU record; alignment time stays assumed, and the plan says so.
    spec = StudySpec(
        name="s",
        vision=("tiny-ssl-vit",),
        text=("minilm",),
        datasets=(str(manifest),),
        settings=StudySettings().with_keys(
            metrics=("cka",), device="cuda", dtype="bfloat16", permutations=1, subsamples=0
        ),
    )
    plan = plan_study(spec, cache_dir=cache)
    assert plan.measured.extractions == 1 and plan.measured.flops_per_s == pytest.approx(vit_flops / 50.0)
    flat = " ".join(format_plan(plan).split())
    assert "MEASURED on this machine (1 extraction on cuda in bfloat16, 50 s in all" in flat
    assert "; alignment ~0 s, from ASSUMED rates for cuda" in flat


def test_a_rendered_dataset_is_planned_from_its_source_then_found_once_drawn(measured_cache) -> None:
    from probe.datasets import load_dataset

    cache, manifest = measured_cache
    spec = _cpu_linear(f"rendered:{manifest}", labels=("chars",))
    before = plan_study(spec, cache_dir=cache).datasets[0]
    assert (before.rows, before.prepared) == (ROWS, False) and "not drawn yet" in before.note
    assert not (cache / "datasets" / "rendered").exists()  # planning draws nothing
    drawn = load_dataset(f"rendered:{manifest}", cache_dir=cache)
    after = plan_study(spec, cache_dir=cache).datasets[0]
    assert (after.rows, after.prepared) == (ROWS, True) and str(Path(drawn.source).parent) in after.note
