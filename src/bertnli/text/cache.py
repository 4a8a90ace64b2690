"""Encoded datasets cached on disk, keyed by the content of the data, the tokenizer and max_len.

A second run over the same data starts training at once: the arrays are memory-mapped, not re-encoded.
Entries are written to a temporary folder and renamed into place, so a crash never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bertnli.paths import DIR_MODE, cache_root, owner, remove_dead_leftovers
from bertnli.text.pairs import EncodedPairs, encode_pairs
from bertnli.text.tokenizers import Tokenizer

ARRAYS = ("token_ids", "segments", "valid_lens")


def default_cache_dir() -> Path:
    return cache_root() / "encoded"


def text_record(*texts: str) -> bytes:
    """The texts joined so that no other texts give the same bytes (each one prefixed by its length)."""
    return "".join(f"{len(text)}:{text}" for text in texts).encode()


def cache_key(premises: list[str], hypotheses: list[str], tokenizer: Tokenizer, max_len: int,
              tokenised: bool = False) -> str:
    read_as = "\ntokenised" if tokenised else ""  # absent for raw text: earlier entries keep their keys
    digest = hashlib.sha256(f"{tokenizer.fingerprint()}\n{max_len}\n{len(premises)}{read_as}\n".encode())
    for premise, hypothesis in zip(premises, hypotheses):
        digest.update(text_record(premise, hypothesis))
    return digest.hexdigest()[:32]


def encode_cached(
    tokenizer: Tokenizer,
    premises: list[str],
    hypotheses: list[str],
    max_len: int,
    cache_dir: Path | None = None,
    tokenised: bool = False,
) -> EncodedPairs:
    """`encode_pairs`, but read from / written to ``cache_dir`` (default ``$BERTNLI_CACHE/encoded``)."""
    root = cache_dir or default_cache_dir()
    entry = root / cache_key(premises, hypotheses, tokenizer, max_len, tokenised)
    if all((entry / f"{name}.npy").is_file() for name in ARRAYS):
        return EncodedPairs(*(np.load(entry / f"{name}.npy", mmap_mode="r") for name in ARRAYS))
    pairs = encode_pairs(tokenizer, premises, hypotheses, max_len, tokenised)
    staging = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_dead_leftovers(root, ".staging-*")
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{owner()}", dir=root))
        os.chmod(staging, DIR_MODE)  # readable by every user of a shared cache, as a plain mkdir would be
        for name in ARRAYS:
            np.save(staging / f"{name}.npy", getattr(pairs, name))
        os.replace(staging, entry)
    except OSError:  # a read-only or full disk, or another process won the race: costs speed, never the run
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return pairs
