"""Pack several encoded pairs into each row, so a batch has (almost) no padding and one fixed width.

Each pair keeps its own <cls> … <sep> … <sep> layout; within a row, position ids and segments restart
at every pair, and a block-diagonal attention mask (built from ``slots`` on the device, see
`bertnli.runtime.DeviceBatch.from_packed`) keeps attention inside each pair. The encoder then computes
for every pair exactly what it computes for that pair alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from bertnli.text.pairs import EncodedPairs

#: The shortest possible pair, <cls> <sep> <sep>: a row of ``width`` tokens holds at most width // 3 pairs.
MIN_PAIR_TOKENS = 3


@dataclass
class PackedRows:
    """Rows of packed pairs. ``slots`` marks which pair of its row each token belongs to (-1: padding).
    ``pair_index`` lists the packed pairs (indices into the packed `EncodedPairs`, ascending) and
    ``cls_index`` gives the flat (row * width + column) position of each one's <cls>, in the same order."""

    token_ids: np.ndarray
    segments: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    pair_index: np.ndarray
    cls_index: np.ndarray


def fit_rows(lengths: np.ndarray, width: int) -> list[list[int]]:
    """Best-fit decreasing: each pair, longest first, goes to the row whose free space it fills best (a new
    row when none has room). Returns the pair indices of each row; SNLI-like pairs fill rows to about 97%."""
    lengths = np.asarray(lengths)
    if len(lengths) and int(lengths.max()) > width:
        raise ValueError(f"a pair of {int(lengths.max())} tokens does not fit rows of {width}")
    order = np.argsort(-lengths, kind="stable")
    rows: list[list[int]] = []
    rows_by_free: list[list[int]] = [[] for _ in range(width + 1)]  # free tokens → rows with that much room
    for i, n in zip(order.tolist(), lengths[order].tolist()):
        free = n
        while free < width and not rows_by_free[free]:
            free += 1
        if rows_by_free[free]:
            row = rows_by_free[free].pop()
        else:
            rows.append([])
            row = len(rows) - 1
        rows[row].append(i)
        rows_by_free[free - n].append(row)
    return rows


def pack_rows(pairs: EncodedPairs, width: int, pad_id: int, *, rows: list[list[int]] | None = None,
              num_rows: int | None = None) -> PackedRows:
    """Pack ``pairs`` into rows of ``width`` tokens (see the module docstring): the pairs that ``rows``
    assigns (pair indices per row, as from `fit_rows`), or all of them. ``num_rows`` adds empty rows to
    reach that many: a fixed shape for compiled code."""
    rows = fit_rows(pairs.valid_lens, width) if rows is None else rows
    num_rows = len(rows) if num_rows is None else num_rows
    if num_rows < len(rows):
        raise ValueError(f"{len(rows)} packed rows do not fit in {num_rows}")
    per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    members = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(per_row.sum()))
    row_of = np.repeat(np.arange(len(rows)), per_row)
    first = np.cumsum(per_row) - per_row  # each row's first entry in ``members``
    lengths = np.asarray(pairs.valid_lens)[members].astype(np.int64)
    before = np.cumsum(lengths) - lengths  # tokens of all earlier members
    start = before - np.repeat(before[first[per_row > 0]], per_row[per_row > 0])  # column of each <cls>
    slot = np.arange(len(members)) - np.repeat(first, per_row)

    owner = np.repeat(np.arange(len(members)), lengths)  # for every packed token: its member
    column = np.arange(int(lengths.sum())) - np.repeat(before, lengths)  # and its place in its pair
    at = (row_of[owner], start[owner] + column)
    shape = (num_rows, width)
    token_ids = np.full(shape, pad_id, dtype=pairs.token_ids.dtype)
    segments = np.zeros(shape, dtype=pairs.segments.dtype)
    positions = np.zeros(shape, dtype=np.int64)
    slots = np.full(shape, -1, dtype=np.int32)
    token_ids[at] = pairs.token_ids[members[owner], column]
    segments[at] = pairs.segments[members[owner], column]
    positions[at] = column
    slots[at] = slot[owner]
    ascending = np.argsort(members, kind="stable")
    return PackedRows(token_ids, segments, positions, slots, members[ascending],
                      (row_of * width + start)[ascending])


def row_batches(lengths: np.ndarray, width: int, rows_per_batch: int) -> list[list[list[int]]]:
    """All pairs fitted into rows (`fit_rows`), cut into batches of ``rows_per_batch`` rows: for inference,
    where every pair is scored once and no batch needs particular pairs."""
    rows = fit_rows(lengths, width)
    return [rows[i : i + rows_per_batch] for i in range(0, len(rows), rows_per_batch)]
