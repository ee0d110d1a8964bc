"""The alignment metrics by name, and what each needs (kNN sets, kernels, N x N memory)."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Literal, Optional, Sequence

from probe.errors import InputError

MetricName = Literal[
    "mutual_knn", "cycle_knn", "jaccard_knn", "cka", "unbiased_cka", "rbf_cka", "unbiased_rbf_cka", "cknna"
]
Family = Literal["knn", "kernel", "cknna"]
KernelName = Literal["linear", "rbf"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its family, kernel (kernel metrics), whether HSIC is unbiased, and its properties.

    `needs_dense`: it needs N x N kernels (no large-N path). `symmetric`: metric(A, B) = metric(B, A).
    """

    name: str
    family: Family
    kernel: Optional[KernelName] = None
    unbiased: bool = False
    needs_dense: bool = False
    symmetric: bool = True


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("mutual_knn", "knn"),
        MetricSpec("cycle_knn", "knn", symmetric=False),
        MetricSpec("jaccard_knn", "knn"),
        MetricSpec("cka", "kernel", kernel="linear"),
        MetricSpec("unbiased_cka", "kernel", kernel="linear", unbiased=True),
        MetricSpec("rbf_cka", "kernel", kernel="rbf", needs_dense=True),
        MetricSpec("unbiased_rbf_cka", "kernel", kernel="rbf", unbiased=True, needs_dense=True),
        # PRH's CKNNA is asymmetric: HSIC_u's 1'PQ1 term differs from 1'QP1 for the unsymmetrised masks.
        MetricSpec("cknna", "cknna", unbiased=True, symmetric=False),
    )
}


def metric_specs(names: Sequence[str]) -> list[MetricSpec]:
    """The specs of `names` in order, without duplicates; InputError with suggestions for unknown names."""
    if isinstance(names, str):
        names = (names,)
    if len(names) == 0:
        raise InputError("metrics is empty; pass at least one of: " + ", ".join(METRICS))
    specs: list[MetricSpec] = []
    for name in names:
        if name not in METRICS:
            close = get_close_matches(str(name), list(METRICS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown metric {name!r}.{hint} Choose from: {', '.join(METRICS)}.")
        if METRICS[name] not in specs:
            specs.append(METRICS[name])
    return specs
