"""Vocabularies, tokenizers, the layout of pairs (one a row, or several packed in a row), the encoded-data cache."""

from bertnli.text.pairs import EncodedPairs, encode_pairs, lay_out_pairs, truncated_lengths
from bertnli.text.tokenizers import Tokenizer, WordPieceTokenizer, WordTokenizer, load_tokenizer

__all__ = [
    "EncodedPairs",
    "Tokenizer",
    "WordPieceTokenizer",
    "WordTokenizer",
    "encode_pairs",
    "lay_out_pairs",
    "load_tokenizer",
    "truncated_lengths",
]
