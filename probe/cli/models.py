"""`probe models [PATTERN]`: list the registered models as a table.

Imports only the registry (standard library) so that `probe models` and its --help stay fast.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from probe.cli.main import app


@app.command("models", short_help="The model registry: aliases, hub ids, sizes, offline or not.")
def models_command(
    pattern: Optional[str] = typer.Argument(
        None, help="Filter on alias or hub id: an fnmatch pattern such as 'webssl*' or '*llama*', or a substring."
    ),
) -> None:
    """List the models probe knows: alias, hub id, modality, size, default pooling, and whether it works offline."""
    from probe.errors import InputError
    from probe.models.names import list_models, suggest

    specs = list_models(pattern)
    if not specs:
        hints = suggest((pattern or "").strip("*?[]"))
        did_you_mean = f" Did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
        raise InputError(f"no registered model matches {pattern!r}.{did_you_mean} Run `probe models` to see all.")
    from probe.report.listings import models_table

    table = models_table(specs, title=f"{len(specs)} model(s)" + (f" matching {pattern!r}" if pattern else ""))
    Console().print(table)
