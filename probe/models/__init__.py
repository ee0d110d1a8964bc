"""Models: the registry of specs, where their weights come from, and loading them for extraction.

`spec` holds the frozen `ModelSpec` and its loader kinds, `table` the registered specs, `names` the one name
service (a name -> its spec; is it registered, a hub id, a control), `hub` the hub's commits, configs and errors,
`sources` where a spec's weights live (hub, folder, package, repo data, a random-init twin's base) and their
fingerprint, `pixels` the pixel controls (`PixelControl`, no network), `loading` the transformers model and
processor behind a spec (`LoadedModel`). `load_model` is imported on first use:
it pulls in torch and transformers.
"""

from typing import Any

from probe.models.names import list_models, resolve_model
from probe.models.spec import ModelSpec

__all__ = ["ModelSpec", "list_models", "load_model", "resolve_model"]


def __getattr__(name: str) -> Any:
    if name in ("load_model", "LoadedModel"):
        from probe.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'probe.models' has no attribute {name!r}")
