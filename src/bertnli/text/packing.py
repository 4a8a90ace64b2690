"""Pack several encoded pairs into each row, so a batch has (almost) no padding and one fixed width.

Each pair keeps its own <cls> … <sep> … <sep> layout; within a row, position ids and segments restart
at every pair, and a block-diagonal attention mask (built from ``slots`` on the device, see
`bertnli.runtime.DeviceBatch.from_packed`) keeps attention inside each pair. The encoder then computes
for every pair exactly what it computes for that pair alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertnli.text.pairs import EncodedPairs


@dataclass
class PackedRows:
    """Rows of packed pairs. ``slots`` marks which pair of its row each token belongs to (-1: padding);
    ``cls_index`` is the flat (row * width + column) position of each pair's <cls>, in pair order."""

    token_ids: np.ndarray
    segments: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    cls_index: np.ndarray


def first_fit_rows(lengths: np.ndarray, width: int) -> list[list[int]]:
    """Assign pairs (longest first) to the first row with room: a list of pair indices per row."""
    if len(lengths) and int(lengths.max()) > width:
        raise ValueError(f"a pair of {int(lengths.max())} tokens does not fit rows of {width}")
    rows: list[list[int]] = []
    room: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        row = next((r for r, free in enumerate(room) if free >= n), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(int(i))
        room[row] -= n
    return rows


def pack_rows(pairs: EncodedPairs, width: int, pad_id: int, *, min_rows: int = 0, row_multiple: int = 1
              ) -> PackedRows:
    """Pack all of ``pairs`` into rows of ``width`` tokens (see the module docstring). Empty rows are added
    to reach at least ``min_rows`` rows and a multiple of ``row_multiple``: fixed shapes for compiled code."""
    rows = first_fit_rows(np.asarray(pairs.valid_lens), width)
    count = max(len(rows), min_rows)
    shape = (-(-count // row_multiple) * row_multiple, width)
    token_ids = np.full(shape, pad_id, dtype=pairs.token_ids.dtype)
    segments = np.zeros(shape, dtype=pairs.segments.dtype)
    positions = np.zeros(shape, dtype=np.int64)
    slots = np.full(shape, -1, dtype=np.int32)
    cls_index = np.empty(len(pairs), dtype=np.int64)
    for r, members in enumerate(rows):
        start = 0
        for slot, i in enumerate(members):
            n = int(pairs.valid_lens[i])
            token_ids[r, start : start + n] = pairs.token_ids[i, :n]
            segments[r, start : start + n] = pairs.segments[i, :n]
            positions[r, start : start + n] = np.arange(n)
            slots[r, start : start + n] = slot
            cls_index[i] = r * width + start
            start += n
    return PackedRows(token_ids, segments, positions, slots, cls_index)
