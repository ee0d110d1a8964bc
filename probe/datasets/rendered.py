"""Reading datasets: a paired dataset whose every image is replaced by its own caption drawn as text.

In: a `PairedDataset` with a caption in every row. Out: a folder under the cache with `images/NNNNNN.png`
(`probe.datasets.textimage.render_text`, the style keyed by the row id), `build.json` and `manifest.jsonl`
holding the same ids, captions and label fields in the same order. Two ways in, both through
`probe.datasets.load_dataset` (`rendered_source` names the source of either):

- `openmoji-names`: the registered `openmoji` rows with each emoji replaced by its English name, built in
  `<cache>/datasets/openmoji-names/` (rebuilt there when its identity changes, like `openmoji`);
- `rendered:<dataset>`: the same for any dataset name or manifest path (`rendered:coco-captions`), built in
  `<cache>/datasets/rendered/<name>-<key>/`, the key a digest of the identity.

The identity (`render_identity`, written as build.json) holds the renderer's version, the sha256 of every
font file, the size, the style seed, the Pillow and FreeType versions, and the source's name and a digest
of its ids, captions and label fields (everything the rendered rows are made of; the source's images are not
read). Changing any of them gives other images, so another dataset fingerprint and other feature caches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import features

from probe.datasets.manifest import BUILD_INFO_NAME, BUILT_MANIFEST, finished_build, write_manifest
from probe.datasets.paired import PairedDataset
from probe.datasets.textimage import DEFAULT_SIZE, RENDERER_VERSION, STYLE_SEED, font_hashes, render_text
from probe.errors import InputError, write_atomic
from probe.log import logger

RENDERED_PREFIX = "rendered:"
# Registered datasets that are another registered dataset's rows drawn as text: name -> that source's name.
REGISTERED_RENDERINGS: dict[str, str] = {"openmoji-names": "openmoji"}
IMAGE_DIR = "images"
KEY_CHARS = 16


def rows_digest(source: PairedDataset) -> str:
    """sha256 over the ordered ids, captions and label fields of `source` (not its images)."""
    h = hashlib.sha256()
    for row in source.rows:
        h.update(json.dumps([row.id, row.caption, row.labels], ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def render_identity(source: PairedDataset, *, size: int = DEFAULT_SIZE, seed: int = STYLE_SEED) -> dict[str, Any]:
    """What identifies the rendered version of `source` (see the module docstring); written as build.json."""
    return {
        "renderer": RENDERER_VERSION,
        "fonts": font_hashes(),
        "size": size,
        "style_seed": seed,
        "source": {"name": source.name, "rows": len(source), "rows_digest": rows_digest(source)},
        "versions": {"pillow": metadata.version("pillow"), "freetype": features.version("freetype2")},
    }


def identity_key(identity: dict[str, Any]) -> str:
    """A short hex digest of an identity (canonical JSON), to name a folder by."""
    canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:KEY_CHARS]


def _check_captions(source: PairedDataset) -> None:
    for i, row in enumerate(source.rows):
        if row.caption is None or not row.caption.strip():
            raise InputError(
                f"row {i + 1} (id {row.id!r}) of dataset {source.name!r} has no caption; a rendered dataset draws "
                f"each row's caption as its image, so every row needs one (fill 'caption' or drop the row)"
            )


def build_rendered(source: PairedDataset, *, root: Path, size: int = DEFAULT_SIZE, seed: int = STYLE_SEED) -> Path:
    """Draw every caption of `source` into `root` and return the manifest path.

    Writes `images/<row number, 6 digits>.png`, `build.json` (`render_identity`) and, last and atomically,
    `manifest.jsonl` with {"id", "image", "caption", <label fields>} per row, in `source`'s order. A finished
    build with the same identity is reused; anything else in `root` is rebuilt. InputError for a row
    without a caption (checked before anything is drawn); a caption too long to fit shows its first words
    (`probe.datasets.textimage.fit_text`).
    """
    _check_captions(source)
    root = Path(root)
    info = render_identity(source, size=size, seed=seed)
    reusable = finished_build(root, info)
    if reusable is not None:
        logger.info("%s: reusing the rendered text in %s", source.name, root)
        return reusable
    (root / BUILT_MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(root / IMAGE_DIR, ignore_errors=True)
    (root / IMAGE_DIR).mkdir(parents=True)
    logger.info("%s: drawing %d captions as %d px text into %s", source.name, len(source), size, root)
    records = []
    for i, row in enumerate(source.rows):
        relative = f"{IMAGE_DIR}/{i:06d}.png"
        try:
            image, _ = render_text(row.caption or "", key=row.id, seed=seed, size=size)
        except InputError as exc:
            raise InputError(f"row {i + 1} (id {row.id!r}) of dataset {source.name!r}: {exc}") from None
        write_atomic(root / relative, lambda path, image=image: image.save(path, format="PNG"))
        records.append({"id": row.id, "image": relative, "caption": row.caption, **row.labels})
    write_atomic(root / BUILD_INFO_NAME, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return write_manifest(root / BUILT_MANIFEST, records)


def rendered_name(source_name: str) -> str:
    """The dataset name of `source_name`'s rendered version: `rendered:<source_name>`."""
    return f"{RENDERED_PREFIX}{source_name}"


def split_rendered(name: str) -> str | None:
    """The source dataset of a `rendered:<dataset>` name, None for any other name; InputError when nothing
    follows the prefix."""
    if not name.startswith(RENDERED_PREFIX):
        return None
    inner = name[len(RENDERED_PREFIX) :].strip()
    if not inner:
        raise InputError(
            f"dataset={name!r} names no dataset to draw; write rendered:<dataset>, e.g. rendered:openmoji "
            f"or rendered:path/to/manifest.jsonl"
        )
    return inner


def rendered_source(name: str) -> str | None:
    """The dataset whose rows the dataset `name` draws as text: `<dataset>` for `rendered:<dataset>`, the source
    of a registered rendering (`openmoji-names` -> `openmoji`, `REGISTERED_RENDERINGS`), None for any other name
    (pictures). InputError for `rendered:` with nothing after it (`split_rendered`)."""
    return split_rendered(name) or REGISTERED_RENDERINGS.get(name)


def rendered_folder(source: PairedDataset, *, datasets_dir: Path, size: int = DEFAULT_SIZE) -> Path:
    """Where `rendered:<source>` is built: `<datasets_dir>/rendered/<source name>-<identity key>`."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.name)[-60:] or "dataset"
    return Path(datasets_dir) / "rendered" / f"{slug}-{identity_key(render_identity(source, size=size))}"
