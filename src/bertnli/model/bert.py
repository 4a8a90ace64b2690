"""BERT, in one file: embeddings, post-LayerNorm transformer blocks, pretraining heads, NLI classifier.

The same network serves the "Dive into Deep Learning" checkpoints (ReLU feed-forward, no embedding
LayerNorm, LayerNorm eps 1e-5) and Hugging Face BERT checkpoints (GELU, embedding LayerNorm, eps 1e-12):
``BertConfig`` says which. Products and attention run on the kernels of `bertnli.model.kernels`.

Inputs everywhere are ``token_ids`` and ``segments`` of shape (batch, time), plus either ``valid_lens``
(batch,) — each row's real length, the rest being padding — or an explicit boolean ``attn_mask``
broadcastable to (batch, heads, time, time) where True means "may attend" (used for packed rows, where
several pairs share one row). ``positions`` overrides the default 0..time-1 position ids.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

import torch
from torch import nn

from bertnli.model.kernels import Dropout, Linear, attention, attention_bias

Activation = Literal["relu", "gelu", "gelu_tanh"]
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
_SIZES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "ffn_size", "max_position", "type_vocab_size")
_WANTED = {**dict.fromkeys(_SIZES, "a positive integer"), "activation": f"one of {', '.join(ACTIVATIONS)}",
           "layer_norm_eps": "a positive number", "embedding_norm": "true or false",
           "dropout": "a number from 0 to below 1", "attention_dropout": "a number from 0 to below 1"}


@dataclass
class BertConfig:
    """Architecture of a BERT encoder. Saved with every model as ``config.json``'s ``model`` entry."""

    vocab_size: int
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    ffn_size: int = 512
    max_position: int = 512
    type_vocab_size: int = 2
    activation: Activation = "relu"
    layer_norm_eps: float = 1e-5
    embedding_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self) -> None:
        """Refuse impossible settings (from an edited config.json, say) with a `ValueError` naming the field."""
        bad = next((f.name for f in fields(self) if not _fits(f.name, getattr(self, f.name))), None)
        if bad is not None:
            raise ValueError(f"{bad} must be {_WANTED[bad]}, not {getattr(self, bad)!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def d2l_style(self) -> bool:
        """d2l's layout, told by its missing embedding LayerNorm: the d2l code also applies no dropout to the
        embeddings, nor before the classifier's output layer."""
        return not self.embedding_norm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """What `to_dict` wrote: every field must be there (a `ValueError` names a missing one)."""
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing")
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def _fits(name: str, value: Any) -> bool:
    """Whether ``value`` is what `BertConfig` field ``name`` needs (JSON's true is no number here)."""
    if name == "activation":
        return value in ACTIVATIONS
    if name == "embedding_norm":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int if name in _SIZES else int | float):
        return False
    if name in _SIZES:
        return value >= 1
    return 0 < value < math.inf if name == "layer_norm_eps" else 0 <= value < 1


def _activation(name: Activation) -> nn.Module:
    return {"relu": nn.ReLU(), "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh")}[name]


def padding_mask(valid_lens: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean key mask (batch, 1, 1, length): True where a key is a real token."""
    keys = torch.arange(length, device=valid_lens.device)
    return (keys[None, :] < valid_lens[:, None])[:, None, None, :]


class Embeddings(nn.Module):
    """Token + segment + learned position embeddings (then LayerNorm for Hugging Face BERT)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.embedding_norm else None
        self.dropout = None if cfg.d2l_style else Dropout(cfg.dropout)

    def forward(
        self, token_ids: torch.Tensor, segments: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        if positions is None:
            x = self.position.weight[None, : token_ids.shape[1]]
        else:
            x = self.position(positions)
        x = x + self.token(token_ids) + self.segment(segments)
        if self.norm is not None:
            x = self.norm(x)
        return x if self.dropout is None else self.dropout(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_dropout

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None, query_rows: slice | None = None,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The output at every position; at ``query_rows`` (time steps) of every row only, (batch, rows,
        hidden); or at ``tokens`` (flat batch * time indices) only, (tokens, hidden)."""
        batch, time, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if query_rows is not None:  # only some query positions are needed (the last block of a classifier)
            q = q[:, :, query_rows]
            if bias is not None and bias.shape[-2] != 1:
                bias = bias[:, :, query_rows]
        y = attention(q, k, v, bias, self.dropout_p if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, -1, hidden)
        return self.out(y if tokens is None else y.reshape(-1, hidden)[tokens])


class FeedForward(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.up = Linear(cfg.hidden_size, cfg.ffn_size)
        self.act = _activation(cfg.activation)
        self.down = Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class EncoderBlock(nn.Module):
    """Post-LayerNorm transformer block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None, query_rows: slice | None = None,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As `SelfAttention.forward`: ``query_rows`` or ``tokens`` keep only those outputs."""
        residual = x
        if query_rows is not None:
            residual = x[:, query_rows]
        elif tokens is not None:
            residual = x.reshape(-1, x.shape[-1])[tokens]
        x = self.norm1(residual + self.dropout(self.attention(x, bias, query_rows, tokens)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class BertEncoder(nn.Module):
    """Embeddings followed by ``num_layers`` encoder blocks; returns (batch, time, hidden)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.num_layers))

    def forward(
        self,
        token_ids: torch.Tensor,
        segments: torch.Tensor,
        valid_lens: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        last_query_rows: slice | None = None,
        last_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, time, hidden). The last block can compute less: only the time steps ``last_query_rows`` of
        every row (e.g. the <cls>), giving (batch, rows, hidden), or only the flat (row * time + column)
        positions ``last_tokens`` (each packed pair's <cls>), giving (tokens, hidden)."""
        mask = attn_mask
        if mask is None and valid_lens is not None:
            mask = padding_mask(valid_lens, token_ids.shape[1])
        x = self.embeddings(token_ids, segments, positions)
        bias = None if mask is None else attention_bias(mask, x)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, bias, last_query_rows, last_tokens) if i == last else block(x, bias)
        return x


class Pooler(nn.Module):
    """d2l's ``hidden`` / Hugging Face's pooler: Linear + tanh on the <cls> vector."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(cls))


class MaskLM(nn.Module):
    """Masked-language-model head: Linear, activation, LayerNorm, Linear over the vocabulary."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = _activation(cfg.activation)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder = Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, encoded: torch.Tensor, pred_positions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(encoded.shape[0], device=encoded.device)[:, None]
        picked = encoded[rows, pred_positions]
        return self.decoder(self.norm(self.act(self.dense(picked))))


class NextSentencePred(nn.Module):
    """Next-sentence-prediction head on the pooled <cls> vector."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.output = Linear(cfg.hidden_size, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.output(pooled)


class BERTModel(nn.Module):
    """A whole pretraining checkpoint: encoder, pooler (``hidden``) and the optional MLM / NSP heads."""

    def __init__(self, cfg: BertConfig, mlm: bool = True, nsp: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = BertEncoder(cfg)
        self.hidden = Pooler(cfg)
        self.mlm = MaskLM(cfg) if mlm else None
        self.nsp = NextSentencePred(cfg) if nsp else None

    def forward(
        self,
        token_ids: torch.Tensor,
        segments: torch.Tensor,
        valid_lens: torch.Tensor | None = None,
        pred_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns (encoded, mlm logits or None, nsp logits or None)."""
        encoded = self.encoder(token_ids, segments, valid_lens)
        mlm = self.mlm(encoded, pred_positions) if self.mlm is not None and pred_positions is not None else None
        nsp = self.nsp(self.hidden(encoded[:, 0])) if self.nsp is not None else None
        return encoded, mlm, nsp


class BERTClassifier(nn.Module):
    """Encoder + pretrained pooler + a new linear layer over the labels, read off each pair's <cls> (with
    dropout before it, except in d2l's layout, where the new layer also starts as d2l's ``nn.LazyLinear``)."""

    def __init__(self, cfg: BertConfig, num_labels: int) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = BertEncoder(cfg)
        self.hidden = Pooler(cfg)
        self.dropout = None if cfg.d2l_style else Dropout(cfg.dropout)
        self.output = Linear(cfg.hidden_size, num_labels)  # d2l's layout keeps PyTorch's initialisation, as d2l
        if not cfg.d2l_style:
            nn.init.normal_(self.output.weight, std=1.0 / math.sqrt(cfg.hidden_size))
            nn.init.zeros_(self.output.bias)

    @classmethod
    def from_pretrained(cls, bert: BERTModel, num_labels: int, dropout: float | None = None) -> BERTClassifier:
        """Take ``bert``'s encoder and pooler; the MLM / NSP heads are left behind.
        ``dropout`` replaces the checkpoint's dropout rates (hidden and attention) when given."""
        cfg = bert.config if dropout is None else replace(bert.config, dropout=dropout, attention_dropout=dropout)
        model = cls(cfg, num_labels)
        model.encoder.load_state_dict(bert.encoder.state_dict())
        model.hidden.load_state_dict(bert.hidden.state_dict())
        return model

    def forward(
        self,
        token_ids: torch.Tensor,
        segments: torch.Tensor,
        valid_lens: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cls_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (pairs, labels). Unpacked rows read the <cls> at column 0. Packed rows pass
        ``cls_index``: the flat (row * time + column) index of every pair's <cls>. Either way the last block
        computes its output for the <cls> positions only."""
        if cls_index is None:  # a slice, not an index tensor: views, and no scatter in the backward pass
            cls = self.encoder(token_ids, segments, valid_lens, attn_mask=attn_mask, positions=positions,
                               last_query_rows=slice(0, 1))[:, 0]
        else:
            cls = self.encoder(token_ids, segments, valid_lens, attn_mask=attn_mask, positions=positions,
                               last_tokens=cls_index)
        pooled = self.hidden(cls)
        return self.output(pooled if self.dropout is None else self.dropout(pooled))
