"""The listings people read at a terminal: models, datasets, caches. Each fits 80 columns with every name whole
(long names go on a line of their own under the short one), in the house style of `probe.report.terminal`.

Imports rich only (no numpy, no torch), so `probe models` and `probe cache ls` stay instant.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich import box
from rich.table import Table

from probe.errors import human_bytes
from probe.report.numbers import fmt_params


def house_table(title: str, *, caption: str | None = None) -> Table:
    """The house style: a header rule, no vertical lines, one space of padding, left-aligned title."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        title_style="bold",
        caption=caption,
        caption_justify="left",
    )


def models_table(specs: Iterable[Any], *, title: str) -> Table:
    """One row per `ModelSpec`: alias (and its hub id or location beneath), modality, width x depth, params,
    default pool and where its weights come from."""
    table = house_table(
        title,
        caption="size: width x blocks. pool: the default pooling. Any model's random-weights "
        "twin: random-init:<alias, hub id or folder> (seed 0, or the seed given to probe extract).",
    )
    specs = list(specs)
    widths = [max(len(spec.alias), len(spec.location or "") + 2) for spec in specs]
    # The first column folds only the lines under a name (hub id or location), never the name itself.
    table.add_column("model (hub id or location)", overflow="fold", min_width=min(36, max(widths, default=5)))
    table.add_column("mod.", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("pool", no_wrap=True)
    table.add_column("source", no_wrap=True)
    for spec in specs:
        alias = spec.alias
        lines = [spec.location] if spec.location and spec.location != spec.alias else []
        lines += [f"= {', '.join(spec.shortcuts)}"] if spec.shortcuts else []
        where = "\n  ".join(f"[dim]{line}[/]" for line in lines)
        if spec.hidden_size and spec.num_layers:
            size = f"{spec.hidden_size}x{spec.num_layers}"
        else:
            size = f"{spec.hidden_size}" if spec.hidden_size else "?"
        source = spec.source if spec.offline else ("hub, gated" if spec.gated else "hub")
        table.add_row(
            alias + (f"\n  {where}" if where else ""),
            spec.modality,
            size,
            fmt_params(spec.params_m),
            spec.default_pool,
            source,
        )
    return table


def datasets_table(specs: Iterable[Any]) -> Table:
    """One row per registered dataset: name, rows, where it comes from, what it needs; its description beneath."""
    specs = list(specs)
    table = house_table("registered datasets")
    table.add_column("dataset (description)", overflow="fold", min_width=max((len(d.name) for d in specs), default=7))
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("needs", min_width=12)
    for d in specs:
        table.add_row(f"{d.name}\n  [dim]{d.description}[/]", f"{d.rows:,}" if d.rows else "varies", d.source, d.needs)
    return table


_STATES = {"complete": "[green]complete[/]", "damaged": "[red]damaged[/]", "tmp": "[yellow]stale .tmp[/]"}


def caches_table(entries: Iterable[Any]) -> Table:
    """One row per cache entry (`probe.features.inventory.CacheEntry`): the model, then beneath it the dataset,
    pools and stored layers, and the file; modality, rows, size and state to the right."""
    table = house_table("")
    entries = list(entries)
    width = max([len(e.model) for e in entries] + [len(e.path.name) + 2 for e in entries], default=5)
    table.add_column("model (dataset, pools, layers; file)", overflow="fold", min_width=min(44, width))
    table.add_column("modality", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for e in entries:
        state = _STATES.get(e.state) or f"[yellow]partial {e.rows_written}/{e.rows}[/]"
        if e.state == "tmp" and e.note.startswith("being written"):
            state = "[cyan]in use .tmp[/]"
        layers = f", {e.layers} layers" if e.layers else ""
        detail = f"{e.dataset}, {'+'.join(e.pools) or '?'}{layers}"
        table.add_row(
            f"{e.model}\n  [dim]{detail}\n  {e.path.name}[/]",
            e.modality,
            f"{e.rows:,}",
            human_bytes(e.size_bytes),
            state,
        )
    return table
