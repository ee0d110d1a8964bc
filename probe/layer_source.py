"""The one layer-stack protocol: what hands out one modality's layers one at a time.

Alignment (`probe.align`) and linear probes (`probe.linear`) read layers through it and never open feature
caches themselves; `probe.features.cache.LayerStack` is the cache's implementation, `ArrayLayers` an
array's. Layers are read on demand, so a stack of 33 x 4096-wide layers never has to fit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Optional, Protocol, runtime_checkable

from probe.errors import InputError


@runtime_checkable
class LayerSource(Protocol):
    """`num_layers` layers of `num_rows` rows each; `layer(i)` -> array [num_rows, D] (numpy or torch)."""

    num_layers: int
    num_rows: int

    def layer(self, index: int) -> Any: ...


@dataclass(frozen=True)
class ArrayLayers:
    """An array [N, L, D] (numpy or torch) seen as a layer source."""

    features: Any

    @property
    def num_layers(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_rows(self) -> int:
        return int(self.features.shape[0])

    def layer(self, index: int) -> Any:
        return self.features[:, index, :]


def source_identity(source: Any) -> Optional[Hashable]:
    """What identifies a source's contents for reuse (`identity`, when it has one: a feature cache's layers do),
    else None (an array has none: its values could change under the same object)."""
    return getattr(source, "identity", None)


def as_layer_source(features: Any, *, name: str) -> LayerSource:
    """`features` as a layer source: arrays must be [N, L, D]; objects with `layer(i)` pass through.

    Raises InputError naming `name` for anything else.
    """
    shape = getattr(features, "shape", None)
    if shape is not None and hasattr(features, "ndim"):
        if features.ndim != 3:
            raise InputError(
                f"`{name}` must be an array [N, L, D] (rows, layers, dims); got shape {tuple(shape)}. "
                "For a single layer use features[:, None, :]."
            )
        return ArrayLayers(features)
    if isinstance(features, LayerSource):
        return features
    raise InputError(
        f"`{name}` must be an array [N, L, D] or a layer source with num_layers, num_rows and layer(i) "
        f"(a feature cache's LayerStack, for example); got {type(features).__name__}."
    )
