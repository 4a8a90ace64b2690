"""The unit of NLI data: a premise, a hypothesis and (when known) a label name."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import overload

#: The three NLI classes, in the GLUE / Hugging Face order that new models use by default.
NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
#: The order used by the "Dive into Deep Learning" SNLI code.
D2L_LABELS: tuple[str, ...] = ("entailment", "contradiction", "neutral")


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only white space, control characters (NUL) and invisible format
    characters (zero-width spaces)."""
    if text.isprintable():  # the usual case, decided in C: no control or format characters
        return not text.strip()
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def surrogate_problem(text: str) -> str | None:
    """What is wrong with a text that holds an unpaired surrogate (JSON can carry half of an emoji's escape,
    ``\\ud83d``, which is not Unicode text and which no tokenizer takes); None for a text without one."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return f"holds the escape \\u{ord(found.group()):04x}, half of a surrogate pair: not valid Unicode text"


def id_problem(value: object) -> str | None:
    """What is wrong with a pair's id, which must be a string or an integer as JSON writes them (not true, not
    1.5); None for a good one, or none at all."""
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"is {json.dumps(value)}, not a string or an integer"


@dataclass(frozen=True, slots=True)
class Example:
    """One premise–hypothesis pair. ``label`` is a lower-case name, or None when unlabelled. ``line``: where
    the pair was read, in its file (1-based), and ``id``: its name there (SNLI's ``pairID``, a column ``id``);
    neither is part of the pair's identity."""

    premise: str
    hypothesis: str
    label: str | None = None
    genre: str | None = None
    line: int | None = field(default=None, compare=False)
    id: str | int | None = field(default=None, compare=False)


@dataclass
class Dataset:
    """Examples read from one source, a count of the rows left out by reason, (for a file) which column held
    the premise, the hypothesis, the label and the genre, and whether the texts are already tokenised."""

    name: str
    examples: list[Example]
    skipped: Counter[str] = field(default_factory=Counter)
    columns: dict[str, str] = field(default_factory=dict)  # read from a file: the column of each role
    tokenised: bool = False  # the texts are d2l's tokenised parses (read with d2l_text), punctuation apart
    predicted: bool = False  # read from predictions bertnli wrote: the labels are a model's answers
    # The lines of the first few rows skipped for each reason (a file's), to find them by.
    skipped_lines: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)
    # A part of another dataset (`train_validation_split`): that whole, and the positions of these pairs in it.
    drawn_from: tuple[Dataset, list[int]] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Every item an `Example` with texts and a label name (or None): a pandas missing value (NaN) or a
        bare tuple is named here, rather than failing deep inside encoding."""
        if not isinstance(self.examples, list):  # a generator, a tuple: held as a list (a list is not copied)
            self.examples = list(self.examples)
        for i, example in enumerate(self.examples):
            if not isinstance(example, Example):
                raise TypeError(f"{self.name}: item {i} is a {type(example).__name__}, not an Example; build "
                                f"pairs as Example(premise, hypothesis, label)")
            for role in ("premise", "hypothesis", "label"):
                value = getattr(example, role)
                if not isinstance(value, str) and not (role == "label" and value is None):
                    advice = ("labels are names such as 'entailment' (read_dataset's label_map turns numbers "
                              "into names)" if role == "label" and isinstance(value, int) else
                              "not text; drop or fill missing values first")
                    raise TypeError(f"{self.name}: pair {i} has {role} {value!r} (a {type(value).__name__}); "
                                    f"{advice}")

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> Dataset: ...
    def __getitem__(self, index: int | slice) -> Example | Dataset:
        """An example, or for a slice (``data[:1000]``) a dataset of those examples, named for the cut."""
        if isinstance(index, slice):  # named as written: data[:1000] is "name[:1000]"
            cut = ":".join("" if part is None else str(part) for part in (index.start, index.stop, index.step))
            return Dataset(f"{self.name}[{cut.removesuffix(':')}]", self.examples[index], columns=self.columns,
                           tokenised=self.tokenised, predicted=self.predicted)
        return self.examples[index]

    def __repr__(self) -> str:
        return f"<Dataset {self.describe()}>"

    def label_counts(self) -> Counter[str]:
        return Counter(e.label for e in self.examples if e.label is not None)

    def describe(self) -> str:
        """One line: size, labels and what was skipped."""
        labels = ", ".join(f"{k} {v:,}" for k, v in sorted(self.label_counts().items()))
        text = f"{self.name}: {len(self):,} pair{'s' * (len(self) != 1)} ({labels or 'unlabelled'})"
        if self.skipped:
            text += "; skipped " + describe_skipped(self.skipped, self.skipped_lines)
        return text


def describe_skipped(counts: Mapping[str, int], lines: Mapping[str, list[int]]) -> str:
    """What was skipped, by reason, with the lines of the first few rows: "2 empty premise or hypothesis (lines 4,
    9)"."""
    def where(reason: str, count: int) -> str:
        shown = lines.get(reason) or []
        more = ", ..." if count > len(shown) else ""
        return f" (line{'s' * (count > 1)} {', '.join(map(str, shown))}{more})" if shown else ""

    return ", ".join(f"{count:,} {reason}{where(reason, count)}" for reason, count in sorted(counts.items()))
