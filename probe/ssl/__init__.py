"""Self-supervised training of the project's own small vision model (images only, never captions)."""

from probe.ssl.contrastive import ContrastiveSpec, train_contrastive
from probe.ssl.export import export_mae_encoder, export_vit_encoder, random_init_vit
from probe.ssl.loop import TrainResult, VitEncoderSpec
from probe.ssl.mae import MaeSpec, train_mae

__all__ = [
    "ContrastiveSpec",
    "MaeSpec",
    "TrainResult",
    "VitEncoderSpec",
    "export_mae_encoder",
    "export_vit_encoder",
    "random_init_vit",
    "train_contrastive",
    "train_mae",
]
