"""The one model-name service: how a name the user typed becomes a `ModelSpec`, and what kind of name it is.

In: a name as typed (a registered alias or shortcut, a hub id `owner/name`, a local folder, or
`random-init:<any of those>`). Out: its spec (`resolve_model`), the registered spec if any (`registered`),
the registered specs (`all_specs`, `list_models`), close names (`suggest`), the checkpoint a text-filtered one
was compared with (`unfiltered_twin`), and the predicates every other module asks instead of parsing names
itself: `split_twin`, `is_hub_id`, `is_control`, `hub_only`.

Registered specs are `probe.models.table`; unregistered hub ids and folders get a spec inferred from their
config.json (`probe.models.spec.spec_from_config`). This module imports only the standard library;
`huggingface_hub` is imported (through `probe.models.hub`) only to fetch the config.json of an unregistered
hub id.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from dataclasses import replace
from pathlib import Path

from probe.errors import InputError, ModelError
from probe.models.spec import ModelSpec, random_twin, spec_from_config
from probe.models.table import FILTERED_DATA, SPECS

# `random-init:<model>` names the random-weights twin of <model> (see `probe.models.spec.random_twin`).
RANDOM_INIT_PREFIX = "random-init:"

# A hub id is exactly "owner/name"; anything with more slashes, or starting like a path, is a folder.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


def _build_index(specs: tuple[ModelSpec, ...]) -> tuple[dict[str, ModelSpec], dict[str, ModelSpec]]:
    """Name (alias or shortcut, lower case) -> spec, and hub id (lower case) -> spec for hub-sourced models."""
    by_name: dict[str, ModelSpec] = {}
    by_hub: dict[str, ModelSpec] = {}
    for spec in specs:
        for name in (spec.alias, *spec.shortcuts):
            if name.lower() in by_name:
                raise ValueError(f"model name {name!r} is registered twice")
            by_name[name.lower()] = spec
        # Package copies are not the hub weights (smollm2 is quantised), so a hub id never maps to them.
        if spec.source == "hub" and spec.hub_id:
            if spec.hub_id.lower() in by_hub:
                raise ValueError(f"hub id {spec.hub_id!r} is registered twice")
            by_hub[spec.hub_id.lower()] = spec
    return by_name, by_hub


_BY_NAME, _BY_HUB = _build_index(SPECS)


def split_twin(name: str) -> tuple[str, str]:
    """(`RANDOM_INIT_PREFIX`, base) for `random-init:<base>` (the prefix in any case), else ("", name); both
    the name and the base are stripped of surrounding spaces."""
    key = name.strip()
    if key.lower().startswith(RANDOM_INIT_PREFIX):
        return RANDOM_INIT_PREFIX, key[len(RANDOM_INIT_PREFIX) :].strip()
    return "", key


def registered(name: str) -> ModelSpec | None:
    """The registered spec whose alias, shortcut or hub id is `name` (case-insensitive), or None. No network."""
    key = name.strip().lower()
    return _BY_NAME.get(key) or _BY_HUB.get(key)


def is_hub_id(name: str) -> bool:
    """True when `name` has the form of a hub id, exactly "owner/name" (registered or not). No network."""
    return _HUB_ID.fullmatch(name) is not None


def hub_only(name: str) -> bool:
    """True for a hub id, or the twin of one, that is neither registered nor an existing path: only the hub
    has its config.json, so its spec (sizes, modality) is not known offline."""
    _, base = split_twin(name)
    return registered(base) is None and not Path(base).expanduser().exists() and is_hub_id(base)


def is_control(name: str) -> bool:
    """True for a control's name: any `random-init:` twin, or a registered model whose spec is a control
    (`ModelSpec.control`: a pixels control such as `pixels-16`, a registered twin such as `tiny-random-vit`).
    Case-insensitive like `registered`; an unregistered name, folder or hub id is not a control. No network."""
    prefix, base = split_twin(name)
    if prefix:
        return True
    spec = registered(base)
    return spec is not None and spec.control


def _architecture(spec: ModelSpec) -> tuple[object, ...]:
    """What two checkpoints share when they differ only in their training data: family, architecture and sizes."""
    return (spec.family, spec.arch, spec.params_m, spec.hidden_size, spec.num_layers, spec.patch_size, spec.image_size)


def unfiltered_twin(name: str) -> ModelSpec | None:
    """The registered model that `name` (a registered name, not a control) is the filtered-data version of: the
    same family, architecture and sizes, trained on the data `name`'s training data was filtered from
    (`probe.models.table.FILTERED_DATA`: `webssl-dino2b-heavy2b-224` -> `webssl-dino2b-full2b-224`). None for
    any other name: unregistered, a control, trained on data that is no filtered subset, or without such a
    twin in the registry. No network."""
    prefix, base = split_twin(name)
    spec = None if prefix else registered(base)
    whole = FILTERED_DATA.get(spec.training_data) if spec is not None and not spec.control else None
    if spec is None or whole is None:
        return None
    twins = [s for s in SPECS if s.training_data == whole and not s.control and _architecture(s) == _architecture(spec)]
    return twins[0] if len(twins) == 1 else None


def all_specs() -> tuple[ModelSpec, ...]:
    """Every registered spec, in table order."""
    return SPECS


def _sort_key(spec: ModelSpec) -> tuple[int, float, str]:
    params = spec.params_m if spec.params_m is not None else float("inf")
    return (0 if spec.modality == "vision" else 1, params, spec.alias)


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Registered specs whose alias, a shortcut, or hub id matches `pattern`.

    `pattern` is an fnmatch pattern (case-insensitive; `webssl*`, `*llama*`); a pattern with no
    wildcard matches as a substring. None lists everything. Sorted by modality (vision first), then
    parameters (unknown last), then alias.
    """
    if pattern:
        pat = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
    specs = [
        spec
        for spec in SPECS
        if not pattern
        or any(fnmatch.fnmatchcase(name.lower(), pat) for name in (spec.alias, *spec.shortcuts, spec.hub_id or ""))
    ]
    return sorted(specs, key=_sort_key)


def suggest(name: str, *, limit: int = 3) -> list[str]:
    """Registered names (aliases, shortcuts, hub ids) close to `name`, best first.

    A name is scored by its similarity to `name` both whole and cut to `name`'s length, so a name
    typed short ("webssl-dino1b") or with a typo in its start ("dinov3") still finds its family.
    """
    names = [spec.alias for spec in SPECS] + [s for spec in SPECS for s in spec.shortcuts]
    names += [spec.hub_id for spec in SPECS if spec.hub_id and spec.source == "hub"]
    query = name.lower()
    if not query:
        return []

    def score(candidate: str) -> float:
        lowered = candidate.lower()
        whole = difflib.SequenceMatcher(None, query, lowered).ratio()
        start = difflib.SequenceMatcher(None, query, lowered[: len(query)]).ratio()
        return max(whole, start)

    scored = sorted(((score(n), len(n), n) for n in names), key=lambda t: (-t[0], t[1], t[2]))
    return [n for best, _, n in scored if best >= 0.6][:limit]


def unknown_model_message(name: str, *, prefix: str = "") -> str:
    """The message for a name that is neither a registered model, a hub id, nor a folder.

    `prefix` (e.g. "random-init:") is what the user typed before `name`; suggestions carry it too.
    """
    hints = suggest(name)
    did_you_mean = f" Did you mean {', '.join(repr(prefix + h) for h in hints)}?" if hints else ""
    return (
        f"unknown model {prefix + name!r}.{did_you_mean} Run `probe models` for the registered names, "
        f"or pass {prefix}<hub id (owner/name)> or {prefix}<a local folder with a config.json>."
    )


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name in (".", "..")
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or (len(name) > 1 and name[1] == ":")  # a Windows drive
    )


def resolve_model(name: str, *, revision: str | None = None, seed: int | None = None) -> ModelSpec:
    """Turn a registered alias or shortcut, a hub id, a local folder, or `random-init:<any of those>`
    into a `ModelSpec`.

    Registered names and hub ids are matched case-insensitively; a registered hub id returns its
    registered spec. An unregistered hub id gets a spec inferred from its config.json (fetched from
    the hub or the HF cache); a folder gets one inferred from the config.json inside. `revision`
    replaces the spec's revision (a branch, tag or commit; for a random-init twin, its base's).
    `random-init:<model>` gives <model>'s random twin (`random_twin`; a registered twin such as
    `tiny-random-vit` when there is one); `seed` (default: the spec's own, 0) sets its weights' seed.
    Raises `ModelError` for an unknown name (with suggestions), a folder that does not exist or has
    no config.json, or an unsupported `model_type`; `InputError` for a seed given to a trained model.
    """
    prefix, key = split_twin(name)
    if prefix:
        return with_seed(_resolve_twin(key, revision=revision), seed)
    if not key:
        raise ModelError("empty model name: pass model= with an alias (see `probe models`), a hub id or a folder.")
    spec = registered(key)
    if spec is None:
        path = Path(key).expanduser()
        if path.exists():
            spec = spec_from_folder(path)
        elif _looks_like_path(key):
            raise ModelError(f"model folder {key!r} does not exist: check the model= path.")
        elif is_hub_id(key):
            from probe.models.hub import fetch_hub_config  # imports huggingface_hub: only for unknown ids

            spec = spec_from_config(fetch_hub_config(key, revision=revision or "main"), alias=key, hub_id=key)
        else:
            raise ModelError(unknown_model_message(key))
    if revision:
        spec = replace(spec, revision=revision, base=replace(spec.base, revision=revision) if spec.base else None)
    return with_seed(spec, seed)


def _resolve_twin(base_name: str, *, revision: str | None) -> ModelSpec:
    """The random-init twin of `base_name` (seed 0): a registered twin of the same base if there is one.
    ModelError for an unknown base, or one with no trained weights to replace (a twin, a pixels control)."""
    if not base_name:
        raise ModelError(
            f"{RANDOM_INIT_PREFIX!r} needs a model after the colon, e.g. {RANDOM_INIT_PREFIX}dinov2-small."
        )
    if registered(base_name) is None:
        path = Path(base_name).expanduser()
        if not path.exists() and not _looks_like_path(base_name) and not is_hub_id(base_name):
            raise ModelError(unknown_model_message(base_name, prefix=RANDOM_INIT_PREFIX))
    base = resolve_model(base_name, revision=revision)
    if base.control:
        what = "already has random weights" if base.source == "random-init" else "has no weights to re-initialise"
        raise ModelError(
            f"model {base.alias!r} {what}: give {RANDOM_INIT_PREFIX} a trained model (see `probe models`)."
        )
    twin = random_twin(base, alias=f"{RANDOM_INIT_PREFIX}{base.alias}")
    return next((s for s in SPECS if s.base == base and s.seed == twin.seed), twin)


def with_seed(spec: ModelSpec, seed: int | None) -> ModelSpec:
    """`spec` with its random-init weights drawn from `seed` (None keeps it). InputError for a trained model."""
    if seed is None or spec.seed == seed:
        return spec
    if spec.base is None:
        raise InputError(
            f"seed={seed} applies to random-init models only, and {spec.alias!r} is not one: "
            f"drop seed=, or use {RANDOM_INIT_PREFIX}{spec.alias}."
        )
    return replace(spec, seed=int(seed))


def spec_from_folder(folder: Path) -> ModelSpec:
    """A spec for a local checkpoint folder, inferred from its config.json. ModelError if unusable."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ModelError(f"model path {str(folder)!r} is a file: model= needs a folder with a config.json.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelError(f"model folder {str(folder)!r} has no config.json: is it a transformers checkpoint?")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {config_path}: {exc}") from exc
    return spec_from_config(config, alias=folder.name, hub_id=None, local_path=str(folder))
