"""Batched, seeded image augmentation for self-supervised training: random resized crops and flips."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crops(
    images: torch.Tensor,
    *,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Crop a random box of each image and resize it to `size`x`size`, flipping half of them left-right.

    images: [B, C, H, W] float. The box covers a fraction in `scale` of the image's area with aspect ratio in
    `ratio` (clamped to fit inside the image). Returns [B, C, size, size]. Draws only from `generator`, so a
    seed gives the same crops.
    """
    batch = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    area = uniform(*scale)
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1]))
    # Width and height as fractions of the image's sides; theta maps output [-1, 1] into the input box.
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    centre_x = (1.0 - width) * uniform(-1.0, 1.0)
    centre_y = (1.0 - height) * uniform(-1.0, 1.0)
    mirror = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(batch)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [batch, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(
    images: torch.Tensor, *, generator: torch.Generator, strength: float = 0.4, grayscale_p: float = 0.2
) -> torch.Tensor:
    """Randomly scale brightness, contrast and saturation by factors in [1 - strength, 1 + strength] and turn a
    fraction `grayscale_p` of the images grey, so an invariance objective cannot match views by colour alone.

    images: [B, 3, H, W] floats in [0, 1]. Returns the same shape, clamped to [0, 1]; draws only from `generator`.
    """
    batch = images.shape[0]

    def factor() -> torch.Tensor:
        return (1.0 + strength * (2.0 * torch.rand(batch, generator=generator) - 1.0)).view(batch, 1, 1, 1)

    luma_weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    out = images * factor()
    out = (out - out.mean(dim=(1, 2, 3), keepdim=True)) * factor() + out.mean(dim=(1, 2, 3), keepdim=True)
    grey = (out * luma_weights).sum(dim=1, keepdim=True)
    out = grey + (out - grey) * factor()
    to_grey = (torch.rand(batch, generator=generator) < grayscale_p).view(batch, 1, 1, 1)
    out = torch.where(to_grey, (out * luma_weights).sum(dim=1, keepdim=True).expand_as(out), out)
    return out.clamp(0.0, 1.0)
