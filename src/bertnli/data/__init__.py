"""NLI data: examples, readers for SNLI / MultiNLI / SICK / RTE / CSV / TSV / JSONL, downloads, splits."""

from bertnli.data.download import cached_path, data_cache_dir, dataset_splits, download
from bertnli.data.example import D2L_LABELS, NLI_LABELS, Dataset, Example
from bertnli.data.labels import (
    KNOWN_LABELS,
    LABEL_PRESETS,
    TWO_CLASS_LABELS,
    TWO_CLASS_MAP,
    merge_to_two_classes,
    parse_label,
    resolve_label_map,
)
from bertnli.data.readers import read_dataset
from bertnli.data.splits import train_validation_split

__all__ = [
    "D2L_LABELS",
    "KNOWN_LABELS",
    "LABEL_PRESETS",
    "NLI_LABELS",
    "TWO_CLASS_LABELS",
    "TWO_CLASS_MAP",
    "Dataset",
    "Example",
    "cached_path",
    "data_cache_dir",
    "dataset_splits",
    "download",
    "merge_to_two_classes",
    "parse_label",
    "read_dataset",
    "resolve_label_map",
    "train_validation_split",
]
