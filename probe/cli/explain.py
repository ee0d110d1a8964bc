"""`probe explain`: where two models agree, row by row, from a run's rows file (see probe.report.explain)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli.main import app


@app.command(short_help="Where two models agree, row by row (from a run's rows.h5).")
def explain(
    run: Path = typer.Argument(
        ..., help="A run folder (probe-demo/latest, an align run), its results JSON, or its rows.h5."
    ),
    vision: Optional[str] = typer.Option(
        None, "--vision", "-v", help="Vision model or control of the pair (default: the first model pair)."
    ),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Language model of the pair."),
    metric: str = typer.Option("mutual_knn", "--metric", help="The metric whose per-row agreement to explain."),
    top: int = typer.Option(5, "--top", min=1, help="Rows shown at each end (most and least agreeing)."),
) -> None:
    """Explain one pair's per-row agreement in RUN (written by probe align --log-rows, probe demo, probe study):
    its most and least agreeing rows with their nearest rows in each space, agreement per label value with
    bootstrap intervals, and its correlation with caption length."""
    from probe.report.explain import explain as explain_run
    from probe.report.explain import render_explanation

    render_explanation(explain_run(run, vision=vision, text=text, metric=metric, top=top))
