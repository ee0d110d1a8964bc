"""k-nearest-neighbour sets of every layer, and the pairwise kNN scores built from them.

Neighbours are by dot product (the caller normalises rows), a row is never its own neighbour, and
ties are broken by the lower row index: a row's neighbours are the first k of all other rows sorted
by (similarity descending, index ascending). That makes every kNN score reproducible.

A layer's kNN sets are computed once; a layer pair then costs O(N k): membership lookups of one
layer's edges (i, j) in the other's edge set (a bitmap for moderate N, sorted edge keys beyond).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

# Rows of the similarity matrix processed at once when ranking neighbours: bounds a [block, N] buffer.
SIMILARITY_BLOCK_BYTES = 256 * 2**20
# Up to this many rows, edge membership is a bitmap of N*N bytes; beyond, a search in sorted keys.
BITMAP_MAX_ROWS = 8192

SimilarityRows = Callable[[int, int], torch.Tensor]


def similarity_block_rows(num_rows: int) -> int:
    """How many similarity rows [rows, N] float32 fit in SIMILARITY_BLOCK_BYTES (at least 1)."""
    return max(1, SIMILARITY_BLOCK_BYTES // (4 * max(num_rows, 1)))


def ranked_top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] of the largest entries of each row of `scores` [B, M], ties to the lower index.

    topk alone leaves the order of equal values unspecified, so the chosen set is re-ranked by
    (value desc, index asc). The set itself is ambiguous only when the count-th and (count+1)-th
    largest values are equal; those rows (rare outside degenerate data) get a full stable sort.
    """
    spare = 1 if count < scores.shape[1] else 0
    values, picked = scores.topk(count + spare, dim=1)
    by_index = picked[:, :count].sort(dim=1).values
    order = scores.gather(1, by_index).argsort(dim=1, descending=True, stable=True)
    ranked = by_index.gather(1, order)
    if spare:
        crowded = values[:, count - 1] == values[:, count]
        if bool(crowded.any()):
            rows = crowded.nonzero().squeeze(1)
            ranked[rows] = scores[rows].argsort(dim=1, descending=True, stable=True)[:, :count]
    return ranked


def ranked_neighbours(similarity_rows: SimilarityRows, *, num_rows: int, count: int) -> torch.Tensor:
    """Each row's `count` nearest other rows, best first: int64 [N, count].

    `similarity_rows(start, stop)` returns the dot products [stop - start, N] of those rows with all
    rows (a block product of features, or a view of a Gram matrix). The returned block is
    overwritten: its self-similarities are set to -inf to exclude each row from its own list.
    """
    block = similarity_block_rows(num_rows)
    parts = []
    for start in range(0, num_rows, block):
        stop = min(start + block, num_rows)
        scores = similarity_rows(start, stop)
        rows = torch.arange(stop - start, device=scores.device)
        scores[rows, rows + start] = float("-inf")
        parts.append(ranked_top(scores, count))
    return torch.cat(parts)


def reciprocal_flags(neighbours: torch.Tensor) -> torch.Tensor:
    """For kNN lists [L, N, k]: bool [L, N, k], True where edge (i, j) has its reverse (j, i) too."""
    edges = EdgeMembership(num_rows=neighbours.shape[1], device=neighbours.device)
    rows = torch.arange(neighbours.shape[1], device=neighbours.device)[:, None].expand_as(neighbours[0])
    return torch.stack([edges.load(lists).contains(lists, rows) for lists in neighbours])


class EdgeMembership:
    """Answers "is (i, j) an edge, j in kNN(i)" for the layer last loaded.

    Up to BITMAP_MAX_ROWS rows the edges are marked in an N*N bitmap allocated once and reused across
    layers (loading clears only the previous layer's edges); beyond, queries search sorted edge keys.
    """

    def __init__(self, *, num_rows: int, device: torch.device) -> None:
        self.num_rows = num_rows
        self.bitmap = (
            torch.zeros(num_rows * num_rows, dtype=torch.bool, device=device) if num_rows <= BITMAP_MAX_ROWS else None
        )
        self.keys: Optional[torch.Tensor] = None
        self.k = 0
        # Made at the first `slots` call (bitmap path): each current edge's position in its row's list, plus one.
        self.slot_map: Optional[torch.Tensor] = None
        self.sorted_slots: Optional[torch.Tensor] = None

    def load(self, neighbours: torch.Tensor) -> "EdgeMembership":
        """Make the kNN lists [N, k] of one layer the current edge set; returns self."""
        keys = (torch.arange(self.num_rows, device=neighbours.device)[:, None] * self.num_rows + neighbours).flatten()
        self.k = int(neighbours.shape[1])
        if self.bitmap is not None:
            if self.keys is not None:
                self.bitmap[self.keys] = False
                if self.slot_map is not None:
                    self.slot_map[self.keys] = 0
            self.bitmap[keys] = True
            self.keys = keys
            if self.slot_map is not None:
                self._fill_slots()
        else:
            order = keys.argsort()
            self.keys, self.sorted_slots = keys[order], order % self.k
        return self

    def _fill_slots(self) -> None:
        positions = torch.arange(self.keys.numel(), device=self.keys.device) % self.k + 1
        self.slot_map[self.keys] = positions.to(self.slot_map.dtype)

    def contains(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Bool tensor (broadcast shape of `rows` and `cols`): is (row, col) a current edge."""
        return self.contains_keys(rows * self.num_rows + cols)

    def contains_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """`contains` for edges given as keys row * N + col (any shape)."""
        if self.bitmap is not None:
            return torch.take(self.bitmap, keys)
        where = torch.searchsorted(self.keys, keys).clamp_max(self.keys.numel() - 1)
        return self.keys[where] == keys

    def slots(self, keys: torch.Tensor) -> torch.Tensor:
        """For current edges given as keys row * N + col: where col sits in row's list (0 .. k-1), int64 of the
        keys' shape. Only for keys that are edges (`contains_keys`); others give -1 or an arbitrary slot."""
        if self.bitmap is not None:
            if self.slot_map is None:
                dtype = torch.uint8 if self.k < 255 else torch.int32
                self.slot_map = torch.zeros(self.bitmap.numel(), dtype=dtype, device=self.bitmap.device)
                self._fill_slots()
            return torch.take(self.slot_map, keys).long() - 1
        where = torch.searchsorted(self.keys, keys).clamp_max(self.keys.numel() - 1)
        return self.sorted_slots[where]


@dataclass(frozen=True)
class NeighbourSets:
    """The kNN lists of every layer of one modality.

    `ranked` is int64 [L, N, K] (best first, K >= k; the extra columns let a row subset find its new
    neighbours without recomputing), `k` the neighbourhood size used for scoring.
    """

    ranked: torch.Tensor
    k: int

    @property
    def indices(self) -> torch.Tensor:
        """int64 [L, N, k]: each row's k neighbours."""
        return self.ranked[:, :, : self.k]

    @property
    def num_rows(self) -> int:
        return int(self.ranked.shape[1])

    def reciprocal(self) -> torch.Tensor:
        """bool [L, N, k]: True where (i, j) is an edge in both directions."""
        return reciprocal_flags(self.indices)

    def permuted(self, order: torch.Tensor) -> "NeighbourSets":
        """The sets after reordering rows: new row i is old row `order[i]` (indices relabelled)."""
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return NeighbourSets(ranked=inverse[self.ranked[:, order, : self.k]], k=self.k)

    def restricted(self, rows: torch.Tensor) -> tuple["NeighbourSets", torch.Tensor]:
        """The sets among `rows` only (sorted row indices), from the ranked lists.

        A row's new neighbours are the first k of its ranked list that survive; the tie rule is kept
        because relabelling preserves index order. Returns the sets and a bool [L, n] marking rows
        whose list ran out (their sets are then incomplete and must be recomputed by the caller).
        """
        new_index = torch.full((self.num_rows,), -1, dtype=torch.long, device=rows.device)
        new_index[rows] = torch.arange(rows.numel(), device=rows.device)
        mapped = new_index[self.ranked[:, rows, :]]
        alive = mapped >= 0
        keep = alive & (alive.cumsum(dim=2) <= self.k)
        short = keep.sum(dim=2) < self.k
        # Stable sort on the keep flag moves kept entries to the front in rank order.
        order = (~keep).to(torch.uint8).argsort(dim=2, stable=True)[:, :, : self.k]
        ranked = mapped.gather(2, order).clamp_min(0)
        return NeighbourSets(ranked=ranked, k=self.k), short


@dataclass(frozen=True)
class EdgeLookups:
    """For one layer `a` of the first modality against every layer of the second, per edge (i, s)
    of the second modality (j = its s-th neighbour of i): `shared` [Lt, N, k] is j in kNN_a(i), and
    `returning` [Lt, N, k] is i in kNN_a(j) (None when not asked for). `edges` holds layer a's edges
    loaded, for further questions while this layer is current."""

    layer: int
    shared: torch.Tensor
    returning: Optional[torch.Tensor]
    edges: EdgeMembership


def edge_lookups(first: NeighbourSets, second: NeighbourSets, *, returning: bool = True) -> Iterator[EdgeLookups]:
    """Yield `EdgeLookups` for each layer of `first` (one pass over `second`'s edges per layer); `returning`
    asks for the reverse lookups too (cycle_knn needs them)."""
    cols = second.indices
    rows = torch.arange(second.num_rows, device=cols.device)[None, :, None]
    # The same queries serve every layer of `first`: build them once.
    forward = rows * second.num_rows + cols
    backward = cols * second.num_rows + rows if returning else None
    edges = EdgeMembership(num_rows=first.num_rows, device=cols.device)
    for layer, lists in enumerate(first.indices):
        edges.load(lists)
        yield EdgeLookups(
            layer=layer,
            shared=edges.contains_keys(forward),
            returning=None if backward is None else edges.contains_keys(backward),
            edges=edges,
        )


def mutual_knn_row(lookups: EdgeLookups) -> torch.Tensor:
    """mean_i |kNN_a(i) & kNN_b(i)| / k for every layer b: float64 [Lt]."""
    return lookups.shared.double().mean(dim=(1, 2))


def jaccard_knn_row(lookups: EdgeLookups) -> torch.Tensor:
    """mean_i |kNN_a(i) & kNN_b(i)| / |kNN_a(i) | kNN_b(i)| for every layer b: float64 [Lt]."""
    k = lookups.shared.shape[2]
    common = lookups.shared.double().sum(dim=2)
    return (common / (2 * k - common)).mean(dim=1)


def cycle_knn_row(lookups: EdgeLookups) -> torch.Tensor:
    """Fraction of rows i with i in kNN_a(j) for some j in kNN_b(i), for every layer b: float64 [Lt]."""
    return lookups.returning.any(dim=2).double().mean(dim=1)
