"""The per-layer work of one modality, done once: kNN lists and kernel summaries.

Every layer pair is scored from these states, never from the features again. A state can be
reordered (`permuted`, for the permutation null) or cut to a subset of rows (`restricted`, for
subsampling) without re-reading features:

- dense path: the N x N linear Gram of each layer (and RBF kernels when asked); kNN lists come from
  the Gram, and a row subset recomputes them from the sub-Gram;
- blocked path (large N): the prepared features; kNN lists by row blocks of X X^T with top-k, kept
  longer than k so that a row subset takes the first k survivors (recomputing the rare row whose
  list runs out).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from typing import Callable, Hashable, Literal, Optional

import torch

from probe.align.cknna import OwnEdges, cknna_self_similarity, own_edges
from probe.align.hsic import (
    FeatureStack,
    GramStack,
    KernelStack,
    centre_kernel_in_place,
    check_not_constant,
    check_stack_not_constant,
    kernel_summary,
    rbf_kernel,
    unbiased_self,
)
from probe.align.knn import NeighbourSets, ranked_neighbours, ranked_top
from probe.align.prep import PreparedLayers, normalize_gram_in_place
from probe.align.specs import MetricSpec
from probe.progress import ProgressCallback

ComputePath = Literal["dense", "blocked"]


@dataclass(frozen=True)
class ComputePlan:
    """What to compute per layer: for which metrics, with which k, on which path.

    `spare_neighbours` extra ranked neighbours are kept per row (for subsets, `probe.align.resample`).
    `denominator_epsilon` is added to CKA's and CKNNA's denominators (0: the definition; PRH: 1e-6).
    `normalize_grams`: the dense path's layers come unnormalised and their Grams are scaled to unit
    rows (the cheaper way to the same numbers).
    """

    specs: tuple[MetricSpec, ...]
    k: int
    path: ComputePath
    rbf_sigma: Optional[float] = None
    spare_neighbours: int = 0
    denominator_epsilon: float = 0.0
    normalize_grams: bool = False

    @property
    def needs_knn(self) -> bool:
        return any(spec.family in ("knn", "cknna") for spec in self.specs)

    @property
    def needs_rbf(self) -> bool:
        return any(spec.kernel == "rbf" for spec in self.specs)


@dataclass(frozen=True)
class SelfTerms:
    """Per-layer normalisers, unchanged by reordering rows: HSIC(K, K) biased and unbiased for each kernel
    in use (float64 [L], unbiased None when not needed), and CKNNA's sim(K, K) [L] with the kernel values at
    each layer's own kNN edges it came from (`cknna_edges`, which move with the rows)."""

    biased: dict[str, torch.Tensor]
    unbiased: dict[str, torch.Tensor]
    cknna: Optional[torch.Tensor]
    cknna_edges: Optional[OwnEdges] = None

    def permuted(self, order: torch.Tensor) -> "SelfTerms":
        """The terms after reordering rows: the normalisers stay, the own edges move with their rows."""
        return replace(self, cknna_edges=None if self.cknna_edges is None else self.cknna_edges.permuted(order))


@dataclass(frozen=True)
class ModalityState:
    """One modality after the per-layer work. `linear` is a GramStack (dense) or FeatureStack (blocked)."""

    name: str
    plan: ComputePlan
    linear: KernelStack
    neighbours: Optional[NeighbourSets]
    rbf: Optional[GramStack]
    clip: Optional[float]
    self_terms: SelfTerms

    def kernel(self, name: str) -> KernelStack:
        """The kernel stack called `name` ("linear" or "rbf")."""
        stack = self.linear if name == "linear" else self.rbf
        if stack is None:
            raise ValueError(f"{self.name} has no {name} kernels; the plan did not ask for them")
        return stack

    @property
    def num_rows(self) -> int:
        return self.linear.num_rows

    @property
    def num_layers(self) -> int:
        return self.linear.num_layers

    @property
    def device(self) -> torch.device:
        return self.linear.device

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors this state holds (kernels or features, kNN lists, CKNNA's edges)."""
        return _tensor_bytes(self)

    def permuted(self, order: torch.Tensor) -> "ModalityState":
        """The state with rows reordered: new row i is row `order[i]` (int64 [N] on the state's device)."""
        return replace(
            self,
            linear=self.linear.permuted(order),
            neighbours=None if self.neighbours is None else self.neighbours.permuted(order),
            rbf=None if self.rbf is None else self.rbf.permuted(order),
            self_terms=self.self_terms.permuted(order),
        )

    def restricted(self, rows: torch.Tensor) -> "ModalityState":
        """The state of the sub-dataset `rows` (sorted int64 row indices).

        Dense: each layer's raw sub-kernel is rebuilt from the stored centred kernel and goes through
        the same per-layer work as at build time. Blocked: the features are cut and the kNN lists
        taken from the longer ranked lists.
        """
        if isinstance(self.linear, GramStack):
            parent = self.linear
            rbf_parent = self.rbf
            linear, neighbours, rbf = _dense_work(
                parent.num_layers,
                rows.numel(),
                rows.device,
                fill_raw=lambda index, out: parent.raw_submatrix(index, rows, out),
                fill_rbf=None
                if rbf_parent is None
                else lambda index, gram, out: rbf_parent.raw_submatrix(index, rows, out),
                plan=self.plan,
                name=self.name,
            )
        else:
            linear = self.linear.restricted(rows)
            check_stack_not_constant(linear, name=self.name)
            neighbours = None
            if self.plan.needs_knn:
                neighbours = _restricted_neighbours(self.neighbours, linear, rows, k=self.plan.k)
            rbf = None
        self_terms = compute_self_terms(self.plan, linear, neighbours, rbf, name=self.name)
        return replace(self, linear=linear, neighbours=neighbours, rbf=rbf, self_terms=self_terms)


def compute_self_terms(
    plan: ComputePlan,
    linear: KernelStack,
    neighbours: Optional[NeighbourSets],
    rbf: Optional[GramStack],
    *,
    name: str,
) -> SelfTerms:
    """The normalisers of every kernel metric in `plan` (and CKNNA's, which checks they are positive)."""
    biased: dict[str, torch.Tensor] = {}
    unbiased: dict[str, torch.Tensor] = {}
    for spec in plan.specs:
        if spec.family != "kernel" or spec.kernel in biased:
            continue
        stack = linear if spec.kernel == "linear" else rbf
        diagonals = stack.centred_diagonals()
        biased[spec.kernel] = stack.self_products()
        if any(other.unbiased and other.kernel == spec.kernel for other in plan.specs):
            unbiased[spec.kernel] = unbiased_self(biased[spec.kernel], diagonals)
    cknna = edges = None
    if any(spec.family == "cknna" for spec in plan.specs):
        edges = own_edges(neighbours, linear)
        cknna = cknna_self_similarity(neighbours, edges, name=name)
    return SelfTerms(biased=biased, unbiased=unbiased, cknna=cknna, cknna_edges=edges)


def _ranked_from_gram(gram: torch.Tensor, *, count: int) -> torch.Tensor:
    """Ranked kNN lists [N, count] from a raw Gram [N, N], used in place (its diagonal is restored)."""
    diagonal = gram.diagonal().clone()
    ranked = ranked_neighbours(lambda start, stop: gram[start:stop], num_rows=gram.shape[0], count=count)
    gram.diagonal().copy_(diagonal)
    return ranked


def feature_neighbours(features: FeatureStack, *, count: int, k: int) -> NeighbourSets:
    """kNN lists [L, N, count] of every layer by row blocks of X X^T (no N x N matrix)."""
    ranked = []
    for index in range(features.num_layers):
        layer = features.layer(index)
        ranked.append(
            ranked_neighbours(lambda start, stop, x=layer: x[start:stop] @ x.T, num_rows=layer.shape[0], count=count)
        )
    return NeighbourSets(ranked=torch.stack(ranked), k=k)


def _restricted_neighbours(
    neighbours: NeighbourSets, features: FeatureStack, rows: torch.Tensor, *, k: int
) -> NeighbourSets:
    """kNN lists among `rows` from the longer ranked lists; rows whose list ran out are recomputed."""
    subset, short = neighbours.restricted(rows)
    ranked = subset.ranked.clone()
    for index in range(features.num_layers):
        missing = short[index].nonzero().squeeze(1)
        if missing.numel() == 0:
            continue
        layer = features.layer(index)
        scores = layer[missing] @ layer.T
        scores[torch.arange(missing.numel(), device=missing.device), missing] = float("-inf")
        ranked[index, missing] = ranked_top(scores, k)
    return NeighbourSets(ranked=ranked, k=k)


def _dense_work(
    num_layers: int,
    num_rows: int,
    device: torch.device,
    *,
    fill_raw: Callable[[int, torch.Tensor], object],
    fill_rbf: Optional[Callable[[int, torch.Tensor, torch.Tensor], object]],
    plan: ComputePlan,
    name: str,
    progress: Optional[ProgressCallback] = None,
) -> tuple[GramStack, Optional[NeighbourSets], Optional[GramStack]]:
    """The per-layer work of the dense path: each raw kernel, written by `fill_raw(layer, out [N, N])`,
    is checked for constancy, gives its kNN lists (and RBF kernel, by `fill_rbf(layer, gram, out)`),
    then is centred in place. Returns (linear stack, kNN sets or None, RBF stack or None).
    """
    # One buffer for all kernels, each centred in place once used raw: raw and centred never coexist.
    grams = torch.empty(num_layers, num_rows, num_rows, dtype=torch.float32, device=device)
    rbf_raw = torch.empty_like(grams) if fill_rbf is not None else None
    ranked, summaries, squares = [], [], []
    for index in range(num_layers):
        gram = grams[index]
        fill_raw(index, gram)
        row_means, trace = kernel_summary(gram)
        check_not_constant((trace - num_rows * row_means.mean())[None], trace[None], name=name, first_layer=index)
        if plan.needs_knn:
            # Longer than k when subsets will be scored: they take each row's first k surviving neighbours.
            ranked.append(_ranked_from_gram(gram, count=min(plan.k + plan.spare_neighbours, num_rows - 1)))
        if rbf_raw is not None:
            fill_rbf(index, gram, rbf_raw[index])
        squares.append(centre_kernel_in_place(gram, row_means))
        summaries.append((row_means, trace))
        if progress is not None:
            progress(index + 1, num_layers, f"kernels {name}")
    linear = GramStack.from_centred(
        grams,
        row_means=torch.stack([means for means, _ in summaries]),
        raw_traces=torch.stack([trace for _, trace in summaries]),
        self_products=torch.stack(squares),
    )
    neighbours = NeighbourSets(ranked=torch.stack(ranked), k=plan.k) if plan.needs_knn else None
    rbf = None if rbf_raw is None else GramStack.centre_in_place(rbf_raw)
    return linear, neighbours, rbf


def build_state(
    prepared: PreparedLayers, *, name: str, plan: ComputePlan, progress: Optional[ProgressCallback] = None
) -> ModalityState:
    """Do the per-layer work for one prepared modality.

    Consumes `prepared.layers` on the dense path (each layer is dropped once its Gram is made, so
    features and Grams of all layers are never held together). Raises InputError naming `name` for a
    layer that is constant across rows (undefined for every metric).
    """
    layers = prepared.layers
    total = len(layers)
    if plan.path == "dense":

        def fill_raw(index: int, out: torch.Tensor) -> None:
            torch.matmul(layers[index], layers[index].T, out=out)
            layers[index] = None  # type: ignore[call-overload]
            if plan.normalize_grams:
                normalize_gram_in_place(out)

        def fill_rbf(index: int, gram: torch.Tensor, out: torch.Tensor) -> None:
            out.copy_(rbf_kernel(gram, sigma=plan.rbf_sigma, name=name, layer=index))

        linear, neighbours, rbf = _dense_work(
            total,
            layers[0].shape[0],
            layers[0].device,
            fill_raw=fill_raw,
            fill_rbf=fill_rbf if plan.needs_rbf else None,
            plan=plan,
            name=name,
            progress=progress,
        )
    else:
        linear = FeatureStack.from_layers(list(layers))
        check_stack_not_constant(linear, name=name)
        count = min(plan.k + plan.spare_neighbours, linear.num_rows - 1)
        neighbours = feature_neighbours(linear, count=count, k=plan.k) if plan.needs_knn else None
        rbf = None
        if progress is not None:
            progress(total, total, f"kernels {name}")
    self_terms = compute_self_terms(plan, linear, neighbours, rbf, name=name)
    return ModalityState(
        name=name, plan=plan, linear=linear, neighbours=neighbours, rbf=rbf, clip=prepared.clip, self_terms=self_terms
    )


def _tensor_bytes(value: object) -> int:
    """Bytes of every tensor reachable through dataclass fields, tuples and dicts of `value`."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if hasattr(value, "__dataclass_fields__"):
        return sum(_tensor_bytes(getattr(value, f.name)) for f in fields(value))
    return 0


class StateCache:
    """Modality states kept across the pairs of a run, so that a model paired with several others is read,
    preprocessed and given its per-layer work once (a text model aligned with five vision models: once, not
    five times). Holds at most `budget_bytes` of states; the least recently used go first, and a state larger
    than the budget is built and used but not kept."""

    def __init__(self, *, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self._held: OrderedDict[Hashable, ModalityState] = OrderedDict()
        self.hits = 0

    @property
    def nbytes(self) -> int:
        return sum(state.nbytes for state in self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: Hashable, build: Callable[[], ModalityState]) -> ModalityState:
        """The state kept under `key`, else `build()` (kept when it fits)."""
        if key in self._held:
            self._held.move_to_end(key)
            self.hits += 1
            return self._held[key]
        state = build()
        size = state.nbytes
        if size <= self.budget_bytes:
            while self._held and self.nbytes + size > self.budget_bytes:
                self._held.popitem(last=False)
            self._held[key] = state
        return state
