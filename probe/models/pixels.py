"""The pixel controls (`pixels-8`, `pixels-16`, `pixels-32`): the image itself as the "model".

A score is evidence of learning only beside what no learning gives. A pixel control's single hidden state
is the RGB image as extraction decodes it (`Image.convert("RGB")`), resized to s x s with PIL's BOX filter
(the mean of the source pixels each output pixel covers), divided by 255 and flattened in (row, column,
channel) order: [3 s^2] float32 per image. No network, no hub, no torch module: `PixelControl` only
offers what extraction uses of a `LoadedModel` (collate, encode, num_states, identity, ...).

`PIXEL_RECIPE` and `pixel_recipe` name the computation; the cache key holds them (with the size), so a
change here that changes the numbers must bump `PIXEL_RECIPE["version"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from probe.errors import InputError
from probe.models.spec import POOLS_BY_MODALITY, ModelSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

PIXEL_RECIPE: dict[str, Any] = {
    "kind": "pixels",
    "decode": "convert RGB",
    "resize": "PIL BOX",
    "scale": "1/255",
    "order": "row,column,channel",
    "version": 1,
}


def pixel_recipe(size: int) -> dict[str, Any]:
    """The JSON-safe description of the `size` x `size` pixel features (for cache keys and provenance)."""
    return {**PIXEL_RECIPE, "size": int(size)}


def pixel_features(image: Image.Image, *, size: int) -> np.ndarray:
    """One image -> [size * size * 3] float32 in [0, 1]: RGB, BOX-resized to size x size, /255, (row, col, channel)."""
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb.resize((size, size), resample=PILImage.Resampling.BOX)
    # np.asarray of an RGB image is [rows, columns, 3] uint8, so a C-order reshape is (row, column, channel).
    return (np.asarray(small, dtype=np.uint8).astype(np.float32) / np.float32(255.0)).reshape(-1)


class PixelControl:
    """A `LoadedModel` stand-in for a pixels spec: one hidden state, the downsampled image.

    Attributes as `LoadedModel`: `spec`, `modality` ("vision"), `device` (CPU: the work is the resize in
    `collate`, done in DataLoader workers), `dtype` (float32 whatever was asked: pixels are exact),
    `num_states` (1), `hidden_size` (3 s^2), `identity` (the recipe and size), `model` (None).
    Picklable, so `collate` runs in worker processes.
    """

    def __init__(self, spec: ModelSpec) -> None:
        import torch

        if spec.source != "pixels" or not spec.image_size:
            raise ValueError(f"{spec.alias} is not a pixels control")
        self.spec = spec
        self.modality: Literal["vision"] = "vision"
        self.size = int(spec.image_size)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.model = None
        self.num_states = 1
        self.hidden_size = 3 * self.size * self.size
        self.identity: dict[str, Any] = {
            "weights": "none",
            "loader": spec.loader,
            "dtype": "float32",
            "pixels": pixel_recipe(self.size),
        }

    def __repr__(self) -> str:
        return f"PixelControl({self.spec.alias!r}, {self.size}x{self.size}, hidden={self.hidden_size})"

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """PIL images -> {"pixels": [B, 3 s^2] float32}."""
        import torch
        from PIL import Image

        if not items:
            raise InputError("cannot collate an empty batch")
        bad = next((type(x).__name__ for x in items if not isinstance(x, Image.Image)), None)
        if bad is not None:
            raise InputError(f"{self.spec.alias} is a vision control: items must be PIL images, got {bad}.")
        return {"pixels": torch.from_numpy(np.stack([pixel_features(x, size=self.size) for x in items]))}

    def text_lengths(self, texts: list[str]) -> list[int]:
        raise InputError(f"{self.spec.alias} is a vision control: text lengths apply to text models only.")

    def encode(self, batch: dict[str, torch.Tensor], *, pools: Sequence[str]) -> dict[str, torch.Tensor]:
        """A collated batch -> pool name -> [B, 1, 3 s^2] float32; `cls` and `mean` are both the whole image."""
        if not pools:
            raise InputError("encode needs at least one pool name")
        for pool in pools:
            if pool not in POOLS_BY_MODALITY["vision"]:
                raise InputError(f"pool={pool!r} does not apply to {self.spec.alias}: use one of cls, mean.")
        states = batch["pixels"].float().unsqueeze(1)
        return {pool: states.clone() for pool in pools}
