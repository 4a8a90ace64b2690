"""Predictions written out as JSON lines, CSV or TSV, each row naming the input line of its pair."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bertnli.data.example import Example

if TYPE_CHECKING:
    from bertnli.inference import Prediction

#: The delimiter of each table format, by file suffix; other files get JSON lines.
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


def holds_predictions(columns: Sequence[str]) -> bool:
    """Whether a file with these columns (a table's header, a JSON line's keys) looks like predictions this
    module wrote: a ``truncated`` flag beside the probabilities."""
    return "truncated" in columns and ("probabilities" in columns or any(c.startswith("p_") for c in columns))


def format_predictions(examples: Sequence[Example], predictions: Sequence[Prediction], labels: Sequence[str],
                       path: Path | None = None, *, header: bool = True) -> str:
    """The predictions as ``path``'s suffix asks (CSV, TSV, else JSON lines): the input line of each pair (skipped
    rows would otherwise shift the rest), its texts, the label, every label's probability and whether it was
    read cut. A table's later parts go without the ``header`` line."""
    rows = [{"line": e.line, "premise": e.premise, "hypothesis": e.hypothesis, **p.to_dict()}
            for e, p in zip(examples, predictions)]
    delimiter = TABLE_DELIMITERS.get(path.suffix.lower()) if path else None
    if delimiter is None:
        return "".join(json.dumps(r) + "\n" for r in rows)
    return _table(rows, labels, delimiter, header)


def _table(rows: list[dict], labels: Sequence[str], delimiter: str, header: bool) -> str:
    """CSV is quoted as spreadsheets write it. TSV is written as the readers read it (GLUE's form): no quoting,
    and the texts' tabs and line breaks become spaces, so the file reads back with the same columns."""
    out = io.StringIO()
    tsv = delimiter == "\t"
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n",
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, quotechar=None if tsv else '"')
    if header:
        writer.writerow(["line", "premise", "hypothesis", "label", *(f"p_{label}" for label in labels), "truncated"])
    for r in rows:
        texts = [re.sub(r"[\t\r\n]", " ", r[key]) if tsv else r[key] for key in ("premise", "hypothesis")]
        writer.writerow([r["line"], *texts, r["label"], *(f"{r['probabilities'][label]:.6f}" for label in labels),
                         str(r["truncated"]).lower()])
    return out.getvalue()
