"""Feature caches under real faults: concurrent extractors, kill -9 during assembly, a full filesystem (tmpfs),
a file-size limit (RLIMIT_FSIZE), stale temporary files and lock files, and tampered or damaged cache files.

Each test makes the fault happen for real and asserts what a user sees (exit code, one line, no traceback) and
what stays on disk (nothing trusted that is wrong; the next run completes the work). docs/reliability.md lists
the guarantee each test shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import CacheError
from probe.features.cache import FeatureCache
from probe.features.extract import extract_features
from probe.features.format import cache_path
from probe.features.inventory import list_entries, remove_entries, verify_cache
from probe.features.locks import entry_lock_path, hold, shard_lock_path
from probe.features.writer import PartialWriter

ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 12
S, D = 3, 4


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults-ds")
    rng = np.random.default_rng(0)
    for i in range(N_ROWS):
        Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
    rows = [{"id": f"row{i}", "image": f"{i}.png", "caption": f"a cat {i}"} for i in range(N_ROWS)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"


def _env() -> dict[str, str]:
    # Subprocesses use this process's thread count (BLAS splits work by threads) and this checkout.
    threads = str(torch.get_num_threads())
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


# One extraction in a subprocess. argv: model dataset cache_dir mode [arg]. Modes:
#   plain            just extract
#   hold-until FILE  wait (in the first batch write) until FILE exists: keeps the shard lock held
#   die-in-assembly  SIGKILL the whole process group while the HDF5 file is being written
_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, signal, sys, time
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    import probe.features.writer as cw
    from probe.features.extract import extract_features
    mode = sys.argv[4]
    if mode == "hold-until":
        original = cw.PartialWriter.write_batch
        def held(self, *a, **k):
            t0 = time.time()
            while not os.path.exists(sys.argv[5]) and time.time() - t0 < 120:
                time.sleep(0.05)
            original(self, *a, **k)
        cw.PartialWriter.write_batch = held
    elif mode == "die-in-assembly":
        def die(x):  # runs in the forked assembler, after the features are written, before 'complete'
            os.killpg(0, signal.SIGKILL)
        cw.layer_checksum = die
    res = extract_features(model=sys.argv[1], dataset=sys.argv[2], cache_dir=sys.argv[3], batch_size=3, num_workers=0)
    print(json.dumps({"reused": res.reused, "rows": res.rows_extracted, "path": str(res.path)}))
    """
)


def _spawn(model: Path, data: Path, cache: Path, mode: str, *extra: str, log: Path | None = None) -> subprocess.Popen:
    err = open(log, "w") if log else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(model), str(data), str(cache), mode, *extra],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def _wait_for(predicate, seconds: float = 120.0) -> None:
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > seconds:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _key(name: str = "m") -> dict:
    return {
        "feature_version": 1,
        "model": {"name": name, "revision": "main"},
        "modality": "vision",
        "pools": ["cls"],
        "layers": [0, 1, 2],
        "prompt": None,
        "dtype": "float32",
        "dataset": {"name": "d", "fingerprint": "f", "rows": N_ROWS},
    }


def _make_cache(root: Path, *, name: str = "m", x: np.ndarray | None = None) -> Path:
    """A complete cache of [N_ROWS, S, D] features written by the real writer; returns its path."""
    x = np.random.default_rng(0).normal(size=(N_ROWS, S, D)).astype(np.float32) if x is None else x
    w = PartialWriter(cache_path(root, _key(name)), key=_key(name), num_rows=N_ROWS)
    w.begin()
    w.write_batch(list(range(N_ROWS)), {"cls": x}, layers=[0, 1, 2])
    path = w.assemble(
        ids=[f"id{i}" for i in range(N_ROWS)],
        image_sha256=["a" * 64] * N_ROWS,
        caption_sha256=["b" * 64] * N_ROWS,
        layers=[0, 1, 2],
        pools=["cls"],
        provenance={},
    )
    assert path is not None
    return path


# ---------------------------------------------------------------- concurrency


def test_three_concurrent_extractions_wait_for_the_first_and_share_its_cache(tiny_model_dir, images, tmp_path) -> None:
    model = tiny_model_dir("dinov2")
    ref = (
        extract_features(model=str(model), dataset=images, cache_dir=tmp_path / "ref", batch_size=3, num_workers=0)
        .open()
        .read()
    )
    cache, release = tmp_path / "cache", tmp_path / "release"
    first = _spawn(model, images, cache, "hold-until", str(release), log=tmp_path / "first.log")
    # The first holds its shard lock (and says so in the lock file) before the others start.
    _wait_for(lambda: any(f"pid {first.pid} " in p.read_text() for p in cache.rglob("*.r0of1.lock")))
    others = [_spawn(model, images, cache, "plain", log=tmp_path / f"other{i}.log") for i in range(2)]
    _wait_for(lambda: all("waiting for" in (tmp_path / f"other{i}.log").read_text() for i in range(2)))
    release.touch()
    results = []
    for proc, log in [(first, "first"), *((p, f"other{i}") for i, p in enumerate(others))]:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (tmp_path / f"{log}.log").read_text()
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0] == {"reused": False, "rows": N_ROWS, "path": results[0]["path"]}
    assert all(r["reused"] and r["rows"] == 0 and r["path"] == results[0]["path"] for r in results[1:])
    for i in range(2):
        assert f"waiting for pid {first.pid} " in (tmp_path / f"other{i}.log").read_text()
        assert "Traceback" not in (tmp_path / f"other{i}.log").read_text()
    np.testing.assert_array_equal(FeatureCache(Path(results[0]["path"])).read(), ref)
    assert [p.name for p in cache.rglob("*") if p.name.endswith((".tmp", ".partial"))] == []


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path) -> None:
    """flock dies with its process: lock files that stay behind (with a dead or reused pid in them) and an old
    `assemble.lock` PID file are not locks."""
    final = cache_path(tmp_path, _key())
    final.parent.mkdir(parents=True)
    entry_lock_path(final).write_text("pid 1 on elsewhere since 2020-01-01T00:00:00Z")
    shard_lock_path(final, rank=0, world=1).write_text("pid 1 on elsewhere since 2020-01-01T00:00:00Z")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from probe.features.locks import hold; from pathlib import Path\n"
            "with hold(Path(sys.argv[1]), what='x'): os.kill(os.getpid(), 9)",
            str(entry_lock_path(final)),
        ],
        env=_env(),
    )
    assert proc.returncode == -signal.SIGKILL  # died holding the entry lock
    w = PartialWriter(final, key=_key(), num_rows=N_ROWS)
    w.begin()
    (w.dir / "assemble.lock").write_text("1")  # the old PID lock file format
    t0 = time.time()
    assert _make_cache(tmp_path) == final and time.time() - t0 < 10


def test_cache_rm_keeps_an_entry_whose_lock_is_held(tmp_path) -> None:
    path = _make_cache(tmp_path)
    with hold(shard_lock_path(path, rank=0, world=1), what="test"):
        (removal,) = remove_entries(list_entries(tmp_path))
        assert not removal.removed and f"pid {os.getpid()} " in removal.reason and path.is_file()
    (removal,) = remove_entries(list_entries(tmp_path))
    assert removal.removed and not path.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # lock files went with the entry


# ---------------------------------------------------------------- kill -9 and stale files


def test_kill_during_assembly_leaves_nothing_trusted_and_the_rerun_completes(
    tiny_model_dir, images, tmp_path, cli
) -> None:
    model = tiny_model_dir("dinov2")
    ref = (
        extract_features(model=str(model), dataset=images, cache_dir=tmp_path / "ref", batch_size=3, num_workers=0)
        .open()
        .read()
    )
    cache = tmp_path / "cache"
    proc = _spawn(model, images, cache, "die-in-assembly")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not list(cache.rglob("*.h5")), "a killed assembly must not leave a file at a final path"
    (tmp,) = [p for p in cache.rglob("*.tmp")]
    entries = {e.state: e for e in list_entries(cache)}
    assert set(entries) == {"partial", "tmp"} and entries["tmp"].path == tmp and "interrupted" in entries["tmp"].note
    ls = cli(["cache", "ls", "--cache-dir", str(cache)], subprocess=True)
    assert ls.code == 0 and "stale .tmp" in ls.out and tmp.name in ls.out

    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    rm = cli(["cache", "rm", "*", "--yes", "--cache-dir", str(copy)], subprocess=True)
    assert rm.code == 0 and "removed 2 entries" in rm.out, rm.out + rm.err
    assert [p for p in copy.rglob("*") if p.is_file()] == []

    res = extract_features(model=str(model), dataset=images, cache_dir=cache, batch_size=3, num_workers=0)
    assert res.rows_extracted == 0 and not tmp.exists()  # the batches were kept; the stale .tmp was removed
    np.testing.assert_array_equal(res.open().read(), ref)
    assert [e.state for e in list_entries(cache)] == ["complete"]


def test_next_run_removes_stale_tmp_files_of_its_entry(tmp_path) -> None:
    final = cache_path(tmp_path, _key())
    w = PartialWriter(final, key=_key(), num_rows=N_ROWS)
    w.begin()
    stale = [
        final.with_name(f".{final.name}.0123abcd.tmp"),
        w.dir / ".batch-r0-00000000-dead.npz.tmp",
        w.dir / ".key.json.77.tmp",
    ]
    other_rank = w.dir / ".batch-r1-00000001-busy.npz.tmp"  # another shard may be writing it right now
    for p in [*stale, other_rank]:
        p.write_bytes(b"half")
    assert {e.path for e in list_entries(tmp_path) if e.state == "tmp"} == {*stale, other_rank}
    PartialWriter(final, key=_key(), num_rows=N_ROWS).begin()
    assert not any(p.exists() for p in stale) and other_rank.exists()


# ---------------------------------------------------------------- full filesystem, file size limit


@pytest.fixture
def tmpfs(tmp_path):
    """A real small filesystem: tmpfs mounted at tmp_path/fs (needs root; skipped where mount is refused)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()

    def mount(size: str, *, remount: bool = False) -> Path:
        opts = f"remount,size={size}" if remount else f"size={size}"
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the RLIMIT_FSIZE test covers the fault")
        return mnt

    yield mount
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_full_disk_while_writing_batches_is_one_line_and_the_rerun_completes(
    tiny_model_dir, images, tmp_path, tmpfs, cli
) -> None:
    model = tiny_model_dir("dinov2")
    ref = (
        extract_features(model=str(model), dataset=images, cache_dir=tmp_path / "ref", batch_size=3, num_workers=0)
        .open()
        .read()
    )
    cache = tmpfs("24k")  # room for two lock files, key.json and a few batch files (tmpfs counts whole 4 KB pages)
    args = [
        "extract",
        "--model",
        str(model),
        "--dataset",
        str(images),
        "--cache-dir",
        str(cache),
        "--batch-size",
        "3",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    full = cli(args, subprocess=True)
    lines = full.err.strip().splitlines()
    assert full.code == 2 and len(lines) == 1, full.err
    assert (
        "writing batch file" in lines[0]
        and "No space left on device" in lines[0]
        and "free on the filesystem" in lines[0]
    )
    assert "needed" in lines[0] and "Traceback" not in full.err
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("*.h5"))
    kept = len(list(cache.rglob("batch-*.npz")))
    assert kept >= 1
    tmpfs("4m", remount=True)
    res = extract_features(model=str(model), dataset=images, cache_dir=cache, batch_size=3, num_workers=0)
    assert res.rows_extracted == N_ROWS - 3 * kept
    np.testing.assert_array_equal(res.open().read(), ref)


def test_full_disk_before_assembly_is_one_line_and_keeps_the_batches(tmp_path, tmpfs) -> None:
    root = tmpfs("1m")
    n, s, d = 64, 4, 512  # 512 KB of features: the batches fit, a second copy (the HDF5 file) does not
    x = np.random.default_rng(0).normal(size=(n, s, d)).astype(np.float32)
    key = {**_key(), "dataset": {"name": "d", "fingerprint": "f", "rows": n}}
    w = PartialWriter(cache_path(root, key), key=key, num_rows=n)
    w.begin()
    w.write_batch(list(range(n)), {"cls": x}, layers=[0, 1, 2, 3])
    fields = dict(
        ids=[f"id{i}" for i in range(n)],
        image_sha256=["a" * 64] * n,
        caption_sha256=["b" * 64] * n,
        layers=[0, 1, 2, 3],
        pools=["cls"],
        provenance={},
    )
    with pytest.raises(
        CacheError, match=r"not enough space to assemble .*needed.*free.*batch files .* are kept"
    ) as info:
        w.assemble(**fields)
    assert "\n" not in str(info.value)
    assert not list(root.rglob("*.tmp")) and not w.final_path.exists() and w.written_mask().all()
    tmpfs("8m", remount=True)
    path = w.assemble(**fields)
    np.testing.assert_array_equal(FeatureCache(path).read(), x)


def test_full_disk_during_an_import_is_one_line_and_leaves_nothing(images, tmp_path, tmpfs) -> None:
    from probe.datasets import load_dataset
    from probe.features.imports import import_features

    data = load_dataset(images, cache_dir=tmp_path / "ds")
    x = np.random.default_rng(0).normal(size=(N_ROWS, 8, 4096)).astype(np.float32)  # 1.5 MB
    np.save(tmp_path / "feats.npy", x)
    cache = tmpfs("1m")
    with pytest.raises(
        CacheError, match=r"not enough space to write .*needed.*free.*re-run 'probe cache import': nothing was kept"
    ) as info:
        import_features(tmp_path / "feats.npy", model="mine", dataset=data, modality="vision", cache_dir=cache)
    assert "\n" not in str(info.value)
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("*.h5")) and not list(cache.rglob("*.partial"))
    tmpfs("8m", remount=True)
    path = import_features(tmp_path / "feats.npy", model="mine", dataset=data, modality="vision", cache_dir=cache)
    np.testing.assert_array_equal(FeatureCache(path).read(), x)


def test_file_size_limit_during_assembly_is_one_line_not_a_crash(tiny_model_dir, images, tmp_path, cli) -> None:
    """RLIMIT_FSIZE gives a real EFBIG inside HDF5 while the free-space check passes: the HDF5 write fails in
    the forked assembler (where the library may crash), and the user sees one line. Works without root."""
    import resource

    model = tiny_model_dir("dinov2")
    ref = extract_features(model=str(model), dataset=images, cache_dir=tmp_path / "ref", batch_size=3, num_workers=0)
    h5_size = ref.path.stat().st_size
    cache = tmp_path / "cache"
    limit = 8 * 1024  # above every batch file and key.json, below the assembled file
    assert h5_size > limit

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [
        "extract",
        "--model",
        str(model),
        "--dataset",
        str(images),
        "--cache-dir",
        str(cache),
        "--batch-size",
        "3",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    proc = cli(args, preexec_fn=limited, subprocess=True)
    lines = proc.err.strip().splitlines()
    assert proc.code == 2 and len(lines) == 1 and "Traceback" not in proc.err, proc.err
    assert "assembling" in lines[0] and ("File too large" in lines[0] or "crashed in HDF5" in lines[0]), lines[0]
    assert not list(cache.rglob("*.h5")) and not list(cache.rglob("*.tmp"))
    res = extract_features(model=str(model), dataset=images, cache_dir=cache, batch_size=3, num_workers=0)
    assert res.rows_extracted == 0
    np.testing.assert_array_equal(res.open().read(), ref.open().read())


def test_unwritable_cache_folder_is_one_line(tiny_model_dir, images, tmp_path, cli) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits: make the folder unwritable with a read-only bind mount instead
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only folder as root here")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
    try:
        proc = cli(
            [
                "extract",
                "--model",
                str(tiny_model_dir("vit")),
                "--dataset",
                str(images),
                "--cache-dir",
                str(ro),
                "--num-workers",
                "0",
                "--no-progress",
            ],
            subprocess=True,
        )
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    lines = proc.err.strip().splitlines()
    assert proc.code == 2 and len(lines) == 1 and "Traceback" not in proc.err, proc.err
    assert "Read-only file system" in lines[0] or "Permission denied" in lines[0]
    assert str(ro) in lines[0]


# ---------------------------------------------------------------- integrity at use


def test_values_changed_behind_the_checksums_are_refused_when_read(tmp_path) -> None:
    path = _make_cache(tmp_path)
    with h5py.File(path, "r+") as f:
        f["features/cls"][1, 4, 2] += 1e-3
    cache = FeatureCache(path)  # opening is cheap and does not read layers
    np.testing.assert_array_equal(cache.layer(0).shape, (N_ROWS, D))
    with pytest.raises(
        CacheError, match=rf"{path.name}: features/cls layer 1 does not match its stored checksum.*overwrite=always"
    ):
        cache.layer(1)
    with pytest.raises(CacheError, match="layer 1 does not match"):
        cache.read()
    assert any("layer 1 does not match" in p for p in verify_cache(path))


def test_nan_rows_are_refused_naming_file_pool_layer_and_rows(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(N_ROWS, S, D)).astype(np.float32)
    x[[3, 7], 2, 1] = np.nan  # as a model in float16 can produce: stored with matching checksums
    path = _make_cache(tmp_path, x=x)
    with pytest.raises(
        CacheError,
        match=r"features/cls layer 2 has NaN/Inf values in rows 3 \('id3'\), 7 \('id7'\); "
        r"they were stored so at extraction",
    ):
        FeatureCache(path).layer(2)
    clean = _make_cache(tmp_path / "b")
    with h5py.File(clean, "r+") as f:
        f["features/cls"][0, 5, 0] = np.inf
    with pytest.raises(CacheError, match=r"layer 0 has NaN/Inf values in rows 5 \('id5'\); the file was changed"):
        FeatureCache(clean).layer(0)
    assert any("NaN/Inf" in p for p in verify_cache(clean))


def test_a_cache_copied_over_another_models_path_is_refused(tmp_path) -> None:
    a, b = _make_cache(tmp_path, name="a"), _make_cache(tmp_path, name="b")
    shutil.copyfile(a, b)
    with pytest.raises(
        CacheError, match=r"holds the cache of another key \('a'.*copied or moved over this path.*overwrite=always"
    ):
        FeatureCache(b)
    assert any("another key" in p for p in verify_cache(b))
    with pytest.raises(CacheError, match=r"is a cache of 'a', not of 'b'"):
        FeatureCache(a, model="b")
    FeatureCache(a, model="a")


def test_each_layer_is_verified_once_per_cache_object(tmp_path, monkeypatch) -> None:
    import probe.features.cache as cache_module

    path = _make_cache(tmp_path)
    calls = []
    real = cache_module.layer_checksum
    monkeypatch.setattr(cache_module, "layer_checksum", lambda x: calls.append(1) or real(x))
    c = FeatureCache(path)
    for _ in range(3):
        c.layer(1)
    c.read()
    assert len(calls) == S  # layer 1 once, then layers 0 and 2 once each in read()


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
        return
    with h5py.File(path, "r+") as f:
        if how == "key-not-json":
            f.attrs["key"] = "{not json"
        elif how == "features-wrong-rank":
            del f["features/cls"]
            f["features"].create_dataset("cls", data=np.zeros((S, N_ROWS), np.float32))
        elif how == "checksums-missing":
            del f.attrs["layer_sha256"]


@pytest.mark.parametrize("how", ["truncated", "key-not-json", "features-wrong-rank", "checksums-missing"])
def test_cache_commands_survive_a_damaged_file(tmp_path, how, cli) -> None:
    good, bad = _make_cache(tmp_path, name="good"), _make_cache(tmp_path, name="bad")
    _damage(bad, how)
    with pytest.raises(CacheError, match=rf"{bad.name}.*overwrite=always"):
        FeatureCache(bad)
    ls = cli(["cache", "ls", "--cache-dir", str(tmp_path)], subprocess=True)
    assert ls.code == 0 and "Traceback" not in ls.err, ls.err
    assert "damaged" in ls.out and "complete" in ls.out and bad.name in ls.out
    verify = cli(["cache", "verify", "--cache-dir", str(tmp_path)], subprocess=True)
    assert verify.code == 1 and "Traceback" not in verify.err, verify.err
    assert f"ok {good}" in verify.out and f"bad {bad}" in verify.out
    rm = cli(["cache", "rm", "bad", "--yes", "--cache-dir", str(tmp_path)], subprocess=True)
    assert rm.code == 0 and not bad.exists() and good.exists(), rm.out + rm.err


def test_a_damaged_cache_is_refused_by_extract_and_replaced_with_overwrite_always(
    tiny_model_dir, images, tmp_path, cli
) -> None:
    model = str(tiny_model_dir("vit"))
    first = extract_features(model=model, dataset=images, cache_dir=tmp_path, num_workers=0)
    ref = first.open().read()
    _damage(first.path, "key-not-json")
    proc = cli(
        [
            "extract",
            "--model",
            model,
            "--dataset",
            str(images),
            "--cache-dir",
            str(tmp_path),
            "--num-workers",
            "0",
            "--no-progress",
        ],
        subprocess=True,
    )
    assert proc.code == 2 and len(proc.err.strip().splitlines()) == 1, proc.err
    assert str(first.path) in proc.err.replace("\n", "") and "--overwrite always" in proc.err
    again = extract_features(model=model, dataset=images, cache_dir=tmp_path, num_workers=0, overwrite="always")
    np.testing.assert_array_equal(again.open().read(), ref)


def test_align_refuses_a_cache_with_a_nan_row_before_scoring(tiny_model_dir, images, tmp_path, cli) -> None:
    """The issue's case: a NaN row in one layer used to make align call the layer 'constant' and report a max
    from damaged data. Now align stops with one line naming the file, layer and row."""
    vision, text = str(tiny_model_dir("vit")), str(tiny_model_dir("bert"))
    cache = tmp_path / "cache"
    damaged = extract_features(model=vision, dataset=images, cache_dir=cache, num_workers=0).path
    with h5py.File(damaged, "r+") as f:
        f["features/cls"][2, 6, :] = np.nan
    out = tmp_path / "out"
    proc = cli(
        [
            "align",
            "--vision",
            vision,
            "--text",
            text,
            "--dataset",
            str(images),
            "--cache-dir",
            str(cache),
            "--output",
            str(out),
            "--permutations",
            "5",
            "--subsamples",
            "2",
            "--topk",
            "3",
            "--no-progress",
        ],
        subprocess=True,
    )
    errors = [line for line in proc.err.splitlines() if line.startswith("error:")]  # align also logs INFO lines
    assert proc.code == 2 and len(errors) == 1 and "Traceback" not in proc.err, proc.err
    assert (
        damaged.name in errors[0]
        and "layer 2 has NaN/Inf values in rows 6 ('row6')" in errors[0]
        and "--overwrite always" in errors[0]
    )
    assert not list(out.rglob("*.json"))
