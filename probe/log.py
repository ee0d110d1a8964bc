"""The project's one named logger. Library code logs through `logger`, never `print`."""

from __future__ import annotations

import logging

logger = logging.getLogger("probe")
