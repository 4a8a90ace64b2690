"""Export a saved model to the Hugging Face or the ONNX ecosystem.

``hf``: a `BertForSequenceClassification` folder (``config.json`` with ``id2label``, ``model.safetensors``,
tokenizer files) for ``transformers.pipeline("text-classification", model=folder)``.
``onnx``: ``model.onnx`` (int64 ``input_ids``, ``token_type_ids``, ``attention_mask`` of shape (batch,
sequence) → float ``logits`` (batch, labels)), the same tokenizer files, and ``bertnli_onnx.json`` (labels,
max_len).

The tokenizer files reproduce bertnli's pair encoding: ``tokenizer.json`` packs a pair as
``<cls> premise <sep> hypothesis <sep>`` with token_type_ids 0…0 1…1 and truncates to ``max_len``.
Truncation follows the Hugging Face "longest_first" rule, which matches bertnli's except when both texts
must be cut and ``max_len - 3`` is odd: then the one extra token goes to the longer text (the hypothesis
on a tie) rather than to the premise. With ``transformers``, pass ``truncation=True``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Regex, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as FastTokenizer
from torch import nn

from bertnli.errors import CheckpointError, ConfigError
from bertnli.inference import NLIModel
from bertnli.model import BERTClassifier
from bertnli.text.tokenizers import D2L_SPECIALS, WORDPIECE_SPECIALS, Tokenizer, WordPieceTokenizer, WordTokenizer
from bertnli.weights import hf_config, to_hf_state_dict
from bertnli.weights.files import atomic_directory
from bertnli.weights.huggingface import EXPORT_MARK, is_bertnli_export
from bertnli.weights.native import ONNX_META, is_native

ONNX_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
ONNX_OPSET = 17


def export(model_path: str | Path, out_dir: str | Path, format: str) -> Path:
    """Write ``model_path`` (a run directory or a model folder) to ``out_dir`` in ``format`` (hf or onnx).

    The folder is written next to ``out_dir`` and renamed into place when complete. An existing
    ``out_dir`` is replaced only if it is empty or an earlier export of the same format.
    """
    if format not in _WRITERS:
        raise ConfigError(f"unknown export format {format!r}; choose {' or '.join(_WRITERS)}")
    writer, is_export = _WRITERS[format]
    model = NLIModel.load(model_path, device="cpu", precision="fp32")
    out = Path(out_dir)
    other = next((name for name, (_, is_other) in _WRITERS.items() if name != format and is_other(out)), None)
    if other is not None:
        raise CheckpointError(out, f"holds a --format {other} export; export each format to a folder of its own")
    with atomic_directory(out, is_export) as staging:
        writer(model, staging)
    return out


# ---- Hugging Face ----------------------------------------------------------------------------------
def write_hf(model: NLIModel, directory: Path) -> None:
    """A `BertForSequenceClassification` folder in ``directory``."""
    config = hf_config(model.network.config, dict(enumerate(model.labels)))
    config["pad_token_id"] = model.tokenizer.pad_id
    _write_json(directory / "config.json", config)
    save_file(to_hf_state_dict(model.network), str(directory / "model.safetensors"),
              metadata={"format": "pt", EXPORT_MARK: "1"})
    write_tokenizer(model.tokenizer, model.max_len, directory)


def _is_hf_export(directory: Path) -> bool:
    """An earlier Hugging Face export by bertnli, told by the mark in its weights' metadata: it may be replaced
    (never another Hugging Face model, nor a bertnli model folder)."""
    return is_bertnli_export(directory) and not is_native(directory)


# ---- tokenizer --------------------------------------------------------------------------------------
def fast_tokenizer(tokenizer: Tokenizer, max_len: int) -> FastTokenizer:
    """A `tokenizers` pipeline that encodes pairs as bertnli does: specials, segments, truncation, padding."""
    if isinstance(tokenizer, WordPieceTokenizer):
        backend, specials = FastTokenizer.from_str(tokenizer.tokenizer.to_str()), WORDPIECE_SPECIALS
    elif isinstance(tokenizer, WordTokenizer):  # d2l: lower-case, split on whitespace, whole words
        backend, specials = FastTokenizer(models.WordLevel(tokenizer.stoi, unk_token=D2L_SPECIALS["unk"])), D2L_SPECIALS
        backend.normalizer = normalizers.Lowercase()
        pattern = tokenizer.split_pattern()
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if pattern is None else pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(pattern), behavior="isolated")])
    else:
        raise ConfigError(f"cannot export a {type(tokenizer).__name__}")
    cls, sep = specials["cls"], specials["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.cls_id), (sep, tokenizer.sep_id)],
    )
    backend.enable_truncation(max_len, strategy="longest_first")
    backend.enable_padding(pad_id=tokenizer.pad_id, pad_token=specials["pad"])
    return backend


def write_tokenizer(tokenizer: Tokenizer, max_len: int, directory: Path) -> None:
    """``tokenizer.json`` and ``tokenizer_config.json`` (plus ``vocab.txt`` for WordPiece) for `AutoTokenizer`."""
    fast_tokenizer(tokenizer, max_len).save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "model_input_names": list(ONNX_INPUTS),
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
    }
    if isinstance(tokenizer, WordPieceTokenizer):
        # Readers of vocab.txt (BertTokenizer) would otherwise lower-case a cased model's text.
        config["do_lower_case"] = tokenizer.lowercases()
        vocab = tokenizer.tokenizer.get_vocab()
        in_order = sorted(vocab, key=vocab.__getitem__)  # by id
        (directory / "vocab.txt").write_text("".join(t + "\n" for t in in_order), encoding="utf-8")
    specials = WORDPIECE_SPECIALS if isinstance(tokenizer, WordPieceTokenizer) else D2L_SPECIALS
    _write_json(directory / "tokenizer_config.json", config | {f"{role}_token": t for role, t in specials.items()})


# ---- ONNX -----------------------------------------------------------------------------------------
class OnnxClassifier(nn.Module):
    """The classifier with Hugging Face-style inputs: the attention mask is built from ``attention_mask``."""

    def __init__(self, network: BERTClassifier) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.network(input_ids, token_type_ids, attn_mask=attention_mask[:, None, None, :].bool())


def write_onnx(model: NLIModel, directory: Path) -> None:
    """``model.onnx``, the tokenizer files and ``bertnli_onnx.json`` in ``directory``."""
    example = model.encode(["a short premise", "a premise"], ["a hypothesis", "a longer hypothesis here"])
    inputs = _onnx_inputs(example.token_ids, example.segments, example.valid_lens)
    _trace(OnnxClassifier(model.network).eval(), inputs, directory / "model.onnx")
    write_tokenizer(model.tokenizer, model.max_len, directory)
    meta = {
        "format": "bertnli-onnx",
        "format_version": 1,
        "labels": model.labels,
        "id2label": {str(i): label for i, label in enumerate(model.labels)},
        "max_len": model.max_len,
        "inputs": list(ONNX_INPUTS),
        "output": "logits",
        "model": model.network.config.to_dict(),
    }
    _write_json(directory / ONNX_META, meta)


def _trace(wrapper: OnnxClassifier, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """TorchScript-based export: the most robust exporter for dynamic batch and sequence axes."""
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks, constant for this model
            warnings.simplefilter("ignore", DeprecationWarning)  # the new exporter needs onnxscript; this does not
            torch.onnx.export(
                wrapper,
                inputs,
                str(path),
                input_names=list(ONNX_INPUTS),
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the onnx package: pip install 'bertnli[onnx]' ({exc})") from None


def _onnx_inputs(
    token_ids: np.ndarray, segments: np.ndarray, valid_lens: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int64 (input_ids, token_type_ids, attention_mask) from packed pairs."""
    ids = torch.from_numpy(token_ids).long()
    mask = (torch.arange(ids.shape[1])[None, :] < torch.from_numpy(valid_lens)[:, None]).long()
    return ids, torch.from_numpy(segments).long(), mask


def _is_onnx_export(directory: Path) -> bool:
    return (directory / ONNX_META).is_file()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


_WRITERS: dict[str, tuple[Callable[[NLIModel, Path], None], Callable[[Path], bool]]] = {
    "hf": (write_hf, _is_hf_export),
    "onnx": (write_onnx, _is_onnx_export),
}
