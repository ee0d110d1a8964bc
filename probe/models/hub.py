"""The Hugging Face hub, seen from probe: commit lookups, config downloads, and hub errors in plain words.

huggingface_hub is imported inside each function, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.errors import ModelError


def hub_commit(hub_id: str, revision: str) -> str | None:
    """The commit hash of `hub_id` at `revision` in the local HF cache, or None when not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    except Exception:  # a malformed id or cache: the key simply lacks the commit
        return None
    # The cache lays files out as .../snapshots/<commit>/config.json.
    return Path(cached).parent.name if isinstance(cached, str) else None


def fetch_hub_config(hub_id: str, *, revision: str) -> dict[str, Any]:
    """The config.json of `hub_id` at `revision` (from the HF cache or the hub); ModelError on failure."""
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(hub_id, "config.json", revision=revision)
        return json.loads(Path(path).read_text())
    except Exception as exc:  # every hub failure becomes one actionable message
        raise ModelError(explain_hub_error(exc, hub_id=hub_id, revision=revision)) from exc


_UNREACHABLE_HINTS = (
    "offline",
    "couldn't connect",
    "could not connect",
    "cannot find the requested files",
    "connection",
)


def _error_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return chain


# Ungated copies of gated checkpoints, by the gated hub id (lower case) -> the registered alias of the copy.
# Kept here rather than looked up in the registry, which imports this module.
_UNGATED_MIRRORS = {"meta-llama/meta-llama-3-8b": ("llama3-8b-nous", "NousResearch/Meta-Llama-3-8B")}


def _ungated_mirror_hint(hub_id: str) -> str:
    """A sentence naming the registered ungated mirror for a gated meta-llama id, or "" for other ids."""
    if not hub_id.lower().startswith("meta-llama/"):
        return ""
    alias, mirror = _UNGATED_MIRRORS["meta-llama/meta-llama-3-8b"]
    if hub_id.lower() in _UNGATED_MIRRORS:
        return f" Without a token, use `{alias}` ({mirror}, an ungated mirror of the same weights, the copy PRH used)."
    return f" For Meta-Llama-3-8B (PRH's model), `{alias}` ({mirror}) is an ungated mirror that needs no token."


def explain_hub_error(exc: BaseException, *, hub_id: str, revision: str) -> str:
    """One actionable sentence for a failed hub download or `from_pretrained` of `hub_id`.

    Walks the exception's cause chain for huggingface_hub's error types (transformers re-raises
    them as OSError) and falls back to the message text.
    """
    names = {type(e).__name__ for e in _error_chain(exc)}
    text = " ".join(str(e) for e in _error_chain(exc)).lower()
    if "GatedRepoError" in names or "gated" in text:
        return (
            f"model {hub_id!r} is gated: accept its license at https://huggingface.co/{hub_id}, log in "
            "(`hf auth login` or set HF_TOKEN), or pass a local folder as model=." + _ungated_mirror_hint(hub_id)
        )
    if "RevisionNotFoundError" in names:
        return f"revision {revision!r} does not exist for {hub_id!r}: check revision=."
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectionError"} or any(
        hint in text for hint in _UNREACHABLE_HINTS
    ):
        return (
            f"model {hub_id!r} (revision {revision}) is not cached locally and the hub is unreachable: "
            "download it on a machine with access or pass a local folder as model=."
        )
    if "RepositoryNotFoundError" in names:
        return f"no model {hub_id!r} on the hub (or it is private): check the name; `probe models` lists known ones."
    if "EntryNotFoundError" in names or "RemoteEntryNotFoundError" in names:
        return f"model {hub_id!r} has no config.json at revision {revision}: is it a transformers checkpoint?"
    return f"cannot load model {hub_id!r} (revision {revision}): {exc}"
