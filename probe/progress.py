"""Progress reporting: library functions take an optional callback; the CLI passes a rich progress bar.

A callback is `(done: int, total: int, what: str) -> None`: it is told how many of `total` units of the
task named `what` are done. Library code never prints; it calls the callback when one is given.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

ProgressCallback = Callable[[int, int, str], None]


def fmt_rate(per_second: Optional[float]) -> str:
    """A throughput with 3 significant digits and a k/M suffix: 10774.7 -> "10.8k/s"."""
    if per_second is None:
        return ""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.3g}{suffix}/s"
    return f"{per_second:.3g}/s"


def _make_columns():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second over the task's recent history."""

        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            return Text(fmt_rate(speed), style="progress.data.speed")

    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def rich_progress(*, enabled: bool = True) -> Iterator[Optional[ProgressCallback]]:
    """A context yielding a `ProgressCallback` that draws one rich bar per task name on stderr (None if disabled)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(*_make_columns(), console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def callback(done: int, total: int, what: str) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield callback
