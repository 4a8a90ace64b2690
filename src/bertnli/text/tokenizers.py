"""Tokenizers behind one interface: d2l's word-level vocabulary and WordPiece (the `tokenizers` library).

A tokenizer turns texts into lists of token ids *without* special tokens; the pair encoder
(`bertnli.text.pairs`) adds <cls>/<sep>, truncates and pads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from bertnli.errors import CheckpointError

D2L_SPECIALS = {"unk": "<unk>", "pad": "<pad>", "cls": "<cls>", "sep": "<sep>", "mask": "<mask>"}
WORDPIECE_SPECIALS = {"unk": "[UNK]", "pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


class Tokenizer(ABC):
    """Texts → token ids, plus the ids of the special tokens the pair encoder needs."""

    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode_batch(self, texts: Sequence[str], tokenised: bool = False) -> list[list[int]]:
        """Token ids of each text, no special tokens. ``tokenised``: the texts are already split into words,
        punctuation apart (d2l's parses); a word-level tokenizer then reads every word whole, as d2l does."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the files that `load_tokenizer(directory)` reads back."""

    @abstractmethod
    def fingerprint(self) -> str:
        """sha256 of everything that decides the ids: same fingerprint, same encoding."""

    def _set_specials(self, lookup: dict[str, int], names: dict[str, str], source: str) -> None:
        for role, token in names.items():
            if role == "mask":
                continue
            if token not in lookup:
                raise CheckpointError(source, f"vocabulary has no {token} token")
            setattr(self, f"{role}_id", lookup[token])


def _is_punctuation(ch: str) -> bool:
    """A punctuation mark or a symbol (Unicode categories P and S): ``.`` ``,`` ``(`` ``$`` ``«``."""
    return unicodedata.category(ch)[0] in "PS"


@functools.cache
def _punctuation_class() -> str:
    """Every character `_is_punctuation` accepts, as a regex class in ranges. Spelled out, rather than as
    ``[\\p{P}\\p{S}]``, so that a regex engine with other Unicode tables draws the same line."""
    ranges, start = [], None
    for code in range(sys.maxunicode + 2):
        inside = code <= sys.maxunicode and _is_punctuation(chr(code))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(f"\\x{{{start:x}}}" + (f"-\\x{{{code - 1:x}}}" if code - 1 > start else ""))
            start = None
    return f"[{''.join(ranges)}]"


#: The file beside ``vocab.json`` that records how a bertnli model's word tokenizer reads raw text.
WORD_RULES = "word_tokenizer.json"


class WordTokenizer(Tokenizer):
    """d2l's tokenizer: lower-case, split on whitespace, whole words; unknown words become <unk>.

    d2l's vocabularies hold punctuation as words of their own (its texts are tokenised: ``a guitar .``). With
    ``split_punctuation``, a word of raw text that the vocabulary lacks reads each punctuation mark or
    symbol at its edges as a word of its own (``guitar.`` → ``guitar`` ``.``); words in the vocabulary, and
    every word of tokenised text (``tokenised=True``: SNLI's parses, ``--d2l-text``), are read whole, as d2l
    reads them. Models saved before this rule existed read every word whole (``split_punctuation=False``)."""

    def __init__(self, vocab: Sequence[str], source: str = "vocab.json", split_punctuation: bool = True) -> None:
        self.itos = list(vocab)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        self.split_punctuation = split_punctuation
        self._set_specials(self.stoi, D2L_SPECIALS, source)

    @classmethod
    def from_file(cls, path: Path, split_punctuation: bool = True) -> WordTokenizer:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointError(path, f"cannot read vocabulary: {exc.strerror or exc}") from None
        return cls.from_json(data, str(path), split_punctuation)

    @classmethod
    def load(cls, directory: Path) -> WordTokenizer:
        """What `save` wrote: ``vocab.json`` and the rule. A folder saved before the rule existed has no record
        of it, and keeps reading every word whole, as its model was trained."""
        rules_path = Path(directory) / WORD_RULES
        try:
            rules = json.loads(rules_path.read_text(encoding="utf-8")) if rules_path.is_file() else {}
        except (OSError, ValueError) as exc:
            raise CheckpointError(rules_path, f"cannot read: {exc}") from None
        split = rules.get("split_punctuation", False) if isinstance(rules, dict) else None
        if not isinstance(split, bool):
            raise CheckpointError(rules_path, 'expected {"split_punctuation": true or false}')
        return cls.from_file(Path(directory) / "vocab.json", split)

    @classmethod
    def from_json(cls, data: bytes | str, source: str, split_punctuation: bool = True) -> WordTokenizer:
        """From d2l's ``vocab.json`` (a JSON list: index → word); ``source`` names it in errors."""
        try:
            vocab = json.loads(data)
        except ValueError as exc:
            raise CheckpointError(source, f"cannot read vocabulary: {exc}") from None
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise CheckpointError(source, "expected a JSON list of tokens (index → word)")
        return cls(vocab, source, split_punctuation)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode_batch(self, texts: Sequence[str], tokenised: bool = False) -> list[list[int]]:
        if tokenised or not self.split_punctuation:
            get, unk = self.stoi.get, self.unk_id
            return [[get(word, unk) for word in text.lower().split()] for text in texts]
        return [[i for word in text.lower().split() for i in self._word_ids(word)] for text in texts]

    def _word_ids(self, word: str) -> list[int]:
        known = self.stoi.get(word)
        if known is not None:
            return [known]
        lead = next((i for i, ch in enumerate(word) if not _is_punctuation(ch)), len(word))
        trail = next((i for i in range(len(word), lead, -1) if not _is_punctuation(word[i - 1])), lead)
        if lead == 0 and trail == len(word):
            return [self.unk_id]
        core = [self.stoi.get(word[lead:trail], self.unk_id)] if trail > lead else []
        return [*(self.stoi.get(ch, self.unk_id) for ch in word[:lead]), *core,
                *(self.stoi.get(ch, self.unk_id) for ch in word[trail:])]

    def split_pattern(self) -> str | None:
        """How raw text's words are read, as an Oniguruma regex for the `tokenizers` library's
        ``Split(pattern, "isolated")``: a word of the vocabulary with punctuation at an edge whole, else each
        punctuation mark at its start or end apart. None when every word is read whole."""
        if not self.split_punctuation:
            return None
        edged = [re.escape(w) for w in self.itos if w and (_is_punctuation(w[0]) or _is_punctuation(w[-1]))]
        whole = f"^(?:{'|'.join(edged)})$|" if edged else ""
        marks = _punctuation_class()
        return f"{whole}\\G{marks}|{marks}(?={marks}*$)"

    def fingerprint(self) -> str:
        rule = "word, edge punctuation split" if self.split_punctuation else "word"
        return hashlib.sha256(json.dumps([rule, self.itos]).encode()).hexdigest()

    def save(self, directory: Path) -> None:
        (Path(directory) / "vocab.json").write_text(json.dumps(self.itos, ensure_ascii=False), encoding="utf-8")
        (Path(directory) / WORD_RULES).write_text(json.dumps({"split_punctuation": self.split_punctuation}) + "\n",
                                                  encoding="utf-8")


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece, run by the `tokenizers` library (parallel, in Rust)."""

    def __init__(self, tokenizer: HFTokenizer, source: str = "tokenizer.json") -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self._set_specials(tokenizer.get_vocab(), WORDPIECE_SPECIALS, source)

    @classmethod
    def from_file(cls, path: Path) -> WordPieceTokenizer:
        try:
            return cls(HFTokenizer.from_file(str(path)), str(path))
        except Exception as exc:  # the library raises a bare Exception on bad JSON
            raise CheckpointError(path, f"cannot read tokenizer: {exc}") from None

    @classmethod
    def from_vocab(cls, path: Path, lowercase: bool = True) -> WordPieceTokenizer:
        """Build BERT's WordPiece pipeline from a ``vocab.txt`` (one token a line, as `transformers` reads it:
        lines end at line feeds only, so a token holding U+0085 or U+2028 keeps its place)."""
        try:
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except OSError as exc:
            raise CheckpointError(path, f"cannot read vocabulary: {exc}") from None
        except UnicodeDecodeError as exc:
            raise CheckpointError(path, f"not UTF-8 text (at byte {exc.start:,}); save it as UTF-8") from None
        if lines[-1] == "":  # after the last line feed
            lines.pop()
        vocab = {token: i for i, token in enumerate(lines)}
        tok = HFTokenizer(models.WordPiece(vocab, unk_token=WORDPIECE_SPECIALS["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return cls(tok, str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_batch(self, texts: Sequence[str], tokenised: bool = False) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets we never read.
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        encodings = encode(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()

    def lowercases(self) -> bool:
        """Whether the pipeline lower-cases text, as an uncased model's does."""
        normalizer = self.tokenizer.normalizer
        return normalizer is not None and normalizer.normalize_str("A") == "a"

    def save(self, directory: Path) -> None:
        self.tokenizer.save(str(Path(directory) / "tokenizer.json"))


def load_tokenizer(directory: Path, lowercase: bool = True) -> Tokenizer:
    """The tokenizer stored in a model folder: ``vocab.json`` (d2l), ``tokenizer.json`` or ``vocab.txt``."""
    directory = Path(directory)
    if (directory / "vocab.json").is_file():
        return WordTokenizer.load(directory)
    if (directory / "tokenizer.json").is_file():
        return WordPieceTokenizer.from_file(directory / "tokenizer.json")
    if (directory / "vocab.txt").is_file():
        return WordPieceTokenizer.from_vocab(directory / "vocab.txt", lowercase=lowercase)
    raise CheckpointError(directory, "no tokenizer found (expected vocab.json, tokenizer.json or vocab.txt)")
