"""`probe cache ls | verify | rm`: what is cached, whether it is sound, and removing entries."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app

cache_app = typer.Typer(help="List, verify and remove cached features.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _select(cache_dir: Path, pattern: Optional[str]):
    import fnmatch

    from probe.features.inventory import list_entries

    entries = list_entries(cache_dir)
    if pattern:
        entries = [
            e
            for e in entries
            if fnmatch.fnmatch(e.model, pattern)
            or fnmatch.fnmatch(e.dataset, pattern)
            or fnmatch.fnmatch(str(e.path), pattern)
            or str(e.path) == pattern
        ]
    return entries


@cache_app.command("ls")
def cache_ls(
    pattern: Optional[str] = typer.Argument(None, help="fnmatch pattern on model, dataset or path."),
    cache_dir: Optional[Path] = opt.CacheDir,
) -> None:
    """List cached features: model, dataset, rows, size, complete or not."""
    from rich.console import Console

    from probe.report.listings import caches_table

    root = opt.cache_dir_or_default(cache_dir)
    entries = _select(root, pattern)
    table = caches_table(entries)
    console = Console()
    console.print(f"[bold]feature caches in {root}[/]", highlight=False, soft_wrap=True)
    if entries:
        console.print(table)
    for e in entries:
        if e.state in ("damaged", "tmp") or e.note:
            console.print(f"[yellow]{e.state}[/] {e.path}: {e.note}", highlight=False, soft_wrap=True)
    if not entries:
        console.print("no caches yet; run 'probe extract'")


@cache_app.command("verify")
def cache_verify(
    pattern: Optional[str] = typer.Argument(None, help="fnmatch pattern on model, dataset or path."),
    cache_dir: Optional[Path] = opt.CacheDir,
) -> None:
    """Check every complete cache: format, shapes, finite values and stored checksums. Exit 1 on a problem."""
    from rich.console import Console

    from probe.features.inventory import verify_cache

    console = Console()
    bad = 0
    for e in _select(opt.cache_dir_or_default(cache_dir), pattern):
        if e.state == "partial":
            console.print(
                f"[yellow]partial[/] {e.path} ({e.rows_written}/{e.rows} rows); 'probe extract' resumes it",
                highlight=False,
            )
            continue
        if e.state == "tmp":
            console.print(f"[yellow]tmp[/] {e.path}: {e.note}", highlight=False)
            continue
        problems = verify_cache(e.path)
        if problems:
            bad += 1
            for p in problems:
                console.print(f"[red]bad[/] {e.path}: {p}", highlight=False)
        else:
            console.print(f"[green]ok[/] {e.path}", highlight=False)
    if bad:
        raise typer.Exit(1)


@cache_app.command("rm")
def cache_rm(
    pattern: str = typer.Argument(..., help="fnmatch pattern on model, dataset or path ('*' for everything)."),
    cache_dir: Optional[Path] = opt.CacheDir,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove cache entries: complete, damaged and unfinished caches and stale .tmp files (not those in use)."""
    from rich.console import Console

    from probe.errors import InputError
    from probe.features.inventory import prune_lock_files, remove_entries

    root = opt.cache_dir_or_default(cache_dir)
    entries = _select(root, pattern)
    if not entries:
        raise InputError(f"no cache entry matches {pattern!r}; see 'probe cache ls'")
    console = Console()
    for e in entries:
        console.print(f"  {e.model} / {e.dataset}: {e.path} ({e.state})", highlight=False)
    if not yes and not typer.confirm(f"remove {len(entries)} entries?"):
        raise typer.Exit(1)
    results = remove_entries(entries)
    prune_lock_files(root)
    for r in results:
        if not r.removed:
            console.print(f"[yellow]kept[/] {r.entry.path}: {r.reason}", highlight=False)
    console.print(f"removed {sum(r.removed for r in results)} entries")


@cache_app.command("import")
def cache_import(
    file: Path = typer.Argument(..., help="Features [N, L, D]: PRH's .pt ({'feats': ...}), .npy or .npz."),
    model: str = typer.Option(..., "--model", "-m", help="Name to give these features (not a registered model name)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset whose rows, in order, the features are of."),
    modality: str = typer.Option(..., "--modality", help="vision | text"),
    pool: Optional[str] = typer.Option(
        None, "--pool", help="How the rows were pooled (vision: cls, mean; text: mean, last)."
    ),
    cache_dir: Optional[Path] = opt.CacheDir,
) -> None:
    """Bring features computed elsewhere into the cache; then 'probe align --vision NAME' uses them."""
    from rich.console import Console

    from probe.datasets import load_dataset
    from probe.features.imports import import_features

    root = opt.cache_dir_or_default(cache_dir)
    path = import_features(
        file,
        model=model,
        dataset=load_dataset(dataset, cache_dir=root),
        modality=modality,  # type: ignore[arg-type]
        cache_dir=root,
        pool=pool,
    )
    Console().print(f"[green]imported[/] {file} as {model!r}: {path}", highlight=False, soft_wrap=True)
