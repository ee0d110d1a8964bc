"""Requests that cannot succeed are refused before any model is loaded or any cache written: unknown metrics,
an --output or --cache-dir that is a file or cannot be written, missing label fields, `words` or `chars` without
captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import InputError
from probe.features.settings import ExtractSettings
from probe.runs.align import AlignSettings, run_align
from probe.runs.checks import check_writable_dir
from probe.runs.linear import LinearSettings, run_linear

# Exists everywhere on Linux and refuses new files even for root (sysfs).
UNWRITABLE = Path("/sys/probe-check-output")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checks")
    for i in range(12):
        Image.fromarray(np.full((32, 32, 3), 20 * i, dtype=np.uint8)).save(root / f"{i}.png")
    rows = [{"id": f"r{i}", "image": f"{i}.png", "caption": f"a photo {i}", "colour": "ab"[i % 2]} for i in range(12)]
    rows[5].pop("caption")
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "m.jsonl"


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if any model is loaded (every extraction goes through probe.models.loading.load_model)."""
    import probe.models.loading

    monkeypatch.setattr(probe.models.loading, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def _align(tiny_model_dir, dataset: Path, cache: Path, output, **settings):
    return run_align(
        vision=str(tiny_model_dir("vit")),
        text=str(tiny_model_dir("bert")),
        dataset=dataset,
        settings=AlignSettings(permutations=0, subsamples=0, k=3, **settings),
        options=ExtractSettings(cache_dir=cache, device="cpu"),
        output=output,
    )


def test_unknown_metric_is_refused_before_any_model(tiny_model_dir, dataset, tmp_path, no_models) -> None:
    with pytest.raises(InputError, match=r"unknown metric 'ckaa'\. Did you mean 'cka'"):
        _align(tiny_model_dir, dataset, tmp_path / "cache", tmp_path / "out", metrics=("mutual_knn", "ckaa"))
    assert _files(tmp_path) == []


@pytest.mark.parametrize("which", ["output", "cache"])
def test_a_file_where_a_folder_belongs_is_refused(tiny_model_dir, dataset, tmp_path, no_models, which) -> None:
    taken = tmp_path / "taken"
    taken.write_text("someone's file")
    cache, output = (tmp_path / "cache", taken) if which == "output" else (taken, tmp_path / "out")
    param = "output" if which == "output" else "cache_dir"
    with pytest.raises(InputError, match=rf"{param}='{taken}' is an existing file, not a folder"):
        _align(tiny_model_dir, dataset, cache, output)
    with pytest.raises(InputError, match=rf"{param}='{taken / 'sub'}' cannot be created: {taken} is a file"):
        _align(
            tiny_model_dir,
            dataset,
            cache / "sub" if which == "cache" else cache,
            output / "sub" if which == "output" else output,
        )
    assert _files(tmp_path) == [taken] and taken.read_text() == "someone's file"


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a filesystem that refuses writes (sysfs)")
def test_an_unwritable_folder_is_refused(tiny_model_dir, dataset, tmp_path, no_models) -> None:
    with pytest.raises(
        InputError, match=r"output='/sys/probe-check-output' is not writable: cannot create a file in /sys"
    ):
        _align(tiny_model_dir, dataset, tmp_path / "cache", UNWRITABLE)
    with pytest.raises(InputError, match=r"cache_dir='/sys/probe-check-output/c' is not writable"):
        run_linear(
            vision=str(tiny_model_dir("vit")),
            dataset=dataset,
            settings=LinearSettings(labels=("colour",)),
            options=ExtractSettings(cache_dir=UNWRITABLE / "c", device="cpu"),
        )
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "labels, message",
    [
        (("colour", "shape"), r"label field 'shape' is missing for 12 of 12 rows"),
        (("words",), r"row 6 \(id 'r5'\) .* has no caption"),
        (("chars",), r"row 6 \(id 'r5'\) .* has no caption"),
    ],
)
def test_missing_labels_are_refused_before_any_model(
    tiny_model_dir, dataset, tmp_path, no_models, labels, message
) -> None:
    with pytest.raises(InputError, match=message):
        run_linear(
            vision=str(tiny_model_dir("vit")),
            dataset=dataset,
            settings=LinearSettings(labels=labels),
            options=ExtractSettings(cache_dir=tmp_path / "cache", device="cpu"),
            output=tmp_path / "out",
        )
    assert _files(tmp_path) == []


def test_cli_refuses_with_one_line_and_exit_2(tiny_model_dir, dataset, tmp_path, capsys, no_models) -> None:
    from probe.cli.main import main

    (tmp_path / "file").write_text("x")
    for args in (["--metric", "bogus"], ["--output", str(tmp_path / "file")]):
        with pytest.raises(SystemExit) as info:
            main(
                [
                    "align",
                    "--vision",
                    str(tiny_model_dir("vit")),
                    "--text",
                    str(tiny_model_dir("bert")),
                    "--dataset",
                    str(dataset),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--no-progress",
                    *args,
                ]
            )
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _files(tmp_path) == [tmp_path / "file"]


def test_the_write_check_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "a" / "b"
    check_writable_dir(target, param="output")
    check_writable_dir(tmp_path, param="output")
    assert _files(tmp_path) == []
