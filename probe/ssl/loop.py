"""What every self-supervised objective here shares: the encoder spec, the seeded batch loop and its schedule."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from probe.log import logger

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VitEncoderSpec:
    """The ViT encoder that gets exported as a ViTModel, and the optimisation settings of its training."""

    image_size: int = 128
    patch_size: int = 16
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 3
    mlp_ratio: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.1
    crop_scale: tuple[float, float] = (0.35, 1.0)
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def encoder_fields(self) -> dict:
        """The config fields of the encoder, shared by the training model's config and the exported ViTConfig."""
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


@dataclass
class TrainResult:
    """A trained model and its record: the loss of every step, the wall time and the seed."""

    model: nn.Module
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


def normalise(images: torch.Tensor, *, spec: VitEncoderSpec) -> torch.Tensor:
    """[B, 3, H, W] floats in [0, 1] -> the same, standardised with the spec's mean and std."""
    mean = torch.tensor(spec.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std).view(1, 3, 1, 1)
    return (images - mean) / std


BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def train_loop(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_loss: BatchLoss,
    spec: VitEncoderSpec,
    steps: int,
    seed: int,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> TrainResult:
    """Train `model` for `steps` AdamW steps on batches of `images` ([N, 3, H, W] uint8).

    Each step takes the next `spec.batch_size` indices of a seeded permutation (a new one each epoch) and
    minimises `batch_loss(model, images[batch] as floats in [0, 1], generator)`; the generator, seeded from
    `seed`, is the only source of augmentation randomness. The caller seeds torch before building `model`.
    `on_step(step, loss)` is called after each step.
    """
    generator = torch.Generator().manual_seed(seed)
    model.train()
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=spec.learning_rate,
        betas=spec.betas,
        weight_decay=spec.weight_decay,
    )
    result = TrainResult(model=model, seed=seed)
    order = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    for step in range(steps):
        if order.numel() < spec.batch_size:
            order = torch.cat([order, torch.randperm(images.shape[0], generator=generator)])
        batch, order = order[: spec.batch_size], order[spec.batch_size :]
        for group in optimiser.param_groups:
            group["lr"] = learning_rate_at(
                step, steps=steps, peak=spec.learning_rate, warmup_fraction=spec.warmup_fraction
            )
        loss = batch_loss(model, images[batch].float() / 255.0, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        result.losses.append(loss.item())
        if on_step is not None:
            on_step(step, result.losses[-1])
    result.wall_s = time.perf_counter() - start
    if result.losses:
        logger.info(
            "%s: %d steps in %.0f s, loss %.4f -> %.4f",
            type(model).__name__,
            steps,
            result.wall_s,
            result.losses[0],
            result.losses[-1],
        )
    model.eval()
    return result
