"""Numbers as people read them: one convention for every table and log line.

Scores are fractions (never percent) with 3 decimals, or up to 4 where a small value would otherwise read
as 0 (a chance level of 0.0098); p-values at the floor of a permutation test read "<0.005"; intervals
"0.131–0.218"; parameter counts "304M", "1.10B"; estimated durations "45 s", "12 min", "2.5 h". Full precision
stays in the results JSON. Byte counts are `probe.errors.human_bytes` (error messages need them too).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

MISSING = "–"


def fmt_num(x: Optional[float], *, digits: int = 3) -> str:
    """`x` with `digits` decimals, or up to 4 when that keeps 2 significant digits of a small value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    value = float(x)
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        decimals = min(4, max(digits, 1 - math.floor(math.log10(abs(value)))))
    else:
        decimals = digits
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.000"


def _round_up_one_digit(x: float) -> float:
    """The smallest number with one significant digit that is >= x (0.004975 -> 0.005)."""
    scale = 10.0 ** math.floor(math.log10(x))
    return math.ceil(x / scale - 1e-9) * scale


def fmt_p(p: Optional[float], *, permutations: Optional[int] = None) -> str:
    """A permutation p-value: "<0.005" when it is at its floor 1 / (P + 1), else 2 significant digits."""
    if p is None:
        return MISSING
    if permutations and p <= 1.0 / (permutations + 1) + 1e-12:
        return f"<{_round_up_one_digit(1.0 / (permutations + 1)):g}"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def fmt_interval(interval: Optional[Sequence[float]], *, digits: int = 3) -> str:
    """ "low–high" (an en dash between the two ends)."""
    if interval is None:
        return MISSING
    low, high = interval
    return f"{fmt_num(low, digits=digits)}–{fmt_num(high, digits=digits)}"


def fmt_params(millions: Optional[float], *, billions: bool = True) -> str:
    """A parameter count given in millions: 2.8M, 304M, 1.10B; with `billions=False` 1,136M (the scaling table's
    column); "–" when unknown or zero (the pixel controls)."""
    if not millions:
        return MISSING
    if billions and millions >= 1000:
        return f"{millions / 1000:.2f}B"
    return f"{millions:,.0f}M" if millions >= 10 else f"{millions:.2g}M"


def fmt_duration(seconds: float) -> str:
    """An estimated duration, rounded as an estimate deserves: whole seconds below 90 s, whole minutes below
    90 min, else hours to one decimal (45 s, 12 min, 2.5 h)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def wilson_interval(successes: float, n: int, *, z: float = 1.96) -> Optional[tuple[float, float]]:
    """The Wilson score interval (95% by default) of a proportion successes / n; None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
