"""`probe report`: results files or folders -> report.html, report.md, results.csv (see probe.runs.report)."""

from __future__ import annotations

from pathlib import Path

import typer

from probe.cli.main import app


@app.command(short_help="Gather results into one HTML/Markdown report and a CSV.")
def report(
    paths: list[Path] = typer.Argument(..., help="Results JSON files, or folders searched recursively for them."),
    output: Path = typer.Option(
        Path("probe-report"), "--output", "-o", help="Folder for report.html, report.md, results.csv."
    ),
) -> None:
    """Write the study's figures and tables (scaling, layer depth, heatmaps, probes, provenance) for PATHS."""
    from probe.runs.report import write_report

    files = write_report(paths, output=output)
    typer.echo(f"report: {files.html}")
    typer.echo(f"markdown: {files.markdown}")
    typer.echo(
        f"table: {files.csv} ({files.align_rows} alignment rows), {files.probes_csv} ({files.probe_rows} probe rows)"
    )
    if files.parquet is not None:
        typer.echo(f"parquet: {files.parquet}")
