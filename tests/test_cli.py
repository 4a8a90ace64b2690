"""The command line end to end on small fixtures: train, evaluate, predict, plot, data; and its errors."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import json
import os
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import warnings
import zipfile
from io import BytesIO
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from synthetic import synthetic_dataset, tiny_d2l_checkpoint
from test_training import child_env

from bertnli.cli import COMMANDS, main
from bertnli.data import Dataset
from bertnli.data.download import DATASETS
from bertnli.training import RunDir


def jsonl(path, dataset):
    path.write_text("".join(json.dumps({"sentence1": e.premise, "sentence2": e.hypothesis, "gold_label": e.label})
                            + "\n" for e in dataset.examples))
    return path


def snli_zip_of(splits: dict) -> bytes:
    """snli_1.0.zip in the official layout, holding the given datasets as its splits."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for split, dataset in splits.items():
            rows = [{"gold_label": e.label, "sentence1": e.premise, "sentence2": e.hypothesis, "pairID": str(i)}
                    for i, e in enumerate(dataset.examples)]
            rows.append({"gold_label": "-", "sentence1": "no", "sentence2": "majority", "pairID": "x"})
            z.writestr(f"snli_1.0/snli_1.0_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_d2l_checkpoint(tmp_path_factory.mktemp("model") / "tiny"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny):
    """A run trained through the CLI on files, and the files."""
    root = tmp_path_factory.mktemp("cli")
    train, dev = jsonl(root / "train.jsonl", synthetic_dataset(3000, 1)), jsonl(root / "dev.jsonl",
                                                                                 synthetic_dataset(300, 2))
    run = root / "run"
    code = main(["train", "--model", tiny, "--num-heads", "4", "--train", str(train), "--eval", str(dev),
                 "--out", str(run), "--recipe", "d2l", "--lr", "1e-3", "--batch-size", "32", "--epochs", "30",
                 "--no-progress"])
    assert code == 0
    return {"run": run, "train": train, "dev": dev, "root": root}


def test_train_writes_a_complete_run(trained):
    run = trained["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["recipe"] == "d2l" and config["train"]["epochs"] == 30
    assert config["data"]["train"]["pairs"] == 3000 and len(config["data"]["train"]["sha256"]) == 64
    assert {"torch", "bertnli", "tokenizers"} <= set(config["versions"])
    from bertnli.runtime import device_name
    from bertnli.training.run import describe_run

    assert config["hardware"] == {"device": device_name(torch.device("cpu")), "processes": 1, "precision": "fp32"}
    assert describe_run(config) == (f"tiny, d2l recipe · trained on train.jsonl · batch 32, lr 0.001 · fp32 on "
                                        f"{config['hardware']['device']}")
    for name in ("metrics.jsonl", "checkpoint.pt", "model/model.safetensors", "curves.png", "confusion.png",
                 "class_scores.png", "accuracy.png", "evaluation.md", "evaluation.json", "train_pairs.npy"):
        assert (run / name).is_file(), name
    assert json.loads((run / "evaluation.json").read_text())["accuracy"] > 0.9


def test_evaluate_prints_json_and_writes_reports(trained, capsys, tmp_path):
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 0.9 and result["total"] == 300
    from bertnli.metrics import wilson_interval

    low, high = result["accuracy_interval"]
    assert (low, high) == wilson_interval(result["accuracy"], 300) and low < result["accuracy"] <= high
    assert sum(map(sum, result["confusion"])) == 300
    assert set(result["per_class"]) == {"entailment", "contradiction", "neutral"}
    assert sum(b["pairs"] for b in result["accuracy_by_length"]) == 300

    report = tmp_path / "report"
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]),
                 "--data", str(trained["train"]), "--data", str(trained["dev"]), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "/dev: accuracy" in out and "/train: accuracy" in out and "macro F1" in out
    assert "on 300 pairs (95% interval 0." in out
    folder = trained["root"].name  # files named dev/train inside a folder are named folder/dev, folder/train
    assert (report / f"{folder}_dev_evaluation.md").read_text().startswith(f"# Evaluation on {folder}/dev")
    assert "on 300 pairs (95% interval 0." in (report / f"{folder}_dev_evaluation.md").read_text()
    assert (report / f"{folder}_train_confusion.png").stat().st_size > 1000
    # The same name twice: the second report is numbered rather than written over the first.
    first, second = (json.loads((report / f"{folder}_dev{n}_evaluation.json").read_text()) for n in ("", "_2"))
    assert first["total"] == second["total"] == 300
    comparison = (report / "comparison.md").read_text().splitlines()
    assert [line.split(" | ")[1] for line in comparison[4:]] == ["300", "3,000", "300"]
    assert comparison[4].split(" | ")[3] == "{:.4f}–{:.4f}".format(*wilson_interval(first["accuracy"], 300))
    # The same folder again for one dataset: the earlier files stay (they may be kept on purpose), named.
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--report",
                 str(report)]) == 0
    warning = next(line for line in capsys.readouterr().err.splitlines() if "earlier evaluation" in line)
    shown = warning.split(f"{report} also holds report files from an earlier evaluation, left as they are: ")[1]
    assert shown.endswith(" and 12 more")  # 3 datasets' 5 files and comparison.md, less the 4 named
    assert set(shown.removesuffix(" and 12 more").split(", ")) <= {
        "comparison.md", *(f"{folder}_{name}_{end}" for name in ("dev", "train", "dev_2") for end in (
            "evaluation.md", "evaluation.json", "confusion.png", "class_scores.png", "accuracy.png"))}
    assert (report / "evaluation.md").is_file() and (report / "comparison.md").is_file()
    from bertnli.evaluation import write_reports

    assert write_reports([], tmp_path / "none") == [] and not (tmp_path / "none").exists()
    from bertnli.data import read_dataset

    table = tmp_path / folder / "dev.csv"  # the same name (folder/dev) for two files: each named as given
    table.parent.mkdir()
    table.write_text("premise,hypothesis,label\n" + "".join(f"{e.premise},{e.hypothesis},{e.label}\n"
                                                         for e in read_dataset(trained["dev"]).examples))
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--data", str(table),
                 "--json"]) == 0
    assert [r["dataset"] for r in json.loads(capsys.readouterr().out)["results"]] == [str(trained["dev"]), str(table)]


def test_evaluate_never_writes_its_report_over_a_runs_own(trained, capsys):
    """A run's evaluation.md is its held-out evaluation: an evaluation of other data must not replace it."""
    before = (trained["run"] / "evaluation.md").read_bytes()
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--limit", "30",
                 "--report", str(trained["run"])]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "is a training run: its evaluation.md and figures are the run's own held-out evaluation" in line
    assert (trained["run"] / "evaluation.md").read_bytes() == before


def test_evaluate_breaks_accuracy_down_by_genre_and_names_the_line_of_each_confident_error(trained, capsys,
                                                                                            tmp_path):
    """MultiNLI-style files carry a genre: accuracy is given for each, and each mistake names its line."""
    from bertnli import NLIModel

    rows = [json.loads(line) for line in trained["dev"].read_text().splitlines()]
    for i, row in enumerate(rows):
        row["genre"] = ("fiction", "slate", "telephone")[i % 3]
        # Every fifth pair gets a wrong label, so that each genre has mistakes and its own accuracy.
        row["gold_label"] = "neutral" if i % 5 == 0 and row["gold_label"] != "neutral" else row["gold_label"]
    data = tmp_path / "genres.jsonl"
    data.write_text("\n" + "\n".join(json.dumps(r) for r in rows) + "\n")  # a blank first line, then the rows
    lines = data.read_text().splitlines()
    predicted = [p.label for p in NLIModel.load(trained["run"], device="cpu").predict(
        [(r["sentence1"], r["sentence2"]) for r in rows])]

    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for genre in ("fiction", "slate", "telephone"):
        mine = [i for i, r in enumerate(rows) if r["genre"] == genre]
        expected = sum(predicted[i] == rows[i]["gold_label"] for i in mine) / len(mine)
        assert {"genre": genre, "pairs": len(mine), "accuracy": pytest.approx(expected)} in result["accuracy_by_genre"]
    assert len(result["accuracy_by_genre"]) == 3 and result["confident_errors"]
    for error in result["confident_errors"]:
        row = json.loads(lines[error["line"] - 1])
        assert (row["sentence1"], row["sentence2"], row["gold_label"]) == (error["premise"], error["hypothesis"],
                                                                         error["gold"])
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(data)]) == 0
    assert "accuracy by genre:" in capsys.readouterr().out
    # Every mistake, most confident first, or as many as asked for.
    wrong = sum(p != r["gold_label"] for p, r in zip(predicted, rows))
    for asked, listed in (("-1", wrong), ("3", 3)):
        assert main(["evaluate", "--model", str(trained["run"]), "--data", str(data), "--json",
                     "--mistakes", asked]) == 0
        errors = json.loads(capsys.readouterr().out)["confident_errors"]
        assert len(errors) == listed and [e["confidence"] for e in errors] == sorted(
            (e["confidence"] for e in errors), reverse=True)


def test_accuracy_by_length_scores_each_length_band_apart():
    from bertnli.evaluation import _accuracy_by_length

    rows = _accuracy_by_length(np.array([5, 20, 20, 200]), np.array([True, False, True, True]))
    assert rows == [{"range": "1–16", "pairs": 1, "accuracy": 1.0}, {"range": "17–24", "pairs": 2, "accuracy": 0.5},
                    {"range": ">128", "pairs": 1, "accuracy": 1.0}]
    # Pairs cut to the model's 128 tokens have a bin of their own, not 97–128 with the pairs that fit.
    rows = _accuracy_by_length(np.array([100, 128, 128]), np.array([True, True, False]),
                               truncated=np.array([False, False, True]), max_len=128)
    assert rows == [{"range": "97–128", "pairs": 2, "accuracy": 1.0},
                    {"range": ">128 (cut)", "pairs": 1, "accuracy": 0.0}]


def test_predict_one_pair_and_a_file(trained, capsys, tmp_path):
    """The command prints and writes what the trained model predicts; what it learned is tested elsewhere."""
    from bertnli import NLIModel

    long = "red dog " * 70  # 140 words: more than the model's 128 tokens
    wanted = NLIModel.load(trained["run"], device="cpu").predict(
        [("red dog runs big", "no dog"), ("red dog runs big", "dog"), ("red dog runs big", "cat"), (long, "dog")])
    assert main(["predict", "--model", str(trained["run"]), "red dog runs big", "no dog"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == wanted[0].label
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"premise": "red dog runs big", "hypothesis": "dog"}\n'
                     '{"premise": "red dog runs big", "hypothesis": " "}\n'
                     '{"premise": "red dog runs big", "hypothesis": "cat"}\n'
                     f'{{"premise": "{long}", "hypothesis": "dog"}}\n')
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == [p.label for p in wanted[1:]]
    assert [r["line"] for r in rows] == [1, 3, 4]  # the blank pair on line 2 is skipped, and the lines say so
    assert [r["truncated"] for r in rows] == [False, False, True]
    table = tmp_path / "predictions.tsv"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", str(table)]) == 0
    with table.open(newline="") as f:
        read = list(csv.DictReader(f, delimiter="\t"))
    assert [(int(r["line"]), r["hypothesis"], r["label"], r["truncated"]) for r in read] == [
        (row["line"], row["hypothesis"], row["label"], str(row["truncated"]).lower()) for row in rows]
    for r, row in zip(read, rows):
        assert {k: float(r[f"p_{k}"]) for k in row["probabilities"]} == pytest.approx(row["probabilities"], abs=1e-6)
    for row, prediction in zip(rows, wanted[1:]):
        assert row["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-6)
    out, err = capsys.readouterr()
    assert out == "" and "skipped 1 empty premise or hypothesis" in err  # the predictions went to the files
    assert "truncated: 1 of 3 pairs were longer than the model's 128 tokens" in err
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs)]) == 0  # no --output: stdout
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    assert main(["predict", "--model", str(trained["run"]), long, "dog"]) == 0
    assert "read the pair cut" in capsys.readouterr().out
    one = tmp_path / "one.jsonl"  # one pair from the command line goes to --output too
    assert main(["predict", "--model", str(trained["run"]), "red dog runs big", "cat", "--output", str(one)]) == 0
    assert [(r["hypothesis"], r["label"]) for r in map(json.loads, one.read_text().splitlines())] == [
        ("cat", wanted[2].label)]
    assert capsys.readouterr().err == f"1 prediction written to {one}\n"
    assert main(["predict", "--model", str(trained["run"]), "red dog runs big", "cat", "--output", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == wanted[2].label  # asked for: JSON lines, not the table
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", "-"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows  # -: standard output
    sheet = tmp_path / "predictions.xlsx"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", str(sheet)]) == 1
    assert capsys.readouterr().err == (f"bertnli predict: error: --output {sheet}: predictions are written as JSON "
                                       "lines (.jsonl), CSV (.csv) or TSV (.tsv), not .xlsx; name the file with one "
                                       "of these\n")
    assert not sheet.exists()


def stopping_after(chunks, n: int):
    """`NLIModel.predict_chunks` as ``chunks`` makes them, with Ctrl-C once ``n`` chunks are out."""
    def stopped(self, *args, **kwargs):
        for made, chunk in enumerate(chunks(self, *args, **kwargs)):
            if made == n:
                raise KeyboardInterrupt
            yield chunk

    return stopped


def test_a_model_trained_on_short_pairs_reads_more_of_long_ones_when_asked(trained, capsys, tmp_path):
    """A model saved with max_len 32 and embeddings for 128 positions: --max-len 128 (max_len= in Python) reads
    a 70-token pair whole, as the same weights saved with max_len 128 do; beyond its positions is refused."""
    from bertnli import NLIModel
    from bertnli.errors import ConfigError

    whole = NLIModel.load(trained["run"], device="cpu")
    NLIModel(whole.network, whole.tokenizer, whole.labels, max_len=32, device="cpu").save(tmp_path / "short")
    long = ("red dog runs big " * 17).strip()  # 68 words: 70 tokens with the specials
    assert NLIModel.load(tmp_path / "short", device="cpu").predict([(long, "dog")])[0].truncated
    [read] = NLIModel.load(tmp_path / "short", device="cpu", max_len=128).predict([(long, "dog")])
    [wanted] = whole.predict([(long, "dog")])
    assert not read.truncated and read.probabilities == pytest.approx(wanted.probabilities, abs=1e-6)
    with pytest.raises(ConfigError, match="max_len 129 must be from 5 to the 128 positions"):
        NLIModel.load(tmp_path / "short", max_len=129)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"premise": long, "hypothesis": "dog"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(tmp_path / "short"), "--input", str(pairs), "--output", str(out)]) == 0
    assert "a longer max_len (up to 128) reads more of them" in capsys.readouterr().err
    assert json.loads(out.read_text())["truncated"] is True
    assert main(["predict", "--model", str(tmp_path / "short"), "--input", str(pairs), "--output", str(out),
                 "--max-len", "128"]) == 0
    assert json.loads(out.read_text())["probabilities"] == pytest.approx(wanted.probabilities, abs=1e-6)
    assert main(["evaluate", "--model", str(tmp_path / "short"), "--data", str(trained["dev"]),
                 "--max-len", "200"]) == 1
    assert "max_len 200 must be from 5 to the 128 positions the model has embeddings for" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "short"), "--max-len", "4", "red dog", "dog"]) == 1
    assert "max_len 4 must be from 5 to the 128 positions" in capsys.readouterr().err  # a pair needs 5


def test_predict_writes_large_inputs_a_chunk_at_a_time_and_ctrl_c_keeps_what_is_done(trained, tmp_path, capsys,
                                                                                     monkeypatch):
    from bertnli import NLIModel
    from bertnli.data import read_dataset
    from bertnli.inference import PREDICT_CHUNK

    monkeypatch.setitem(PREDICT_CHUNK, "cpu", 40)  # 300 pairs: 8 chunks
    model = NLIModel.load(trained["run"], device="cpu")
    examples = read_dataset(trained["dev"]).examples
    wanted = model.predict(examples)
    table = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table)]) == 0
    complete = table.read_bytes()
    with table.open(newline="") as f:
        read = list(csv.DictReader(f))  # one header, then every pair in order
    assert [(int(r["line"]), r["label"]) for r in read] == [(e.line, p.label) for e, p in zip(examples, wanted)]
    assert [line.split("|")[-1].split()[0] for line in capsys.readouterr().err.splitlines()
            if line.startswith("predicting:")] == ["0/300", "300/300"]  # one bar over every chunk

    chunks = NLIModel.predict_chunks
    stopped_after_two_chunks = stopping_after(chunks, 2)
    monkeypatch.setattr(NLIModel, "predict_chunks", stopped_after_two_chunks)
    table.write_text("an earlier file\n")
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table), "--no-progress"]) == 130
    partial = tmp_path / "predictions.csv.partial"
    assert capsys.readouterr().err == f"bertnli predict: interrupted; the first 80 of 300 predictions are in " \
                                      f"{partial} (the same command with --resume goes on from there)\n"
    assert table.read_text() == "an earlier file\n"  # left as it was
    with partial.open(newline="") as f:
        assert [(int(r["line"]), r["label"]) for r in csv.DictReader(f)] == \
            [(e.line, p.label) for e, p in zip(examples[:80], wanted[:80])]
    record = tmp_path / "predictions.csv.partial.json"  # how far the partial file goes, kept after each chunk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv", "predictions.csv.partial",
                                                          "predictions.csv.partial.json"]
    assert stat.S_IMODE(partial.stat().st_mode) == stat.S_IMODE(table.stat().st_mode)  # not a temporary's 0600
    made_by = json.loads(record.read_text())["layout"]["made_by"]  # as recorded before --max-len, which resume
    assert made_by == f"{(trained['run'] / 'model').resolve()} in fp32"  # compares: such partials resume
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table), "--no-progress"]) == 1  # a new run would lose them: --resume, or remove them
    assert f"{partial} holds the predictions of a run that stopped (or is still writing them): the same command " \
           "with --resume goes on from them" in capsys.readouterr().err

    def terminated_after_two_chunks(self, *args, **kwargs):  # a scheduler's notice, or `kill`
        for n, chunk in enumerate(chunks(self, *args, **kwargs)):
            if n == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            yield chunk

    def stopped_in_the_first_chunk(self, *args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(NLIModel, "predict_chunks", stopped_in_the_first_chunk)
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(tmp_path / "new.csv"), "--no-progress"]) == 130
    assert capsys.readouterr().err == "bertnli predict: interrupted before the first predictions were done; nothing " \
                                      "was written\n"
    partial.unlink()
    record.unlink()
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table), "--no-progress"]) == 130
    assert capsys.readouterr().err == "bertnli predict: interrupted before the first predictions were done; " \
                                      f"{table} is as it was\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]

    monkeypatch.setattr(NLIModel, "predict_chunks", terminated_after_two_chunks)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table), "--no-progress"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == f"bertnli predict: interrupted; the first 80 of 300 predictions are in " \
                                      f"{partial} (the same command with --resume goes on from there)\n"
    assert signal.getsignal(signal.SIGTERM) == handler and table.read_text() == "an earlier file\n"

    class CountedWhenStopped(list):  # the stop comes once the third chunk is written, before it is counted
        def __len__(self):
            self.lengths_asked = getattr(self, "lengths_asked", 0) + 1
            if self.lengths_asked == 2:
                raise KeyboardInterrupt
            return super().__len__()

    partial.unlink()
    record.unlink()
    monkeypatch.setattr(NLIModel, "predict_chunks", lambda self, *args, **kwargs: (
        CountedWhenStopped(chunk) if n == 2 else chunk for n, chunk in enumerate(chunks(self, *args, **kwargs))))
    assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output",
                 str(table), "--no-progress"]) == 130
    assert "the first 80 of 300 predictions are in" in capsys.readouterr().err
    with partial.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 80  # the chunk not counted is not kept either
    # --resume goes on from the 80 kept, and may itself be stopped and resumed: the file ends as one run's.
    resume = ["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output", str(table),
              "--no-progress", "--resume"]
    monkeypatch.setattr(NLIModel, "predict_chunks", stopped_after_two_chunks)
    assert main(resume) == 130
    assert "the first 160 of 300 predictions are in" in capsys.readouterr().err
    monkeypatch.setattr(NLIModel, "predict_chunks", chunks)
    assert main(resume) == 0
    assert f"resuming after the 160 predictions in {partial}" in capsys.readouterr().err
    assert table.read_bytes() == complete and not partial.exists()
    # A crash or SIGKILL leaves no word, and may cut a chunk: its record says where the whole chunks end.
    monkeypatch.setattr(NLIModel, "predict_chunks", stopped_after_two_chunks)
    assert main(resume[:-1]) == 130
    with partial.open("a") as cut:
        cut.write("81,half a row")
    monkeypatch.setattr(NLIModel, "predict_chunks", chunks)
    # Another input, or other columns, are refused rather than joined to the predictions kept.
    other = tmp_path / "other.jsonl"
    other.write_text(trained["dev"].read_text().replace('"sentence2": "', '"sentence2": "not ', 1))
    assert main([*resume[:4], str(other), *resume[5:]]) == 1
    assert f"{partial}: holds the predictions of other pairs than the first 80 of this input" in \
        capsys.readouterr().err
    assert main([*resume, "--no-texts"]) == 1
    assert "was written with another texts (--no-texts) than this command's" in capsys.readouterr().err
    assert main([*resume, "--max-len", "64"]) == 1
    assert "was written with another model, precision or length read (--model, --precision, --max-len)" in \
        capsys.readouterr().err
    assert main([*resume, "--limit", "50"]) == 1
    assert f"{partial}: holds 80 predictions, more than the 50 pairs of this input (--limit?)" in \
        capsys.readouterr().err
    assert main(resume) == 0 and table.read_bytes() == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.jsonl", "predictions.csv"]
    with pytest.raises(ValueError, match="chunk_size must be at least 1, not 0"):
        model.predict_chunks(examples, chunk_size=0)  # at the call, not at the first chunk


def test_predict_resumes_json_lines_as_one_run_writes_them(trained, tmp_path, capsys, monkeypatch):
    from bertnli import NLIModel
    from bertnli.inference import PREDICT_CHUNK

    monkeypatch.setitem(PREDICT_CHUNK, "cpu", 100)  # 300 pairs: 3 chunks
    out = tmp_path / "p.jsonl"
    command = ["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output", str(out),
               "--no-progress", "--no-texts"]
    assert main(command) == 0
    complete = out.read_bytes()
    chunks = NLIModel.predict_chunks
    monkeypatch.setattr(NLIModel, "predict_chunks", stopping_after(chunks, 1))
    assert main(command) == 130 and out.read_bytes() == complete
    monkeypatch.setattr(NLIModel, "predict_chunks", chunks)
    assert main([*command, "--resume"]) == 0
    assert "resuming after the 100 predictions" in capsys.readouterr().err and out.read_bytes() == complete
    assert main([*command, "--resume"]) == 0  # nothing left to resume from: a whole run
    assert f"no {out}.partial to resume from: predicting from the first pair" in capsys.readouterr().err
    assert out.read_bytes() == complete


def test_predict_warns_of_ids_that_are_no_join_key(trained, tmp_path, capsys):
    claims = tmp_path / "claims.csv"
    claims.write_text("id,premise,hypothesis\n7,red dog runs,dog\n8,red dog,cat\n7,big dog,dog\n7,dog,red\n")
    assert main(["predict", "--model", str(trained["run"]), "--input", str(claims), "--output", "-"]) == 0
    assert ("warning: 2 pairs have the id of an earlier pair ('7' on lines 2 and 4, first): joined back by id, their "
            "predictions would be mixed up; join by line") in capsys.readouterr().err
    claims.write_text("id,premise,hypothesis\n7,red dog runs,dog\n8,red dog,cat\n")
    assert main(["predict", "--model", str(trained["run"]), "--input", str(claims), "--output", "-"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_predict_partial_files_are_held_private_and_true_to_their_record(trained, tmp_path, capsys, monkeypatch):
    import fcntl

    from bertnli.data import writers
    from bertnli.inference import PREDICT_CHUNK

    monkeypatch.setitem(PREDICT_CHUNK, "cpu", 100)  # 300 pairs: 3 chunks
    out = tmp_path / "p.jsonl"
    command = ["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--output", str(out),
               "--no-progress"]
    assert main(command) == 0
    complete = out.read_bytes()
    out.chmod(0o600)  # private output: its partial file is private too, from the start
    record_now = writers.write_text

    def stopped_once_recorded(path, text):  # the stop comes after the record of the second chunk is saved
        record_now(path, text)
        if json.loads(text)["pairs"] == 200:
            raise KeyboardInterrupt

    monkeypatch.setattr(writers, "write_text", stopped_once_recorded)
    assert main(command) == 130
    assert "the first 200 of 300 predictions are in" in capsys.readouterr().err  # as the record says
    partial = tmp_path / "p.jsonl.partial"
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    monkeypatch.setattr(writers, "write_text", record_now)
    with partial.open("rb") as held:  # a run writing it: a second run on the same --output is refused
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main([*command, "--resume"]) == 1
        assert f"{partial}: is being written by another run on --output {out}" in capsys.readouterr().err
    assert main([*command, "--resume"]) == 0 and out.read_bytes() == complete
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_predict_into_a_pipe_that_closes_stops_quietly(trained):
    """`bertnli predict --input big.jsonl | head`: once the reader has gone, no error, and the shell's status."""
    import subprocess

    code = ("import sys, bertnli.inference; bertnli.inference.PREDICT_CHUNK['cpu'] = 10\n"
            "from bertnli.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.Popen([sys.executable, "-c", code, "predict", "--model", str(trained["run"]), "--input",
                            str(trained["dev"]), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(run.stdout.readline())["line"] == 1
    run.stdout.close()  # as `head -1` does
    assert run.wait(timeout=60) == 141 and run.stderr.read() == b""


def test_predict_reads_files_with_their_own_column_names(trained, capsys, tmp_path):
    from bertnli import NLIModel

    claims = tmp_path / "claims.csv"
    claims.write_text("id,evidence,claim,verdict\n1,red dog runs big,dog,SUPPORTS\n2,red dog runs big,cat,REFUTES\n"
                      "3,red dog runs big,no dog,REFUTES\n")
    assert main(["predict", "--model", str(trained["run"]), "--input", str(claims), "--limit", "2",
                 "--columns", "premise=evidence,hypothesis=claim"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    wanted = NLIModel.load(trained["run"], device="cpu").predict([("red dog runs big", "dog"),
                                                                  ("red dog runs big", "cat")])
    assert [(r["line"], r["id"], r["hypothesis"], r["label"]) for r in rows] == [
        (2, "1", "dog", wanted[0].label), (3, "2", "cat", wanted[1].label)]  # each with its id, to join back
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        table = tmp_path / f"out{suffix}"
        assert main(["predict", "--model", str(trained["run"]), "--input", str(claims), "--output", str(table),
                     "--columns", "premise=evidence,hypothesis=claim"]) == 0
        with table.open(newline="") as f:
            read = list(csv.reader(f, delimiter=delimiter))
        assert read[0][:4] == ["line", "id", "premise", "hypothesis"]
        assert [row[:2] for row in read[1:]] == [["2", "1"], ["3", "2"], ["4", "3"]]


def test_predict_reads_standard_input(trained, capsys, monkeypatch):
    import io

    lines = ('{"premise": "red dog runs big", "hypothesis": "dog"}\n\n'
             '{"premise": "red dog runs big", "hypothesis": "cat"}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    assert main(["predict", "--model", str(trained["run"]), "--input", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["hypothesis"]) for r in rows] == [(1, "dog"), (3, "cat")]
    # A wrong model is found before the input is read: the stream is left for the corrected command.
    stream = io.BytesIO(lines.encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    assert main(["predict", "--model", str(trained["root"] / "nope"), "--input", "-"]) == 1
    assert "nope: no such model folder" in capsys.readouterr().err and stream.tell() == 0


def test_evaluate_and_train_name_the_lines_they_skipped(trained, tiny, tmp_path, capsys):
    rows = trained["dev"].read_text().splitlines(keepends=True)[:40]
    rows[2] = json.dumps({"sentence1": "red dog", "sentence2": "", "gold_label": "neutral"}) + "\n"
    data = tmp_path / "gappy.jsonl"
    data.write_text("".join(rows))
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(data), "--report", str(tmp_path / "r")]) == 0
    assert "skipped 1 empty premise or hypothesis (line 3)" in capsys.readouterr().out
    assert "Skipped: 1 empty premise or hypothesis (line 3)" in (tmp_path / "r" / "evaluation.md").read_text()
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(data), "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "; skipped 1 empty premise or hypothesis (line 3)" in capsys.readouterr().err


def test_evaluate_warns_of_training_pairs_in_its_data_by_their_texts(trained, tmp_path, capsys):
    """A copy, a sample or a mix of the training file, under another name, is found by the pairs' texts, which the
    run keeps as hashes."""
    from bertnli.data import read_dataset

    train_rows, dev_rows = (trained[name].read_text().splitlines(keepends=True) for name in ("train", "dev"))
    mixed = tmp_path / "sample.jsonl"
    mixed.write_text("".join(dev_rows[:20] + train_rows[:7] + dev_rows[20:40]))
    trained_pairs = {(e.premise, e.hypothesis) for e in read_dataset(trained["train"]).examples}
    expected = [e.line for e in read_dataset(mixed).examples if (e.premise, e.hypothesis) in trained_pairs]
    assert len(expected) >= 7  # the training rows, and any dev pair that happens to be one too
    assert main(["evaluate", "--model", str(trained["run"] / "model"), "--data", str(mixed)]) == 0
    shown = ", ".join(map(str, expected[:3])) + ", ..."
    assert (f"warning: {len(expected)} of the 47 pairs of {mixed} are pairs {trained['run'] / 'model'} was trained "
            f"on (lines {shown}): their scores measure memory as much as skill") in capsys.readouterr().err
    # Only the run's own model: a model folder copied out of it, beside a run's files, is no run's.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained["run"] / "model", elsewhere / "model")
    shutil.copy(trained["run"] / "train_pairs.npy", elsewhere)
    assert main(["evaluate", "--model", str(elsewhere / "model"), "--data", str(mixed)]) == 0
    assert "warning" not in capsys.readouterr().err
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(row for row, e in zip(dev_rows, read_dataset(trained["dev"]).examples)
                             if (e.premise, e.hypothesis) not in trained_pairs))
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(clean)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_predict_on_an_input_with_no_pairs_writes_an_output_with_none(trained, tmp_path, capsys, monkeypatch):
    """A pipeline's batch may come empty: that is no error, and the output says so by holding no predictions."""
    import io

    header_only = tmp_path / "header.csv"
    header_only.write_text("id,premise,hypothesis\n")
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(header_only), "--output", str(out)]) == 0
    assert out.read_text().startswith("line,premise,hypothesis,label,p_") and len(out.read_text().splitlines()) == 1
    assert f"{header_only}: holds no examples; no predictions to write" in capsys.readouterr().err
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"premise": "red dog", "hypothesis": " "}\n')
    assert main(["predict", "--model", str(trained["run"]), "--input", str(blank), "--output", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "(skipped 1 empty premise or hypothesis (line 1)); no predictions" in captured.err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["predict", "--model", str(trained["run"]), "--input", "-"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(header_only)]) == 1  # nothing to score


def test_predictions_go_to_standard_output_in_the_format_asked_for(trained, tmp_path, capsys):
    model = ["predict", "--model", str(trained["run"])]
    assert main([*model, "--input", str(trained["dev"]), "--limit", "3", "--output-format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [row["line"] for row in rows] == ["1", "2", "3"] and {"p_entailment", "truncated"} <= rows[0].keys()
    assert main([*model, "red dog runs", "dog", "--output-format", "tsv"]) == 0  # one pair, as a table row too
    header, row = capsys.readouterr().out.splitlines()
    assert header.split("\t")[:4] == ["line", "premise", "hypothesis", "label"] and row.split("\t")[1] == "red dog runs"
    assert main([*model, "red dog", "dog", "--output", str(tmp_path / "p.jsonl"), "--output-format", "csv"]) == 1
    assert "--output-format is for standard output" in capsys.readouterr().err
    # Without the texts: what joins back to the input, and the prediction.
    out = tmp_path / "bare.csv"
    assert main([*model, "--input", str(trained["dev"]), "--limit", "3", "--no-texts", "--output", str(out)]) == 0
    labels = json.loads((trained["run"] / "config.json").read_text())["train"]["labels"]
    assert out.read_text().splitlines()[0] == ",".join(["line", "label", *(f"p_{x}" for x in labels), "truncated"])
    assert main([*model, "--input", str(trained["dev"]), "--limit", "2", "--no-texts"]) == 0
    assert [set(json.loads(line)) for line in capsys.readouterr().out.splitlines()] == [
        {"line", "label", "probabilities", "truncated"}] * 2


def test_a_stream_named_as_output_takes_the_format_asked_for(trained, capfd):
    assert main(["predict", "--model", str(trained["run"]), "red dog runs", "dog", "--output", "/dev/stdout",
                 "--output-format", "csv"]) == 0
    assert capfd.readouterr().out.startswith("line,premise,hypothesis,label,")


def test_predictions_written_as_tsv_read_back_with_the_same_texts(trained, tmp_path):
    """TSV is written the way the readers read it: quotes stay plain text, tabs and line breaks become spaces."""
    from bertnli.data import read_dataset

    premises = ['"Stop," he said, "red dog."', "red\tdog runs", "red dog\nruns big"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"premise": p, "hypothesis": "dog"}) + "\n" for p in premises))
    out = tmp_path / "predictions.tsv"
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", str(out)]) == 0
    back = read_dataset(out, columns={"label": None})
    assert [e.premise for e in back.examples] == ['"Stop," he said, "red dog."', "red dog runs", "red dog runs big"]
    assert [e.hypothesis for e in back.examples] == ["dog"] * 3 and not back.skipped


def test_evaluate_refuses_predictions_as_gold_labels_which_training_may_read(trained, tmp_path, capsys):
    """A predictions file's labels are the model's own answers: scoring them would report a perfect model."""
    from bertnli import evaluate, read_dataset, train, train_validation_split
    from bertnli.data import merge_to_two_classes
    from bertnli.errors import DataError
    from bertnli.training import TrainConfig

    for suffix in (".jsonl", ".csv", ".tsv"):
        out = tmp_path / f"predictions{suffix}"
        assert main(["predict", "--model", str(trained["run"]), "--input", str(trained["dev"]), "--limit", "20",
                     "--output", str(out), "--no-progress"]) == 0
        capsys.readouterr()
        assert main(["evaluate", "--model", str(trained["run"]), "--data", str(out), "--no-progress"]) == 1
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"bertnli evaluate: error: {out}: holds predictions written by bertnli"), line
        assert main(["evaluate", "--model", str(tmp_path / "nowhere"), "--data", str(out)]) == 1  # data first
        assert "holds predictions written by bertnli" in capsys.readouterr().err
        predictions = read_dataset(out)  # as training data (pseudo-labels) it reads as any labelled file
        assert predictions.predicted and len(predictions) == 20
        with pytest.raises(DataError, match="holds predictions written by bertnli"):
            evaluate(trained["run"], predictions)
    blank_first = tmp_path / "blank_first.jsonl"
    blank_first.write_text("\n" + (tmp_path / "predictions.jsonl").read_text())
    predictions = read_dataset(blank_first)
    assert predictions.predicted
    assert merge_to_two_classes(predictions).predicted  # what is made of them is marked too
    assert all(part.predicted for part in train_validation_split(predictions, 0.25))
    with pytest.raises(DataError, match="holds predictions written by bertnli"):  # before any training
        train(TrainConfig.from_recipe("d2l", model=str(trained["run"] / "model"), epochs=1), predictions,
              predictions, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert main(["train", "--model", str(trained["run"] / "model"), "--train", str(out), "--eval",
                 str(trained["dev"]), "--eval", str(out), "--out", str(tmp_path / "never")]) == 1
    err = capsys.readouterr().err
    assert "holds predictions written by bertnli" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "never").exists()
    assert main(["train", "--model", str(trained["run"] / "model"), "--train", str(out), "--out",
                 str(tmp_path / "never")]) == 1  # the held-out part is a model's answers too
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bertnli train: error: {out.name}[validation 10%]: is held out from predictions written by bertnli: "
        "validating on a model's answers would measure agreement with that model, not accuracy; give "
        "gold-labelled validation data (--eval; eval_set in Python)")
    assert not (tmp_path / "never").exists()
    assert main(["train", "--model", str(trained["run"] / "model"), "--train", str(out), "--eval",
                 str(trained["dev"]), "--limit", "20", "--epochs", "1", "--out", str(tmp_path / "pseudo"),
                 "--no-progress"]) == 0  # self-training: allowed, and said
    assert f"warning: {out.name} holds predictions written by bertnli: the model learns another model's answers " \
           "(pseudo-labels), not gold labels" in capsys.readouterr().err
    gold = tmp_path / "gold.csv"  # a column named truncated alone is no mark of predictions
    gold.write_text("premise,hypothesis,label,truncated\nred dog runs,dog,entailment,false\n")
    assert not read_dataset(gold).predicted
    assert not read_dataset(trained["dev"]).predicted


def test_an_output_written_anew_keeps_its_permissions_its_link_and_its_kind(trained, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"premise": "red dog", "hypothesis": "dog"}\n')
    predict = ["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output"]
    private = tmp_path / "private.jsonl"
    private.write_text("old")
    private.chmod(0o600)
    assert main([*predict, str(private)]) == 0
    assert private.stat().st_mode & 0o777 == 0o600 and '"label"' in private.read_text()
    link = tmp_path / "latest.jsonl"
    link.symlink_to(private)
    private.write_text("old")
    assert main([*predict, str(link)]) == 0
    assert link.is_symlink() and '"label"' in private.read_text()
    log = tmp_path / "all.jsonl"  # --output /dev/stdout with standard output appended to a file
    log.write_text("earlier\n")
    with log.open("a") as stdout:
        subprocess.run([sys.executable, "-m", "bertnli", *predict, "/dev/stdout"], stdout=stdout, env=child_env(),
                       check=True, timeout=120)
    assert log.read_text().startswith("earlier\n{") and '"label"' in log.read_text()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    assert main([*predict, str(fifo)]) == 0
    assert '"label"' in reader.communicate(timeout=30)[0] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_plot_redraws_the_figures(trained, capsys):
    figures = [trained["run"] / name for name in ("curves.png", "confusion.png", "class_scores.png", "accuracy.png")]
    for figure in figures:
        figure.unlink()
    assert main(["plot", str(trained["run"])]) == 0
    assert all(figure.stat().st_size > 1000 for figure in figures)
    assert capsys.readouterr().out.split() == [str(figure) for figure in figures]


def test_train_keeps_the_model_by_the_validation_score_asked_for(trained, tiny, tmp_path, capsys):
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--out",
                 str(tmp_path / "run"), "--epochs", "1", "--batch-size", "64", "--select-by", "macro_f1",
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["select_by"] == "macro_f1"
    assert " · kept by validation macro F1 · " in capsys.readouterr().err  # the run's opening line
    assert "macro_f1" in json.loads((tmp_path / "run" / "model" / "config.json").read_text())["trained"]


def test_plot_compares_runs_in_a_table_and_on_one_figure_against_epochs(trained, tiny, tmp_path, capsys,
                                                                        monkeypatch):
    from bertnli.plots import DPI, comparison_figure

    # 128 pairs in batches of 32: 4 steps an epoch, validated every 2 steps and at each epoch's end.
    often = tmp_path / "often"
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["train"]), "--eval",
                 str(trained["dev"]), "--limit", "128", "--out", str(often), "--recipe", "d2l", "--lr", "1e-3",
                 "--batch-size", "32", "--epochs", "2", "--eval-every", "2", "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(trained["run"]), str(often)]) == 0
    header, *rows, figure = capsys.readouterr().out.splitlines()
    assert figure == "comparison.png" and (tmp_path / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert header.split()[:6] == ["run", "model", "recipe", "batch", "lr", "epochs"]
    for row, run in zip(rows, (trained["run"], often), strict=True):
        kept = RunDir(run).kept_validation()
        assert row.startswith(f"{run}  ") and f" {kept['eval_accuracy']:.4f} " in row
        assert f"epoch {kept['epoch']}, step {kept['step']}" in row
    assert " 30 of 30 " in rows[0] and " 2 of 2 " in rows[1]

    def validation_line(figure, run):
        [line] = [line for line in figure.axes[1].lines if line.get_label() == str(run)]
        return list(line.get_xdata()), list(line.get_ydata())

    shown = comparison_figure([trained["run"], often])
    assert validation_line(shown, trained["run"])[0] == list(range(1, 31))
    # Each kept model is starred in its run's colour, behind the validations, so that a lone one shows on it.
    lines = shown.axes[1].lines
    stars = [line for line in lines if line.get_marker() == "*"]
    runs_lines = [next(line for line in lines if line.get_label() == str(run)) for run in (trained["run"], often)]
    assert [star.get_color() for star in stars] == [line.get_color() for line in runs_lines]
    assert max(star.get_zorder() for star in stars) < min(line.get_zorder() for line in runs_lines)
    # A notebook shows it as a PNG, whether pyplot's inline backend has been loaded or not.
    png = shown._repr_png_()
    width, height = struct.unpack(">II", png[16:24])
    assert png.startswith(b"\x89PNG") and (width, height) == tuple(round(DPI * inches)
                                                                   for inches in shown.get_size_inches())
    x, y = validation_line(shown, often)
    assert x == [0.5, 1.0, 1.5, 2.0] and y == [r["eval_accuracy"] for r in RunDir(often).validations()]
    # A run stopped within its second epoch: that epoch is taken to be as long as the first.
    stopped = tmp_path / "stopped"
    shutil.copytree(often, stopped)
    records = [r for r in RunDir(stopped).metrics() if r["step"] <= 6]
    (stopped / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert validation_line(comparison_figure([often, stopped]), stopped)[0] == [0.5, 1.0, 1.5]
    # Stopped within its first: as long as its data and batch make it.
    records = [r for r in records if r["step"] <= 3]
    (stopped / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert validation_line(comparison_figure([often, stopped]), stopped)[0] == [0.5]

    assert main(["plot", str(often), "--out", "one.png"]) == 1
    assert "--out names the figure that compares several runs" in capsys.readouterr().err
    assert main(["plot", str(often), str(trained["dev"])]) == 1
    assert capsys.readouterr().err.strip() == f"bertnli plot: error: {trained['dev']} is a file, not a run directory"


def test_drawing_figures_leaves_a_notebooks_matplotlib_as_it_was(trained, tmp_path):
    """A notebook's backend and its open figures are its own: drawing a run's figures changes neither."""
    script = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
figure = plt.figure()
from bertnli.plots import plot_curves
from bertnli.training import RunDir
plot_curves(RunDir({str(trained["run"])!r}), {str(tmp_path / "curves.png")!r})
print(matplotlib.get_backend(), plt.get_fignums(), plt.gcf() is figure)
"""
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "[1]", "True"]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_plot_names_a_damaged_report_in_one_line(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    for damage in ('{"labels": ["a"', '{"labels": ["a", "b"], "confusion": [[1]]}'):
        (run / "evaluation.json").write_text(damage)
        assert main(["plot", str(run)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().startswith(f"bertnli plot: error: {run / 'evaluation.json'}: ")


def test_train_dataset_snli_downloads_the_archive_then_trains(http_server, tiny, tmp_path, monkeypatch, capsys):
    archive = snli_zip_of({"train": synthetic_dataset(300, 1), "dev": synthetic_dataset(60, 2),
                           "test": synthetic_dataset(10, 3)})
    http_server.files["/snli_1.0.zip"] = archive
    entry = DATASETS["snli"]
    monkeypatch.setitem(DATASETS, "snli", dataclasses.replace(entry, url=f"{http_server.url}/snli_1.0.zip",
                                                              md5=hashlib.md5(archive).hexdigest()))
    args = ["train", "--dataset", "snli", "--model", tiny, "--num-heads", "4", "--epochs", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "300 pairs" in capsys.readouterr().err  # the split read from the downloaded archive
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert http_server.requests == ["/snli_1.0.zip"]  # the second run used the cache


def test_data_download_fetches_into_the_cache_where_train_finds_it(http_server, tmp_path, monkeypatch, capsys):
    from bertnli.data import data_cache_dir

    archive = snli_zip_of({"train": synthetic_dataset(30, 1), "dev": synthetic_dataset(10, 2)})
    http_server.files["/mirror/snli_1.0.zip"] = archive
    monkeypatch.setitem(DATASETS, "snli", dataclasses.replace(DATASETS["snli"], md5=hashlib.md5(archive).hexdigest()))
    assert main(["data", "download", "snli", "--url", f"{http_server.url}/mirror/snli_1.0.zip"]) == 0
    assert capsys.readouterr().out.strip() == f"snli: {data_cache_dir() / 'snli_1.0.zip'}"
    assert (data_cache_dir() / "snli_1.0.zip").read_bytes() == archive
    assert main(["data", "inspect", "snli:train"]) == 0  # read from the cache by name
    assert capsys.readouterr().out.startswith("snli_1.0_train: 30 pairs")


def test_no_cache_trains_without_writing_encoded_data(trained, tiny, tmp_path):
    from bertnli.paths import cache_root

    args = ["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--epochs", "1",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-cache"]) == 0
    assert not (cache_root() / "encoded").exists()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert len(list((cache_root() / "encoded").iterdir())) == 1  # the file, which both halves are taken from


def test_offline_dataset_download_is_one_clear_line(tiny, tmp_path, monkeypatch, capsys):
    entry = DATASETS["snli"]
    monkeypatch.setitem(DATASETS, "snli", dataclasses.replace(entry, url="http://127.0.0.1:9/snli_1.0.zip"))
    assert main(["train", "--dataset", "snli", "--model", tiny, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "pass local files instead, such as path/to/snli_1.0_train.jsonl" in err[0]


def test_bad_input_is_one_line_naming_file_and_line(tiny, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n{"sentence1": \n')
    assert main(["train", "--model", tiny, "--train", str(bad), "--out", str(tmp_path / "r")]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{bad}:2:" in line


def test_a_validation_fraction_that_leaves_a_part_empty_is_refused_before_reading(tmp_path, capsys):
    from bertnli import train_validation_split
    from bertnli.errors import ConfigError

    for fraction in ("1.5", "0", "1"):
        assert main(["train", "--train", str(tmp_path / "not_read_yet.jsonl"), "--validation-fraction", fraction,
                     "--out", str(tmp_path / "run")]) == 1
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.endswith(f"validation_fraction (--validation-fraction) must be between 0 and 1, not "
                             f"{float(fraction)}"), line
    with pytest.raises(ConfigError, match=r"must be between 0 and 1, not -0\.1"):
        train_validation_split(Dataset("d", []), -0.1)


def test_predict_says_which_pair_text_is_missing(tmp_path, capsys):
    model = ["predict", "--model", str(tmp_path)]  # refused before any model is loaded
    for words, told in ((["only premise"], "give the hypothesis after the premise (quoted), or --input pairs.jsonl"),
                        ([], "give a premise and a hypothesis (quoted), or --input pairs.jsonl"),
                        (["a", "b", "--input", "pairs.jsonl"], "or --input pairs.jsonl, not both")):
        assert main([*model, *words]) == 1
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.endswith(told), line


def test_missing_model_is_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nowhere"), "a", "b"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "nowhere" in line


def test_an_unwritable_output_is_one_line_naming_it(trained, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"premise": "red dog", "hypothesis": "dog"}\n')
    out = tmp_path / "no_such_folder" / "predictions.jsonl"
    out.parent.write_text("a file where the folder should be")
    assert main(["predict", "--model", str(trained["run"]), "--input", str(pairs), "--output", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (f"bertnli predict: error: --output {out} cannot be written "
                                               f"({out.parent} is not a writable folder)")
    report = out.parent / "report"  # a report folder too, before any scoring
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--report",
                 str(report)]) == 1
    assert capsys.readouterr().err.strip() == (f"bertnli evaluate: error: --report {report} cannot be written "
                                               f"({out.parent} is not a writable folder)")


@pytest.mark.parametrize("setting", [["--log-every", "0"], ["--dropout", "1.5"], ["--early-stopping", "0"],
                                     ["--grad-clip", "-1"], ["--weight-decay", "-0.1"], ["--max-len", "129"]])
def test_impossible_settings_are_refused_before_training(tiny, trained, tmp_path, capsys, setting):
    """One line naming the setting, before any step (the tiny model has 128 positions)."""
    args = ["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run"), *setting]) == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and line.startswith("bertnli train: error: ")
    assert setting[0].lstrip("-").replace("-", "_") in line.replace("-", "_")
    assert not (tmp_path / "run").exists()  # nothing written, not even an empty folder


def test_a_loss_that_overflows_stops_training_in_one_line_before_saving(tiny, trained, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--out", str(run),
                 "--lr", "1e6", "--log-every", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bertnli train: error: the training loss became nan by step ")
    assert "Traceback" not in "".join(err) and not (run / "model").exists() and not (run / "checkpoint.pt").exists()


def test_resume_refuses_other_settings_and_other_data(trained, tmp_path, capsys):
    assert main(["train", "--resume", str(trained["run"]), "--epochs", "40", "--lr", "1"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--epochs, --lr" in line
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["source"]["train"] = [str(trained["dev"])]  # as if the file named at the start had changed
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "training data differ" in line


def test_resume_splits_the_data_by_the_rule_the_run_recorded(trained, tiny, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--out", str(run),
                 "--epochs", "1", "--batch-size", "64", "--no-progress"]) == 0  # 300 pairs: 30 held out
    monkeypatch.setattr("bertnli.data.splits.DEFAULT_VALIDATION_CAP", 20)  # a cap brought in later
    _edit_config(run, lambda c: c["data"]["source"].pop("validation_cap"))  # as runs recorded before any cap
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "finished training already" in capsys.readouterr().err
    _edit_config(run, lambda c: c["data"]["source"].update(validation_cap=20))  # the rule recorded is the one used
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    assert "training data differ" in capsys.readouterr().err


def _edit_config(run, edit):
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda run: (run / "metrics.jsonl").write_bytes(b'{"kind": "step", "step": 1}\n\xff\n'),
     "metrics.jsonl: not UTF-8 text"),
    (lambda run: (run / "metrics.jsonl").write_text('[1]\n{"kind": "step", "step": 1}\n'),
     "metrics.jsonl: line 1 is not a record of a step, validation or epoch"),
    (lambda run: (run / "metrics.jsonl").write_text('{"kind": "epoch"}\n{"kind": "step", "step": 1}\n'),
     "metrics.jsonl: line 1 is not a record of a step, validation or epoch"),
    (lambda run: torch.save({"foo": 1}, run / "checkpoint.pt"), "checkpoint.pt: not a bertnli training checkpoint"),
    (lambda run: (run / "checkpoint.pt").write_bytes(b""), "checkpoint.pt: cannot read checkpoint: "),
    (lambda run: _edit_config(run, lambda c: c["train"].update(lr="abc")),
     "config.json: the recorded training settings do not hold: invalid training settings: lr='abc'"),
    (lambda run: _edit_config(run, lambda c: c["train"].update(seed=-5)),
     "config.json: the recorded training settings do not hold: invalid value for seed"),
    (lambda run: _edit_config(run, lambda c: c["data"].update(source="train.jsonl")),
     "config.json: data.source is not the record"),
    (lambda run: _edit_config(run, lambda c: c["data"]["source"].update(train="train.jsonl")),
     "config.json: data.source is not the record"),
    (lambda run: _edit_config(run, lambda c: c.pop("train")), "is not a run directory: its config.json is not"),
])
def test_a_damaged_run_is_named_in_one_line_before_resuming(trained, tmp_path, capsys, damage, expected):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    damage(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert expected in err.strip().splitlines()[-1] and "Traceback" not in err


def test_a_run_folder_is_told_apart_from_its_model_and_from_other_folders(trained, tiny, tmp_path, capsys):
    assert main(["train", "--resume", str(trained["run"] / "model")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"; {trained['run']} is the run")
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"name": "my project"}')
    (project / "notes.md").write_text("mine")
    args = ["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--epochs", "1",
            "--no-progress", "--out", str(project)]
    (project / "model").mkdir()  # a model of the user's own, where a run keeps its model
    (project / "model" / "pytorch_model.bin").write_text("weights")
    logged = tmp_path / "logged"  # a folder holding only the job's own log, as Slurm writes it: fine
    logged.mkdir()
    (logged / "slurm-1.out").write_text("the job's log")
    assert main([*args[:-1], str(logged)]) == 0
    assert (logged / "slurm-1.out").read_text() == "the job's log" and (logged / "model").is_dir()
    for overwrite in ([], ["--overwrite"]):  # --overwrite starts a run over, but never writes over other files
        assert main(args + overwrite) == 1
        assert "holds config.json, model but no run, which a run would write over" in capsys.readouterr().err
        assert (project / "config.json").read_text() == '{"name": "my project"}'
        assert (project / "model" / "pytorch_model.bin").read_text() == "weights"


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(trained, tiny, tmp_path, capsys):
    args = ["--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]), "--epochs", "1",
            "--checkpoint-every", "0", "--no-progress"]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    run = tmp_path / "stopped"
    assert main(["train", *args, "--out", str(run)]) == 0
    # As a kill on another machine leaves it after the first model was saved, in the middle of writing the
    # first checkpoint; beside the user's own hidden files, which stay.
    killed = "@another_machine~1~12345@"
    (run / "checkpoint.pt").rename(run / f".tmp-checkpoint.pt.{killed}.x1y2")
    (run / f".model.tmp-{killed}x1y2").mkdir()
    (run / ".tmp-notes.txt").write_text("mine")
    (run / ".model.backup-v1").mkdir()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "stopped before its first checkpoint: it starts again from its first step" in capsys.readouterr().err
    assert sorted(p.name for p in run.glob(".*")) == [".model.backup-v1", ".tmp-notes.txt"]
    timings = {"train_seconds": ANY, "eval_seconds": ANY, "pairs_per_second": ANY}
    assert [r for r in RunDir(run).metrics() if r["kind"] == "epoch"] == \
        [{**r, **timings} for r in RunDir(tmp_path / "whole").metrics() if r["kind"] == "epoch"]


def test_a_run_started_with_relative_paths_resumes_from_any_folder(trained, tiny, tmp_path, monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    (start / "data").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(trained["dev"], start / "data" / "dev.jsonl")
    shutil.copytree(tiny, start / "tiny")
    monkeypatch.chdir(start)
    assert main(["train", "--model", "tiny", "--num-heads", "4", "--train", "data/dev.jsonl", "--out", "run",
                 "--epochs", "1", "--no-progress"]) == 0
    config = json.loads((start / "run" / "config.json").read_text())
    assert config["data"]["source"]["train"] == [str(start / "data" / "dev.jsonl")]
    assert config["train"]["model"] == str(start / "tiny")
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(start / "run"), "--no-progress"]) == 0


def test_a_label_missing_from_the_training_data_is_one_warning_line(trained, tiny, tmp_path, capsys):
    rows = [line for line in trained["dev"].read_text().splitlines() if '"neutral"' not in line]
    data = tmp_path / "no_neutral.jsonl"
    data.write_text("\n".join(rows) + "\n")
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(data), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert warnings == ["warning: no training pair is neutral; the model keeps the labels entailment, neutral, "
                        "contradiction but will learn never to predict neutral"]


def test_under_torchrun_only_the_first_process_prints(trained, tiny, tmp_path, capsys, monkeypatch):
    # What torchrun tells the second process of a machine (alone here, it still trains).
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "pairs" not in out.err and "best model" not in out.out
    # Bad settings and files, which every process of a machine meets alike, are told once, by the first.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence1": \n')
    bad_file = ["train", "--model", tiny, "--train", str(bad), "--out", str(tmp_path / "bad")]
    for args in (bad_file, [*bad_file, "--lr", "0"]):
        assert main(args) == 1
        assert capsys.readouterr().err == ""
    # The first process of another machine tells what it alone may meet (its files), naming its rank.
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(bad_file) == 1
    assert capsys.readouterr().err.startswith(f"bertnli train: error: (process 1) {bad}:1:")
    assert main([*bad_file, "--lr", "0"]) == 1
    assert capsys.readouterr().err == ""
    # A RANK without torchrun's LOCAL_RANK is some scheduler's: every error is told.
    monkeypatch.delenv("LOCAL_RANK")
    assert main(["predict", "--model", str(tmp_path / "nowhere"), "a", "b"]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_progress_in_a_log_file_is_whole_lines(trained, tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bertnli.progress.LOG_INTERVAL_S", 0)  # a line at every update, not every 30 s
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "64", "--eval-every", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("best model (validation accuracy ") and len(out.splitlines()) == 1  # the result alone
    assert "\r" not in err and "\x1b" not in err  # no cursor moves either, for the validation inside the epoch
    bars = [line for line in err.splitlines() if line.startswith("epoch 1/1:")]
    counts = [bar.split("|")[-1].split()[0] for bar in bars]
    assert counts == [f"{n}/5" for n in range(6)]  # 270 pairs: 5 batches, each line once
    notes = [line.split(":")[0] for line in err.splitlines() if "validation accuracy" in line]
    assert notes == ["step 2 (epoch 1 of 1)", "step 4 (epoch 1 of 1)", "epoch 1"]  # every 2 steps, then the end


def test_progress_in_a_notebook_without_ipywidgets_is_tqdms_text_bar_without_a_warning(monkeypatch):
    """A notebook's stderr is no terminal, yet redraws a bar in place: tqdm's text bar, where its widget would need
    ipywidgets (tqdm.auto warned that they were missing)."""
    import importlib.util
    import io

    from tqdm import tqdm

    from bertnli.progress import progress_bar

    class KernelStream(io.StringIO):  # as ipykernel's OutStream reads to bertnli
        pass

    KernelStream.__module__ = "ipykernel.iostream"
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else
                        find_spec(name, *a))
    monkeypatch.setattr(sys, "stderr", KernelStream())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = progress_bar(total=3, desc="epoch 1/1", file=sys.stderr)
        bar.update(3)
        bar.close()
    assert type(bar) is tqdm and "\r" in sys.stderr.getvalue() and "3/3" in sys.stderr.getvalue()


def test_progress_in_a_log_file_of_short_work_is_its_first_and_last_line(trained, tiny, tmp_path, capsys):
    assert main(["train", "--model", tiny, "--num-heads", "4", "--train", str(trained["dev"]),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "64"]) == 0
    err = capsys.readouterr().err
    bars = [line.split("|")[-1].split()[0] for line in err.splitlines() if line.startswith("epoch 1/1:")]
    assert bars == ["0/5", "5/5"]
    assert f"{tmp_path / 'run'}: tiny, finetune recipe · trained on dev.jsonl[train 90%] · batch 64, lr 5e-05 · " \
           in err  # what the run is, first
    # Validation, then the best model's evaluation for its report, each with a bar of its own.
    assert [line.split("|")[-1].split()[0] for line in err.splitlines() if line.startswith("validating:")] == \
        ["0/30", "30/30"]
    final = err[err.index(f"{tmp_path / 'run'}: scoring the best model (epoch 1, step 5) on the 30 validation pairs"):]
    assert [line.split("|")[-1].split()[0] for line in final.splitlines() if line.startswith("predicting:")] == \
        ["0/30", "30/30"]
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(trained["dev"]), "--output",
                 str(tmp_path / "predictions.jsonl")]) == 0
    bars = [line.split("|")[-1].split()[0] for line in capsys.readouterr().err.splitlines()
            if line.startswith("predicting:")]
    assert bars == ["0/300", "300/300"]


def test_validating_on_training_pairs_warns(trained, tiny, tmp_path, capsys):
    unique = {(e.premise, e.hypothesis): e for e in synthetic_dataset(600, 3).examples}
    data = jsonl(tmp_path / "unique.jsonl", Dataset("unique", list(unique.values())))
    args = ["train", "--model", tiny, "--num-heads", "4", "--train", str(data), "--epochs", "1", "--no-progress"]
    assert main([*args, "--eval", str(data), "--out", str(tmp_path / "same")]) == 0
    assert f"warning: {len(unique)} of the {len(unique)} validation pairs are also training pairs" in \
        capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "held_out")]) == 0  # a held-out slice shares none
    assert "also training pairs" not in capsys.readouterr().err


def test_evaluating_on_the_training_file_warns(trained, capsys):
    for model in (trained["run"], trained["run"] / "model"):
        assert main(["evaluate", "--model", str(model), "--data", str(trained["train"]), "--limit", "50"]) == 0
        assert f"warning: {trained['train']} is what {model} was trained on" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--limit", "50"]) == 0
    assert f"{trained['dev']} is what" not in capsys.readouterr().err  # another file (its pairs: by their texts)


def test_two_class_scores_of_three_class_data(trained, capsys):
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--json"]) == 0
    three = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--two-class",
                 "--json"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["labels"] == ["entailment", "not_entailment"] and two["total"] == three["total"]
    entailed = three["per_class"]["entailment"]["support"]
    assert two["per_class"]["entailment"]["support"] == entailed
    assert two["per_class"]["not_entailment"]["support"] == three["total"] - entailed
    assert two["accuracy"] > 0.9
    scored = f"Model {trained['run']}, data {trained['dev']}."
    assert three["notes"] == [scored] and two["notes"] == [scored,
        "Two classes: the model's neutral and contradiction are merged into not_entailment, so a pair is "
        "entailment when the model gives entailment a probability over 0.5."]


def test_a_two_class_model_on_three_class_data_is_told_about_two_class(trained):
    from bertnli import NLIModel
    from bertnli.data import read_dataset
    from bertnli.errors import DataError
    from bertnli.evaluation import evaluate
    from bertnli.model import BERTClassifier

    three = NLIModel.load(trained["run"], device="cpu")
    two = NLIModel(BERTClassifier(three.network.config, 2), three.tokenizer, ["entailment", "not_entailment"],
                   device="cpu")
    with pytest.raises(DataError, match=r"\['contradiction', 'neutral'\] are not among .*with --two-class"):
        evaluate(two, read_dataset(trained["dev"]))
    assert evaluate(two, read_dataset(trained["dev"]), two_class=True).report.total == 300


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_help_answers_without_loading_torch():
    """`bertnli --help` must answer at once; torch alone takes a second or more to import."""
    script = ("import sys, contextlib, io\nfrom bertnli.cli import main\n"
              "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
              "    main(['train', '--help'])\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_two_class_data_needs_the_explicit_merge(trained, tmp_path, capsys, monkeypatch):
    from bertnli import NLIModel

    rte = tmp_path / "dev.tsv"
    rows = [f"{i}\t{e.premise}\t{e.hypothesis}\t{'entailment' if e.label == 'entailment' else 'not_entailment'}"
            for i, e in enumerate(synthetic_dataset(300, 2).examples)]
    rte.write_text("index\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    with monkeypatch.context() as patch:  # a file that cannot be scored stops the command before any scoring
        patch.setattr(NLIModel, "logits", lambda *args: pytest.fail("a dataset was scored"))
        assert main(["evaluate", "--model", str(trained["run"]), "--data", str(trained["dev"]), "--data",
                     str(rte)]) == 1
    assert "--two-class" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained["run"]), "--data", str(rte), "--two-class", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == ["entailment", "not_entailment"] and result["accuracy"] > 0.9


def test_resuming_a_run_started_from_python_says_how(tiny, tmp_path, capsys):
    from bertnli.training import TrainConfig, train

    cfg = TrainConfig.from_recipe("d2l", model=tiny, num_heads=4, epochs=1, batch_size=32)
    train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "resume=True" in line


def test_a_run_directory_is_a_pretrained_model_to_fine_tune_further(trained):
    from bertnli.weights import load_classifier, load_pretrained

    pretrained = load_pretrained(trained["run"])
    saved = load_classifier(trained["run"] / "model")
    assert pretrained.kind == "bertnli" and pretrained.source == str(trained["run"] / "model")
    ours, theirs = pretrained.model.encoder.state_dict(), saved.model.encoder.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_predict_takes_json_objects_under_the_column_names_files_use(trained):
    from bertnli import NLIModel

    model = NLIModel.load(trained["run"], device="cpu")
    pairs = [("red dog runs big", "dog"), ("red dog runs big", "cat")]
    wanted = [p.probabilities for p in model.predict(pairs)]
    for premise, hypothesis in (("premise", "hypothesis"), ("sentence1", "sentence2"), ("text_a", "text_b")):
        got = model.predict([{premise: a, hypothesis: b, "id": n} for n, (a, b) in enumerate(pairs)])
        assert [p.probabilities for p in got] == wanted
    with pytest.raises(TypeError, match=r"item 1 has no hypothesis \(its keys: premise\); name it hypothesis or "
                                        r"sentence2 or sentence_B or text_b"):
        model.predict([{"premise": "a", "hypothesis": "b"}, {"premise": "a"}])


def test_nlimodel_save_then_load_predicts_the_same(trained, tmp_path):
    from bertnli import NLIModel

    pairs = [("red dog runs big", "no dog"), ("old cat sleeps", "bird"), ("small bird eats", "bird")]
    model = NLIModel.load(trained["run"], device="cpu")
    model.save(tmp_path / "copy")
    again = NLIModel.load(tmp_path / "copy", device="cpu")
    assert again.labels == model.labels
    assert [p.probabilities for p in again.predict(pairs)] == [p.probabilities for p in model.predict(pairs)]


def test_predict_refuses_to_write_over_its_input_and_blank_or_doubled_pairs(trained, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"premise": "red dog", "hypothesis": "dog", "pairID": "7"}\n')
    before = pairs.read_text()
    model = ["predict", "--model", str(trained["run"])]
    for args, reason in [(["--input", str(pairs), "--output", str(pairs)], "would destroy the input"),
                         (["--input", str(pairs), "--output", str(tmp_path)], "is a folder"),
                         (["red dog", " "], "must not be empty"),
                         (["red dog", "dog", "--input", str(pairs)], "not both"),
                         (["red dog", "--input", str(pairs)], "not both")]:
        assert main([*model, *args]) == 1
        assert reason in capsys.readouterr().err.strip().splitlines()[-1]
    assert pairs.read_text() == before


def test_conflicting_data_options_are_refused(tiny, trained, tmp_path, capsys):
    base = ["train", "--model", tiny, "--out", str(tmp_path / "run")]
    for args, reason in [(["--dataset", "snli", "--train", str(trained["dev"])], "not both"),
                         (["--train", str(trained["dev"]), "--eval", str(trained["dev"]),
                           "--validation-fraction", "0.3"], "--validation-fraction")]:
        assert main([*base, *args]) == 1
        assert reason in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--train", str(trained["dev"]), "--limit", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_numeric_labels_are_read_with_a_label_map_and_mixed_label_kinds_are_refused(tiny, tmp_path, capsys):
    glue = {"entailment": 0, "neutral": 1, "contradiction": 2}
    examples = synthetic_dataset(60, 1).examples
    numeric = tmp_path / "numeric.tsv"
    numeric.write_text("premise\thypothesis\tlabel\n"
                       + "".join(f"{e.premise}\t{e.hypothesis}\t{glue[e.label]}\n" for e in examples))
    assert main(["data", "inspect", str(numeric)]) == 1
    assert "--label-map glue" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "inspect", str(numeric), "--label-map", "1=neutral,1=entailment"])
    assert "'1' is given twice in '1=neutral,1=entailment'" in capsys.readouterr().err
    assert main(["data", "inspect", str(numeric), "--label-map", "glue"]) == 0
    counts = {label: sum(e.label == label for e in examples) for label in glue}
    assert capsys.readouterr().out.splitlines() == [
        f"numeric: 60 pairs (contradiction {counts['contradiction']}, entailment {counts['entailment']}, "
        f"neutral {counts['neutral']})", "  columns: premise=premise, hypothesis=hypothesis, label=label"]
    unlabelled = tmp_path / "claims.csv"
    unlabelled.write_text("evidence,claim,verdict\na,b,SUPPORTS\n")
    assert main(["data", "inspect", str(unlabelled), "--columns", "premise=evidence,hypothesis=claim"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  columns: premise=evidence, hypothesis=claim",
                                                        "  no label column found: --columns label=COLUMN names one"]
    rte = tmp_path / "rte.tsv"
    rte.write_text("premise\thypothesis\tlabel\n" + "".join(
        f"{e.premise}\t{e.hypothesis}\t{'entailment' if e.label == 'entailment' else 'not_entailment'}\n"
        for e in examples))
    assert main(["train", "--model", tiny, "--train", str(numeric), "--label-map", "glue", "--train", str(rte),
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "mixes three-class and two-class labels" in capsys.readouterr().err


def test_unknown_devices_and_folders_that_are_not_runs_are_one_line(trained, capsys):
    for device in ("banana", "mps", "meta"):
        assert main(["predict", "--model", str(trained["run"]), "--device", device, "a", "b"]) == 1
        assert capsys.readouterr().err.strip() == (f"bertnli predict: error: unknown or unsupported device "
                                                   f"{device!r}; choose auto, cpu, cuda or cuda:N")
    assert main(["predict", "--model", str(trained["run"]), "--device", f"cuda:{torch.cuda.device_count()}",
                 "a", "b"]) == 1
    assert "CUDA GPU(s) are visible" in capsys.readouterr().err
    assert main(["plot", str(trained["run"] / "model")]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_a_path_of_the_wrong_kind_is_named_for_what_it_is(trained, tmp_path, capsys, monkeypatch):
    """Mistakes learners make: a run given as data, a file as a run or model, a mistyped model path."""
    run = trained["run"]
    for command in (["data", "inspect", str(run)], ["evaluate", "--model", str(run), "--data", str(run)],
                    ["evaluate", "--model", str(run), "--data", str(run / "model")]):
        assert main(command) == 1
        [line] = capsys.readouterr().err.strip().splitlines()
        assert "a model folder or a training run, not data; pass a data file" in line, line
    assert main(["plot", str(trained["dev"])]) == 1
    assert capsys.readouterr().err.strip() == f"bertnli plot: error: {trained['dev']} is a file, not a run directory"
    assert main(["evaluate", "--model", str(run / "checkpoint.pt"), "--data", str(trained["dev"])]) == 1
    assert capsys.readouterr().err.strip().endswith(f"{run / 'checkpoint.pt'}: a file, not a model folder (a "
                                                    f"fine-tuned model is a run directory or its model/): the run "
                                                    f"that holds it is {run}")
    # A file without labels is told as such, whatever its size (one row could not be split in two either).
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("premise,hypothesis\nred dog runs,a dog\n")
    assert main(["train", "--model", trained["run"].as_posix(), "--train", str(unlabelled), "--out",
                 str(tmp_path / "u")]) == 1
    assert capsys.readouterr().err.strip().endswith("unlabelled.csv: has no labelled pairs: training needs a gold "
                                                    "label for each pair (a column label or gold_label, or one "
                                                    "named by --columns label=NAME; columns={'label': NAME} in "
                                                    "Python)")
    # The checkpoint as train's --model (PyTorch files are zip archives, as d2l's are): named, before any data.
    assert main(["train", "--model", str(run / "checkpoint.pt"), "--train", "nowhere.jsonl", "--out", "new"]) == 1
    assert capsys.readouterr().err.strip() == (f"bertnli train: error: {run / 'checkpoint.pt'}: the training "
                                               f"checkpoint of the run {run}, not a pretrained model: give the run "
                                               f"folder ({run}) to train on from its model, or resume the run "
                                               f"(bertnli train --resume {run})")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr("bertnli.weights.pretrained.hub_download", lambda name: pytest.fail("sent to the hub"))
    assert main(["train", "--model", "runs/nope", "--train", "nowhere.jsonl", "--out", "new"]) == 1
    assert capsys.readouterr().err.strip() == ("bertnli train: error: runs/nope: no such file or folder (read as a "
                                               "path since the folder runs/ is here; for the Hugging Face Hub model "
                                               "runs/nope, run where no runs/ is)")


def test_num_heads_is_refused_for_checkpoints_that_record_their_heads(trained, tmp_path, capsys):
    assert main(["train", "--model", str(trained["run"]), "--num-heads", "2", "--train", str(trained["dev"]),
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("has 4 heads")


def test_nlimodel_refuses_malformed_input_and_settings(trained):
    from bertnli import NLIModel
    from bertnli.errors import ConfigError

    model = NLIModel.load(trained["run"], device="cpu")
    with pytest.raises(TypeError, match=r"not one pair: put it in a list, predict\(\[\(premise, hypothesis\)\]\)"):
        model.predict(("red dog runs big", "dog"))  # one pair, not a list of pairs
    with pytest.raises(TypeError, match=r"list of \(premise, hypothesis\) pairs, not None"):
        model.predict(None)
    with pytest.raises(TypeError, match=r"one pair goes in a list as \[\(premise, hypothesis\)\], and a list of "
                                        r"premises with one of hypotheses to predict_proba\(premises, hypotheses\)"):
        model.predict(["red dog runs big", "a dog"])
    with pytest.raises(TypeError, match="not one dict: put the pair in a list"):
        model.predict({"premise": "red dog runs big", "hypothesis": "dog"})
    with pytest.raises(TypeError, match=r"premises must be a sequence of strings \(one per pair\), not one string"):
        model.predict_proba("red dog", "dog")
    with pytest.raises(TypeError, match=r"hypotheses\[1\] is None \(a NoneType\), not text"):
        model.predict([("red dog", "dog"), ("red dog", None)])
    with pytest.raises(ValueError, match="2 premises but 1 hypotheses"):
        model.predict_proba(["red dog", "dog"], ["dog"])
    with pytest.raises(ValueError, match=r"premises\[1\] is empty or blank"):
        model.predict([("red dog", "dog"), (" \u200b", "dog")])
    with pytest.raises(ValueError, match=r"hypotheses\[1\] holds the escape \\ud83d, half of a surrogate pair"):
        model.predict([("red dog", "dog"), ("red dog", "dog \ud83d")])
    with pytest.raises(ConfigError, match="batch_size 0"):
        NLIModel.load(trained["run"], device="cpu", batch_size=0)


def test_nlimodel_takes_the_pairs_a_notebook_holds(trained):
    """Tuples, rows of a 2-column array, JSON objects, Examples, a Dataset or a generator: the same pairs, the
    same answers; `predict_proba` takes what `predict` takes, and `evaluate` a model folder."""
    from bertnli import Dataset, Example, NLIModel, evaluate

    model = NLIModel.load(trained["run"], device="cpu")
    pairs = [("red dog runs big", "dog"), ("red dog runs big", "no dog"), ("red dog runs big", "cat")]
    dataset = Dataset("mine", [Example(p, h, "entailment") for p, h in pairs])
    expected = model.predict_proba([p for p, _ in pairs], [h for _, h in pairs])
    for form in (lambda: pairs, lambda: np.array(pairs), lambda: dataset.examples, lambda: dataset,
                 lambda: (pair for pair in pairs), lambda: [{"premise": p, "hypothesis": h} for p, h in pairs]):
        assert [p.label for p in model.predict(form())] == [model.labels[i] for i in expected.argmax(1)]
        assert np.array_equal(model.predict_proba(form()), expected)
    assert evaluate(str(trained["run"]), dataset).report.accuracy == evaluate(model, dataset).report.accuracy
    assert repr(model).startswith(f"NLIModel(labels={model.labels}, max_len=") and len(repr(dataset)) < 80


def test_datasets_and_evaluate_name_what_they_were_given_instead(trained):
    from bertnli import Dataset, Example, NLIModel, evaluate, read_dataset

    with pytest.raises(TypeError, match=r"pair 1 has premise nan \(a float\); not text"):
        Dataset("frame", [Example("a", "b"), Example(float("nan"), "b")])
    with pytest.raises(TypeError, match="item 0 is a tuple, not an Example"):
        Dataset("tuples", [("a", "b", "entailment")])
    with pytest.raises(TypeError, match=r"evaluate scores a bertnli Dataset .* not a list"):
        evaluate(NLIModel.load(trained["run"], device="cpu"), [Example("a", "b", "entailment")])
    with pytest.raises(TypeError, match=r"read_dataset reads files .* not a list"):
        read_dataset([("a", "b")])
    from bertnli import train, train_validation_split

    with pytest.raises(TypeError, match=r"splits a bertnli Dataset .* not a list"):
        train_validation_split([("a", "b", "entailment")])
    with pytest.raises(TypeError, match=r"cfg must be a TrainConfig, e.g. TrainConfig\(epochs=1\), not a dict"):
        train({"epochs": 1}, read_dataset(trained["dev"]), None, trained["root"] / "never")
    assert not (trained["root"] / "never").exists()
    model = NLIModel.load(trained["run"], device="cpu")
    labelled = read_dataset(trained["dev"])
    with pytest.raises(ValueError, match=r"top_errors is how many confident mistakes to keep "
                                         r"\(None: all of them\), not -1"):
        evaluate(model, labelled, top_errors=-1)
    result = evaluate(model, labelled)
    assert repr(result) == (f"<Evaluation on {labelled.name}: accuracy {result.accuracy:.4f}, macro F1 "
                            f"{result.report.macro_f1():.4f}, 300 pairs>")
    assert result._repr_markdown_() == result.to_markdown()  # a notebook shows the report


def test_every_help_example_is_a_command_line_that_parses():
    """Each `bertnli ...` line of every command's --help examples reads as that command with its options."""
    from bertnli.cli import EXAMPLES, _parser

    parser = _parser()
    checked = 0
    for command, text in EXAMPLES.items():
        for line in text.splitlines():
            if not line.lstrip().startswith(("bertnli ", "torchrun ", "cat ")):  # curl, Python, prose
                continue
            words = shlex.split(line, comments=True)
            words = words[words.index("bertnli") + 1:]
            words = words[: next((i for i, w in enumerate(words) if w in ("|", ">")), len(words))]
            args = parser.parse_args(words)
            assert args.command == command, line
            checked += 1
    assert checked >= 15


def test_a_bare_import_reaches_every_exported_name_and_module():
    script = ("import bertnli\n"
              "for name in [*bertnli.__all__, *bertnli._MODULES]: getattr(bertnli, name)\n"
              "assert callable(bertnli.data.read_dataset) and callable(bertnli.plots.plot_curves)\n"
              "assert set(dir(bertnli)) == {*bertnli.__all__, *bertnli._MODULES, '__version__'}\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_type_checkers_see_the_names_that_import_lazily():
    """`__init__` imports its names on first use; the block that type checkers read must name the same ones."""
    import ast

    import bertnli

    tree = ast.parse(Path(bertnli.__file__).read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    static = {alias.name: node.module for node in block.body for alias in node.names}
    assert sorted(static) == sorted(bertnli.__all__) == sorted(bertnli._EXPORTS)
    assert all(getattr(bertnli, name) is getattr(importlib.import_module(module), name)
               for name, module in static.items())
