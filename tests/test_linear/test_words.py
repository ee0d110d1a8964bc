"""Caption-word targets: tokenisation, counting by caption, ranking, and input errors."""

from __future__ import annotations

import numpy as np
import pytest

from probe.errors import InputError
from probe.linear.words import caption_word_targets, caption_words


def test_caption_words_lowercases_splits_on_letters_and_drops_stop_words() -> None:
    assert caption_words("The Dog's ball, on 3 green-grass fields!") == [
        "dog",
        "ball",
        "green",
        "grass",
        "fields",
    ]
    assert caption_words("Café au lait x2") == ["café", "au", "lait"]


def test_targets_count_captions_not_occurrences_and_rank_by_count_then_word() -> None:
    captions = [
        "dog dog dog dog dog",  # one caption: counts once
        "a cat and a dog",
        "cat on a mat",
        "bird",
        "cat bird",
    ]
    words, targets = caption_word_targets(captions, top=10, min_count=2)
    assert words == ["cat", "bird", "dog"]  # cat 3; bird 2 and dog 2 alphabetical
    assert targets.dtype == bool and targets.shape == (5, 3)
    expected = [[0, 0, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
    np.testing.assert_array_equal(targets, np.array(expected, dtype=bool))


def test_targets_keep_top_words_and_drop_words_in_every_caption() -> None:
    captions = ["photo red", "photo red blue", "photo blue green", "photo green red"]
    words, targets = caption_word_targets(captions, top=2, min_count=1)
    assert words == ["red", "blue"]  # "photo" is in every caption; green loses the tie to blue
    assert targets[:, 0].tolist() == [True, True, False, True]


@pytest.mark.parametrize(
    ("captions", "kwargs", "message"),
    [
        ([], {}, "captions is empty"),
        (["a dog", None], {}, r"captions\[1\] is NoneType"),
        (["dog", "cat"], {"min_count": 2}, "no caption word occurs in at least min_count=2"),
        (["dog"], {"top": 0}, "top and min_count must be at least 1"),
    ],
)
def test_caption_word_targets_rejects_bad_input(captions, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        caption_word_targets(captions, **kwargs)
