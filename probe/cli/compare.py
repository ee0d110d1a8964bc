"""`probe compare A B`: two results files or run folders, score by score (see probe.report.tables.compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli.main import app


@app.command(short_help="Compare the scores of two runs.")
def compare(
    a: Path = typer.Argument(..., help="Results file or run folder A."),
    b: Path = typer.Argument(..., help="Results file or run folder B."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the comparison to this CSV file."),
    score: str = typer.Option("best", "--score", help="best (max over layer pairs) | calibrated."),
) -> None:
    """Per shared (vision, text, metric): A's score, B's, and B - A."""
    from rich.console import Console

    from probe.errors import InputError
    from probe.report.compare import FOOTNOTE, compare_tables
    from probe.runs.report import run_compare

    if score not in ("best", "calibrated"):
        raise InputError(f"--score {score!r}: use best or calibrated.")
    frame = run_compare(a, b, csv=csv)
    console = Console()
    for table in compare_tables(frame, score=score):
        console.print(table)
    console.print(FOOTNOTE, style="dim")
    if csv is not None:
        console.print(f"csv: {csv}")
