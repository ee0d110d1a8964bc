"""`probe study` and `probe plan`: a grid of runs from a TOML file or a shipped preset (see probe.runs.study,
probe.runs.plan, probe.report.plan_text)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app

Target = typer.Argument(None, help="A study TOML file or a preset name (`probe study --list`).")
DeviceOverride = typer.Option(None, "--device", help="Override the study's device: auto | cpu | cuda | cuda:N | mps.")
LimitOverride = typer.Option(
    None, "--limit", min=1, help="Override the study's limit: the first N rows of each dataset."
)


def _load(target: Optional[str], device: Optional[str], limit: Optional[int]):
    from dataclasses import replace

    from probe.errors import InputError
    from probe.runs.study import list_presets, load_study

    if not target:
        raise InputError(f"give a study TOML file or a preset ({', '.join(list_presets())})")
    spec = load_study(target)
    changes = {k: v for k, v in (("device", device), ("limit", limit)) if v is not None}
    return replace(spec, settings=spec.settings.with_keys(**changes)) if changes else spec


def _print_plan(spec, cache_dir: Optional[Path]) -> None:
    from probe.report.plan_text import format_plan
    from probe.runs.plan import plan_study

    typer.echo(format_plan(plan_study(spec, cache_dir=opt.cache_dir_or_default(cache_dir))), nl=False)


@app.command(short_help="Run a study (a grid of align/linear runs) from a TOML file or preset, then its report.")
def study(
    target: Optional[str] = Target,
    list_presets: bool = typer.Option(False, "--list", help="List the shipped presets and exit."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (`probe plan`) and run nothing."),
    output: Path = typer.Option(
        Path("probe-studies"), "--output", "-o", help="Folder for the study folder (study-<name>-<time>/)."
    ),
    cache_dir: Optional[Path] = opt.CacheDir,
    device: Optional[str] = DeviceOverride,
    limit: Optional[int] = LimitOverride,
    no_progress: bool = opt.NoProgress,
) -> None:
    """Run every vision x text x dataset alignment and probe of a study that is not cached yet, into one study
    folder, and write its report there (report.html, report.md, results.csv)."""
    if list_presets:
        import textwrap

        from probe.runs.study import list_presets as presets
        from probe.runs.study import preset_descriptions

        descriptions = preset_descriptions()
        for name in presets():
            typer.echo(
                textwrap.fill(descriptions[name], width=80, initial_indent=f"{name:<16} ", subsequent_indent=" " * 17)
            )
        return
    spec = _load(target, device, limit)
    if dry_run:
        _print_plan(spec, cache_dir)
        return
    from probe.progress import rich_progress
    from probe.runs.study import run_study

    with rich_progress(enabled=not no_progress) as progress:
        run = run_study(spec, cache_dir=opt.cache_dir_or_default(cache_dir), output=output, progress=progress)
    typer.echo(f"study {spec.name}: {run.folder}")
    typer.echo(f"report: {run.report.html}")
    typer.echo(
        f"table: {run.report.csv} ({run.report.align_rows} alignment rows), {run.report.probes_csv} "
        f"({run.report.probe_rows} probe rows)"
    )


@app.command(short_help="What a study would run and cost (caches, disk, gated models, time); runs nothing.")
def plan(
    target: Optional[str] = Target,
    cache_dir: Optional[Path] = opt.CacheDir,
    device: Optional[str] = DeviceOverride,
    limit: Optional[int] = LimitOverride,
) -> None:
    """Print the study's grid, which feature caches exist, the disk the new ones need, the gated models and a time
    estimate from assumed rates. Loads no model and needs no network."""
    _print_plan(_load(target, device, limit), cache_dir)
