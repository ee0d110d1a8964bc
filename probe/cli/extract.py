"""`probe extract`: cache every layer's pooled features of one model over one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.cli import options as opt
from probe.cli.main import app


@app.command(short_help="Cache every hidden state of a model over a dataset.")
def extract(
    model: str = typer.Option(..., "--model", "-m", help="Alias (see 'probe models'), hub id, or local model folder."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Registered dataset (see 'probe datasets') or a manifest file/folder."
    ),
    cache_dir: Optional[Path] = opt.CacheDir,
    pool: Optional[str] = typer.Option(
        None, "--pool", help="vision: cls (default) | mean | both; text: mean (default) | last."
    ),
    layers: str = opt.Layers,
    batch_size: Optional[int] = opt.BatchSize,
    max_tokens: Optional[int] = opt.MaxTokens,
    compile: bool = opt.Compile,
    device: str = opt.Device,
    dtype: str = opt.Dtype,
    limit: Optional[int] = opt.Limit,
    revision: Optional[str] = opt.Revision,
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Weights' seed of a random-init model (random-init:<model>, tiny-random-vit); default 0."
    ),
    prompt: Optional[str] = typer.Option(
        None, "--prompt", help="Text template with {caption}, e.g. 'A photo of {caption}'."
    ),
    overwrite: str = opt.Overwrite,
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="Image decoding worker processes."),
    trust_remote_code: bool = opt.TrustRemoteCode,
    max_pixels: Optional[int] = typer.Option(
        None,
        "--max-pixels",
        min=1,
        help="Refuse images whose header declares more pixels than this, before decoding (default 64,000,000).",
    ),
    store_dtype: str = typer.Option(
        "float32",
        "--store-dtype",
        help="Stored feature dtype: float32 (default) or float16 (half the disk; scores move < 1e-3, docs/cache.md).",
    ),
    no_progress: bool = opt.NoProgress,
) -> None:
    """Extract and cache features (every hidden state, pooled) of MODEL over DATASET."""
    from rich.console import Console

    from probe.datasets.images import DEFAULT_MAX_PIXELS
    from probe.features.extract import extract_features
    from probe.features.settings import ExtractSettings
    from probe.progress import rich_progress

    settings = ExtractSettings(
        cache_dir=opt.cache_dir_or_default(cache_dir),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        limit=limit,
        layers=layers,
        overwrite=overwrite,
        num_workers=num_workers,
        trust_remote_code=trust_remote_code,
        prompt=prompt,
        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        max_tokens=max_tokens,
        compile=compile,
        store_dtype=store_dtype,
    )
    with rich_progress(enabled=not no_progress) as progress:
        result = extract_features(
            model=model, dataset=dataset, settings=settings, pool=pool, revision=revision, seed=seed, progress=progress
        )
    console = Console()
    if result.path is None:
        console.print(
            f"this shard wrote {result.rows_extracted} rows; the cache completes when every shard has finished"
        )
        return
    cache = result.open()
    verb = "reused" if result.reused else f"extracted {result.rows_extracted} rows in {result.seconds:.1f}s"
    console.print(
        f"[green]{verb}[/]: {cache.modality} features, N={cache.num_rows}, "
        f"{cache.num_layers} layers x D={cache.hidden_size}, pools {', '.join(cache.pools)}"
    )
    console.print(str(result.path), highlight=False, soft_wrap=True)
