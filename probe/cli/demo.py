"""`probe demo`: the whole study in miniature, offline, on a CPU (see probe.runs.demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app


@app.command(short_help="The offline miniature of the whole study.")
def demo(
    cache_dir: Optional[Path] = opt.CacheDir,
    output: Path = typer.Option(Path("probe-demo"), "--output", "-o", help="Folder for the results JSON and heatmaps."),
    limit: int = typer.Option(1024, "--limit", min=12, help="OpenMoji rows to use (PRH used 1024 pairs)."),
    permutations: int = typer.Option(200, "--permutations", min=0, help="Shuffles for the permutation null."),
    subsamples: int = typer.Option(50, "--subsamples", min=0, help="Subsamples (80% of rows) for intervals."),
    seed: int = opt.Seed,
    device: str = opt.Device,
    no_progress: bool = opt.NoProgress,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would run and cost (`probe plan demo`); run nothing."
    ),
) -> None:
    """Run the offline miniature: a ViT trained without text and its random control vs MiniLM and SmolLM2 on OpenMoji."""
    from probe.progress import rich_progress
    from probe.report.terminal import render_demo
    from probe.runs.demo import DemoSettings, run_demo

    settings = DemoSettings(limit=limit, permutations=permutations, subsamples=subsamples, seed=seed, device=device)
    if dry_run:  # the demo preset is what `probe demo` runs (tests/test_runs/test_study.py)
        from dataclasses import replace

        from probe.report.plan_text import format_plan
        from probe.runs.plan import plan_study
        from probe.runs.study import load_study

        spec = load_study("demo")
        spec = replace(
            spec,
            settings=replace(
                spec.settings, limit=limit, permutations=permutations, subsamples=subsamples, seed=seed, device=device
            ),
        )
        typer.echo(format_plan(plan_study(spec, cache_dir=opt.cache_dir_or_default(cache_dir))), nl=False)
        return
    with rich_progress(enabled=not no_progress) as progress:
        run = run_demo(
            cache_dir=opt.cache_dir_or_default(cache_dir), output=output, settings=settings, progress=progress
        )
    render_demo(run)
