"""`probe linear`: per-layer linear probes of a vision model, each figure beside its control."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app


@app.command(short_help="Linear probes of every layer of a vision model.")
def linear(
    vision: str = typer.Option(..., "--vision", "-v", help="Vision model: alias, hub id or folder."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Registered dataset or manifest."),
    labels: Optional[str] = typer.Option(
        None,
        "--labels",
        help="Comma-separated label fields of the dataset, and/or 'words' (caption words), "
        "'chars' (which letters a-z each caption holds: reading, on rendered text).",
    ),
    text: Optional[str] = typer.Option(
        None, "--text", "-t", help="Text model whose features a ridge probe predicts (caption retrieval too)."
    ),
    text_layer: str = typer.Option(
        "-1", "--text-layer", help="Which stored text layer is the ridge target (-1 = the last)."
    ),
    probe_layers: str = typer.Option("all", "--layers", help="Vision layers to probe: all | -1 | 0,12,24 | ::4."),
    seed: int = opt.Seed,
    pool_vision: Optional[str] = typer.Option(None, "--pool-vision", help="cls (default) | mean | both."),
    pool_text: Optional[str] = typer.Option(None, "--pool-text", help="mean (default) | last."),
    cache_dir: Optional[Path] = opt.CacheDir,
    output: Path = opt.Output,
    device: str = opt.Device,
    dtype: str = opt.Dtype,
    batch_size: Optional[int] = opt.BatchSize,
    max_tokens: Optional[int] = opt.MaxTokens,
    compile: bool = opt.Compile,
    limit: Optional[int] = opt.Limit,
    overwrite: str = opt.Overwrite,
    trust_remote_code: bool = opt.TrustRemoteCode,
    no_progress: bool = opt.NoProgress,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would run and cost (as `probe plan`); run nothing."
    ),
) -> None:
    """Probe every layer of VISION linearly: dataset labels, caption words or letters, and a text model's features."""
    from probe.features.settings import ExtractSettings
    from probe.progress import rich_progress
    from probe.report.terminal import render_linear
    from probe.runs.inputs import split_models
    from probe.runs.linear import LinearSettings, run_linear

    settings = LinearSettings(
        labels=tuple(split_models(labels, param="labels")) if labels else (),
        text_layer=text_layer,
        probe_layers=probe_layers,
        seed=seed,
    )
    options = ExtractSettings(
        cache_dir=opt.cache_dir_or_default(cache_dir),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_tokens=max_tokens,
        compile=compile,
        limit=limit,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
    )
    if dry_run:
        from probe.runs.plan import print_linear_plan

        typer.echo(
            print_linear_plan(
                vision=vision,
                dataset=dataset,
                labels=settings.labels,
                text=text,
                probe_layers=probe_layers,
                text_layer=text_layer,
                cache_dir=options.cache_dir,
                limit=limit,
                seed=seed,
                pool_vision=pool_vision,
                pool_text=pool_text,
                device=device,
                dtype=dtype,
            ),
            nl=False,
        )
        return
    with rich_progress(enabled=not no_progress) as progress:
        run = run_linear(
            vision=vision,
            dataset=dataset,
            settings=settings,
            options=options,
            text=text,
            output=output,
            pool_vision=pool_vision,
            pool_text=pool_text,
            progress=progress,
        )
    render_linear(run)
