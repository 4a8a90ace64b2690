"""Where bertnli keeps files of its own: one cache root, ``$BERTNLI_CACHE`` or ``~/.cache/bertnli``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Downloads live in ``data/``, encoded datasets in ``encoded/`` below this folder."""
    return Path(os.environ.get("BERTNLI_CACHE") or Path.home() / ".cache" / "bertnli")
