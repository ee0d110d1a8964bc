"""Linear probes on every layer of a stack, and the best layer chosen on validation scores.

`label_probe` dispatches one layer to the label, word or cross-modal probe; `probe_layers` runs it on every
layer of a layer source and names the best layer by its *validation* score (never the test score). See
`probe.linear` for the overview and docs/linear.md for the procedures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

import numpy as np

from probe.errors import InputError
from probe.layer_source import LayerSource
from probe.linear.base import ProbeSettings, one_blas_thread
from probe.linear.crossmodal import CrossmodalProbeResult, crossmodal_probe
from probe.linear.labels import LabelProbeResult, multiclass_probe
from probe.linear.multilabel import MultiLabelProbeResult, multilabel_probe
from probe.log import logger
from probe.progress import ProgressCallback

__all__ = ["FeatureLayers", "LayerProbe", "LayerSweepResult", "ProbeTask", "label_probe", "probe_layers"]

ProbeResult = Union[LabelProbeResult, MultiLabelProbeResult, CrossmodalProbeResult]


class ProbeTask(str, Enum):
    """What `probe_layers` fits on each layer.

    LABELS: `target` = class labels [N] (logistic probe) or binary targets [N, W] such as caption
        words (ridge readout).
    CROSSMODAL: ridge probe of `target` = text features [N, Dy].
    """

    LABELS = "labels"
    CROSSMODAL = "crossmodal"


# Kept as the linear-probe name of the one layer-stack protocol.
FeatureLayers = LayerSource


def label_probe(
    features: Any,
    labels: Any,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    settings: ProbeSettings | None = None,
) -> LabelProbeResult | MultiLabelProbeResult:
    """Logistic probe of labels from features, with a shuffled-label control.

    features: [N, D]. labels: [N] class labels -> `multiclass_probe` (LabelProbeResult), or
    [N, W] 0/1 targets such as caption words -> `multilabel_probe` (MultiLabelProbeResult), where
    names gives the W column names. Same inputs and seed give the same result.
    """
    if np.ndim(labels) == 2:
        return multilabel_probe(features, labels, names=names, seed=seed, settings=settings)
    return multiclass_probe(features, labels, seed=seed, settings=settings)


@dataclass(frozen=True)
class LayerProbe:
    """One layer's probe result."""

    layer: int
    result: ProbeResult


@dataclass(frozen=True)
class LayerSweepResult:
    """Per-layer results of `probe_layers`, in the order probed, and the best layer.

    best_layer has the highest validation score (`selection_metric`); ties go to the earlier layer.
    """

    task: ProbeTask
    layers: list[LayerProbe]
    best_layer: int
    selection_metric: str

    @property
    def best(self) -> LayerProbe:
        return next(entry for entry in self.layers if entry.layer == self.best_layer)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: task, best layer, selection metric and every layer's result dict."""
        return {
            "task": self.task.value,
            "best_layer": self.best_layer,
            "selection_metric": self.selection_metric,
            "layers": [{"layer": e.layer, **e.result.to_dict()} for e in self.layers],
        }


def _layer_loaders(layers: Any) -> list[tuple[int, Callable[[], Any]]]:
    """Turn any accepted layer source into (layer index, load function) pairs, loading nothing."""
    if isinstance(layers, LayerSource):
        return [(i, lambda i=i: layers.layer(i)) for i in range(int(layers.num_layers))]
    if isinstance(layers, np.ndarray):
        if layers.ndim != 3:
            raise InputError(
                f"layers as an array must be [N, L, D], got shape {layers.shape}; pass a single "
                "layer to label_probe / crossmodal_probe instead"
            )
        return [(i, lambda i=i: layers[:, i, :]) for i in range(layers.shape[1])]
    if isinstance(layers, Mapping):
        return [(int(i), lambda i=i: layers[i]) for i in sorted(layers)]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise InputError(
            "layers must be a [N, L, D] array, a feature cache (num_layers, num_rows, layer(i)), "
            f"a mapping or an iterable of (layer index, [N, D] array) pairs; got {type(layers).__name__}"
        )
    loaders = []
    for entry in layers:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise InputError("layers: each item must be a (layer index, [N, D] array) pair")
        index, array = entry
        loaders.append((int(index), lambda array=array: array))
    return loaders


def _probe_one(
    features: Any,
    task: ProbeTask,
    target: Any,
    *,
    names: Sequence[str] | None,
    seed: int,
    settings: ProbeSettings,
) -> ProbeResult:
    if task is ProbeTask.CROSSMODAL:
        return crossmodal_probe(features, target, seed=seed, settings=settings)
    return label_probe(features, target, names=names, seed=seed, settings=settings)


def probe_layers(
    layers: Any,
    *,
    task: ProbeTask | str,
    target: Any,
    names: Sequence[str] | None = None,
    seed: int = 0,
    settings: ProbeSettings | None = None,
    progress: ProgressCallback | None = None,
) -> LayerSweepResult:
    """Run one probe on every layer and pick the best layer by its validation score.

    layers: a [N, L, D] array, a feature-cache-like object (num_layers, num_rows, layer(i) ->
    [N, D]; read one layer at a time), a mapping {layer index: [N, D]}, or an iterable of
    (layer index, [N, D]) pairs. task: ProbeTask or its value ("labels", "crossmodal").
    target: labels [N] or binary targets [N, W] for LABELS (names: the W column names), text
    features [N, Dy] for CROSSMODAL. Every layer uses the same seed, hence the same split.
    progress: optional callback (layers done, layers total, "layer <index>") after each layer.
    Returns a LayerSweepResult.
    """
    try:
        task = ProbeTask(task)
    except ValueError:
        choices = ", ".join(t.value for t in ProbeTask)
        raise InputError(f"task must be one of {choices}; got {task!r}") from None
    settings = settings or ProbeSettings()
    loaders = _layer_loaders(layers)
    if not loaders:
        raise InputError("layers is empty: there is no layer to probe")
    results = []
    with one_blas_thread():
        for done, (index, load) in enumerate(loaders, start=1):
            result = _probe_one(load(), task, target, names=names, seed=seed, settings=settings)
            results.append(LayerProbe(layer=index, result=result))
            logger.debug("probed layer %d (%d/%d)", index, done, len(loaders))
            if progress is not None:
                progress(done, len(loaders), f"layer {index}")
    scores = [r.result.selection_score for r in results]
    best = int(np.argmax([s if np.isfinite(s) else -np.inf for s in scores]))
    return LayerSweepResult(
        task=task,
        layers=results,
        best_layer=results[best].layer,
        selection_metric=results[0].result.SELECTION_METRIC,
    )
