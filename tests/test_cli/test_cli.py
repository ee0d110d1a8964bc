"""The command line: fast start-up, one red line and exit code 2 for user errors, tracebacks only with --debug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from probe.cli.main import app; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'transformers')))[:3]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract", "--model", "webssl-dinno", "--dataset", "openmoji"], "did you mean"),
        (["extract", "--model", "minilm", "--dataset", "/no/such/manifest.jsonl"], "does not exist"),
        (["extract", "--model", "minilm", "--dataset", "openmoj"], "did you mean openmoji"),
        (["cache", "rm", "no-such-entry", "--yes", "--cache-dir", "{tmp}"], "no cache entry matches"),
    ],
)
def test_user_errors_are_one_red_line_and_exit_2(args, message, cli, tmp_path) -> None:
    code, out, err = cli([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    assert message.lower() in err.lower()
    assert "Traceback" not in err and err.strip().startswith("error:")


def test_debug_shows_the_traceback(cli) -> None:
    code, _, err = cli(["--debug", "extract", "--model", "minilm", "--dataset", "/no/such/manifest.jsonl"])
    assert code == 2 and "Traceback" in err


def test_usage_errors_exit_2(cli) -> None:
    code, _, err = cli(["extract", "--model", "x"])
    assert code == 2 and "--dataset" in err


def test_extract_then_cache_ls_verify_rm(tiny_model_dir, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the default 80
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "image": f"{i}.png", "caption": f"c {i}"}) + "\n" for i in range(4))
    )
    cache = tmp_path / "cache"
    code, out, _ = cli(
        [
            "extract",
            "--model",
            str(tiny_model_dir("vit")),
            "--dataset",
            str(tmp_path / "m.jsonl"),
            "--cache-dir",
            str(cache),
            "--no-progress",
            "--num-workers",
            "0",
        ],
    )
    assert code == 0 and "N=4" in out and ".h5" in out
    code, _, err = cli(
        [
            "extract",
            "--model",
            str(tiny_model_dir("vit")),
            "--dataset",
            str(tmp_path / "m.jsonl"),
            "--cache-dir",
            str(cache),
            "--max-tokens",
            "64",
        ],
    )
    assert code == 2 and err.strip().startswith("error: --max-tokens applies to text models only"), err
    code, out, _ = cli(["cache", "ls", "--cache-dir", str(cache)])
    assert code == 0 and "complete" in out and "vision" in out
    code, out, _ = cli(["cache", "verify", "--cache-dir", str(cache)])
    assert code == 0 and "ok" in out
    code, out, _ = cli(["cache", "rm", "*", "--yes", "--cache-dir", str(cache)])
    assert code == 0 and not list(Path(cache).rglob("*.h5"))
