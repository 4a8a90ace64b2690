"""Vocabularies, tokenizers and pair packing."""

from bertnli.text.pairs import EncodedPairs, encode_pairs, pack_token_ids, truncated_lengths
from bertnli.text.tokenizers import Tokenizer, WordPieceTokenizer, WordTokenizer, load_tokenizer

__all__ = [
    "EncodedPairs",
    "Tokenizer",
    "WordPieceTokenizer",
    "WordTokenizer",
    "encode_pairs",
    "load_tokenizer",
    "pack_token_ids",
    "truncated_lengths",
]
