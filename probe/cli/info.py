"""`probe datasets`: the registered datasets and what each one needs."""

from __future__ import annotations

from probe.cli.main import app


@app.command(short_help="The registered datasets (manifests and folders also work).")
def datasets() -> None:
    """List the registered datasets (manifest files and folders work anywhere --dataset is taken)."""
    from rich.console import Console

    from probe.datasets import list_datasets
    from probe.report.listings import datasets_table

    console = Console()
    console.print(datasets_table(list_datasets()))
    console.print(
        "Any JSONL/CSV manifest (fields id, image, caption, + labels) or folder with captions.tsv "
        "also works as --dataset, and rendered:<dataset> (e.g. rendered:coco-captions) draws each row's "
        "caption as its image: reading data."
    )
