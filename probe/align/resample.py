"""Resampled scores of all layer pairs, from the per-layer state the observed score already built.

The permutation null re-pairs the rows and the subsample intervals keep a subset of them. Neither changes a
modality's per-layer work (centred kernels, ranked kNN lists, self terms), so `Resampler` reuses it:

- Kernel metrics on the dense path. HSIC(K_a, P L_b P^T) = <P^T Kc_a P, Lc_b>: the side with fewer layers is
  gathered in the permuted order, for a batch of permutations at once, and one float32 product
  [B L_small, E] x [E, L_big] per slab of kernel entries (summed in float64 across slabs) gives every pair; the
  kernels being symmetric, E runs over their upper triangles (`KernelPair`). On a subset
  S of n rows, H_S Kc_SS H_S is the subset's own centred kernel (centring removes the full set's means), so
  <Kc^S, Lc^S> = <Kc_a o ww^T, Lc_b> - 2/n r_a.r_b + s_a s_b / n^2, where w marks S, r are the row sums
  of Kc restricted to S and s their totals: the small side is masked instead of gathered, and the self terms
  and diagonals come from the same row sums.
- kNN metrics and CKNNA. A permutation relabels one side's kNN lists; each layer's kernel values at its own
  edges and its reciprocal flags move with the rows, so they are computed once. On the dense path the side
  with more layers keeps its edges in one bit table (`probe.align.layer_masks.LayerMasks`, built once), and
  the other side's relabelled edges are looked up there, one lookup answering for every layer: a
  re-pairing shares few edges, so its cost is about L_small N k lookups. A subset takes each row's first k
  surviving neighbours from lists ranked longer than k (`ComputePlan.spare_neighbours`), re-ranked by the
  subset kernel's values as `ModalityState.restricted` computes them where near-ties could fall otherwise; a
  row whose list runs out is ranked again from its kernel row. Its edges' kernel values come from the
  candidates' (computed once); the pairs are scored by the per-layer lookups (a subset shares as many edges
  as the score says, and those lookups read them more cheaply than the table).
- Blocked path (large N, features instead of kernels): kNN and CKNNA as above under permutations; linear CKA
  as the feature products of `probe.align.hsic` (O(N Da Db) a pair, no N x N); subsets as
  `ModalityState.restricted`.

The reference is `ModalityState.permuted` / `restricted` followed by `probe.align.engine.pair_matrices`,
which rebuild each resample from scratch: the same permutations and subsets give the same numbers to float
rounding (tests/test_align/test_resample.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from probe.align.cknna import OwnEdges, cknna_self_similarity
from probe.align.engine import kernel_matrices, knn_family_matrices, pair_matrices
from probe.align.hsic import GramStack, check_not_constant, cka_from_hsic, unbiased_from_centred, unbiased_self
from probe.align.knn import NeighbourSets, ranked_top
from probe.align.layer_masks import MASKED_METRICS, LayerMasks, QueryEdges, mask_bytes, masked_knn_matrices
from probe.align.specs import MetricSpec
from probe.align.state import ModalityState

# Kernel entries per slab: float32 partial sums over at most this many products, then float64.
SLAB_ENTRIES = 2**18
# On a CPU, a slab's gathered or masked small side [R, B, L_small] takes at most this many bytes, so that it is
# still in cache when multiplied (measured at the demo's shape: 7.8 ms a re-pairing at 6 MiB, 14.7 at 256 MiB).
CPU_SLAB_BYTES = 2**23
# Bytes of the gathered or masked small side [L_small, B, slab] held at once.
BATCH_BYTES = 256 * 2**20
# The big side's upper triangles are packed (half the entries to gather and multiply) while the packed copies and
# their index arrays take at most this many bytes; beyond, whole kernels are read.
PACKED_BYTES = 2**30
# Resamples scored together on the dense path: beyond, the products are as fast per resample; only memory grows.
MAX_BATCH = 64
# Re-pairings whose relabelled kNN lists are stacked into one second side (each takes about 17 bytes per edge), by
# device kind: on a GPU it saves a kernel launch and a sync per layer and re-pairing; on a CPU the larger arrays
# fall out of cache and one at a time is faster (measured: 27 vs 18 ms a re-pairing at the demo's shape).
KNN_BATCH = {"cuda": 16}
# kNN metrics from `LayerMasks` (dense path) while one side's masks take at most this many bytes; beyond, the
# edge lookups of `knn_family_matrices`.
MASK_BYTES = 2**28
# Re-pairings scored together from the masks: at most this many (pairing, layer pair, row) sums held at once.
MASK_BATCH_ENTRIES = 2**22


def _oriented(first: GramStack, second: GramStack) -> tuple[GramStack, GramStack, bool]:
    """(small, big, swapped): the stack with fewer layers first; `swapped` when that is `second`."""
    if first.num_layers <= second.num_layers:
        return first, second, False
    return second, first, True


class KernelPair:
    """One kernel ("linear" or "rbf") of both sides on the dense path, set up for resampled products
    <Kc_a, Lc_b> of every layer pair: the side with fewer layers is gathered (permutations) or masked (subsets),
    the other read as stored.

    Kernels are symmetric, so <K, L> = sum over i <= j of w_ij K_ij L_ij with w = 2 off the diagonal. When it fits
    PACKED_BYTES, each side's upper triangles are packed once (the big side's with w folded in), and a resample
    touches N(N+1)/2 entries a layer instead of N^2. The small side is held entry-major ([entries, L_small]), so
    a gathered entry brings all its layers in one cache line and a slab of B resamples is one [R, B L_small]
    matrix, multiplied by the big side's [L_big, R] in one product.
    """

    def __init__(self, first: GramStack, second: GramStack) -> None:
        small, big, self.swapped = _oriented(first, second)
        n = self.num_rows = big.num_rows
        self.small_layers, self.big_layers = small.num_layers, big.num_layers
        # [N^2, Ls]: what a re-pairing gathers from.
        self.small_entries = small.centred.reshape(small.num_layers, n * n).T.contiguous()
        entries = n * (n + 1) // 2
        self.packed = 4 * entries * (small.num_layers + big.num_layers) + 16 * entries <= PACKED_BYTES
        if self.packed:
            self.rows, self.cols = torch.triu_indices(n, n, device=big.device)
            keys = self.rows * n + self.cols
            weight = torch.where(self.rows == self.cols, 1.0, 2.0).to(big.centred.dtype)
            self.big = big.centred.reshape(big.num_layers, n * n)[:, keys] * weight
            self.small = self.small_entries[keys]  # [E, Ls]: what a subset masks
        else:
            self.rows = self.cols = None
            self.big = big.centred.reshape(big.num_layers, n * n)
            self.small = self.small_entries

    def _entries(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column [R] of the kernel entries start:stop of the products' layout."""
        if self.packed:
            return self.rows[start:stop], self.cols[start:stop]
        index = torch.arange(start, stop, device=self.big.device)
        return index // self.num_rows, index % self.num_rows

    def _products(self, small_slab, batch: int) -> torch.Tensor:
        """Sum over slabs of entries of small_slab(start, stop) [R, B, Ls] x the big side's [Lg, R]^T, as float64
        [B, La, Lb] (first side's layers first)."""
        total = torch.zeros(self.big_layers, batch * self.small_layers, dtype=torch.float64, device=self.big.device)
        entries = self.big.shape[1]
        held = CPU_SLAB_BYTES if self.big.device.type == "cpu" else BATCH_BYTES
        step = max(1, min(SLAB_ENTRIES, held // (4 * batch * self.small_layers)))
        for start in range(0, entries, step):
            stop = min(start + step, entries)
            right = small_slab(start, stop).reshape(stop - start, batch * self.small_layers)
            # [Lg, R] x [R, B Ls]: this operand order runs 4x faster on a CPU than its transpose (measured)
            total += (self.big[:, start:stop] @ right).double()
        products = total.T.reshape(batch, self.small_layers, self.big_layers)
        return products.transpose(1, 2) if self.swapped else products

    def permuted(self, orders: torch.Tensor) -> torch.Tensor:
        """<Kc_a, Lc_b reordered> for every pair and order: float64 [B, La, Lb]. `orders` [B, N] reorder the second
        side (its new row i is stored row order[i]); when the first side is the small one it is reordered by the
        inverse order instead, which gives the same sums."""
        gather = orders if self.swapped else torch.argsort(orders, dim=1)
        batch, n = gather.shape
        by_row = gather.T.contiguous()  # [N, B]: a slab's positions come out [R, B]
        if n * n < 2**31:  # int32 positions: a tenth of the time of building them in int64 on a CPU
            by_row = by_row.to(torch.int32)

        def slab(start: int, stop: int) -> torch.Tensor:
            rows, cols = self._entries(start, stop)
            positions = by_row[rows] * n + by_row[cols]
            return self.small_entries.index_select(0, positions.view(-1))

        return self._products(slab, batch)

    def masked(self, weights: torch.Tensor) -> torch.Tensor:
        """<Kc_a o w w^T, Lc_b> for every pair and weight vector: float64 [B, La, Lb] (weights [B, N], 0/1)."""
        batch = weights.shape[0]
        by_row = weights.to(self.small.dtype).T.contiguous()  # [N, B]

        def slab(start: int, stop: int) -> torch.Tensor:
            rows, cols = self._entries(start, stop)
            mask = by_row[rows] * by_row[cols]  # [R, B]
            return self.small[start:stop, None, :] * mask[:, :, None]

        return self._products(slab, batch)


@dataclass(frozen=True)
class SubsetTerms:
    """One GramStack's centred kernels re-centred on B row subsets (weights w [B, N], n rows each), float64:
    `row_sums` r [B, L, N] (Kc_SS row sums, zero off the subset), `totals` s [B, L], `self_products`
    <Kc^S, Kc^S> [B, L], `diagonals` diag(Kc^S) [B, L, N] (zero off the subset), and `raw_traces` tr(K_SS)
    [B, L] for the constancy check."""

    row_sums: torch.Tensor
    totals: torch.Tensor
    self_products: torch.Tensor
    diagonals: torch.Tensor
    raw_traces: torch.Tensor

    @property
    def centred_traces(self) -> torch.Tensor:
        return self.diagonals.sum(dim=-1)


def subset_terms(stack: GramStack, weights: torch.Tensor, *, num_rows: int) -> SubsetTerms:
    """`SubsetTerms` of `stack` (as built, no pending order) for weights [B, N] marking subsets of `num_rows`."""
    n = num_rows
    w = weights.double()
    sums, squares = [], []
    for index in range(stack.num_layers):
        kernel = stack.centred[index].double()
        sums.append(kernel @ w.T)
        squares.append(kernel.square() @ w.T)
    row_sums = torch.stack(sums, dim=1).permute(2, 1, 0) * w[:, None, :]  # [B, L, N]
    inner = (torch.stack(squares, dim=1).permute(2, 1, 0) * w[:, None, :]).sum(dim=-1)  # w^T (Kc o Kc) w
    totals = row_sums.sum(dim=-1)
    self_products = inner - 2.0 / n * row_sums.square().sum(dim=-1) + totals.square() / n**2
    stored_diagonals = torch.diagonal(stack.centred, dim1=1, dim2=2).double()  # [L, N]
    diagonals = (stored_diagonals[None] - 2.0 * row_sums / n + (totals / n**2)[..., None]) * w[:, None, :]
    raw_diagonals = stored_diagonals + 2.0 * stack.row_means - stack.grand_means[:, None]
    return SubsetTerms(
        row_sums=row_sums,
        totals=totals,
        self_products=self_products,
        diagonals=diagonals,
        raw_traces=w @ raw_diagonals.T,
    )


def _subset_kernel_values(stack: GramStack, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """K[rows[i], cols[l, i, s]] for every layer l, float32 [L, n, K], as `GramStack.raw_submatrix` builds the
    subset kernel (the same operations in the same order, so the same bits): the centred entry, plus the row's
    mean, plus the column's, minus the grand mean. `rows` [n] and `cols` [L, n, K] are stored row numbers."""
    layers, num_rows = stack.num_layers, stack.centred.shape[1]
    means = stack.row_means.to(stack.centred.dtype)
    flat_cols = cols.reshape(layers, -1)
    keys = (rows[None, :, None] * num_rows + cols).reshape(layers, -1)
    values = stack.centred.reshape(layers, -1).gather(1, keys).view_as(cols)
    values = values + means[:, rows][:, :, None]
    values = values + means.gather(1, flat_cols).view_as(cols)
    return values - stack.grand_means.to(values.dtype)[:, None, None]


def candidate_values(neighbours: NeighbourSets, stack: GramStack) -> torch.Tensor:
    """The kernel values [L, N, K] float32 of every row's ranked candidates, as any subset kernel holds them:
    `ModalityState.restricted` rebuilds a subset's kernel from the stored centred kernel and the full set's
    means, so an entry's value does not depend on the subset and is computed once."""
    rows = torch.arange(neighbours.num_rows, device=neighbours.ranked.device)
    return _subset_kernel_values(stack, rows, neighbours.ranked)


def candidate_edge_values(neighbours: NeighbourSets, stack: GramStack) -> torch.Tensor:
    """The raw kernel values float64 [L, N, K] of every row's ranked candidates, as `GramStack.stored_values`
    gives them (the values CKNNA reads at a subset's edges)."""
    rows = torch.arange(neighbours.num_rows, device=neighbours.ranked.device)[:, None]
    return torch.stack([stack.stored_values(layer, rows, ranked) for layer, ranked in enumerate(neighbours.ranked)])


@dataclass(frozen=True)
class RankedCandidates:
    """What every subset reads of one side's ranked kNN candidates [L, N, K], made once: `values` float32
    (`candidate_values`), `ordered` bool [L, N] (a row's values strictly decrease along its list, so no
    subset can order its survivors otherwise), and `edge_values` float64 (`candidate_edge_values`; None when
    CKNNA is not asked for)."""

    values: torch.Tensor
    ordered: torch.Tensor
    edge_values: Optional[torch.Tensor] = None

    @classmethod
    def of(cls, neighbours: NeighbourSets, stack: GramStack, *, with_edge_values: bool) -> "RankedCandidates":
        values = candidate_values(neighbours, stack)
        return cls(
            values=values,
            ordered=(values[..., :-1] > values[..., 1:]).all(dim=2),
            edge_values=candidate_edge_values(neighbours, stack) if with_edge_values else None,
        )


def subset_neighbours(
    neighbours: NeighbourSets,
    stack: GramStack,
    rows: torch.Tensor,
    *,
    candidates: Optional[RankedCandidates] = None,
) -> tuple[NeighbourSets, Optional[torch.Tensor]]:
    """The kNN sets among `rows` (sorted int64 [n]), numbered within the subset: [L, n, k].

    Each row keeps the first k candidates of its ranked list [L, N, K] that lie in the subset. Where the
    subset kernel's values (as `ModalityState.restricted` ranks them) could order the survivors otherwise (a
    survivor left out is at least as close as one kept: near-ties, in which rounding or the lower-index rule
    decides; only rows whose candidates' values are not strictly decreasing can have them) or fewer than k
    survive, the row is ranked again over its whole subset kernel row, exactly as `ModalityState.restricted`
    does. The sets are then its sets; only their order within a row may differ, which no metric reads.
    `candidates`: `RankedCandidates.of(neighbours, stack, ...)`, when the caller keeps them.

    Returns the sets and, when `candidates.edge_values` is there, the raw kernel values at the subset's
    edges, float64 [L, n, k] (as `OwnEdges.values`; else None).
    """
    if candidates is None:
        candidates = RankedCandidates.of(neighbours, stack, with_edge_values=False)
    k, total, n = neighbours.k, neighbours.num_rows, int(rows.numel())
    layers = neighbours.ranked.shape[0]
    new_index = torch.full((total,), -1, dtype=torch.long, device=rows.device)
    new_index[rows] = torch.arange(n, device=rows.device)
    # index_select and take rather than indexing: several times faster on a CPU
    mapped = torch.take(new_index, neighbours.ranked.index_select(1, rows))  # [L, n, K]
    alive = mapped >= 0
    count = alive.cumsum(dim=2)
    keep = alive & (count <= k)
    slot = torch.where(keep, count - 1, k)
    ranked = torch.zeros(layers, n, k + 1, dtype=torch.long, device=rows.device).scatter_(2, slot, mapped)[..., :k]
    own = None
    if candidates.edge_values is not None:
        own = torch.zeros(layers, n, k + 1, dtype=torch.float64, device=rows.device)
        own = own.scatter_(2, slot, candidates.edge_values.index_select(1, rows))[..., :k]
    suspect = count[:, :, -1] < k
    layer, row = (~candidates.ordered.index_select(1, rows)).nonzero(as_tuple=True)
    if layer.numel():
        values = candidates.values[layer, rows[row]]  # [F, K]
        kept, live = keep[layer, row], alive[layer, row]
        weakest_kept = values.masked_fill(~kept, float("inf")).amin(dim=1)
        strongest_left = values.masked_fill(kept | ~live, float("-inf")).amax(dim=1)
        suspect[layer, row] |= strongest_left >= weakest_kept
    for layer, row in suspect.nonzero().tolist():
        scores = _subset_kernel_values(stack, rows[row : row + 1], rows[None, None, :].expand(layers, 1, n))[layer]
        scores[0, row] = float("-inf")
        ranked[layer, row] = ranked_top(scores, k)[0]
        if own is not None:
            own[layer, row] = stack.stored_values(layer, rows[row], rows[ranked[layer, row]])
    return NeighbourSets(ranked=ranked, k=k), own


def _stack(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([part[name] for part in parts]) for name in parts[0]}


class Resampler:
    """Every metric of two modality states' plan for every layer pair, under re-pairings and row subsets.

    Built once per scored pair (from the states `probe.align.engine.prepare_modalities` returns, before any
    reordering). Made at first use and kept for the pair's other resamples: each kernel's `KernelPair` (packed
    upper triangles, on the dense path) and each side's ranked kNN candidates' kernel values (for subsets).
    """

    def __init__(self, first: ModalityState, second: ModalityState) -> None:
        self.first, self.second = first, second
        self.specs: tuple[MetricSpec, ...] = first.plan.specs
        self.knn_specs = [spec for spec in self.specs if spec.family in ("knn", "cknna")]
        self.kernel_specs = [spec for spec in self.specs if spec.family == "kernel"]
        self.dense = isinstance(first.linear, GramStack)
        self.with_cknna = any(spec.family == "cknna" for spec in self.specs)
        # Per side, the kernel values of the ranked kNN candidates (dense path), made at the first subset.
        self._candidates: list[Optional[RankedCandidates]] = [None, None]
        self._kernel_pairs: dict[str, KernelPair] = {}
        # kNN metrics read from `LayerMasks` (dense path, masks within MASK_BYTES); cycle_knn keeps the lookups.
        self.masked_specs: list[MetricSpec] = []
        if self.dense and self.knn_specs:
            side_layers = max(first.num_layers, second.num_layers)
            if mask_bytes(num_rows=first.num_rows, num_layers=side_layers) <= MASK_BYTES:
                self.masked_specs = [spec for spec in self.knn_specs if spec.name in MASKED_METRICS]
        self.lookup_specs = [spec for spec in self.knn_specs if spec not in self.masked_specs]
        # The re-pairings' query side is the one with fewer layers; the other side's masks are built once.
        self.query_is_first = first.num_layers <= second.num_layers
        self._permutation_masks: Optional[LayerMasks] = None

    @property
    def batch_size(self) -> int:
        """How many resamples `permuted` and `restricted` are best given at once."""
        if self.dense and (self.kernel_specs or self.masked_specs):
            return MAX_BATCH
        return KNN_BATCH.get(self.first.device.type, 1)

    def _kernel_pair(self, kernel: str) -> KernelPair:
        if kernel not in self._kernel_pairs:
            self._kernel_pairs[kernel] = KernelPair(self.first.kernel(kernel), self.second.kernel(kernel))
        return self._kernel_pairs[kernel]

    def _ordered(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {spec.name: out[spec.name] for spec in self.specs}

    def permuted(self, orders: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> float64 [B, La, Lb] for the re-pairings `orders` [B, N] (the second side's new row i is
        its row order[i], as `ModalityState.permuted`)."""
        first, second = self.first, self.second
        out: dict[str, torch.Tensor] = {}
        if self.masked_specs:
            out.update(self._permuted_masked(orders))
        if self.lookup_specs:
            step = KNN_BATCH.get(first.device.type, 1)
            for start in range(0, len(orders), step):
                part = self._permuted_knn(orders[start : start + step], self.lookup_specs)
                for name, values in part.items():
                    out[name] = values if name not in out else torch.cat([out[name], values])
        if self.kernel_specs:
            if self.dense:
                out.update(self._permuted_kernels(orders))
            else:
                out.update(
                    _stack([kernel_matrices(first, second.permuted(order), self.kernel_specs) for order in orders])
                )
        return self._ordered(out)

    def _permuted_masked(self, orders: torch.Tensor) -> dict[str, torch.Tensor]:
        """The masked kNN metrics under the re-pairings `orders` [B, N]: the query side's edges, relabelled into
        the other side's stored row numbers, looked up in that side's masks (built at the first call)."""
        first, second = self.first, self.second
        query_state, mask_state = (first, second) if self.query_is_first else (second, first)
        if self._permutation_masks is None:
            self._permutation_masks = LayerMasks(mask_state.neighbours.indices)
        edges = query_state.self_terms.cknna_edges
        query = QueryEdges(
            indices=query_state.neighbours.indices,
            values=None if edges is None else edges.values,
            reciprocal=None if edges is None else edges.reciprocal,
        )
        # The first side's row i meets the second's stored row orders[b, i]; the second's stored row u meets the
        # first's row i with orders[b, i] = u.
        maps = orders if self.query_is_first else torch.argsort(orders, dim=1)
        step = max(1, MASK_BATCH_ENTRIES // (first.num_layers * second.num_layers * first.num_rows))
        parts = [
            masked_knn_matrices(
                query,
                self._permutation_masks,
                self.masked_specs,
                maps=maps[start : start + step],
                query_is_first=self.query_is_first,
                mask_values=mask_state.linear.values_at,
                query_self=query_state.self_terms.cknna,
                mask_self=mask_state.self_terms.cknna,
                epsilon=first.plan.denominator_epsilon,
            )
            for start in range(0, len(maps), step)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _permuted_knn(self, orders: torch.Tensor, specs: list[MetricSpec]) -> dict[str, torch.Tensor]:
        """kNN metrics and CKNNA under the re-pairings `orders` [B, N], all at once: the B relabelled copies of the
        second side's lists (and own edges, which move with the rows) are stacked as B x Lb layers of one
        second side, so each first-side layer's edges are loaded once for the whole batch."""
        first, second = self.first, self.second
        batch, lb = len(orders), second.num_layers
        lists = torch.stack([second.neighbours.permuted(order).ranked for order in orders])
        stacked = NeighbourSets(ranked=lists.flatten(0, 1), k=second.neighbours.k)
        edges = second.self_terms.cknna_edges
        stacked_edges = None
        if edges is not None:
            moved = [edges.permuted(order) for order in orders]
            stacked_edges = OwnEdges(
                values=torch.cat([m.values for m in moved]), reciprocal=torch.cat([m.reciprocal for m in moved])
            )
        second_self = second.self_terms.cknna
        out = knn_family_matrices(
            first.neighbours,
            stacked,
            specs,
            first_edges=first.self_terms.cknna_edges,
            second_edges=stacked_edges,
            first_self=first.self_terms.cknna,
            second_self=None if second_self is None else second_self.repeat(batch),
            epsilon=first.plan.denominator_epsilon,
        )
        # [La, B * Lb] -> [B, La, Lb]
        return {name: values.view(values.shape[0], batch, lb).transpose(0, 1) for name, values in out.items()}

    def _permuted_kernels(self, orders: torch.Tensor) -> dict[str, torch.Tensor]:
        first, second = self.first, self.second
        epsilon = first.plan.denominator_epsilon
        out = {}
        for kernel in dict.fromkeys(spec.kernel for spec in self.kernel_specs):
            left, right = first.kernel(kernel), second.kernel(kernel)
            products = self._kernel_pair(kernel).permuted(orders)
            for spec in self.kernel_specs:
                if spec.kernel != kernel:
                    continue
                if spec.unbiased:
                    right_diagonals = right.centred_diagonals()[:, orders].transpose(0, 1)  # [B, Lb, N]
                    cross = unbiased_from_centred(products, left.centred_diagonals(), right_diagonals)
                    out[spec.name] = cka_from_hsic(
                        cross, first.self_terms.unbiased[kernel], second.self_terms.unbiased[kernel], epsilon=epsilon
                    )
                else:
                    out[spec.name] = cka_from_hsic(
                        products, first.self_terms.biased[kernel], second.self_terms.biased[kernel], epsilon=epsilon
                    )
        return out

    def restricted(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> float64 [B, La, Lb] on the row subsets `rows` [B, n] (each sorted, as
        `ModalityState.restricted` takes them)."""
        first, second = self.first, self.second
        if not self.dense:
            return _stack([pair_matrices(first.restricted(subset), second.restricted(subset)) for subset in rows])
        out: dict[str, torch.Tensor] = {}
        if self.knn_specs:
            out.update(_stack([self._restricted_knn(subset) for subset in rows]))
        if self.kernel_specs:
            out.update(self._restricted_kernels(rows))
        return self._ordered(out)

    def _restricted_knn(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        first, second = self.first, self.second
        states = (first, second)
        subsets = []
        for side, state in enumerate(states):
            candidates = self._ranked_candidates(side)
            subsets.append(subset_neighbours(state.neighbours, state.linear, rows, candidates=candidates))
        # A subset shares many edges between layers (as many as the score says), so the per-layer lookups, which
        # read the second side's own edge values directly, beat the masks here (measured: 261 against 828 ms a
        # subsample at PRH's shape); the masks still give each side's reciprocal flags.
        lists = [subset[0] for subset in subsets]
        edges: list[Optional[OwnEdges]] = [None, None]
        selfs: list[Optional[torch.Tensor]] = [None, None]
        if self.with_cknna:
            for side in (0, 1):
                indices = lists[side].indices
                reciprocal = LayerMasks(indices).reciprocal(indices)
                edges[side] = OwnEdges(values=subsets[side][1], reciprocal=reciprocal)
                selfs[side] = cknna_self_similarity(lists[side], edges[side], name=states[side].name)
        return knn_family_matrices(
            lists[0],
            lists[1],
            self.knn_specs,
            first_edges=edges[0],
            second_edges=edges[1],
            first_self=selfs[0],
            second_self=selfs[1],
            epsilon=first.plan.denominator_epsilon,
        )

    def _ranked_candidates(self, side: int) -> RankedCandidates:
        if self._candidates[side] is None:
            state = (self.first, self.second)[side]
            self._candidates[side] = RankedCandidates.of(
                state.neighbours, state.linear, with_edge_values=self.with_cknna
            )
        return self._candidates[side]

    def _restricted_kernels(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        first, second = self.first, self.second
        epsilon = first.plan.denominator_epsilon
        n = int(rows.shape[1])
        weights = torch.zeros(rows.shape[0], first.num_rows, device=rows.device)
        weights.scatter_(1, rows, 1.0)
        out = {}
        for kernel in dict.fromkeys(spec.kernel for spec in self.kernel_specs):
            left, right = first.kernel(kernel), second.kernel(kernel)
            terms = []
            for stack, state in ((left, first), (right, second)):
                term = subset_terms(stack, weights, num_rows=n)
                for traces, raw in zip(term.centred_traces, term.raw_traces):
                    check_not_constant(traces, raw, name=state.name)
                terms.append(term)
            a, b = terms
            products = (
                self._kernel_pair(kernel).masked(weights)
                - 2.0 / n * a.row_sums @ b.row_sums.transpose(1, 2)
                + a.totals[:, :, None] * b.totals[:, None, :] / n**2
            )
            for spec in self.kernel_specs:
                if spec.kernel != kernel:
                    continue
                if spec.unbiased:
                    cross = unbiased_from_centred(products, a.diagonals, b.diagonals, num_rows=n)
                    left_self = unbiased_self(a.self_products, a.diagonals, num_rows=n)
                    right_self = unbiased_self(b.self_products, b.diagonals, num_rows=n)
                    out[spec.name] = cka_from_hsic(cross, left_self, right_self, epsilon=epsilon)
                else:
                    out[spec.name] = cka_from_hsic(products, a.self_products, b.self_products, epsilon=epsilon)
        return out
