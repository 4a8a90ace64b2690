"""The network and its inputs: packed rows give the same results as one pair per row, also padded to fixed
shapes for compiled code; the <cls>-only last block is exact."""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertnli.errors import ConfigError
from bertnli.model import BERTClassifier, BertConfig, kernels
from bertnli.runtime import IGNORED_LABEL, DeviceBatch, block_diagonal_mask, compile_network
from bertnli.text import WordTokenizer, encode_pairs
from bertnli.text.packing import fit_rows, pack_rows

WORDS = ["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", *"abcdefghijklmnopqrstuvwxyz"]


def tiny_classifier(activation: str = "gelu", embedding_norm: bool = True) -> BERTClassifier:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_layers=2, num_heads=4, ffn_size=64,
                     max_position=64, activation=activation, embedding_norm=embedding_norm)
    return BERTClassifier(cfg, 3).eval()


def random_pairs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    text = lambda: " ".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(1, 14)))  # noqa: E731
    return [text() for _ in range(n)], [text() for _ in range(n)]


def test_packed_rows_give_the_same_logits_as_unpacked_pairs():
    model, tok = tiny_classifier(), WordTokenizer(WORDS)
    pairs = encode_pairs(tok, *random_pairs(40), max_len=32)
    rows = pack_rows(pairs, width=48, pad_id=tok.pad_id)
    assert len(rows.token_ids) < len(pairs) / 2  # several pairs share each row
    with torch.no_grad():
        plain = DeviceBatch.from_pairs(pairs, torch.device("cpu"))
        args, kwargs = plain.model_inputs()
        expected = model(*args, **kwargs)
        packed = DeviceBatch.from_packed(rows, torch.device("cpu"))
        args, kwargs = packed.model_inputs()
        got = model(*args, **kwargs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_packing_restarts_positions_and_segments_per_pair():
    tok = WordTokenizer(WORDS)
    pairs = encode_pairs(tok, ["a b", "c"], ["d", "e f g"], max_len=32)
    rows = pack_rows(pairs, width=16, pad_id=tok.pad_id)
    assert rows.token_ids.shape == (1, 16)
    # longest first: pair 1 (c | e f g, 7 tokens) then pair 0 (a b | d, 6 tokens)
    assert rows.positions[0, :13].tolist() == [*range(7), *range(6)]
    assert rows.segments[0, :13].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert rows.cls_index.tolist() == [7, 0]
    mask = block_diagonal_mask(torch.from_numpy(rows.slots))[0, 0]
    assert mask[0, :7].all() and not mask[0, 7:].any()  # pair 1's <cls> sees pair 1 only
    assert mask[7, 7:13].all() and not mask[7, :7].any() and not mask[7, 13:].any()
    assert not mask[:13, 13:].any() and mask[13:, 13:].all()  # padding sees padding only, and is never seen


def test_fixed_shape_padding_changes_no_logit_loss_or_gradient():
    """Compiled training pads packed batches with empty rows and ignored pairs; the real pairs' results and
    the gradients must not move."""
    model, tok = tiny_classifier(), WordTokenizer(WORDS)
    pairs = encode_pairs(tok, *random_pairs(20, seed=5), max_len=32)
    labels = np.random.default_rng(0).integers(0, 3, len(pairs))

    def run(batch: DeviceBatch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        args, kwargs = batch.model_inputs()
        logits = model(*args, **kwargs)
        loss = F.cross_entropy(logits, batch.labels, reduction="sum")
        loss.backward()
        return logits, loss, [p.grad.clone() for p in model.parameters()]

    plain = run(DeviceBatch.from_pairs(pairs, torch.device("cpu"), labels))
    rows = pack_rows(pairs, width=48, pad_id=tok.pad_id, num_rows=16)
    assert rows.token_ids.shape == (16, 48)
    padded = DeviceBatch.from_packed(rows, torch.device("cpu"), labels, pairs=32)
    assert padded.labels[20:].eq(IGNORED_LABEL).all() and len(padded.cls_index) == 32
    fixed = run(padded)
    torch.testing.assert_close(fixed[0][:20], plain[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fixed[1], plain[1], atol=1e-5, rtol=1e-5)
    for got, expected in zip(fixed[2], plain[2]):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_best_fit_fills_rows_and_keeps_every_pair():
    lengths = np.array([30, 20, 12, 10, 8, 40, 5])
    rows = fit_rows(lengths, 48)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(lengths[row].sum() <= 48 for row in rows)
    assert len(rows) == 3  # 125 tokens: the fewest rows of 48 possible
    lengths = np.random.default_rng(0).integers(8, 60, 500)
    rows = fit_rows(lengths, 128)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(lengths[row].sum() <= 128 for row in rows)
    assert lengths.sum() / (128 * len(rows)) > 0.95


def test_packing_some_rows_keeps_their_pairs_and_order():
    model, tok = tiny_classifier(), WordTokenizer(WORDS)
    pairs = encode_pairs(tok, *random_pairs(30, seed=7), max_len=32)
    rows = fit_rows(pairs.valid_lens, 48)
    some = rows[1:4]
    packed = pack_rows(pairs, width=48, pad_id=tok.pad_id, rows=some)
    assert packed.pair_index.tolist() == sorted(i for row in some for i in row)
    with torch.no_grad():
        args, kwargs = DeviceBatch.from_packed(packed, torch.device("cpu")).model_inputs()
        got = model(*args, **kwargs)
        args, kwargs = DeviceBatch.from_pairs(pairs.take(packed.pair_index), torch.device("cpu")).model_inputs()
        expected = model(*args, **kwargs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_compiled_prediction_packs_fixed_shapes_and_matches_eager():
    """A compiled NLIModel predicts on packed rows: the same logits as the eager model, with one compiled
    graph for every batch of a long call and one more for a call that fits in a single batch."""
    from torch._dynamo.utils import counters

    from bertnli.inference import NLIModel

    tok = WordTokenizer(WORDS)
    options = dict(max_len=32, device="cpu", precision="fp32", batch_tokens=512)
    eager = NLIModel(tiny_classifier(), tok, ["a", "b", "c"], **options)
    compiled = NLIModel(tiny_classifier(), tok, ["a", "b", "c"], compile=True, **options)
    torch._dynamo.reset()
    counters.clear()
    for n, seed in ((300, 1), (200, 2), (5, 3)):
        premises, hypotheses = random_pairs(n, seed)
        np.testing.assert_allclose(compiled.predict_proba(premises, hypotheses),
                                   eager.predict_proba(premises, hypotheses), atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 2


def test_cls_only_last_block_matches_the_full_computation():
    model, tok = tiny_classifier("relu", embedding_norm=False), WordTokenizer(WORDS)
    pairs = encode_pairs(tok, *random_pairs(12, seed=3), max_len=32)
    batch = DeviceBatch.from_pairs(pairs, torch.device("cpu"))
    with torch.no_grad():
        fast = model(batch.token_ids, batch.segments, batch.valid_lens)
        encoded = model.encoder(batch.token_ids, batch.segments, batch.valid_lens)
        full = model.output(model.hidden.forward(encoded[:, 0]))
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-6)


def test_compiling_without_a_compiler_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = tiny_classifier()
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler"):
        compile_network(model, True)
    assert compile_network(model, False) is model  # nothing to check when not compiling


def test_bf16_cpu_attention_matches_sdpa_with_padding_and_packing_masks():
    """bf16 on a CPU takes its own attention path; it must agree with SDPA in fp32 up to bf16 rounding."""
    from bertnli.model.bert import padding_mask

    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 4, 20, 16) for _ in range(3))
    slots = torch.randint(-1, 3, (6, 20)).sort(dim=1).values
    for mask in (padding_mask(torch.tensor([20, 3, 17, 9, 12, 20]), 20), block_diagonal_mask(slots), None):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        bias = None if mask is None else kernels.attention_bias(mask, q.bfloat16())
        got = kernels.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias, 0.0)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), expected, atol=3e-2, rtol=3e-2)
    wrong = kernels.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, 0.0).float()
    assert (wrong - F.scaled_dot_product_attention(q, k, v, attn_mask=block_diagonal_mask(slots))).abs().max() > 0.1


def test_gpu_attention_leaves_out_cudnn_and_keeps_what_the_user_turned_off():
    """On GPUs, eager attention may use every SDPA kernel the user left on except cuDNN's (a plan per shape)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        assert kernels._shape_free_backends() == [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        assert kernels._shape_free_backends() == []  # then attention takes what the user chose


@pytest.mark.skipif(not kernels._ONEDNN, reason="this torch build has no oneDNN")
@pytest.mark.parametrize("bias", [True, False])
def test_float32_cpu_linear_runs_on_onednn_and_matches_float64_forward_and_backward(bias):
    torch.manual_seed(0)
    x64 = torch.randn(3, 50, 40, dtype=torch.float64)[:, ::2]  # strided, as sliced activations are
    w64, b64 = torch.randn(24, 40, dtype=torch.float64), torch.randn(24, dtype=torch.float64) if bias else None
    leaves = [t for t in (x64, w64, b64) if t is not None]
    ours = [t.float().requires_grad_() for t in leaves]
    reference = [t.clone().requires_grad_() for t in leaves]
    assert kernels._use_onednn(ours[0], ours[1])
    y, y64 = kernels.linear(*ours), F.linear(*reference)
    grad = torch.randn_like(y64)
    y.backward(grad.float())
    y64.backward(grad)
    for got, expected in [(y, y64)] + [(a.grad, b.grad) for a, b in zip(ours, reference, strict=True)]:
        torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps its own (bf16 oneDNN) kernel
        assert not kernels._use_onednn(ours[0], ours[1])
        assert kernels.linear(*ours).dtype == torch.bfloat16


def test_cpu_dropout_keeps_one_minus_p_scales_the_rest_and_follows_torch_seed():
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(3)
    y = kernels.dropout(x, 0.25, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # 200,000 draws: the standard error is 0.001
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())
    torch.manual_seed(3)
    assert torch.equal(kernels.dropout(x, 0.25, True), y)  # the torch seed decides the mask
    assert not torch.equal(kernels.dropout(x, 0.25, True), y)  # and each call draws a new one
    assert kernels.dropout(x, 0.25, False) is x


def test_cpu_attention_with_dropout_matches_sdpa_forward_and_backward_when_nothing_is_dropped(monkeypatch):
    """With dropout, CPU attention takes the explicit path; at p = 1e-12 it keeps every weight, so it must
    give SDPA's outputs and gradients (padding and packing masks)."""
    from bertnli.model.bert import padding_mask

    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", None)  # the path under test must not call it
    torch.manual_seed(0)
    slots = torch.randint(-1, 3, (6, 20)).sort(dim=1).values
    for mask in (padding_mask(torch.tensor([20, 3, 17, 9, 12, 20]), 20), block_diagonal_mask(slots)):
        ours = [torch.randn(6, 4, 20, 16, requires_grad=True) for _ in range(3)]
        reference = [t.detach().clone().requires_grad_() for t in ours]
        got = kernels.attention(*ours, kernels.attention_bias(mask, ours[0]), 1e-12)
        expected = sdpa(*reference, attn_mask=mask)
        grad = torch.randn_like(expected)
        got.backward(grad)
        expected.backward(grad)
        torch.testing.assert_close(got, expected)
        for a, b in zip(ours, reference, strict=True):
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("embedding_norm", [False, True])
def test_d2l_layout_drops_out_inside_the_blocks_only(embedding_norm):
    """As in the d2l code, a d2l-style network (no embedding LayerNorm) has no dropout on its embeddings nor
    before its output layer; a Hugging Face-style one has both. With the blocks' own dropout off, only
    those two could make training-mode logits differ from evaluation-mode ones."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=64, num_layers=2, num_heads=4, ffn_size=64,
                     embedding_norm=embedding_norm, dropout=0.5, attention_dropout=0.0)
    model = BERTClassifier(cfg, num_labels=3)
    for block in model.encoder.blocks:
        block.dropout.p = 0.0
    batch = DeviceBatch.from_pairs(encode_pairs(WordTokenizer(WORDS), *random_pairs(16), max_len=32),
                                   torch.device("cpu"))
    args, kwargs = batch.model_inputs()
    training = model.train()(*args, **kwargs)
    evaluating = model.eval()(*args, **kwargs)
    assert torch.allclose(training, evaluating, atol=1e-6) == (not embedding_norm)


def test_the_new_output_layer_starts_as_d2l_s_in_d2l_layout_and_small_otherwise():
    """d2l's ``nn.LazyLinear``: weights and bias uniform within ±1/sqrt(H); Hugging Face-style heads start with
    normal weights of std 1/sqrt(H) and a zero bias."""
    torch.manual_seed(0)
    hidden = 256
    for embedding_norm in (False, True):
        cfg = BertConfig(vocab_size=len(WORDS), hidden_size=hidden, num_layers=1, num_heads=4, ffn_size=64,
                         embedding_norm=embedding_norm)
        output = BERTClassifier(cfg, num_labels=3).output
        bound = hidden ** -0.5
        if embedding_norm:
            assert not output.bias.any() and output.weight.abs().max() > bound  # a normal's tails pass the bound
        else:
            assert output.bias.abs().max() <= bound and output.bias.any()
            assert output.weight.abs().max() <= bound


@pytest.mark.parametrize(("setting", "message"), [
    ({"num_layers": True}, "num_layers must be a positive integer, not True"),
    ({"ffn_size": 64.0}, "ffn_size must be a positive integer, not 64.0"),
    ({"activation": "swish"}, "activation must be one of relu, gelu, gelu_tanh, not 'swish'"),
    ({"layer_norm_eps": math.nan}, "layer_norm_eps must be a positive number, not nan"),
    ({"embedding_norm": "yes"}, "embedding_norm must be true or false, not 'yes'"),
    ({"attention_dropout": -0.1}, "attention_dropout must be a number from 0 to below 1, not -0.1"),
])
def test_an_impossible_network_config_names_its_field(setting, message):
    """An edited config.json must not build a network that fails later, or computes something else."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BertConfig(vocab_size=len(WORDS), hidden_size=32, num_heads=4, **setting)


def test_automatic_precision_is_bf16_on_gpus_with_bf16_units_fp16_on_older_ones_and_fp32_on_cpus(monkeypatch):
    from bertnli.runtime import autocast_dtype

    assert autocast_dtype(torch.device("cpu")) is None
    for bf16_units, expected in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, units=bf16_units: units)
        assert autocast_dtype(torch.device("cuda")) is expected
    assert autocast_dtype(torch.device("cuda"), "fp32") is None  # asked for, never overridden


def test_the_attention_bias_is_zero_or_minus_infinity_in_the_dtype_the_products_run_in():
    from bertnli.model.bert import padding_mask

    keep = padding_mask(torch.tensor([3, 1]), 4)
    bias = kernels.attention_bias(keep, torch.zeros(1))
    assert bias.dtype == torch.float32 and torch.equal(bias == 0, keep) and bool(torch.isneginf(bias[~keep]).all())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # SDPA would otherwise cast it in every block
        assert kernels.attention_bias(keep, torch.zeros(1)).dtype == torch.bfloat16

