"""Quick checks that a vision encoder learned something: leave-one-out kNN label accuracy of its features."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal, Sequence

import torch
from PIL import Image
from transformers import AutoImageProcessor, ViTModel

Pooling = Literal["cls", "mean"]


@torch.no_grad()
def pooled_features(
    model: ViTModel, processor, image_paths: Sequence[Path], *, pool: Pooling = "cls", batch_size: int = 64
) -> torch.Tensor:
    """Every hidden state (embeddings + each block, before the final norm) pooled to one vector per image:
    the CLS token (`pool="cls"`) or the mean of the patch tokens (`pool="mean"`).

    Returns [L+1, N, D] float32, rows in the order of `image_paths`.
    """
    model.eval()
    per_batch = []
    for start in range(0, len(image_paths), batch_size):
        images = [Image.open(p).convert("RGB") for p in image_paths[start : start + batch_size]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        states = model(pixel_values=pixels, output_hidden_states=True).hidden_states
        per_batch.append(torch.stack([s[:, 0] if pool == "cls" else s[:, 1:].mean(dim=1) for s in states]))
    return torch.cat(per_batch, dim=1).float()


def knn_label_accuracy(features: torch.Tensor, labels: Sequence[str], *, k: int = 10) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote (cosine similarity, ties -> nearest).

    features: [N, D]; labels: N strings. Returns the fraction of rows whose vote equals their own label.
    """
    x = torch.nn.functional.normalize(features.float(), dim=1)
    sims = x @ x.T
    sims.fill_diagonal_(-float("inf"))
    neighbours = sims.topk(k, dim=1).indices.tolist()
    correct = 0
    for i, row in enumerate(neighbours):
        votes = Counter(labels[j] for j in row)
        best = max(votes.values())
        # Ties go to the label of the nearest neighbour among the tied ones, so the vote is deterministic.
        winner = next(labels[j] for j in row if votes[labels[j]] == best)
        correct += winner == labels[i]
    return correct / len(labels)


def knn_by_layer(
    model_dir: Path,
    model: ViTModel,
    image_paths: Sequence[Path],
    labels: Sequence[str],
    *,
    k: int = 10,
    pool: Pooling = "cls",
) -> list[float]:
    """kNN label accuracy (see `knn_label_accuracy`) of the pooled features of every hidden state, index 0 =
    embeddings; images are prepared by the processor saved in `model_dir`."""
    processor = AutoImageProcessor.from_pretrained(model_dir)
    features = pooled_features(model, processor, image_paths, pool=pool)
    return [knn_label_accuracy(layer, labels, k=k) for layer in features]
