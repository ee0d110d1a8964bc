"""`probe models [PATTERN]`: list the registered models as a table.

Imports only the registry (standard library) so that `probe models` and its --help stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from cli.main import app

if TYPE_CHECKING:
    from probe.models.registry import ModelSpec


def _params(millions: float | None) -> str:
    if millions is None:
        return "?"
    if millions >= 1000:
        return f"{millions / 1000:.2f}B"
    return f"{millions:.0f}M" if millions >= 10 else f"{millions:.1f}M"


def _where(spec: ModelSpec) -> str:
    if spec.offline:
        return f"offline ({spec.source})"
    return "hub (gated)" if spec.gated else "hub"


@app.command("models", short_help="The model registry: aliases, hub ids, sizes, offline or not.")
def models_command(
    pattern: Optional[str] = typer.Argument(
        None, help="Filter on alias or hub id: an fnmatch pattern such as 'webssl*' or '*llama*', or a substring."
    ),
) -> None:
    """List the models probe knows: alias, hub id, modality, size, default pooling, and whether it works offline."""
    from probe.errors import InputError
    from probe.models.registry import list_models, suggest

    specs = list_models(pattern)
    if not specs:
        hints = suggest((pattern or "").strip("*?[]"))
        did_you_mean = f" Did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
        raise InputError(f"no registered model matches {pattern!r}.{did_you_mean} Run `probe models` to see all.")
    table = Table(
        title=f"{len(specs)} model(s)" + (f" matching {pattern!r}" if pattern else ""),
        title_justify="left",
        caption="Any model's random-weights twin: random-init:<alias, hub id or folder> (probe extract --seed N).",
        caption_justify="left",
    )
    for column, justify in (
        ("alias", "left"), ("hub id / location", "left"), ("modality", "left"), ("architecture", "left"),
        ("params", "right"), ("hidden x layers", "right"), ("pool", "left"), ("source", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify, overflow="fold")
    for spec in specs:
        alias = spec.alias + (f" (= {', '.join(spec.shortcuts)})" if spec.shortcuts else "")
        size = f"{spec.hidden_size} x {spec.num_layers}" if spec.hidden_size and spec.num_layers is not None else "?"
        params = _params(spec.params_m)
        table.add_row(alias, spec.location, spec.modality, spec.arch, params, size, spec.default_pool, _where(spec))
    Console().print(table)
