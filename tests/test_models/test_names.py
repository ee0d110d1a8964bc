"""The model-name service's predicates (probe.models.names): twins, registered names, hub ids, controls.

`is_control` replaced two rules that were written out separately: the one `probe.runs.controls` used to pick
which vision models get a `random-init` twin, and the one `probe.report.tables` used for the `vision_control`
column. Both are kept here, as they were, so the one rule is checked against them on the names the demo and
the shipped studies use, and on every registered name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.models.names import (
    RANDOM_INIT_PREFIX,
    all_specs,
    hub_only,
    is_control,
    is_hub_id,
    registered,
    resolve_model,
    split_twin,
)
from probe.runs.study import list_presets, load_study


def _old_runs_rule(name: str) -> bool:
    """probe.runs.controls.is_control before the name service."""
    return name.startswith("random-init:") or name.startswith("pixels-") or name == "tiny-random-vit"


def _old_report_rule(name: str) -> bool:
    """probe.report.tables' control flag before the name service (model_facts with is_control(name, family))."""

    def by_family(family: str | None) -> bool:
        fam = (family or "").lower()
        return name.lower().startswith("random-init:") or fam == "control" or "random" in fam

    base = name[len("random-init:") :] if name.lower().startswith("random-init:") else name
    known = {n.lower() for s in all_specs() for n in (s.alias, s.hub_id, *s.shortcuts) if n}
    if base.strip().lower() not in known and not Path(base).expanduser().is_dir():
        return by_family(None)
    try:
        spec = resolve_model(name)
    except Exception:
        return by_family(None)
    return by_family(spec.family) or spec.source in ("random-init", "pixels")


def _study_names() -> set[str]:
    """Every model name the shipped studies and the demo (a preset) run, as they run it (controls expanded),
    and the registered name the demo's random-init control is recorded under."""
    names = {"tiny-random-vit"}
    for preset in list_presets():
        spec = load_study(preset)
        names.update(spec.vision, spec.text, spec.control_models(), spec.probe_vision())
    return names


def test_split_twin_takes_the_prefix_in_any_case_and_strips_the_base() -> None:
    assert split_twin("random-init:dinov2-small") == (RANDOM_INIT_PREFIX, "dinov2-small")
    assert split_twin(" Random-Init: facebook/dinov2-small ") == (RANDOM_INIT_PREFIX, "facebook/dinov2-small")
    assert split_twin("random-init:") == (RANDOM_INIT_PREFIX, "")
    assert split_twin(" dinov2-small ") == ("", "dinov2-small")
    assert split_twin("tiny-random-vit") == ("", "tiny-random-vit")  # a registered twin has no prefix


def test_registered_knows_aliases_shortcuts_and_hub_ids_as_resolve_model_does() -> None:
    for spec in all_specs():
        for name in (spec.alias, spec.alias.upper(), *spec.shortcuts):
            assert registered(name) is spec
        if spec.source == "hub" and spec.hub_id:
            assert registered(spec.hub_id.upper()) is spec
    assert registered("webssl-dino").alias == "webssl-dino1b-full2b-224"
    # A package model's upstream hub id names the hub weights, not the package copy: not registered.
    assert registered("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    assert registered("sentence-transformers/all-MiniLM-L6-v2") is None
    for name in ("random-init:dinov2-small", "dinov2-tiny", "someone/some-model", "data/tiny-ssl-vit", ""):
        assert registered(name) is None


def test_hub_ids_are_exactly_owner_slash_name() -> None:
    for name in ("facebook/dinov2-small", "someone/some-model", "Qwen/Qwen2.5-0.5B", "data/tiny-ssl-vit"):
        assert is_hub_id(name)
    for name in ("dinov2-small", "a/b/c", "./x/y", "/abs/path", "owner/", "/name", "-owner/name", "a/b\n"):
        assert not is_hub_id(name)


def test_hub_only_is_an_unregistered_hub_id_that_is_no_folder(tmp_path, monkeypatch) -> None:
    assert hub_only("someone/some-model")
    assert hub_only("random-init:someone/some-model")
    assert hub_only("HuggingFaceTB/SmolLM2-135M-Instruct")
    for name in ("facebook/dinov2-small", "random-init:facebook/dinov2-small", "dinov2-small", "pixels-16"):
        assert not hub_only(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone" / "some-model").mkdir(parents=True)
    assert not hub_only("someone/some-model")  # a folder of that shape is read from disk


def test_is_control_on_registered_names_comes_from_the_spec() -> None:
    for spec in all_specs():
        expected = spec.source in ("random-init", "pixels")
        assert spec.control is expected
        for name in (spec.alias, spec.alias.upper(), *spec.shortcuts):
            assert is_control(name) is expected, name
            assert is_control(RANDOM_INIT_PREFIX + name)  # a twin of anything is a control
    assert {s.alias for s in all_specs() if s.control} == {"tiny-random-vit", "pixels-8", "pixels-16", "pixels-32"}


@pytest.mark.parametrize(
    "name",
    ["random-init:dinov2-small", "Random-Init:dinov2-small", "random-init:someone/model", "random-init:./x"],
)
def test_every_twin_name_is_a_control(name: str) -> None:
    assert is_control(name)


def test_unregistered_names_folders_and_hub_ids_are_not_controls(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-vit").mkdir()
    (tmp_path / "random-vit").mkdir()
    for name in ("my-vit", "random-vit", str(tmp_path / "my-vit"), "someone/some-model", "dinov2-tiny", ""):
        assert not is_control(name), name
    for name in ("facebook/dinov2-small", "dinov2-small", "minilm", "tiny-ssl-vit"):
        assert not is_control(name), name


def test_is_control_agrees_with_both_old_rules_on_the_demo_and_study_names() -> None:
    names = _study_names()
    assert {"tiny-ssl-vit", "tiny-random-vit", "pixels-16", "random-init:tiny-ssl-vit", "minilm"} <= names
    assert any(n.startswith("webssl-") for n in names) and any(n.startswith("random-init:") for n in names)
    for name in sorted(names):
        assert is_control(name) == _old_runs_rule(name) == _old_report_rule(name), name


def test_is_control_agrees_with_both_old_rules_on_every_registered_name_and_its_twin() -> None:
    for spec in all_specs():
        for name in (spec.alias, *spec.shortcuts, RANDOM_INIT_PREFIX + spec.alias):
            assert is_control(name) == _old_runs_rule(name) == _old_report_rule(name), name
