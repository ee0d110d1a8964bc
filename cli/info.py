"""`probe datasets`: the registered datasets and what each one needs."""

from __future__ import annotations

from cli.main import app


@app.command(short_help="The registered datasets (manifests and folders also work).")
def datasets() -> None:
    """List the registered datasets (manifest files and folders work anywhere --dataset is taken)."""
    from rich.console import Console
    from rich.table import Table

    from probe.datasets import list_datasets

    table = Table(title="registered datasets")
    for col in ("name", "rows", "source", "needs", "description"):
        table.add_column(col)
    for d in list_datasets():
        table.add_row(d.name, str(d.rows or "varies"), d.source, d.needs, d.description)
    console = Console()
    console.print(table)
    console.print("Any JSONL/CSV manifest (fields id, image, caption, + labels) or folder with captions.tsv also works as --dataset.")
