"""Reading data: captions drawn as text (`probe.datasets.textimage`), `openmoji-names` and `rendered:<dataset>`
(`probe.datasets.rendered`): deterministic bytes, nothing cut off, readable contrast, the source's rows kept,
and a cache identity that follows the renderer and its fonts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.datasets import load_dataset
from probe.datasets import rendered as rd
from probe.datasets import textimage as ti
from probe.errors import InputError

TEXTS = {
    "short": "ox",
    "long name": "face with open eyes and hand over mouth",
    "long word": "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "two long words": "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch supercalifragilisticexpialidocious",
    "caption": "A man riding a wave on top of a surfboard, next to a crowded beach with many colourful umbrellas "
    "and a lifeguard tower; two dogs watch from the sand while a child builds a castle near the pier.",
    "accents": "piñata, crème brûlée and the woman’s hat",
}


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_manifest(folder: Path, captions: list[str | None], *, labels: bool = True) -> Path:
    """A manifest of tiny grey images with these captions (None: no caption) and a label field `kind`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, caption in enumerate(captions):
        Image.new("RGB", (8, 8), (i * 20 % 256, 90, 90)).save(folder / f"{i}.png")
        row = {"id": f"row-{i}", "image": f"{i}.png", "caption": caption}
        if labels:
            row["kind"] = "even" if i % 2 == 0 else "odd"
        rows.append(row)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder / "manifest.jsonl"


@pytest.mark.parametrize(
    ("name", "size"),
    [(name, size) for name in sorted(TEXTS) for size in (224, 160, 64) if (name, size) != ("caption", 64)],
)
def test_no_glyph_is_cut_off_and_ink_stays_inside_the_measured_boxes(name, size):
    text = TEXTS[name]
    image, layout = ti.render_text(text, key=name, size=size)
    assert image.size == (size, size) and image.mode == "RGB"
    margin = max(2, round(ti.MARGIN_FRACTION * size))
    left, top, right, bottom = layout.ink_box
    assert margin <= left < right <= size - margin and margin <= top < bottom <= size - margin
    # Every pixel outside the lines' boxes is the background: no ink lies where the layout did not measure it,
    # so a glyph inside its box is a glyph inside the canvas.
    pixels = np.asarray(image).astype(int)
    background = np.array(ti.draw_style(name).background)
    inside = np.zeros(pixels.shape[:2], dtype=bool)
    for x0, y0, x1, y1 in layout.boxes:
        inside[y0:y1, x0:x1] = True
    assert not (np.abs(pixels - background).sum(-1) > 0)[~inside].any()
    # Every character is drawn: the lines hold the text, broken only at spaces or (long words) between letters.
    assert "".join(layout.lines).replace(" ", "") == text.replace(" ", "")
    assert all(line == line.strip() for line in layout.lines)


def test_a_long_word_shrinks_the_type_before_it_is_broken():
    _, short = ti.render_text("ox", key="k")
    _, word = ti.render_text(TEXTS["long word"], key="k")
    assert word.font_px < short.font_px
    _, fits = ti.render_text("antidisestablishment", key="k")
    assert len(fits.lines) == 1  # a word that fits at some size is never broken


def test_same_text_key_and_seed_give_identical_png_bytes_and_other_keys_other_styles():
    first, _ = ti.render_text("grinning face", key="1F600")
    again, _ = ti.render_text("grinning face", key="1F600")
    assert png_bytes(first) == png_bytes(again)
    other_seed, _ = ti.render_text("grinning face", key="1F600", seed=1)
    assert png_bytes(other_seed) != png_bytes(first)
    styles = [ti.draw_style(f"row-{i}") for i in range(90)]
    assert {s.font_file for s in styles} == set(ti.FONT_FILES)
    assert {s.align for s in styles} == set(ti.ALIGNMENTS)
    assert len({s.background for s in styles}) == 90


def test_every_style_is_readable():
    for i in range(500):
        style = ti.draw_style(str(i))
        assert ti.contrast_ratio(style.foreground, style.background) >= ti.MIN_CONTRAST
    assert ti.contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)


def test_text_too_long_to_fit_shows_its_first_words_and_an_ellipsis_nothing_cut():
    """A long caption (Wikipedia's can run to a thousand characters) is drawn at the floor size as its longest
    whole-word prefix that fits, then an ellipsis: every drawn glyph whole, inside the margin."""
    words = [f"w{i:03d}" for i in range(600)]
    image, layout = ti.render_text(" ".join(words), key="k")
    shown = layout.shown_words
    assert 50 < shown < 600
    assert "".join(layout.lines).replace(" ", "") == "".join(words[:shown]) + ti.ELLIPSIS
    margin = max(2, round(ti.MARGIN_FRACTION * 224))
    left, top, right, bottom = layout.ink_box
    assert margin <= left < right <= 224 - margin and margin <= top < bottom <= 224 - margin
    # One more word would not have fitted at that size.
    style = ti.draw_style("k")
    floor = layout.font_px
    assert (
        ti._fit_words(words[: shown + 1] + [ti.ELLIPSIS], style=style, size=224, sizes=range(floor, floor - 1, -1))
        is None
    )
    short, whole = ti.render_text("a short name", key="k")
    assert whole.shown_words == 3
    with pytest.raises(InputError, match="text is empty"):
        ti.render_text("   ", key="k")


def test_fonts_come_from_matplotlib_and_cover_latin_but_not_cjk():
    assert all(ti.font_path(name).is_file() for name in ti.FONT_FILES)
    assert set(ti.font_hashes()) == set(ti.FONT_FILES) and all(len(h) == 64 for h in ti.font_hashes().values())
    assert ti.missing_glyphs("piñata 猫 crème", font_file="DejaVuSerif.ttf") == "猫"


def test_rendered_manifest_keeps_rows_and_draws_captions(tmp_path):
    manifest = write_manifest(tmp_path / "src", ["a red square", "a blue circle", "two green triangles"])
    cache = tmp_path / "cache"
    source = load_dataset(manifest, cache_dir=cache)
    data = load_dataset(f"rendered:{manifest}", cache_dir=cache)
    assert data.name == "rendered:src"
    assert data.ids == source.ids and data.captions == source.captions
    assert (
        [r.labels for r in data.rows]
        == [r.labels for r in source.rows]
        == [{"kind": k} for k in ("even", "odd", "even")]
    )
    root = Path(data.source).parent
    assert root.parent == cache / "datasets" / "rendered" and root.name.startswith("src-")
    for row in data.rows:
        drawn, _ = ti.render_text(row.caption, key=row.id)
        assert row.image.read_bytes() == png_bytes(drawn)  # the row's caption, in the row's own style
    # A row's image does not depend on the other rows: the first row alone is drawn the same.
    alone = load_dataset(f"rendered:{write_manifest(tmp_path / 'one', ['a red square'])}", cache_dir=cache)
    assert alone.rows[0].image.read_bytes() == data.rows[0].image.read_bytes()
    assert load_dataset(f"rendered:{manifest}", cache_dir=cache, limit=2).ids == source.ids[:2]


def test_a_finished_build_is_reused_and_two_builds_give_identical_bytes(tmp_path):
    source = load_dataset(write_manifest(tmp_path / "src", ["ox", "owl", "jar"]), cache_dir=tmp_path)
    a = rd.build_rendered(source, root=tmp_path / "a")
    stamp = (a.stat().st_mtime_ns, [p.stat().st_mtime_ns for p in sorted((tmp_path / "a").rglob("*.png"))])
    assert rd.build_rendered(source, root=tmp_path / "a") == a
    assert stamp == (a.stat().st_mtime_ns, [p.stat().st_mtime_ns for p in sorted((tmp_path / "a").rglob("*.png"))])
    b = rd.build_rendered(source, root=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    for name in ("000000.png", "000001.png", "000002.png"):
        assert (a.parent / "images" / name).read_bytes() == (b.parent / "images" / name).read_bytes()


def test_the_cache_key_follows_renderer_version_fonts_and_source_rows(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path / "src", ["ox", "owl", "jar"])
    source = load_dataset(manifest, cache_dir=tmp_path)
    datasets_dir = tmp_path / "cache" / "datasets"
    base = rd.rendered_folder(source, datasets_dir=datasets_dir)
    assert rd.rendered_folder(source, datasets_dir=datasets_dir) == base
    relabelled = load_dataset(write_manifest(tmp_path / "src", ["ox", "owl", "jar"], labels=False), cache_dir=tmp_path)
    assert rd.rendered_folder(relabelled, datasets_dir=datasets_dir) != base
    assert rd.rendered_folder(source.head(2), datasets_dir=datasets_dir) != base
    assert rd.rendered_folder(source, datasets_dir=datasets_dir, size=160) != base

    first = load_dataset(f"rendered:{manifest}", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(rd, "RENDERER_VERSION", "text-render-test")
    new_renderer = load_dataset(f"rendered:{manifest}", cache_dir=tmp_path / "cache")
    assert Path(new_renderer.source).parent != Path(first.source).parent
    assert json.loads((Path(new_renderer.source).parent / "build.json").read_text())["renderer"] == "text-render-test"
    monkeypatch.undo()
    fonts = dict(ti.font_hashes())
    fonts["DejaVuSans.ttf"] = "0" * 64  # as if matplotlib shipped another DejaVu Sans
    monkeypatch.setattr(rd, "font_hashes", lambda: fonts)
    assert rd.rendered_folder(source, datasets_dir=datasets_dir) != base
    # openmoji-names is rebuilt in place, like openmoji: a different identity is not a finished build.
    root = tmp_path / "in-place"
    monkeypatch.undo()
    rd.build_rendered(source, root=root)
    monkeypatch.setattr(rd, "font_hashes", lambda: fonts)
    assert rd.finished_build(root, rd.render_identity(source)) is None
    rebuilt = rd.build_rendered(source, root=root)
    assert json.loads((rebuilt.parent / "build.json").read_text())["fonts"]["DejaVuSans.ttf"] == "0" * 64


def test_rendered_needs_a_caption_in_every_row_and_a_known_dataset(tmp_path):
    manifest = write_manifest(tmp_path / "src", ["ox", None, "jar"])
    with pytest.raises(InputError, match=r"row 2 \(id 'row-1'\) of dataset 'src' has no caption; a rendered dataset"):
        load_dataset(f"rendered:{manifest}", cache_dir=tmp_path)
    assert not (tmp_path / "datasets" / "rendered").exists() or not any((tmp_path / "datasets" / "rendered").iterdir())
    with pytest.raises(InputError, match=r"dataset='rendered:openmoj': dataset='openmoj' is neither .* openmoji"):
        load_dataset("rendered:openmoj", cache_dir=tmp_path)
    with pytest.raises(InputError, match="names no dataset to draw"):
        load_dataset("rendered: ", cache_dir=tmp_path)


@pytest.mark.slow
def test_openmoji_names_has_openmoji_rows_with_the_names_as_text(session_cache_dir):
    openmoji = load_dataset("openmoji", cache_dir=session_cache_dir)
    names = load_dataset("openmoji-names", cache_dir=session_cache_dir)
    assert names.name == "openmoji-names" and len(names) == len(openmoji) == 1398
    assert names.ids == openmoji.ids and names.captions == openmoji.captions
    assert [r.labels for r in names.rows] == [r.labels for r in openmoji.rows]
    assert Path(names.source).parent == session_cache_dir / "datasets" / "openmoji-names"
    info = json.loads((Path(names.source).parent / "build.json").read_text())
    assert info["renderer"] == ti.RENDERER_VERSION and info["fonts"] == ti.font_hashes()
    assert info["source"]["name"] == "openmoji" and info["size"] == 224
    for row in names.rows[:5]:
        drawn, _ = ti.render_text(row.caption, key=row.id)
        assert row.image.read_bytes() == png_bytes(drawn)
    for text in set(names.captions):  # every name is drawn whole, in glyphs every face has
        assert all(not ti.missing_glyphs(text, font_file=f) for f in ti.FONT_FILES), text


def test_rendered_source_names_the_pictures_each_rendered_dataset_draws():
    from probe.datasets.catalog import DATASETS

    assert rd.rendered_source("rendered:wit-1024") == "wit-1024"
    assert rd.rendered_source("rendered:my/manifest.jsonl") == "my/manifest.jsonl"
    assert rd.rendered_source("openmoji-names") == "openmoji"
    for name in ("openmoji", "wit-1024", "coco-captions", "my/manifest.jsonl"):
        assert rd.rendered_source(name) is None
    for name, source in rd.REGISTERED_RENDERINGS.items():  # both ends registered
        assert name in DATASETS and source in DATASETS
    with pytest.raises(InputError, match="names no dataset to draw"):
        rd.rendered_source("rendered:")
