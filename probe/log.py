"""The project's one named logger, and the capture of third-party Python warnings during a command.

Library code logs through `logger`, never `print`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
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


LOGGED_WARNING = "logged warning"  # the category of a WARNING a library logged rather than raised


def summarise_warnings(
    records: Iterable[warnings.WarningMessage], log_records: Iterable[logging.LogRecord] = ()
) -> list[CapturedWarning]:
    """Distinct warnings (same category, place and text) with their counts, most frequent first.

    `records` are raised Python warnings; `log_records` are WARNING records a library logged (category
    `LOGGED_WARNING`, module = the logger's name).
    """
    counts: Counter[tuple[str, str, int, str]] = Counter(
        (r.category.__name__, _module_of(r.filename), r.lineno, str(r.message)) for r in records
    )
    counts.update((LOGGED_WARNING, r.name, r.lineno, r.getMessage()) for r in log_records)
    return [
        CapturedWarning(category=c, module=m, lineno=n, message=t, count=k)
        for (c, m, n, t), k in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def warnings_summary_line(captured: list[CapturedWarning]) -> str:
    """One line: the total and, per package and category, how many; e.g.
    "183 library warnings: 182 UserWarning from sklearn, 1 FutureWarning from transformers (the DEBUG log shows
    them)"."""
    per_source: Counter[tuple[str, str]] = Counter()
    for w in captured:
        per_source[(w.category, w.package)] += w.count
    total = sum(per_source.values())
    parts = ", ".join(f"{n} {category} from {package}" for (category, package), n in per_source.most_common())
    return f"{total} library warning{'s' if total != 1 else ''}: {parts} (the DEBUG log shows them)"


class _LoggedWarnings(logging.Handler):
    """Keeps the WARNING records of one library's logger and keeps that logger's other handlers from printing them.

    It is added to the library's top logger before the library configures it, or after: a handler the
    library adds later is reached after this one, which gives it the dropping filter first. The handlers of
    the loggers above it (the root's, e.g. `logging.basicConfig`'s) get the same filter, because a library
    may propagate its records: transformers does whenever the environment has `CI=1`.
    """

    def __init__(self, name: str) -> None:
        super().__init__(level=logging.WARNING)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []
        self._muted: list[logging.Handler] = []

    def _drop(self, record: logging.LogRecord) -> bool:
        from_library = record.name == self.logger.name or record.name.startswith(self.logger.name + ".")
        return not (from_library and record.levelno == logging.WARNING)

    def _mute_others(self) -> None:
        logger: logging.Logger | None = self.logger
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self and handler not in self._muted:
                    handler.addFilter(self._drop)
                    self._muted.append(handler)
            logger = logger.parent

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.records.append(record)
        self._mute_others()

    def __enter__(self) -> _LoggedWarnings:
        self._mute_others()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        for handler in self._muted:
            handler.removeFilter(self._drop)


@dataclass
class WarningsCapture:
    """What `captured_library_warnings` collected: raised Python warnings and libraries' logged warnings."""

    raised: list[warnings.WarningMessage]
    logged: list[logging.LogRecord]

    def summary(self) -> list[CapturedWarning]:
        return summarise_warnings(self.raised, self.logged)


# Libraries that log their warnings (transformers' "requires torchvision") rather than raise Python warnings.
LOGGING_LIBRARIES = ("transformers",)


@contextmanager
def captured_library_warnings(*, loggers: tuple[str, ...] = LOGGING_LIBRARIES) -> Iterator[WarningsCapture]:
    """Collect the warnings raised or logged by libraries in the block instead of printing each one as it comes.

    Python warnings: the active filters still decide which exist (ignored ones stay ignored, `-W error`
    still raises); only their display changes. Logged warnings: WARNING records of the `loggers` (errors
    still print). At exit, `logger` gets one INFO line with the count and where they came from
    (`warnings_summary_line`), and one DEBUG line per distinct warning with its full text.
    """
    with warnings.catch_warnings(record=True) as raised, ExitStack() as stack:
        handlers = [stack.enter_context(_LoggedWarnings(name)) for name in loggers]
        capture = WarningsCapture(raised=raised, logged=[])
        try:
            yield capture
        finally:
            capture.logged.extend(r for h in handlers for r in h.records)
            captured = capture.summary()
            if captured:
                logger.info("%s", warnings_summary_line(captured))
                for w in captured:
                    logger.debug("%d x %s at %s:%d: %s", w.count, w.category, w.module, w.lineno, w.message)
