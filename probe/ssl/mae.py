"""A small ViT trained with the masked-autoencoder objective (as WebSSL-MAE), on images only, never text."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from probe.log import logger
from probe.ssl.augment import random_resized_crops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MaeSpec:
    """Architecture and optimisation of the tiny MAE. The encoder is what gets exported as a ViTModel."""

    image_size: int = 128
    patch_size: int = 16
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 3
    mlp_ratio: int = 4
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.1
    crop_scale: tuple[float, float] = (0.35, 1.0)
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def encoder_fields(self) -> dict:
        """The config fields of the encoder, shared by the MAE config and the exported ViTModel's config."""
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.mlp_ratio * self.hidden_size,
            "qkv_bias": True,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        }

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


@dataclass
class MaeTrainResult:
    """A trained MAE and its record: the loss of every step, the wall time and the seed."""

    model: ViTMAEForPreTraining
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    seed: int = 0


def learning_rate_at(step: int, *, steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0 at `steps`; step counts from 0."""
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def normalise(images: torch.Tensor, *, spec: MaeSpec) -> torch.Tensor:
    """[B, 3, H, W] floats in [0, 1] -> the same, standardised with the spec's mean and std."""
    mean = torch.tensor(spec.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std).view(1, 3, 1, 1)
    return (images - mean) / std


def train_mae(
    images: torch.Tensor,
    *,
    spec: MaeSpec,
    steps: int,
    seed: int,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> MaeTrainResult:
    """Train a fresh MAE for `steps` steps on augmented crops of `images`.

    images: [N, 3, H, W] uint8 (H, W >= spec.image_size works best). Every batch draws `spec.batch_size`
    images (a new permutation each epoch), crops and flips them, and masks `spec.mask_ratio` of the patches.
    `seed` fixes the initialisation, batches, crops and masks. `on_step(step, loss)` is called after each step.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ViTMAEForPreTraining(spec.mae_config())
    model.train()
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=spec.learning_rate,
        betas=spec.betas,
        weight_decay=spec.weight_decay,
    )
    result = MaeTrainResult(model=model, seed=seed)
    order = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    for step in range(steps):
        if order.numel() < spec.batch_size:
            order = torch.cat([order, torch.randperm(images.shape[0], generator=generator)])
        batch, order = order[: spec.batch_size], order[spec.batch_size :]
        crops = random_resized_crops(
            images[batch].float() / 255.0, size=spec.image_size, generator=generator, scale=spec.crop_scale
        )
        for group in optimiser.param_groups:
            group["lr"] = learning_rate_at(
                step, steps=steps, peak=spec.learning_rate, warmup_fraction=spec.warmup_fraction
            )
        loss = model(pixel_values=normalise(crops, spec=spec)).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        result.losses.append(loss.item())
        if on_step is not None:
            on_step(step, result.losses[-1])
    result.wall_s = time.perf_counter() - start
    logger.info("MAE: %d steps in %.0f s, loss %.4f -> %.4f", steps, result.wall_s, result.losses[0], result.losses[-1])
    model.eval()
    return result
