"""CKNNA (PRH): unbiased HSIC restricted to the kNN edges the two layers share.

For kernels K (layer a) and L (layer b) with kNN masks M_K, M_L (self excluded, not symmetrised),
M = M_K * M_L, P = M * K, Q = M * L, and

    sim(K, L) = HSIC_u(P, Q) = [tr(P Q) + 1'P1 1'Q1 / ((N-1)(N-2)) - 2 1'PQ1 / (N-2)] / (N(N-3)),
    CKNNA = sim(K, L) / sqrt(sim(K, K) sim(L, L)),

each normalising term using its own layer's mask. P and Q live on the shared edges only, so every
term is a sum over the O(N k) edges of layer b found in layer a's edge set:

- tr(P Q) = sum over shared edges (i, j) whose reverse (j, i) is shared too of K_ij L_ij;
- 1'PQ1 = sum_j (column sum of P)_j (row sum of Q)_j.

A shared edge is an edge of both layers, so K and L there are the layers' values at their own edges
(`OwnEdges`), read once per layer from its `EdgeKernel`: the centred N x N kernel (dense path) or dot
products of the edge's two feature rows (blocked path, no N x N). A pair then costs O(N k) and reads no
kernel; a re-pairing of the rows moves each side's own edges with its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch

from probe.align.knn import EdgeLookups, NeighbourSets
from probe.errors import InputError


class EdgeKernel(Protocol):
    """Raw kernel values of one modality's layers at kNN edges: what CKNNA reads. A `GramStack` or a
    `FeatureStack` (`probe.align.hsic`)."""

    @property
    def num_rows(self) -> int: ...

    def raw_values(self, layer: int, cols: torch.Tensor, keys: Optional[torch.Tensor] = None) -> torch.Tensor:
        """K_layer[i, cols[..., i, s]] for cols [..., N, k] (row i implicit), float64 [..., N, k]; `keys` may
        pass the entries' positions i * N + cols."""
        ...


@dataclass(frozen=True)
class OwnEdges:
    """A modality's kernel values at its own kNN edges, `values` float64 [L, N, k] (K_l[i, j] for the s-th
    neighbour j of row i), and `reciprocal` bool [L, N, k] (i is also among j's neighbours): all that CKNNA
    reads of a layer besides its kNN lists."""

    values: torch.Tensor
    reciprocal: torch.Tensor

    def permuted(self, order: torch.Tensor) -> "OwnEdges":
        """After reordering the rows (new row i is old row order[i]): the same edges, moved with their rows."""
        return OwnEdges(values=self.values[:, order], reciprocal=self.reciprocal[:, order])


def own_edges(neighbours: NeighbourSets, grams: EdgeKernel) -> OwnEdges:
    """The kernel values of every layer at its own kNN edges, and their reciprocal flags."""
    cols = neighbours.indices
    values = torch.stack([grams.raw_values(layer, cols[layer]) for layer in range(cols.shape[0])])
    return OwnEdges(values=values, reciprocal=neighbours.reciprocal())


def edge_hsic(
    layer: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    both: torch.Tensor,
    *,
    layers: int,
    num_rows: int,
) -> torch.Tensor:
    """HSIC_u(M*K, M*L) for each of `layers` layer pairs, float64 [layers], from the shared edges alone.

    Each edge e (every input is [E]) belongs to pair `layer[e]` and runs from row `rows[e]` to row
    `cols[e]`; p = K at the edge, q = L at the edge, `both`: its reverse edge is shared too. Edges that are
    not shared contribute nothing (M = 0 there), so they are not passed.
    """
    n = num_rows
    zeros = torch.zeros(layers, dtype=torch.float64, device=p.device)
    trace = zeros.index_add(0, layer, p * q * both)
    p_columns = torch.zeros(layers * n, dtype=torch.float64, device=p.device).index_add_(0, layer * n + cols, p)
    q_rows = torch.zeros(layers * n, dtype=torch.float64, device=p.device).index_add_(0, layer * n + rows, q)
    chained = (p_columns * q_rows).view(layers, n).sum(dim=1)
    totals = zeros.index_add(0, layer, p) * zeros.index_add(0, layer, q)
    return (trace + totals / ((n - 1) * (n - 2)) - 2 * chained / (n - 2)) / (n * (n - 3))


def cknna_self_similarity(neighbours: NeighbourSets, edges: OwnEdges, *, name: str) -> torch.Tensor:
    """sim(K, K) of every layer, float64 [L] (every edge of a layer is shared with itself); InputError naming
    `name` when one is not positive.

    `edge_hsic` with P = Q: the trace is the squares at reciprocal edges, and the row sums of P are the sums
    of each row's own list, so only the column sums need scattering.
    """
    cols = neighbours.indices
    layers, num_rows, _ = cols.shape
    n = num_rows
    values = edges.values
    trace = (values.square() * edges.reciprocal).sum(dim=(1, 2))
    totals = values.sum(dim=(1, 2))
    keys = (torch.arange(layers, device=cols.device)[:, None, None] * n + cols).flatten()
    column_sums = torch.zeros(layers * n, dtype=torch.float64, device=cols.device).index_add_(0, keys, values.flatten())
    chained = (column_sums.view(layers, n) * values.sum(dim=2)).sum(dim=1)
    self_sim = (trace + totals.square() / ((n - 1) * (n - 2)) - 2 * chained / (n - 2)) / (n * (n - 3))
    if bool((self_sim <= 0).any()):
        bad = int((self_sim <= 0).nonzero()[0, 0])
        raise InputError(
            f"cknna: `{name}` layer {bad} has a non-positive self-similarity ({float(self_sim[bad]):.3g}), "
            "so CKNNA is undefined; the layer is (nearly) constant or k is too small: raise k or drop the layer."
        )
    return self_sim


def cknna_numerators(
    lookups: EdgeLookups,
    first: NeighbourSets,
    first_edges: OwnEdges,
    second: NeighbourSets,
    second_edges: OwnEdges,
) -> torch.Tensor:
    """sim(K_a, L_b) for first-side layer a = `lookups.layer` against every second-side layer: float64 [Lb].

    A shared edge (i, j) is one of layer a's own edges, so K_a there is read from `first_edges` (no kernel is
    touched); whether its reverse is an edge of a is asked of the membership `lookups.edges` holds loaded.
    """
    cols = second.indices
    layer, rows, slot = lookups.shared.nonzero(as_tuple=True)
    targets = cols[layer, rows, slot]
    a = lookups.layer
    # Where j sits in row i's list of layer a (it is there: the edge is shared).
    position = lookups.edges.slots(rows * cols.shape[1] + targets)
    p = first_edges.values[a, rows, position]
    q = second_edges.values[layer, rows, slot]
    both = lookups.edges.contains(targets, rows) & second_edges.reciprocal[layer, rows, slot]
    return edge_hsic(layer, rows, targets, p, q, both, layers=cols.shape[0], num_rows=cols.shape[1])
