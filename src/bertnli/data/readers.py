"""Read NLI data into `Dataset`s: SNLI / MultiNLI (zip, folder, jsonl, txt), SICK, GLUE RTE, and generic
CSV / TSV / JSONL files with any column names.

Every problem in a file is a DataError naming the file and its 1-based line; rows left out on purpose
(no gold label) are counted in ``Dataset.skipped``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import numbers
import os
import re
import sys
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import IO, Any, BinaryIO

from bertnli.data.download import DATASETS, cached_path, data_cache_dir, remote_dataset
from bertnli.data.example import Dataset, Example, describe_skipped, id_problem, is_blank, surrogate_problem
from bertnli.data.labels import parse_label, resolve_label_map
from bertnli.data.writers import holds_predictions
from bertnli.errors import BertnliWarning, ConfigError, DataError, NoPairs

FORMATS = ("jsonl", "csv", "tsv")
ROLES = ("premise", "hypothesis", "label", "genre", "id")
#: Columns tried, in order, for each role that ``columns`` does not name.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "premise": ("premise", "sentence1", "sentence_A", "text_a"),
    "hypothesis": ("hypothesis", "sentence2", "sentence_B", "text_b"),
    "label": ("gold_label", "label", "entailment_label", "entailment_judgment"),
    "genre": ("genre",),
    "id": ("id", "pairID", "pair_ID", "index"),  # bertnli's and the caller's, SNLI / MultiNLI, SICK, GLUE
}
#: What ``d2l_text=True`` reads instead: the binary parses, as d2l's ``read_snli`` does.
D2L_COLUMNS = {"premise": "sentence1_binary_parse", "hypothesis": "sentence2_binary_parse"}
#: SICK's column naming the SemEval-2014 part of each pair (TRAIN, TRIAL, TEST).
SICK_SET_COLUMN = "SemEval_set"
#: How many of the rows skipped for each reason have their lines named (in `Dataset.skipped_lines`).
SKIPPED_LINES_KEPT = 3
#: Split names recognised at the end of a file name (``snli_1.0_dev.jsonl``, ``RTE/train.tsv``).
SPLIT_NAMES = ("dev_mismatched", "dev_matched", "validation", "train", "trial", "test", "dev")

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
#: Data-file suffixes, most preferred first when one split comes in several forms.
_DATA_SUFFIXES = (".jsonl", ".ndjson", ".tsv", ".txt", ".csv")
#: Files that mark a folder as a model (Hugging Face, bertnli, d2l) or a training run, not data.
_MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "pretrained.params", "checkpoint.pt")
_SPACES = re.compile(r"\s{2,}")
_NO_LABEL_FIELD = "no gold label (no label field)"

Columns = Mapping[str, "str | None"]
_Rows = Iterator[tuple[int, Mapping[str, Any]]]


@dataclass(frozen=True)
class _Options:
    format: str | None
    columns: Mapping[str, str | None]
    label_map: dict[str, str] | None
    d2l_text: bool
    parts: tuple[str, ...]
    limit: int | None


@dataclass(frozen=True)
class _Fields:
    premise: str
    hypothesis: str
    label: str | None
    genre: str | None
    id: str | None


def read_dataset(
    source: str | Path | BinaryIO,
    *,
    split: str | None = None,
    format: str | None = None,
    columns: Columns | None = None,
    label_map: Mapping[str | int, str] | str | None = None,
    d2l_text: bool = False,
    sick_set: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Read NLI examples from a file, a folder, a zip archive, or a downloaded dataset.

    ``source``: a data file (.jsonl, .tsv, .txt, .csv; others are recognised by their first line); a zip
    or folder, with ``split`` choosing the file (``train`` picks ``snli_1.0_train.jsonl``, ``RTE/train.tsv``,
    jsonl preferred; an exact member name also works); ``"path:split"``; or a dataset name
    (``"snli"``, ``"snli:dev"``) already fetched by `download` — nothing is downloaded here; a path
    that exists wins over a dataset name.
    ``format``: jsonl, csv or tsv, overriding detection. ``columns``: {role: column} for the roles premise,
    hypothesis, label (None: unlabelled), genre and id (each pair's name, given back with its prediction);
    roles left out are found among `DEFAULT_COLUMNS`. In JSON lines, rows may lack the label: in a file where
    some row has one, the rows without are skipped and counted.
    ``label_map``: raw label → name, or the preset "glue" / "d2l"; needed for numeric labels.
    ``d2l_text``: read the binary-parse columns with brackets removed, as d2l does, instead of raw text.
    ``sick_set``: keep only these SemEval_set parts (TRAIN, TRIAL, TEST); for a single file ``split``
    does the same.
    ``limit``: stop after this many pairs (quick trials on big files); what is skipped is counted up to there.
    ``source`` may also be an open binary stream (``sys.stdin.buffer``), read whole, in any of the formats.
    """
    if isinstance(source, os.PathLike):
        source = Path(source)
    if not isinstance(source, (str, Path)) and not hasattr(source, "read"):
        raise TypeError(f"read_dataset reads files (a path or a binary stream), not a {type(source).__name__}; "
                        "for pairs in memory, build Dataset(name, [Example(premise, hypothesis, label), ...])")
    options = _options(format, columns, label_map, d2l_text, sick_set, limit)
    if hasattr(source, "read"):
        data, display = source.read(), str(getattr(source, "name", "<stream>"))
        if isinstance(data, str):
            raise TypeError("read_dataset reads paths and binary streams, not text streams: open files with 'rb', "
                            "pass sys.stdin.buffer for standard input, or io.BytesIO(text.encode()) for a string")
        return _read_one(lambda: io.BytesIO(data), display, display.strip("<>"), split, options)
    path, split = _locate(source, split)
    if path.is_dir():
        if _holds_a_model(path):
            raise DataError(path, "a model folder or a training run, not data; pass a data file or a folder of "
                                  f"them ({', '.join(_DATA_SUFFIXES)})")
        files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}
        member, split = _pick(list(files), split, path)
        file = files[member]
        return _read_one(lambda: file.open("rb"), str(file), _name(file), split, options)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return _read_zip(path, split, options)
    return _read_one(lambda: path.open("rb"), str(path), _name(path), split, options)


def _holds_a_model(folder: Path) -> bool:
    """A model's weights or a run's checkpoint, or a run's record (config.json beside metrics.jsonl) before its
    first checkpoint: a folder to load or resume, not to read as data."""
    return any((folder / name).is_file() for name in _MODEL_FILES) or all(
        (folder / name).is_file() for name in ("config.json", "metrics.jsonl"))


def _options(
    format: str | None,
    columns: Columns | None,
    label_map: Mapping[str | int, str] | str | None,
    d2l_text: bool,
    sick_set: str | Iterable[str] | None,
    limit: int | None,
) -> _Options:
    if limit is not None and not isinstance(limit, numbers.Integral):
        raise ConfigError(f"limit must be a whole number of pairs, not {limit!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, not {limit}")
    if format is not None and format.lower() not in FORMATS:
        raise ConfigError(f"unknown data format {format!r}; use one of {', '.join(FORMATS)}")
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown column role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    parts = (sick_set,) if isinstance(sick_set, str) else tuple(sick_set or ())
    return _Options(
        format and format.lower(),
        columns,
        resolve_label_map(label_map),
        d2l_text,
        tuple(p.upper() for p in parts),
        limit,
    )


def _locate(source: str | Path, split: str | None) -> tuple[Path, str | None]:
    """The path to read and the split, from a path, ``path:split``, a dataset name or ``name:split``."""
    path = original = Path(source)
    if path.exists():
        return path, split
    text = str(source)
    head, sep, tail = text.rpartition(":")
    # The split may be an archive member's path (snli_1.0.zip:snli_1.0/snli_1.0_dev.txt); after a name, a word.
    if sep and tail and (Path(head).exists() or not {"/", "\\"} & set(tail)):
        if split is not None and split != tail:
            raise ConfigError(f"{text!r} names split {tail!r} but split={split!r} was also given")
        text, split, path = head, tail, Path(head)
        if path.exists():
            return path, split
    if text.lower() in DATASETS:
        cached = cached_path(text)
        if cached is None:
            entry = remote_dataset(text)
            raise DataError(
                data_cache_dir() / entry.filename,
                f"{text} is not downloaded: run `bertnli data download {text.lower()}`, "
                f"or pass local files instead, such as {entry.local_example}",
            )
        return cached, split
    raise DataError(original, "no such file or folder")


def _read_zip(path: Path, split: str | None, options: _Options) -> Dataset:
    try:
        with zipfile.ZipFile(path) as archive:
            member, split = _pick(archive.namelist(), split, path)
            name, display = _name(PurePosixPath(path.stem) / member), f"{path}/{member}"
            return _read_one(lambda: _open_member(archive, member, display), display, name, split, options)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(path, f"not a readable zip archive ({e})") from None


def _open_member(archive: zipfile.ZipFile, member: str, display: str) -> IO[bytes]:
    """``member`` of ``archive``; DataError for one that zipfile cannot unpack (encrypted, or compressed with a
    method such as Deflate64)."""
    try:
        return archive.open(member)
    except (RuntimeError, NotImplementedError) as e:
        info = archive.getinfo(member)
        problem = ("is encrypted (it needs a password)" if info.flag_bits & 0x1 else
                   f"is compressed with method {info.compress_type}, which Python's zipfile cannot unpack ({e})")
        raise DataError(display, f"{problem}; extract it with a zip tool and read the extracted file") from None


def _pick(names: Sequence[str], split: str | None, where: Path) -> tuple[str, str | None]:
    """The data file in a zip or folder for ``split``, and the split if that file still has to apply it."""
    data = [n for n in names if _is_data_file(n)]
    if not data:
        raise DataError(where, f"holds no data files ({', '.join(_DATA_SUFFIXES)})")
    if split is None:
        if len(data) == 1:
            return data[0], None
        raise DataError(where, f"holds several data files; choose one with a split ({_contents(data)})")
    chosen = [n for n in data if split in (n, PurePosixPath(n).name)]
    chosen = chosen or [n for n in data if _split_of(n) == split.lower()]
    if chosen:
        return min(chosen, key=lambda n: _DATA_SUFFIXES.index(PurePosixPath(n).suffix.lower())), None
    if len(data) == 1:  # one file holding several parts, like SICK.txt
        return data[0], split
    raise DataError(where, f"has no split {split!r} ({_contents(data)})")


def _is_data_file(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        path.suffix.lower() in _DATA_SUFFIXES
        and not any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
        and not path.stem.lower().startswith(("readme", "license"))
    )


def _split_of(name: str) -> str | None:
    stem = PurePosixPath(name).stem.lower()
    return next((s for s in SPLIT_NAMES if stem == s or stem.endswith("_" + s)), None)


def _contents(names: Sequence[str]) -> str:
    splits = sorted({s for s in map(_split_of, names) if s})
    return f"splits: {', '.join(splits)}" if splits else f"files: {', '.join(names)}"


def _name(path: PurePosixPath | Path) -> str:
    """``snli_1.0_dev`` for snli_1.0_dev.jsonl (and .jsonl.gz); ``RTE/train`` for RTE/train.tsv (a split's file
    is named with its folder)."""
    if path.suffix.lower() == ".gz":
        path = path.with_suffix("")
    if path.stem.lower() in SPLIT_NAMES and path.parent.name:
        return f"{path.parent.name}/{path.stem}"
    return path.stem


def _read_one(
    open_stream: Callable[[], IO[bytes]], display: str, name: str, split: str | None, options: _Options
) -> Dataset:
    """Read one data file; a ``split`` left over selects SICK parts, like ``sick_set``."""
    if split is not None and options.parts:
        raise ConfigError(f"give split or sick_set, not both (split={split!r}, sick_set={options.parts})")
    parts = options.parts or ((split.upper(),) if split else ())
    try:
        stream = open_stream()
    except OSError as e:
        raise DataError(display, f"cannot read ({e.strerror})") from None
    with stream:
        lines = _decode(_uncompressed(stream), display)
        first = next(lines, None)
        if first is None:
            raise NoPairs(display, "empty file")
        if "\r" in first.rstrip("\r\n"):
            raise DataError(display, "its lines end in a carriage return alone (old Mac style); convert them to LF "
                                     "or CRLF line endings", 1)
        fmt = options.format or _detect(display, first)
        header, rows = _ROW_READERS[fmt](chain([first], lines), display)
        first_row = next(rows, None)
        columns = header if header is not None else list(first_row[1]) if first_row else []  # JSON: the first keys
        rows = chain([first_row] if first_row else [], rows)
        examples, skipped, fields = _examples(header, rows, display, options, parts)
    if parts:
        name += f"[{'+'.join(parts)}]"
    return Dataset(name, examples, skipped.counts, {role: column for role, column in vars(fields).items() if column},
                   tokenised=options.d2l_text, predicted=holds_predictions(columns), skipped_lines=skipped.lines)


def _uncompressed(stream: IO[bytes]) -> IO[bytes] | gzip.GzipFile:
    """``stream``, or what it holds when it is gzip-compressed (``pairs.jsonl.gz``), told by its first bytes."""
    if hasattr(stream, "peek"):
        magic = stream.peek(2)[:2]
    else:
        magic = stream.read(2)
        stream.seek(0)
    return gzip.GzipFile(fileobj=stream) if magic == b"\x1f\x8b" else stream


def _caller() -> int:
    """The ``stacklevel`` that names the first frame outside this module: a warning points at the line that
    read the data, however deep in the reading it was found."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


def _decode(stream: Iterable[bytes], display: str) -> Iterator[str]:
    """The lines of ``stream`` as text, line endings kept; DataError on bytes that are not UTF-8, and on a gzip
    stream cut short or damaged."""
    try:
        for n, raw in enumerate(stream, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problem = f"not UTF-8 text (byte 0x{raw[e.start]:02x} at position {e.start + 1})"
                raise DataError(display, problem, n) from None
            yield text.removeprefix("\ufeff") if n == 1 else text
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(display, f"a gzip file cut short or damaged ({e})") from None


def _detect(display: str, first_line: str) -> str:
    """The format from the file suffix, or else from its first line."""
    fmt = _SUFFIX_FORMATS.get(PurePosixPath(display.removesuffix(".gz")).suffix.lower())
    head = first_line.lstrip()
    if fmt:
        return fmt
    if head.startswith("{"):
        return "jsonl"
    if head.startswith("["):
        raise DataError(display, "a JSON array; bertnli reads JSON lines, one object a line (convert it with "
                                 "jq -c '.[]', or pandas' to_json(orient='records', lines=True))")
    if "\t" in head:
        return "tsv"
    if "," in head or ";" in head:
        return "csv"
    raise DataError(
        display,
        f"cannot tell the format (not JSON lines, tab- or comma-separated); pass --format (format= in Python) "
        f"{' / '.join(FORMATS)}",
    )


def _jsonl_rows(lines: Iterator[str], display: str) -> tuple[None, _Rows]:
    def rows() -> _Rows:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))  # a line cut short: its column, not "line 2"
            except json.JSONDecodeError as e:
                raise DataError(display, f"not valid JSON ({e.msg} at column {e.colno})", n) from None
            except ValueError as e:  # a number of more than 4,300 digits
                raise DataError(display, f"not readable JSON ({str(e).partition(';')[0]})", n) from None
            except RecursionError:
                raise DataError(display, "not readable JSON (nested too deeply)", n) from None
            if not isinstance(record, dict):
                raise DataError(display, f"expected a JSON object, found {type(record).__name__}", n)
            yield n, record

    return None, rows()


def _tsv_rows(lines: Iterator[str], display: str) -> tuple[list[str], _Rows]:
    """Tab-separated with a header; quotes are plain text (GLUE and SNLI text contains them)."""
    header = next(lines).rstrip("\r\n").split("\t")

    def rows() -> _Rows:
        warned = False
        for n, line in enumerate(lines, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                problem = f"{len(fields)} tab-separated fields where the header has {len(header)}"
                raise DataError(display, problem + (f"; {_TSV_UNQUOTED}" if '"' in line else ""), n)
            if not warned and '""' in line and any(len(f) > 1 and f[0] == f[-1] == '"' and '""' in f[1:-1]
                                                    for f in fields):
                warnings.warn(f"{display}:{n}: a field is quoted as CSV writers quote it (\"...\"\"...\"); "
                              f"{_TSV_UNQUOTED}", BertnliWarning, stacklevel=_caller())
                warned = True
            yield n, dict(zip(header, fields))

    return header, rows()


#: TSV's reading, for a file that looks written another way.
_TSV_UNQUOTED = ("TSV is read unquoted, as GLUE writes it, so quotes are kept as text: write it without quoting "
                 "(csv.writer(f, delimiter='\\t', quoting=csv.QUOTE_NONE, quotechar=None)) or save it as .csv")


def _csv_rows(lines: Iterator[str], display: str) -> tuple[list[str], _Rows]:
    """Comma-separated with a header, quoted as the csv module (and spreadsheets) write it; or separated by
    semicolons, as spreadsheets write CSV where the comma marks decimals, when the header has those alone."""
    first = next(lines, "")
    delimiter = ";" if ";" in first and "," not in first else ","
    separated = "semicolon-separated" if delimiter == ";" else "comma-separated"
    reader = csv.reader(chain([first], lines), delimiter=delimiter, strict=True)

    def advance(start: int) -> list[str] | None:
        """The next record; an error names the line where it starts (an open quote runs on to the end)."""
        try:
            return next(reader, None)
        except csv.Error as e:
            raise DataError(display, f"malformed CSV record ({e})", start) from None

    header = advance(1) or []

    def rows() -> _Rows:
        start = reader.line_num + 1
        while (fields := advance(start)) is not None:
            if fields and len(fields) != len(header):
                problem = f"{len(fields)} {separated} fields where the header has {len(header)}"
                raise DataError(display, problem, start)
            if fields:
                yield start, dict(zip(header, fields))
            start = reader.line_num + 1

    return header, rows()


_ROW_READERS = {"jsonl": _jsonl_rows, "tsv": _tsv_rows, "csv": _csv_rows}


@dataclass
class _Skipped:
    """The rows left out, by reason: how many, and the lines of the first few (`SKIPPED_LINES_KEPT`)."""

    counts: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, *lines: int) -> None:
        self.counts[reason] += len(lines)
        kept = self.lines.setdefault(reason, [])
        kept += lines[: SKIPPED_LINES_KEPT - len(kept)]


def _examples(
    header: list[str] | None, rows: _Rows, display: str, options: _Options, parts: tuple[str, ...]
) -> tuple[list[Example], _Skipped, _Fields]:
    fields = None if header is None else _resolve(header, options, parts, display, 1, header=True)
    examples: list[Example] = []
    skipped = _Skipped()
    seen_parts: set[str] = set()
    read_parts: Counter[str] = Counter()  # SICK's parts, read together when none was chosen
    # Keys named for a label, genre or id that no JSON row has yet (a header's columns are checked at once).
    unseen = {} if header is not None else {role: name for role, name in options.columns.items()
                                             if name is not None and role not in ("premise", "hypothesis")}
    for n, record in rows:
        fields = fields or _resolve(list(record), options, parts, display, n, header=False)
        for role in [role for role, name in unseen.items() if name in record]:
            del unseen[role]
        part = _text(record, SICK_SET_COLUMN, display, n).upper() if SICK_SET_COLUMN in record else None
        if parts:
            if part is None:  # a JSON row without the column
                skipped.add(f"no {SICK_SET_COLUMN}", n)
                continue
            seen_parts.add(part)
            if part not in parts:
                continue
        label = _row_column("label", record, fields, options)
        if label is not None and fields.label is None:  # the first labelled row: the file is labelled after all
            fields = replace(fields, label=label)
            if examples:
                skipped.add(_NO_LABEL_FIELD, *(e.line or 0 for e in examples))
                examples.clear()
        example = _example(record, fields, label, options, display, n)
        if example is None:
            skipped.add("empty premise or hypothesis", n)
        elif example.label is None and fields.label is not None:
            skipped.add(_no_gold_label(record, label, display, n), n)
        else:
            examples.append(example)
            if part is not None and not parts:
                read_parts[part] += 1
            if options.limit is not None and len(examples) >= options.limit:
                return examples, skipped, fields  # stopped early: the parts not yet seen may come later
    if len(read_parts) > 1:  # SICK's TEST part is no training data: say what was read, and how to choose
        names = sorted(read_parts, key=lambda p: (p != "TRAIN", p))
        warnings.warn(f"{display} holds SemEval-2014's {', '.join(names)} parts, and all were read ("
                      f"{', '.join(f'{p} {read_parts[p]:,}' for p in names)} pairs); to read one, name it after "
                      f"the file, as in SICK.txt:{names[0].lower()} (split='{names[0].lower()}' in Python)",
                      BertnliWarning, stacklevel=_caller())
    if unseen:
        role, name = next(iter(unseen.items()))
        raise DataError(display, f"no row has the key {name!r} named for the {role} (--columns {role}={name}; "
                                 f"columns= in Python)")
    missing = [p for p in parts if p not in seen_parts]
    if missing:
        found = ", ".join(sorted(seen_parts)) or "none"
        raise DataError(display, f"no rows with {SICK_SET_COLUMN} {', '.join(missing)} (found: {found})")
    if not examples or fields is None:
        skips = f" (skipped {describe_skipped(skipped.counts, skipped.lines)})" if skipped.counts else ""
        raise NoPairs(display, f"holds no examples{skips}")
    return examples, skipped, fields


def _resolve(
    available: list[str], options: _Options, parts: tuple[str, ...], display: str, line: int, *, header: bool
) -> _Fields:
    """Which column plays which role, from ``columns``, ``d2l_text`` and `DEFAULT_COLUMNS`. ``available``: a
    header, or the keys of a first JSON row (which may lack a label or genre that later rows have)."""
    chosen = {role: _column(role, available, options, display, line, header or role in ("premise", "hypothesis"))
              for role in ROLES}
    for role in ("premise", "hypothesis"):
        if chosen[role] is None and len(available) == 1 and "\t" in available[0]:
            raise DataError(display, "has tabs between the names in its header, and is read as another format: "
                                     "a tab-separated file? Read it with --format tsv (format='tsv' in Python)", line)
        if chosen[role] is None:
            raise DataError(
                display,
                f"cannot tell which column holds the {role} (tried {', '.join(DEFAULT_COLUMNS[role])}; "
                f"columns: {', '.join(available)}); name it, e.g. --columns {role}=... "
                f"(columns={{'{role}': '...'}} in Python)",
                line,
            )
    used = [*chosen.values(), SICK_SET_COLUMN if parts else None]
    twice = next((c for c in used if c and available.count(c) > 1), None)
    if twice:
        raise DataError(display, f"has two columns named {twice!r}; rename one, so that it is clear which to read",
                        line)
    if parts and SICK_SET_COLUMN not in available:
        raise DataError(display, f"has no {SICK_SET_COLUMN} column, so {'+'.join(parts).lower()} cannot be chosen "
                                 "in it (only SICK holds its splits in one file); read that split's own file, or the "
                                 "archive or folder that holds it", line)
    return _Fields(**chosen)  # type: ignore[arg-type]  # the premise's and hypothesis's, checked above


def _column(role: str, available: list[str], options: _Options, display: str, line: int, required: bool) -> str | None:
    if role in options.columns:
        name = options.columns[role]
        if name is not None and required and name not in available:
            raise DataError(display, f"no column {name!r} for the {role}; columns: {', '.join(available)}", line)
        return name
    if options.d2l_text and role in D2L_COLUMNS:
        if D2L_COLUMNS[role] not in available:
            raise DataError(
                display,
                f"d2l_text (--d2l-text) reads the {D2L_COLUMNS[role]} column, which this file lacks; the official "
                "SNLI / MultiNLI files (the .jsonl or .txt in snli_1.0.zip) have it",
                line,
            )
        return D2L_COLUMNS[role]
    return next((c for c in DEFAULT_COLUMNS[role] if c in available), None)


def _row_column(role: str, record: Mapping[str, Any], fields: _Fields, options: _Options) -> str | None:
    """The column holding the row's label, genre or id; None for a row without one (JSON lines may mix rows
    with and without each: SNLI's rows and MultiNLI's, unlabelled rows and labelled ones)."""
    column = getattr(fields, role)
    if column in record:
        return column
    if role in options.columns:
        return None
    return next((c for c in DEFAULT_COLUMNS[role] if c in record), None)


def _no_gold_label(record: Mapping[str, Any], column: str | None, display: str, n: int) -> str:
    """Why a row of a labelled file is skipped: its label value ("-", empty), or no label field at all."""
    if column is None:
        return _NO_LABEL_FIELD
    return f"no gold label ({_label_text(record, column, display, n).strip() or 'empty'})"


def _example(
    record: Mapping[str, Any], fields: _Fields, label_column: str | None, options: _Options, display: str, n: int
) -> Example | None:
    """One Example, labelled from ``label_column``; its label is None for a row without one and for a row
    with no gold label. None for a row whose premise or hypothesis is empty (the caller counts it as skipped)."""
    texts = []
    for role in ("premise", "hypothesis"):
        text = _text(record, getattr(fields, role), display, n)
        text = _d2l_clean(text) if options.d2l_text else text
        if is_blank(text):
            return None
        texts.append(text)
    label = None
    if label_column is not None:
        try:
            label = parse_label(_label_text(record, label_column, display, n), options.label_map)
        except ValueError as e:
            raise DataError(display, str(e), n) from None
    # A genre or an id is optional row by row: JSON lines may mix rows with and without one.
    column = _row_column("genre", record, fields, options)
    genre = _text(record, column, display, n) if column is not None else None
    return Example(texts[0], texts[1], label, genre or None, n, _pair_id(record, fields, options, display, n))


def _pair_id(record: Mapping[str, Any], fields: _Fields, options: _Options, display: str, n: int) -> str | int | None:
    """The row's name for its pair, a string or a whole number as the file holds it; None for a row without."""
    column = _row_column("id", record, fields, options)
    value = None if column is None else record[column]
    problem = id_problem(value)
    if problem:
        raise DataError(display, f"id {column!r} {problem}", n)
    return value if value != "" else None


def _field(record: Mapping[str, Any], column: str, display: str, n: int) -> Any:
    try:
        return record[column]
    except KeyError:
        raise DataError(display, f"no {column!r} field", n) from None


def _text(record: Mapping[str, Any], column: str, display: str, n: int) -> str:
    """The text in ``column``; "" for a missing value (JSON null, as pandas writes NaN)."""
    value = _field(record, column, display, n)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(display, f"{column!r} is {json.dumps(value)}, not text", n)
    problem = surrogate_problem(value)
    if problem:
        raise DataError(display, f"{column!r} {problem}", n)
    return value


def _label_text(record: Mapping[str, Any], column: str, display: str, n: int) -> str:
    """The raw label in ``column``; "" for a missing value."""
    value = _field(record, column, display, n)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(display, f"label {column!r} is {json.dumps(value)}, not a name or number", n)
    return str(value)


def _d2l_clean(text: str) -> str:
    """d2l's ``extract_text``: drop brackets, squeeze runs of 2+ whitespace to one space, strip."""
    return _SPACES.sub(" ", text.replace("(", "").replace(")", "")).strip()
