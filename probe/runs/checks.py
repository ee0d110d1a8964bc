"""Checks a command runs before any work: what would otherwise fail only after minutes of extraction and scoring.

`check_run_request` (the first call of `run_align` / `run_linear`): the metric names, and that `output=` and
`cache_dir=` are folders this process can write to (or create). `check_label_fields` (once the dataset is
open, before any model is loaded): every requested label field exists in every row, and `words` / `chars` have
captions.
Each failure is an InputError naming the argument (`cache_dir=`; the CLI shows its flag) and the fix.
Nothing is created: writability is tried with a temporary file in the nearest existing folder, removed at
once (permission bits alone mislead: root ignores
them, and read-only or virtual filesystems refuse writes whatever the bits say).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from probe.datasets import PairedDataset
from probe.features.format import check_writable_dir


def check_run_request(*, cache_dir: Path, output: Optional[Path], metrics: Sequence[str] = ()) -> None:
    """Everything about an analysis command's request that can be checked without data or models: the
    alignment metric names (if any), and writable `cache_dir` and `output` (if given) folders."""
    if metrics:
        from probe.align.specs import metric_specs

        metric_specs(tuple(metrics))  # InputError with suggestions for unknown names
    check_writable_dir(cache_dir, param="cache_dir")
    if output is not None:
        check_writable_dir(output, param="output")


def check_label_fields(data: PairedDataset, labels: Sequence[str], *, caption_targets: Sequence[str]) -> None:
    """InputError naming the first requested label field some row lacks (a name in `caption_targets`, such as
    `words`: a row without a caption)."""
    for name in labels:
        if name in caption_targets:
            data.require_captions()
        else:
            data.labels(name)
