"""Hugging Face BERT folders: ``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, and
``tokenizer.json`` and/or ``vocab.txt``.

Reads `BertModel` checkpoints (unprefixed names) and `BertFor*` ones (``bert.``-prefixed, plus ``cls.*``
heads), and NLI classifiers whole (`load_hf_classifier`); writes `BertForSequenceClassification`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from bertnli.data.labels import KNOWN_LABELS
from bertnli.errors import CheckpointError, ConfigError
from bertnli.model.bert import Activation, BERTClassifier, BertConfig, BERTModel
from bertnli.text.tokenizers import Tokenizer, load_tokenizer
from bertnli.weights.files import StateDict, read_json_object, read_safetensors, read_torch
from bertnli.weights.keymap import KeyMap, Rule, check_vocab, empty_model, make_config

_LAYER = "encoder.layer.{i}."
_ENCODER_RULES: tuple[Rule, ...] = (
    ("encoder.embeddings.token.weight", "embeddings.word_embeddings.weight"),
    ("encoder.embeddings.segment.weight", "embeddings.token_type_embeddings.weight"),
    ("encoder.embeddings.position.weight", "embeddings.position_embeddings.weight"),
    ("encoder.embeddings.norm.{p}", "embeddings.LayerNorm.{p}"),
    ("encoder.blocks.{i}.attention.qkv.{p}", *(f"{_LAYER}attention.self.{x}.{{p}}" for x in ("query", "key", "value"))),
    ("encoder.blocks.{i}.attention.out.{p}", _LAYER + "attention.output.dense.{p}"),
    ("encoder.blocks.{i}.norm1.{p}", _LAYER + "attention.output.LayerNorm.{p}"),
    ("encoder.blocks.{i}.ffn.up.{p}", _LAYER + "intermediate.dense.{p}"),
    ("encoder.blocks.{i}.ffn.down.{p}", _LAYER + "output.dense.{p}"),
    ("encoder.blocks.{i}.norm2.{p}", _LAYER + "output.LayerNorm.{p}"),
    ("hidden.dense.{p}", "pooler.dense.{p}"),
)
_HEAD_RULES: tuple[Rule, ...] = (
    ("mlm.dense.{p}", "cls.predictions.transform.dense.{p}"),
    ("mlm.norm.{p}", "cls.predictions.transform.LayerNorm.{p}"),
    ("mlm.decoder.weight", "cls.predictions.decoder.weight"),
    ("mlm.decoder.bias", "cls.predictions.bias"),
    ("nsp.output.{p}", "cls.seq_relationship.{p}"),
    ("output.{p}", "classifier.{p}"),
)
_ACTIVATIONS: dict[str, Activation] = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: The metadata key that marks the weights of a Hugging Face export as bertnli's.
EXPORT_MARK = "bertnli_export"
_WORDS = "embeddings.word_embeddings.weight"
#: Buffers some versions of `transformers` save beside the weights: 0, 1, 2, ... and zeros.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def hf_keys(prefix: str) -> KeyMap:
    """Our names ↔ Hugging Face's, with ``prefix`` ("bert." or "") on the encoder and pooler."""
    encoder = tuple((ours, *(prefix + t for t in theirs)) for ours, *theirs in _ENCODER_RULES)
    return KeyMap(encoder + _HEAD_RULES, owned=tuple(prefix + part for part in ("embeddings.", "encoder.", "pooler.")))


def load_huggingface(directory: str | Path) -> tuple[BERTModel, Tokenizer]:
    """Load a Hugging Face BERT folder: encoder, pooler, and the MLM / NSP heads where present."""
    directory = Path(directory)
    config = read_json_object(directory / "config.json")
    cfg = config_from_hf(config, directory / "config.json")
    state, source = _read_weights(directory)
    prefix = "bert." if f"bert.{_WORDS}" in state else ""
    state = _normalize(state, prefix, tied=config.get("tie_word_embeddings", True))
    _add_missing_pooler(state, prefix, cfg.hidden_size, config.get("initializer_range", 0.02))
    mlm, nsp = "cls.predictions.transform.dense.weight" in state, "cls.seq_relationship.weight" in state
    model = empty_model(BERTModel, cfg, mlm, nsp)
    hf_keys(prefix).load(model, state, source)
    tokenizer = load_tokenizer(directory, lowercase=_lowercase(directory))
    check_vocab(tokenizer, cfg, directory)
    return model, tokenizer


def is_classifier(config: Mapping[str, Any]) -> bool:
    """Whether a Hugging Face ``config.json`` describes a sequence classifier (`BertForSequenceClassification`)."""
    return any(str(name).endswith("ForSequenceClassification") for name in config.get("architectures") or [])


def classifier_labels(directory: Path, config: Mapping[str, Any]) -> list[str] | None:
    """The NLI label that each output of the Hugging Face classifier in ``directory`` (its ``config``) scores,
    read off its ``id2label`` in any case (``ENTAILMENT`` is entailment) and any order; None when a name is none
    of them (``LABEL_0``), unless the classifier is a bertnli export, whose names are its model's own."""
    id2label = config.get("id2label")
    if not isinstance(id2label, Mapping) or not id2label:
        return None
    names = [str(id2label.get(str(i), "")).strip().lower() for i in range(len(id2label))]
    named = all(names) and len(set(names)) == len(names)
    return names if named and (set(names) <= set(KNOWN_LABELS) or is_bertnli_export(directory)) else None


def is_bertnli_export(directory: Path) -> bool:
    """Whether ``directory``'s weights carry the mark that bertnli's Hugging Face exports put in their metadata."""
    weights = directory / "model.safetensors"
    if not weights.is_file():
        return False
    try:
        with safe_open(weights, framework="pt") as f:
            return EXPORT_MARK in (f.metadata() or {})
    except (OSError, SafetensorError):
        return False


def outputs_named(config: Mapping[str, Any]) -> str:
    """How a classifier's ``config.json`` names its outputs, for a message: its id2label, or that it has none."""
    return f"id2label {config['id2label']!r} names its outputs" if config.get("id2label") else "it has no id2label"


def load_hf_classifier(directory: Path) -> tuple[BERTClassifier, Tokenizer, list[str], int]:
    """A Hugging Face `BertForSequenceClassification` trained for NLI, as bertnli's classifier (eval mode, CPU):
    the network, its tokenizer, the label each output scores (`classifier_labels`), and the max_len its
    tokenizer records (at most its positions; 512 when it records none)."""
    source = directory / "config.json"
    config = read_json_object(source)
    cfg = config_from_hf(config, source)  # first: a classifier of another architecture is refused as such
    labels = classifier_labels(directory, config)
    if labels is None:
        raise CheckpointError(source, f"{outputs_named(config)}, not NLI labels "
                                      f"({', '.join(KNOWN_LABELS)}, in any case); name each output there, as in "
                                      '{"0": "entailment", "1": "neutral", "2": "contradiction"}, in the order '
                                      "the model was trained with")
    state, weights = _read_weights(directory)
    model = empty_model(BERTClassifier, cfg, len(labels))
    hf_keys("bert.").load(model, _normalize(state, "bert.", tied=False), weights)
    tokenizer = load_tokenizer(directory, lowercase=_lowercase(directory))
    check_vocab(tokenizer, cfg, directory)
    return model.eval(), tokenizer, labels, _max_len(directory, cfg)


def _max_len(directory: Path, cfg: BertConfig) -> int:
    """The longest input a classifier's tokenizer records (``model_max_length``) where its positions allow it;
    otherwise 512, or fewer positions."""
    path = directory / "tokenizer_config.json"
    recorded = read_json_object(path).get("model_max_length") if path.is_file() else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and 3 <= recorded <= cfg.max_position:
        return recorded
    return min(cfg.max_position, 512)


def _add_missing_pooler(state: StateDict, prefix: str, hidden: int, std: float) -> None:
    """Checkpoints saved without a pooler (`BertForMaskedLM`, for one) get a fresh one, initialised as
    `transformers` does: the classifier built on it learns it during fine-tuning."""
    if f"{prefix}pooler.dense.weight" in state:
        return
    state[f"{prefix}pooler.dense.weight"] = torch.randn(hidden, hidden) * std
    state[f"{prefix}pooler.dense.bias"] = torch.zeros(hidden)


def config_from_hf(config: Mapping[str, Any], source: Path) -> BertConfig:
    """Our `BertConfig` for a Hugging Face BERT ``config.json``."""
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError(source, f"model_type is {model_type!r}; only BERT ('bert') checkpoints load")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise CheckpointError(source, f"position_embedding_type {position!r} is not supported (only 'absolute')")
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(source, f"hidden_act {act!r} is not supported ({', '.join(_ACTIVATIONS)})")
    hidden, heads = _number(config, "hidden_size", source), _number(config, "num_attention_heads", source)
    if hidden % heads:
        raise CheckpointError(source, f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    return make_config(
        source,
        vocab_size=_number(config, "vocab_size", source),
        hidden_size=hidden,
        num_layers=_number(config, "num_hidden_layers", source),
        num_heads=heads,
        ffn_size=_number(config, "intermediate_size", source),
        max_position=_number(config, "max_position_embeddings", source),
        type_vocab_size=_number(config, "type_vocab_size", source, 2),
        activation=_ACTIVATIONS[act],
        layer_norm_eps=_number(config, "layer_norm_eps", source, 1e-12, integer=False),
        embedding_norm=True,
        dropout=_number(config, "hidden_dropout_prob", source, 0.1, integer=False, below=1),
        attention_dropout=_number(config, "attention_probs_dropout_prob", source, 0.1, integer=False, below=1),
    )


def hf_config(cfg: BertConfig, id2label: Mapping[int, str] | Mapping[str, str]) -> dict[str, Any]:
    """``config.json`` of a `BertForSequenceClassification` with ``cfg``'s architecture."""
    _check_exportable(cfg)
    labels = {int(i): name for i, name in id2label.items()}
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_size,
        "hidden_act": _HF_ACTIVATIONS[cfg.activation],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
        "id2label": {str(i): name for i, name in sorted(labels.items())},
        "label2id": {name: i for i, name in sorted(labels.items())},
    }


def to_hf_state_dict(model: BERTClassifier) -> dict[str, torch.Tensor]:
    """``model``'s weights under `BertForSequenceClassification` names (independent tensors)."""
    _check_exportable(model.config)
    return hf_keys("bert.").export(model.state_dict())


def _check_exportable(cfg: BertConfig) -> None:
    if not cfg.embedding_norm:
        raise ConfigError(
            "a d2l-style model (no embedding LayerNorm) has no Hugging Face BERT equivalent; export it with "
            "--format onnx, or fine-tune a Hugging Face checkpoint"
        )


def _number(
    config: Mapping[str, Any], key: str, source: Path, default: float | None = None, *, integer: bool = True,
    below: float = math.inf,
) -> Any:
    """``config[key]``: a positive integer, or with ``integer=False`` a non-negative number under ``below``."""
    value = config.get(key, default)
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool) or not 0 <= value < below or (integer and value == 0):
        bound = f" below {below}" if below < math.inf else ""
        wanted = "a positive integer" if integer else f"a non-negative number{bound}"
        raise CheckpointError(source, f"{key} must be {wanted}, not {value!r}")
    return value


def _read_weights(directory: Path) -> tuple[StateDict, Path]:
    """The weights of a folder: one file, or the shards its index names (``model.safetensors.index.json``, as
    `save_pretrained` writes a large model)."""
    for name in _WEIGHT_FILES:
        whole, index = directory / name, directory / f"{name}.index.json"
        read = read_safetensors if name.endswith(".safetensors") else (lambda path: read_torch(path, path))
        if whole.is_file():
            return read(whole), whole
        if index.is_file():
            shards = read_json_object(index).get("weight_map")
            if not isinstance(shards, dict) or not all(isinstance(f, str) for f in shards.values()):
                raise CheckpointError(index, "has no weight_map of tensor names to shard files")
            state: StateDict = {}
            for shard in sorted(set(shards.values())):
                state.update(read(directory / shard))
            return state, index
    raise CheckpointError(directory, f"no weights found (expected {' or '.join(_WEIGHT_FILES)}, or the shards "
                                     "that an index of either names)")


def _normalize(state: StateDict, prefix: str, tied: bool) -> StateDict:
    """Old LayerNorm names (``gamma``/``beta``), the tensors a tied MLM decoder leaves unsaved, and no
    `_BUFFERS`."""
    state = {_modern_name(k): v for k, v in state.items() if not k.endswith(_BUFFERS)}
    if "cls.predictions.bias" not in state and "cls.predictions.decoder.bias" in state:
        state["cls.predictions.bias"] = state["cls.predictions.decoder.bias"]
    has_mlm = "cls.predictions.transform.dense.weight" in state
    if has_mlm and tied and "cls.predictions.decoder.weight" not in state and prefix + _WORDS in state:
        state["cls.predictions.decoder.weight"] = state[prefix + _WORDS]
    return state


def _modern_name(key: str) -> str:
    for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def _lowercase(directory: Path) -> bool:
    """``do_lower_case`` from ``tokenizer_config.json`` (BERT's default, True, without one)."""
    path = directory / "tokenizer_config.json"
    return bool(read_json_object(path).get("do_lower_case", True)) if path.is_file() else True
