"""`probe align`: alignment of every layer pair of vision and language models, with calibrated scores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.align.settings import DEFAULT_METRICS, PRH_DENOMINATOR_EPSILON
from probe.cli import options as opt
from probe.cli.main import app


def parse_clip_quantile(value: str) -> Optional[float]:
    """'0.95' -> 0.95; 'none'/'off' -> None (no clamping); anything else -> InputError naming the flag."""
    from probe.errors import InputError

    if value.strip().lower() in ("none", "off", "no"):
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--clip-quantile {value!r}: give a number in (0, 1] such as 0.95, or 'none'") from None


@app.command(short_help="Alignment of every layer pair of vision and language models.")
def align(
    vision: str = typer.Option(
        ..., "--vision", "-v", help="Vision model(s), comma-separated: aliases, hub ids or folders."
    ),
    text: str = typer.Option(..., "--text", "-t", help="Language model(s), comma-separated."),
    dataset: str = typer.Option(
        "wit-1024", "--dataset", "-d", help="Registered dataset or manifest (PRH used wit-1024; offline: openmoji)."
    ),
    metric: str = typer.Option(
        ",".join(DEFAULT_METRICS),
        "--metric",
        help="Comma-separated: mutual_knn, cycle_knn, jaccard_knn, cka, unbiased_cka, rbf_cka, "
        "unbiased_rbf_cka, cknna.",
    ),
    topk: int = typer.Option(10, "--topk", "-k", help="Neighbours for the kNN metrics (PRH: 10)."),
    clip_quantile: str = typer.Option(
        "0.95", "--clip-quantile", help="Outlier clamp quantile per modality (PRH: 0.95), or 'none'."
    ),
    permutations: int = typer.Option(
        200, "--permutations", help="Shuffles of the pairing for the null of the max over layer pairs (0: skip)."
    ),
    subsamples: int = typer.Option(
        100, "--subsamples", help="Subsamples of 80% of rows, without replacement, for intervals (0: skip)."
    ),
    path: str = typer.Option(
        "auto",
        "--path",
        help="auto: N x N kernels while they fit in 40% of free memory, else the blocked path | dense | blocked "
        "(any N, no RBF metrics).",
    ),
    cka_epsilon: float = typer.Option(
        PRH_DENOMINATOR_EPSILON,
        "--cka-epsilon",
        min=0.0,
        help="Added to CKA/CKNNA denominators (PRH: 1e-6; 0 = textbook definition).",
    ),
    pool_vision: Optional[str] = typer.Option(None, "--pool-vision", help="cls (default, as PRH) | mean | both."),
    pool_text: Optional[str] = typer.Option(None, "--pool-text", help="mean (default, as PRH) | last."),
    seed: int = opt.Seed,
    cache_dir: Optional[Path] = opt.CacheDir,
    output: Path = opt.Output,
    device: str = opt.Device,
    dtype: str = opt.Dtype,
    batch_size: Optional[int] = opt.BatchSize,
    max_tokens: Optional[int] = opt.MaxTokens,
    compile: bool = opt.Compile,
    limit: Optional[int] = opt.Limit,
    layers: str = opt.Layers,
    overwrite: str = opt.Overwrite,
    prompt: Optional[str] = typer.Option(
        None, "--prompt", help="Caption template for the text models, with {caption}."
    ),
    controls: str = typer.Option(
        "",
        "--controls",
        help="Controls scored on the same rows, comma-separated: pixels-8/16/32 (the image itself), "
        "random-init (each vision model's own architecture, fresh weights), or any vision model. "
        "E.g. pixels-16,random-init.",
    ),
    sizes: str = typer.Option(
        "",
        "--sizes",
        help="Also score on nested random subsets of these many rows, e.g. 256,512,1024 "
        "(raw scores fall with N; calibrated ones compare).",
    ),
    log_rows: bool = typer.Option(
        False,
        "--log-rows",
        help="Also write each pair's per-row agreement (rows.h5 beside the results: which rows agree; "
        "read it with probe explain or probe.load_rows).",
    ),
    trust_remote_code: bool = opt.TrustRemoteCode,
    no_progress: bool = opt.NoProgress,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would run and cost (as `probe plan`); run nothing."
    ),
) -> None:
    """Score how well each vision model's geometry matches each language model's, at every layer pair."""
    from probe.align.settings import AlignSettings
    from probe.features.settings import ExtractSettings
    from probe.progress import rich_progress
    from probe.report.terminal import render_align
    from probe.runs.align import run_align
    from probe.runs.inputs import split_models
    from probe.runs.sizes import parse_sizes

    settings = AlignSettings(
        metrics=tuple(split_models(metric, param="metrics")),
        k=topk,
        clip_quantile=parse_clip_quantile(clip_quantile),
        permutations=permutations,
        subsamples=subsamples,
        seed=seed,
        device=device,
        denominator_epsilon=cka_epsilon,
        path=path,
    )
    options = ExtractSettings(
        cache_dir=opt.cache_dir_or_default(cache_dir),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_tokens=max_tokens,
        compile=compile,
        limit=limit,
        layers=layers,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        prompt=prompt,
    )
    if dry_run:
        from probe.runs.plan import print_flags_plan
        from probe.runs.study import StudySettings

        typer.echo(
            print_flags_plan(
                command="align",
                vision=split_models(vision, param="vision"),
                text=split_models(text, param="text"),
                dataset=dataset,
                controls=split_models(controls, param="controls") if controls.strip() else (),
                cache_dir=options.cache_dir,
                settings=StudySettings(align=settings, extract=options, pool_vision=pool_vision, pool_text=pool_text),
            ),
            nl=False,
        )
        return
    with rich_progress(enabled=not no_progress) as progress:
        run = run_align(
            vision=vision,
            text=text,
            dataset=dataset,
            settings=settings,
            options=options,
            output=output,
            pool_vision=pool_vision,
            pool_text=pool_text,
            progress=progress,
            controls=split_models(controls, param="controls") if controls.strip() else (),
            sizes=parse_sizes(sizes) if sizes.strip() else (),
            log_rows=log_rows,
        )
    render_align(run)
