"""Parse a layer spec (the `layers=` argument) into hidden-state indices.

Hidden state 0 is the embedding output, state L the last block's output (transformers' `hidden_states`).
SPEC is `all`, or a comma-separated list of integers and Python slices over the L+1 states:
`-1` (the last), `0,12,24`, `::4`, `8:`, `1:-1`. Negative numbers count from the end.
"""

from __future__ import annotations

from probe.errors import InputError


def _parse_int(token: str, spec: str, param: str = "layers") -> int:
    try:
        return int(token)
    except ValueError:
        raise InputError(
            f"{param}={spec!r}: {token!r} is not a number; use 'all', integers like '0,12,-1' or slices like '::4'"
        ) from None


def parse_layers(spec: str, *, num_states: int, param: str = "layers") -> list[int]:
    """Sorted, unique state indices in [0, num_states) selected by `spec`. InputError naming `param` (the
    argument the spec came from) when impossible."""
    text = (spec or "all").strip().lower()
    if text == "all":
        return list(range(num_states))
    chosen: set[int] = set()
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise InputError(f"{param}={spec!r}: empty item; separate indices with single commas")
        if ":" in token:
            parts = token.split(":")
            if len(parts) > 3:
                raise InputError(f"{param}={spec!r}: {token!r} is not a slice (start:stop:step)")
            start, stop, step = (_parse_int(p, spec, param) if p else None for p in parts + [""] * (3 - len(parts)))
            if step == 0:
                raise InputError(f"{param}={spec!r}: a slice step cannot be 0")
            picked = range(num_states)[slice(start, stop, step)]
            if len(picked) == 0:
                raise InputError(f"{param}={spec!r}: slice {token!r} selects nothing from states 0..{num_states - 1}")
            chosen.update(picked)
        else:
            idx = _parse_int(token, spec, param)
            if not -num_states <= idx < num_states:
                raise InputError(
                    f"{param}={spec!r}: state {idx} does not exist; this model has {num_states} hidden states "
                    f"(0 = embeddings .. {num_states - 1} = last block)"
                )
            chosen.add(idx % num_states)
    return sorted(chosen)
