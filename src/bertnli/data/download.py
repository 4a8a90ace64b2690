"""Download public NLI datasets into a local cache, verified and reused.

A download streams to ``<file>.part``, is checked against the published md5 where one is known, and is
renamed into place only then. Next to each file goes ``<file>.sha256`` (``sha256sum`` format): where no
checksum is published (MultiNLI, RTE, SICK) it is what later reuses are checked against.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bertnli import __version__
from bertnli.errors import DownloadError
from bertnli.paths import cache_root

#: Seconds to wait for the server to connect or send more data.
TIMEOUT = 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteDataset:
    """Where a dataset is published, the archive members that hold its splits, and how to do without."""

    url: str
    filename: str
    splits: Mapping[str, str]
    local_example: str
    md5: str | None = None


DATASETS: dict[str, RemoteDataset] = {
    "snli": RemoteDataset(
        "https://nlp.stanford.edu/projects/snli/snli_1.0.zip",
        "snli_1.0.zip",
        {s: f"snli_1.0/snli_1.0_{s}.jsonl" for s in ("train", "dev", "test")},
        "--train path/to/snli_1.0_train.jsonl",
        md5="981c3df556bbaea3f17f752456d0088c",
    ),
    "mnli": RemoteDataset(
        "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip",
        "multinli_1.0.zip",
        {s: f"multinli_1.0/multinli_1.0_{s}.jsonl" for s in ("train", "dev_matched", "dev_mismatched")},
        "--train path/to/multinli_1.0_train.jsonl",
    ),
    "rte": RemoteDataset(
        "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
        "RTE.zip",
        {s: f"RTE/{s}.tsv" for s in ("train", "dev", "test")},
        "--train path/to/RTE/train.tsv",
    ),
    # One file; its SemEval_set column (TRAIN / TRIAL / TEST) tells the splits apart.
    "sick": RemoteDataset(
        "https://zenodo.org/records/2787612/files/SICK.zip",
        "SICK.zip",
        {s: "SICK.txt" for s in ("train", "trial", "test")},
        "--train path/to/SICK.txt",
    ),
}


def data_cache_dir() -> Path:
    """``$BERTNLI_CACHE/data``, or ``~/.cache/bertnli/data``."""
    return cache_root() / "data"


def remote_dataset(name: str) -> RemoteDataset:
    """The registry entry for ``name``; DownloadError naming the known ones otherwise."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_splits(name: str) -> dict[str, str]:
    """Split name → the archive member that holds it."""
    return dict(remote_dataset(name).splits)


def cached_path(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The downloaded archive of ``name`` if it is in the cache, else None. Never touches the network."""
    path = Path(cache_dir or data_cache_dir()) / remote_dataset(name).filename
    return path if path.is_file() else None


def download(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch dataset ``name`` into ``cache_dir`` (default `data_cache_dir`) and return the archive's path.

    A cached file that passes its check is reused without any network access. ``url`` and ``md5``
    override the registry's. Raises DownloadError when the server cannot be reached, answers with an
    error, or the checksum does not match (the bad file is removed).
    """
    entry = remote_dataset(name)
    folder = Path(cache_dir or data_cache_dir())
    dest, expected = folder / entry.filename, md5 or entry.md5
    if dest.is_file() and _still_valid(dest, expected):
        return dest
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {folder} ({e.strerror})") from None
    part = dest.with_name(dest.name + ".part")
    source = url or entry.url
    fallback = (
        f"Download it yourself and put {entry.filename} in {folder}, "
        f"or pass local files instead ({entry.local_example})."
    )
    try:
        got_md5, got_sha256 = _fetch(source, part, progress, fallback)
        if expected and got_md5 != expected.lower():
            raise DownloadError(
                f"checksum mismatch for {source}: expected md5 {expected}, got {got_md5}; "
                f"the file was removed. {fallback}"
            )
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    _record(dest, got_sha256)
    return dest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _record(path: Path, sha256: str) -> None:
    """Write ``<file>.sha256``; best effort, since a read-only cache still serves its files."""
    with contextlib.suppress(OSError):
        _sidecar(path).write_text(f"{sha256}  {path.name}\n")


def _digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _still_valid(path: Path, md5: str | None) -> bool:
    """Check a cached file against the md5, else against its recorded sha256; remove it if it fails.

    A file put in the cache by hand with no record is accepted, and its sha256 recorded.
    """
    got_md5, got_sha256 = _digests(path)
    sidecar = _sidecar(path)
    if md5:
        ok = got_md5 == md5.lower()
    elif sidecar.is_file():
        ok = sidecar.read_text().split()[:1] == [got_sha256]
    else:
        ok = True
    if ok and not sidecar.is_file():
        _record(path, got_sha256)
    elif not ok:
        path.unlink()
        sidecar.unlink(missing_ok=True)
    return ok


def _fetch(url: str, part: Path, progress: bool, fallback: str) -> tuple[str, str]:
    """Stream ``url`` into ``part`` with a progress bar; returns its (md5, sha256)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"bertnli/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}. {fallback}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not reach {url} ({reason}). {fallback}") from None
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    total = int(response.headers.get("Content-Length") or 0) or None
    with (
        response,
        part.open("wb") as out,
        tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5], disable=not progress
        ) as bar,
    ):
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"the download of {url} failed ({e}). {fallback}") from None
    if total is not None and size != total:
        raise DownloadError(f"the download of {url} stopped at {size:,} of {total:,} bytes. {fallback}")
    return md5.hexdigest(), sha256.hexdigest()
