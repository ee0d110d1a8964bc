"""tiny-ssl-vit and tiny-ssl-vit-text: the shipped checkpoints, their random controls, and the training code on
tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, ViTMAEForPreTraining, ViTModel

from probe.ssl import (
    ContrastiveSpec,
    MaeSpec,
    export_mae_encoder,
    export_vit_encoder,
    random_init_vit,
    train_contrastive,
    train_mae,
)
from probe.ssl.augment import colour_jitter, random_resized_crops
from probe.ssl.contrastive import ContrastiveModel, info_nce_loss
from probe.ssl.export import mae_encoder_hidden_states, vit_hidden_states
from probe.ssl.sanity import knn_label_accuracy

DATA = Path(__file__).resolve().parents[2] / "data"
CHECKPOINT = DATA / "tiny-ssl-vit"
# The shipped checkpoints (alias -> folder): trained on OpenMoji pictures, and on their names drawn as text.
CHECKPOINTS = {"tiny-ssl-vit": DATA / "tiny-ssl-vit", "tiny-ssl-vit-text": DATA / "tiny-ssl-vit-text"}
TINY_ENCODER = dict(
    image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, batch_size=4, learning_rate=1e-2
)
TINY = MaeSpec(**TINY_ENCODER, decoder_hidden_size=16, decoder_layers=1, decoder_heads=2)
TINY_CONTRASTIVE = ContrastiveSpec(**TINY_ENCODER, projection_hidden=16, projection_dim=8)


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def folder(request) -> Path:
    return CHECKPOINTS[request.param]


@pytest.fixture(scope="module")
def checkpoint(folder) -> ViTModel:
    return ViTModel.from_pretrained(folder, local_files_only=True).eval()


@pytest.fixture(scope="module")
def pixels(folder) -> torch.Tensor:
    from PIL import Image

    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    image = Image.new("RGB", (224, 224), "white")
    image.paste((200, 40, 40), (60, 60, 160, 160))
    return processor(images=[image], return_tensors="pt")["pixel_values"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def hidden_states(model: ViTModel, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(pixel_values=pixel_values, output_hidden_states=True).hidden_states


def test_checkpoint_loads_offline_with_vit_model_and_auto_image_processor(checkpoint, pixels):
    config = checkpoint.config
    assert pixels.shape == (1, 3, config.image_size, config.image_size)
    states = hidden_states(checkpoint, pixels)
    patches = (config.image_size // config.patch_size) ** 2
    assert len(states) == config.num_hidden_layers + 1
    assert states[-1].shape == (1, patches + 1, config.hidden_size)
    assert all(torch.isfinite(s).all() for s in states)


def test_checkpoint_is_at_most_25_mb(folder):
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total <= 25 * 1024 * 1024


def test_training_record_shows_a_falling_loss(folder):
    record = json.loads((folder / "train_log.json").read_text(encoding="utf-8"))
    assert record["data"]["captions_used"] is False
    assert len(record["losses"]) == record["steps"] and "torch" in record["versions"]
    assert record["final_loss_mean_last_50"] < 0.8 * record["first_loss"]


def test_trained_hidden_states_differ_from_the_random_control(folder, checkpoint, pixels):
    control = random_init_vit(folder, seed=0)
    trained, random_ = hidden_states(checkpoint, pixels), hidden_states(control, pixels)
    assert control.config.to_diff_dict() | {"_name_or_path": ""} == checkpoint.config.to_diff_dict() | {
        "_name_or_path": ""
    }
    assert not torch.allclose(trained[-1], random_[-1], atol=1e-3)


@pytest.mark.parametrize("alias", sorted(CHECKPOINTS))
def test_the_registry_loads_the_checkpoint_offline_and_encodes_rendered_text(alias, tmp_path):
    from probe.features.extract import extract_features

    captions = ["grinning face", "red heart", "file cabinet", "owl"]
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "caption": c}) + "\n" for i, c in enumerate(captions)), encoding="utf-8"
    )
    dataset = f"rendered:{tmp_path / 'm.jsonl'}"  # rows without images: the captions drawn as text are the images
    trained = extract_features(model=alias, dataset=dataset, cache_dir=tmp_path / "cache", device="cpu").open()
    twin = extract_features(
        model=f"random-init:{alias}", dataset=dataset, cache_dir=tmp_path / "cache", device="cpu"
    ).open()
    assert trained.key["model"]["name"] == alias and trained.key["model"]["source"] == "repo-data"
    assert twin.key["model"]["base"]["name"] == alias
    x, y = trained.read(), twin.read()
    assert x.shape == y.shape == (4, 7, 192) and np.isfinite(x).all()
    assert not np.allclose(x[:, -1], y[:, -1], atol=1e-3)
    assert np.linalg.matrix_rank(x[:, -1]) == 4  # four different texts, four different features


def test_random_control_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = (random_init_vit(CHECKPOINT, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.rand(1), before)
    assert same_weights(a.state_dict(), b.state_dict())
    assert not same_weights(a.state_dict(), c.state_dict())


@pytest.fixture(scope="module")
def tiny_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(6, 3, 40, 40, generator=generator) * 255).to(torch.uint8)


def test_two_mae_steps_change_the_weights_deterministically(tiny_images):
    torch.manual_seed(7)  # train_mae seeds, then builds the model: the same weights before any step
    untrained = ViTMAEForPreTraining(TINY.mae_config()).state_dict()
    first = train_mae(tiny_images, spec=TINY, steps=2, seed=7)
    second = train_mae(tiny_images, spec=TINY, steps=2, seed=7)
    assert first.losses == second.losses and len(first.losses) == 2
    trained = first.model.state_dict()
    encoder = [name for name in trained if name.startswith("vit.") and "position_embeddings" not in name]
    assert all(not torch.equal(untrained[name], trained[name]) for name in encoder if name.endswith("weight"))
    assert same_weights(trained, second.model.state_dict())


def test_two_contrastive_steps_change_the_weights_deterministically(tiny_images):
    torch.manual_seed(7)
    untrained = ContrastiveModel(TINY_CONTRASTIVE).state_dict()
    first = train_contrastive(tiny_images, spec=TINY_CONTRASTIVE, steps=2, seed=7)
    second = train_contrastive(tiny_images, spec=TINY_CONTRASTIVE, steps=2, seed=7)
    assert first.losses == second.losses and len(first.losses) == 2
    trained = first.model.state_dict()
    assert all(not torch.equal(untrained[k], trained[k]) for k in trained if k.endswith("weight"))
    assert same_weights(trained, second.model.state_dict())


def test_info_nce_is_log_of_the_negatives_plus_one_at_chance_and_small_when_views_match():
    same = torch.nn.functional.normalize(torch.ones(4, 8), dim=1)
    torch.testing.assert_close(info_nce_loss(same, same, temperature=0.2), torch.log(torch.tensor(7.0)))
    distinct = torch.eye(8)[:4]
    assert info_nce_loss(distinct, distinct, temperature=0.1) < 1e-3


def test_contrastive_encoder_exports_and_reloads(tiny_images, tmp_path):
    model = train_contrastive(tiny_images, spec=TINY_CONTRASTIVE, steps=1, seed=0).model
    folder = export_vit_encoder(model.encoder, tmp_path / "vit", spec=TINY_CONTRASTIVE, seed=0)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for exported, expected in zip(
        hidden_states(ViTModel.from_pretrained(folder), pixels), vit_hidden_states(model.encoder, pixels)
    ):
        torch.testing.assert_close(exported, expected, atol=1e-5, rtol=1e-5)


def test_mae_export_reproduces_the_encoder_and_reloads(tiny_images, tmp_path):
    mae = train_mae(tiny_images, spec=TINY, steps=1, seed=0).model
    folder = export_mae_encoder(mae, tmp_path / "vit", spec=TINY, seed=0)
    reloaded = ViTModel.from_pretrained(folder).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for exported, expected in zip(hidden_states(reloaded, pixels), mae_encoder_hidden_states(mae, pixels)):
        torch.testing.assert_close(exported, expected, atol=1e-5, rtol=1e-5)
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.size == {"height": 32, "width": 32}


def test_random_resized_crops_are_seeded_and_a_full_crop_without_flip_is_the_image():
    images = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    a = random_resized_crops(images, size=16, generator=torch.Generator().manual_seed(5))
    b = random_resized_crops(images, size=16, generator=torch.Generator().manual_seed(5))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)
    same = random_resized_crops(
        images, size=24, generator=torch.Generator(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False
    )
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


def test_colour_jitter_is_seeded_bounded_and_the_identity_at_zero_strength():
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = colour_jitter(images, generator=torch.Generator().manual_seed(3))
    b = colour_jitter(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.allclose(a, images) and a.min() >= 0 and a.max() <= 1
    same = colour_jitter(images, generator=torch.Generator(), strength=0.0, grayscale_p=0.0)
    torch.testing.assert_close(same, images)


def test_knn_label_accuracy_separates_clusters_and_is_chance_like_on_noise():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 5
    labels = [str(i % 3) for i in range(60)]
    clustered = torch.stack([centres[i % 3] for i in range(60)]) + 0.1 * torch.randn(60, 16, generator=generator)
    assert knn_label_accuracy(clustered, labels, k=5) == 1.0
    assert knn_label_accuracy(torch.randn(60, 16, generator=generator), labels, k=5) < 0.6
