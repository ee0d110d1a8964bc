"""GPU throughput of feature extraction at the sizes that matter, with no network.

Builds random-weight models from configs, directly on the device in bfloat16: a WebSSL-DINO-1B-sized
Dinov2 (1536 x 40, SwiGLU, patch 14, 224 px) and a LLaMA-3-8B-sized decoder (4096 x 32, GQA 32/8,
MLP 14336, vocab 128256). Times `LoadedModel.encode` (the extractor's code path: all hidden states,
pooled, copied to CPU) at a few batch sizes, and prints images/s, tokens/s, and an MFU estimate:

    MFU = 2 * matmul parameters * tokens processed / seconds / peak

(attention score FLOPs are left out, so this slightly understates the true utilisation; padded
caption tokens count as processed). The peak is the dense bf16 datasheet number of the GPU found
(H100/H200 SXM: 989 TFLOP/s) or --peak-tflops.

    python bench/gpu_bench.py            # on a GPU machine: about a minute on an H100
    python bench/gpu_bench.py --quick    # tiny configs on CPU: checks the script end to end
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from probe.devices import resolve_device
from probe.models.loading import LoadedModel, compile_blocks
from probe.models.names import resolve_model

# Dense bf16 tensor-core peaks from the datasheets (SXM parts), TFLOP/s; matched on the device name.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
CAPTION_TOKENS = (20, 40)  # realistic caption lengths, BOS included
SEED = 0


@dataclass(frozen=True)
class BenchResult:
    """One timed configuration."""

    model: str
    batch: int
    seconds_per_batch: float
    items_per_s: float
    tokens_per_s: float
    mfu: float | None
    peak_mem_gb: float | None


def _build_vision(
    quick: bool, device: torch.device, dtype: torch.dtype, compiled: bool = False
) -> tuple[LoadedModel, int]:
    from transformers import Dinov2Config, Dinov2Model

    spec = resolve_model("webssl-dino1b-full2b-224")
    if quick:
        config = Dinov2Config(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=56,
            patch_size=14,
            use_swiglu_ffn=True,
        )
    else:
        # facebook/webssl-dino1b-full2b-224: the DINOv2 ViT-g/14 shape (SwiGLU MLP, ratio 4), no registers.
        config = Dinov2Config(
            hidden_size=1536,
            num_hidden_layers=40,
            num_attention_heads=24,
            mlp_ratio=4,
            use_swiglu_ffn=True,
            image_size=224,
            patch_size=14,
            layerscale_value=1e-5,
        )
    model = _on_device(lambda: Dinov2Model(config), device, dtype)
    spec = replace(spec, hidden_size=config.hidden_size, num_layers=config.num_hidden_layers)
    if compiled:
        compile_blocks(model, dynamic=spec.modality == "text")
    loaded = LoadedModel(spec=spec, model=model, processor=None, device=device, dtype=dtype, identity={})
    return loaded, config.image_size


def _build_text(
    quick: bool, device: torch.device, dtype: torch.dtype, compiled: bool = False
) -> tuple[LoadedModel, int]:
    from transformers import LlamaConfig, LlamaModel

    spec = resolve_model("llama3")
    if quick:
        config = LlamaConfig(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=1000,
        )
    else:
        config = LlamaConfig(
            hidden_size=4096,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=14336,
            vocab_size=128256,
            rope_theta=500000.0,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
        )
    model = _on_device(lambda: LlamaModel(config), device, dtype)
    spec = replace(spec, hidden_size=config.hidden_size, num_layers=config.num_hidden_layers)
    if compiled:
        compile_blocks(model, dynamic=spec.modality == "text")
    loaded = LoadedModel(spec=spec, model=model, processor=None, device=device, dtype=dtype, identity={})
    return loaded, config.vocab_size


def _on_device(build: Callable[[], torch.nn.Module], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Construct straight on `device` in `dtype` (no fp32 CPU copy of 8B parameters first)."""
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = build()
    finally:
        torch.set_default_dtype(previous)
    # No blanket .to(dtype): float32 buffers (rotary inv_freq) stay float32, as from_pretrained leaves them.
    return model.eval().requires_grad_(False)


def _matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matrix products (embedding lookups, norms, biases excluded)."""
    skip = ("embed_tokens", "position", "cls_token", "mask_token", "register")
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and not any(s in n for s in skip))


def _text_batch(batch: int, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Left-padded random captions of 20-40 tokens, as `collate` makes them for a decoder."""
    lengths = torch.randint(CAPTION_TOKENS[0], CAPTION_TOKENS[1] + 1, (batch,), generator=generator)
    width = int(lengths.max())
    positions = torch.arange(width).expand(batch, -1)
    mask = (positions >= width - lengths.unsqueeze(1)).long()
    ids = torch.randint(3, vocab, (batch, width), generator=generator) * mask  # pad id 0 where masked
    return {"input_ids": ids, "attention_mask": mask}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(
    loaded: LoadedModel, batch: dict[str, torch.Tensor], *, pools: list[str], warmup: int, iters: int
) -> tuple[float, torch.Tensor]:
    """Median seconds per `encode` call over `iters` timed calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        out = loaded.encode(batch, pools=pools)
    times = []
    for _ in range(iters):
        _sync(loaded.device)
        start = time.perf_counter()
        out = loaded.encode(batch, pools=pools)  # ends with .cpu(), itself a sync point
        _sync(loaded.device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out[pools[0]]


def _peak_flops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override * 1e12, f"--peak-tflops {override:g}"
    if device.type != "cuda":
        return None, "none (not a GPU): MFU not computed"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12, f"{tflops:g} TFLOP/s dense bf16 ({key} datasheet; device {name!r})"
    return None, f"unknown for {name!r}: pass --peak-tflops for MFU"


def _peak_mem(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_mem(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _bench_model(
    name: str,
    loaded: LoadedModel,
    *,
    sizes: list[int],
    make_batch: Callable[[int, torch.Generator], tuple[dict[str, torch.Tensor], int, int]],
    pools: list[str],
    args: argparse.Namespace,
    peak: float | None,
) -> list[BenchResult]:
    """Time `loaded.encode` at each batch size, then free the model.

    `make_batch(size, generator)` returns (batch, real tokens, processed tokens): real tokens give
    tokens/s, processed ones (padding included) the MFU.
    """
    params = _matmul_params(loaded.model)
    print(f"{name}: {loaded.hidden_size} x {loaded.num_states - 1}, {params / 1e9:.3f}B matmul params")
    generator = torch.Generator().manual_seed(SEED)
    results = []
    for size in sizes:
        _reset_mem(loaded.device)
        batch, real_tokens, processed = make_batch(size, generator)
        seconds, out = _time(loaded, batch, pools=pools, warmup=args.warmup, iters=args.iters)
        assert out.shape == (size, loaded.num_states, loaded.hidden_size) and torch.isfinite(out).all()
        mfu = 2 * params * processed / seconds / peak if peak else None
        results.append(
            BenchResult(name, size, seconds, size / seconds, real_tokens / seconds, mfu, _peak_mem(loaded.device))
        )
    device = loaded.device
    del loaded, out
    _reset_mem(device)
    return results


def bench_vision(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, peak: float | None
) -> list[BenchResult]:
    """Time the DINO-1B-sized model over `args.vision_batches`; images are random pixels."""
    loaded, image = _build_vision(args.quick, device, dtype, args.compile)
    tokens_per_image = 1 + (image // 14) ** 2

    def make_batch(size: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], int, int]:
        pixels = torch.randn(size, 3, image, image, generator=generator)
        return {"pixel_values": pixels}, size * tokens_per_image, size * tokens_per_image

    return _bench_model(
        "dino-1b", loaded, sizes=args.vision_batches, make_batch=make_batch, pools=["cls", "mean"], args=args, peak=peak
    )


def bench_text(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, peak: float | None
) -> list[BenchResult]:
    """Time the LLaMA-3-8B-sized model over `args.text_batches`; captions are random ids, left padded."""
    loaded, vocab = _build_text(args.quick, device, dtype, args.compile)

    def make_batch(size: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], int, int]:
        batch = _text_batch(size, vocab, generator)
        return batch, int(batch["attention_mask"].sum()), batch["input_ids"].numel()

    return _bench_model(
        "llama3-8b", loaded, sizes=args.text_batches, make_batch=make_batch, pools=["mean"], args=args, peak=peak
    )


def _print_table(results: list[BenchResult]) -> None:
    header = f"{'model':<10} {'batch':>6} {'s/batch':>9} {'items/s':>10} {'tokens/s':>11} {'MFU':>6} {'peak GiB':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        mfu = f"{100 * r.mfu:5.1f}%" if r.mfu is not None else "    -"
        mem = f"{r.peak_mem_gb:9.1f}" if r.peak_mem_gb is not None else "        -"
        rates = f"{r.seconds_per_batch:>9.4f} {r.items_per_s:>10.1f} {r.tokens_per_s:>11.0f}"
        print(f"{r.model:<10} {r.batch:>6} {rates} {mfu:>6} {mem}")


def main(argv: list[str] | None = None) -> list[BenchResult]:
    """Parse flags, run the vision then the text benchmark, print the table; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny configs on CPU in float32: a smoke run")
    parser.add_argument("--device", default=None, help="auto, cuda, cuda:N or cpu (default: auto; cpu with --quick)")
    parser.add_argument("--vision-batches", type=int, nargs="+", default=None, help="default 32 128 256")
    parser.add_argument("--text-batches", type=int, nargs="+", default=None, help="default 32 128 512 1024")
    parser.add_argument(
        "--compile", action="store_true", help="run the networks through torch.compile (warm-up compiles)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per batch size (default 3)")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per batch size (default 10)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the peak used for MFU")
    args = parser.parse_args(argv)
    args.vision_batches = args.vision_batches or ([2, 4] if args.quick else [32, 128, 256])
    args.text_batches = args.text_batches or ([2, 4] if args.quick else [32, 128, 512, 1024])
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.iters = args.iters if args.iters is not None else (2 if args.quick else 10)

    device = resolve_device(args.device or ("cpu" if args.quick else "auto"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak, peak_note = _peak_flops(device, args.peak_tflops)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), dtype {dtype}, "
        f"torch {torch.__version__}; peak used for MFU: {peak_note}; torch.compile {'on' if args.compile else 'off'}"
    )
    started = time.perf_counter()
    results = bench_vision(args, device, dtype, peak) + bench_text(args, device, dtype, peak)
    _print_table(results)
    print(
        f"\ntotal {time.perf_counter() - started:.1f} s; MFU = 2 x matmul params x tokens processed / time / peak "
        "(attention scores not counted; caption padding counted as processed)"
    )
    return results


if __name__ == "__main__":
    main()
