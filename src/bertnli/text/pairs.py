"""Lay out premise–hypothesis pairs as ``<cls> premise <sep> hypothesis <sep>``, one pair a row — vectorised
over all pairs. (Several pairs a row is `bertnli.text.packing`.)

Truncation follows d2l: while ``len(p) + len(h) > max_len - 3``, drop the last token of the longer one
(the hypothesis when equal). Segment 0 covers <cls>, the premise and the first <sep>; segment 1 the
hypothesis and the last <sep>. The loop has a closed form (see `truncated_lengths`), so 550k pairs
need no Python loop at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from bertnli.text.tokenizers import Tokenizer


@dataclass
class EncodedPairs:
    """Encoded pairs, one a row: ``token_ids`` and ``segments`` (pairs, width) padded to the longest pair,
    ``valid_lens`` (pairs,) the length of each pair with its special tokens, and ``truncated`` (pairs,)
    whether a pair lost tokens to ``max_len`` (None where unknown: pairs read back from the cache)."""

    token_ids: np.ndarray
    segments: np.ndarray
    valid_lens: np.ndarray
    truncated: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid_lens)

    def take(self, index: np.ndarray) -> EncodedPairs:
        """The pairs at ``index``, trimmed to their own longest pair."""
        width = int(self.valid_lens[index].max(initial=1))
        return EncodedPairs(
            self.token_ids[index, :width], self.segments[index, :width], self.valid_lens[index],
            None if self.truncated is None else self.truncated[index],
        )


def truncated_lengths(premise_lens: np.ndarray, hypothesis_lens: np.ndarray, budget: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Closed form of d2l's truncation loop: returns the kept (premise, hypothesis) lengths."""
    p = np.asarray(premise_lens, dtype=np.int64)
    h = np.asarray(hypothesis_lens, dtype=np.int64)
    over = p + h > budget
    h_kept = np.where(over, np.minimum(h, np.maximum(budget - p, budget // 2)), h)
    p_kept = np.where(over, budget - h_kept, p)
    return p_kept, h_kept


def _flatten(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lens.sum()))
    return flat, lens


def _scatter(out: np.ndarray, flat: np.ndarray, lens: np.ndarray, keep: np.ndarray, start: np.ndarray) -> None:
    """Write row i's first keep[i] tokens (of lens[i] in ``flat``) to out[i, start[i]:]."""
    rows = np.repeat(np.arange(len(lens)), lens)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    kept = pos < keep[rows]
    out[rows[kept], start[rows[kept]] + pos[kept]] = flat[kept]


#: The shortest max_len a pair can be laid out in: <cls>, a token of each text, and two <sep>.
MIN_MAX_LEN = 5


def lay_out_pairs(
    premise_ids: list[list[int]],
    hypothesis_ids: list[list[int]],
    tokenizer: Tokenizer,
    max_len: int = 128,
) -> EncodedPairs:
    """Lay out already tokenised pairs (see the module docstring for the layout and the truncation rule)."""
    if max_len < MIN_MAX_LEN:
        raise ValueError(f"max_len must be at least {MIN_MAX_LEN}, got {max_len}")
    if len(premise_ids) != len(hypothesis_ids):
        raise ValueError(f"{len(premise_ids)} premises but {len(hypothesis_ids)} hypotheses")
    p_flat, p_lens = _flatten(premise_ids)
    h_flat, h_lens = _flatten(hypothesis_ids)
    p_keep, h_keep = truncated_lengths(p_lens, h_lens, max_len - 3)
    valid = p_keep + h_keep + 3
    n, width = len(valid), int(valid.max(initial=3))
    rows = np.arange(n)
    token_ids = np.full((n, width), tokenizer.pad_id, dtype=np.int32)
    token_ids[:, 0] = tokenizer.cls_id
    token_ids[rows, p_keep + 1] = tokenizer.sep_id
    token_ids[rows, valid - 1] = tokenizer.sep_id
    _scatter(token_ids, p_flat, p_lens, p_keep, np.ones(n, dtype=np.int64))
    _scatter(token_ids, h_flat, h_lens, h_keep, p_keep + 2)
    columns = np.arange(width)[None, :]
    segments = ((columns >= (p_keep + 2)[:, None]) & (columns < valid[:, None])).astype(np.int8)
    return EncodedPairs(token_ids, segments, valid.astype(np.int32), (p_keep < p_lens) | (h_keep < h_lens))


def encode_pairs(
    tokenizer: Tokenizer, premises: Sequence[str], hypotheses: Sequence[str], max_len: int = 128,
    tokenised: bool = False,
) -> EncodedPairs:
    """Tokenise and lay out pairs of texts (``tokenised``: see `Tokenizer.encode_batch`). One tokenizer call covers
    premises and hypotheses together, and each distinct text is tokenised once (SNLI pairs every premise with
    three hypotheses)."""
    texts = [*premises, *hypotheses]
    unique = list(dict.fromkeys(texts))
    if len(unique) == len(texts):
        ids = tokenizer.encode_batch(texts, tokenised)
    else:
        by_text = dict(zip(unique, tokenizer.encode_batch(unique, tokenised)))
        ids = [by_text[t] for t in texts]
    return lay_out_pairs(ids[: len(premises)], ids[len(premises) :], tokenizer, max_len)
