"""--layers SPEC parsing over L+1 hidden states."""

import pytest

from probe.errors import InputError
from probe.features.layers import parse_layers


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("all", list(range(5))),
        ("-1", [4]),
        ("0,2,-1", [0, 2, 4]),
        ("::2", [0, 2, 4]),
        ("3:", [3, 4]),
        ("1:-1", [1, 2, 3]),
        ("2,2", [2]),
    ],
)
def test_specs(spec: str, expected: list[int]) -> None:
    assert parse_layers(spec, num_states=5) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("5", "state 5 does not exist"),
        ("-6", "does not exist"),
        ("a", "not a number"),
        ("4:2", "selects nothing"),
        ("::0", "step cannot be 0"),
        ("1,,2", "empty item"),
    ],
)
def test_impossible_specs(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_layers(spec, num_states=5)
