"""The README's facts match the code: the captions.tsv example loads as described, the global flags exist,
openmoji's label fields are the ones named."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_captions_tsv_example_loads_as_described(tmp_path):
    from probe.datasets import load_dataset

    block = re.search(r"```\n([^`]*\t[^`]*)```", README)
    assert block, "the README has no captions.tsv example"
    (tmp_path / "captions.tsv").write_text(block.group(1))
    lines = [line.split("\t") for line in block.group(1).splitlines()]
    for name, _ in lines:
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / name)
    ds = load_dataset(str(tmp_path), cache_dir=tmp_path / "cache")
    assert ds.ids == [Path(name).stem for name, _ in lines] and ds.captions == [caption for _, caption in lines]


def test_global_flags_in_the_readme_exist():
    from probe.cli.main import app

    listed = re.search(r"Global flags, before the command: (.*?)\. User errors", README, re.S).group(1)
    flags = re.findall(r"`(--[a-z-]+)", listed)
    assert set(flags) == {"--debug", "--quiet", "--threads", "--cache-dir", "--version"}
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert all(flag in help_text for flag in flags)


def test_openmoji_label_fields_are_the_ones_named():
    from probe.datasets.openmoji import EmojiRow

    assert "(label fields `category` and `subcategory`)" in README
    assert {"category", "subcategory"} <= set(EmojiRow.__dataclass_fields__)
