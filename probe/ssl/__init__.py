"""Self-supervised training of the project's own small vision model (images only, never captions)."""

from probe.ssl.export import export_encoder, random_init_vit
from probe.ssl.mae import MaeSpec, MaeTrainResult, train_mae

__all__ = ["MaeSpec", "MaeTrainResult", "export_encoder", "random_init_vit", "train_mae"]
