"""Where bertnli keeps files of its own (one cache root, ``$BERTNLI_CACHE`` or ``~/.cache/bertnli``), and how
it writes files: whole or not at all."""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Files being written start with this; one left behind was cut off by a crash.
TEMPORARY_PREFIX = ".tmp-"
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())
_OWNER_IN_NAME = re.compile(r"@([A-Za-z0-9_]+)~(\d+)~(\d+)@")
#: Whether `os.kill` with signal 0 asks if a process runs. On Windows it would send Ctrl-C instead.
_CAN_PROBE_PROCESSES = os.name == "posix"


def _pid_namespace() -> int:
    """Which process ids this process sees (containers on one host may share its name, not their ids)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner() -> str:
    """This process, as the names of the temporary files and folders it writes carry it
    (``@host~pid-namespace~pid@``): what a process that is gone left behind, the next writer of the same
    path clears (`remove_dead_leftovers`)."""
    return f"@{_HOST}~{_pid_namespace()}~{os.getpid()}@"


def cache_root() -> Path:
    """Downloaded datasets live in ``data/``, downloaded checkpoints in ``models/``, encoded datasets in
    ``encoded/`` below this folder."""
    return Path(os.environ.get("BERTNLI_CACHE") or Path.home() / ".cache" / "bertnli")


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


#: The permissions a new file gets from open(): read-write for all, less the process's umask.
FILE_MODE = 0o666 & ~_umask()
#: The permissions a new folder gets from mkdir (temporary folders are owner-only instead).
DIR_MODE = 0o777 & ~_umask()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename the result over ``path``: readers never see half a file, and a
    crash or Ctrl-C leaves the previous version in place. A file written anew keeps the permissions of the
    one it replaces; a new one gets the usual ones (0644 under the common umask), not the owner-only ones of
    a temporary file. A symbolic link stays one: the file it points to is replaced. A stream (`is_stream`:
    a pipe, a device, ``/dev/stdout``) is written directly, as it cannot be replaced."""
    if is_stream(path):
        write(path)
        return
    path = path.resolve() if path.is_symlink() else path
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file stands where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else FILE_MODE
    remove_dead_leftovers(path.parent, f"{TEMPORARY_PREFIX}{glob.escape(path.name)}.*")
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.{owner()}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_dead_leftovers(folder: Path, pattern: str, *, any_owner: bool = False) -> list[Path]:
    """Delete what matches ``pattern`` (a glob) in ``folder`` and was written by a process of this machine
    that is gone (``any_owner``: by any process, for a caller that knows them all gone); names without an
    `owner` mark are never touched. Returns what went."""
    gone = [path for path in folder.glob(pattern)
            if left_by_dead_process(path.name) or (any_owner and _OWNER_IN_NAME.search(path.name))]
    for path in gone:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return gone


def left_by_dead_process(name: str) -> bool:
    """Whether ``name`` carries the `owner` of a process of this machine that no longer runs (never, where
    that cannot be asked safely: such leftovers stay)."""
    found = _OWNER_IN_NAME.search(name)
    if not _CAN_PROBE_PROCESSES or found is None or (found[1], int(found[2])) != (_HOST, _pid_namespace()):
        return False  # another machine's or container's: whether it runs cannot be told from here
    try:
        os.kill(int(found[3]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def is_stream(path: Path) -> bool:
    """Whether ``path`` is written as a stream rather than replaced: anything under /dev or /proc
    (``/dev/stdout`` leads to whatever standard output is, a file included), a pipe, a device."""
    if Path(os.path.abspath(path)).parts[1:2] in (("dev",), ("proc",)):
        return True
    return path.exists() and not path.is_file() and not path.is_dir()


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; to a stream (`is_stream`), appended as it comes, so that
    ``--output /dev/stdout`` with standard output sent to a file (``>> log``) keeps what the file held."""
    if is_stream(path):
        with path.open("a", encoding="utf-8") as stream:
            stream.write(text)
        return
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
