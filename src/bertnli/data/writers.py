"""Predictions written out as JSON lines, CSV or TSV, each row naming the input line (and id) of its pair."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import stat
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from bertnli.data.example import Example
from bertnli.errors import DataError, Interrupted, termination_as_interrupt
from bertnli.paths import FILE_MODE, is_stream, write_text

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


@dataclass(frozen=True)
class Layout:
    """How predictions are written: the format (a file suffix: .jsonl, .csv, .tsv), the labels whose probabilities
    have columns, whether each pair's id and texts are in, and what made them (the model, its precision and the
    tokens it reads of each pair)."""

    suffix: str
    labels: tuple[str, ...]
    ids: bool = False
    texts: bool = True
    made_by: str = ""


@dataclass
class Progress:
    """How far the predictions in ``<output>.partial`` go, as ``<output>.partial.json`` records it after each
    chunk: the pairs done, the bytes that hold them, how many were read cut, a digest of those pairs (lines, ids,
    texts), and the `Layout` they are written in."""

    pairs: int = 0
    bytes: int = 0
    cut: int = 0
    digest: str = ""
    layout: dict[str, Any] = field(default_factory=dict)


def partial_path(output: Path) -> Path:
    """Where predictions go until every one is in (see `write_predictions`): beside the file ``output`` names
    (the file a symbolic link leads to), so that it can take that file's place."""
    real = _followed(output)
    return real.with_name(f"{real.name}.partial")


def record_path(output: Path) -> Path:
    """Where the progress of ``<output>.partial`` is recorded (a `Progress`)."""
    real = _followed(output)
    return real.with_name(f"{real.name}.partial.json")


def _followed(path: Path) -> Path:
    return path.resolve() if path.is_symlink() else path


def holds_kept_predictions(output: Path) -> bool:
    """Whether an interrupted run left whole chunks of predictions for ``output`` (a record of them, and the file)."""
    return partial_path(output).is_file() and record_path(output).is_file()


def resume_point(output: Path, examples: Sequence[Example], layout: Layout) -> Progress:
    """Where an interrupted run on ``examples`` stopped, as its record says, once the pairs it did are found to be
    the first of these, written as this run writes (``layout``); a `DataError` naming what differs otherwise.
    Without a ``<output>.partial`` and its record, no chunk was done whole: the run starts at the first pair."""
    partial, record = partial_path(output), record_path(output)
    if not holds_kept_predictions(output):
        return Progress()
    saved = _recorded(record)
    if saved is None:
        raise DataError(partial, f"has no readable record of its progress in {record.name}; remove both to start "
                                 "over")
    differs = [_SETTINGS[key] for key, value in asdict(layout).items() if saved.layout.get(key) != _as_json(value)]
    if differs:
        raise DataError(partial, f"was written with another {', '.join(differs)} than this command's: run it as it "
                                 f"ran, or remove it and {record.name} to start over")
    if saved.pairs > len(examples):
        raise DataError(partial, f"holds {saved.pairs:,} predictions, more than the {len(examples):,} pairs of this "
                                 f"input (--limit?): run it as it ran, or remove it and {record.name} to start over")
    if _pairs_digest(examples[: saved.pairs]).hexdigest() != saved.digest:
        raise DataError(partial, f"holds the predictions of other pairs than the first {saved.pairs:,} of this "
                                 f"input: run it on its own input, or remove it and {record.name} to start over")
    if partial.stat().st_size < saved.bytes:
        raise DataError(partial, f"is shorter than the {saved.bytes:,} bytes its record says it holds; remove it "
                                 f"and {record.name} to start over")
    return saved


def write_predictions(chunks: Iterable[Sequence[Prediction]], examples: Sequence[Example], output: Path | None,
                      stream: TextIO, layout: Layout, start: Progress | None = None) -> int:
    """Write the predictions of ``examples``, which come in ``chunks`` (as `NLIModel.predict_chunks` yields
    them), each as it comes, as ``layout`` says: to ``stream`` without an ``output`` (or to ``output`` when it is
    a stream itself, /dev/stdout); otherwise into ``<output>.partial``, recording after each chunk how far it goes
    (`record_path`), and renamed to ``output`` once every prediction is in. Ctrl-C or SIGTERM raises `Interrupted`,
    having kept the chunks done; so does a crash or SIGKILL, without a word. With ``start`` (`resume_point`), the
    partial file goes on from there, and ``chunks`` hold the predictions of the pairs after it. Returns how many
    pairs were read cut."""
    if output is None or is_stream(output):
        return _write_stream(chunks, examples, output, stream, layout)
    partial, record = partial_path(output), record_path(output)
    done = start or Progress()
    written, cut, digest = done.pairs, done.cut, _pairs_digest(examples[: done.pairs])
    target = _followed(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else FILE_MODE  # the output's, from the start
    with os.fdopen(os.open(partial, os.O_RDWR | os.O_CREAT, mode), "r+b") as out:
        _hold(out, output)
        os.chmod(partial, mode)
        out.truncate(done.bytes)  # less any part of a chunk that a crash cut (all of it for a new run)
        out.seek(done.bytes)
        try:
            with termination_as_interrupt():
                for chunk in chunks:
                    part = examples[written : written + len(chunk)]
                    out.write(_formatted(part, chunk, layout, header=written == 0).encode("utf-8"))
                    out.flush()
                    written, cut = written + len(chunk), cut + sum(p.truncated for p in chunk)
                    digest.update(_pair_records(part))
                    done = Progress(written, out.tell(), cut, digest.hexdigest(), _as_json(asdict(layout)))
                    write_text(record, json.dumps(asdict(done)) + "\n")
                if not examples:  # an input with no pairs: a CSV or TSV still gets its header
                    out.write(_formatted([], [], layout, header=True).encode("utf-8"))
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            done = _recorded(record) or Progress()  # the record says what is whole: a stop may come before it
            out.truncate(done.bytes)
            if done.pairs:
                raise Interrupted(f"interrupted; the first {done.pairs:,} of {len(examples):,} predictions are in "
                                  f"{partial} (the same command with --resume goes on from there)", signum) from None
            out.close()
            partial.unlink()
            record.unlink(missing_ok=True)
            left = f"{output} is as it was" if output.exists() else "nothing was written"
            raise Interrupted(f"interrupted before the first predictions were done; {left}", signum) from None
    os.replace(partial, target)
    record.unlink(missing_ok=True)
    return cut


def _hold(out: IO[bytes], output: Path) -> None:
    """Hold ``<output>.partial`` for this run (where the system can lock files): a second run on the same
    --output is refused, rather than writing into the same file."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataError(partial_path(output), f"is being written by another run on --output {output}; wait for it, "
                                              "or write elsewhere") from None


def _recorded(record: Path) -> Progress | None:
    """The `Progress` a record holds, or None where there is none to read."""
    try:
        saved = Progress(**json.loads(record.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    whole = all(isinstance(n, int) for n in (saved.pairs, saved.bytes, saved.cut)) and isinstance(saved.layout, dict)
    return saved if whole else None


#: What each field of a `Layout` is to the command line.
_SETTINGS = {"suffix": "output format", "labels": "labels", "ids": "id column", "texts": "texts (--no-texts)",
             "made_by": "model, precision or length read (--model, --precision, --max-len)"}


def _write_stream(chunks: Iterable[Sequence[Prediction]], examples: Sequence[Example], output: Path | None,
                  stream: TextIO, layout: Layout) -> int:
    """`write_predictions` to a stream, which keeps what it was given: no partial file."""
    written = cut = 0
    with contextlib.ExitStack() as stack:
        out = stream if output is None else stack.enter_context(output.open("a", encoding="utf-8"))
        for chunk in chunks:
            out.write(_formatted(examples[written : written + len(chunk)], chunk, layout, header=written == 0))
            out.flush()
            written, cut = written + len(chunk), cut + sum(p.truncated for p in chunk)
        if not examples:
            out.write(_formatted([], [], layout, header=True))
    return cut


def _formatted(examples: Sequence[Example], predictions: Sequence[Prediction], layout: Layout, header: bool) -> str:
    return format_predictions(examples, predictions, layout.labels, layout.suffix, header=header, ids=layout.ids,
                              texts=layout.texts)


def _pair_records(examples: Sequence[Example]) -> bytes:
    """The pairs as the digest of a `Progress` reads them: line, id and texts."""
    return "".join(json.dumps([e.line, e.id, e.premise, e.hypothesis]) + "\n" for e in examples).encode()


def _pairs_digest(examples: Sequence[Example]) -> Any:
    digest = hashlib.sha256()
    digest.update(_pair_records(examples))
    return digest


def _as_json(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), for comparison with a record read from JSON."""
    return json.loads(json.dumps(value))
