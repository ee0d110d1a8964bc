"""Reading one modality's layers and applying PRH's preprocessing (outlier clamp, then L2 rows).

A modality is a *layer stack*: an array [N, L, D] (numpy or torch) or any `probe.layer_source.LayerSource`
(a feature cache's `LayerStack`, for example). Each layer is read exactly once.

PRH's clamp (docs/metrics.md, Preprocessing): q = mean over samples of each sample's `quantile` of |x| over
all its layers and dims (linear interpolation, as `torch.quantile`), then x is clamped to [-q, q]; after that every
layer's rows are scaled to unit L2 norm.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from probe.align.hsic import is_constant
from probe.align.quantiles import quantile_positions, row_quantiles
from probe.errors import InputError
from probe.layer_source import LayerSource, as_layer_source
from probe.progress import ProgressCallback

# Same floor as torch.nn.functional.normalize, which PRH uses: an all-zero row stays zero.
NORM_FLOOR = 1e-12
# Rows per slab when computing per-sample quantiles: a slab [rows, L * D] that stays in cache across
# the few passes over it is faster than a big one.
QUANTILE_ROW_BLOCK = 32


ArrayLike = Union[np.ndarray, torch.Tensor]
LayerInput = Union[ArrayLike, LayerSource]


def as_matrix(values: Any, *, name: str, device: torch.device) -> torch.Tensor:
    """`values` as a finite float32 tensor [N, D] on `device`; InputError naming `name` otherwise.

    May return a view of `values` (callers must not modify it in place).
    """
    tensor = torch.as_tensor(values).detach()
    if tensor.ndim != 2:
        raise InputError(f"`{name}` must be a matrix [N, D]; got shape {tuple(tensor.shape)}.")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    tensor = tensor.to(device=device, dtype=torch.float32)
    # The sum is NaN/Inf whenever an entry is (one cheap pass); only then is every entry checked, since
    # a sum of large finite values can also overflow.
    if not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        raise InputError(f"`{name}` contains NaN or Inf values; clean or re-extract these features.")
    return tensor


def read_layers(source: LayerSource, *, name: str, device: torch.device) -> list[torch.Tensor]:
    """Every layer of `source` as a finite float32 tensor [N, D] on `device`, each read once.

    Raises InputError naming `name` for an empty stack, a layer of the wrong shape, or NaN/Inf.
    """
    num_layers, num_rows = int(source.num_layers), int(source.num_rows)
    if num_layers < 1 or num_rows < 1:
        raise InputError(f"`{name}` has {num_layers} layers and {num_rows} rows; it needs at least one of each.")
    layers = []
    for index in range(num_layers):
        layer = as_matrix(source.layer(index), name=f"{name} layer {index}", device=device)
        if layer.shape[0] != num_rows:
            raise InputError(f"`{name}` layer {index} has {layer.shape[0]} rows; the stack says {num_rows}.")
        layers.append(layer)
    return layers


def _slab_quantiles_numpy(layers: list[torch.Tensor], start: int, stop: int, quantile: float) -> np.ndarray:
    """Per-row `quantile` of |x| over all layers for rows start:stop (CPU), float64 [rows]."""
    widths = [layer.shape[1] for layer in layers]
    slab = np.empty((stop - start, sum(widths)), dtype=np.float32)
    offset = 0
    for layer, width in zip(layers, widths):
        np.abs(layer[start:stop].numpy(), out=slab[:, offset : offset + width])
        offset += width
    return row_quantiles(slab, quantile)


def _slab_quantiles_torch(layers: list[torch.Tensor], start: int, stop: int, quantile: float) -> np.ndarray:
    """As `_slab_quantiles_numpy`, on the layers' (accelerator) device."""
    slab = torch.cat([layer[start:stop].abs() for layer in layers], dim=1)
    low, high, fraction = quantile_positions(quantile, slab.shape[1])
    below = torch.kthvalue(slab, low + 1, dim=1).values.double()
    above = torch.kthvalue(slab, high + 1, dim=1).values.double()
    return (below + fraction * (above - below)).cpu().numpy()


def clip_threshold(layers: list[torch.Tensor], *, quantile: float) -> float:
    """PRH's clamp level for one modality: mean over rows of each row's `quantile` of |x| over all layers.

    `layers` are [N, D_l]; each row's values across every layer and dim form one sample. Quantiles
    use linear interpolation, as torch.quantile.
    """
    if not 0.0 < quantile <= 1.0:
        raise InputError(f"clip_quantile={quantile} must be in (0, 1], or None to turn the clamp off.")
    num_rows = layers[0].shape[0]
    slabs = [(start, min(start + QUANTILE_ROW_BLOCK, num_rows)) for start in range(0, num_rows, QUANTILE_ROW_BLOCK)]
    if layers[0].device.type != "cpu":
        per_sample = [_slab_quantiles_torch(layers, start, stop, quantile) for start, stop in slabs]
    else:
        # numpy releases the GIL in these loops: slabs run on torch's CPU threads.
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            per_sample = list(pool.map(lambda bounds: _slab_quantiles_numpy(layers, *bounds, quantile), slabs))
    return float(np.concatenate(per_sample).mean())


def prepare_layer(layer: torch.Tensor, *, clip: Optional[float], normalize: bool) -> torch.Tensor:
    """One layer [N, D] clamped to [-clip, clip] (when given) and with unit-norm rows (when `normalize`).

    `layer` is never modified; with neither step it is returned as is.
    """
    if clip is None and not normalize:
        return layer
    out = layer.clamp(-clip, clip) if clip is not None else layer.clone()
    if normalize:
        out /= out.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)
    return out


def normalize_gram_in_place(gram: torch.Tensor) -> torch.Tensor:
    """Turn the Gram [N, N] of rows x_i into that of x_i / max(|x_i|, NORM_FLOOR), in place.

    Same numbers as normalising the rows first, for N x N work instead of N x D.
    """
    norms = gram.diagonal().clamp_min(0).sqrt().clamp_min(NORM_FLOOR)
    gram /= norms[:, None]
    gram /= norms[None, :]
    return gram


@dataclass(frozen=True)
class PreparedLayers:
    """One modality after preprocessing: `layers` are [N, D] float32, `clip` the clamp level used (or None)."""

    layers: list[torch.Tensor]
    clip: Optional[float]


def prepare_layers(
    features: LayerInput,
    *,
    name: str,
    clip_quantile: Optional[float],
    normalize: bool,
    device: torch.device,
    progress: Optional[ProgressCallback] = None,
) -> PreparedLayers:
    """Read every layer of `features` ([N, L, D] array or layer source) and apply PRH's preprocessing.

    Returns the L prepared layers [N, D] float32 on `device` and the clamp level. A source with
    `clamp_extra_layers()` (a cache's `LayerStack` that left constant layers out) adds those layers to the clamp
    level's computation only, as PRH computes it over every stored layer. Raises InputError naming `name` for
    bad shapes or non-finite values.
    """
    source = as_layer_source(features, name=name)
    layers = read_layers(source, name=name, device=device)
    clip = None
    if clip_quantile is not None:
        extra_source = getattr(source, "clamp_extra_layers", None)
        extra = (
            [as_matrix(x, name=f"{name} (left-out layer)", device=device) for x in extra_source()]
            if extra_source
            else []
        )
        clip = clip_threshold(layers + extra, quantile=clip_quantile)
        del extra
    prepared = []
    for index, layer in enumerate(layers):
        prepared.append(prepare_layer(layer, clip=clip, normalize=normalize))
        layers[index] = prepared[-1]  # drop the raw layer as soon as it is prepared
        if progress is not None:
            progress(index + 1, len(layers), f"prepare {name}")
    return PreparedLayers(layers=prepared, clip=clip)


def constant_layers(features: LayerInput, *, name: str) -> list[int]:
    """Positions of the layers of `features` that are constant across rows once rows are L2-normalised (a
    ViT's CLS token at the embedding state 0 is one learned vector for every image). The rule is
    `probe.align.hsic.is_constant`, the one the engine refuses such layers by; each layer is read once."""
    source = as_layer_source(features, name=name)
    found = []
    for index in range(int(source.num_layers)):
        x = np.asarray(source.layer(index), dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        # tr(H K H) of the normalised linear kernel (the rows' total squared distance to their mean) vs tr(K).
        centred, raw = float(((x - x.mean(0)) ** 2).sum()), float((x**2).sum())
        if is_constant(centred, raw):
            found.append(index)
    return found
