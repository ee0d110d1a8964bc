"""Text drawn as an image: a caption -> a square RGB picture of it, in a style drawn from a seed and a key.

In: a string, a key (the row id) and a seed. Out: a `size`x`size` RGB `PIL.Image` and its `TextLayout` (the
font chosen and each line's ink box). The style of a row (`draw_style`) comes from a generator seeded by
sha256 of (seed, key) alone, so a row's image never depends on the other rows:

- the face: one of `FONT_FILES`, the DejaVu Sans, Serif and Sans Mono faces (regular, bold, italic/oblique)
  that ship with matplotlib (`matplotlib.get_data_path()/fonts/ttf`), so nothing is downloaded;
- the largest font size (a fraction of the canvas side), where line breaks may fall (a wrap width), the line
  spacing, the alignment (left, centre, right) and where the block sits in the free space;
- the background (uniform in RGB) and a foreground whose WCAG contrast ratio with it is at least
  `MIN_CONTRAST` (4.5, the WCAG AA level for body text), so every render is readable.

Layout (`fit_text`): words are wrapped greedily at the wrap width and the font shrinks a pixel at a time from
the style's largest size until the block fits inside the margin (`MARGIN_FRACTION` of the side on every
edge). A single word wider than the inner box is broken between characters only when even `min_font_px` is
too wide for it. Text that does not fit at the floor size (some 500-600 characters at 224 px) is drawn there as
its longest whole-word prefix that fits and an ellipsis (`TextLayout.shown_words`): no glyph is ever cut off,
and a long caption (a Wikipedia one) shows its beginning. Sizes are measured with Pillow's `ImageDraw.textbbox`
(the glyphs' ink boxes), and the drawn lines are those measured, at integer positions.

Pillow's basic layout is used (FreeType, no raqm), so the same Pillow and FreeType give the same bytes on
every machine; scripts that need shaping (Arabic, Indic) are drawn unshaped, and characters that no DejaVu
face has (CJK, emoji) come out as the font's missing-glyph box (`missing_glyphs` lists them).
Bump `RENDERER_VERSION` whenever a change alters any pixel: rendered datasets carry it in their identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from probe.errors import InputError

RENDERER_VERSION = "text-render-v1"
FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
)
DEFAULT_SIZE = 224
STYLE_SEED = 0
# Fractions of the canvas side: the clear margin on each edge, the style's largest font size, the smallest
# size the layout may shrink to before it breaks words, and the floor below which text is refused.
MARGIN_FRACTION = 0.06
FONT_FRACTION_RANGE = (0.09, 0.22)
MIN_FONT_FRACTION = 0.05
FLOOR_FONT_FRACTION = 0.03
WRAP_FRACTION_RANGE = (0.55, 1.0)  # where lines break, as a fraction of the inner width
LINE_SPACING_RANGE = (1.0, 1.3)  # line advance as a multiple of the font's ascent + descent
MIN_CONTRAST = 4.5
# Ends a caption cut to the words that fit.
ELLIPSIS = "\u2026"
COLOUR_TRIES = 64

Align = Literal["left", "center", "right"]
ALIGNMENTS: tuple[Align, ...] = ("left", "center", "right")


@dataclass(frozen=True)
class TextStyle:
    """How one row is drawn; sizes are fractions of the canvas side, so a style draws the same at any size."""

    font_file: str
    font_fraction: float
    wrap_fraction: float
    line_spacing: float
    align: Align
    x_position: float  # 0 = block at the left margin, 1 = at the right margin
    y_position: float  # 0 = top, 1 = bottom
    foreground: tuple[int, int, int]
    background: tuple[int, int, int]


@dataclass(frozen=True)
class TextLayout:
    """Where the text went: the font file and size used, the lines, each line's ink box on the canvas as
    (left, top, right, bottom) in pixels, right/bottom exclusive as in `ImageDraw.textbbox`, and how many of the
    text's words were drawn."""

    font_file: str
    font_px: int
    lines: tuple[str, ...]
    boxes: tuple[tuple[int, int, int, int], ...]
    size: int
    # Words of the text drawn: all of them, or the prefix drawn before an ellipsis when the text is too long.
    shown_words: int = 0

    @property
    def ink_box(self) -> tuple[int, int, int, int]:
        """The union of the lines' boxes."""
        return (
            min(b[0] for b in self.boxes),
            min(b[1] for b in self.boxes),
            max(b[2] for b in self.boxes),
            max(b[3] for b in self.boxes),
        )


def fonts_dir() -> Path:
    """matplotlib's folder of bundled TrueType fonts."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_path(font_file: str) -> Path:
    """The path of one of `FONT_FILES`; InputError if matplotlib's copy is missing."""
    path = fonts_dir() / font_file
    if not path.is_file():
        raise InputError(f"font {font_file} is missing from matplotlib's fonts ({path.parent}); reinstall matplotlib")
    return path


@lru_cache(maxsize=1)
def font_hashes() -> dict[str, str]:
    """sha256 of each of `FONT_FILES` (file name -> hex digest): part of a rendered dataset's identity."""
    from probe.datasets.paired import sha256_file

    return {name: sha256_file(font_path(name)) for name in FONT_FILES}


@lru_cache(maxsize=256)
def _font(font_file: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(font_file)), px, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=len(FONT_FILES))
def _font_chars(font_file: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(font_path(font_file)), lazy=True) as font:
        return frozenset(font.getBestCmap())


def missing_glyphs(text: str, *, font_file: str) -> str:
    """The distinct visible characters of `text` that `font_file` has no glyph for, in order of appearance."""
    have = _font_chars(font_file)
    seen = dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in have)
    return "".join(seen)


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels): 0 for black, 1 for white."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two colours, from 1 (same luminance) to 21 (black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _generator(key: str, *, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_style(key: str, *, seed: int = STYLE_SEED) -> TextStyle:
    """The style of the row `key` (its id) under `seed`: the same pair always gives the same style.

    The background is uniform in RGB; the foreground is drawn until its contrast ratio with the background is at
    least MIN_CONTRAST (after COLOUR_TRIES misses, black or white, whichever contrasts more: always above 4.5).
    """
    rng = _generator(key, seed=seed)

    def colour() -> tuple[int, int, int]:
        r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
        return (r, g, b)

    def uniform(bounds: tuple[float, float]) -> float:
        return round(float(rng.uniform(*bounds)), 4)

    font_file = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
    font_fraction = uniform(FONT_FRACTION_RANGE)
    wrap_fraction = uniform(WRAP_FRACTION_RANGE)
    line_spacing = uniform(LINE_SPACING_RANGE)
    align = ALIGNMENTS[int(rng.integers(len(ALIGNMENTS)))]
    x_position, y_position = uniform((0.0, 1.0)), uniform((0.0, 1.0))
    background = colour()
    for _ in range(COLOUR_TRIES):
        foreground = colour()
        if contrast_ratio(foreground, background) >= MIN_CONTRAST:
            break
    else:
        black, white = (0, 0, 0), (255, 255, 255)
        foreground = black if contrast_ratio(black, background) >= contrast_ratio(white, background) else white
    return TextStyle(
        font_file=font_file,
        font_fraction=font_fraction,
        wrap_fraction=wrap_fraction,
        line_spacing=line_spacing,
        align=align,
        x_position=x_position,
        y_position=y_position,
        foreground=foreground,
        background=background,
    )


def _width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _wrap(words: list[str], *, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy wrap: each line takes words while it stays within `width` (a lone longer word keeps its line)."""
    lines: list[str] = []
    for word in words:
        if lines and _width(draw, f"{lines[-1]} {word}", font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _break_word(word: str, *, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`word` cut between characters into pieces no wider than `width` (each at least one character)."""
    pieces = [""]
    for char in word:
        if pieces[-1] and _width(draw, pieces[-1] + char, font) > width:
            pieces.append("")
        pieces[-1] += char
    return pieces


def _place(
    lines: list[str], *, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, style: TextStyle
) -> list[tuple[int, int, int, int]]:
    """Each line's ink box relative to the block's top-left ink corner, lines `style.line_spacing` apart and
    aligned by their ink."""
    ascent, descent = font.getmetrics()
    advance = max(1, round((ascent + descent) * style.line_spacing))
    boxes = [draw.textbbox((0, i * advance), line, font=font) for i, line in enumerate(lines)]
    block_width = max(b[2] - b[0] for b in boxes)
    top = min(b[1] for b in boxes)
    placed = []
    for box in boxes:
        free = block_width - (box[2] - box[0])
        shift = {"left": 0, "center": free // 2, "right": free}[style.align]
        placed.append((shift, box[1] - top, shift + box[2] - box[0], box[3] - top))
    return placed


def _fit_words(words: list[str], *, style: TextStyle, size: int, sizes: range) -> Optional[TextLayout]:
    """The layout of `words` at the largest font size of `sizes` (descending) at which the wrapped block fits
    inside the margin, or None."""
    margin = max(2, round(MARGIN_FRACTION * size))
    inner = size - 2 * margin
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    largest = max(1, round(style.font_fraction * size))
    smallest = min(largest, max(6, round(MIN_FONT_FRACTION * size)))
    for px in sizes:
        font = _font(style.font_file, px)
        wrap_width = max(1, round(style.wrap_fraction * inner))
        pieces = words
        if px <= smallest:  # words still too wide at the smallest normal size are broken between characters
            pieces = [p for w in words for p in _break_word(w, draw=draw, font=font, width=inner)]
        lines = _wrap(pieces, draw=draw, font=font, width=wrap_width)
        placed = _place(lines, draw=draw, font=font, style=style)
        block_width = max(b[2] for b in placed)
        block_height = max(b[3] for b in placed)
        if block_width <= inner and block_height <= inner:
            left = margin + round(style.x_position * (inner - block_width))
            top = margin + round(style.y_position * (inner - block_height))
            return TextLayout(
                font_file=style.font_file,
                font_px=px,
                lines=tuple(lines),
                boxes=tuple((left + b[0], top + b[1], left + b[2], top + b[3]) for b in placed),
                size=size,
            )
    return None


def fit_text(text: str, *, style: TextStyle, size: int = DEFAULT_SIZE) -> TextLayout:
    """The layout of `text` in `style` on a `size` px canvas: the largest font size at or below the style's at
    which the wrapped block fits inside the margin (see the module docstring). Text too long to fit even at the
    floor size is drawn at that size as its longest prefix of whole words that fits, followed by an ellipsis
    (`TextLayout.shown_words` says how many words). InputError for empty text."""
    words = text.split()
    if not words:
        raise InputError("text is empty; there is nothing to draw")
    largest = max(1, round(style.font_fraction * size))
    smallest = min(largest, max(6, round(MIN_FONT_FRACTION * size)))
    floor = min(smallest, max(5, round(FLOOR_FONT_FRACTION * size)))
    layout = _fit_words(words, style=style, size=size, sizes=range(largest, floor - 1, -1))
    if layout is not None:
        return replace(layout, shown_words=len(words))
    # Too long: the longest whole-word prefix that fits at the floor size with the ellipsis (bisection: a
    # longer prefix never fits where a shorter one does not).
    low, high, best = 0, len(words) - 1, None
    while low <= high:
        count = (low + high) // 2
        candidate = _fit_words(words[:count] + [ELLIPSIS], style=style, size=size, sizes=range(floor, floor - 1, -1))
        if candidate is None:
            high = count - 1
        else:
            best, low = replace(candidate, shown_words=count), count + 1
    if best is None:  # not even the ellipsis: a canvas too small for any text (render_text refuses those)
        raise InputError(f"nothing fits on a {size} px image at {floor} px type; draw it larger (size=)")
    return best


def render_text(
    text: str, *, key: str, seed: int = STYLE_SEED, size: int = DEFAULT_SIZE
) -> tuple[Image.Image, TextLayout]:
    """`text` drawn on a `size`x`size` RGB canvas in the style of row `key` under `seed`, and its layout.

    Every line's ink box lies inside the margin, so no glyph touches the canvas edge. Same inputs, same
    Pillow and FreeType: the same pixels."""
    if size < 32:
        raise InputError(f"size={size} is too small to draw readable text; use at least 32 (default {DEFAULT_SIZE})")
    style = draw_style(key, seed=seed)
    layout = fit_text(text, style=style, size=size)
    font = _font(style.font_file, layout.font_px)
    canvas = Image.new("RGB", (size, size), style.background)
    draw = ImageDraw.Draw(canvas)
    for line, box in zip(layout.lines, layout.boxes):
        # The origin that puts this line's ink box where the layout measured it.
        left, top, _, _ = draw.textbbox((0, 0), line, font=font)
        draw.text((box[0] - left, box[1] - top), line, font=font, fill=style.foreground)
    return canvas, layout
