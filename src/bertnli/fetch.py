"""Fetch a published file into a local cache, verified, and reuse it without the network afterwards.

Processes fetching one file at once take turns, so it is downloaded once. A download streams to a
``<file>.*.part`` of its own with a progress bar, is checked against the checksum its publisher
gives where there is one, and is renamed into place only then. Next to each file goes ``<file>.sha256``
(``sha256sum`` format), the record of what was fetched: where no checksum is published, a cached file that
differs from it (a copy put there by hand) is used as it is, named in a warning. Nothing in the cache is
ever deleted: a file that fails its published checksum is set aside. Every failure is one `DownloadError`
line that ends with how to do without the download.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertnli import __version__
from bertnli.errors import BertnliWarning, DownloadError
from bertnli.paths import FILE_MODE, owner, remove_dead_leftovers, write_text
from bertnli.progress import progress_bar

#: Seconds to wait for the server to connect or send more data.
TIMEOUT = 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checksum:
    """A published digest: ``algorithm`` is a `hashlib` name (md5, sha1, sha256), ``hexdigest`` its value."""

    algorithm: str
    hexdigest: str


def fetch(url: str, dest: Path, *, checksum: Checksum | None, fallback: str, progress: bool = True) -> Path:
    """``dest``, downloaded from ``url`` unless a copy that passes its check is already there.
    ``fallback`` ends every error message: how to do without the download."""
    if dest.is_file() and _passes(dest, checksum):  # moves nothing: several processes may look at once
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {dest.parent} ({e.strerror})") from None
    with _one_at_a_time(dest) as held:
        if dest.is_file() and _passes(dest, checksum):  # fetched by another process while this one waited
            return dest
        if held:
            if dest.is_file() and checksum:  # it failed the check above
                _set_aside(dest, checksum)
            remove_dead_leftovers(dest.parent, f"{glob.escape(dest.name)}.*.part")
        # A file of this process's own, even so: where no lock can be taken, several may fetch at once.
        fd, name = tempfile.mkstemp(prefix=f"{dest.name}.{owner()}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        part = Path(name)
        try:
            digests = _download(url, part, checksum, progress and dest.name, fallback)
            if checksum and digests[checksum.algorithm] != checksum.hexdigest.lower():
                raise DownloadError(
                    f"checksum mismatch for {url}: expected {checksum.algorithm} {checksum.hexdigest}, "
                    f"got {digests[checksum.algorithm]}; the file was removed. {fallback}"
                )
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.chmod(part, FILE_MODE)
        os.replace(part, dest)  # another process's identical copy, if it came first, is replaced whole
        _record(dest, digests["sha256"])
    return dest


@contextlib.contextmanager
def _one_at_a_time(dest: Path) -> Iterator[bool]:
    """Processes that fetch ``dest`` at once (torchrun's ranks) take turns: the first downloads, the others
    wait and then find it in place. Yields whether the turn is held: without a lock (a read-only folder)
    each fetches its own, as on Windows, which has no `fcntl`."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    lock = dest.with_name(f".{dest.name}.lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, FILE_MODE)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still held: a process that waits on it finds the file, one that comes later too
        os.close(fd)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _record(path: Path, sha256: str) -> None:
    """Write ``<file>.sha256``, whole or not at all; best effort, since a read-only (or full) cache still serves
    its files."""
    with contextlib.suppress(OSError):
        write_text(_sidecar(path), f"{sha256}  {path.name}\n")


def _hashers(checksum: Checksum | None) -> dict[str, Any]:
    """sha256's hasher, and the published algorithm's."""
    names = {"sha256", checksum.algorithm} if checksum else {"sha256"}
    return {name: hashlib.new(name, usedforsecurity=False) for name in names}


def _digests(path: Path, checksum: Checksum | None) -> dict[str, str]:
    hashers = _hashers(checksum)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _passes(path: Path, checksum: Checksum | None) -> bool:
    """Whether a cached file may be used: it matches its published checksum; without one, any file does (a
    copy put there by hand included). A file whose sha256 is not the one recorded when it was fetched (or
    that has no record) is recorded anew, and one that replaced the fetched copy is named in a warning."""
    digests = _digests(path, checksum)
    if checksum:
        return digests[checksum.algorithm] == checksum.hexdigest.lower()
    recorded = _recorded(_sidecar(path))
    if recorded != digests["sha256"]:
        if recorded is not None:
            warnings.warn(f"{path} is not the copy fetched earlier (its sha256 differs): using it as it is",
                          BertnliWarning, stacklevel=3)
        _record(path, digests["sha256"])
    return True


def _set_aside(path: Path, checksum: Checksum) -> None:
    """Keep a cached file that fails its published checksum under a name of its own, ``<file>.rejected``
    (``.rejected.2``, ...), with a warning: it is fetched again, and nothing is deleted."""
    aside = path.with_name(path.name + ".rejected")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.rejected.{number}")
    os.replace(path, aside)
    _sidecar(path).unlink(missing_ok=True)
    warnings.warn(f"{path} does not match its published {checksum.algorithm} checksum: set aside as {aside.name}, "
                  "to be fetched again", BertnliWarning, stacklevel=3)


def _recorded(sidecar: Path) -> str | None:
    """The sha256 in ``<file>.sha256``; None where there is none to read."""
    try:
        words = sidecar.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words and len(words[0]) == 64 else None


def _download(url: str, part: Path, checksum: Checksum | None, progress: str | bool, fallback: str
              ) -> dict[str, str]:
    """Stream ``url`` into ``part``, with a progress bar titled ``progress`` (False: none); returns its sha256 and
    published-algorithm digests."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"bertnli/{__version__}"})
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}. {fallback}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not reach {url} ({reason}). {fallback}") from None
    hashers = _hashers(checksum)
    size, total = 0, int(response.headers.get("Content-Length") or 0) or None
    with (
        response,
        part.open("wb") as out,
        progress_bar(
            enabled=bool(progress), total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=progress or None
        ) as bar,
    ):
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"the download of {url} failed ({e}). {fallback}") from None
    if total is not None and size != total:
        raise DownloadError(f"the download of {url} stopped at {size:,} of {total:,} bytes. {fallback}")
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}
