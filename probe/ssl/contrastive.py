"""A small ViT trained with a joint-embedding objective (SimCLR's InfoNCE between two augmented views of each
image; DINO and WebSSL-DINO are of the same family), on images only, never text.

Unlike the MAE, whose CLS token no loss asks for, this objective trains the CLS token directly to tell images
apart, which is what kNN and alignment measurements read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTConfig, ViTModel

from probe.ssl.augment import colour_jitter, random_resized_crops
from probe.ssl.loop import TrainResult, VitEncoderSpec, normalise, train_loop


@dataclass(frozen=True)
class ContrastiveSpec(VitEncoderSpec):
    """The encoder (see VitEncoderSpec) plus the projection head, temperature and view augmentation."""

    projection_hidden: int = 512
    projection_dim: int = 128
    temperature: float = 0.2
    colour_strength: float = 0.4
    grayscale_p: float = 0.2


class ContrastiveModel(nn.Module):
    """ViT encoder -> CLS token (after the final norm) -> 2-layer MLP projection used only by the loss."""

    def __init__(self, spec: ContrastiveSpec) -> None:
        super().__init__()
        self.encoder = ViTModel(ViTConfig(**spec.encoder_fields()), add_pooling_layer=False)
        self.projection = nn.Sequential(
            nn.Linear(spec.hidden_size, spec.projection_hidden),
            nn.GELU(),
            nn.Linear(spec.projection_hidden, spec.projection_dim),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] standardised pixels -> [B, projection_dim] L2-normalised embeddings."""
        cls = self.encoder(pixel_values=pixel_values).last_hidden_state[:, 0]
        return F.normalize(self.projection(cls), dim=1)


def info_nce_loss(a: torch.Tensor, b: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: a[i] and b[i] ([B, D] each, L2-normalised) are views of image i; every other of the 2B
    embeddings is a negative. Returns the mean cross-entropy over the 2B anchors (log(2B - 1) at chance)."""
    z = torch.cat([a, b])
    logits = z @ z.T / temperature
    logits.fill_diagonal_(-float("inf"))
    n = a.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, targets)


def train_contrastive(
    images: torch.Tensor,
    *,
    spec: ContrastiveSpec,
    steps: int,
    seed: int,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> TrainResult:
    """Train a fresh ContrastiveModel for `steps` steps on two augmented views of each image in a batch.

    images: [N, 3, H, W] uint8. Each view is a random resized crop with flip (`random_resized_crops`) and a
    colour jitter (`colour_jitter`). `seed` fixes the initialisation, batches and views. Returns the model
    (in eval mode; its `.encoder` is the ViTModel to export) with its per-step losses.
    """

    def view(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        crops = random_resized_crops(batch, size=spec.image_size, generator=generator, scale=spec.crop_scale)
        jittered = colour_jitter(
            crops, generator=generator, strength=spec.colour_strength, grayscale_p=spec.grayscale_p
        )
        return normalise(jittered, spec=spec)

    def batch_loss(model: ContrastiveModel, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        first, second = view(batch, generator), view(batch, generator)
        embeddings = model(torch.cat([first, second]))
        return info_nce_loss(*embeddings.chunk(2), temperature=spec.temperature)

    torch.manual_seed(seed)
    model = ContrastiveModel(spec)
    return train_loop(model, images, batch_loss=batch_loss, spec=spec, steps=steps, seed=seed, on_step=on_step)
