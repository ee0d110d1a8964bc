"""Fixtures shared by the command-level tests of probe.runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N = 40  # rows of `labelled_dataset`


@pytest.fixture(scope="session")
def labelled_dataset(tmp_path_factory) -> Path:
    """N rows of 32x32 noisy squares in four colours, captioned with their colour; label field `colour`."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(N):
        colour = ["red", "green", "blue", "gray"][i % 4]
        base = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "gray": (120, 120, 120)}[colour]
        img = np.clip(np.array(base) + rng.normal(0, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append(
            {"id": f"x{i}", "image": f"{i}.png", "caption": f"a {colour} square number {i % 5}", "colour": colour}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"
