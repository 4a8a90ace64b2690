"""Download public NLI datasets into a local cache, verified and reused (see `bertnli.fetch`).

SNLI publishes an md5; for the others (MultiNLI, RTE, SICK) the sha256 recorded at the first download is what
later reuses are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bertnli.errors import DownloadError
from bertnli.fetch import Checksum, fetch
from bertnli.paths import cache_root


@dataclass(frozen=True)
class RemoteDataset:
    """Where a dataset is published, the archive members that hold its splits, the split that validates a
    model trained on its train split, and how to do without the download."""

    url: str
    filename: str
    splits: Mapping[str, str]
    validation: str
    local_example: str
    md5: str | None = None


DATASETS: dict[str, RemoteDataset] = {
    "snli": RemoteDataset(
        "https://nlp.stanford.edu/projects/snli/snli_1.0.zip",
        "snli_1.0.zip",
        {s: f"snli_1.0/snli_1.0_{s}.jsonl" for s in ("train", "dev", "test")},
        "dev",
        "path/to/snli_1.0_train.jsonl",
        md5="981c3df556bbaea3f17f752456d0088c",
    ),
    "mnli": RemoteDataset(
        "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip",
        "multinli_1.0.zip",
        {s: f"multinli_1.0/multinli_1.0_{s}.jsonl" for s in ("train", "dev_matched", "dev_mismatched")},
        "dev_matched",
        "path/to/multinli_1.0_train.jsonl",
    ),
    "rte": RemoteDataset(
        "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
        "RTE.zip",
        {s: f"RTE/{s}.tsv" for s in ("train", "dev", "test")},
        "dev",
        "path/to/RTE/train.tsv",
    ),
    # One file; its SemEval_set column (TRAIN / TRIAL / TEST) tells the splits apart.
    "sick": RemoteDataset(
        "https://zenodo.org/records/2787612/files/SICK.zip",
        "SICK.zip",
        {s: "SICK.txt" for s in ("train", "trial", "test")},
        "trial",
        "path/to/SICK.txt",
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
    expected = md5 or entry.md5
    fallback = (
        f"Download it yourself and put {entry.filename} in {folder}, "
        f"or pass local files instead, such as {entry.local_example}."
    )
    return fetch(url or entry.url, folder / entry.filename, checksum=Checksum("md5", expected) if expected else None,
                 fallback=fallback, progress=progress)
