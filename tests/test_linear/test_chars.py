"""Letter targets (`probe.linear.chars`, `labels=chars`): which letters a-z a caption holds, case-folded and
without accents, probed like caption words."""

from __future__ import annotations

import numpy as np
import pytest

from probe.datasets import PairedDataset, PairedRow
from probe.errors import InputError
from probe.linear.chars import caption_char_targets, caption_letters
from probe.runs.linear import LinearSettings, label_targets


@pytest.mark.parametrize(
    ("caption", "letters"),
    [
        ("grinning face", "acefginr"),
        ("T-Rex", "ertx"),
        ("piñata", "aipnt"),  # ñ counts as n
        ("Crème Brûlée", "bcelmru"),  # accents dropped, case folded
        ("Straße", "aerst"),  # ß folds to ss
        ("Japanese “here” button 1 2 3", "abehjnoprstu"),  # digits and punctuation ignored
        ("Ωμέγα 猫 42", ""),  # Greek and CJK letters are not a-z
    ],
)
def test_caption_letters(caption, letters):
    assert caption_letters(caption) == frozenset(letters)


def test_targets_on_known_captions_drop_rare_and_constant_letters():
    captions = ["cab", "bad", "abc", "dab", "Bee"]
    letters, y = caption_char_targets(captions, min_count=2)
    # b is in every caption (constant); e is in one caption only (rare); a, c, d pass.
    assert letters == ["a", "c", "d"]
    expected = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == bool


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="captions is empty"):
        caption_char_targets([])
    with pytest.raises(InputError, match=r"captions\[1\] is int"):
        caption_char_targets(["a", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="min_count=0"):
        caption_char_targets(["a"], min_count=0)
    with pytest.raises(InputError, match="no letter a-z occurs in at least min_count=5"):
        caption_char_targets(["ab", "cd"], min_count=5)


def test_label_targets_chars_are_a_multilabel_target_named_by_letter():
    captions = ["red fox", "blue jay", "red jay", "blue fox"] * 3
    data = PairedDataset(
        name="toy",
        source="toy",
        rows=tuple(PairedRow(id=str(i), image=None, caption=c) for i, c in enumerate(captions)),
    )
    target, names, rows, detail = label_targets(data, "chars", LinearSettings(labels=("chars",), min_word_count=3))
    # e is in every caption: a constant target, left out.
    assert rows is None and names == detail["letters"] == ["a", "b", "d", "f", "j", "l", "o", "r", "u", "x", "y"]
    assert target.shape == (12, 11) and detail["positive_rate"][names.index("x")] == 0.5
    words, *_ = label_targets(data, "words", LinearSettings(labels=("words",), min_word_count=3))
    assert words.shape == (12, 4)  # `words` is unchanged: red, fox, blue, jay
