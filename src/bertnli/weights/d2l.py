"""Checkpoints of "Dive into Deep Learning": ``bert.{small,base}.torch.zip`` or the folder inside it.

The folder holds ``vocab.json`` (index → word) and ``pretrained.params`` (a torch state dict). Sizes are
read off the tensors; the number of heads is not stored anywhere, so it defaults by hidden size.
"""

from __future__ import annotations

import io
import itertools
import zipfile
import zlib
from pathlib import Path

import torch

from bertnli.errors import CheckpointError, ConfigError
from bertnli.model.bert import BertConfig, BERTModel
from bertnli.text.tokenizers import WORD_RULES, WordTokenizer
from bertnli.weights.files import StateDict, atomic_directory, read_torch
from bertnli.weights.keymap import KeyMap, check_vocab, empty_model, make_config

PARAMS = "pretrained.params"
VOCAB = "vocab.json"
_BLOCK = "encoder.blks.{i}."

D2L_KEYS = KeyMap(
    rules=(
        ("encoder.embeddings.token.weight", "encoder.token_embedding.weight"),
        ("encoder.embeddings.segment.weight", "encoder.segment_embedding.weight"),
        ("encoder.embeddings.position.weight", "encoder.pos_embedding"),
        ("encoder.blocks.{i}.attention.qkv.{p}", *(f"{_BLOCK}attention.W_{x}.{{p}}" for x in "qkv")),
        ("encoder.blocks.{i}.attention.out.{p}", _BLOCK + "attention.W_o.{p}"),
        ("encoder.blocks.{i}.norm1.{p}", _BLOCK + "addnorm1.ln.{p}"),
        ("encoder.blocks.{i}.ffn.up.{p}", _BLOCK + "ffn.dense1.{p}"),
        ("encoder.blocks.{i}.ffn.down.{p}", _BLOCK + "ffn.dense2.{p}"),
        ("encoder.blocks.{i}.norm2.{p}", _BLOCK + "addnorm2.ln.{p}"),
        ("hidden.dense.{p}", "hidden.0.{p}"),
        ("mlm.dense.{p}", "mlm.mlp.0.{p}"),
        ("mlm.norm.{p}", "mlm.mlp.2.{p}"),
        ("mlm.decoder.{p}", "mlm.mlp.3.{p}"),
        ("nsp.output.{p}", "nsp.output.{p}"),
    ),
    batched=frozenset({"encoder.pos_embedding"}),
    owned=("encoder.", "hidden."),
)


def default_heads(hidden_size: int) -> int:
    """d2l's choices: 4 heads for ``bert.small`` (256), 12 for ``bert.base`` (768); else 64 dims a head."""
    return {256: 4, 768: 12}.get(hidden_size, max(1, hidden_size // 64))


def load_d2l(path: str | Path, num_heads: int | None = None) -> tuple[BERTModel, WordTokenizer]:
    """Load a d2l archive (``.zip``) or its extracted folder. ``num_heads`` overrides `default_heads`."""
    path = Path(path)
    state, tokenizer, source = _read_archive(path) if path.is_file() else _read_folder(path)
    cfg = infer_config(state, source, num_heads)
    model = empty_model(BERTModel, cfg, "mlm.mlp.0.weight" in state, "nsp.output.weight" in state)
    D2L_KEYS.load(model, state, source)
    check_vocab(tokenizer, cfg, source)
    return model, tokenizer


def save_d2l(bert: BERTModel, tokenizer: WordTokenizer, directory: str | Path) -> None:
    """Write ``directory`` as d2l's archive holds it: ``vocab.json`` and ``pretrained.params``.

    The number of heads is not stored: loading needs ``num_heads`` unless it is `default_heads`.
    """
    cfg = bert.config
    if (cfg.activation, cfg.embedding_norm, cfg.layer_norm_eps) != ("relu", False, 1e-5):
        raise ConfigError(
            "only a d2l-style model (ReLU, no embedding LayerNorm, LayerNorm eps 1e-5) can be saved in d2l format"
        )
    with atomic_directory(Path(directory), lambda d: (d / PARAMS).is_file(), (PARAMS, "vocab.json", WORD_RULES)
                          ) as staging:
        torch.save(D2L_KEYS.export(bert.state_dict()), staging / PARAMS)
        tokenizer.save(staging)


def infer_config(state: StateDict, source: str, num_heads: int | None = None) -> BertConfig:
    """The architecture, read off the tensors' shapes (ReLU, no embedding LayerNorm, eps 1e-5)."""
    token = _tensor(state, "encoder.token_embedding.weight", 2, source)
    segment = _tensor(state, "encoder.segment_embedding.weight", 2, source)
    position = _tensor(state, "encoder.pos_embedding", 3, source)
    ffn = _tensor(state, "encoder.blks.0.ffn.dense1.weight", 2, source)
    layers = next(i for i in itertools.count() if f"encoder.blks.{i}.ffn.dense1.weight" not in state)
    hidden = token.shape[1]
    return make_config(
        source,
        vocab_size=token.shape[0],
        hidden_size=hidden,
        num_layers=layers,
        num_heads=num_heads or default_heads(hidden),
        ffn_size=ffn.shape[0],
        max_position=position.shape[1],
        type_vocab_size=segment.shape[0],
        activation="relu",
        layer_norm_eps=1e-5,
        embedding_norm=False,
    )


def _tensor(state: StateDict, key: str, ndim: int, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(source, f"missing key {key}")
    if state[key].ndim != ndim:
        raise CheckpointError(source, f"{key} has shape {tuple(state[key].shape)}, expected {ndim} dimensions")
    return state[key]


def _read_folder(directory: Path) -> tuple[StateDict, WordTokenizer, str]:
    params = directory / PARAMS
    state = read_torch(params, params)
    return state, WordTokenizer.from_file(directory / VOCAB), str(params)


def _read_archive(path: Path) -> tuple[StateDict, WordTokenizer, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            params = _member(archive, PARAMS, path)
            vocab = _member(archive, VOCAB, path)
            source = f"{path}:{params}"
            state = read_torch(io.BytesIO(archive.read(params)), source)
            tokenizer = WordTokenizer.from_json(archive.read(vocab), f"{path}:{vocab}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CheckpointError(path, f"not a readable zip archive ({exc})") from None
    return state, tokenizer, source


def _member(archive: zipfile.ZipFile, name: str, path: Path) -> str:
    """The archive's one member called ``name``, at the top or in a folder (d2l's layout)."""
    found = [m for m in archive.namelist() if m == name or m.endswith(f"/{name}")]
    if len(found) != 1:
        raise CheckpointError(path, f"expected one {name} in the archive, found {len(found)}")
    return found[0]
