"""Load a registered (or inferred) model and turn batches into per-layer pooled features.

`load_model(spec, ...)` returns a `LoadedModel`: an eval-mode transformers model on a device and dtype,
with the processor or tokenizer that goes with it. `LoadedModel.collate` turns raw items (PIL images
or strings) into tensors, and `LoadedModel.encode` runs the model with `output_hidden_states=True` and
pools every hidden state, embeddings included, following PRH: vision states are used as transformers
returns them (pre final norm), text states are averaged over the attention mask (BOS included) and
decoders are padded on the left.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Optional

import torch

from probe.errors import InputError, ModelError, ProbeError
from probe.log import logger
from probe.models.hub import explain_hub_error, hub_commit
from probe.models.pixels import PixelControl
from probe.models.sources import WeightsSource, locate_weights
from probe.models.spec import POOLS_BY_MODALITY, ModelSpec, resolve_target
from probe.results import to_jsonable

# Keys of an image processor's settings that change the pixels a model sees.
_PIXEL_SETTINGS = (
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "crop_pct",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
    "do_pad",
)
# A tokenizer's model_max_length above this is transformers' "no limit" sentinel.
_NO_LIMIT = 1_000_000


class LoadedModel:
    """An eval-mode model on `device` in `dtype`, with its processor or tokenizer.

    Attributes: `spec`, `modality`, `device`, `dtype`, `num_states` (hidden states per input,
    embeddings included: layers + 1), `hidden_size`, `identity` (JSON-safe facts that change the
    features, for the cache key) and `model` (the transformers module).

    Pickling keeps everything except the network, so `collate` can run in DataLoader worker
    processes; the unpickled copy cannot `encode`.
    """

    def __init__(
        self,
        *,
        spec: ModelSpec,
        model: torch.nn.Module,
        processor: Any,
        device: torch.device,
        dtype: torch.dtype,
        identity: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.modality: Literal["vision", "text"] = spec.modality
        self.model: torch.nn.Module | None = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.identity = identity
        config = _tower_config(model.config, spec.modality)
        self.num_states: int = int(_first(config, "num_hidden_layers", "n_layer")) + 1
        self.hidden_size: int = int(_first(config, "hidden_size", "d_model", "n_embd"))
        self._kind = spec.loader_kind
        self._prefix_tokens = self._kind.prefix_tokens + int(getattr(config, "num_register_tokens", 0) or 0)
        self._patch_size = getattr(config, "patch_size", None)
        self._max_length = _max_length(processor, config) if spec.modality == "text" else None
        self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None  # workers only collate; never ship the weights
        return state

    def __repr__(self) -> str:
        return (
            f"LoadedModel({self.spec.alias!r}, {self.modality}, states={self.num_states}, "
            f"hidden={self.hidden_size}, device={self.device}, dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ inputs

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Raw items -> model inputs on CPU.

        Vision: PIL images -> {"pixel_values": [B, 3, H, W] float32}. Text: strings ->
        {"input_ids": [B, T] long, "attention_mask": [B, T] long}, padded to the longest item (left
        for decoders, with EOS as pad when the tokenizer has none), special tokens added as the
        tokenizer does by default, truncated to the model's maximum length.
        """
        if not items:
            raise InputError("cannot collate an empty batch")
        if self.modality == "vision":
            from PIL import Image

            bad = next((type(x).__name__ for x in items if not isinstance(x, Image.Image)), None)
            if bad is not None:
                raise InputError(f"{self.spec.alias} is a vision model: items must be PIL images, got {bad}.")
            images = [x if x.mode == "RGB" else x.convert("RGB") for x in items]
            return {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}
        bad = next((type(x).__name__ for x in items if not isinstance(x, str)), None)
        if bad is not None:
            raise InputError(f"{self.spec.alias} is a text model: items must be strings, got {bad}.")
        encoded = self.processor(
            list(items),
            padding=True,
            truncation=self._max_length is not None,
            max_length=self._max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def text_lengths(self, texts: list[str]) -> list[int]:
        """Token count of each text as `collate` would make it (special tokens included, truncated)."""
        if self.modality != "text":
            raise InputError(f"{self.spec.alias} is a vision model: text lengths apply to text models only.")
        encoded = self.processor(list(texts), truncation=self._max_length is not None, max_length=self._max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    # ------------------------------------------------------------------ features

    def encode(
        self, batch: dict[str, torch.Tensor], *, pools: Sequence[str], on_device: bool = False
    ) -> dict[str, torch.Tensor]:
        """Run the model on a collated batch and pool every hidden state.

        Returns pool name -> [B, num_states, hidden_size] float32 on CPU (on the model's device with
        `on_device=True`, for a caller that copies them to the host itself, overlapped with the next batch).
        Vision pools: "cls" (token 0; not for models without one, e.g. SigLIP) and "mean" (patch tokens only: CLS and
        register tokens excluded). Text pools: "mean" (tokens whose attention mask is 1, BOS
        included, summed in float32) and "last" (the last token whose mask is 1).
        """
        if self.model is None:
            raise ModelError("this LoadedModel was unpickled without its weights: encode in the main process.")
        allowed = POOLS_BY_MODALITY[self.modality]
        for pool in pools:
            if pool not in allowed or (pool == "cls" and self._kind.prefix_tokens == 0):
                options = [p for p in allowed if not (p == "cls" and self._kind.prefix_tokens == 0)]
                raise InputError(f"pool={pool!r} does not apply to {self.spec.alias}: use one of {options}.")
        if not pools:
            raise InputError("encode needs at least one pool name")
        with torch.inference_mode():
            out = self._encode_vision(batch, pools) if self.modality == "vision" else self._encode_text(batch, pools)
        return out if on_device else {pool: x.cpu() for pool, x in out.items()}

    def _encode_vision(self, batch: dict[str, torch.Tensor], pools: Sequence[str]) -> dict[str, torch.Tensor]:
        assert self.model is not None
        # non_blocking: the DataLoader pins its batches on CUDA, so the copy overlaps queued GPU work.
        pixels = batch["pixel_values"].to(self.device, self.dtype, non_blocking=True)
        extra: dict[str, Any] = {}
        if self._kind.name == "vit_mae":
            # ViTMAE shuffles patches by argsort(noise); increasing noise keeps the image's own order.
            num_patches = (pixels.shape[-2] // self._patch_size) * (pixels.shape[-1] // self._patch_size)
            extra["noise"] = torch.arange(num_patches, device=self.device, dtype=torch.float32).expand(len(pixels), -1)
        states = self.model(pixel_values=pixels, output_hidden_states=True, **extra).hidden_states
        poolers = {
            "cls": lambda h: h[:, 0].float(),
            "mean": lambda h: h[:, self._prefix_tokens :].float().mean(dim=1),
        }
        return {pool: torch.stack([poolers[pool](h) for h in states], dim=1) for pool in pools}

    def _encode_text(self, batch: dict[str, torch.Tensor], pools: Sequence[str]) -> dict[str, torch.Tensor]:
        assert self.model is not None
        input_ids = batch["input_ids"].to(self.device, non_blocking=True)
        mask = batch["attention_mask"].to(self.device, non_blocking=True)
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "output_hidden_states": True}
        if self._kind.causal:
            kwargs["use_cache"] = False
            if self._takes_position_ids:
                # Count positions from each caption's first real token, as generate() does, so left
                # padding does not shift them (it would for absolute position embeddings).
                kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        states = self.model(**kwargs).hidden_states
        keep = mask.bool().unsqueeze(-1)  # [B, T, 1]
        counts = keep.sum(dim=1).clamp(min=1).float()  # [B, 1]
        last = mask.shape[1] - 1 - mask.long().flip(-1).argmax(dim=-1)  # [B] index of the last real token
        rows = torch.arange(mask.shape[0], device=mask.device)
        poolers = {
            # masked_fill, not a product: padded positions may hold NaN from fully masked attention rows.
            "mean": lambda h: h.float().masked_fill(~keep, 0.0).sum(dim=1) / counts,
            "last": lambda h: h[rows, last].float(),
        }
        return {pool: torch.stack([poolers[pool](h) for h in states], dim=1) for pool in pools}


# ---------------------------------------------------------------------- loading


def load_model(
    spec: ModelSpec,
    *,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path,
    trust_remote_code: bool = False,
    compile: bool = False,
) -> LoadedModel | PixelControl:
    """Load `spec` in eval mode on `device` in `dtype`, with its image processor or tokenizer.

    `cache_dir` is probe's cache (converted GGUF models go under `cache_dir/models/`); hub
    downloads use the usual Hugging Face cache. `trust_remote_code` is passed through and stays
    off by default. A random-init twin gets its base's architecture and processor with seeded fresh
    weights (`_random_network`); a pixels control is a `PixelControl` (CPU, float32, no network).
    Raises `ModelError` with the fix when weights are missing, gated, or the hub is unreachable and
    the model is not cached. `compile`: the network's blocks go through `torch.compile` (`compile_blocks`;
    recorded as `identity["compiled"]`); compilation happens in the first batches.
    """
    if spec.source == "pixels":
        return PixelControl(spec)
    with transformers_bars_hidden():
        source = locate_weights(spec, cache_dir=Path(cache_dir))
        try:
            model = _load_network(spec, source, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
            processor = _load_processor(spec, source, trust_remote_code=trust_remote_code)
        except ProbeError:
            raise
        except Exception as exc:
            if source.is_hub:
                raise ModelError(explain_hub_error(exc, hub_id=source.path, revision=str(source.revision))) from exc
            raise ModelError(f"cannot load model {spec.alias!r} from {source.path}: {exc}") from exc
    model.eval().requires_grad_(False)
    attention = prefer_sdpa(model)
    compiled = compile_blocks(model, dynamic=spec.modality == "text") if compile else None
    identity = {
        **source.identity,
        # Known only once downloaded: the exact snapshot a branch name like "main" pointed to.
        **({"commit": hub_commit(source.path, str(source.revision))} if source.is_hub else {}),
        "model_type": getattr(model.config, "model_type", spec.arch),
        "loader": spec.loader,
        "class": type(model).__name__,
        "dtype": str(dtype).removeprefix("torch."),
        "attention": attention,
        "compiled": compiled,
        "processor": _processor_identity(processor, spec.modality),
    }
    return LoadedModel(
        spec=spec, model=model, processor=processor, device=device, dtype=dtype, identity=to_jsonable(identity)
    )


def compile_blocks(model: torch.nn.Module, *, dynamic: bool) -> str:
    """Compile `model`'s repeated blocks in place with `torch.compile` (regional compilation); return what was
    compiled, e.g. "2 x LlamaDecoderLayer".

    Not the whole model: transformers' capture of every hidden state breaks the graph at the top (a lock in
    `output_capturing`), so a whole-model compile recompiles at each new input shape. The blocks of one stack
    share their code and compile once; `dynamic=True` (text: every batch has its own length) compiles them
    for any batch and length at once. Blocks are the members of each `nn.ModuleList` of two or more modules of
    one class (the outermost such lists), e.g. a ViT's `encoder.layer`; a model without one is compiled whole.
    """
    stacks: list[tuple[str, torch.nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) < 2 or len({type(b) for b in module}) != 1:
            continue
        if any(name.startswith(outer + ".") for outer, _ in stacks):
            continue
        stacks.append((name, module))
    if not stacks:
        model.compile(dynamic=dynamic)
        return f"whole {type(model).__name__}"
    for _, stack in stacks:
        for block in stack:
            block.compile(dynamic=dynamic)
    return ", ".join(f"{len(stack)} x {type(stack[0]).__name__}" for _, stack in stacks)


def prefer_sdpa(model: torch.nn.Module) -> Optional[str]:
    """Switch `model` to PyTorch's fused attention (`scaled_dot_product_attention`: flash or memory-efficient
    kernels on CUDA) where its class offers it; a class that refuses keeps its own. Returns the attention
    implementation in use (None when the model does not say). SDPA gives the eager features to float error
    (tests/test_models: within 1e-5 on the tiny checkpoints)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        try:
            setter("sdpa")
        except Exception as exc:  # a class without SDPA support raises ValueError/ImportError: keep its default
            logger.debug("%s keeps its attention implementation (%s)", type(model).__name__, exc)
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None)


@contextmanager
def transformers_bars_hidden() -> Iterator[None]:
    """Hide transformers' per-load tqdm bars (checkpoint shards, weights) while the block runs.

    huggingface_hub's download bars stay as they were: a 7B checkpoint is a multi-GB download that a
    user must see move. (transformers' `disable_progress_bar` also turns the hub's bars off, so they
    are turned back on unless they were off before, e.g. by HF_HUB_DISABLE_PROGRESS_BARS.)
    """
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    transformers_bars = hf_logging.is_progress_bar_enabled()
    hub_bars_off = are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    if not hub_bars_off:
        enable_progress_bars()
    try:
        yield
    finally:
        if transformers_bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            disable_progress_bars()


def _load_network(
    spec: ModelSpec, source: WeightsSource, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
) -> torch.nn.Module:
    kind = spec.loader_kind
    if source.random_init_seed is not None:
        model = _random_network(spec, source, seed=source.random_init_seed, trust_remote_code=trust_remote_code)
        return model.to(device=device, dtype=dtype)
    model_class = resolve_target(kind.target)
    kwargs: dict[str, Any] = dict(kind.init_kwargs)
    if source.revision is not None:
        kwargs["revision"] = source.revision
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if device.type == "cuda":
        kwargs["device_map"] = str(device)  # straight onto the GPU, skipping a CPU copy of the weights
    model = _from_pretrained_checked(model_class, source.path, spec=spec, **_dtype_kwarg(dtype), **kwargs)
    return model.to(device)


def _random_network(spec: ModelSpec, source: WeightsSource, *, seed: int, trust_remote_code: bool) -> torch.nn.Module:
    """The loader's class built from the config at `source` with its own initialisation under `seed`.

    The config is read as `from_pretrained` reads it (a CLIP/SigLIP checkpoint gives its vision sub-config),
    with the loader's config overrides (e.g. ViTMAE's mask_ratio). Constructor options such as ViT's
    `add_pooling_layer=False` are not applied: the twin draws every weight of the class's default
    architecture, so a seed's weights do not depend on probe's loading options (for `tiny-random-vit` this
    is `probe.ssl.random_init_vit`, bit for bit). Built in float32 on the CPU, whose generator gives the same
    weights on every machine; `torch.random.fork_rng` leaves the caller's RNG untouched.
    """
    kind = spec.loader_kind
    model_class = resolve_target(kind.target)
    kwargs: dict[str, Any] = {}
    if source.revision is not None:
        kwargs["revision"] = source.revision
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    is_auto = not hasattr(model_class, "config_class")  # AutoModel picks its class from the config
    if is_auto:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source.path, **kwargs)
    else:
        config = model_class.config_class.from_pretrained(source.path, **kwargs)
    for name, value in kind.init_kwargs:
        if hasattr(config, name):
            setattr(config, name, value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_auto:
            # float32 whatever the config says (from_config would follow a bfloat16 config's dtype).
            extra = {"trust_remote_code": True} if trust_remote_code else {}
            model = model_class.from_config(config, dtype=torch.float32, **extra)
        else:
            model = model_class(config)  # the constructor builds in torch's default float32
    return model


# Weights that the forward pass probe runs never reads: pooler heads (features come from hidden states, and
# MAE-style poolers are untrained) and the mask token (used only when masked positions are passed, which
# probe never does). A checkpoint may lack them; transformers then initialises them, harmlessly.
_UNUSED_BY_FORWARD_SUFFIXES = ("embeddings.mask_token",)
_UNUSED_BY_FORWARD_MODULES = ("pooler",)


def unused_by_forward(key: str) -> bool:
    """True for a state-dict key whose weight cannot change the hidden states `encode` pools."""
    if key.endswith(_UNUSED_BY_FORWARD_SUFFIXES):
        return True
    return any(part in _UNUSED_BY_FORWARD_MODULES for part in key.split("."))


def _from_pretrained_checked(model_class: Any, path: str, *, spec: ModelSpec, **kwargs: Any) -> torch.nn.Module:
    """`from_pretrained` that fails when weights are missing instead of initialising them at random.

    Weights the forward pass never reads (`unused_by_forward`: poolers, the mask token) may be
    missing. Loading a tower out of a dual checkpoint (CLIP's vision tower, MAE's encoder) leaves the
    other part's weights unexpected, which is normal, as is a mask token the model class lacks:
    transformers' load report for them is silenced and the keys go to the debug log.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing_all = sorted(info.get("missing_keys", ()))
    missing = [k for k in missing_all if not unused_by_forward(k)]
    if len(missing) < len(missing_all):
        logger.debug(
            "%s: %d weights absent from the checkpoint but never read for hidden states (%s)",
            spec.alias,
            len(missing_all) - len(missing),
            ", ".join(k for k in missing_all if unused_by_forward(k)),
        )
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        sample = ", ".join(map(str, (missing + mismatched)[:3]))
        raise ModelError(
            f"model {spec.alias!r} at {path}: the checkpoint does not fit {model_class.__name__} "
            f"({len(missing)} missing and {len(mismatched)} mismatched weights, e.g. {sample}); "
            "check that model= names the right checkpoint."
        )
    if info.get("unexpected_keys"):
        logger.debug("%s: %d checkpoint weights unused (other towers/heads)", spec.alias, len(info["unexpected_keys"]))
    return model


def _load_processor(spec: ModelSpec, source: WeightsSource, *, trust_remote_code: bool) -> Any:
    kwargs: dict[str, Any] = {}
    if source.revision is not None:
        kwargs["revision"] = source.revision
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if spec.modality == "vision":
        from transformers import AutoImageProcessor

        # The PIL backend gives the same pixels on every machine, with or without torchvision.
        return AutoImageProcessor.from_pretrained(source.processor_path, **_pil_backend_kwarg(), **kwargs)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.processor_path, **kwargs)
    if spec.loader_kind.causal:
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelError(f"model {spec.alias!r}: its tokenizer has neither a pad nor an EOS token to pad with.")
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _processor_identity(processor: Any, modality: str) -> dict[str, Any]:
    if modality == "vision":
        settings = processor.to_dict()
        return {"class": type(processor).__name__, **{k: settings[k] for k in _PIXEL_SETTINGS if k in settings}}
    return {
        "class": type(processor).__name__,
        "vocab_size": len(processor),
        "padding_side": processor.padding_side,
        "pad_token": processor.pad_token,
        "bos_token": processor.bos_token,
        "eos_token": processor.eos_token,
        "special_tokens_of_empty_text": processor("")["input_ids"],
    }


# ---------------------------------------------------------------------- helpers


def _transformers_version() -> tuple[int, int]:
    import transformers

    major, minor = transformers.__version__.split(".")[:2]
    return int(major), int(minor)


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    # transformers renamed torch_dtype to dtype in 4.56.
    return {"dtype": dtype} if _transformers_version() >= (4, 56) else {"torch_dtype": dtype}


def _pil_backend_kwarg() -> dict[str, Any]:
    # transformers 5 picks the torchvision backend when installed; 4.x calls the PIL one "slow".
    return {"backend": "pil"} if _transformers_version() >= (5, 0) else {"use_fast": False}


def _tower_config(config: Any, modality: str) -> Any:
    # Multimodal wrappers (e.g. Gemma 3) keep the language model's sizes in a text sub-config.
    if modality == "text" and not hasattr(config, "num_hidden_layers") and hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    raise ModelError(f"config of type {type(config).__name__} has none of {names}; probe cannot size its features")


def _max_length(tokenizer: Any, config: Any) -> int | None:
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    usable = [int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < _NO_LIMIT]
    return min(usable) if usable else None
