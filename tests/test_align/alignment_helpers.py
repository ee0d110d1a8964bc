"""Helpers shared by the alignment tests (test_metrics, test_align, test_stats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors run faster on one thread, and the shared 2-core machine is often busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of `x` [N, D] scaled to unit L2 norm."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)
