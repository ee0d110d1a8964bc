"""Which third-party progress bars show: huggingface_hub's download bars yes, transformers' per-load bars and the
GGUF conversion bar no."""

from __future__ import annotations

import io

import torch
from huggingface_hub import utils as hub_utils
from transformers.utils import logging as hf_logging

from probe.models.loading import load_model, transformers_bars_hidden
from probe.models.names import resolve_model


def _drawn(factory) -> str:
    buf = io.StringIO()
    for _ in factory(range(3), file=buf, desc="probe-test-bar", mininterval=0):
        pass
    return buf.getvalue()


def test_download_bars_show_and_transformers_bars_do_not_while_loading():
    hub_utils.enable_progress_bars()
    hf_logging.enable_progress_bar()
    with transformers_bars_hidden():
        assert "probe-test-bar" in _drawn(hub_utils.tqdm)  # what hf_hub_download draws
        assert _drawn(hf_logging.tqdm) == ""  # "Loading weights" and checkpoint-shard bars
    assert hf_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()


def test_download_bars_a_user_turned_off_stay_off():
    hub_utils.disable_progress_bars()
    try:
        with transformers_bars_hidden():
            assert _drawn(hub_utils.tqdm) == ""
        assert hub_utils.are_progress_bars_disabled()
    finally:
        hub_utils.enable_progress_bars()
        hf_logging.enable_progress_bar()


def test_loading_a_model_leaves_download_bars_on(tiny_model_dir, tmp_path):
    hub_utils.enable_progress_bars()
    load_model(
        resolve_model(str(tiny_model_dir("vit"))), device=torch.device("cpu"), dtype=torch.float32, cache_dir=tmp_path
    )
    assert not hub_utils.are_progress_bars_disabled()
    assert "probe-test-bar" in _drawn(hub_utils.tqdm)


def test_gguf_conversion_draws_no_bar_and_restores_tqdm():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    from probe.models.sources import _gguf_conversion_patches

    original = gguf_utils.tqdm
    assert "probe-test-bar" in _drawn(original)
    with _gguf_conversion_patches():
        assert _drawn(gguf_utils.tqdm) == ""
    assert gguf_utils.tqdm is original
