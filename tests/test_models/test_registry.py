"""The model registry: names, hub ids and folders resolve to the right spec; bad names fail helpfully."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from probe.errors import InputError, ModelError
from probe.models.hub import explain_hub_error
from probe.models.names import all_specs, list_models, resolve_model
from probe.models.spec import LOADERS, ModelSpec, loader_for_model_type, resolve_target

WEBSSL_HUB_IDS = {
    *(f"facebook/webssl-dino{s}-full2b-224" for s in ("300m", "1b", "2b", "3b", "5b")),
    *(f"facebook/webssl-dino7b-full8b-{r}" for r in (224, 378, 518)),
    *(f"facebook/webssl-dino{s}-{d}-224" for s in ("2b", "3b") for d in ("light2b", "heavy2b")),
    "facebook/webssl-dino300m-light2b-224",
    *(f"facebook/webssl-mae{s}-full2b-224" for s in ("300m", "700m", "1b", "2b", "3b")),
}


def test_every_alias_and_shortcut_resolves_to_its_spec():
    for spec in all_specs():
        assert resolve_model(spec.alias) is spec
        assert resolve_model(spec.alias.upper()) is spec
        for shortcut in spec.shortcuts:
            assert resolve_model(shortcut) is spec


def test_hub_ids_resolve_to_their_alias():
    for spec in all_specs():
        if spec.source == "hub":
            assert resolve_model(spec.hub_id).alias == spec.alias
    assert resolve_model("meta-llama/Meta-Llama-3-8B").alias == "llama3"


def test_documented_defaults_and_published_facts():
    assert resolve_model("webssl-dino").alias == "webssl-dino1b-full2b-224"
    assert resolve_model("webssl-mae").alias == "webssl-mae1b-full2b-224"
    llama = resolve_model("llama3")
    facts = (llama.hub_id, llama.hidden_size, llama.num_layers, llama.gated)
    assert facts == ("meta-llama/Meta-Llama-3-8B", 4096, 32, True)
    assert resolve_model("webssl-mae300m-full2b-224").patch_size == 16  # the other MAEs use 14
    assert resolve_model("webssl-dino7b-full8b-518").image_size == 518
    assert resolve_model("siglip").default_pool == "mean"  # no CLS token
    assert {s.default_pool for s in all_specs() if s.modality == "text"} == {"mean"}
    assert resolve_model("minilm").offline and resolve_model("smollm2").offline and not llama.offline


def test_webssl_training_data_and_the_unfiltered_twins():
    from probe.models.names import unfiltered_twin
    from probe.models.table import FILTERED_DATA

    for spec in list_models("webssl*"):
        # the hub name says the data: facebook/webssl-<family><size>-<data>-<resolution>
        assert spec.training_data == spec.hub_id.split("-")[-2]
    twins = {s.alias: t.alias for s in all_specs() if (t := unfiltered_twin(s.alias)) is not None}
    assert twins == {
        "webssl-dino300m-light2b-224": "webssl-dino300m-full2b-224",
        "webssl-dino2b-light2b-224": "webssl-dino2b-full2b-224",
        "webssl-dino2b-heavy2b-224": "webssl-dino2b-full2b-224",
        "webssl-dino3b-light2b-224": "webssl-dino3b-full2b-224",
        "webssl-dino3b-heavy2b-224": "webssl-dino3b-full2b-224",
    }
    assert set(FILTERED_DATA) == {"light2b", "heavy2b"}
    # controls, unfiltered and unregistered names have none
    for name in ("random-init:webssl-dino2b-light2b-224", "webssl-dino2b-full2b-224", "dinov2-large", "a/b"):
        assert unfiltered_twin(name) is None


def test_webssl_pattern_lists_exactly_the_webssl_family_sorted():
    found = list_models("webssl*")
    assert {s.hub_id for s in found} == WEBSSL_HUB_IDS
    assert all(s.family in ("webssl-dino", "webssl-mae") and s.license == "cc-by-nc-4.0" for s in found)
    assert [s.params_m for s in found] == sorted(s.params_m for s in found)
    assert {s.loader for s in found if s.family == "webssl-dino"} == {"dinov2"}
    assert {s.loader for s in found if s.family == "webssl-mae"} == {"vit"}


def test_webssl_family_is_complete():
    # The published WebSSL family (facebook/webssl-*): 13 DINO checkpoints and 5 MAE ones, each registered once.
    dino = {s.hub_id for s in all_specs() if s.family == "webssl-dino"}
    mae = {s.hub_id for s in all_specs() if s.family == "webssl-mae"}
    assert (len(dino), len(mae)) == (13, 5)
    assert dino | mae == WEBSSL_HUB_IDS
    light = resolve_model("webssl-dino300m-light2b-224")
    assert (light.hidden_size, light.num_layers, light.patch_size, light.loader) == (1024, 24, 14, "dinov2")


@pytest.mark.parametrize(
    ("alias", "folder"),
    [("tiny-ssl-vit", "tiny-ssl-vit"), ("tiny-random-vit", "tiny-ssl-vit"), ("tiny-ssl-vit-text", "tiny-ssl-vit-text")],
)
def test_tiny_models_sizes_match_their_config(alias, folder):
    config = json.loads((Path(__file__).resolve().parents[2] / "data" / folder / "config.json").read_text())
    spec = resolve_model(alias)
    facts = (spec.hidden_size, spec.num_layers, spec.patch_size, spec.image_size)
    assert facts == (config["hidden_size"], config["num_hidden_layers"], config["patch_size"], config["image_size"])


def test_list_models_filters_and_orders():
    everything = list_models()
    assert len(everything) == len(all_specs())
    modalities = [s.modality for s in everything]
    assert modalities == sorted(modalities, key=["vision", "text"].index)  # vision first
    assert {s.alias for s in list_models("meta-llama/*")} == {
        "llama3",
        "llama3-70b",
        "llama3.1-8b",
        "llama3.2-1b",
        "llama3.2-3b",
    }
    assert {s.alias for s in list_models("DINOV2")} == {"dinov2-small", "dinov2-base", "dinov2-large", "dinov2-giant"}
    assert list_models("no-such-thing*") == []


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelError, match="Did you mean 'dinov2-large'") as info:
        resolve_model("dinov2-lrage")
    assert "probe models" in str(info.value)
    with pytest.raises(ModelError, match="webssl-dino1b-full2b-224"):
        resolve_model("webssl-dino1b")


def test_paths_that_do_not_exist_are_named(tmp_path):
    for name in (str(tmp_path / "missing"), "./no/such/folder", "../nothing", "a/b/c"):
        with pytest.raises(ModelError, match="does not exist") as info:
            resolve_model(name)
        assert name in str(info.value)


def test_folder_without_config_and_file_paths_are_refused(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(str(weights))


@pytest.mark.parametrize(
    ("kind", "loader", "pool"),
    [
        ("dinov2", "dinov2", "cls"),
        ("dinov2_registers", "dinov2_registers", "cls"),
        ("vit", "vit", "cls"),
        ("vit_mae", "vit_mae", "cls"),
        ("clip", "clip_vision", "cls"),
        ("siglip", "siglip_vision", "mean"),
        ("llama", "text_decoder", "mean"),
        ("bert", "text_encoder", "mean"),
    ],
)
def test_local_folders_get_a_spec_from_their_config(kind, loader, pool, tiny_model_dir):
    folder = tiny_model_dir(kind)
    spec = resolve_model(str(folder), revision="v1")
    assert (spec.loader, spec.default_pool, spec.source, spec.revision) == (loader, pool, "local", "v1")
    assert (spec.hidden_size, spec.num_layers) == (32, 3)
    assert spec.local_path == str(folder.resolve()) and spec.hub_id is None


def test_unsupported_model_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ModelError, match="'wav2vec2'"):
        resolve_model(str(tmp_path))


def test_model_type_table():
    assert loader_for_model_type("gemma2") == loader_for_model_type("qwen2_moe") == "text_decoder"
    assert loader_for_model_type("clip_vision_model") == "clip_vision"
    assert loader_for_model_type("newthing", architectures=["NewThingForCausalLM"]) == "text_decoder"
    assert loader_for_model_type("newthing") is None


def test_loader_targets_name_real_classes():
    for kind in LOADERS.values():
        assert isinstance(resolve_target(kind.target), type), kind.target


def test_revision_passes_through_without_changing_the_table():
    spec = resolve_model("dinov2-small", revision="abc123")
    assert spec.revision == "abc123"
    assert resolve_model("dinov2-small").revision == "ed25f3a31f01632728cabb09d1542f84ab7b0056"


def test_unregistered_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelError, match="not cached locally and the hub is unreachable"):
        resolve_model("probe-tests/definitely-not-a-model")


def test_hub_errors_are_explained():
    class GatedRepoError(Exception):
        pass

    try:
        try:
            raise GatedRepoError("403")
        except GatedRepoError as inner:
            raise OSError("You are trying to access a gated repo.") from inner
    except OSError as exc:
        message = explain_hub_error(exc, hub_id="meta-llama/Meta-Llama-3-8B", revision="main")
    assert "gated" in message and "https://huggingface.co/meta-llama/Meta-Llama-3-8B" in message


def test_gated_llama_errors_point_to_the_registered_ungated_mirror():
    from probe.models.hub import _UNGATED_MIRRORS

    for gated_id, (alias, mirror_id) in _UNGATED_MIRRORS.items():
        assert resolve_model(gated_id).gated
        mirror = resolve_model(alias)
        assert (mirror.hub_id, mirror.gated) == (mirror_id, False)
        assert (mirror.hidden_size, mirror.num_layers) == (resolve_model(gated_id).hidden_size, 32)
    gated = OSError("Access to model meta-llama/Meta-Llama-3-8B is restricted. You must be authenticated (gated repo)")
    message = explain_hub_error(gated, hub_id="meta-llama/Meta-Llama-3-8B", revision="main")
    assert "`llama3-8b-nous` (NousResearch/Meta-Llama-3-8B" in message and "HF_TOKEN" in message
    other = explain_hub_error(gated, hub_id="meta-llama/Llama-3.2-1B", revision="main")
    assert "llama3-8b-nous" in other and "For Meta-Llama-3-8B" in other  # never offered as the same weights
    assert "llama3-8b-nous" not in explain_hub_error(gated, hub_id="google/gemma-2b", revision="main")


def test_specs_are_validated():
    siglip = resolve_model("siglip")
    with pytest.raises(ValueError, match="no CLS token"):
        replace(siglip, default_pool="cls")
    with pytest.raises(ValueError, match="does not apply"):
        replace(resolve_model("llama3"), default_pool="cls")
    with pytest.raises(ValueError, match="for vision models"):
        ModelSpec(alias="x", hub_id="a/b", modality="text", arch="vit", loader="vit", default_pool="mean")


def test_models_command_prints_the_table_and_rejects_empty_matches():
    from typer.testing import CliRunner

    import probe.cli.models  # noqa: F401 - registers the command
    from probe.cli.main import app

    result = CliRunner().invoke(app, ["models", "webssl-dino1*"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "webssl-dino1b-full2b-224" in result.output and "1536x40" in result.output
    assert "facebook/webssl-dino1b-full2b-224" in result.output and "= webssl-dino" in result.output
    assert "webssl-mae" not in result.output
    offline = CliRunner().invoke(app, ["models", "smollm2"], env={"COLUMNS": "200"})
    assert " package" in offline.output
    tiny = CliRunner().invoke(app, ["models", "tiny"], env={"COLUMNS": "200"})
    assert tiny.output.count("192x6") == 3 and "?" not in tiny.output  # tiny-ssl-vit, -text, tiny-random-vit
    empty = CliRunner().invoke(app, ["models", "dinov3*"])
    assert isinstance(empty.exception, InputError) and "dinov2" in str(empty.exception)


def test_models_command_does_not_import_torch():
    code = "import sys, probe.cli.models; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
