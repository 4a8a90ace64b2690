"""Predictions written out as JSON lines, CSV or TSV, each row naming the input line (and id) of its pair."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bertnli.data.example import Example
from bertnli.errors import DataError, Interrupted, termination_as_interrupt
from bertnli.paths import FILE_MODE, atomic_write

if TYPE_CHECKING:
    from bertnli.inference import Prediction

#: The delimiter of each table format, by file suffix; other files get JSON lines.
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
#: The file suffixes predictions are written under (no suffix: JSON lines).
OUTPUT_SUFFIXES = ("", ".jsonl", ".ndjson", *TABLE_DELIMITERS)


def holds_predictions(columns: Sequence[str]) -> bool:
    """Whether a file with these columns (a table's header, a JSON line's keys) looks like predictions this
    module wrote: a ``truncated`` flag beside the probabilities."""
    return "truncated" in columns and ("probabilities" in columns or any(c.startswith("p_") for c in columns))


def format_predictions(examples: Sequence[Example], predictions: Sequence[Prediction], labels: Sequence[str],
                       suffix: str = ".jsonl", *, header: bool = True, ids: bool | None = None,
                       texts: bool = True) -> str:
    """The predictions as a file ``suffix`` asks (.csv, .tsv, else JSON lines): the input line of each pair (skipped
    rows would otherwise shift the rest), its id with ``ids`` (default: when some pair has one), its texts (unless
    ``texts`` is False), the label, every label's probability and whether it was read cut. A table's later parts
    go without the ``header`` line."""
    ids = any(e.id is not None for e in examples) if ids is None else ids
    rows = [{"line": e.line, **({"id": e.id} if ids else {}),
             **({"premise": e.premise, "hypothesis": e.hypothesis} if texts else {}), **p.to_dict()}
            for e, p in zip(examples, predictions)]
    delimiter = TABLE_DELIMITERS.get(suffix.lower())
    if delimiter is None:
        return "".join(json.dumps(r) + "\n" for r in rows)
    return _table(rows, labels, delimiter, header, named=["id"] * ids + ["premise", "hypothesis"] * texts)


def _table(rows: list[dict], labels: Sequence[str], delimiter: str, header: bool, named: list[str]) -> str:
    """CSV is quoted as spreadsheets write it. TSV is written as the readers read it (GLUE's form): no quoting,
    and the texts' tabs and line breaks become spaces, so the file reads back with the same columns."""
    out = io.StringIO()
    tsv = delimiter == "\t"
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n",
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, quotechar=None if tsv else '"')
    if header:
        writer.writerow(["line", *named, "label", *(f"p_{label}" for label in labels), "truncated"])
    for r in rows:
        cells = ["" if r[key] is None else re.sub(r"[\t\r\n]", " ", str(r[key])) if tsv else r[key] for key in named]
        writer.writerow([r["line"], *cells, r["label"], *(f"{r['probabilities'][label]:.6f}" for label in labels),
                         str(r["truncated"]).lower()])
    return out.getvalue()


@dataclass
class KeptPredictions:
    """What an interrupted run left in ``<output>.partial``: its text, how many pairs it holds, and how many of
    them were read cut."""

    text: str = ""
    pairs: int = 0
    cut: int = 0


def partial_path(output: Path) -> Path:
    """Where an interrupted run keeps the predictions it made (see `write_predictions`)."""
    return output.with_name(f"{output.name}.partial")


def kept_predictions(output: Path, examples: Sequence[Example], labels: Sequence[str], texts: bool = True
                     ) -> KeptPredictions:
    """The predictions ``<output>.partial`` holds of the first of ``examples`` (none without that file), once they
    are checked to be of these pairs, in the columns this run writes; a `DataError` otherwise."""
    partial = partial_path(output)
    if not partial.is_file():
        return KeptPredictions()
    text = partial.read_text(encoding="utf-8")
    delimiter = TABLE_DELIMITERS.get(output.suffix.lower())
    ids = any(e.id is not None for e in examples)
    columns = ["line", *["id"] * ids, *["premise", "hypothesis"] * texts]
    try:
        if delimiter is None:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            fits = all(list(r) == [*columns, "label", "probabilities", "truncated"]
                       and list(r["probabilities"]) == list(labels) for r in rows[:1])
            lines, cut = [r["line"] for r in rows], sum(bool(r["truncated"]) for r in rows)
        else:
            lines_of = io.StringIO(text)  # read as `_table` writes: TSV unquoted, CSV quoted
            header, *rows = (csv.reader(lines_of, delimiter="\t", quoting=csv.QUOTE_NONE) if delimiter == "\t"
                             else csv.reader(lines_of))
            fits = header == format_predictions([], [], labels, output.suffix, ids=ids, texts=texts).rstrip("\n") \
                .split(delimiter)
            lines, cut = [int(r[0]) for r in rows], sum(r[-1] == "true" for r in rows)
    except (ValueError, KeyError, IndexError, TypeError):
        fits, lines, cut = False, [], 0
    if not fits or lines != [e.line for e in examples[: len(lines)]]:
        raise DataError(partial, "holds predictions of another input, or in other columns than this run writes; "
                                 "remove it to start over")
    return KeptPredictions(text, len(lines), cut)


def write_predictions(chunks: Iterable[Sequence[Prediction]], examples: Sequence[Example], labels: Sequence[str],
                      output: Path | None, stream: TextIO, stream_suffix: str = ".jsonl", texts: bool = True,
                      kept: KeptPredictions | None = None) -> int:
    """Write the predictions of ``examples``, which come in ``chunks`` (as `NLIModel.predict_chunks` yields
    them), each as it comes: to ``stream`` without an ``output``, in the format of ``stream_suffix``; to
    ``output`` otherwise, in the format of its suffix, replaced whole once every prediction is in. Ctrl-C or
    SIGTERM raises `Interrupted`, having kept the chunks done so far in ``<output>.partial`` (which a later call
    that finishes removes). ``texts``: each pair's texts beside its prediction. With ``kept`` (`kept_predictions`),
    the output starts with those, and ``chunks`` hold the predictions of the pairs after them. Returns how many
    pairs were read cut."""
    kept = kept or KeptPredictions()
    written, cut, whole_chunks_end = kept.pairs, kept.cut, 0
    suffix = output.suffix if output is not None else stream_suffix
    ids = any(e.id is not None for e in examples)  # decided once: every chunk has the same columns

    def write(out: TextIO) -> None:
        nonlocal written, cut, whole_chunks_end
        out.write(kept.text)
        whole_chunks_end = out.tell() if out.seekable() else 0
        for chunk in chunks:
            part = examples[written : written + len(chunk)]
            out.write(format_predictions(part, chunk, labels, suffix, header=written == 0, ids=ids, texts=texts))
            out.flush()
            written, cut = written + len(chunk), cut + sum(p.truncated for p in chunk)
            whole_chunks_end = out.tell() if out.seekable() else 0
        if not examples:  # an input with no pairs: a CSV or TSV still gets its header
            out.write(format_predictions([], [], labels, suffix, header=True, ids=False, texts=texts))

    if output is None:
        write(stream)
        return cut
    partial = partial_path(output)

    def write_file(target: Path) -> None:
        with target.open("a", encoding="utf-8") as out:  # a new file, or a stream (/dev/stdout) to add to
            try:
                with termination_as_interrupt():
                    write(out)
            except KeyboardInterrupt as stop:
                signum = getattr(stop, "signum", signal.SIGINT)
                if not written:
                    left = f"{output} is as it was" if output.exists() and target != output else "nothing was written"
                    raise Interrupted(f"interrupted before the first predictions were done; {left}", signum) from None
                if target == output:  # a stream, which keeps what was written already
                    raise Interrupted("interrupted", signum) from None
                out.close()
                os.truncate(target, whole_chunks_end)  # less any chunk the stop came in the middle of
                os.chmod(target, FILE_MODE)  # as the finished file would have been
                os.replace(target, partial)
                raise Interrupted(f"interrupted; the first {written:,} of {len(examples):,} predictions are in "
                                  f"{partial} (the same command with --resume goes on from there)", signum) from None

    atomic_write(output, write_file)
    partial.unlink(missing_ok=True)  # an interrupted run's, now out of date
    return cut
