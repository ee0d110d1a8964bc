"""Turn a trained encoder into a plain `transformers.ViTModel` folder, and build its random control.

WebSSL-MAE checkpoints load with `ViTModel`; so does ours. The trained encoder's weights (for the MAE, its
fixed sin-cos position embeddings included) are copied into a ViTModel of the matching config. Its pooler is
not part of any objective here: it is initialised from the seed, saved so that loading is silent, and never
trained or used (features are hidden states).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from transformers import ViTConfig, ViTImageProcessor, ViTMAEForPreTraining, ViTModel
from transformers.image_utils import PILImageResampling

from probe.errors import ProbeError
from probe.ssl.loop import VitEncoderSpec


def vit_config(spec: VitEncoderSpec) -> ViTConfig:
    """The ViTModel config whose encoder matches the trained encoder of `spec`."""
    return ViTConfig(**spec.encoder_fields())


def image_processor(spec: VitEncoderSpec) -> ViTImageProcessor:
    """The processor that resizes any image to the training size and standardises it as in training."""
    return ViTImageProcessor(
        do_resize=True,
        size={"height": spec.image_size, "width": spec.image_size},
        resample=PILImageResampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
    )


def _seeded_vit(config: ViTConfig, *, seed: int) -> ViTModel:
    # fork_rng keeps the caller's global RNG untouched while the seed fixes every initial weight.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config, add_pooling_layer=True)
    return model.eval()


def vit_with_weights(state: dict[str, torch.Tensor], *, spec: VitEncoderSpec, seed: int) -> ViTModel:
    """A ViTModel of `spec` holding an encoder's weights (`state`, ViTModel key names; the pooler is seeded)."""
    vit = _seeded_vit(vit_config(spec), seed=seed)
    target = vit.state_dict()
    missing = [k for k in target if not k.startswith("pooler.") and k not in state]
    if missing:
        raise ProbeError(f"the trained encoder does not match ViTModel: weights {missing} have no source")
    vit.load_state_dict({**target, **{k: v for k, v in state.items() if k in target}})
    return vit


@torch.no_grad()
def mae_encoder_hidden_states(mae: ViTMAEForPreTraining, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The MAE encoder's L+1 hidden states ([B, 1 + patches, D] each) with no patch masked, in patch order."""
    batch, patches = pixel_values.shape[0], mae.vit.embeddings.patch_embeddings.num_patches
    saved_ratio = mae.vit.config.mask_ratio
    mae.vit.config.mask_ratio = 0.0
    try:
        # Noise sorted ascending keeps the patches in their own order, so tokens line up with ViTModel's.
        noise = torch.arange(patches, dtype=torch.float32).expand(batch, patches)
        out = mae.vit(pixel_values=pixel_values, noise=noise, output_hidden_states=True)
    finally:
        mae.vit.config.mask_ratio = saved_ratio
    return out.hidden_states


@torch.no_grad()
def vit_hidden_states(vit: ViTModel, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A ViTModel's L+1 hidden states, [B, 1 + patches, D] each."""
    return vit.eval()(pixel_values=pixel_values, output_hidden_states=True).hidden_states


HiddenStates = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def export_vit(
    state: dict[str, torch.Tensor], out_dir: Path, *, spec: VitEncoderSpec, seed: int, reference: HiddenStates
) -> Path:
    """Save an encoder's weights as a ViTModel + ViTImageProcessor folder and check that it reloads identically.

    Writes config.json, model.safetensors and preprocessor_config.json into `out_dir`; reloads the folder
    with `ViTModel.from_pretrained` and raises ProbeError unless its hidden states on a seeded random batch
    ([2, 3, S, S]) equal `reference(batch)` (the trained encoder's) to 1e-5.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vit_with_weights(state, spec=spec, seed=seed).save_pretrained(out_dir)
    image_processor(spec).save_pretrained(out_dir)
    reloaded = ViTModel.from_pretrained(out_dir)
    pixels = torch.randn(2, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(seed))
    exported, expected = vit_hidden_states(reloaded, pixels), reference(pixels)
    worst = max(float((a - b).abs().max()) for a, b in zip(exported, expected))
    if len(exported) != len(expected) or worst > 1e-5:
        raise ProbeError(
            f"the exported ViTModel in {out_dir} differs from the trained encoder (max |diff| {worst:.2e})"
        )
    return out_dir


def export_mae_encoder(mae: ViTMAEForPreTraining, out_dir: Path, *, spec: VitEncoderSpec, seed: int) -> Path:
    """`export_vit` for the encoder of a trained ViTMAEForPreTraining."""
    mae.eval()
    return export_vit(
        mae.vit.state_dict(), out_dir, spec=spec, seed=seed, reference=lambda px: mae_encoder_hidden_states(mae, px)
    )


def export_vit_encoder(encoder: ViTModel, out_dir: Path, *, spec: VitEncoderSpec, seed: int) -> Path:
    """`export_vit` for a trained ViTModel encoder (e.g. the backbone of a joint-embedding model)."""
    return export_vit(
        encoder.state_dict(), out_dir, spec=spec, seed=seed, reference=lambda px: vit_hidden_states(encoder, px)
    )


def random_init_vit(config_dir: Path, *, seed: int = 0) -> ViTModel:
    """The control `tiny-random-vit`: the architecture in `config_dir`/config.json with ViTModel's own
    random initialisation under `seed` (the same seed gives the same weights; the caller's RNG is untouched)."""
    config = ViTConfig.from_pretrained(Path(config_dir))
    return _seeded_vit(config, seed=seed)
