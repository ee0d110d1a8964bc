"""LayerMasks (probe.align.layer_masks): every layer's kNN edges in one table of bits, against a direct count."""

from __future__ import annotations

import torch

from probe.align.layer_masks import LayerMasks


def random_lists(layers: int, rows: int, k: int, seed: int) -> torch.Tensor:
    """kNN-like lists [L, N, k]: k distinct other rows per row."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(layers, rows, rows, generator=generator)
    scores[:, torch.arange(rows), torch.arange(rows)] = -1.0
    return scores.topk(k, dim=2).indices


def test_masks_of_more_than_64_layers_answer_for_every_layer() -> None:
    """70 layers take two words; bit 63 (the sign bit of the first word) and the second word must both work."""
    lists = random_lists(70, 40, 4, seed=0)
    masks = LayerMasks(lists)
    assert masks.words.shape == (2, 40 * 40)
    dense = torch.zeros(70, 40, 40, dtype=torch.bool)
    dense.scatter_(2, lists, True)
    keys = torch.arange(40 * 40)
    for layer in (0, 31, 63, 64, 69):
        assert torch.equal(masks.has(torch.tensor(layer), keys), dense[layer].flatten()), layer
    queries = torch.randint(0, 1600, (500,), generator=torch.Generator().manual_seed(1))
    found, layer = masks.shared(queries)
    expected = dense.view(70, -1)[:, queries].T.nonzero()  # (query, layer), ordered by query then layer
    assert torch.equal((found * 70 + layer).sort().values, expected[:, 0] * 70 + expected[:, 1])


def test_reciprocal_flags_equal_a_direct_check() -> None:
    lists = random_lists(3, 30, 5, seed=2)
    flags = LayerMasks(lists).reciprocal(lists)
    for layer in range(3):
        for row in range(30):
            for slot, col in enumerate(lists[layer, row].tolist()):
                assert bool(flags[layer, row, slot]) == (row in lists[layer, col].tolist())
