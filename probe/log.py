"""The project's one named logger, and the capture of third-party Python warnings during a command.

Library code logs through `logger`, never `print`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("probe")


# ------------------------------------------------------------------ library warnings


@dataclass(frozen=True)
class CapturedWarning:
    """One distinct Python warning raised during a command: where it came from, and how often."""

    category: str  # e.g. "ConvergenceWarning"
    module: str  # dotted module of the line that warned, e.g. "sklearn.linear_model._logistic"
    lineno: int
    message: str
    count: int

    @property
    def package(self) -> str:
        """The top-level package that warned ("sklearn", "transformers")."""
        return self.module.split(".")[0]


def _module_of(filename: str) -> str:
    """A source file's dotted module name, found from the longest `sys.path` entry that holds it."""
    path = Path(filename).resolve()
    best: tuple[str, ...] = ()
    for entry in sys.path:
        try:
            parts = path.relative_to(Path(entry or ".").resolve()).with_suffix("").parts
        except ValueError:
            continue
        if parts and (not best or len(parts) < len(best)):
            best = parts
    if not best:
        return path.stem
    return ".".join(best[:-1] if best[-1] == "__init__" and len(best) > 1 else best)


def summarise_warnings(records: Iterable[warnings.WarningMessage]) -> list[CapturedWarning]:
    """Distinct warnings (same category, place and text) with their counts, most frequent first."""
    counts: Counter[tuple[str, str, int, str]] = Counter(
        (r.category.__name__, _module_of(r.filename), r.lineno, str(r.message)) for r in records
    )
    return [
        CapturedWarning(category=c, module=m, lineno=n, message=t, count=k)
        for (c, m, n, t), k in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def warnings_summary_line(captured: list[CapturedWarning]) -> str:
    """One line: the total and, per package and category, how many; e.g.
    "183 library warnings: 182 UserWarning from sklearn, 1 FutureWarning from transformers (--debug shows them)"."""
    per_source: Counter[tuple[str, str]] = Counter()
    for w in captured:
        per_source[(w.category, w.package)] += w.count
    total = sum(per_source.values())
    parts = ", ".join(f"{n} {category} from {package}" for (category, package), n in per_source.most_common())
    return f"{total} library warning{'s' if total != 1 else ''}: {parts} (--debug shows them)"


@contextmanager
def captured_library_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Collect the Python warnings raised in the block instead of printing each one as it comes.

    The active filters still decide which warnings exist (ignored ones stay ignored, `-W error` still
    raises); only their display changes. At exit, `logger` gets one INFO line with the count and where
    they came from (`warnings_summary_line`), and one DEBUG line per distinct warning with its full text.
    Yields the list of records, filled as the block runs.
    """
    with warnings.catch_warnings(record=True) as records:
        try:
            yield records
        finally:
            captured = summarise_warnings(records)
            if captured:
                logger.info("%s", warnings_summary_line(captured))
                for w in captured:
                    logger.debug("%d x %s at %s:%d: %s", w.count, w.category, w.module, w.lineno, w.message)
