"""Targets from language, letter by letter: which of the letters a-z each caption contains.

On rendered text (`openmoji-names`, `rendered:<dataset>`) the caption is what the image shows, so this asks
"which letters are written here". A caption is case-folded (`str.casefold`: "A" and "a" are one letter, "ß"
becomes "ss"), decomposed (Unicode NFKD) and stripped of combining marks, so accented Latin letters count as
their base letter ("ñ" -> "n", "é" -> "e"). Everything else is ignored: digits, punctuation, spaces, and
letters that do not reduce to a-z (Greek, Cyrillic, CJK). A letter counts once per caption, whatever its number
of occurrences. Letters in fewer than `min_count` captions, or in every caption (a constant target), are left
out; the rest keep alphabetical order.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence

import numpy as np

from probe.errors import InputError
from probe.linear.words import checked_captions, presence_targets

LETTERS = string.ascii_lowercase
DEFAULT_MIN_COUNT = 5


def caption_letters(caption: str) -> frozenset[str]:
    """The letters a-z that occur in `caption` after case folding and removing accents (module docstring)."""
    folded = unicodedata.normalize("NFKD", caption.casefold())
    return frozenset(c for c in folded if c in LETTERS)


def caption_char_targets(
    captions: Sequence[str], *, min_count: int = DEFAULT_MIN_COUNT
) -> tuple[list[str], np.ndarray]:
    """Which letters each caption contains.

    captions: N strings. Returns (letters [C], Y [N, C] bool with Y[i, c] = captions[i] contains letters[c]),
    the letters a-z found in at least `min_count` captions and not in all of them, alphabetically. Raises
    InputError for an empty list, a non-string caption, min_count < 1, or no letter passing.
    """
    if min_count < 1:
        raise InputError(f"min_count must be at least 1, got min_count={min_count}")
    letter_sets = [caption_letters(caption) for caption in checked_captions(captions)]
    return presence_targets(letter_sets, min_count=min_count, order="alphabetical", what="letter a-z")
