"""Plans (probe.runs.plan) of `probe linear` command lines: the flags as a study of probes only, resolved
offline from registry facts as `run_linear` would resolve them (the probed layers, the ridge target)."""

from __future__ import annotations

import pytest

from probe.errors import InputError
from probe.runs.plan import ProbePlan, plan_study, print_linear_plan
from probe.runs.study import ProbeSpec, StudySettings, StudySpec, load_study


@pytest.fixture(autouse=True)
def _no_model_loads(monkeypatch) -> None:
    import probe.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the plan loaded a model"))


def _linear_spec(**probes) -> StudySpec:
    return StudySpec(name="linear", vision=(), text=(), datasets=("wit-1024",), metrics=(),
                     probes=ProbeSpec(**probes), settings=StudySettings(device="cuda"))


def test_linear_plan_resolves_probed_layers_and_ridge_target_from_the_registry(tmp_path) -> None:
    plan = plan_study(_linear_spec(labels=("words",), text="llama3", vision=("webssl-dino1b-full2b-224",), layers="::4",
                                   text_layer="16"), cache_dir=tmp_path)
    # webssl-dino1b: 40 blocks + embeddings = 41 stored states; llama3: 33. No alignment in a linear plan.
    assert plan.probes == [ProbePlan("wit-1024", "webssl-dino1b-full2b-224", tuple(range(0, 41, 4)), 41, "llama3", 16)]
    assert plan.model_pairs == 0 and plan.layer_pairs == 0 and plan.align_seconds == 0
    assert [(c.model, c.role, c.exists) for c in plan.caches] == [("webssl-dino1b-full2b-224", "probe", False),
                                                                  ("llama3", "probe", False)]
    assert plan.gated == ["llama3"] and plan.new_bytes == 1024 * (41 * 1536 + 33 * 4096) * 4


def test_linear_plan_text(tmp_path) -> None:
    out = print_linear_plan(vision="webssl-dino1b-full2b-224", dataset="wit-1024", labels=("words",), text="llama3",
                            probe_layers="::4", text_layer="16", cache_dir=tmp_path, device="cuda", limit=None, seed=3)
    assert out.startswith("study linear (probe linear flags)\nsettings: limit=all, seed=3, caches store layers=all, device cuda")
    assert max(map(len, out.splitlines())) <= 80
    assert "webssl-dino1b-full2b-224 probe        41x1536 new     257.9 MB\n" in out
    assert "llama3                   probe        33x4096 new     553.6 MB gated\n" in out
    flat = " ".join(out.split())
    assert "linear probes: 1 run (labels words; ridge to llama3's hidden state 16 (text_layer=16))" in flat
    assert "vision hidden states probed: 0, 4, 8, 12, 16, 20, ..., 40 (11 of 41 stored; layers=::4)" in flat
    assert "caches: 0 exist, 2 new, needing 811.6 MB" in flat and "gated (need a Hugging Face token" in flat
    assert "alignment" not in out and "grid:" not in out and "probes not estimated" in flat


@pytest.mark.parametrize("kwargs, message", [
    ({"text": "llama3", "text_layer": "0:2"}, "text_layer='0:2' selects 2 layers"),
    ({"text": "llama3", "text_layer": "40"}, "text_layer='40': state 40 does not exist"),
    ({"labels": ("words",), "probe_layers": "41"}, "layers='41': state 41 does not exist"),
    ({}, "nothing to probe"),
    ({"labels": ("words",), "vision": "webssl-dino1b-full2b-224,dinov2-small"}, "names 2 models"),
    ({"labels": ("words",), "text": "dinov2-small"}, "'dinov2-small' is a vision model"),
])
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
