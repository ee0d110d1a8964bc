"""`probe linear --dry-run`: the plan of the command line, against the real cache folder, with nothing loaded,
fetched or written."""

from __future__ import annotations

import json
import re
import socket

import numpy as np
import pytest
from PIL import Image

ROWS = 8


def test_linear_dry_run_finds_the_existing_cache_and_sizes_the_new_one(
    tiny_model_dir, tmp_path, cli, monkeypatch
) -> None:
    rng = np.random.default_rng(2)
    for i in range(ROWS):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "m.jsonl").write_text(
        "".join(
            json.dumps(
                {"id": str(i), "image": f"{i}.png", "caption": f"a photo {i}", "colour": "red" if i % 2 else "blue"}
            )
            + "\n"
            for i in range(ROWS)
        )
    )
    vit, bert, cache = tiny_model_dir("vit"), tiny_model_dir("bert"), tmp_path / "cache"
    code, _, err = cli(
        [
            "extract",
            "--model",
            str(vit),
            "--dataset",
            str(tmp_path / "m.jsonl"),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ],
    )
    assert code == 0, err

    import probe.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the dry run loaded a model"))
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("the dry run touched the network"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = cli(
        [
            "linear",
            "--dry-run",
            "--vision",
            str(vit),
            "--text",
            str(bert),
            "--labels",
            "colour",
            "--layers",
            "1:",
            "--text-layer",
            "2",
            "--dataset",
            str(tmp_path / "m.jsonl"),
            "--cache-dir",
            str(cache),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert code == 0, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, no --output
    rows = out.split("cache       disk\n")[1].split("\n\n")[0].splitlines()
    # the tiny models: 3 blocks + embeddings = 4 stored states of width 32; 8 rows x 4 x 32 x 4 bytes = 4.1 KB
    assert (
        len(rows) == 2
        and re.search(r" probe +4x32 exists +4\.1 KB$", rows[0])
        and re.search(r" probe +4x32 new +4\.1 KB$", rows[1])
    )
    flat = " ".join(out.split())
    assert f"dataset {tmp_path / 'm.jsonl'}: N = {ROWS}; local manifest" in flat
    assert "linear probes: 1 run (labels colour; ridge to" in flat and "'s hidden state 2 (text_layer=2))" in flat
    assert "vision hidden states probed: 1-3 (3 of 4 stored; layers=1:)" in flat
    assert "caches: 1 exist, 1 new, needing 4.1 KB of disk" in flat and "gated" not in flat

    code, out, err = cli(
        [
            "linear",
            "--dry-run",
            "--vision",
            str(vit),
            "--text",
            str(bert),
            "--text-layer",
            "4",
            "--dataset",
            str(tmp_path / "m.jsonl"),
            "--cache-dir",
            str(cache),
        ],
    )
    assert code == 2 and out == "" and err.startswith("error: --text-layer '4': state 4 does not exist")
