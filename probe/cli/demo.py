"""`probe demo`: the whole study in miniature, offline, on a CPU (see probe.runs.demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app
from probe.runs.study import preset_settings

# The demo preset is the one definition of the demo: its settings are these flags' defaults, so `probe demo`
# without flags runs the preset as it is (and its --help shows the preset's values).
DEMO = preset_settings("demo")


@app.command(short_help="The offline miniature of the whole study.")
def demo(
    cache_dir: Optional[Path] = opt.CacheDir,
    output: Path = typer.Option(Path("probe-demo"), "--output", "-o", help="Folder for the results JSON and heatmaps."),
    limit: int = typer.Option(DEMO.limit, "--limit", min=12, help="OpenMoji rows to use (PRH used 1024 pairs)."),
    permutations: int = typer.Option(
        DEMO.permutations, "--permutations", min=0, help="Shuffles for the permutation null."
    ),
    subsamples: int = typer.Option(
        DEMO.subsamples, "--subsamples", min=0, help="Subsamples (80% of rows) for intervals."
    ),
    seed: int = typer.Option(DEMO.seed, "--seed", help=opt.Seed.help),
    device: str = typer.Option(DEMO.device, "--device", help=opt.Device.help),
    no_progress: bool = opt.NoProgress,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would run and cost (`probe plan demo`); run nothing."
    ),
) -> None:
    """Run the offline miniature: a ViT trained without text and its random control vs MiniLM and SmolLM2 on
    OpenMoji."""
    from probe.progress import rich_progress
    from probe.report.terminal import render_demo
    from probe.runs.demo import demo_study, run_demo

    study = demo_study(limit=limit, permutations=permutations, subsamples=subsamples, seed=seed, device=device)
    if dry_run:
        from probe.report.plan_text import format_plan
        from probe.runs.plan import plan_study

        typer.echo(format_plan(plan_study(study, cache_dir=opt.cache_dir_or_default(cache_dir))), nl=False)
        return
    with rich_progress(enabled=not no_progress) as progress:
        run = run_demo(cache_dir=opt.cache_dir_or_default(cache_dir), output=output, study=study, progress=progress)
    render_demo(run)
