"""Where bertnli keeps files of its own (one cache root, ``$BERTNLI_CACHE`` or ``~/.cache/bertnli``), and how
it writes files: whole or not at all."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """Downloads live in ``data/``, encoded datasets in ``encoded/`` below this folder."""
    return Path(os.environ.get("BERTNLI_CACHE") or Path.home() / ".cache" / "bertnli")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename the result over ``path``: readers never see half a file, and a
    crash or Ctrl-C leaves the previous version in place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file stands where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
