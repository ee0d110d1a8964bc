"""Feature extraction: dataset rows -> model hidden states -> pooled features in a resumable HDF5 cache.

`extract_features` is the one entry point (the CLI's `probe extract`, and `probe align`/`probe linear`
when a cache is missing, call it). It computes the cache key first and returns an existing complete cache
without loading the model; otherwise it loads the model, runs only the rows not yet written, saves each
batch crash-safely (see `probe.features.writer`) and assembles the HDF5 file at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from probe.datasets import PairedDataset, load_dataset
from probe.datasets.images import DEFAULT_MAX_PIXELS, check_image_sizes, load_rgb
from probe.errors import CacheError, InputError, ProbeError, describe_os_error
from probe.features.cache import FeatureCache
from probe.features.format import build_key, cache_path, check_writable_dir, default_cache_dir
from probe.features.layers import parse_layers
from probe.features.settings import ExtractSettings, check_extract_settings
from probe.features.writer import BackgroundWriter, PartialWriter
from probe.log import logger
from probe.models.spec import POOLS_BY_MODALITY
from probe.progress import ProgressCallback

DEFAULT_BATCH = {"cpu": 32, "cuda": 128, "mps": 32}
# Most rows a token-budget batch takes when no batch_size caps it: its pooled features, [rows, S, D] float32 on the
# device and again in pinned host memory per queued batch, stay around 1 GiB for an 8B model (33 x 4096).
MAX_BUDGET_ROWS = 2048
# Batches waiting for the writer thread: enough to ride out a slow write, few enough to bound host memory.
WRITE_QUEUE = 3


@dataclass(frozen=True)
class Shard:
    """This process's share of the rows: rows i with i % world == rank (e.g. one torchrun rank per GPU)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Shard":
        """RANK/WORLD_SIZE as torchrun sets them, else a single shard."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world < 1 or not 0 <= rank < world:
            raise InputError(f"RANK={rank} / WORLD_SIZE={world} in the environment are inconsistent")
        return cls(rank=rank, world=world)


@dataclass
class ExtractResult:
    """What `extract_features` did. `path` is the complete cache (None while other shards still run)."""

    path: Optional[Path]
    key: dict[str, Any]
    reused: bool
    rows_total: int
    rows_extracted: int
    seconds: float
    batch_size: int = 0
    load_seconds: float = 0.0  # of `seconds`, the time spent loading the model

    def open(self) -> FeatureCache:
        if self.path is None:
            raise ProbeError("the cache is not complete yet: other shards are still extracting")
        return FeatureCache(self.path, model=self.key["model"]["name"])


def _reuse(final: Path, key: dict[str, Any], num_rows: int, t0: float) -> "ExtractResult":
    """The result for a complete cache already at `final`, checked at open (damaged or foreign -> CacheError)."""
    FeatureCache(final, model=key["model"]["name"])
    logger.info("using cached features %s", final)
    return ExtractResult(final, key, True, num_rows, 0, time.perf_counter() - t0)


def resolve_pools(pool: Optional[str], *, modality: str, default: str) -> tuple[str, ...]:
    """A `pool` value (the `pool=` argument) -> tuple of pool names for `modality` ('both' = cls+mean for vision)."""
    allowed = POOLS_BY_MODALITY[modality]
    if pool is None:
        return (default,)
    if pool == "both" and modality == "vision":
        return allowed
    if pool not in allowed:
        extra = ", both" if modality == "vision" else ""
        raise InputError(
            f"pool={pool!r} does not apply to a {modality} model; choose one of {', '.join(allowed)}{extra}"
        )
    return (pool,)


class _ImageRows:
    """Map-style dataset for DataLoader workers: index -> (row index, RGB image or None, error or None)."""

    def __init__(self, dataset: PairedDataset, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.paths = [r.image for r in dataset.rows]
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:  # the header's size is checked against the pixel budget before anything is decoded
            return i, load_rgb(path, max_pixels=self.max_pixels), None
        except Exception as exc:  # any decode failure is the user's file, reported with its name
            return i, None, f"{type(exc).__name__}: {exc}"


class _Collate:
    """Picklable collate: decoded images -> the model's tensors, keeping row indices and decode failures."""

    def __init__(self, model_collate) -> None:
        self.model_collate = model_collate

    def __call__(self, items):
        rows = [i for i, _, _ in items]
        bad = [(i, err) for i, im, err in items if err is not None]
        if bad:
            return rows, None, bad
        return rows, self.model_collate([im for _, im, _ in items]), []


def plan_batches(
    rows: np.ndarray,
    batch_size: Optional[int],
    *,
    lengths: Optional[Sequence[int]] = None,
    max_tokens: Optional[int] = None,
) -> list[list[int]]:
    """Fixed batches over this shard's `rows`: [B] row lists covering each row once.

    Text rows are ordered by token length (longest first, so an out-of-memory error shows at once; ties by
    row index), image rows by index. The order is then cut every `batch_size` rows or, with `max_tokens` (text,
    `lengths` given), wherever one more row would make the batch's padded size (rows x its longest row, the
    first) exceed `max_tokens`, and also at `batch_size` rows when that is given too; a row longer than the
    budget gets a batch of its own. The plan depends only on the dataset, the shard and these two settings,
    never on which rows are already written: a resumed run redoes whole batches of the same plan, so its
    features are bit-identical to an uninterrupted run's (float32 kernels give results that depend on which
    rows share a batch; see docs/cache.md).
    """
    order = sorted(rows.tolist(), key=lambda i: (-lengths[i], i)) if lengths is not None else rows.tolist()
    if max_tokens is None or lengths is None:
        if batch_size is None:
            raise ValueError("plan_batches needs batch_size, or max_tokens with lengths")
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        if (
            current is None
            or (len(current) + 1) * lengths[current[0]] > max_tokens
            or len(current) == (batch_size or len(order))
        ):
            batches.append([i])
        else:
            current.append(i)
    return batches


class _AdaptiveEncoder:
    """Runs `encode` in sub-batches, halving the sub-batch size on CUDA out-of-memory and keeping it halved."""

    def __init__(self, loaded: Any, pools: Sequence[str], batch_size: int) -> None:
        self.loaded, self.pools, self.max_batch = loaded, tuple(pools), batch_size

    def __call__(self, batch: dict) -> dict[str, Any]:
        """pool -> [B, S, D] float32: numpy on CPU, a device tensor on CUDA (copied to the host by `_to_host`)."""
        import torch

        on_device = getattr(self.loaded.device, "type", "cpu") == "cuda"
        kwargs = {"on_device": True} if on_device else {}
        n = next(iter(batch.values())).shape[0]
        outs: list[dict] = []
        i = 0
        while i < n:
            step = self.max_batch
            sub = {k: v[i : i + step] for k, v in batch.items()}
            try:
                outs.append(self.loaded.encode(sub, pools=self.pools, **kwargs))
            except torch.OutOfMemoryError:
                if step == 1:
                    raise ProbeError(
                        "out of GPU memory even at batch size 1; use a smaller dtype= or another device="
                    ) from None
                self.max_batch = max(1, step // 2)
                logger.warning("out of memory at batch size %d; continuing at %d", step, self.max_batch)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            i += step
        if on_device:
            return {p: torch.cat([o[p] for o in outs]).float() for p in self.pools}
        return {p: torch.cat([o[p] for o in outs]).float().numpy() for p in self.pools}


def _to_host(feats: dict[str, Any], select: np.ndarray, *, store_dtype: str) -> tuple[dict[str, Any], Any]:
    """Keep the stored layers of each pool's [B, S_all, D] features and start their copy to the host.

    CPU (numpy in): a plain selection, no event. CUDA (tensors in): the selection and the cast to `store_dtype`
    happen on the GPU, the result is copied with `non_blocking=True` into pinned host memory (from torch's
    caching host allocator, so buffers are reused once their copy is done) and a CUDA event is recorded after
    the copies: the writer thread waits on it, the main thread goes on to the next forward pass.
    """
    first = next(iter(feats.values()))
    if isinstance(first, np.ndarray):
        return {p: x[:, select, :] for p, x in feats.items()}, None
    import torch

    idx = torch.as_tensor(select, device=first.device)
    dtype = torch.float16 if store_dtype == "float16" else torch.float32
    out = {}
    for p, x in feats.items():
        y = x.index_select(1, idx).to(dtype)
        buf = torch.empty(y.shape, dtype=dtype, pin_memory=True)
        buf.copy_(y, non_blocking=True)
        out[p] = buf
    event = torch.cuda.Event()
    event.record()
    return out, event


def _iter_batches(
    loaded: Any,
    dataset: PairedDataset,
    batches: Sequence[Sequence[int]],
    *,
    num_workers: int,
    prompt: Optional[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[list[int], dict]]:
    """Yield (row indices, model inputs) for each planned batch, in order."""
    from torch.utils.data import DataLoader, Subset

    if loaded.modality == "text":
        texts = _texts(dataset, prompt)
        pin = loaded.device.type == "cuda"

        def tokenized() -> Iterator[tuple[list[int], dict]]:
            for rows in batches:
                inputs = loaded.collate([texts[i] for i in rows])
                yield list(rows), ({k: v.pin_memory() for k, v in inputs.items()} if pin else inputs)

        # Tokenised a batch or two ahead in a thread (the Rust tokenizer releases the GIL), pinned on CUDA so
        # the copy to the device is asynchronous: the forward pass does not wait for the tokenizer.
        yield from _prefetched(tokenized(), depth=2)
        return
    flat = [i for rows in batches for i in rows]
    sizes = [len(rows) for rows in batches]
    # One DataLoader over the planned rows in plan order; a batch sampler cuts it at the plan's boundaries.
    bounds = np.cumsum([0, *sizes])
    loader = DataLoader(
        Subset(_ImageRows(dataset, max_pixels), flat),
        batch_sampler=[list(range(bounds[j], bounds[j + 1])) for j in range(len(sizes))],
        num_workers=num_workers,
        collate_fn=_Collate(loaded.collate),
        pin_memory=loaded.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    for rows, inputs, bad in loader:
        if bad:
            i, err = bad[0]
            raise InputError(
                f"cannot read image {dataset.rows[i].image} (row {i + 1}, id {dataset.rows[i].id!r}): {err}; "
                "fix or drop that row"
            )
        yield rows, inputs


def _prefetched(items: Iterator[Any], *, depth: int) -> Iterator[Any]:
    """`items`, produced up to `depth` ahead by a thread; its exception is raised here, in order. Closing this
    generator early (an error in the caller) stops the thread at its next item."""
    import queue
    import threading

    q: "queue.Queue[tuple[str, Any]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(("error", exc))

    thread = threading.Thread(target=run, name="probe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def _texts(dataset: PairedDataset, prompt: Optional[str]) -> list[str]:
    """The strings a text model encodes: each caption, through `prompt` when one is given."""
    return [prompt.format(caption=c) if prompt else c for c in dataset.captions]


def extract_features(
    *,
    model: str | Any,
    dataset: str | Path | PairedDataset,
    settings: Optional[ExtractSettings] = None,
    pool: Optional[str] = None,
    revision: Optional[str] = None,
    seed: Optional[int] = None,
    shard: Optional[Shard] = None,
    progress: Optional[ProgressCallback] = None,
    **options: Any,
) -> ExtractResult:
    """Extract every requested hidden state of `model` over `dataset` into a cache; reuse it when complete.

    model: alias, hub id, local folder, `random-init:<model>` or a ModelSpec. revision: the hub revision of a named
    model. seed: the weights' seed of a random-init model (None: its own, 0; an error for a trained model).
    dataset: registered name, manifest path or a PairedDataset. pool: vision `cls` (default) | `mean` | `both`;
    text `mean` (default) | `last`. `settings` (`ExtractSettings`; default: its defaults) or any of its fields as
    keywords (`cache_dir=..., device="cpu", layers="0,-1"`) say how: the cache folder, device and dtype, batches,
    row limit, layers, overwrite policy, prompt, pixel budget, token budget, compilation, stored dtype. shard: this
    process's rows (None: from RANK/WORLD_SIZE). Returns an ExtractResult whose `path` is the complete HDF5 cache
    with features/<pool> of shape [S, N, D]. Raises InputError for bad settings before anything is loaded.
    """
    from probe.devices import resolve_device, resolve_dtype
    from probe.models.names import resolve_model, with_seed

    t0 = time.perf_counter()
    settings = ExtractSettings.from_options(settings, **options)
    check_extract_settings(settings)
    cache_dir = settings.cache_dir if settings.cache_dir is not None else default_cache_dir()
    check_writable_dir(cache_dir, param="cache_dir")  # before any model or data, one line if it cannot work
    shard = shard or Shard.from_env()
    spec = with_seed(model, seed) if not isinstance(model, str) else resolve_model(model, revision=revision, seed=seed)
    if isinstance(dataset, PairedDataset):
        data = dataset.head(settings.limit)
    else:
        data = load_dataset(dataset, cache_dir=cache_dir, limit=settings.limit)
    if spec.modality == "text":
        data.require_captions()
    else:
        data.require_images()
        if settings.prompt is not None:
            raise InputError("prompt= applies to text models only")
        if settings.max_tokens is not None:
            raise InputError("max_tokens= applies to text models only (image batches have batch_size= rows)")
    pools = resolve_pools(pool, modality=spec.modality, default=spec.default_pool)
    device = settings.device
    if device == "auto" and shard.world > 1 and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per rank, as torchrun lays them out
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(settings.dtype, torch_device)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    num_states = spec.num_layers + 1 if getattr(spec, "num_layers", None) is not None else None
    layer_idx: Sequence[int] | str = (
        parse_layers(settings.layers, num_states=num_states) if num_states else settings.layers
    )
    key = build_key(
        spec=spec,
        dataset=data,
        pools=pools,
        layers=layer_idx,
        prompt=settings.prompt,
        dtype=dtype_name,
        store_dtype=settings.store_dtype,
    )
    final = cache_path(cache_dir, key)
    writer = PartialWriter(
        final, key=key, num_rows=len(data), rank=shard.rank, world=shard.world, store_dtype=settings.store_dtype
    )

    if spec.modality == "vision" and (
        settings.overwrite == "always" or (settings.overwrite == "missing" and not final.is_file())
    ):
        # Image headers only (nothing decoded), before anything is deleted, written or loaded.
        check_image_sizes(data, max_pixels=settings.max_pixels, rows=range(shard.rank, len(data), shard.world))
    if settings.overwrite != "always" and final.is_file():
        return _reuse(final, key, len(data), t0)
    if settings.overwrite == "never":
        raise InputError(
            f"no complete cache for {key['model']['name']} on {data.name} in {cache_dir} and overwrite='never'; "
            "use overwrite='missing' to extract"
        )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(describe_os_error(exc, doing=f"creating {final.parent}", folder=final.parent)) from None

    # One process per shard of this entry at a time (an OS lock, released if the holder dies). A second one
    # waits here, logging whom for, and then finds the cache the first one finished.
    with writer.shard_lock():
        if settings.overwrite != "always" and final.is_file():
            return _reuse(final, key, len(data), t0)
        if settings.overwrite == "always" and shard.rank == 0:
            writer.discard()
        writer.begin()
        done = writer.written_mask()
        shard_rows = np.arange(len(data))
        shard_rows = shard_rows[shard_rows % shard.world == shard.rank]
        todo = shard_rows[~done[shard_rows]]
        if done.any():
            logger.info("resuming: %d of %d rows already written in %s", int(done.sum()), len(data), writer.dir)

        bs = settings.batch_size or DEFAULT_BATCH.get(torch_device.type, 32)
        rows_extracted = 0
        load_seconds = 0.0
        loaded = None
        if not len(todo) and isinstance(layer_idx, str):
            layer_idx = writer.stored_layers() or layer_idx  # resolved by the run that wrote the batches
        if len(todo) or isinstance(layer_idx, str):  # (old batch files do not say: load the model to resolve)
            from probe.models.loading import load_model

            t_load = time.perf_counter()
            loaded = load_model(
                spec,
                device=torch_device,
                dtype=torch_dtype,
                cache_dir=cache_dir,
                trust_remote_code=settings.trust_remote_code,
                compile=settings.compile,
            )
            load_seconds = time.perf_counter() - t_load
            if isinstance(layer_idx, str):
                layer_idx = parse_layers(layer_idx, num_states=loaded.num_states)
            select = np.asarray(layer_idx)
            workers = (
                settings.num_workers if settings.num_workers is not None else min(4, max(0, (os.cpu_count() or 1) - 1))
            )
            what = f"{spec.alias or spec.hub_id} on {data.name}"
            base = int(done.sum())
            if progress:
                progress(base, len(data), what)
            lengths = loaded.text_lengths(_texts(data, settings.prompt)) if loaded.modality == "text" else None
            plan = plan_batches(
                shard_rows,
                (settings.batch_size or MAX_BUDGET_ROWS) if settings.max_tokens else bs,
                lengths=lengths,
                max_tokens=settings.max_tokens,
            )
            if settings.max_tokens:
                bs = max((len(b) for b in plan), default=1)
                logger.info(
                    "text batches of up to %d padded tokens: %d batches of 1-%d rows",
                    settings.max_tokens,
                    len(plan),
                    bs,
                )
            encoder = _AdaptiveEncoder(loaded, pools, bs)
            # Whole batches of the fixed plan that still miss a row; their written rows are recomputed with them.
            batches = [b for b in plan if not done[b].all()]
            # The batch files are saved by a writer thread (at most WRITE_QUEUE batches waiting), so the
            # device->host copy and the write of batch k overlap the forward pass of batch k+1.
            with BackgroundWriter(writer, depth=WRITE_QUEUE) as saver:
                for rows, inputs in _iter_batches(
                    loaded, data, batches, num_workers=workers, prompt=settings.prompt, max_pixels=settings.max_pixels
                ):
                    host, ready = _to_host(encoder(inputs), select, store_dtype=settings.store_dtype)
                    saver.submit(rows, host, layers=select.tolist(), ready=ready)
                    rows_extracted += int((~done[rows]).sum())
                    if progress:
                        progress(base + rows_extracted, len(data), what)
            bs = encoder.max_batch

        from probe.provenance import provenance

        prov = provenance(
            model_identity=getattr(loaded, "identity", None),
            device=str(torch_device),
            batch_size=bs,
            max_tokens=settings.max_tokens,
            dataset_source=data.source,
            shard={"rank": shard.rank, "world": shard.world},
        )
        path = writer.assemble(
            ids=data.ids,
            image_sha256=data.image_hashes,
            caption_sha256=data.caption_hashes,
            layers=list(layer_idx),
            pools=pools,
            provenance=prov,
        )
        if path is None and shard.world == 1:
            raise ProbeError(
                f"extraction finished but {writer.dir} is missing rows (were files removed meanwhile?); re-run"
            )
        result = ExtractResult(path, key, False, len(data), rows_extracted, time.perf_counter() - t0, bs, load_seconds)
    from probe.features.rates import record_extraction

    record_extraction(cache_dir, result, device=str(torch_device))  # `probe plan` estimates from these
    return result
