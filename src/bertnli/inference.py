"""`NLIModel`: a fine-tuned classifier with its tokenizer and labels, ready to predict."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from bertnli.data.batching import BatchPlan, inference_batches
from bertnli.data.example import Dataset, Example, is_blank, surrogate_problem
from bertnli.data.readers import DEFAULT_COLUMNS
from bertnli.errors import ConfigError
from bertnli.model import BERTClassifier
from bertnli.progress import progress_bar
from bertnli.runtime import DeviceBatch, autocast, autocast_dtype, compile_network, pick_device, precision_name
from bertnli.text import EncodedPairs, Tokenizer, encode_pairs
from bertnli.text.packing import MIN_PAIR_TOKENS, pack_rows, row_batches
from bertnli.text.pairs import MIN_MAX_LEN
from bertnli.weights import load_classifier, save_classifier
from bertnli.weights.native import resolve_model_dir

#: What `NLIModel.predict` takes: (premise, hypothesis) pairs (tuples, lists, rows of a 2-column array), JSON
#: objects, `Example`s, or a `Dataset`.
Pairs = Iterable[Sequence[str]] | Iterable[Mapping[str, str]] | Iterable[Example] | Dataset
#: Pairs predicted at a time (`NLIModel.predict_chunks`), by device type: enough to sort into a few dozen
#: well-filled batches, few enough that a chunk takes seconds (so a stop loses little) and its predictions a
#: few hundred MB at most. Other devices take the CPU's.
PREDICT_CHUNK = {"cuda": 65_536, "cpu": 8_192}


@dataclass(frozen=True)
class Prediction:
    """The predicted label and the probability of every label; ``truncated``: the pair was longer than the
    model's max_len, and the model read it cut (the end of the longer text first)."""

    label: str
    probabilities: dict[str, float]
    truncated: bool = False

    @classmethod
    def from_probabilities(cls, labels: Sequence[str], row: Sequence[float], truncated: bool = False
                           ) -> Prediction:
        """The prediction for one row of probabilities, columns in the order of ``labels``."""
        return cls(labels[int(np.argmax(row))], {label: float(p) for label, p in zip(labels, row)}, bool(truncated))

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": self.probabilities, "truncated": self.truncated}


@torch.no_grad()  # not inference_mode, under which autocast would cast the weights for every batch
def batched_logits(
    network: BERTClassifier,
    pairs: EncodedPairs,
    device: torch.device,
    dtype: torch.dtype | None,
    plan: BatchPlan,
    runner: torch.nn.Module | None = None,
    done: Callable[[int], object] | None = None,
    *,
    width: int = 128,
    pad_id: int = 0,
) -> np.ndarray:
    """Run ``network`` over all pairs in length-sorted batches, or its compiled ``runner`` over packed rows of
    ``width`` tokens (the model's max_len) in fixed shapes; logits come back in the input order. Results
    stay on the device until the end: no wait for the GPU between batches. ``done`` is told how many pairs
    each batch held (a progress bar's ``update``)."""
    was_training = network.training
    network.eval()
    run = network if runner is None else runner
    compiled = run is not network
    batches = _packed_batches(pairs, plan, device, width, pad_id) if compiled else _sorted_batches(pairs, plan, device)
    chunks = []
    with autocast(device, dtype):  # one autocast region: weights are cast to ``dtype`` once, not every batch
        for index, batch in batches:
            args, kwargs = batch.model_inputs()
            chunks.append((index, run(*args, **kwargs)[: len(index)].float().clone()))
            if done is not None:
                done(len(index))
    out = np.empty((len(pairs), network.output.out_features), dtype=np.float32)
    if chunks:  # one copy from the device for all batches
        out[np.concatenate([index for index, _ in chunks])] = torch.cat([logits for _, logits in chunks]).cpu().numpy()
    network.train(was_training)
    return out


def _sorted_batches(pairs: EncodedPairs, plan: BatchPlan, device: torch.device
                    ) -> Iterator[tuple[np.ndarray, DeviceBatch]]:
    for index in inference_batches(pairs.valid_lens, plan):
        yield index, DeviceBatch.from_pairs(pairs.take(index), device)


def _packed_batches(pairs: EncodedPairs, plan: BatchPlan, device: torch.device, width: int, pad_id: int
                    ) -> Iterator[tuple[np.ndarray, DeviceBatch]]:
    """Packed rows of ``width`` tokens, ``plan.max_tokens`` tokens a batch (``batch_size``
    rows without a budget). Every batch of a call has the same shape; a call that fits in one batch gets
    the next power of two rows (at least 8): a handful of shapes in all, each compiled once."""
    rows_per_batch = max(1, plan.max_tokens // width if plan.max_tokens else plan.batch_size)
    chunks = row_batches(pairs.valid_lens, width, rows_per_batch)
    for chunk in chunks:
        rows = rows_per_batch if len(chunks) > 1 else min(rows_per_batch, max(8, 1 << (len(chunk) - 1).bit_length()))
        packed = pack_rows(pairs, width, pad_id, rows=chunk, num_rows=rows)
        yield packed.pair_index, DeviceBatch.from_packed(packed, device, pairs=rows * (width // MIN_PAIR_TOKENS))


class NLIModel:
    """Load with `NLIModel.load(run_or_model_dir)`, then `predict([(premise, hypothesis), ...])`."""

    def __init__(
        self,
        network: BERTClassifier,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        max_len: int = 128,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int = 1024,
        batch_tokens: int | Literal["auto"] | None = "auto",
        compile: bool = False,
        progress: bool = False,
    ) -> None:
        """``batch_size`` caps the pairs of a batch and ``batch_tokens`` its padded tokens (None: no cap); the
        default suits the device: large batches keep a GPU busy, while a CPU runs faster on batches that stay
        in its caches. Compiled (``compile``), batches are packed rows of ``max_len`` tokens: ``batch_tokens``
        tokens' worth of rows, or ``batch_size`` rows without a token cap."""
        positions = network.config.max_position
        if not MIN_MAX_LEN <= max_len <= positions:
            raise ConfigError(f"max_len {max_len} must be from {MIN_MAX_LEN} to the {positions} positions the "
                              "model has embeddings for")
        self.device = pick_device(device) if isinstance(device, str) else device
        self.network = network.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_len = max_len
        self.dtype = autocast_dtype(self.device, precision)
        if batch_tokens == "auto":
            batch_tokens = 65536 if self.device.type == "cuda" else 4096
        self.plan = BatchPlan(batch_size=batch_size, max_tokens=batch_tokens)
        self.runner = compile_network(self.network, compile, cuda_graphs=True)
        self.progress = progress  # a progress bar on standard error for long predictions

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto", precision: str = "auto",
             max_len: int | None = None, **options: Any) -> NLIModel:
        """Load a run directory or a saved model folder. ``max_len``: the tokens read of each pair (default: the
        length the model was trained at, saved with it; up to the model's positions, so a model tuned on pairs
        cut short can read more of long premises). ``options``: ``batch_size``, ``batch_tokens``, ``compile``
        (torch.compile the network; pays off on long GPU jobs), ``progress``."""
        saved = load_classifier(resolve_model_dir(path))
        return cls(saved.model, saved.tokenizer, saved.labels, saved.max_len if max_len is None else max_len, device,
                   precision, **options)

    def describe_truncation(self, cut: int, total: int) -> str:
        """How many of ``total`` pairs were read cut, and how to read more of them where the model can."""
        said = f"{cut:,} of {total:,} pairs were longer than the model's {self.max_len} tokens and were read cut"
        positions = self.network.config.max_position
        return said + (f"; a longer max_len (up to {positions}) reads more of them" if self.max_len < positions else "")

    @property
    def parameter_count(self) -> int:
        """Number of parameters of the network."""
        return sum(p.numel() for p in self.network.parameters())

    def __repr__(self) -> str:
        return (f"NLIModel(labels={self.labels}, max_len={self.max_len}, device={str(self.device)!r}, "
                f"precision={precision_name(self.dtype)!r}, parameters={self.parameter_count / 1e6:.1f}M)")

    def save(self, directory: str | Path) -> None:
        """Write the model folder that `NLIModel.load` reads (atomically)."""
        save_classifier(Path(directory), self.network, self.tokenizer, self.labels, self.max_len)

    def encode(self, premises: Sequence[str], hypotheses: Sequence[str], tokenised: bool = False) -> EncodedPairs:
        """Token ids, segments and lengths of the pairs, as the model reads them (truncated to max_len).
        ``tokenised``: the texts are d2l's tokenised parses (see `Tokenizer.encode_batch`)."""
        self._check_texts(premises, hypotheses)
        return encode_pairs(self.tokenizer, premises, hypotheses, self.max_len, tokenised)

    @staticmethod
    def _check_texts(premises: Sequence[str], hypotheses: Sequence[str]) -> None:
        """A `TypeError` or `ValueError` naming the first text the tokenizer cannot take, if any."""
        for name, texts in (("premises", premises), ("hypotheses", hypotheses)):
            if isinstance(texts, str):
                raise TypeError(f"{name} must be a sequence of strings (one per pair), not one string")
            other = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if other is not None:
                raise TypeError(f"{name}[{other}] is {_shown(texts[other])}, not text (drop or fill missing values "
                                "first)")
            bad = next((i for i, t in enumerate(texts) if surrogate_problem(t)), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad}] {surrogate_problem(texts[bad])}")
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")

    def logits(self, pairs: EncodedPairs) -> np.ndarray:
        """Logits (pairs, labels) in the input order."""
        with self._progress(len(pairs)) as bar:
            return self._logits(pairs, bar.update)

    def probabilities(self, pairs: EncodedPairs) -> np.ndarray:
        """Probabilities (pairs, labels) in the input order, columns in the order of ``self.labels``."""
        return _softmax(self.logits(pairs))

    def _logits(self, pairs: EncodedPairs, done: Callable[[int], object]) -> np.ndarray:
        return batched_logits(self.network, pairs, self.device, self.dtype, self.plan, self.runner, done,
                              width=self.max_len, pad_id=self.tokenizer.pad_id)

    def _progress(self, total: int) -> tqdm:
        return progress_bar(enabled=self.progress, total=total, unit="pair", desc="predicting", leave=False)

    def predict_proba(self, pairs: Pairs | Iterable[str], hypotheses: Iterable[str] | None = None,
                      tokenised: bool = False) -> np.ndarray:
        """Probabilities (pairs, labels), columns in the order of ``self.labels``. Takes what `predict` takes,
        or two sequences: ``predict_proba(premises, hypotheses)``."""
        if hypotheses is not None:
            premises, hypotheses = _texts(pairs), _texts(hypotheses)
        else:
            premises, hypotheses, tokenised = _split_pairs(pairs, tokenised)
        return self.probabilities(self.encode(*_refuse_blanks(premises, hypotheses), tokenised))

    def predict(self, pairs: Pairs, *, tokenised: bool = False) -> list[Prediction]:
        """One `Prediction` (label and every label's probability) per pair, in order. ``pairs``: (premise,
        hypothesis) pairs (tuples, lists, rows of a 2-column array, ``df.itertuples(index=False)``), `Example`s,
        or a `Dataset`. ``tokenised``: the texts are d2l's tokenised parses, as `encode` says (a Dataset
        says so itself)."""
        return [p for chunk in self.predict_chunks(pairs, tokenised=tokenised) for p in chunk]

    def predict_chunks(self, pairs: Pairs, *, tokenised: bool = False, chunk_size: int | None = None
                       ) -> Iterator[list[Prediction]]:
        """`predict`, ``chunk_size`` (default: `PREDICT_CHUNK` for the device) pairs at a time, in order: the
        predictions held at once stay few on any input, and can be written as they come. The pairs themselves
        are read and checked whole at the call, before any is predicted (a bad pair costs no time); one
        progress bar spans every chunk."""
        if chunk_size is None:
            chunk_size = PREDICT_CHUNK.get(self.device.type, PREDICT_CHUNK["cpu"])
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        premises, hypotheses, tokenised = _split_pairs(pairs, tokenised)
        self._check_texts(*_refuse_blanks(premises, hypotheses))
        return self._chunks(premises, hypotheses, tokenised, chunk_size)

    def _chunks(self, premises: list[str], hypotheses: list[str], tokenised: bool, chunk_size: int
                ) -> Iterator[list[Prediction]]:
        with self._progress(len(premises)) as bar:
            for start in range(0, len(premises), chunk_size):
                encoded = encode_pairs(self.tokenizer, premises[start : start + chunk_size],
                                       hypotheses[start : start + chunk_size], self.max_len, tokenised)
                assert encoded.truncated is not None  # known for text just encoded (not for cached arrays)
                yield [Prediction.from_probabilities(self.labels, row, cut)
                       for row, cut in zip(_softmax(self._logits(encoded, bar.update)), encoded.truncated)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def _split_pairs(pairs: Pairs, tokenised: bool) -> tuple[list[str], list[str], bool]:
    """(premises, hypotheses, tokenised) of the pairs that `NLIModel.predict` takes."""
    if isinstance(pairs, Dataset):
        return [e.premise for e in pairs.examples], [e.hypothesis for e in pairs.examples], pairs.tokenised
    if hasattr(pairs, "columns") and hasattr(pairs, "itertuples"):
        raise TypeError("predict takes pairs, not a DataFrame: pass df[['premise', 'hypothesis']]"
                        ".itertuples(index=False)")
    if pairs is None:
        raise TypeError("predict takes a list of (premise, hypothesis) pairs, not None")
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(text, str) for text in pairs):
        raise TypeError("predict takes a list of (premise, hypothesis) pairs, not one pair: put it in a list, "
                        "predict([(premise, hypothesis)])")
    if isinstance(pairs, (str, Example, Mapping)):
        raise TypeError(f"predict takes a list of (premise, hypothesis) pairs, not one {type(pairs).__name__}"
                        + (": put the pair in a list, predict([{...}])" if isinstance(pairs, Mapping) else ""))
    premises, hypotheses = [], []
    pair: Any  # whatever the caller gave: checked here
    for i, pair in enumerate(pairs):
        if isinstance(pair, Example):
            pair = (pair.premise, pair.hypothesis)
        elif isinstance(pair, Mapping):  # a JSON object
            pair = _texts_of(pair, i)
        elif isinstance(pair, str) or not hasattr(pair, "__len__") or len(pair) != 2:
            hint = ("; one pair goes in a list as [(premise, hypothesis)], and a list of premises with one of "
                    "hypotheses to predict_proba(premises, hypotheses)"
                    if isinstance(pair, str) else "; from pandas, itertuples(index=False)"
                    if type(pair).__name__ == "Pandas" else "")
            raise TypeError(f"predict takes (premise, hypothesis) pairs, e.g. [('A man sleeps.', 'A person "
                            f"rests.')] or [{{'premise': ..., 'hypothesis': ...}}]; item {i} is {_shown(pair)}{hint}")
        premises.append(pair[0])
        hypotheses.append(pair[1])
    return premises, hypotheses, tokenised


def _texts_of(record: Mapping, i: int) -> tuple[Any, Any]:
    """A JSON object's premise and hypothesis, under any name the readers know (premise, sentence1, ...)."""
    texts = []
    for role in ("premise", "hypothesis"):
        key = next((k for k in DEFAULT_COLUMNS[role] if k in record), None)
        if key is None:
            raise TypeError(f"item {i} has no {role} (its keys: {', '.join(map(str, record)) or 'none'}); "
                            f"name it {' or '.join(DEFAULT_COLUMNS[role])}")
        texts.append(record[key])
    return texts[0], texts[1]


def _texts(texts: Iterable[Any]) -> Sequence[str]:
    """Texts given as a sequence, as given: a string goes on whole, for `encode` to refuse."""
    return texts if isinstance(texts, str) else list(texts)


def _refuse_blanks(premises: Sequence[str], hypotheses: Sequence[str]) -> tuple[Sequence[str], Sequence[str]]:
    """The texts, once none is empty or blank: the readers skip such pairs, and the server refuses them."""
    for name, texts in (("premises", premises), ("hypotheses", hypotheses)):
        if isinstance(texts, str):  # one text, not a sequence of them: `encode` says so
            continue
        blank = next((i for i, t in enumerate(texts) if isinstance(t, str) and is_blank(t)), None)
        if blank is not None:
            raise ValueError(f"{name}[{blank}] is empty or blank: every pair needs two texts")
    return premises, hypotheses


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... (a {type(value).__name__})" if len(text) > 60 else f"{text} (a {type(value).__name__})"
