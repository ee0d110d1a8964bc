"""Features computed elsewhere, brought into the cache: `probe cache import` and the lookup of imports by name.

An import is a cache like any other (same writer, same HDF5 file, same checks at use) whose key's model part is
`{"name": NAME, "source": "import", "file_sha256": ...}`: NAME is the user's (refused when it is a registered
model name), the hash of the imported file tells two imports of the same name apart. Its layers are the
positions 0..L-1 of the file's [N, L, D] array, its rows the dataset's rows in order (N must match).
`find_imported` is how a run given `vision=NAME` finds it: by NAME, dataset, modality and pool in the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from probe.datasets import PairedDataset
from probe.datasets.paired import sha256_file
from probe.errors import CacheError, InputError
from probe.features.cache import FeatureCache
from probe.features.format import FEATURE_VERSION, cache_path
from probe.features.writer import PartialWriter
from probe.log import logger

Modality = Literal["vision", "text"]
DEFAULT_POOL = {"vision": "cls", "text": "mean"}


def read_features(path: Path) -> np.ndarray:
    """The [N, L, D] array in `path`: PRH's `.pt` (`{"feats": tensor}`, torch.load with weights_only=True),
    `.npy` (memory-mapped), or `.npz` (its one array, or the one named `feats`); nothing is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file={str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt":
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or "feats" not in obj:
                keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise InputError(f"{path} holds {keys}, not a dict with 'feats' [N, L, D] as PRH saves it")
            feats = obj["feats"]
            x = feats.float().numpy() if feats.dtype not in (torch.float32, torch.float16) else feats.numpy()
        elif suffix == ".npy":
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = z.files
                name = "feats" if "feats" in names else (names[0] if len(names) == 1 else None)
                if name is None:
                    raise InputError(f"{path} holds arrays {names}; name the features 'feats' or keep one array")
                x = z[name]
        else:
            raise InputError(f"file={str(path)!r}: import reads .pt (PRH), .npy or .npz files")
    except InputError:
        raise
    except Exception as exc:  # unreadable, pickled objects, wrong format: the user's file
        raise InputError(
            f"cannot read features from {path} ({type(exc).__name__}: {exc}); "
            ".pt files must be plain tensors (weights_only), .npy/.npz without pickles"
        ) from None
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
        raise InputError(
            f"{path}: features of shape {tuple(x.shape)} and dtype {x.dtype}; "
            "import needs floats of shape [N, L, D] (or [N, D])"
        )
    return x


def import_key(
    *,
    model: str,
    file_sha256: str,
    dataset: PairedDataset,
    modality: Modality,
    pool: str,
    layers: int,
    store_dtype: str = "float32",
) -> dict[str, Any]:
    """The cache key of an import (see the module docstring and docs/cache.md)."""
    key: dict[str, Any] = {
        "feature_version": FEATURE_VERSION,
        "model": {"name": model, "hub_id": None, "revision": None, "source": "import", "file_sha256": file_sha256},
        "modality": modality,
        "pools": [pool],
        "layers": list(range(layers)),
        "prompt": None,
        "dtype": "imported",
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "rows": len(dataset)},
    }
    if store_dtype != "float32":
        key["store_dtype"] = store_dtype
    return key


def _check_name(model: str) -> None:
    """InputError unless `model` is a plain name that no registered model uses."""
    from probe.models.names import registered, split_twin

    if not model or model != model.strip() or "/" in model or model.startswith(".") or split_twin(model)[0]:
        raise InputError(f"model={model!r}: an imported name is a plain name (no '/', no leading '.'), e.g. 'my-dino'")
    spec = registered(model)
    if spec is not None:
        raise InputError(
            f"model={model!r} is the name of a registered model ({spec.alias}); "
            f"import under another name, e.g. '{model}-imported'"
        )


def import_features(
    file: Path,
    *,
    model: str,
    dataset: PairedDataset,
    modality: Modality,
    cache_dir: Path,
    pool: Optional[str] = None,
    store_dtype: str = "float32",
) -> Path:
    """Write the [N, L, D] features in `file` as the cache of `model` (a new name) on `dataset`; return its path.

    Rows are paired with `dataset`'s rows in order: N must equal its length. Written by the same writer as
    extraction's assembly (`PartialWriter.write_array`: one pass over the array, no batch files, all or nothing);
    an existing import of the same file is reused.
    """
    if modality not in ("vision", "text"):
        raise InputError(f"modality={modality!r}: choose 'vision' or 'text'")
    pool = pool or DEFAULT_POOL[modality]
    from probe.models.spec import POOLS_BY_MODALITY

    if pool not in POOLS_BY_MODALITY[modality]:
        raise InputError(
            f"pool={pool!r} is not a {modality} pool; choose one of {', '.join(POOLS_BY_MODALITY[modality])}"
        )
    _check_name(model)
    x = read_features(Path(file))
    if x.shape[0] != len(dataset):
        raise InputError(
            f"{file} has {x.shape[0]} rows but dataset {dataset.name!r} has {len(dataset)}; "
            "the rows must be the dataset's, in its order"
        )
    key = import_key(
        model=model,
        file_sha256=sha256_file(Path(file)),
        dataset=dataset,
        modality=modality,
        pool=pool,
        layers=x.shape[1],
        store_dtype=store_dtype,
    )
    final = cache_path(Path(cache_dir), key)
    if final.is_file():
        FeatureCache(final, model=model)
        logger.info("%s is already imported as %s", file, final)
        return final
    from probe.provenance import provenance

    writer = PartialWriter(final, key=key, num_rows=len(dataset), store_dtype=store_dtype)
    identity = {"imported_from": str(Path(file).resolve()), "file_sha256": key["model"]["file_sha256"]}
    return writer.write_array(
        x,
        pool=pool,
        ids=dataset.ids,
        image_sha256=dataset.image_hashes,
        caption_sha256=dataset.caption_hashes,
        layers=list(range(x.shape[1])),
        provenance=provenance(model_identity=identity, device="none", batch_size=0, dataset_source=dataset.source),
    )


def find_imported(
    cache_dir: Path, *, model: str, dataset: PairedDataset, modality: Optional[str] = None, pool: Optional[str] = None
) -> Optional[Path]:
    """The complete imported cache named `model` on `dataset` (of `modality` and `pool` when given), or None.

    CacheError when several match (two files imported under one name): the message lists them and how to
    remove one. An import of the same name for other rows (e.g. another `limit=`) is an InputError naming it.
    """
    from probe.features.format import _slug

    folder = Path(cache_dir) / "features" / _slug(model.replace("/", "--")) / _slug(dataset.name)
    found, other_rows = [], []
    for path in sorted(folder.glob("*.h5")) if folder.is_dir() else []:
        try:
            cache = FeatureCache(path)
        except CacheError:
            continue
        m = cache.key.get("model", {})
        if m.get("source") != "import" or m.get("name") != model:
            continue
        if modality is not None and cache.modality != modality:
            continue
        if pool is not None and pool not in cache.pools:
            continue
        if cache.key["dataset"].get("fingerprint") != dataset.fingerprint:
            other_rows.append((path, cache.key["dataset"].get("rows")))
            continue
        found.append(path)
    if len(found) > 1:
        listing = "; ".join(str(p) for p in found)
        raise CacheError(
            f"{len(found)} imported caches are named {model!r} on {dataset.name}: {listing}; "
            "remove all but one with 'probe cache rm PATH' (or pass pool=)"
        )
    if not found and other_rows:
        path, rows = other_rows[0]
        raise InputError(
            f"{model!r} was imported for {rows} rows of {dataset.name} ({path}), not for these {len(dataset)} rows; "
            "imported features cannot be re-extracted: use the rows they were imported for (no limit=) "
            "or import again"
        )
    return found[0] if found else None
