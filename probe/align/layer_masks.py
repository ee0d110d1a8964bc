"""kNN edges of every layer of one modality in one table, and the kNN metrics of all layer pairs read from it.

`LayerMasks` holds, for every ordered pair of rows (i, j), which layers have j among the k neighbours of i:
bit l % 64 of word l // 64 of entry i * N + j (int64 words [W, N * N], 8 N^2 bytes per 64 layers). One lookup
of a query edge then answers for every layer of the table at once, so all La x Lb layer pairs cost
O(L_query N k) lookups plus work in proportion to the edges they share, instead of one pass over N k
edges per layer pair (`probe.align.knn.edge_lookups`). That is what resampling needs: a re-pairing of the rows
only relabels the query edges, so the table is built once for all permutations; a subset builds one table a
side and also reads each side's reciprocal flags from it.

`masked_knn_matrices` gives mutual_knn, jaccard_knn and CKNNA of all pairs (cycle_knn, whose questions run the
other way, stays with `probe.align.engine.knn_family_matrices`), equal to that reference up to the order of
floating-point sums (CKNNA) and exactly for the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from probe.align.cknna import edge_hsic
from probe.align.hsic import cka_from_hsic
from probe.align.specs import MetricSpec

# Metrics `masked_knn_matrices` computes.
MASKED_METRICS = ("mutual_knn", "jaccard_knn", "cknna")
BITS = 64


def mask_bytes(*, num_rows: int, num_layers: int) -> int:
    """Bytes of the `LayerMasks` of `num_layers` layers over `num_rows` rows."""
    return 8 * num_rows * num_rows * -(-num_layers // BITS)


class LayerMasks:
    """The kNN edges of every layer of one modality, from its lists `indices` int64 [L, N, k] (row i's k
    neighbours, numbered 0 .. N-1): `words` int64 [W, N * N], W = ceil(L / 64)."""

    def __init__(self, indices: torch.Tensor) -> None:
        layers, n, k = indices.shape
        self.num_layers, self.num_rows = layers, n
        device = indices.device
        self.words = torch.zeros(-(-layers // BITS), n * n, dtype=torch.int64, device=device)
        keys = (torch.arange(n, device=device)[:, None] * n + indices).view(layers, n * k)
        bits = torch.ones(layers, dtype=torch.int64, device=device).bitwise_left_shift(
            torch.arange(layers, device=device) % BITS
        )
        # A layer's edges are distinct, so adding its bit at each edge sets it (no carries).
        for word in range(self.words.shape[0]):
            part = slice(word * BITS, (word + 1) * BITS)
            self.words[word].index_add_(0, keys[part].flatten(), bits[part, None].expand(-1, n * k).flatten())

    def has(self, layers: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """bool, broadcast shape of `layers` and `keys` (i * N + j): is (i, j) an edge of that layer."""
        words = torch.take(self.words, torch.div(layers, BITS, rounding_mode="floor") * self.num_rows**2 + keys)
        return words.bitwise_right_shift(layers % BITS).bitwise_and(1).bool()

    def reciprocal(self, indices: torch.Tensor) -> torch.Tensor:
        """For these layers' own lists `indices` [L, N, k]: bool [L, N, k], the reverse edge (j, i) is an edge too."""
        layers, n, _ = indices.shape
        rows = torch.arange(n, device=indices.device)[None, :, None]
        return self.has(torch.arange(layers, device=indices.device)[:, None, None], indices * n + rows)

    def shared(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (query, layer) with query edge `keys[query]` (flat int64 [Q]) an edge of that layer:
        (query index, layer), int64 [S] each."""
        queries, layers = [], []
        for word in range(self.words.shape[0]):
            values = torch.take(self.words[word], keys)
            hit = values.nonzero().squeeze(1)
            count = min(BITS, self.num_layers - word * BITS)
            shifts = torch.arange(count, device=keys.device)
            where, bit = values[hit, None].bitwise_right_shift(shifts).bitwise_and(1).nonzero(as_tuple=True)
            queries.append(hit[where])
            layers.append(bit + word * BITS)
        if len(queries) == 1:
            return queries[0], layers[0]
        return torch.cat(queries), torch.cat(layers)


@dataclass(frozen=True)
class QueryEdges:
    """One side's kNN edges, asked of the other side's `LayerMasks`: `indices` int64 [L, N, k] in the side's
    own row numbers, and for CKNNA its `values` float64 [L, N, k] (its kernel at its own edges) and
    `reciprocal` bool [L, N, k]."""

    indices: torch.Tensor
    values: Optional[torch.Tensor] = None
    reciprocal: Optional[torch.Tensor] = None


# The mask side's raw kernel values at (layers, rows, cols) [S] each, in the masks' row numbers: float64 [S].
MaskValues = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def masked_knn_matrices(
    query: QueryEdges,
    masks: LayerMasks,
    specs: Sequence[MetricSpec],
    *,
    maps: Optional[torch.Tensor] = None,
    query_is_first: bool,
    mask_values: Optional[MaskValues] = None,
    query_self: Optional[torch.Tensor] = None,
    mask_self: Optional[torch.Tensor] = None,
    epsilon: float = 0.0,
) -> dict[str, torch.Tensor]:
    """mutual_knn, jaccard_knn and CKNNA (those of `specs`) of every layer pair, for B pairings at once:
    name -> float64 [B, La, Lb] (first side's layers first).

    `maps` int64 [B, N]: query row i is the masks' row maps[b, i] in pairing b (None: the same numbers, B = 1).
    CKNNA also needs `query.values`/`reciprocal`, `mask_values` and both sides' self-similarities
    (`probe.align.cknna.cknna_self_similarity`): `query_self` [Lq], `mask_self` [Lm].
    """
    names = [spec.name for spec in specs if spec.name in MASKED_METRICS]
    lq, n, k = query.indices.shape
    lm = masks.num_layers
    device = query.indices.device
    if maps is None:
        maps = torch.arange(n, device=device)[None]
    batch = maps.shape[0]
    groups = batch * lq * lm
    # Query edge (b, a, i, s): rows maps[b, i] -> maps[b, indices[a, i, s]] in the masks' numbers.
    heads = maps[:, None, :, None].expand(batch, lq, n, k)
    tails = maps.gather(1, query.indices.reshape(1, -1).expand(batch, -1)).view(batch, lq, n, k)
    found, layer = masks.shared((heads * n + tails).flatten())
    pair = torch.div(found, n * k, rounding_mode="floor")  # b * lq + a
    group = pair * lm + layer
    out: dict[str, torch.Tensor] = {}
    if "mutual_knn" in names:
        counts = torch.bincount(group, minlength=groups).double()
        out["mutual_knn"] = counts.view(batch, lq, lm) / (n * k)
    heads, tails = torch.take(heads, found), torch.take(tails, found)
    if "jaccard_knn" in names:
        # Per row of the first side's numbers (the mean's order, as the reference sums it).
        first_rows = torch.div(found, k, rounding_mode="floor").remainder(n) if query_is_first else heads
        common = torch.bincount(group * n + first_rows, minlength=groups * n).double().view(batch, lq, lm, n)
        out["jaccard_knn"] = (common / (2 * k - common)).mean(dim=-1)
    if "cknna" in names:
        own = found.remainder(lq * n * k)  # (a, i, s) within the query's lists
        query_values = torch.take(query.values, own)
        mask_values_at = mask_values(layer, heads, tails)
        both = torch.take(query.reciprocal, own) & masks.has(layer, tails * n + heads)
        first, second = (query_values, mask_values_at) if query_is_first else (mask_values_at, query_values)
        sims = edge_hsic(group, heads, tails, first, second, both, layers=groups, num_rows=n).view(batch, lq, lm)
        first_self, second_self = (query_self, mask_self) if query_is_first else (mask_self, query_self)
        if not query_is_first:
            sims = sims.transpose(1, 2)
        out["cknna"] = cka_from_hsic(sims, first_self, second_self, epsilon=epsilon)
    if not query_is_first:
        out = {name: values if name == "cknna" else values.transpose(1, 2) for name, values in out.items()}
    return {name: out[name] for name in names}
