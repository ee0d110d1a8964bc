"""Turn device and dtype names (the `device=` and `dtype=` arguments) into torch objects, checking they can be used
here, and say how much memory a device has free."""

from __future__ import annotations

import os

import torch

from probe.errors import InputError
from probe.log import logger

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: "str | torch.device | None" = "auto") -> torch.device:
    """The torch device for a device name: "auto" (or None), "cpu", "cuda", "cuda:N", "mps", or a torch.device.

    "auto" picks CUDA when available, else MPS, else CPU. This is the only device resolver in probe.
    Raises `InputError` naming `device=` for a name torch does not parse or a device this machine does not
    have (the CLI shows the argument as its flag).
    """
    if name is None:
        name = "auto"
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={name!r}: CUDA is not available on this machine; use device='cpu' or 'auto'.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}."
            )
    elif device.type == "mps" and not _mps_available():
        raise InputError(f"device={name!r}: MPS is not available on this machine; use device='cpu' or 'auto'.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device={name!r} is not supported: use auto, cpu, cuda, cuda:N or mps.")
    return device


def auto_dtype(device_kind: str) -> torch.dtype:
    """The dtype "auto" stands for on a device of kind `device_kind` ("cuda", "mps", "cpu"): bfloat16 on CUDA
    (float16 where this machine's GPU lacks bfloat16) and float32 elsewhere. The one place this rule is written."""
    if device_kind == "cuda":
        # A machine without CUDA cannot say what its GPU supports (a GPU study planned on a laptop): bfloat16,
        # what current GPUs have.
        bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    return torch.float32


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype for a dtype name on `device`.

    "auto" is `auto_dtype` of the device's kind. Half precision on CPU is allowed but logged as a warning: it is
    slow there and changes the features. Raises `InputError` naming `dtype=` for an unknown name.
    """
    text = name.strip().lower()
    if text == "auto":
        return auto_dtype(device.type)
    dtype = DTYPE_NAMES.get(text)
    if dtype is None:
        raise InputError(f"dtype={name!r} is not a dtype: use auto, float32, bfloat16 or float16.")
    if device.type == "cpu" and dtype != torch.float32:
        logger.warning("dtype=%s on CPU is slow and lowers precision; float32 is the usual choice there.", text)
    return dtype


# Where the kernel reports available RAM, and cgroup (v2, then v1) memory limit and usage files.
MEMINFO_PATH = "/proc/meminfo"
CGROUP_MEMORY_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_headroom() -> "int | None":
    """Bytes this process's cgroup may still allocate (Slurm and containers cap memory this way), or None
    when no limit is set or readable (cgroup v2 memory.max, else v1 memory.limit_in_bytes)."""
    for limit_path, usage_path in CGROUP_MEMORY_FILES:
        try:
            with open(limit_path) as limit_file, open(usage_path) as usage_file:
                limit, usage = limit_file.read().strip(), usage_file.read().strip()
        except OSError:
            continue
        # v2 writes "max" for no limit; v1 writes a huge number (about 2^63).
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - int(usage))
        return None
    return None


def available_ram_bytes() -> int:
    """Bytes of RAM this process can still take: MemAvailable of /proc/meminfo (os.sysconf's available
    pages where that file is missing), capped by the cgroup's remaining memory."""
    available = None
    try:
        with open(MEMINFO_PATH) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def free_memory_bytes(device: torch.device) -> int:
    """Bytes free for new tensors on `device`: on CUDA the driver's free memory plus what torch's caching
    allocator holds unused; elsewhere (CPU, MPS's unified memory) the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return available_ram_bytes()
