"""Headless Chromium for the report tests: a screenshot of a page, and the count of its images the browser could
not decode. Tests using it skip without `chromium` on PATH (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH (apt-get install -y --no-install-recommends chromium; .ci/run does)",
)
_FLAGS = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
# Counts the page's images, and those not decoded (not complete or zero width), once everything has loaded.
_IMAGE_CHECK = (
    '<script>window.addEventListener("load", () => { const all = [...document.images];'
    'document.body.setAttribute("data-images", all.length);'
    'document.body.setAttribute("data-broken", all.filter(i => !(i.complete && i.naturalWidth > 0)).length); });'
    "</script>"
)


def screenshot(page: Path, shot: Path, *, width: int, height: int) -> np.ndarray:
    """The top `width` x `height` pixels of `page` as rendered by headless Chromium: RGB uint8 [height, width, 3]."""
    subprocess.run(
        [*_FLAGS, f"--screenshot={shot}", f"--window-size={width},{height}", Path(page).resolve().as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(shot).convert("RGB"))


def broken_images(page: Path, scratch: Path) -> tuple[int, int]:
    """(images, broken) of `page`: a copy in `scratch` with a script counting them at load, read back from the
    DOM Chromium dumps. The report itself holds no script; only this copy does."""
    copy = scratch / f"checked-{Path(page).name}"
    copy.write_text(Path(page).read_text(encoding="utf-8").replace("</body>", _IMAGE_CHECK + "</body>"))
    dom = subprocess.run(
        [*_FLAGS, "--virtual-time-budget=10000", "--dump-dom", copy.resolve().as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken="(\d+)"', dom)
    assert found, "the image check did not run in Chromium"
    return int(found.group(1)), int(found.group(2))
