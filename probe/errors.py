"""Project exceptions.

Every error a user can cause (bad flag, bad file, unknown model) is a `ProbeError` whose message says what
is wrong and what to do. The CLI prints it as one red line and exits with code 2; `--debug` shows the
traceback.
"""

from __future__ import annotations


class ProbeError(Exception):
    """An error the user can act on. The message names the file or flag and the fix."""


class InputError(ProbeError):
    """Bad user input: a flag value, a manifest, an image, a dataset path."""


class ModelError(ProbeError):
    """A model that cannot be found or loaded."""


class CacheError(ProbeError):
    """A feature cache that is missing, incomplete, corrupt or not paired with another."""
