"""probe: how much language-related structure emerges in vision models trained without text.

The pipeline reads one way: dataset -> model -> features (HDF5 cache) -> metrics / probes -> results JSON
-> report. Submodules are imported on demand so that `import probe` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

from probe.errors import CacheError, InputError, ModelError, ProbeError

__all__ = ["__version__", "ProbeError", "InputError", "ModelError", "CacheError"]
