"""`probe compare` in the terminal: one table per (vision, text) pair, fitting 80 columns with names whole."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from probe.report.numbers import fmt_interval, fmt_num


def compare_tables(frame: Any, *, score: str = "best") -> list[Table]:
    """`frame` from probe.report.tables.compare -> rich tables: per metric A, B, B - A and the paired interval
    (or "unpaired"). `score`: "best" (max over layer pairs) or "calibrated"."""
    a, b, d = (
        ("best_a", "best_b", "difference")
        if score == "best"
        else ("calibrated_a", "calibrated_b", "calibrated_difference")
    )
    tables = []
    for (vision, text), rows in frame.groupby(["vision", "text"], sort=False):
        table = Table(
            title=f"{vision} vs {text} ({score})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            collapse_padding=True,
            title_style="bold",
        )
        for col in ("metric", "A", "B", "B - A", "N (A, B)", "paired interval"):
            table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
        for r in rows.itertuples():
            diff = getattr(r, d)
            style = "green" if diff > 0 else ("red" if diff < 0 else "")
            interval = fmt_interval((r.diff_low, r.diff_high)) if r.paired == "paired" else "unpaired"
            n = f"{r.n_a}" if r.same_rows else f"{r.n_a}, {r.n_b} (rows differ)"
            table.add_row(
                str(r.metric),
                fmt_num(getattr(r, a)),
                fmt_num(getattr(r, b)),
                f"[{style}]{'+' if diff > 0 else ''}{fmt_num(diff)}[/]" if style else fmt_num(diff),
                n,
                interval,
            )
        tables.append(table)
    return tables


FOOTNOTE = (
    'B - A > 0: B scores higher. "unpaired": the results files hold no per-subsample scores, so no '
    "interval of the difference on the same rows can be computed; compare each side's own interval "
    "(probe report) instead."
)
