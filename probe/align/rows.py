"""Per-row agreement at a metric's best layer pair: where two models agree, not only how much.

For each metric, row i gets a value whose mean over the N rows is the metric's score at that layer pair (to float
rounding), so a row's value is its share of the score:

- mutual_knn: |kNN_a(i) & kNN_b(i)| / k; jaccard_knn: that overlap over the union; cycle_knn: 1 when i comes back
  through one of its b-neighbours, else 0. Exact: the score is the mean of these.
- cka, rbf_cka (biased HSIC): N sum_j Kc_ij Lc_ij / (sqrt(HSIC(K, K) HSIC(L, L)) + epsilon), row i's terms of
  <Kc, Lc> = tr(K H L H).
- unbiased_cka, unbiased_rbf_cka: row i's terms of the unbiased HSIC written on the centred kernels (see
  `probe.align.hsic`): sum_j Kc_ij Lc_ij - n/(n-2) d_K,i d_L,i + d_K,i t_L / ((n-1)(n-2)), the product of the
  traces split by the first kernel's diagonal; over N(N-3) and the normaliser, times N.
- cknna: row i's terms of HSIC_u(M o K, M o L) on the shared edges: those of tr(PQ) and 1'PQ1 whose first index is
  i, and (P1)_i 1'Q1 for the product of totals; over N(N-3) and the normaliser, times N.

The kernel metrics' values can be negative (a row can pull the score down); only the kNN metrics' are fractions.
The kNN lists of both layers are kept beside the values (`RowAgreement`), so a reader can show a row's neighbours
in each space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probe.align.hsic import FEATURE_CHUNK_ROWS, FeatureStack, GramStack
from probe.align.knn import EdgeMembership, ranked_neighbours
from probe.align.state import ModalityState


@dataclass(frozen=True)
class RowAgreement:
    """One metric's per-row values at its best layer pair `pair` (positions in the two layer stacks):
    `scores` float64 [N] (mean = the score), and each side's k nearest rows at its layer, best first:
    `first_neighbours`, `second_neighbours` int32 [N, k] (row numbers)."""

    metric: str
    pair: tuple[int, int]
    scores: np.ndarray
    first_neighbours: np.ndarray
    second_neighbours: np.ndarray


def _layer_neighbours(state: ModalityState, layer: int) -> torch.Tensor:
    """The k nearest rows [N, k] of each row at `layer` of `state`: its kNN lists when the plan made them, else
    ranked here from the layer's kernel (dense) or features (blocked)."""
    if state.neighbours is not None:
        return state.neighbours.indices[layer]
    k, stack = state.plan.k, state.linear
    rows = torch.arange(state.num_rows, device=state.device)
    if isinstance(stack, GramStack):
        similarity = lambda start, stop: stack.stored_values(layer, rows[start:stop, None], rows[None, :])  # noqa: E731
    else:
        features = stack.layer(layer)
        similarity = lambda start, stop: features[start:stop] @ features.T  # noqa: E731
    return ranked_neighbours(similarity, num_rows=state.num_rows, count=k)


def _knn_rows(metric: str, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-row values of a kNN metric from the lists [N, k] of the first and second layer: float64 [N]."""
    num_rows, k = first.shape
    rows = torch.arange(num_rows, device=first.device)
    edges = EdgeMembership(num_rows=num_rows, device=first.device).load(first)
    if metric == "cycle_knn":
        return edges.contains(second, rows[:, None]).any(dim=1).double()
    common = edges.contains(rows[:, None], second).double().sum(dim=1)
    return common / k if metric == "mutual_knn" else common / (2 * k - common)


def _centred_row_products(left: object, right: object, a: int, b: int) -> torch.Tensor:
    """sum_j Kc_ij Lc_ij for every row i of layers a (left) and b (right): float64 [N]."""
    if isinstance(left, GramStack) and isinstance(right, GramStack):
        out = torch.empty(left.num_rows, dtype=torch.float64, device=left.device)
        for start in range(0, left.num_rows, FEATURE_CHUNK_ROWS):
            stop = min(start + FEATURE_CHUNK_ROWS, left.num_rows)
            out[start:stop] = (left.centred[a, start:stop].double() * right.centred[b, start:stop].double()).sum(1)
        return out
    if isinstance(left, FeatureStack) and isinstance(right, FeatureStack):
        # Kc_ij = xc_i . xc_j, so sum_j Kc_ij Lc_ij = xc_i^T (Xc^T Yc) yc_i: no N x N.
        num_rows = left.num_rows
        chunks = [
            (start, min(start + FEATURE_CHUNK_ROWS, num_rows)) for start in range(0, num_rows, FEATURE_CHUNK_ROWS)
        ]
        cross = sum(left.centred_chunk(a, s, e).double().T @ right.centred_chunk(b, s, e).double() for s, e in chunks)
        out = torch.empty(num_rows, dtype=torch.float64, device=left.device)
        for start, stop in chunks:
            x, y = left.centred_chunk(a, start, stop).double(), right.centred_chunk(b, start, stop).double()
            out[start:stop] = ((x @ cross) * y).sum(dim=1)
        return out
    raise TypeError("per-row kernel terms need two GramStacks or two FeatureStacks")


def _kernel_rows(first: ModalityState, second: ModalityState, metric: str, a: int, b: int) -> torch.Tensor:
    """Per-row values of a CKA-family metric at layers (a, b): float64 [N] (module docstring)."""
    spec = next(s for s in first.plan.specs if s.name == metric)
    left, right = first.kernel(spec.kernel), second.kernel(spec.kernel)
    terms = _centred_row_products(left, right, a, b)
    n = first.num_rows
    epsilon = first.plan.denominator_epsilon
    if not spec.unbiased:
        scale = torch.sqrt(first.self_terms.biased[spec.kernel][a] * second.self_terms.biased[spec.kernel][b])
        return n * terms / (scale + epsilon)
    left_diagonal, right_diagonal = left.centred_diagonals()[a], right.centred_diagonals()[b]
    terms = (
        terms
        - n / (n - 2) * left_diagonal * right_diagonal
        + left_diagonal * right_diagonal.sum() / ((n - 1) * (n - 2))
    )
    scale = torch.sqrt(first.self_terms.unbiased[spec.kernel][a] * second.self_terms.unbiased[spec.kernel][b])
    return n * (terms / (n * (n - 3))) / (scale + epsilon)


def _cknna_rows(first: ModalityState, second: ModalityState, a: int, b: int) -> torch.Tensor:
    """Per-row values of CKNNA at layers (a, b): float64 [N] (module docstring; the sums as
    `probe.align.cknna.edge_hsic` takes them, grouped by the edge's first row)."""
    first_lists, second_lists = first.neighbours.indices[a], second.neighbours.indices[b]
    first_edges, second_edges = first.self_terms.cknna_edges, second.self_terms.cknna_edges
    n = first.num_rows
    rows = torch.arange(n, device=first_lists.device)
    edges = EdgeMembership(num_rows=n, device=first_lists.device).load(first_lists)
    row, slot = edges.contains(rows[:, None], second_lists).nonzero(as_tuple=True)
    col = second_lists[row, slot]
    position = edges.slots(row * n + col)
    p = first_edges.values[a, row, position]
    q = second_edges.values[b, row, slot]
    both = edges.contains(col, row) & second_edges.reciprocal[b, row, slot]
    zeros = torch.zeros(n, dtype=torch.float64, device=p.device)
    q_rows = zeros.index_add(0, row, q)
    trace = zeros.index_add(0, row, p * q * both)
    chained = zeros.index_add(0, row, p * q_rows[col])
    totals = zeros.index_add(0, row, p) * q_rows.sum()
    terms = (trace + totals / ((n - 1) * (n - 2)) - 2 * chained / (n - 2)) / (n * (n - 3))
    scale = torch.sqrt(first.self_terms.cknna[a] * second.self_terms.cknna[b])
    return n * terms / (scale + first.plan.denominator_epsilon)


def row_agreement(first: ModalityState, second: ModalityState, *, metric: str, pair: tuple[int, int]) -> RowAgreement:
    """`metric`'s per-row values at layer pair `pair` = (first layer, second layer) of two modality states (as
    built, rows not reordered), with both layers' kNN lists."""
    a, b = pair
    spec = next(s for s in first.plan.specs if s.name == metric)
    first_lists, second_lists = _layer_neighbours(first, a), _layer_neighbours(second, b)
    if spec.family == "knn":
        scores = _knn_rows(metric, first_lists, second_lists)
    elif spec.family == "cknna":
        scores = _cknna_rows(first, second, a, b)
    else:
        scores = _kernel_rows(first, second, metric, a, b)
    return RowAgreement(
        metric=metric,
        pair=(int(a), int(b)),
        scores=scores.cpu().numpy(),
        first_neighbours=first_lists.to(torch.int32).cpu().numpy(),
        second_neighbours=second_lists.to(torch.int32).cpu().numpy(),
    )
