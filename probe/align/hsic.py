"""HSIC and CKA for every layer pair from per-layer kernel summaries.

Everything rests on the double-centred kernel Kc = H K H (H = I - 11^T/N) of each layer:

- biased HSIC(K, L) = tr(K H L H) = <Kc, Lc>_F;
- unbiased HSIC (Song et al. 2012) only sees K, L off the diagonal and is blind to additive terms
  a_i + a_j + c, which centring only adds, so with d = diag(Kc), t = tr(Kc):
  HSIC_u(K, L) = [<Kc, Lc> - N/(N-2) d_K.d_L + t_K t_L / ((N-1)(N-2))] / (N(N-3)).

So one matrix of inner products <Kc_a, Lc_b> over all layer pairs, plus each layer's diagonal, gives
biased and unbiased CKA together. Two ways to get the inner products:

- `GramStack` (dense): each layer's centred N x N kernel, centred once; the products of all pairs
  are one float64 product of the flattened centred kernels (taken in row slabs).
- `FeatureStack` (large N, linear kernel only): column-centred features X; <Kc, Lc> = ||X^T Y||_F^2,
  O(N Dx Dy) per pair and no N x N matrix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import torch

from probe.errors import InputError

# Kernel entries per slab when streaming centred kernels (bounds the float64 temporaries).
KERNEL_SLAB_ENTRIES = 2**22
# Rows per chunk of feature-space products: float32 inside a chunk, float64 across chunks.
FEATURE_CHUNK_ROWS = 1024
# Float64 accumulators [Da, Db] of feature-space products held at once (pairs beyond take another pass).
CROSS_PRODUCT_BUDGET_BYTES = 512 * 2**20
# Float32 neighbour rows [rows, k, D] gathered at once for kernel values at kNN edges (where the sampled
# sparse product is not available).
EDGE_GATHER_BYTES = 64 * 2**20
# A centred kernel whose trace is below this fraction of the raw trace is treated as constant: below
# it the structure is under float32 rounding of the Gram entries.
DEGENERATE_FRACTION = 1e-6


def _take(tensor: torch.Tensor, order: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    return tensor if order is None else tensor.index_select(dim, order)


@dataclass(frozen=True)
class GramStack:
    """The centred N x N kernels Kc = H K H of a modality's layers, `centred` [L, N, N] (float32 unless
    built from float64 kernels), with what it takes to recover the raw kernel: K = Kc + m_i + m_j - g.

    Centring happens once, when the stack is built; `self_products` <Kc, Kc> [L] come out of that pass.
    `order` (optional) is a pending row reordering: the stack stands for centred[:, order][:, :, order].
    """

    centred: torch.Tensor
    row_means: torch.Tensor  # float64 [L, N], m = raw row means, in stored (unpermuted) order
    grand_means: torch.Tensor  # float64 [L], g = mean of m
    raw_traces: torch.Tensor  # float64 [L], tr(K)
    stored_self_products: torch.Tensor  # float64 [L], <Kc, Kc>
    order: Optional[torch.Tensor] = None

    @classmethod
    def centre_in_place(cls, kernels: torch.Tensor) -> "GramStack":
        """Centre raw symmetric kernels [L, N, N] in place (their buffer becomes `centred`)."""
        summaries = [kernel_summary(kernel) for kernel in kernels]
        squares = [centre_kernel_in_place(kernel, row_means) for kernel, (row_means, _) in zip(kernels, summaries)]
        return cls.from_centred(
            kernels,
            row_means=torch.stack([row_means for row_means, _ in summaries]),
            raw_traces=torch.stack([trace for _, trace in summaries]),
            self_products=torch.stack(squares),
        )

    @classmethod
    def from_centred(
        cls, centred: torch.Tensor, *, row_means: torch.Tensor, raw_traces: torch.Tensor, self_products: torch.Tensor
    ) -> "GramStack":
        """Wrap kernels [L, N, N] already centred by `centre_kernel_in_place`, with their raw row means
        [L, N], raw traces [L] and <Kc, Kc> [L] (all float64)."""
        return cls(
            centred=centred,
            row_means=row_means,
            grand_means=row_means.mean(dim=1),
            raw_traces=raw_traces,
            stored_self_products=self_products,
        )

    @property
    def num_layers(self) -> int:
        return int(self.centred.shape[0])

    @property
    def num_rows(self) -> int:
        return int(self.centred.shape[1]) if self.order is None else int(self.order.numel())

    @property
    def device(self) -> torch.device:
        return self.centred.device

    def centred_rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of every centred kernel, in this stack's order, float64 [L, stop - start, N]."""
        if self.order is None:
            return self.centred[:, start:stop].double()
        # One gather of flat positions: much faster than selecting rows and then columns.
        n = self.centred.shape[1]
        positions = (self.order[start:stop, None] * n + self.order[None, :]).flatten()
        return self.centred.flatten(1).index_select(1, positions).view(-1, stop - start, n).double()

    def raw_submatrix(self, layer: int, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the raw kernel `layer` among `rows` (this stack's order) into `out` [n, n]; returns it."""
        index = rows if self.order is None else self.order[rows]
        means = self.row_means[layer, index].to(out.dtype)
        torch.index_select(self.centred[layer].index_select(0, index), 1, index, out=out)
        out += means[:, None]
        out += means[None, :]
        out -= self.grand_means[layer].to(out.dtype)
        return out

    def raw_values(self, layer: int, cols: torch.Tensor, keys: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Raw kernel entries K_layer[i, cols[..., i, s]] for cols [..., N, k] (row i implicit), float64.

        `keys` may pass the entries' positions i * N + cols when the caller has them.
        """
        rows = torch.arange(self.num_rows, device=cols.device)[:, None]
        if self.order is not None:
            rows, cols, keys = self.order[rows], self.order[cols], None
        return self.stored_values(layer, rows, cols, keys=keys)

    def stored_values(
        self, layer: int, rows: torch.Tensor, cols: torch.Tensor, *, keys: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Raw kernel entries K_layer[rows, cols] (stored row numbers, no pending order; broadcast shapes),
        float64; `keys` may pass rows * N + cols when the caller has them."""
        if keys is None:
            keys = rows * self.centred.shape[1] + cols
        means = self.row_means[layer]
        centred = torch.take(self.centred[layer], keys).double()
        return centred + means[rows] + means[cols] - self.grand_means[layer]

    def values_at(self, layers: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Raw kernel entries K_layers[rows, cols] elementwise (stored row numbers, no pending order; int64 of
        one shape), float64, computed as `stored_values` computes them (the same bits)."""
        n = self.centred.shape[1]
        centred = torch.take(self.centred, (layers * n + rows) * n + cols).double()
        flat_means = self.row_means.flatten()
        return (
            centred
            + flat_means.take(layers * n + rows)
            + flat_means.take(layers * n + cols)
            - self.grand_means.take(layers)
        )

    def centred_diagonals(self) -> torch.Tensor:
        """diag(Kc) of every layer, float64 [L, N]."""
        return _take(torch.diagonal(self.centred, dim1=1, dim2=2).double(), self.order, 1)

    def self_products(self) -> torch.Tensor:
        """<Kc, Kc> of every layer, float64 [L] (unchanged by reordering rows)."""
        return self.stored_self_products

    def permuted(self, order: torch.Tensor) -> "GramStack":
        """The stack with rows and columns reordered: new row i is current row `order[i]` (lazy)."""
        combined = order if self.order is None else self.order[order]
        return replace(self, order=combined)


def kernel_summary(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row means (float64 [N]) and trace (float64 scalar) of a raw kernel [N, N]."""
    return kernel.sum(dim=1).double() / kernel.shape[0], kernel.diagonal().double().sum()


def centre_kernel_in_place(kernel: torch.Tensor, row_means: torch.Tensor) -> torch.Tensor:
    """Turn a raw symmetric kernel [N, N] into H K H in place, given its float64 row means [N].

    Means are subtracted in the kernel's precision: a rounding error in them adds a_i + a_j terms, to
    which both HSICs are blind. Returns <Kc, Kc>, summed in float64 from the stored entries exactly as
    the cross products are (so that CKA(X, X) = 1).
    """
    means = row_means.to(kernel.dtype)
    kernel -= means[:, None]
    kernel -= means[None, :]
    kernel += row_means.mean().to(kernel.dtype)
    flat = kernel.flatten().double()
    return torch.dot(flat, flat)


def _slabs(num_rows: int, num_layers: int) -> list[tuple[int, int]]:
    """Row ranges whose slabs for `num_layers` layers hold about KERNEL_SLAB_ENTRIES entries."""
    step = max(1, KERNEL_SLAB_ENTRIES // max(1, num_rows * num_layers))
    return [(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]


def gram_products(left: GramStack, right: GramStack) -> torch.Tensor:
    """<Kc_a, Lc_b> for every layer pair: float64 [La, Lb], one product of the flattened centred kernels
    (taken in row slabs, accumulated in float64)."""
    total = torch.zeros(left.num_layers, right.num_layers, dtype=torch.float64, device=left.device)
    for start, stop in _slabs(left.num_rows, left.num_layers + right.num_layers):
        total += left.centred_rows(start, stop).flatten(1) @ right.centred_rows(start, stop).flatten(1).T
    return total


@dataclass(frozen=True)
class FeatureStack:
    """A modality's layers as features (for the linear kernel K = X X^T without forming it).

    `features` are float32 [N, D_l] per layer, `means` their float64 column means; `order` is a pending
    row reordering (new row i is stored row order[i]).
    """

    features: tuple[torch.Tensor, ...]
    means: tuple[torch.Tensor, ...]
    order: Optional[torch.Tensor] = None

    @classmethod
    def from_layers(cls, layers: list[torch.Tensor]) -> "FeatureStack":
        """Wrap prepared layers [N, D] and compute their column means."""
        return cls(features=tuple(layers), means=tuple(layer.double().mean(dim=0) for layer in layers))

    @property
    def num_layers(self) -> int:
        return len(self.features)

    @property
    def num_rows(self) -> int:
        return int(self.features[0].shape[0]) if self.order is None else int(self.order.numel())

    @property
    def device(self) -> torch.device:
        return self.features[0].device

    def layer(self, index: int) -> torch.Tensor:
        """Layer `index` [N, D] float32 in this stack's row order (uncentred)."""
        return _take(self.features[index], self.order, 0)

    def centred_chunk(self, index: int, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of layer `index`, column-centred, float32 [rows, D].

        The mean is subtracted in float32: its rounding error shifts every row alike, which adds
        a_i + a_j terms to the kernel, to which both HSICs are blind.
        """
        rows = self.features[index][start:stop] if self.order is None else self.features[index][self.order[start:stop]]
        return rows - self.means[index].to(rows.dtype)

    def centred_diagonals(self) -> torch.Tensor:
        """diag(Xc Xc^T) (squared norms of centred rows) of every layer, float64 [L, N]."""
        out = torch.empty(self.num_layers, self.num_rows, dtype=torch.float64, device=self.features[0].device)
        for index in range(self.num_layers):
            for start in range(0, self.num_rows, FEATURE_CHUNK_ROWS):
                stop = min(start + FEATURE_CHUNK_ROWS, self.num_rows)
                out[index, start:stop] = self.centred_chunk(index, start, stop).double().square().sum(dim=1)
        return out

    def self_products(self) -> torch.Tensor:
        """<Kc, Kc> = ||Xc^T Xc||_F^2 of every layer, float64 [L]."""
        products = _squared_cross_products(self, self, [(index, index) for index in range(self.num_layers)])
        return torch.stack([products[(index, index)] for index in range(self.num_layers)])

    def raw_values(self, layer: int, cols: torch.Tensor, keys: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Raw kernel entries K_layer[i, cols[..., i, s]] = x_i . x_j for cols [..., N, k] (row i implicit,
        both in this stack's order), float64 of float32 dot products: `GramStack.raw_values` without the
        N x N kernel. `keys` is accepted for the GramStack signature and unused.

        Each [N, k] list is a sparsity pattern, and X X^T sampled at it is one sampled dense-dense product
        (torch.sparse.sampled_addmm, CPU and CUDA; it reads each feature row in place, where gathering
        the neighbours' rows costs ~10x more on CPU). Other devices gather rows in chunks of
        EDGE_GATHER_BYTES.
        """
        features = self.features[layer]
        num_rows, count = self.num_rows, cols.shape[-1]
        lists = cols.reshape(-1, num_rows, count)
        if self.order is not None:
            # Stored layout: stored row r holds the list of the row it became, in stored indices.
            inverse = torch.empty_like(self.order)
            inverse[self.order] = torch.arange(num_rows, device=self.order.device)
            lists = self.order[lists][:, inverse]
        values = None
        if features.device.type in ("cpu", "cuda"):
            try:
                values = _sampled_products(features, lists)
            except NotImplementedError:  # a torch build without the sparse kernel for this device
                values = None
        if values is None:
            values = _gathered_products(features, lists)
        if self.order is not None:
            values = values[:, self.order]
        return values.reshape(cols.shape)

    @property
    def raw_traces(self) -> torch.Tensor:
        """tr(X X^T) of every layer, float64 [L] (for the degeneracy check)."""
        return torch.stack([layer.double().square().sum() for layer in self.features])

    def permuted(self, order: torch.Tensor) -> "FeatureStack":
        combined = order if self.order is None else self.order[order]
        return replace(self, order=combined)

    def restricted(self, rows: torch.Tensor) -> "FeatureStack":
        """The stack of `rows` only (materialised and re-centred)."""
        return FeatureStack.from_layers([self.layer(index)[rows] for index in range(self.num_layers)])


def _sampled_products(features: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
    """x_i . x_j at j = lists[b, i, s] for features [N, D] and lists int64 [B, N, k]: float64 [B, N, k],
    by one sampled sparse product per list (the lists are sorted per row for the CSR layout, then the
    values put back in list order)."""
    batches, num_rows, count = lists.shape
    ordered, positions = lists.sort(dim=2)
    crow = torch.arange(0, num_rows * count + 1, count, device=lists.device)
    out = torch.empty(lists.shape, dtype=torch.float64, device=lists.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        for index in range(batches):
            pattern = torch.sparse_csr_tensor(
                crow,
                ordered[index].flatten(),
                torch.zeros(num_rows * count, dtype=features.dtype, device=features.device),
                size=(num_rows, features.shape[0]),
                check_invariants=False,
            )
            sampled = torch.sparse.sampled_addmm(pattern, features, features.T, beta=0.0).values()
            out[index].scatter_(1, positions[index], sampled.view(num_rows, count).double())
    return out


def _gathered_products(features: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
    """`_sampled_products` by gathering each row's neighbours [rows, k, D] (any device)."""
    batches, num_rows, count = lists.shape
    out = torch.empty(lists.shape, dtype=torch.float64, device=lists.device)
    step = max(1, EDGE_GATHER_BYTES // (4 * features.shape[1] * count))
    for index in range(batches):
        for start in range(0, num_rows, step):
            stop = min(start + step, num_rows)
            neighbours = features[lists[index, start:stop]]
            out[index, start:stop] = torch.matmul(neighbours, features[start:stop, :, None]).squeeze(-1).double()
    return out


def _pair_groups(left: FeatureStack, right: FeatureStack, pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Split `pairs` so that each group's float64 accumulators [Da, Db] fit CROSS_PRODUCT_BUDGET_BYTES."""
    groups: list[list[tuple[int, int]]] = [[]]
    used = 0
    for a, b in pairs:
        size = 8 * left.features[a].shape[1] * right.features[b].shape[1]
        if groups[-1] and used + size > CROSS_PRODUCT_BUDGET_BYTES:
            groups.append([])
            used = 0
        groups[-1].append((a, b))
        used += size
    return groups


def _squared_cross_products(
    left: FeatureStack, right: FeatureStack, pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], torch.Tensor]:
    """||Xc_a^T Yc_b||_F^2 (float64 scalars) for `pairs` of (left layer, right layer).

    One pass over row chunks per group of pairs: each layer's chunk is centred once and multiplied in
    float32; the products [Da, Db] are summed across chunks in float64.
    """
    out: dict[tuple[int, int], torch.Tensor] = {}
    for group in _pair_groups(left, right, pairs):
        totals: dict[tuple[int, int], torch.Tensor] = {}
        for start in range(0, left.num_rows, FEATURE_CHUNK_ROWS):
            stop = min(start + FEATURE_CHUNK_ROWS, left.num_rows)
            left_chunks = {a: left.centred_chunk(a, start, stop) for a in dict.fromkeys(a for a, _ in group)}
            right_chunks = {b: right.centred_chunk(b, start, stop) for b in dict.fromkeys(b for _, b in group)}
            for a, b in group:
                part = (left_chunks[a].T @ right_chunks[b]).double()
                totals[(a, b)] = part if (a, b) not in totals else totals[(a, b)] + part
        out.update({pair: total.square().sum() for pair, total in totals.items()})
    return out


def feature_products(left: FeatureStack, right: FeatureStack) -> torch.Tensor:
    """<Kc_a, Lc_b> = ||Xc_a^T Yc_b||_F^2 for every layer pair: float64 [La, Lb]."""
    pairs = [(a, b) for a in range(left.num_layers) for b in range(right.num_layers)]
    products = _squared_cross_products(left, right, pairs)
    return torch.stack([products[pair] for pair in pairs]).reshape(left.num_layers, right.num_layers)


KernelStack = Union[GramStack, FeatureStack]


def kernel_products(left: KernelStack, right: KernelStack) -> torch.Tensor:
    """<Kc_a, Lc_b> for every layer pair, float64 [La, Lb]; both stacks must be of the same kind."""
    if isinstance(left, GramStack) and isinstance(right, GramStack):
        return gram_products(left, right)
    if isinstance(left, FeatureStack) and isinstance(right, FeatureStack):
        return feature_products(left, right)
    raise TypeError("kernel_products needs two GramStacks or two FeatureStacks")


def unbiased_from_centred(
    products: torch.Tensor,
    left_diagonals: torch.Tensor,
    right_diagonals: torch.Tensor,
    *,
    num_rows: Optional[int] = None,
) -> torch.Tensor:
    """Unbiased HSIC of every pair from <Kc, Lc> [..., La, Lb] and the diagonals of Kc [..., La, N] and
    Lc [..., Lb, N] (leading batch dimensions broadcast). `num_rows` is n when the diagonals hold a subset of
    n rows and zeros elsewhere (default: N)."""
    n = left_diagonals.shape[-1] if num_rows is None else num_rows
    if n < 4:
        raise InputError(f"unbiased HSIC needs N > 3 rows; got N={n}. Use more rows or the biased CKA.")
    cross = left_diagonals @ right_diagonals.transpose(-1, -2)
    traces = left_diagonals.sum(dim=-1)[..., :, None] * right_diagonals.sum(dim=-1)[..., None, :]
    return (products - n / (n - 2) * cross + traces / ((n - 1) * (n - 2))) / (n * (n - 3))


def unbiased_self(
    self_products: torch.Tensor, diagonals: torch.Tensor, *, num_rows: Optional[int] = None
) -> torch.Tensor:
    """Unbiased HSIC(K, K) of every layer, float64 [..., L], from <Kc, Kc> [..., L] and diag(Kc) [..., L, N]
    (`num_rows` as in `unbiased_from_centred`)."""
    n = diagonals.shape[-1] if num_rows is None else num_rows
    if n < 4:
        raise InputError(f"unbiased HSIC needs N > 3 rows; got N={n}. Use more rows or the biased CKA.")
    cross = diagonals.square().sum(dim=-1)
    return (self_products - n / (n - 2) * cross + diagonals.sum(dim=-1).square() / ((n - 1) * (n - 2))) / (n * (n - 3))


def is_constant(centred_trace: Any, raw_trace: Any) -> Any:
    """The one rule for "constant across rows": tr(H K H) <= DEGENERATE_FRACTION * |tr(K)|, elementwise on
    floats, numpy arrays or tensors (True where the layer's rows all sit at their mean, up to rounding)."""
    if isinstance(raw_trace, torch.Tensor):
        return centred_trace <= DEGENERATE_FRACTION * raw_trace.abs().clamp_min(1e-300)
    return centred_trace <= DEGENERATE_FRACTION * max(abs(raw_trace), 1e-300)


def check_not_constant(
    centred_traces: torch.Tensor, raw_traces: torch.Tensor, *, name: str, first_layer: int = 0
) -> None:
    """InputError naming the layer of `name` whose centred kernel vanishes (features constant across rows).

    `centred_traces` [L] are tr(H K H), the rows' total squared distance to their mean, `raw_traces`
    [L] tr(K); layers are numbered from `first_layer`.
    """
    flat = is_constant(centred_traces, raw_traces)
    if bool(flat.any()):
        layer = first_layer + int(flat.nonzero()[0, 0])
        raise InputError(
            f"`{name}` layer {layer} is constant across rows (up to float32 rounding), so every metric is undefined "
            "there (kNN sets would be decided by ties alone). Drop that layer, e.g. a ViT's embedding state 0, "
            "whose CLS token is the same for every image."
        )


def check_stack_not_constant(stack: "KernelStack", *, name: str) -> None:
    """`check_not_constant` for every layer of a GramStack or FeatureStack."""
    check_not_constant(stack.centred_diagonals().sum(dim=1), stack.raw_traces, name=name)


def cka_from_hsic(
    cross: torch.Tensor, left_self: torch.Tensor, right_self: torch.Tensor, *, epsilon: float = 0.0
) -> torch.Tensor:
    """CKA = HSIC(K, L) / (sqrt(HSIC(K, K) HSIC(L, L)) + epsilon) for every pair: float64 [..., La, Lb] from
    cross [..., La, Lb] and self terms [..., La], [..., Lb] (leading batch dimensions broadcast).

    epsilon = 0 is the definition; PRH's code adds 1e-6.
    """
    return cross / (torch.sqrt(left_self[..., :, None] * right_self[..., None, :]) + epsilon)


def _explicit(kernel: torch.Tensor, *, zero_diagonal: bool = False) -> GramStack:
    """A one-layer float64 GramStack from an explicit kernel [N, N]."""
    out = torch.as_tensor(kernel, dtype=torch.float64).clone()
    if zero_diagonal:
        out.fill_diagonal_(0.0)
    return GramStack.centre_in_place(out[None])


def hsic_biased(kernel_a: torch.Tensor, kernel_b: torch.Tensor) -> float:
    """tr(K H L H) for explicit symmetric kernels [N, N] (no 1/N^2 factor, as PRH)."""
    return float(gram_products(_explicit(kernel_a), _explicit(kernel_b))[0, 0])


def hsic_unbiased(kernel_a: torch.Tensor, kernel_b: torch.Tensor) -> float:
    """Unbiased HSIC (Song et al. 2012) for explicit symmetric kernels [N, N]; their diagonals are ignored.

    The diagonals are zeroed first: the result does not depend on them, and a large diagonal would
    otherwise cost precision in the centred form.
    """
    a, b = _explicit(kernel_a, zero_diagonal=True), _explicit(kernel_b, zero_diagonal=True)
    return float(unbiased_from_centred(gram_products(a, b), a.centred_diagonals(), b.centred_diagonals())[0, 0])


def median_distance(gram: torch.Tensor) -> float:
    """Median Euclidean distance over pairs i < j, from a raw Gram matrix [N, N]."""
    upper = torch.triu_indices(gram.shape[0], gram.shape[0], offset=1, device=gram.device)
    return float(squared_distances(gram)[upper[0], upper[1]].median().sqrt())


def squared_distances(gram: torch.Tensor) -> torch.Tensor:
    """|x_i - x_j|^2 [N, N] from the raw Gram matrix [N, N] (clamped at 0 against rounding)."""
    norms = gram.diagonal()
    return (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0)


def rbf_kernel(gram: torch.Tensor, *, sigma: Optional[float], name: str, layer: int) -> torch.Tensor:
    """exp(-|x_i - x_j|^2 / (2 sigma^2)) [N, N] from a raw Gram [N, N]; sigma None = median pairwise distance.

    InputError naming `name` and `layer` when the bandwidth is not positive.
    """
    if sigma is not None and not float(sigma) > 0:
        raise InputError(f"rbf_sigma={sigma} must be > 0 (or None for each layer's median pairwise distance).")
    width = median_distance(gram) if sigma is None else float(sigma)
    if not width > 0:
        raise InputError(
            f"`{name}` layer {layer}: the median pairwise distance is 0 (the rows are mostly identical, e.g. a "
            "constant layer), so the RBF bandwidth would be 0; drop the layer or pass rbf_sigma."
        )
    return torch.exp(-squared_distances(gram) / (2 * width**2))
