"""Shared test fixtures: tiny transformers checkpoints built offline, and a session-wide probe cache.

`tiny_model_dir(kind)` returns a folder laid out like a hub checkpoint (config.json, safetensors
weights, and the image processor or tokenizer), built once per session from a small config with a
fixed seed. Kinds: see `TINY_KINDS`. Vision models take 32x32 images (patch 8, so 16 patches); all
models have hidden size 32 and 3 layers (4 hidden states). The llama tokenizer adds BOS and has no
pad token (to exercise the EOS-pad rule); the bert one adds [CLS]/[SEP] and pads with [PAD].

`labelled_dataset` is a manifest of LABELLED_ROWS captioned images with a label field (`colour`).

`cli(args)` runs `probe ARGS` (in this process, or with `subprocess=True` in a fresh Python) and returns
its exit code, stdout and stderr as a `CliResult`.
"""

from __future__ import annotations

import os

# Tests never touch the network: set before anything imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_HIDDEN = 32
TINY_LAYERS = 3
TINY_IMAGE = 32
TINY_PATCH = 8
TINY_KINDS = ("dinov2", "dinov2_registers", "vit", "vit_mae", "clip", "siglip", "llama", "bert")
TINY_WORDS = (
    "a an the cat cats dog dogs on in of with and red blue green small big photo picture grass sky "
    "sitting running next to man woman street car tree water"
).split()

_VISION = dict(
    hidden_size=TINY_HIDDEN,
    num_hidden_layers=TINY_LAYERS,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=TINY_IMAGE,
    patch_size=TINY_PATCH,
)
_TEXT = dict(
    hidden_size=TINY_HIDDEN,
    num_hidden_layers=TINY_LAYERS,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)


def _word_tokenizer(specials: list[str], *, template: str, **special_names: str) -> Any:
    """A word-level fast tokenizer over TINY_WORDS, whose post-processor follows `template`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials + list(TINY_WORDS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special_names["unk_token"]))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    used = [t for t in specials if t in template]
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in used]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=64, **special_names)


def _build(kind: str) -> tuple[Any, Any]:
    """(model, processor-or-tokenizer) for a tiny checkpoint of `kind`, with seeded random weights."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    # Wider-than-default init so layers differ clearly from each other and from the embeddings.
    init = dict(initializer_range=0.2)
    if kind in ("dinov2", "dinov2_registers"):
        extra = {"num_register_tokens": 2} if kind == "dinov2_registers" else {}
        config_class = tf.Dinov2WithRegistersConfig if extra else tf.Dinov2Config
        model_class = tf.Dinov2WithRegistersModel if extra else tf.Dinov2Model
        config = config_class(**{k: v for k, v in _VISION.items() if k != "intermediate_size"}, **init, **extra)
        processor = tf.BitImageProcessor(
            size={"shortest_edge": 36},
            crop_size={"height": TINY_IMAGE, "width": TINY_IMAGE},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
        return model_class(config), processor
    if kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(**_VISION, **init), add_pooling_layer=False)
        return model, tf.ViTImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE})
    if kind == "vit_mae":
        config = tf.ViTMAEConfig(
            **_VISION,
            **init,
            decoder_hidden_size=16,
            decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=32,
        )
        # Saved as the hub saves MAE checkpoints: the pre-training model, encoder under "vit.".
        return tf.ViTMAEForPreTraining(config), tf.ViTImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE})
    if kind in ("clip", "siglip"):
        text = dict(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
        if kind == "clip":
            config = tf.CLIPConfig(text_config=text, vision_config={**_VISION, **init}, projection_dim=16)
            processor = tf.CLIPImageProcessor(
                size={"shortest_edge": TINY_IMAGE}, crop_size={"height": TINY_IMAGE, "width": TINY_IMAGE}
            )
            return tf.CLIPModel(config), processor
        config = tf.SiglipConfig(text_config=text, vision_config={**_VISION, **init})
        return tf.SiglipModel(config), tf.SiglipImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE})
    if kind == "llama":
        tokenizer = _word_tokenizer(
            ["<unk>", "<s>", "</s>"], template="<s> $A", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
        )
        config = tf.LlamaConfig(
            **_TEXT,
            **init,
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        )
        return tf.LlamaModel(config), tokenizer
    if kind == "bert":
        tokenizer = _word_tokenizer(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
            template="[CLS] $A [SEP]",
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
        )
        config = tf.BertConfig(**_TEXT, **init, vocab_size=len(tokenizer), pad_token_id=0)
        return tf.BertModel(config, add_pooling_layer=False), tokenizer
    raise KeyError(f"unknown tiny model kind {kind!r}; choose from {TINY_KINDS}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A function kind -> folder of a tiny saved checkpoint (built on first use, then reused)."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in built:
            model, processor = _build(kind)
            folder = root / kind
            model.save_pretrained(folder)
            processor.save_pretrained(folder)
            built[kind] = folder
        return built[kind]

    return make


LABELLED_ROWS = 40  # rows of `labelled_dataset`


@pytest.fixture(scope="session")
def labelled_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LABELLED_ROWS rows of 32x32 noisy squares in four colours, captioned with their colour; label field
    `colour`. The manifest's path."""
    import json

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(LABELLED_ROWS):
        colour = ["red", "green", "blue", "gray"][i % 4]
        base = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "gray": (120, 120, 120)}[colour]
        img = np.clip(np.array(base) + rng.normal(0, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append(
            {"id": f"x{i}", "image": f"{i}.png", "caption": f"a {colour} square number {i % 5}", "colour": colour}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A probe cache folder shared by the whole session (so a GGUF is converted at most once)."""
    return tmp_path_factory.mktemp("probe-cache")


class CliResult(NamedTuple):
    """What one `probe` command did: exit code, stdout and stderr (unpacks as `code, out, err`)."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """A function `(args, *, unwrap=False, subprocess=False, env=None, **popen) -> CliResult` running `probe ARGS`.

    In this process by default: `probe.cli.main.main(args)`, its SystemExit code (None: 0) and what it printed
    (read from `capsys`, so output printed before the call is dropped). `unwrap=True` undoes rich's line
    wrapping: every run of whitespace in stdout and stderr becomes one space.
    `subprocess=True` runs `python -c "...main()" ARGS` instead, for what needs a process of its own (a crash,
    a resource limit, `preexec_fn` and other `popen` keywords of `subprocess.run`): with this checkout first on
    PYTHONPATH, this process's torch thread count (BLAS splits work by threads, so numbers match in-process
    ones) and a 250-column terminal (no wrapped messages); `env` entries override those.
    """

    def run(
        args: list[str],
        *,
        unwrap: bool = False,
        subprocess: bool = False,
        env: dict[str, str] | None = None,
        **popen: Any,
    ) -> CliResult:
        if subprocess:
            code, out, err = _run_in_subprocess(args, env=env or {}, **popen)
        else:
            assert env is None and not popen, "env and popen keywords need subprocess=True"
            from probe.cli.main import main

            capsys.readouterr()
            with pytest.raises(SystemExit) as exit_info:
                main(list(args))
            out, err = capsys.readouterr()
            code = int(exit_info.value.code or 0)
        if unwrap:
            out, err = " ".join(out.split()), " ".join(err.split())
        return CliResult(code, out, err)

    return run


def _run_in_subprocess(args: list[str], *, env: dict[str, str], **popen: Any) -> tuple[int, str, str]:
    import subprocess
    import sys

    import torch

    threads = str(torch.get_num_threads())
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    full_env = {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "COLUMNS": "250",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from probe.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=full_env,
        **popen,
    )
    return proc.returncode, proc.stdout, proc.stderr
