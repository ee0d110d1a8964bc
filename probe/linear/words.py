"""Targets from language: the frequent content words of captions, as multi-label targets.

A caption is lower-cased and cut into runs of letters (any script; digits, punctuation and
apostrophes split words, so "dog's" gives "dog" and "s"). Tokens shorter than MIN_WORD_LENGTH and
English stop words (scikit-learn's ENGLISH_STOP_WORDS, 318 function words such as "the", "of",
"with") are dropped. A word's count is the number of captions it occurs in, not its number of
occurrences, because the target asks "does this caption mention the word". Words present in every
caption are dropped (a constant target). No stemming: "dog" and "dogs" are separate words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Literal, Optional

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from probe.errors import InputError

STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS)
MIN_WORD_LENGTH = 2
DEFAULT_TOP_WORDS = 50
DEFAULT_MIN_COUNT = 5

# Runs of letters: a word character that is neither a digit nor an underscore.
_LETTER_RUN = re.compile(r"[^\W\d_]+")


def caption_words(caption: str) -> list[str]:
    """The content words of one caption, in order, repeats kept (see the module docstring)."""
    return [
        token
        for token in _LETTER_RUN.findall(caption.lower())
        if len(token) >= MIN_WORD_LENGTH and token not in STOP_WORDS
    ]


def checked_captions(captions: Sequence[str]) -> Sequence[str]:
    """`captions` as given, after checking it is a non-empty sequence of strings (InputError naming the first
    caption that is not text)."""
    if len(captions) == 0:
        raise InputError("captions is empty; give one caption per image")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise InputError(f"captions[{i}] is {type(caption).__name__}, not text; give one string per image")
    return captions


def caption_word_targets(
    captions: Sequence[str], *, top: int = DEFAULT_TOP_WORDS, min_count: int = DEFAULT_MIN_COUNT
) -> tuple[list[str], np.ndarray]:
    """Which of the most frequent caption words each caption contains.

    captions: N strings. Keeps words found in at least min_count captions (and not in all of them),
    the `top` most frequent first; equal counts are ordered alphabetically.
    Returns (words [W], Y [N, W] bool with Y[i, w] = captions[i] contains words[w]).
    Raises InputError for an empty list, a non-string caption, bad top / min_count, or no word
    reaching min_count.
    """
    if top < 1 or min_count < 1:
        raise InputError(f"top and min_count must be at least 1, got top={top}, min_count={min_count}")
    word_sets = [set(caption_words(caption)) for caption in checked_captions(captions)]
    return presence_targets(word_sets, min_count=min_count, top=top, order="count", what="caption word")


def presence_targets(
    token_sets: Sequence[AbstractSet[str]],
    *,
    min_count: int,
    top: Optional[int] = None,
    order: Literal["count", "alphabetical"] = "count",
    what: str = "token",
) -> tuple[list[str], np.ndarray]:
    """Which tokens each row holds, for the tokens found in at least `min_count` rows and not in all of them.

    token_sets: the N rows' sets of tokens (caption words, letters). `order`: most frequent first (ties
    alphabetically) or alphabetical; `top` keeps the first that many. Returns (tokens [T], Y [N, T] bool);
    InputError, naming `what` the tokens are, when none passes.
    """
    counts = Counter(token for tokens in token_sets for token in tokens)
    passing = (token for token, count in counts.items() if min_count <= count < len(token_sets))
    ranked = sorted(passing, key=(lambda t: (-counts[t], t)) if order == "count" else None)[:top]
    if not ranked:
        raise InputError(
            f"no {what} occurs in at least min_count={min_count} captions (and not in all "
            f"{len(token_sets)}); lower min_count or give more captions"
        )
    targets = np.array([[token in tokens for token in ranked] for tokens in token_sets], dtype=bool)
    return ranked, targets.reshape(len(token_sets), len(ranked))
