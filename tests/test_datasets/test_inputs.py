"""Hostile or odd input files: non-UTF-8 manifests, byte-order marks, image paths leaving the manifest's folder,
and decompression bombs (a 12000 x 12000 px PNG of 17 KB), each refused with one line naming file and row."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from probe.datasets import load_manifest
from probe.datasets.images import DEFAULT_MAX_PIXELS, ImageTooLarge, check_image_sizes, open_within_budget
from probe.errors import InputError

BOMB_SIDE = 12000


def bomb_png(path: Path, width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> Path:
    """A valid black PNG of width x height (1-bit grayscale), written without ever holding its pixels: ~17 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    pack = zlib.compressobj(9)
    body = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for i in range(3):
        _png(tmp_path / f"{i}.png", 60 * i)
    return tmp_path


# ---- text encodings ---------------------------------------------------------------------------------------


def test_non_utf8_jsonl_names_file_and_line(images: Path) -> None:
    lines = [
        json.dumps({"id": f"r{i}", "image": f"{i}.png", "caption": "café"}, ensure_ascii=False).encode()
        for i in range(3)
    ]
    lines[2] = lines[2].replace("café".encode(), "café".encode("latin-1"))
    (images / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as info:
        load_manifest(images / "m.jsonl")
    message = str(info.value)
    assert f"{images / 'm.jsonl'}, line 3" in message and "0xe9 is not UTF-8" in message and "\n" not in message


def test_non_utf8_csv_and_tsv_name_file_and_line(images: Path) -> None:
    (images / "m.csv").write_bytes(b"id,image,caption\nr0,0.png,ok\nr1,1.png,na\xefve\n")
    with pytest.raises(InputError, match=r"m\.csv, line 3, column 12: byte 0xef"):
        load_manifest(images / "m.csv")
    (images / "captions.tsv").write_bytes(b"0.png\tfine\n1.png\tfa\xe7ade\n")
    with pytest.raises(InputError, match=r"captions\.tsv, line 2"):
        load_manifest(images)


def test_utf16_manifest_is_named_as_such(images: Path) -> None:
    (images / "m.csv").write_bytes("id,image,caption\nr0,0.png,x\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"line 1: the file is UTF-16 text; save the manifest as UTF-8"):
        load_manifest(images / "m.csv")


@pytest.mark.parametrize(
    "name, body",
    [
        ("m.csv", 'id,image,caption,colour\r\nr0,0.png,"two\r\nlines",red\r\nr1,1.png,café,blue\r\n'),
        (
            "m.jsonl",
            '{"id": "r0", "image": "0.png", "caption": "two\\nlines", "colour": "red"}\n'
            '{"id": "r1", "image": "1.png", "caption": "café", "colour": "blue"}\n',
        ),
    ],
)
def test_a_utf8_bom_is_accepted(images: Path, name: str, body: str) -> None:
    (images / name).write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    ds = load_manifest(images / name)
    assert ds.ids == ["r0", "r1"] and ds.captions[1] == "café" and ds.labels("colour") == ["red", "blue"]
    assert ds.captions[0].replace("\r\n", "\n") == "two\nlines"  # a quoted CSV field may span lines


def test_tsv_with_bom_and_crlf(images: Path) -> None:
    (images / "captions.tsv").write_bytes(b"\xef\xbb\xbf0.png\tzero\r\n1.png\tone\r\n")
    ds = load_manifest(images)
    assert ds.ids == ["0", "1"] and ds.captions == ["zero", "one"]


# ---- image paths ------------------------------------------------------------------------------------------


def test_relative_paths_may_not_leave_the_manifest_folder(tmp_path: Path) -> None:
    outside = _png(tmp_path / "secret.png")
    data = tmp_path / "data"
    _png(data / "sub" / "0.png")
    rows = [{"id": "ok", "image": "sub/../sub/0.png"}, {"id": "bad", "image": "sub/../../secret.png"}]
    (data / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as info:
        load_manifest(data / "m.jsonl")
    assert "row 2 (id 'bad')" in str(info.value) and "leaves the manifest's folder" in str(info.value)
    # an absolute path is the user's explicit choice
    rows[1]["image"] = str(outside)
    (data / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_manifest(data / "m.jsonl").rows[1].image == outside.resolve()
    # so is a symlink the dataset's owner placed inside the folder
    (data / "link.png").symlink_to(outside)
    rows[1]["image"] = "link.png"
    (data / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_manifest(data / "m.jsonl").rows[1].image == outside.resolve()


def test_tsv_paths_are_checked_too(tmp_path: Path) -> None:
    _png(tmp_path / "x.png")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "captions.tsv").write_text("../x.png\tescaped\n")
    with pytest.raises(InputError, match=r"row 1 \(id 'x'\).*'\.\./x\.png' leaves"):
        load_manifest(tmp_path / "data")


# ---- pixel budget -----------------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any image is decoded."""

    def refuse(self, *a, **k):
        raise AssertionError(f"decoded an image of {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.fixture
def bomb_dataset(images: Path) -> Path:
    bomb_png(images / "bomb.png")
    rows = [
        {"id": "r0", "image": "0.png", "caption": "a"},
        {"id": "big", "image": "bomb.png", "caption": "b"},
        {"id": "r2", "image": "2.png", "caption": "c"},
    ]
    (images / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return images / "m.jsonl"


def test_the_bomb_is_small_on_disk_and_large_in_pixels(tmp_path: Path, monkeypatch) -> None:
    path = bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 30_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(path) as im:
        assert im.size == (BOMB_SIDE, BOMB_SIDE) and im.size[0] * im.size[1] > DEFAULT_MAX_PIXELS


def test_an_oversized_image_is_refused_by_row_from_its_header(bomb_dataset: Path, no_decoding) -> None:
    ds = load_manifest(bomb_dataset)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        check_image_sizes(ds, max_pixels=DEFAULT_MAX_PIXELS)
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert "row 2 (id 'big')" in message and "bomb.png" in message and "144,000,000 pixels" in message
    assert "max_pixels=" in message and elapsed < 1.0, (message, elapsed)
    # just over the budget (below PIL's own 2x error): our check, with the size
    with pytest.raises(
        ImageTooLarge, match=r"12000 x 12000 = 144,000,000 pixels, over the budget of max_pixels=100000000"
    ):
        check_image_sizes(ds, max_pixels=100_000_000)
    check_image_sizes(ds, max_pixels=BOMB_SIDE * BOMB_SIDE)  # at the budget: allowed


def test_a_larger_budget_is_not_overruled_by_pil_default(tmp_path: Path, no_decoding, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    path = bomb_png(tmp_path / "wide.png", 12000, 16000)  # 192 MP: beyond PIL's default error at ~179 MP
    with open_within_budget(path, max_pixels=200_000_000) as im:
        assert im.size == (12000, 16000)


def test_the_decoder_refuses_it_too(bomb_dataset: Path, no_decoding) -> None:
    from probe.features.extract import _ImageRows

    rows = _ImageRows(load_manifest(bomb_dataset), max_pixels=DEFAULT_MAX_PIXELS)
    i, image, error = rows[1]
    assert i == 1 and image is None and error.startswith("ImageTooLarge") and "bomb.png" in error


def test_extract_refuses_before_loading_the_model(
    bomb_dataset: Path, tiny_model_dir, tmp_path: Path, monkeypatch
) -> None:
    import probe.models.loading
    from probe.features.extract import extract_features

    monkeypatch.setattr(probe.models.loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    cache = tmp_path / "cache"
    with pytest.raises(ImageTooLarge, match=r"row 2 \(id 'big'\)"):
        extract_features(model=str(tiny_model_dir("vit")), dataset=bomb_dataset, cache_dir=cache, device="cpu")
    assert not (cache / "features").exists()


def test_cli_max_pixels_flag(images: Path, tiny_model_dir, tmp_path: Path, capsys) -> None:
    from probe.cli.main import main

    (images / "m.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "image": f"{i}.png"}) + "\n" for i in range(3)))
    base = [
        "extract",
        "--model",
        str(tiny_model_dir("vit")),
        "--dataset",
        str(images / "m.jsonl"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    with pytest.raises(SystemExit) as info:
        main(base + ["--max-pixels", "1000"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "row 1 (id 'r0')" in err and "32 x 32 = 1,024 pixels" in err
    with pytest.raises(SystemExit) as info:
        main(base + ["--max-pixels", "1024"])
    assert info.value.code in (0, None), capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS (VmHWM) from /proc")
def test_refusal_does_not_allocate_the_image(bomb_dataset: Path) -> None:
    """Peak RSS of a fresh process that checks the bomb stays far below its decoded size (144 MB as 1-bit, 432 MB
    as RGB). VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (pytest's)."""
    script = (
        "import sys, time\n"
        "def peak_kb():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "from probe.datasets import load_manifest\n"
        "from probe.datasets.images import check_image_sizes, ImageTooLarge\n"
        "from PIL import Image, PngImagePlugin\n"
        "ds = load_manifest(sys.argv[1])\n"
        "before = peak_kb()\n"
        "t0 = time.perf_counter()\n"
        "try:\n    check_image_sizes(ds, max_pixels=64_000_000)\nexcept ImageTooLarge:\n    pass\n"
        "else:\n    sys.exit('not refused')\n"
        "print(time.perf_counter() - t0, before, peak_kb())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(bomb_dataset)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    seconds, before_kb, after_kb = (float(v) for v in out.stdout.split())
    assert after_kb - before_kb < 20_000, out.stdout
    assert seconds < 0.5
