"""Opening dataset images within a pixel budget, so one hostile or mistaken file cannot exhaust memory.

A PNG of 12000 x 12000 px in one colour is a few KB on disk and 430 MB as RGB once decoded (several GB
through a processor); eight in a batch took 9.3 GB. PIL reads the size from the header without decoding
(`Image.open` is lazy), so images over `max_pixels` are refused from their header, before any pixel is
decoded. PIL's own decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`: a warning above it, an error above
twice it) is raised to the budget when the budget is larger, so a user's `max_pixels=` is not overruled by
PIL's default (about 89 MP); it is never lowered, since it is process-wide and guards other image code too.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional, Sequence

from probe.datasets.paired import PairedDataset
from probe.errors import InputError

# 64 megapixels: an 8000 x 8000 photo passes; models see 224-518 px crops anyway.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageTooLarge(InputError):
    """An image whose header declares more pixels than the budget."""


def check_max_pixels(max_pixels: int) -> int:
    """`max_pixels` if it is a positive integer, else InputError naming `max_pixels=`."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(
            f"max_pixels={max_pixels!r} must be a positive number of pixels (default {DEFAULT_MAX_PIXELS:,})"
        )
    return max_pixels


def _over_budget(path: Path, pixels: str, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"{path} is {pixels} pixels, over the budget of max_pixels={max_pixels}; shrink the image or raise max_pixels="
    )


def open_within_budget(path: Path, *, max_pixels: int):
    """`PIL.Image.open(path)` (lazy: header read, nothing decoded), ImageTooLarge if it declares more than
    `max_pixels` pixels. The caller closes the image (use it in a `with`)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # raised, never lowered: other image code in this process keeps PIL's guard
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below with a clearer message
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:  # over twice the budget: PIL refuses it in open()
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise _over_budget(
                path, f"{int(found.group(1)):,}" if found else "more than twice the budget", max_pixels
            ) from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise _over_budget(path, f"{width} x {height} = {width * height:,}", max_pixels)
    return im


def load_rgb(path: Path, *, max_pixels: int):
    """The image at `path` decoded as RGB, if its header is within `max_pixels` (else ImageTooLarge)."""
    with open_within_budget(path, max_pixels=max_pixels) as im:
        im.load()
        return im.convert("RGB")


def check_image_sizes(dataset: PairedDataset, *, max_pixels: int, rows: Optional[Sequence[int]] = None) -> None:
    """InputError naming the first of `rows` (all by default) whose image is over `max_pixels` pixels, from the
    image headers alone (about a millisecond per file, nothing decoded). Unreadable files are left to the
    decoder, which names them."""
    for i in range(len(dataset)) if rows is None else rows:
        row = dataset.rows[int(i)]
        if row.image is None:
            continue
        try:
            open_within_budget(row.image, max_pixels=max_pixels).close()
        except ImageTooLarge as exc:
            raise ImageTooLarge(f"row {int(i) + 1} (id {row.id!r}) of {dataset.source}: {exc}") from None
        except Exception:  # not an image PIL can open: the decoder reports it with the row
            continue
