"""Flag definitions shared by several commands, so each flag means the same thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

CacheDir = typer.Option(
    None, "--cache-dir", help="Cache folder (default: the global --cache-dir, else $PROBE_CACHE, else ~/.cache/probe)."
)
Device = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps")
Dtype = typer.Option("auto", "--dtype", help="auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16")
Limit = typer.Option(None, "--limit", min=1, help="Use only the first N rows of the dataset.")
BatchSize = typer.Option(
    None, "--batch-size", min=1, help="Rows per forward pass (halved automatically on GPU out-of-memory)."
)
MaxTokens = typer.Option(
    None,
    "--max-tokens",
    min=1,
    help="Text: fill length-sorted batches up to this many padded tokens (and --batch-size rows if given, "
    "else 2048) instead of fixed --batch-size batches.",
)
Compile = typer.Option(
    False,
    "--compile",
    help="Run the network through torch.compile (features equal to float rounding; pays on long GPU runs).",
)
Layers = typer.Option("all", "--layers", help="Hidden states to keep: all | -1 | 0,12,24 | ::4 (0 = embeddings).")
Overwrite = typer.Option(
    "missing",
    "--overwrite",
    help="never: only use existing caches | missing: extract what is missing, resuming | always: redo.",
)
Revision = typer.Option(None, "--revision", help="Model revision (branch, tag or commit) on the hub.")
TrustRemoteCode = typer.Option(False, "--trust-remote-code", help="Allow model code from the hub (off by default).")
Output = typer.Option(Path("probe-results"), "--output", "-o", help="Folder for the results JSON and plots.")
Seed = typer.Option(0, "--seed", help="Random seed (splits, permutations, subsamples).")
NoProgress = typer.Option(False, "--no-progress", help="Hide progress bars.")


# The global `probe --cache-dir DIR`, set by the root callback for the command that follows it.
_global_cache_dir: Optional[Path] = None


def set_global_cache_dir(value: Optional[Path]) -> None:
    global _global_cache_dir
    _global_cache_dir = value


def cache_dir_or_default(value: Optional[Path]) -> Path:
    """The command's --cache-dir, else the global one (`probe --cache-dir DIR cmd`), else $PROBE_CACHE,
    else ~/.cache/probe."""
    from probe.features.format import default_cache_dir

    if value is not None:
        return value
    return _global_cache_dir if _global_cache_dir is not None else default_cache_dir()


# The library names its arguments (`k=10`); the command line shows the flag a user typed instead. One table,
# used by probe.cli.main for every error message, so each check is worded once, in the library.
LIBRARY_FLAGS: dict[str, str] = {
    "k": "--topk",
    "metrics": "--metric",
    "metric": "--metric",
    "top": "--top",
    "clip_quantile": "--clip-quantile",
    "permutations": "--permutations",
    "subsamples": "--subsamples",
    "denominator_epsilon": "--cka-epsilon",
    "device": "--device",
    "dtype": "--dtype",
    "pool": "--pool",
    "modality": "--modality",
    "file": "FILE",
    "layers": "--layers",
    "text_layer": "--text-layer",
    "batch_size": "--batch-size",
    "max_tokens": "--max-tokens",
    "overwrite": "--overwrite",
    "prompt": "--prompt",
    "limit": "--limit",
    "dataset": "--dataset",
    "model": "--model",
    "vision": "--vision",
    "text": "--text",
    "labels": "--labels",
    "revision": "--revision",
    "seed": "--seed",
    "cache_dir": "--cache-dir",
    "output": "--output",
    "max_pixels": "--max-pixels",
    "store_dtype": "--store-dtype",
    "controls": "--controls",
    "sizes": "--sizes",
    "path": "--path",
    "log_rows": "--log-rows",
}


def as_flags(message: str) -> str:
    """`message` with each library argument `name=` written as its flag: "k=40 must ..." -> "--topk 40 must",
    "drop seed=, or ..." -> "drop --seed, or ...", "check revision=." -> "check --revision."."""
    import re

    pattern = re.compile(r"(?<![\w\-.'\"`])(" + "|".join(sorted(LIBRARY_FLAGS, key=len, reverse=True)) + r")=(\s?)")

    def flag(m: re.Match[str]) -> str:
        after = message[m.end() : m.end() + 2]
        # A bare `name=` at the end of a clause is the flag alone; only a value or a word after it needs the space.
        ends = after[:1] in ("", ",", ";", ":", ")", "]") or (after[:1] == "." and after[1:].strip() == "")
        return LIBRARY_FLAGS[m.group(1)] + ("" if ends else " ")

    return pattern.sub(flag, message)
