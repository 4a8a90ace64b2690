"""Our own model folder: ``config.json`` (architecture, labels, max_len), ``model.safetensors``, tokenizer files.

``config.json``'s ``"format": "bertnli"`` tells it apart from a Hugging Face folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from bertnli.errors import CheckpointError
from bertnli.model.bert import BERTClassifier, BertConfig
from bertnli.text.tokenizers import WORD_RULES, Tokenizer, load_tokenizer
from bertnli.weights.d2l import PARAMS
from bertnli.weights.files import atomic_directory, read_json_object, read_safetensors
from bertnli.weights.huggingface import is_classifier, load_hf_classifier
from bertnli.weights.keymap import (
    check_finite,
    check_shapes,
    check_unexpected,
    check_vocab,
    empty_model,
    unshared,
)
from bertnli.weights.sources import is_d2l_name, is_minilm

FORMAT = "bertnli"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
#: Every file a model folder may hold. Saving over a folder drops the ones not written again (a reader
#: would take an older model's vocab.json for this one's) and keeps any other file found there.
MODEL_FILES = (CONFIG, WEIGHTS, "vocab.json", WORD_RULES, "tokenizer.json", "vocab.txt")
#: The labels and settings of an ONNX export (`bertnli.export`), which mark its folder as one.
ONNX_META = "bertnli_onnx.json"


@dataclass
class SavedClassifier:
    """A fine-tuned classifier as saved: the model (eval mode, CPU) and what it needs to be used."""

    model: BERTClassifier
    tokenizer: Tokenizer
    labels: list[str]
    max_len: int
    meta: dict[str, Any]


def is_native(directory: Path) -> bool:
    """Whether ``directory`` holds a model saved by `save_classifier`."""
    config = Path(directory) / CONFIG
    return config.is_file() and read_json_object(config).get("format") == FORMAT


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory stands for the model it trained (``RUN/model``); any other path for itself."""
    path = Path(path).expanduser()
    return path / "model" if is_native(path / "model") else path


def save_classifier(
    directory: str | Path,
    model: BERTClassifier,
    tokenizer: Tokenizer,
    labels: list[str],
    max_len: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``directory`` atomically: a reader sees the old folder or the new one, never half of one.

    ``labels[i]`` names the model's output ``i``; ``extra`` adds entries to ``config.json``.
    """
    if len(labels) != model.output.out_features:
        raise ValueError(f"{len(labels)} labels for a model with {model.output.out_features} outputs")
    if not 3 <= max_len <= model.config.max_position:
        raise ValueError(f"max_len {max_len} for a model with {model.config.max_position} positions")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "labels": list(labels),
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "max_len": max_len,
    }
    clashes = set(config) & set(extra or {})
    if clashes:
        raise ValueError(f"extra entries would overwrite {sorted(clashes)}")
    config.update(extra or {})
    tensors = {key: t.detach().cpu().contiguous() for key, t in model.state_dict().items()}
    with atomic_directory(Path(directory), is_native, MODEL_FILES) as staging:
        save_file(tensors, str(staging / WEIGHTS), metadata={"format": "pt"})
        tokenizer.save(staging)
        (staging / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_classifier(directory: str | Path) -> SavedClassifier:
    """Read a folder written by `save_classifier`, or a Hugging Face BERT classifier whose ``id2label`` names
    NLI labels (a bertnli export among them)."""
    directory = Path(directory)
    pretrained = (f"a pretrained checkpoint, not a model fine-tuned by bertnli: fine-tune it first "
                  f"(bertnli train --model {directory} ...), then load the run")
    if not directory.is_dir():
        name = str(directory)
        if (directory.is_file() and directory.suffix.lower() == ".zip") or is_minilm(name) or is_d2l_name(name):
            raise CheckpointError(directory, pretrained)
        if directory.is_file():
            holder = (f": the model folder that holds it is {directory.parent}" if is_native(directory.parent) else
                      f": the run that holds it is {directory.parent}" if is_native(directory.parent / "model") else "")
            raise CheckpointError(directory, f"a file, not a model folder (a fine-tuned model is a run directory or "
                                             f"its model/){holder}")
        raise CheckpointError(directory, "no such model folder (a fine-tuned model: a run directory or its model/)")
    if not (directory / CONFIG).is_file():
        if (directory / PARAMS).is_file():
            raise CheckpointError(directory, pretrained)
        if (directory / ONNX_META).is_file():
            raise CheckpointError(directory, "an ONNX export, which onnxruntime runs (see bertnli export --help); "
                                             "bertnli loads the run or model folder it was exported from")
        raise CheckpointError(directory, "not a bertnli model folder or run directory (no config.json)")
    meta = read_json_object(directory / CONFIG)
    source = directory / CONFIG
    if meta.get("format") != FORMAT:
        if is_classifier(meta):
            return SavedClassifier(*load_hf_classifier(directory), meta)
        if meta.get("model_type") == "bert":
            raise CheckpointError(directory, pretrained)
        if "train" in meta:  # a run's own config.json: the run has not saved its model/ yet
            then = (f"resume it (bertnli train --resume {directory})" if (directory / "checkpoint.pt").is_file()
                    else "it stopped before saving a checkpoint: train it again")
            raise CheckpointError(directory, f"a training run with no model yet (its model is saved when its first "
                                             f"epoch ends): {then}")
        raise CheckpointError(source, f'not a bertnli model (expected "format": "{FORMAT}")')
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(source, f"format_version {version!r} is not one this bertnli reads (1–{FORMAT_VERSION})")
    cfg, labels, max_len = _parse(meta, source)
    model = empty_model(BERTClassifier, cfg, len(labels))
    _fill(model, directory / WEIGHTS)
    tokenizer = load_tokenizer(directory)
    check_vocab(tokenizer, cfg, directory)
    return SavedClassifier(model.eval(), tokenizer, labels, max_len, meta)


def _fill(model: BERTClassifier, path: Path) -> None:
    """Give ``model`` (on the meta device) the tensors in ``path``, after checking names, shapes and values."""
    state = read_safetensors(path)
    expected = model.state_dict()
    check_shapes(state, expected, path)
    check_unexpected(state, expected, ("",), path)
    check_finite(state, path)
    model.load_state_dict(unshared({key: state[key].float() for key in expected}), assign=True)


def _parse(meta: dict[str, Any], source: Path) -> tuple[BertConfig, list[str], int]:
    labels, max_len, network = meta.get("labels"), meta.get("max_len"), meta.get("model")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(source, "labels must be a non-empty list of names")
    if len(set(labels)) != len(labels):
        raise CheckpointError(source, f"labels name an output twice: {labels}")
    if "id2label" in meta and meta["id2label"] != {str(i): label for i, label in enumerate(labels)}:
        raise CheckpointError(source, f"id2label {meta['id2label']!r} contradicts labels {labels}")
    if not isinstance(network, dict):
        raise CheckpointError(source, f"model must be an object of the network's settings, not {network!r}")
    try:
        cfg = BertConfig.from_dict(network)
    except ValueError as exc:
        raise CheckpointError(source, f"bad model entry: {exc}") from None
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 3 <= max_len <= cfg.max_position:
        raise CheckpointError(source, f"max_len must be an integer from 3 to the model's {cfg.max_position} "
                                      f"positions, not {max_len!r}")
    return cfg, labels, max_len
