"""Alignment of every (vision layer, text layer) pair, with the per-layer work shared across pairs.

`alignment_matrices` reads each modality layer by layer, applies PRH's preprocessing (clamp, then
L2 rows), does each layer's work once (kNN lists, kernels; see `probe.align.state`) and then
scores all pairs for several metrics at once: kNN overlaps by edge lookups, CKA of all pairs as one
product of flattened centred kernels (`probe.align.hsic`), CKNNA on the shared edges (`probe.align.cknna`).

Two paths: "dense" holds an N x N kernel per layer (fastest for N up to a few thousand); "blocked"
never forms N x N (kNN by row blocks, linear CKA in feature space, CKNNA's kernel values at the kNN
edges only) and serves large N for every metric but the RBF ones. "auto" picks dense while the
kernels fit `dense_kernel_budget` (a share of the device's free memory).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from probe.align.cknna import OwnEdges, cknna_numerators
from probe.align.hsic import cka_from_hsic, kernel_products, unbiased_from_centred
from probe.align.knn import NeighbourSets, cycle_knn_row, edge_lookups, jaccard_knn_row, mutual_knn_row
from probe.align.prep import LayerInput, as_layer_source, prepare_layers
from probe.align.settings import AlignSettings, PathChoice, check_sizes
from probe.align.specs import MetricName, MetricSpec, metric_specs
from probe.align.state import ComputePath, ComputePlan, ModalityState, StateCache, build_state
from probe.devices import free_memory_bytes, resolve_device
from probe.errors import InputError
from probe.layer_source import LayerSource, source_identity
from probe.progress import ProgressCallback

# "auto" stays dense while all layers' N x N float32 kernels fit in this share of the device's free
# memory. The rest covers what the dense path holds besides: the sub-kernels of a subset (0.64 of the
# kernels at the default fraction 0.8, made while the full ones live), slabs, features being read.
DENSE_MEMORY_FRACTION = 0.4
# A run keeps the modality states of models it will pair again in this share of the free memory.
STATE_MEMORY_FRACTION = 0.25

_KNN_ROWS = {"mutual_knn": mutual_knn_row, "jaccard_knn": jaccard_knn_row, "cycle_knn": cycle_knn_row}


def dense_kernel_bytes(*, num_rows: int, num_layers: int, specs: Sequence[MetricSpec]) -> int:
    """Bytes of the N x N float32 kernels the dense path holds for `num_layers` layers in all."""
    kernels_per_layer = 2 if any(spec.kernel == "rbf" for spec in specs) else 1
    return 4 * num_rows * num_rows * num_layers * kernels_per_layer


def state_cache_budget(device: torch.device) -> int:
    """Bytes a run's `StateCache` may hold on `device`: STATE_MEMORY_FRACTION of its free memory, read when
    called (what is left stays for the pair being scored)."""
    return int(STATE_MEMORY_FRACTION * free_memory_bytes(device))


def dense_kernel_budget(device: torch.device) -> int:
    """Bytes the dense path's kernels may take on `device`: DENSE_MEMORY_FRACTION of its free memory (CUDA:
    the device's; CPU: the available RAM, see `probe.devices.free_memory_bytes`), read when called."""
    return int(DENSE_MEMORY_FRACTION * free_memory_bytes(device))


def choose_path(
    path: PathChoice, *, num_rows: int, num_layers: int, specs: Sequence[MetricSpec], device: torch.device
) -> ComputePath:
    """The compute path for `path` ("auto", "dense" or "blocked") on `device`; InputError when a metric cannot
    use it. "auto" is dense while the kernels fit `dense_kernel_budget(device)`, else blocked."""
    if path not in ("auto", "dense", "blocked"):
        raise InputError(f"path={path!r}: choose 'auto', 'dense' or 'blocked'.")
    dense_only = [spec.name for spec in specs if spec.needs_dense]
    if path == "auto":
        needed = dense_kernel_bytes(num_rows=num_rows, num_layers=num_layers, specs=specs)
        budget = dense_kernel_budget(device)
        if needed <= budget:
            return "dense"
        if dense_only:
            raise InputError(
                f"{', '.join(dense_only)} need N x N kernels: {needed / 2**30:.1f} GiB for N={num_rows} and "
                f"{num_layers} layers (limit {budget / 2**30:.1f} GiB, {DENSE_MEMORY_FRACTION:.0%} of the free "
                f"memory of {device}). Use fewer rows or layers, drop those metrics (mutual_knn, cycle_knn, "
                "jaccard_knn, cka, unbiased_cka, cknna scale), or pass path='dense' to force it."
            )
        return "blocked"
    if path == "blocked" and dense_only:
        raise InputError(
            f"{', '.join(dense_only)} need N x N kernels and have no blocked path; use path='dense' or 'auto'."
        )
    return path


def prepare_modalities(
    vision: LayerInput,
    text: LayerInput,
    settings: Optional[AlignSettings] = None,
    *,
    spare_neighbours: int = 0,
    names: tuple[str, str] = ("vision", "text"),
    progress: Optional[ProgressCallback] = None,
    states: Optional[StateCache] = None,
    **options: Any,
) -> tuple[ModalityState, ModalityState]:
    """Read, preprocess and do the per-layer work of both modalities (see `alignment_matrices`; `settings`
    and keyword `options` as there).

    `spare_neighbours` keeps that many extra ranked neighbours per row, so that row subsets can be scored
    without recomputing kNN. `names` label the two inputs in error messages. `states`: a `StateCache` that
    keeps the states of sources with an identity (`probe.layer_source.source_identity`, e.g. a feature
    cache's layers) for the next pair that uses them. Returns (vision state, text state).
    """
    settings = AlignSettings.from_options(settings, **options)
    first_name, second_name = names
    specs = metric_specs(settings.metrics)
    torch_device = resolve_device(settings.device)
    vision_source, text_source = as_layer_source(vision, name=first_name), as_layer_source(text, name=second_name)
    num_rows = int(vision_source.num_rows)
    if int(text_source.num_rows) != num_rows:
        raise InputError(
            f"`{first_name}` has {num_rows} rows but `{second_name}` has {text_source.num_rows}; "
            "rows must be paired (same samples, same order)."
        )
    check_sizes(num_rows=num_rows, k=settings.k, specs=specs)
    num_layers = int(vision_source.num_layers) + int(text_source.num_layers)
    path_taken = choose_path(settings.path, num_rows=num_rows, num_layers=num_layers, specs=specs, device=torch_device)
    # The resolved plan of the per-layer work: the settings plus what was decided from them here.
    plan = ComputePlan(
        specs=tuple(specs),
        k=int(settings.k),
        path=path_taken,
        rbf_sigma=settings.rbf_sigma,
        spare_neighbours=spare_neighbours,
        denominator_epsilon=float(settings.denominator_epsilon),
        normalize_grams=settings.normalize and path_taken == "dense",
    )
    # On the dense path rows are normalised through their Grams (N x N work instead of N x D).
    normalize_features = settings.normalize and path_taken == "blocked"

    def state(source: LayerSource, name: str) -> ModalityState:
        def build() -> ModalityState:
            prepared = prepare_layers(
                source,
                name=name,
                clip_quantile=settings.clip_quantile,
                normalize=normalize_features,
                device=torch_device,
                progress=progress,
            )
            return build_state(prepared, name=name, plan=plan, progress=progress)

        identity = source_identity(source)
        if states is None or identity is None:
            return build()
        # Everything the per-layer work depends on besides the source: the plan, the preprocessing, the device.
        return states.get((identity, name, plan, settings.clip_quantile, settings.normalize, str(torch_device)), build)

    first_state = state(vision_source, first_name)
    return first_state, state(text_source, second_name)


def knn_family_matrices(
    first: NeighbourSets,
    second: NeighbourSets,
    specs: Sequence[MetricSpec],
    *,
    first_edges: Optional[OwnEdges] = None,
    second_edges: Optional[OwnEdges] = None,
    first_self: Optional[torch.Tensor] = None,
    second_self: Optional[torch.Tensor] = None,
    epsilon: float = 0.0,
) -> dict[str, torch.Tensor]:
    """kNN metrics and CKNNA of all layer pairs from the kNN sets of both sides, name -> float64 [La, Lb].

    One pass of edge lookups per first-side layer. CKNNA also needs both sides' values at their own edges
    (`OwnEdges`) and their self-similarities [La], [Lb] (`probe.align.cknna`).
    """
    knn_names = [spec.name for spec in specs if spec.family == "knn"]
    with_cknna = any(spec.family == "cknna" for spec in specs)
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in knn_names + (["cknna"] if with_cknna else [])}
    for lookups in edge_lookups(first, second, returning="cycle_knn" in knn_names):
        for name in knn_names:
            rows[name].append(_KNN_ROWS[name](lookups))
        if with_cknna:
            rows["cknna"].append(cknna_numerators(lookups, first, first_edges, second, second_edges))
    out = {name: torch.stack(values) for name, values in rows.items()}
    if with_cknna:
        out["cknna"] = cka_from_hsic(out["cknna"], first_self, second_self, epsilon=epsilon)
    return out


def knn_state_matrices(
    first: ModalityState, second: ModalityState, specs: Sequence[MetricSpec]
) -> dict[str, torch.Tensor]:
    """`knn_family_matrices` of two modality states."""
    return knn_family_matrices(
        first.neighbours,
        second.neighbours,
        specs,
        first_edges=first.self_terms.cknna_edges,
        second_edges=second.self_terms.cknna_edges,
        first_self=first.self_terms.cknna,
        second_self=second.self_terms.cknna,
        epsilon=first.plan.denominator_epsilon,
    )


def kernel_matrices(
    first: ModalityState, second: ModalityState, specs: Sequence[MetricSpec]
) -> dict[str, torch.Tensor]:
    """CKA (biased and/or unbiased) of all pairs: one products matrix per kernel shared by both."""
    out: dict[str, torch.Tensor] = {}
    epsilon = first.plan.denominator_epsilon
    for kernel in dict.fromkeys(spec.kernel for spec in specs if spec.family == "kernel"):
        left, right = first.kernel(kernel), second.kernel(kernel)
        products = kernel_products(left, right)
        for spec in specs:
            if spec.family != "kernel" or spec.kernel != kernel:
                continue
            if spec.unbiased:
                cross = unbiased_from_centred(products, left.centred_diagonals(), right.centred_diagonals())
                out[spec.name] = cka_from_hsic(
                    cross, first.self_terms.unbiased[kernel], second.self_terms.unbiased[kernel], epsilon=epsilon
                )
            else:
                out[spec.name] = cka_from_hsic(
                    products, first.self_terms.biased[kernel], second.self_terms.biased[kernel], epsilon=epsilon
                )
    return out


def pair_matrices(first: ModalityState, second: ModalityState) -> dict[str, torch.Tensor]:
    """Every metric of the plan for every layer pair: name -> float64 [L_first, L_second] (on the device).

    `metric(first layer a, second layer b)`; for cycle_knn the first modality's kNN sets are the ones
    a row must come back through.
    """
    specs = first.plan.specs
    out = {}
    if any(spec.family in ("knn", "cknna") for spec in specs):
        out.update(knn_state_matrices(first, second, specs))
    if any(spec.family == "kernel" for spec in specs):
        out.update(kernel_matrices(first, second, specs))
    return {spec.name: out[spec.name] for spec in specs}


def alignment_matrices(
    vision: LayerInput,
    text: LayerInput,
    settings: Optional[AlignSettings] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Several metrics for all (vision layer, text layer) pairs, sharing the per-layer work.

    `vision` is [N, Lv, Dv] and `text` [N, Lt, Dt] (numpy or torch, rows paired), or layer sources
    (`num_layers`, `num_rows`, `layer(i) -> [N, D]`, e.g. feature caches), read layer by layer.
    `settings` (`AlignSettings`; default PRH's) or any of its fields as keywords (`metrics=("cka",), k=5`)
    say what to compute: preprocessing as PRH (clamp each modality at the mean per-sample `clip_quantile`
    of |x|, then L2 rows), `k` for kNN metrics and CKNNA, `rbf_sigma`, `denominator_epsilon`, `path`
    ("auto", "dense" or "blocked"; module docstring) and `device`. Resampling fields are not used here.

    Returns metric name -> float64 array [Lv, Lt], entry [a, b] = metric(vision layer a, text layer b).
    Raises InputError for unknown metrics, unpaired or non-finite inputs, N <= k, N <= 3 (unbiased),
    constant layers (CKA), or a dense-only metric at a size beyond the dense budget.
    """
    settings = AlignSettings.from_options(settings, **options)
    vision_state, text_state = prepare_modalities(vision, text, settings, progress=progress)
    return {name: matrix.cpu().numpy() for name, matrix in pair_matrices(vision_state, text_state).items()}


def alignment_matrix(
    vision: LayerInput,
    text: LayerInput,
    settings: Optional[AlignSettings] = None,
    *,
    metric: MetricName = "mutual_knn",
    **options: Any,
) -> np.ndarray:
    """One metric for all layer pairs: float64 [Lv, Lt]. Arguments as `alignment_matrices`."""
    settings = AlignSettings.from_options(settings, **options, metrics=(metric,))
    return alignment_matrices(vision, text, settings)[metric]
