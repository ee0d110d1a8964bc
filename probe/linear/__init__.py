"""Linear probes of layer features: the public entry point.

- `label_probe(features [N, D], labels)`: logistic readout of class labels [N] (see
  `probe.linear.labels`), or ridge readout of binary targets [N, W] such as caption words (see
  `probe.linear.multilabel`), each with a shuffled-target control.
- `crossmodal_probe(x [N, Dx], y [N, Dy])`: ridge from vision to text features, scored by R^2 and
  caption retrieval, with a shuffled-pair control (see `probe.linear.crossmodal`).
- `probe_layers(layers, task=..., target=...)`: either probe on every layer, and the best layer.

The best layer is the one with the best *validation* score (validation accuracy for class labels;
for words and text features, which pick their ridge penalty by leave-one-out on the training rows,
the leave-one-out average precision or R^2), not the best test score, so the reported test scores
of the best layer are not inflated by the choice among layers.
Settings (grids, split fractions, lbfgs limits) are one `ProbeSettings`; see `docs/linear.md`.

Inside: `base` (settings, splits, result base), `labels`, `multilabel`, `crossmodal`, `ridge`, `ranking`
(the probes and their scores), `words` (caption-word targets), `sweep` (every layer, and the best).
"""

from probe.linear.base import DEFAULT_ALPHA_GRID, DEFAULT_C_GRID, ProbeSettings
from probe.linear.crossmodal import CrossmodalProbeResult, RegressionScores, crossmodal_probe
from probe.linear.labels import ClassifierScores, LabelProbeResult, multiclass_probe
from probe.linear.multilabel import MultiLabelProbeResult, MultiLabelScores, WordScore, multilabel_probe
from probe.linear.sweep import FeatureLayers, LayerProbe, LayerSweepResult, ProbeTask, label_probe, probe_layers

__all__ = [
    "DEFAULT_ALPHA_GRID",
    "DEFAULT_C_GRID",
    "ClassifierScores",
    "CrossmodalProbeResult",
    "FeatureLayers",
    "LabelProbeResult",
    "LayerProbe",
    "LayerSweepResult",
    "MultiLabelProbeResult",
    "MultiLabelScores",
    "ProbeSettings",
    "ProbeTask",
    "RegressionScores",
    "WordScore",
    "crossmodal_probe",
    "label_probe",
    "multiclass_probe",
    "multilabel_probe",
    "probe_layers",
]
