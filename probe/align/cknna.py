"""CKNNA (PRH): unbiased HSIC restricted to the kNN edges the two layers share.

For kernels K (layer a) and L (layer b) with kNN masks M_K, M_L (self excluded, not symmetrised),
M = M_K * M_L, P = M * K, Q = M * L, and

    sim(K, L) = HSIC_u(P, Q) = [tr(P Q) + 1'P1 1'Q1 / ((N-1)(N-2)) - 2 1'PQ1 / (N-2)] / (N(N-3)),
    CKNNA = sim(K, L) / sqrt(sim(K, K) sim(L, L)),

each normalising term using its own layer's mask. P and Q live on the shared edges only, so every
term is a sum over the O(N k) edges of layer b found in layer a's edge set:

- tr(P Q) = sum over shared edges (i, j) whose reverse (j, i) is shared too of K_ij L_ij;
- 1'PQ1 = sum_j (column sum of P)_j (row sum of Q)_j.

The kernel values at those edges come from the layer's `KernelStack`: read from the centred N x N
kernel (dense path) or as dot products of the edge's two feature rows (blocked path, no N x N), so
both paths hold O(N k) per layer beyond their kernels or features.
"""

from __future__ import annotations

import torch

from probe.align.hsic import KernelStack
from probe.align.knn import EdgeLookups, NeighbourSets
from probe.errors import InputError


def _shared_edge_hsic(
    shared: torch.Tensor,
    returning: torch.Tensor,
    reciprocal: torch.Tensor,
    first_values: torch.Tensor,
    second_values: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """HSIC_u(M*K, M*L) per layer of the batch, float64 [B].

    All inputs are [B, N, k] over the edges (i, s) of the second layer, j = cols[b, i, s]: `shared`
    (j in kNN_K(i)), `returning` (i in kNN_K(j)), `reciprocal` (i in kNN_L(j)), and the kernel values
    K_ij (`first_values`) and L_ij (`second_values`).
    """
    n = cols.shape[1]
    mask = shared.double()
    p = mask * first_values
    q = mask * second_values
    trace = (p * second_values * (returning & reciprocal)).sum(dim=(1, 2))
    p_columns = torch.zeros(cols.shape[0], n, dtype=torch.float64, device=cols.device)
    p_columns.scatter_add_(1, cols.flatten(1), p.flatten(1))
    q_rows = q.sum(dim=2)
    chained = (p_columns * q_rows).sum(dim=1)
    totals = p.sum(dim=(1, 2)) * q.sum(dim=(1, 2))
    return (trace + totals / ((n - 1) * (n - 2)) - 2 * chained / (n - 2)) / (n * (n - 3))


def own_edge_values(neighbours: NeighbourSets, grams: KernelStack) -> torch.Tensor:
    """Kernel values K_l[i, j] at each layer's own kNN edges: float64 [L, N, k]."""
    cols = neighbours.indices
    return torch.stack([grams.raw_values(layer, cols[layer]) for layer in range(cols.shape[0])])


def cknna_self_similarity(neighbours: NeighbourSets, grams: KernelStack, *, name: str) -> torch.Tensor:
    """sim(K, K) of every layer, float64 [L]; InputError naming `name` when one is not positive."""
    cols = neighbours.indices
    values = own_edge_values(neighbours, grams)
    reciprocal = neighbours.reciprocal()
    self_sim = _shared_edge_hsic(torch.ones_like(reciprocal), reciprocal, reciprocal, values, values, cols)
    if bool((self_sim <= 0).any()):
        layer = int((self_sim <= 0).nonzero()[0, 0])
        raise InputError(
            f"cknna: `{name}` layer {layer} has a non-positive self-similarity ({float(self_sim[layer]):.3g}), "
            "so CKNNA is undefined; the layer is (nearly) constant or k is too small: raise k or drop the layer."
        )
    return self_sim


def cknna_numerators(
    lookups: EdgeLookups,
    first_grams: KernelStack,
    second: NeighbourSets,
    second_values: torch.Tensor,
    second_reciprocal: torch.Tensor,
) -> torch.Tensor:
    """sim(K_a, L_b) for first-modality layer `lookups.layer` against every second layer: float64 [Lb].

    `second_values` [Lb, N, k] are L_b at its own edges, `second_reciprocal` [Lb, N, k] its reciprocal flags.
    """
    cols = second.indices
    first_values = first_grams.raw_values(lookups.layer, cols, keys=lookups.edge_keys)
    return _shared_edge_hsic(lookups.shared, lookups.returning, second_reciprocal, first_values, second_values, cols)
