"""A small ViT trained with the masked-autoencoder objective (as WebSSL-MAE), on images only, never text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from probe.ssl.augment import random_resized_crops
from probe.ssl.loop import TrainResult, VitEncoderSpec, normalise, train_loop


@dataclass(frozen=True)
class MaeSpec(VitEncoderSpec):
    """The encoder (see VitEncoderSpec) plus the MAE's decoder, mask ratio and loss."""

    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def mae_config(self) -> ViTMAEConfig:
        """The transformers config of the encoder + decoder."""
        return ViTMAEConfig(
            **self.encoder_fields(),
            decoder_hidden_size=self.decoder_hidden_size,
            decoder_num_hidden_layers=self.decoder_layers,
            decoder_num_attention_heads=self.decoder_heads,
            decoder_intermediate_size=self.mlp_ratio * self.decoder_hidden_size,
            mask_ratio=self.mask_ratio,
            norm_pix_loss=self.norm_pix_loss,
        )


def train_mae(
    images: torch.Tensor,
    *,
    spec: MaeSpec,
    steps: int,
    seed: int,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> TrainResult:
    """Train a fresh ViTMAEForPreTraining for `steps` steps on augmented crops of `images`.

    images: [N, 3, H, W] uint8 (H, W >= spec.image_size works best). Every batch is cropped and flipped
    (`random_resized_crops`) and `spec.mask_ratio` of its patches are masked. `seed` fixes the initialisation,
    batches, crops and masks. Returns the model (in eval mode) with its per-step losses.
    """

    def batch_loss(model: ViTMAEForPreTraining, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        crops = random_resized_crops(batch, size=spec.image_size, generator=generator, scale=spec.crop_scale)
        return model(pixel_values=normalise(crops, spec=spec)).loss

    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(spec.mae_config())
    return train_loop(model, images, batch_loss=batch_loss, spec=spec, steps=steps, seed=seed, on_step=on_step)
