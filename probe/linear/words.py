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
    if len(captions) == 0:
        raise InputError("captions is empty; give one caption per image")
    word_sets = []
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise InputError(f"captions[{i}] is {type(caption).__name__}, not text; give one string per image")
        word_sets.append(set(caption_words(caption)))
    counts = Counter(word for words in word_sets for word in words)
    ranked = sorted(
        (word for word, count in counts.items() if min_count <= count < len(captions)),
        key=lambda word: (-counts[word], word),
    )[:top]
    if not ranked:
        raise InputError(
            f"no caption word occurs in at least min_count={min_count} captions (and not in all "
            f"{len(captions)}); lower min_count or give more captions"
        )
    targets = np.array([[word in words for word in ranked] for words in word_sets], dtype=bool)
    return ranked, targets.reshape(len(captions), len(ranked))
