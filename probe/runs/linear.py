"""`probe linear` as a library call: per-layer linear probes of a vision model's cached features, each
beside its control, for label fields, caption words, caption letters and a text model's features; results JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from probe.datasets import PairedDataset
from probe.errors import InputError
from probe.features.cache import FeatureCache
from probe.features.layers import parse_layers
from probe.features.settings import ExtractSettings
from probe.log import logger
from probe.progress import ProgressCallback
from probe.runs.inputs import ensure_cache, ensure_paired, open_dataset, split_models
from probe.runs.outputs import new_run_folder, point_latest
from probe.runs.score_cache import cached_score

WORDS = "words"
CHARS = "chars"
# Targets made from each row's caption (multi-label, probed by the ridge readout, kind "words" in results):
# `words` its frequent content words, `chars` the letters a-z it contains ("which letters are written here"
# on rendered text).
CAPTION_TARGETS = (WORDS, CHARS)


@dataclass(frozen=True)
class LinearSettings:
    """What `probe linear` probes: label fields and/or `words` / `chars`, optional cross-modal text target.
    `min_word_count` is the least number of captions a word (or letter) must occur in to be probed."""

    labels: tuple[str, ...] = ()
    text_layer: str = "-1"
    probe_layers: str = "all"
    seed: int = 0
    top_words: int = 50
    min_word_count: int = 5


@dataclass
class LinearTask:
    """One probed target over the vision layers: `sweep` is a probe.linear.sweep.LayerSweepResult whose layer
    numbers are positions in `vision.layers`; `hidden_states` maps them to hidden-state indices."""

    name: str
    kind: str
    sweep: Any
    hidden_states: list[int]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def best_state(self) -> int:
        return self.hidden_states[self.sweep.best_layer]

    def to_dict(self) -> dict[str, Any]:
        out = self.sweep.to_dict()
        for entry in out["layers"]:
            entry["hidden_state"] = self.hidden_states[entry["layer"]]
        return {"name": self.name, "kind": self.kind, "best_hidden_state": self.best_state, **self.detail, **out}


@dataclass
class LinearRun:
    """Everything a `probe linear` run produced."""

    vision: FeatureCache
    tasks: list[LinearTask]
    dataset: dict[str, Any]
    settings: LinearSettings
    results_path: Optional[Path] = None


def _digest(values: Any) -> Optional[str]:
    """sha256 of an array's dtype, shape and bytes (None for None), to key cached scores on targets."""
    import hashlib

    if values is None:
        return None
    arr = np.ascontiguousarray(
        np.asarray(values).astype(str) if np.asarray(values).dtype.kind in "OU" else np.asarray(values)
    )
    return hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()


def stored_positions(layers: Sequence[int], spec: str, *, param: str) -> list[int]:
    """Positions in `layers` (the hidden states a cache stores) selected by `spec` (InputError naming `param`).
    `probe plan` resolves the same specs against the layers a cache would store."""
    try:
        return parse_layers(spec, num_states=len(layers), param=param)
    except InputError as exc:
        raise InputError(f"{exc} (positions count the {len(layers)} stored layers {layers})") from None


def ridge_position(layers: Sequence[int], text_layer: str) -> int:
    """The one position in the text cache's stored `layers` that `text_layer` names (InputError otherwise)."""
    chosen = stored_positions(layers, text_layer, param="text_layer")
    if len(chosen) != 1:
        raise InputError(f"text_layer={text_layer!r} selects {len(chosen)} layers; name one, e.g. -1 or 16")
    return chosen[0]


def check_request(*, vision: str, labels: Sequence[str], text: Optional[str]) -> str:
    """The one vision model named by `vision`, after checking there is something to probe (InputError)."""
    names = split_models(vision, param="vision")
    if len(names) != 1:
        raise InputError(f"vision={vision!r} names {len(names)} models; linear probes take one (a study probes many)")
    if not labels and text is None:
        raise InputError(
            "nothing to probe: pass labels= (a dataset label field, 'words' or 'chars') and/or text= (a language model)"
        )
    return names[0]


TARGET_PREPROCESSING = "PRH: clamp at the mean per-row 0.95 quantile of |x| over all stored text layers, then L2 rows"


def prh_target(cache: FeatureCache, position: int) -> np.ndarray:
    """Stored text layer `position` [N, D] preprocessed as the alignment metrics see it (PRH's clamp, its level
    computed over every stored layer of the cache, then L2-normalised rows): the ridge probe's R^2 weighs
    dimensions by their variance, and a few massive-activation dims would otherwise dominate it."""
    import torch

    from probe.align.prep import clip_threshold, prepare_layer, read_layers

    layers = read_layers(cache.stack(), name=str(cache.path), device=torch.device("cpu"))
    clip = clip_threshold(layers, quantile=0.95)
    return prepare_layer(layers[position], clip=clip, normalize=True).numpy()


def label_targets(
    data: PairedDataset, name: str, settings: LinearSettings
) -> tuple[Any, Optional[list[str]], Optional[np.ndarray], dict[str, Any]]:
    """(targets, column names or None, kept row indices or None for all, description) for a label field,
    `words` or `chars`. Rows of classes too rare for a stratified train/val/test split are left out, and the
    results name them: a class with fewer rows than that cannot be probed at all."""
    from probe.linear.labels import MIN_ROWS_PER_CLASS

    if name == WORDS:
        from probe.linear.words import caption_word_targets

        data.require_captions()
        words, y = caption_word_targets(
            [c or "" for c in data.captions], top=settings.top_words, min_count=settings.min_word_count
        )
        return y, words, None, {"words": words, "positive_rate": y.mean(0).round(4).tolist()}
    if name == CHARS:
        from probe.linear.chars import caption_char_targets

        data.require_captions()
        letters, y = caption_char_targets([c or "" for c in data.captions], min_count=settings.min_word_count)
        return y, letters, None, {"letters": letters, "positive_rate": y.mean(0).round(4).tolist()}
    values = np.asarray(data.labels(name))
    classes, counts = np.unique(values, return_counts=True)
    rare = [str(c) for c, n in zip(classes, counts) if n < MIN_ROWS_PER_CLASS]
    rows = None
    if rare:
        rows = np.flatnonzero(~np.isin(values, rare))
        logger.warning(
            "label field %r: leaving out %d rows of %d classes with fewer than %d rows (%s)",
            name,
            len(values) - len(rows),
            len(rare),
            MIN_ROWS_PER_CLASS,
            ", ".join(rare),
        )
        values, counts = values[rows], counts[counts >= MIN_ROWS_PER_CLASS]
    detail = {
        "classes": int(len(counts)),
        "largest_class_fraction": float(counts.max() / counts.sum()) if len(counts) else None,
        "rows_probed": int(len(values)),
        "dropped_rare_classes": rare,
    }
    return values, None, rows, detail


def run_linear(
    *,
    vision: str,
    dataset: str | Path,
    settings: LinearSettings,
    options: ExtractSettings,
    text: Optional[str] = None,
    output: Optional[Path] = None,
    pool_vision: Optional[str] = None,
    pool_text: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> LinearRun:
    """Probe every requested layer of `vision` for each label field / `words` / `chars`, and (with `text`) ridge to that
    text model's `settings.text_layer`. Extracts missing caches; writes results JSON into a new run folder under
    `output` if given (`probe.runs.outputs`)."""
    from probe.linear.sweep import ProbeTask, probe_layers
    from probe.results import cache_input_record, write_results
    from probe.runs.checks import check_label_fields, check_run_request

    check_run_request(cache_dir=options.cache_dir, output=output)  # before any model or data
    vision_name = check_request(vision=vision, labels=settings.labels, text=text)
    data = open_dataset(dataset, options)
    check_label_fields(data, settings.labels, caption_targets=CAPTION_TARGETS)  # fails before any extraction
    vcache = ensure_cache(vision_name, data, pool=pool_vision, options=options, progress=progress, modality="vision")
    positions = stored_positions(vcache.layers, settings.probe_layers, param="layers")
    source = vcache.stack().select(positions)
    states = [vcache.layers[p] for p in positions]
    tasks: list[LinearTask] = []
    t0 = time.perf_counter()
    inputs = [vcache]
    for name in settings.labels:
        target, names, rows, detail = label_targets(data, name, settings)
        what = f"probe {name}"
        layers_in = source.take_rows(rows)
        sweep = cached_score(
            options.cache_dir,
            "linear",
            {
                "vision": vcache.key,
                "positions": positions,
                "rows": _digest(rows),
                "target": _digest(target),
                "names": names,
                "task": "labels",
                "seed": settings.seed,
            },
            lambda layers_in=layers_in, target=target, names=names, what=what: probe_layers(
                layers_in,
                task=ProbeTask.LABELS,
                target=target,
                names=names,
                seed=settings.seed,
                progress=(lambda d, t, _w: progress(d, t, what)) if progress else None,
            ),
            refresh=options.overwrite == "always",
        )
        tasks.append(LinearTask(name, "words" if name in CAPTION_TARGETS else "labels", sweep, states, detail))
    if text is not None:
        (text_name,) = split_models(text, param="text")
        tcache = ensure_cache(text_name, data, pool=pool_text, options=options, progress=progress, modality="text")
        ensure_paired([vcache, tcache])
        inputs.append(tcache)
        tpos = ridge_position(tcache.layers, settings.text_layer)
        text_name = str(tcache.key["model"]["name"])
        what = f"ridge to {text_name}"
        sweep = cached_score(
            options.cache_dir,
            "linear",
            {
                "vision": vcache.key,
                "positions": positions,
                "text": tcache.key,
                "text_position": tpos,
                "task": "crossmodal",
                "seed": settings.seed,
                "target": TARGET_PREPROCESSING,
            },
            lambda: probe_layers(
                source,
                task=ProbeTask.CROSSMODAL,
                target=prh_target(tcache, tpos),
                seed=settings.seed,
                progress=(lambda d, t, _w: progress(d, t, what)) if progress else None,
            ),
            refresh=options.overwrite == "always",
        )
        tasks.append(
            LinearTask(
                f"text:{text_name}",
                "crossmodal",
                sweep,
                states,
                {
                    "text_model": text_name,
                    "text_hidden_state": tcache.layers[tpos],
                    "target_preprocessing": TARGET_PREPROCESSING,
                },
            )
        )
    logger.info(
        "probed %d layers of %s for %d targets in %.1f s",
        len(positions),
        vision_name,
        len(tasks),
        time.perf_counter() - t0,
    )
    dataset_info = {"name": data.name, "rows": len(data), "fingerprint": data.fingerprint, "source": data.source}
    run = LinearRun(vcache, tasks, dataset_info, settings)
    if output is not None:
        run_dir = new_run_folder(output, "linear")
        run.results_path = write_results(
            run_dir,
            command="linear",
            settings={
                "linear": settings.__dict__,
                "extract": options.record(),
                "pool_vision": pool_vision,
                "pool_text": pool_text,
            },
            inputs=[cache_input_record(c) for c in inputs],
            dataset=dataset_info,
            results={"vision": vcache.key["model"]["name"], "tasks": [t.to_dict() for t in tasks]},
        )
        point_latest(Path(output), run_dir)
    return run
