"""Every metric at scale: CKNNA on the blocked path equals the dense path (also under the permutation
null's reorderings and the subsamples' row subsets), and "auto" sizes the dense path by free memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from alignment_helpers import one_thread  # noqa: F401  (an autouse fixture)

from probe import devices
from probe.align import engine as align
from probe.align import hsic, knn
from probe.align.engine import choose_path, dense_kernel_budget, pair_matrices, prepare_modalities
from probe.align.specs import metric_specs
from probe.align.stats import score_alignment
from probe.errors import InputError

SCALING = ("mutual_knn", "cycle_knn", "jaccard_knn", "cka", "unbiased_cka", "cknna")


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """vision [n, 3, 24], text [n, 4, 32]: a shared 6-dim latent seen with growing strength per layer."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6)).astype(np.float32)
    vision = rng.standard_normal((n, 3, 24)).astype(np.float32)
    text = rng.standard_normal((n, 4, 32)).astype(np.float32)
    for layer in range(3):
        vision[:, layer, :6] += (layer + 1) * latent
    for layer in range(4):
        text[:, layer, 10:16] += layer * latent
    return vision, text


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Many kNN row blocks and feature chunks, and sorted-key edge lookups (no bitmap)."""
    monkeypatch.setattr(knn, "SIMILARITY_BLOCK_BYTES", 4 * 3000 * 50)
    monkeypatch.setattr(knn, "BITMAP_MAX_ROWS", 64)
    monkeypatch.setattr(hsic, "FEATURE_CHUNK_ROWS", 97)


@pytest.mark.parametrize("n", [300, 2500])
def test_blocked_cknna_equals_dense_with_permutations_and_subsets(tiny_blocks, n):
    vision, text = planted(n, seed=n)
    states = {
        path: prepare_modalities(vision, text, metrics=SCALING, k=10, path=path, spare_neighbours=40, device="cpu")
        for path in ("dense", "blocked")
    }
    assert states["blocked"][0].plan.path == "blocked"
    generator = torch.Generator().manual_seed(n)
    order = torch.randperm(n, generator=generator)
    rows = torch.randperm(n, generator=generator)[: int(0.8 * n)].sort().values
    scored = {
        path: {
            "observed": pair_matrices(first, second),
            "permuted": pair_matrices(first, second.permuted(order)),
            "subset": pair_matrices(first.restricted(rows), second.restricted(rows)),
        }
        for path, (first, second) in states.items()
    }
    for case in ("observed", "permuted", "subset"):
        for name in SCALING:
            dense, blocked = scored["dense"][case][name].numpy(), scored["blocked"][case][name].numpy()
            tolerance = 0 if name.endswith("knn") else 1e-7
            np.testing.assert_allclose(blocked, dense, atol=tolerance, rtol=0, err_msg=f"{case} {name}")
    observed = scored["blocked"]["observed"]["cknna"].numpy()
    # The planted structure is found, and a permutation takes it to chance.
    assert observed[2, 3] == observed.max()
    assert np.abs(scored["blocked"]["permuted"]["cknna"].numpy()).max() < observed.max() / 4


def test_score_alignment_reports_the_same_on_both_paths(tiny_blocks):
    vision, text = planted(400, seed=7)
    reports = {
        path: score_alignment(
            vision, text, metrics=("cknna",), k=10, permutations=5, subsamples=4, path=path, device="cpu", seed=3
        ).metrics["cknna"]
        for path in ("dense", "blocked")
    }
    dense, blocked = reports["dense"], reports["blocked"]
    assert blocked.best_pair == dense.best_pair and blocked.p_value == dense.p_value
    for field in ("best_score", "null_max_mean", "calibrated_score"):
        assert getattr(blocked, field) == pytest.approx(getattr(dense, field), abs=1e-7), field
    np.testing.assert_allclose(blocked.max_interval, dense.max_interval, atol=1e-7)


def test_blocked_edge_values_are_the_kernel_entries(monkeypatch):
    """FeatureStack.raw_values (no N x N) against the Gram, with a pending row order and lists that are
    unsorted and repeat columns; the sampled sparse product and the gathering fallback agree."""
    rng = np.random.default_rng(0)
    layers = [torch.from_numpy(rng.standard_normal((200, 32)).astype(np.float32)) for _ in range(2)]
    stack = hsic.FeatureStack.from_layers(layers).permuted(torch.from_numpy(rng.permutation(200)))
    cols = torch.from_numpy(rng.integers(0, 200, size=(3, 200, 10)))
    monkeypatch.setattr(hsic, "EDGE_GATHER_BYTES", 4 * 32 * 10 * 7)  # 7 rows per gathered chunk
    for index in range(2):
        x = stack.layer(index).double()
        expected = torch.stack([(x @ x.T).gather(1, lists) for lists in cols])
        torch.testing.assert_close(stack.raw_values(index, cols), expected, atol=1e-5, rtol=1e-6)
        gathered = hsic._gathered_products(stack.layer(index), cols)
        torch.testing.assert_close(gathered, expected, atol=1e-5, rtol=1e-6)


def test_dense_budget_follows_free_memory(monkeypatch):
    """'auto' is dense while the kernels fit the device's free memory (times the safety fraction)."""
    free = {"bytes": 0}
    monkeypatch.setattr(align, "free_memory_bytes", lambda device: free["bytes"])
    cpu = torch.device("cpu")
    specs = metric_specs(("cknna", "cka"))
    needed = align.dense_kernel_bytes(num_rows=1000, num_layers=8, specs=specs)  # 32 MB
    free["bytes"] = int(needed / align.DENSE_MEMORY_FRACTION) + 1
    assert dense_kernel_budget(cpu) >= needed
    assert choose_path("auto", num_rows=1000, num_layers=8, specs=specs, device=cpu) == "dense"
    free["bytes"] = int(needed / align.DENSE_MEMORY_FRACTION) - 100
    assert choose_path("auto", num_rows=1000, num_layers=8, specs=specs, device=cpu) == "blocked"
    with pytest.raises(
        InputError, match=r"rbf_cka need N x N kernels: 0.1 GiB .*limit 0.0 GiB, 40% of the free memory of cpu"
    ):
        choose_path("auto", num_rows=1000, num_layers=8, specs=metric_specs(("rbf_cka",)), device=cpu)


def test_free_memory_reads_meminfo_cgroups_and_cuda(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n")
    monkeypatch.setattr(devices, "MEMINFO_PATH", str(meminfo))
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    monkeypatch.setattr(devices, "CGROUP_MEMORY_FILES", ((str(limit), str(usage)),))
    cpu = torch.device("cpu")
    assert devices.free_memory_bytes(cpu) == 8000000 * 1024  # no cgroup files
    limit.write_text("max\n")
    usage.write_text("123\n")
    assert devices.free_memory_bytes(cpu) == 8000000 * 1024  # a cgroup without a limit
    limit.write_text(f"{3 * 2**30}\n")
    usage.write_text(f"{2**30}\n")
    assert devices.free_memory_bytes(cpu) == 2 * 2**30  # a Slurm job's cgroup caps it
    assert align.dense_kernel_budget(cpu) == int(align.DENSE_MEMORY_FRACTION * 2 * 2**30)
    # CUDA: the driver's free memory plus what torch's allocator has cached but not handed out.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**30, 141 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2**30)
    assert devices.free_memory_bytes(torch.device("cuda")) == 12 * 2**30
