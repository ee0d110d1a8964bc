"""Many processes, one cache: a real `torchrun --nproc-per-node 2` job on CPU extracts a vision and a text
model into one cache folder, each rank taking the rows i % 2 == rank (probe.features.extract.Shard.from_env),
and the last rank to finish assembles a cache bit-for-bit equal to a single process's. Seconds of work, but
four interpreters that import torch and transformers: marked slow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.features.cache import FeatureCache

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("torchrun_extract.py")
ROWS = 10
# One row per batch, so that each row meets the same kernels alone or sharded: a row's float32 features
# move (~1e-7) with its batch companions and their padding (docs/cache.md), and sharding changes those.
BATCH = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["red", "cat", "on", "a", "big", "blue", "dog", "in", "the", "sky"]
    rows = []
    for i in range(ROWS):
        Image.fromarray(rng.integers(0, 255, size=(36, 44, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        caption = " ".join(words[(i + j) % len(words)] for j in range(1 + i % 5))  # lengths vary: padding
        rows.append({"id": f"row{i}", "image": f"{i}.png", "caption": caption})
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return tmp_path / "manifest.jsonl"


def run(command: list[str]) -> list[dict]:
    """Run `command` with one BLAS/OpenMP thread per process (BLAS splits work by thread count, which
    changes float32 sums); return the JSON lines the processes printed."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_torchrun_two_ranks_fill_one_cache_equal_to_one_process(tiny_model_dir, manifest, tmp_path):
    models = [str(tiny_model_dir("dinov2")), str(tiny_model_dir("llama"))]
    [single] = run([sys.executable, str(SCRIPT), str(tmp_path / "one"), str(manifest), str(BATCH), *models])
    assert single["rank"] is None and all(result["rows"] == ROWS for result in single["results"])
    ranks = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            str(SCRIPT),
            str(tmp_path / "two"),
            str(manifest),
            str(BATCH),
            *models,
        ]
    )
    assert sorted((report["rank"], report["world"]) for report in ranks) == [("0", "2"), ("1", "2")]
    for index, reference in enumerate(single["results"]):
        per_rank = [report["results"][index] for report in ranks]
        assert sorted(result["rows"] for result in per_rank) == [ROWS // 2, ROWS // 2]  # rows i % 2 == rank
        paths = {result["path"] for result in per_rank} - {None}
        assert len(paths) == 1, per_rank  # exactly the last rank to finish may assemble; one always does
        sharded, whole = FeatureCache(Path(paths.pop())), FeatureCache(Path(reference["path"]))
        assert sharded.ids == whole.ids and sharded.layers == whole.layers and sharded.key == whole.key
        assert sharded.layer_sha256 == whole.layer_sha256
        for pool in whole.pools:
            np.testing.assert_array_equal(sharded.read(pool=pool), whole.read(pool=pool))
        assert not list((tmp_path / "two").rglob("*.partial")), "the assembling rank removes the shards' batches"
