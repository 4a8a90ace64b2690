"""Label names, label-number mappings, and the 3-class → 2-class merge.

Files are read by label *name*. Numbers are accepted only through an explicit mapping, because
different tools number the classes differently (d2l: entailment 0, contradiction 1, neutral 2;
GLUE / Hugging Face: entailment 0, neutral 1, contradiction 2) and a mixed-up order fails silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from bertnli.data.example import D2L_LABELS, NLI_LABELS, Dataset
from bertnli.errors import ConfigError, DataError

#: Every label name a reader accepts (lower case); ``not_entailment`` is the 2-class RTE label.
KNOWN_LABELS: tuple[str, ...] = (*NLI_LABELS, "not_entailment")
#: Label values that mean "no gold label" (SNLI/MultiNLI ``-``; -1 in Hugging Face exports): rows dropped.
NO_GOLD_LABELS: frozenset[str] = frozenset({"-", "-1"})
#: Named number → name mappings for ``label_map``.
LABEL_PRESETS: dict[str, dict[str, str]] = {
    "glue": {str(i): name for i, name in enumerate(NLI_LABELS)},
    "d2l": {str(i): name for i, name in enumerate(D2L_LABELS)},
}
#: The 2-class (RTE) task's labels, in the order 2-class models use.
TWO_CLASS_LABELS: tuple[str, ...] = ("entailment", "not_entailment")
#: How 3-class labels map onto the 2-class (RTE) task.
TWO_CLASS_MAP: dict[str, str] = {
    "entailment": "entailment",
    "neutral": "not_entailment",
    "contradiction": "not_entailment",
    "not_entailment": "not_entailment",
}

_NUMBER = re.compile(r"-?\d+(?:\.\d*)?")


def require_labelled(dataset: Dataset) -> None:
    """Refuse training data without a labelled pair, naming where labels are read from."""
    if not dataset.label_counts():
        raise DataError(dataset.name, "has no labelled pairs: training needs a gold label for each pair (a column "
                                      "label or gold_label, or one named by --columns label=NAME; columns={'label': "
                                      "NAME} in Python)")


def resolve_label_map(label_map: Mapping[str | int, str] | str | None) -> dict[str, str] | None:
    """A preset name ("glue", "d2l") or a mapping of raw label → label name, as {lower-case raw: lower-case name}
    (raw labels match in any case, as label names do)."""
    if label_map is None:
        return None
    if isinstance(label_map, str):
        if label_map.lower() not in LABEL_PRESETS:
            raise ConfigError(f"unknown label mapping {label_map!r}; presets: {', '.join(LABEL_PRESETS)}")
        return dict(LABEL_PRESETS[label_map.lower()])
    resolved: dict[str, str] = {}
    for raw, name in label_map.items():
        key, name = str(raw).strip().lower(), str(name).strip().lower()
        if resolved.setdefault(key, name) != name:
            raise ConfigError(f"label mapping gives {key!r} two labels, {resolved[key]} and {name} (raw labels match "
                              "in any case)")
    unknown = sorted(set(resolved.values()) - set(KNOWN_LABELS))
    if unknown:
        raise ConfigError(f"label mapping targets unknown label(s) {', '.join(unknown)}; use {', '.join(KNOWN_LABELS)}")
    return resolved


def parse_label(raw: str, label_map: Mapping[str, str] | None = None) -> str | None:
    """The lower-case label name for a raw value, or None for "no gold label" (``-``, ``-1``, empty).

    ``label_map`` (already resolved) is tried first, then the known names in any case. Raises ValueError
    with a message meant for the user when the value cannot be read.
    """
    raw = raw.strip()
    if label_map and raw.lower() in label_map:
        return label_map[raw.lower()]
    if raw.lower() in KNOWN_LABELS:
        return raw.lower()
    if raw in NO_GOLD_LABELS or not raw:
        return None
    if _NUMBER.fullmatch(raw):
        if label_map:
            raise ValueError(f"label {raw!r} is not in the label mapping (it maps {', '.join(label_map)})")
        raise ValueError(
            f"label {raw!r} is a number, and label numbers are ambiguous (d2l: entailment 0, contradiction 1, "
            "neutral 2; GLUE / Hugging Face: entailment 0, neutral 1, contradiction 2). Pass a label mapping: "
            "--label-map glue, --label-map d2l or e.g. --label-map 0=entailment,1=neutral,2=contradiction "
            "(in Python: label_map='glue', 'd2l' or a dict)"
        )
    if label_map:
        raise ValueError(f"label {raw!r} is not in the label mapping (it maps {', '.join(label_map)}) nor a known "
                         f"label ({', '.join(KNOWN_LABELS)}); add it to the mapping: --label-map '...,{raw}=<label>' "
                         f"({{..., {raw!r}: <label>}} in Python)")
    raise ValueError(
        f"unknown label {raw!r}; known labels are {', '.join(KNOWN_LABELS)} (map others to them: --label-map "
        f"'{raw}=<label>,...'; label_map= in Python)"
    )


def merge_to_two_classes(dataset: Dataset) -> Dataset:
    """Neutral and contradiction become ``not_entailment``: for 3-class models on 2-class (RTE) data."""
    unknown = {e.label for e in dataset.examples if e.label is not None} - TWO_CLASS_MAP.keys()
    if unknown:
        raise DataError(dataset.name, f"labels {sorted(unknown)} have no two-class counterpart")
    examples = [replace(e, label=TWO_CLASS_MAP[e.label] if e.label else None) for e in dataset.examples]
    return Dataset(f"{dataset.name}[2-class]", examples, dataset.skipped.copy(), tokenised=dataset.tokenised,
                   predicted=dataset.predicted, skipped_lines={k: list(v) for k, v in dataset.skipped_lines.items()})
