"""Runs that survive: kill-and-resume, Ctrl-C, the encoded-data cache, early stopping, data parallelism."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from synthetic import synthetic_dataset, tiny_d2l_checkpoint

from bertnli.cli import main
from bertnli.data import Dataset, Example, read_dataset
from bertnli.errors import (
    BertnliWarning,
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    TrainingInterrupted,
)
from bertnli.inference import NLIModel
from bertnli.paths import DIR_MODE
from bertnli.plots import curves_figure
from bertnli.text import WordTokenizer
from bertnli.text.cache import encode_cached
from bertnli.training import RunDir, TrainConfig, Trainer, train
from bertnli.training.distributed import process_group_scope

TESTS = Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    """The environment of a child process: this test's (its private cache included), one thread."""
    return {**os.environ, "PYTHONPATH": str(TESTS.parent / "src"), "OMP_NUM_THREADS": "1"}


def write_jsonl(path: Path, dataset) -> Path:
    path.write_text("".join(json.dumps({"sentence1": e.premise, "sentence2": e.hypothesis, "gold_label": e.label})
                            + "\n" for e in dataset.examples))
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    return {
        "model": str(tiny_d2l_checkpoint(root / "tiny", hidden=32)),
        "train": str(write_jsonl(root / "train.jsonl", synthetic_dataset(1200, seed=1))),
        "eval": str(write_jsonl(root / "eval.jsonl", synthetic_dataset(200, seed=2))),
    }


def cli_args(task, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", task["model"], "--train", task["train"], "--eval", task["eval"], "--out", str(out),
            "--recipe", "d2l", "--lr", "1e-3", "--num-heads", "4", "--no-progress", *extra]


def run_cli(*args: str) -> None:
    """The command line in a fresh process (one thread, so every run reduces sums in the same order)."""
    done = subprocess.run([sys.executable, "-m", "bertnli", *args], env=child_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_same_weights(one: dict, two: dict) -> None:
    for name in one:
        a, b = one[name], two[name]
        if name.endswith("qkv.bias"):
            # The key bias gets no gradient (softmax ignores a shift shared by all keys); Adam turns the
            # rounding noise it does get into full-size steps, so only the query and value biases compare.
            third = len(a) // 3
            a, b = torch.cat([a[:third], a[2 * third :]]), torch.cat([b[:third], b[2 * third :]])
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name


def epoch_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]


def step_records(run: Path) -> list[dict]:
    """The logged steps without their speed, which differs from run to run."""
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k != "pairs_per_second"} for r in records if r["kind"] == "step"]


def logged_steps(run: Path) -> list[int]:
    """The steps logged so far by a run in progress (a line being written is left out)."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line)["step"] for line in lines if line.endswith("}") and '"kind": "step"' in line]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(task, tmp_path):
    settings = ("--epochs", "2", "--batch-size", "8", "--checkpoint-every", "25", "--log-every", "10")
    run_cli(*cli_args(task, tmp_path / "whole", *settings))

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bertnli", *cli_args(task, run, *settings)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Killed once step 30 is logged: after the checkpoint of step 25, before the next one (step 50), so the
    # resume must drop the records past its checkpoint and redo those steps.
    deadline = time.monotonic() + 120
    while max(logged_steps(run), default=0) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    progress = torch.load(run / "checkpoint.pt", weights_only=True)["progress"]
    assert progress["epoch"] == 0 and progress["batch"] > 0, "the kill must land in the middle of the first epoch"
    assert max(logged_steps(run)) > progress["step"], "the kill must land after a record that the checkpoint lacks"

    run_cli("train", "--resume", str(run), "--no-progress")
    assert step_records(run) == step_records(tmp_path / "whole")
    whole, resumed = epoch_records(tmp_path / "whole"), epoch_records(run)
    assert [r["eval_accuracy"] for r in resumed] == [r["eval_accuracy"] for r in whole]
    for a, b in zip(resumed, whole):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)
        assert a["train_accuracy"] == b["train_accuracy"]
    final_a = load_file(run / "model" / "model.safetensors")
    final_b = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_b)


def interrupt_after_step(trainer: Trainer, step: int, signum: int = signal.SIGINT) -> None:
    """Send this process a SIGINT (Ctrl-C), or ``signum``, during ``trainer``'s step number ``step`` (1-based)."""
    original_step = trainer.optimizer_step

    def step_then_interrupt(group):
        sums = original_step(group)
        if trainer.state.step == step - 1:  # counted once this step returns
            os.kill(os.getpid(), signum)
        return sums

    trainer.optimizer_step = step_then_interrupt


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)],
                         ids=["ctrl_c", "sigterm", "sighup"])
def test_ctrl_c_sigterm_or_a_closed_terminal_saves_a_checkpoint_and_says_how_to_resume(task, tmp_path, signum,
                                                                                       caplog):
    if signum is None:
        pytest.skip("this system has no SIGHUP")
    train_set, eval_set = synthetic_dataset(400, 1), synthetic_dataset(50, 2)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=8)
    trainer = Trainer(cfg, train_set, eval_set, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 4, signum)
    with pytest.raises(TrainingInterrupted, match="resume=True") as stopped:  # started from Python: resumed so
        trainer.fit()
    assert not isinstance(stopped.value, Exception)  # a Ctrl-C, which `except Exception` must not swallow
    assert stopped.value.signum == signum  # the command line exits with 128 + it, as a shell would report
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["progress"]["step"] == 4 and saved["progress"]["batch"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not hasattr(signal, "SIGHUP") or signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    assert step_records(tmp_path / "run")[-1]["step"] == 4  # the steps since the last log are logged, not lost
    # Before its first epoch ends a run has no model: loading it says so, and what to do.
    with pytest.raises(CheckpointError, match=r"a training run with no model yet .*: resume it \(bertnli train "
                                              r"--resume "):
        NLIModel.load(tmp_path / "run")
    (tmp_path / "unsaved").mkdir()
    (tmp_path / "unsaved" / "config.json").write_bytes((tmp_path / "run" / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="stopped before saving a checkpoint: train it again"):
        NLIModel.load(tmp_path / "unsaved")
    # Resumed, the run ends as one never stopped: the same epoch and the same weights.
    with caplog.at_level(logging.INFO, "bertnli.training"):  # logged: the command line shows it
        train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
        assert f"resuming {tmp_path / 'run'} at step 4 (epoch 1 of 1)" in caplog.text
        train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)  # nothing left to train
        assert f"{tmp_path / 'run'} finished training already (1 of 1 epoch)" in caplog.text
    whole = train(cfg, train_set, eval_set, tmp_path / "whole", progress=False)
    [resumed] = epoch_records(tmp_path / "run")
    assert resumed["train_loss"] == pytest.approx(whole.epochs[0]["train_loss"], rel=1e-12)
    assert (resumed["train_accuracy"], resumed["eval_accuracy"]) == (whole.epochs[0]["train_accuracy"],
                                                                     whole.epochs[0]["eval_accuracy"])
    weights = [load_file(run / "model" / "model.safetensors") for run in (tmp_path / "run", tmp_path / "whole")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="this system has no SIGHUP")
def test_under_nohup_a_closed_terminal_does_not_stop_training(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=8)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a command
    try:
        trainer = Trainer(cfg, synthetic_dataset(64, 1), synthetic_dataset(16, 2), tmp_path / "run", progress=False)
        interrupt_after_step(trainer, 2, signal.SIGHUP)
        result = trainer.fit()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert [r["epoch"] for r in result.epochs] == [1]


def test_an_epoch_is_saved_before_it_is_told(task, tmp_path):
    """The epoch's line is told once its checkpoint is saved: a reader that has gone (`bertnli train ... 2>&1 |
    head`) or a failing callback costs no training."""
    def reader_gone(record):
        raise BrokenPipeError(32, "Broken pipe")

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=8)
    with pytest.raises(BrokenPipeError):
        train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False, on_epoch=reader_gone)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (saved["progress"]["epoch"], saved["progress"]["step"]) == (1, 8)


def test_a_resumed_run_reads_raw_text_as_it_began_to(task, tmp_path):
    """Runs record their word tokenizer's rule; a run from before the rule resumes reading whole words."""
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=8)
    trainer = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 2)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    assert config["train"]["split_punctuation"] is True
    assert Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", resume=True,
                   progress=False).tokenizer.split_punctuation is True
    del config["train"]["split_punctuation"]  # as a run started before the rule
    config_path.write_text(json.dumps(config))
    assert Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", resume=True,
                   progress=False).tokenizer.split_punctuation is False


def test_a_resumed_fp16_run_gets_back_its_loss_scale(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=8, precision="fp16",
                                  device="cpu")
    with pytest.warns(UserWarning, match="fp16 on a CPU"):
        trainer = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 3)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["scaler"]
    assert saved["_growth_tracker"] == 3  # in use: three steps counted since the scale last changed
    with pytest.warns(UserWarning, match="fp16 on a CPU"):
        resumed = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", resume=True, progress=False)
    assert resumed.scaler.state_dict() == saved


def test_ctrl_c_on_the_last_step_of_an_epoch_saves_and_the_resume_ends_that_epoch(task, tmp_path):
    train_set, eval_set = synthetic_dataset(64, 1), synthetic_dataset(32, 2)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=16)
    trainer = Trainer(cfg, train_set, eval_set, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 4)  # the fourth and last step of the first epoch
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["progress"]
    assert (saved["epoch"], saved["batch"], saved["step"]) == (0, 4, 4)
    result = train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
    assert [e["step"] for e in result.epochs] == [4, 8]


def test_overwrite_leaves_nothing_of_the_old_run(task, tmp_path):
    from bertnli.training.run import RUN_FILES

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32,
                                  tensorboard=True)
    train(cfg, synthetic_dataset(64, 1), synthetic_dataset(32, 2), tmp_path / "run", progress=False)
    assert all((tmp_path / "run" / name).exists() for name in (*RUN_FILES, "tensorboard"))
    Trainer(cfg, synthetic_dataset(64, 3), None, tmp_path / "run", overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "train_pairs.npy"]  # the new run's
    from bertnli.training.run import pair_hashes

    kept = np.load(tmp_path / "run" / "train_pairs.npy")
    assert np.array_equal(kept, np.sort(pair_hashes(synthetic_dataset(64, 3).examples)))


def test_a_resumed_run_that_kept_no_training_pairs_keeps_them(task, tmp_path):
    """As runs started before they were kept: the resumed run checks its data are the same, then keeps them."""
    from bertnli.training.run import pair_hashes

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    data = synthetic_dataset(64, 1)
    train(cfg, data, None, tmp_path / "run", progress=False)
    (tmp_path / "run" / "train_pairs.npy").unlink()
    train(cfg, data, None, tmp_path / "run", resume=True, progress=False)
    assert np.array_equal(np.load(tmp_path / "run" / "train_pairs.npy"), np.sort(pair_hashes(data.examples)))


def test_a_config_built_directly_takes_its_recipe_values_and_overrides():
    d2l = TrainConfig(recipe="d2l", lr=3e-4)
    assert (d2l.optimizer, d2l.batch_size, d2l.schedule, d2l.grad_clip, d2l.lr) == ("adam", 512, "constant", 0.0, 3e-4)
    assert TrainConfig() == TrainConfig.from_recipe("finetune")
    assert TrainConfig(recipe="d2l", epochs=2) == TrainConfig.from_recipe("d2l", epochs=2)
    # numpy's numbers and paths are plain values once in a config (config.json must hold them)
    given = TrainConfig.from_recipe(batch_size=np.int64(16), lr=np.float32(0.5), model=Path("tiny"))
    assert (given.batch_size, given.lr, given.model) == (16, 0.5, "tiny") and type(given.batch_size) is int
    # Runs recorded before None meant "the recipe's value" wrote None for "off".
    old = TrainConfig.from_dict({"recipe": "finetune", "grad_clip": None, "checkpoint_every": None})
    assert (old.grad_clip, old.checkpoint_every) == (0, 0)


@pytest.mark.parametrize(("setting", "expected"), [
    ({"optimizer": "sgd"}, "optimizer='sgd' (expected one of 'adam', 'adamw')"),
    ({"schedule": "cosine"}, "schedule='cosine' (expected one of 'constant', 'linear')"),
    ({"precision": "half"}, "precision='half'"),
    ({"lr": "1e-4"}, "lr='1e-4' (expected a number)"),
    ({"epochs": 2.5}, "epochs=2.5 (expected an int)"),
    ({"pack": "yes"}, "pack='yes' (expected True or False)"),
    ({"recipe": "bogus"}, "unknown recipe 'bogus'"),
    ({"warmup_ratio": 1.5}, "warmup_ratio=1.5 (must be at least 0 and below 1)"),
    ({"lr": float("inf")}, "lr=inf (must be above 0 and finite)"),
    ({"weight_decay": float("inf")}, "weight_decay=inf (must be 0 or more, and finite)"),
    ({"seed": -1}, "seed=-1 (must be from 0 to 2**32 - 1)"),
    ({"seed": 2**70}, f"seed={2**70}"),
    ({"epochs": 0, "max_len": 64, "max_tokens": 32},
     "invalid value for epochs=0 (must be at least 1), max_tokens=32 (must be at least max_len (64))"),
])
def test_a_setting_of_the_wrong_kind_is_refused_before_training(setting, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        TrainConfig.from_recipe(**setting)
    if "recipe" not in setting:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            TrainConfig(**setting)  # from Python: where it is made


def test_a_run_checkpointed_by_the_previous_version_resumes_as_it_would_have(task, tmp_path):
    """Checkpoints with one random state (no "processes") and configs without "max_tokens_per" still resume,
    and end as a run never stopped; one that read --max-tokens per step with micro-batches is refused."""
    train_set = synthetic_dataset(200, 1)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=8, dropout=0.1)
    trainer = Trainer(cfg, train_set, None, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 4)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    state["rng"], state["cuda_rng"] = state["rng"][0]["cpu"], []
    del state["processes"]
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["train"]["max_tokens_per"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    train(cfg, train_set, None, tmp_path / "run", resume=True, progress=False)
    train(cfg, train_set, None, tmp_path / "whole", progress=False)
    weights = [load_file(run / "model" / "model.safetensors") for run in (tmp_path / "run", tmp_path / "whole")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    config["train"].update(max_tokens=256, grad_accum=2)
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="read --max-tokens per optimizer step"):
        train(TrainConfig(), train_set, None, tmp_path / "run", resume=True, progress=False)


def test_resuming_with_other_settings_says_they_are_not_used(task, tmp_path):
    from bertnli.errors import BertnliWarning

    train_set = synthetic_dataset(64, 1)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    train(cfg, train_set, None, tmp_path / "run", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings, or none: nothing to say
        train(cfg, train_set, None, tmp_path / "run", resume=True, progress=False)
        train(TrainConfig(), train_set, None, tmp_path / "run", resume=True, progress=False)
    with pytest.warns(BertnliWarning, match="the ones given for epochs, lr are not used") as caught:
        result = train(replace(cfg, epochs=3, lr=1.0), train_set, None, tmp_path / "run", resume=True, progress=False)
    assert len(result.epochs) == 1 and caught[0].filename == __file__  # pointed at the caller's line


def test_a_label_beside_nlis_names_is_told(task, tmp_path):
    """Files are read by known label names; a Dataset built in Python may hold any, a typo included."""
    from bertnli.errors import BertnliWarning

    data = synthetic_dataset(64, 1)
    data = Dataset(data.name, [*data.examples, Example("a dog", "an animal", "entailmnet")])
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    with pytest.warns(BertnliWarning, match=r"labels 'entailmnet' \(1 pair\) stand beside NLI's names: the model "
                                            r"gets 4 classes \(contradiction, entailment, entailmnet, neutral\)"):
        train(cfg, data, None, tmp_path / "run", progress=False)


@pytest.mark.parametrize("lr", [1e-2, 1e4], ids=["usual", "far-above"])
def test_a_learning_rate_far_above_fine_tuning_is_told(task, tmp_path, lr):
    """Far too high a learning rate makes the loss grow, most often without becoming NaN, which would stop it."""
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32, lr=lr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    told = [str(w.message) for w in caught if "is far above" in str(w.message)]
    assert told == ([] if lr == 1e-2 else ["lr 10000 is far above the 1e-5 to 1e-3 that fine-tuning a pretrained "
                                           "BERT takes; the loss will likely grow rather than fall"])


def test_adam_decays_the_weights_it_should_and_adamw_the_same_ones(task):
    from bertnli.training.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for optimizer in ("adam", "adamw"):
        cfg = TrainConfig(model=task["model"], optimizer=optimizer, weight_decay=0.5, lr=0.1)
        decayed = {id(p) for g in build_optimizer(model, cfg).param_groups if g["weight_decay"] == 0.5
                   for p in g["params"]}
        assert decayed == {id(model[0].weight)}, optimizer


def test_starting_over_an_existing_run_is_refused(task, tmp_path):
    args = cli_args(task, tmp_path / "run", "--epochs", "1", "--limit", "64")
    assert main(args) == 0
    with pytest.raises(ConfigError, match="--resume"):
        train(TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1),
              synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)


def test_early_stopping_ends_a_run_that_stops_improving(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=30, batch_size=64, lr=1e-9,
                                  early_stopping=2)
    result = train(cfg, synthetic_dataset(128, 1), synthetic_dataset(64, 2), tmp_path / "run", progress=False)
    assert len(result.epochs) < 30
    assert not any(e["best"] for e in result.epochs[-2:])


def test_the_model_folder_keeps_the_epoch_of_best_validation_accuracy(task, tmp_path, monkeypatch):
    """Validation accuracies 0.5, 0.9, 0.7 by script: model/ must hold the weights of epoch 2, not of the last."""
    from bertnli.metrics import ClassificationReport

    right = iter([5, 9, 7])  # of 10 validation pairs
    monkeypatch.setattr(Trainer, "validate", lambda self: ClassificationReport(
        self.labels, np.array([[(k := next(right)), 0, 0], [0, 0, 0], [10 - k, 0, 0]])))
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=3, batch_size=64)
    trainer = Trainer(cfg, synthetic_dataset(128, 1), synthetic_dataset(32, 2), tmp_path / "run", progress=False)
    after = []  # the weights at the end of each epoch
    trainer.on_epoch = lambda record: after.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    trainer.fit()
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["trained"]["epoch"] == 2
    assert all(torch.equal(saved[k], after[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], after[2][k]) for k in saved)


#: Two validations of 10 pairs, 8 of them entailment (gold rows, predicted columns; d2l's label order): the
#: first answers entailment almost always (accuracy 0.8, macro F1 0.30), the second tells the labels apart
#: (accuracy 0.7, macro F1 0.65).
LAZY_THEN_DISCERNING = [[[8, 0, 0], [1, 0, 0], [1, 0, 0]], [[5, 2, 1], [0, 1, 0], [0, 0, 1]]]


@pytest.mark.parametrize(("select_by", "kept"), [("accuracy", 1), ("macro_f1", 2)])
def test_the_kept_model_is_the_best_by_the_score_chosen(task, tmp_path, monkeypatch, select_by, kept):
    from bertnli.metrics import ClassificationReport

    confusions = iter(LAZY_THEN_DISCERNING)
    monkeypatch.setattr(Trainer, "validate", lambda self: ClassificationReport(self.labels,
                                                                                np.array(next(confusions))))
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=32,
                                  select_by=select_by)
    monkeypatch.setattr(Trainer, "write_reports", lambda self: None)  # no third validation to script
    result = train(cfg, synthetic_dataset(64, 1), synthetic_dataset(10, 2), tmp_path / "run", progress=False)
    trained = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["trained"]
    assert (trained["epoch"], result.best_accuracy) == (kept, [0.8, 0.7][kept - 1])
    assert [r["best"] for r in result.epochs] == [True, kept == 2]


def test_a_run_checkpointed_before_select_by_resumes_keeping_by_accuracy(task, tmp_path, monkeypatch):
    """Its checkpoint has the best accuracy but no best score: a worse accuracy after the resume must not
    replace the model kept."""
    from bertnli.metrics import ClassificationReport

    confusions = iter(LAZY_THEN_DISCERNING)
    monkeypatch.setattr(Trainer, "validate", lambda self: ClassificationReport(self.labels,
                                                                                np.array(next(confusions))))
    monkeypatch.setattr(Trainer, "write_reports", lambda self: None)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=32)
    trainer = Trainer(cfg, synthetic_dataset(64, 1), synthetic_dataset(10, 2), tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 3)  # in epoch 2, after epoch 1's validation kept its model
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del checkpoint["progress"]["best_score"]
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    train(cfg, synthetic_dataset(64, 1), synthetic_dataset(10, 2), tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["trained"]["epoch"] == 1


def test_validation_every_n_steps_keeps_the_best_model_and_early_stopping_counts_epochs(task, tmp_path,
                                                                                        monkeypatch, caplog):
    """4 steps an epoch, a validation every 2: at steps 2, 4 (epoch end), 6, 8 (end), 10, 12 (end). Scripted
    accuracies put the best at step 6, inside epoch 2, whose own end scores low: that epoch still improved."""
    from bertnli.metrics import ClassificationReport

    right, weights = iter([5, 6, 9, 5, 5, 5]), []  # of 10 validation pairs

    def scripted(self):
        weights.append({k: v.clone() for k, v in self.model.state_dict().items()})
        k = next(right)
        return ClassificationReport(self.labels, np.array([[k, 0, 0], [0, 0, 0], [10 - k, 0, 0]]))

    monkeypatch.setattr(Trainer, "validate", scripted)
    caplog.set_level("INFO", logger="bertnli")
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=4, batch_size=32, eval_every=2,
                                  early_stopping=1)
    result = train(cfg, synthetic_dataset(128, 1), synthetic_dataset(32, 2), tmp_path / "run", progress=False)
    assert len(result.epochs) == 3  # epoch 3 is the first without a better validation: counted by epoch ends, 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["eval_accuracy"], r["best"]) for r in records if r["kind"] == "eval"] == [
        (2, 0.5, True), (6, 0.9, True), (10, 0.5, False)]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 13))  # short epochs: every step
    assert [r["best"] for r in result.epochs] == [True, False, False]
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["trained"] == \
        {"epoch": 2, "step": 6, "accuracy": 0.9, "macro_f1": pytest.approx((18 / 19 + 0) / 2)}  # neutral F1 0
    assert all(torch.equal(saved[k], weights[2][k]) for k in saved)  # the weights validated at step 6
    [star] = [line for line in curves_figure(RunDir(tmp_path / "run")).axes[1].lines
              if line.get_label() == "the kept model"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([6], [0.9])  # marked in curves.png
    assert f"{tmp_path / 'run'}: scoring the best model (epoch 2, step 6) on the 32 validation pairs" in caplog.text


def test_stops_at_validations_within_epochs_resume_as_never_stopped(task, tmp_path):
    """A stop on a step where a validation is due leaves it to the resumed run, which validates first (and a crash
    after that must not log it twice); a stop asked for during a validation comes right after it."""
    train_set, eval_set = synthetic_dataset(400, 1), synthetic_dataset(50, 2)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=32, eval_every=4)
    train(cfg, train_set, eval_set, tmp_path / "whole", progress=False)

    def scores(run: Path) -> list[dict]:
        timed = ("pairs_per_second", "train_seconds", "eval_seconds")
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [{k: v for k, v in r.items() if k not in timed} for r in records if r["kind"] != "step"]

    def progress(run: Path) -> dict:
        return torch.load(run / "checkpoint.pt", weights_only=True)["progress"]

    # 13 steps an epoch, a validation every 4 of them: at steps 4, 8, 12, then 17, 21, 25.
    assert [r["step"] for r in scores(tmp_path / "whole") if r["kind"] == "eval"] == [4, 8, 12, 17, 21, 25]
    trainer = Trainer(cfg, train_set, eval_set, tmp_path / "run", progress=False)
    interrupt_after_step(trainer, 8)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()  # stops at once, its validation left for later
    assert progress(tmp_path / "run")["pending_validation"]
    resumed = Trainer(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
    trainer_step = resumed.optimizer_step

    def step_or_die(batch):
        if resumed.state.step == 9:  # dies in step 10, before any checkpoint of its own
            raise RuntimeError("killed")
        return trainer_step(batch)

    resumed.optimizer_step = step_or_die
    with pytest.raises(RuntimeError, match="killed"):
        resumed.fit()
    train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)

    during = Trainer(cfg, train_set, eval_set, tmp_path / "during", progress=False)
    validate = during.validate

    def validate_then_ctrl_c():
        report = validate()
        if during.state.step == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return report

    during.validate = validate_then_ctrl_c
    with pytest.raises(TrainingInterrupted):
        during.fit()
    assert (progress(tmp_path / "during")["step"], progress(tmp_path / "during")["pending_validation"]) == (8, False)
    train(cfg, train_set, eval_set, tmp_path / "during", resume=True, progress=False)

    for run in (tmp_path / "run", tmp_path / "during"):
        assert scores(run) == scores(tmp_path / "whole")
        weights = [load_file(r / "model" / "model.safetensors") for r in (run, tmp_path / "whole")]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


def test_validating_within_epochs_needs_validation_data(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, eval_every=4)
    with pytest.raises(ConfigError, match="eval_every=4 validates on eval_set, and none was given"):
        train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)


def test_the_parts_of_a_split_share_their_whole_files_cache_entry(tmp_path, monkeypatch):
    """Another seed or share of the held-out split is the same file: encoded once, not once per split."""
    from bertnli.data import train_validation_split
    from bertnli.training.loop import encode_dataset

    monkeypatch.setenv("BERTNLI_CACHE", str(tmp_path))
    data = synthetic_dataset(200, 1)
    words = sorted({w for e in data.examples for w in f"{e.premise} {e.hypothesis}".split()})
    tok = WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", *words])
    for seed, fraction in ((0, None), (1, None), (0, 0.3)):
        for part in train_validation_split(data, fraction, seed=seed):
            cached, alone = encode_dataset(part, tok, 16), encode_dataset(part, tok, 16, cache=False)
            alone = alone.take(np.arange(len(part)))  # trimmed to its longest pair, as a part taken is
            for name in ("token_ids", "segments", "valid_lens"):
                assert np.array_equal(getattr(cached, name), getattr(alone, name)), name
    assert len(list((tmp_path / "encoded").iterdir())) == 1  # the whole file's entry alone


def test_encoded_data_cache_is_reused_and_keyed_by_content(tmp_path):
    tok = WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", "a", "b"])
    first = encode_cached(tok, ["a b", "a"], ["b", "b a"], 16, tmp_path)
    [entry] = list(tmp_path.iterdir())
    assert entry.stat().st_mode & 0o777 == DIR_MODE  # as any folder: others can read a shared cache
    again = encode_cached(tok, ["a b", "a"], ["b", "b a"], 16, tmp_path)
    assert isinstance(again.token_ids, np.memmap)
    assert np.array_equal(first.token_ids, again.token_ids) and np.array_equal(first.segments, again.segments)
    encode_cached(tok, ["a b", "a"], ["b", "b a"], 8, tmp_path)  # other max_len
    encode_cached(tok, ["a b", "b"], ["b", "b a"], 16, tmp_path)  # other text
    other_vocab = encode_cached(WordTokenizer(["<unk>", "<pad>", "<cls>", "<sep>", "<mask>", "b", "a"]),
                                ["a b", "a"], ["b", "b a"], 16, tmp_path)  # other tokenizer, other ids
    assert not np.array_equal(other_vocab.token_ids, first.token_ids)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 4
    # The same characters, split elsewhere between premise and hypothesis: another entry.
    tab_in_premise = encode_cached(tok, ["a\tb"], ["a"], 16, tmp_path)
    tab_in_hypothesis = encode_cached(tok, ["a"], ["b\ta"], 16, tmp_path)
    assert not np.array_equal(tab_in_premise.segments, tab_in_hypothesis.segments)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_process_ddp_matches_one_process_on_the_same_global_batch(task, tmp_path):
    common = ("--epochs", "1", "--dropout", "0", "--limit", "480", "--log-every", "5")
    run_cli(*cli_args(task, tmp_path / "one", *common, "--batch-size", "16"))
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "bertnli", *cli_args(task, tmp_path / "two", *common, "--batch-size", "8")],
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert_same_weights(one, two)
    a, b = epoch_records(tmp_path / "one")[0], epoch_records(tmp_path / "two")[0]
    assert a["eval_accuracy"] == b["eval_accuracy"]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert len([p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]) == 0
    from bertnli.training.run import describe_run

    shown = describe_run(json.loads((tmp_path / "two" / "config.json").read_text()))
    assert "· batch 8 (16 a step: 2 processes), lr" in shown and shown.endswith(" x 2")  # the global batch
    assert ddp.stderr.count(shown) == 1  # the run's opening line, from the first process alone


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_torchrun_names_the_error_line_as_the_root_cause(tmp_path):
    """torchrun ends a failed job with a summary whose root cause would point to its own documentation."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment"}\n{"premise": \n')
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "bertnli", "train", "--train", str(bad), "--out", str(tmp_path / "run")],
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    line = f"bertnli train: error: {bad}:2: not valid JSON"
    assert line in done.stderr[done.stderr.index("Root Cause"):], done.stderr[-3000:]
    assert "To enable traceback" not in done.stderr  # torchrun's pointer to its documentation, in its place


CRASH_A_RANK = """
import os, sys
from bertnli.cli import main
from bertnli.training import Trainer

step = Trainer.optimizer_step

def crash(self, batch):
    if self.rank == int(os.environ["CRASH_RANK"]) and self.state.step == 3:  # as a process killed: no word
        os._exit(9)
    return step(self, batch)

Trainer.optimizer_step = crash
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
@pytest.mark.parametrize("lost", [1, 0])
def test_a_process_lost_mid_run_leaves_the_other_one_line_and_the_way_to_resume(task, tmp_path, lost):
    """Started as a scheduler starts each process (RANK, WORLD_SIZE, the rendezvous address; no torchrun to end
    the survivors), so that the survivor meets the lost peer in its next collective. Whichever is lost, the first
    process or another, the survivor says so."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    script, run = tmp_path / "crash.py", tmp_path / "run"
    script.write_text(CRASH_A_RANK)
    args = [sys.executable, str(script), *cli_args(task, run, "--epochs", "1", "--batch-size", "8", "--limit", "160",
                                                     "--checkpoint-every", "2")]
    env = {**child_env(), "WORLD_SIZE": "2", "MASTER_PORT": str(port), "MASTER_ADDR": "127.0.0.1",
           "CRASH_RANK": str(lost)}
    ranks = [subprocess.Popen(args, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in (0, 1)]
    errors = [rank.communicate(timeout=120)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [9 if rank == lost else 1 for rank in (0, 1)]
    survivor = errors[1 - lost]
    assert "Traceback" not in survivor, survivor[-3000:]
    [line] = [line for line in survivor.splitlines() if "error" in line]
    named = "" if lost else "(process 1) "  # a process other than the first names itself
    assert line.startswith(f"bertnli train: error: {named}another process of this run stopped, so this one cannot "
                           "go on (")
    assert line.endswith(f"resume from its last checkpoint with `torchrun --nproc-per-node 2 -m bertnli train "
                         f"--resume {run}`")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["progress"]["step"] == 2


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_a_run_ends_the_process_group_it_started_and_only_that_one(tmp_path):
    def start() -> None:
        torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                                             world_size=1)

    with process_group_scope():
        start()
    assert not torch.distributed.is_initialized()
    start()
    try:
        with process_group_scope():
            pass
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()


def test_packed_steps_match_padded_steps(task, tmp_path):
    """The same batches, packed into rows or padded, give the same losses and the same weights."""
    train_set = read_dataset(task["train"])
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], batch_size=16, max_len=32, lr=1e-3, num_heads=4,
                                  dropout=0.0, device="cpu")  # fp32 CPU: exact comparisons on a GPU machine too
    padded = Trainer(cfg, train_set, None, tmp_path / "padded", progress=False)
    packed = Trainer(replace(cfg, pack=True), train_set, None, tmp_path / "packed", progress=False)
    for batch in np.array_split(np.random.default_rng(0).permutation(len(train_set))[:64], 4):
        a, b = padded.optimizer_step(batch), packed.optimizer_step(batch)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    assert_same_weights(padded.model.state_dict(), packed.model.state_dict())


def test_compiled_training_compiles_once_and_matches_eager_training(task, tmp_path, monkeypatch):
    """--compile trains on packed rows of fixed shapes: one graph serves every batch of every epoch
    (short ones included), and the run follows the eager one."""
    from torch._dynamo.utils import counters

    # Rows of 24 tokens take 2 or 3 of these pairs (8 or 9 tokens): batches of 16 need 6 or 7 rows, which are not
    # rounded up here, so a batch that needed more rows than the first would show as a second graph.
    monkeypatch.setattr("bertnli.training.loop.ROW_MULTIPLE", 1)

    train_set, eval_set = read_dataset(task["train"]), read_dataset(task["eval"])
    train_set = Dataset(train_set.name, train_set.examples[:320])
    settings = dict(model=task["model"], epochs=2, batch_size=16, max_len=24, lr=1e-3, num_heads=4, dropout=0.0,
                    device="cpu")
    eager = train(TrainConfig.from_recipe("d2l", pack=True, **settings), train_set, eval_set, tmp_path / "eager",
                  progress=False)
    torch._dynamo.reset()
    counters.clear()
    compiled = train(TrainConfig.from_recipe("d2l", compile=True, **settings), train_set, eval_set,
                     tmp_path / "compiled", progress=False)
    assert counters["stats"]["unique_graphs"] == 1
    for a, b in zip(eager.epochs, compiled.epochs):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["eval_accuracy"] == b["eval_accuracy"]
    assert_same_weights(load_file(tmp_path / "eager" / "model" / "model.safetensors"),
                        load_file(tmp_path / "compiled" / "model" / "model.safetensors"))


def test_gradient_accumulation_matches_the_whole_batch(task, tmp_path):
    common = ("--epochs", "1", "--dropout", "0", "--limit", "320", "--max-len", "32")
    run_cli(*cli_args(task, tmp_path / "whole", *common, "--batch-size", "16"))
    run_cli(*cli_args(task, tmp_path / "accumulated", *common, "--batch-size", "4", "--grad-accum", "4"))
    assert_same_weights(load_file(tmp_path / "whole" / "model" / "model.safetensors"),
                        load_file(tmp_path / "accumulated" / "model" / "model.safetensors"))
    steps = [r["step"] for r in epoch_records(tmp_path / "accumulated")]
    assert steps == [320 // 16]  # one optimizer step per 16 pairs


def test_a_notebook_sees_each_epochs_scores_above_the_bars(task, tmp_path, capsys):
    """bertnli.train from Python, progress on (as in a notebook) and no on_epoch: each epoch's line is shown."""
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=32)
    result = train(cfg, synthetic_dataset(64, 1), synthetic_dataset(32, 2), tmp_path / "shown")
    lines = [line for line in capsys.readouterr().err.splitlines() if re.match(r"epoch \d+: loss", line)]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert f"validation accuracy {result.epochs[1]['eval_accuracy']:.4f}" in lines[1]
    train(cfg, synthetic_dataset(64, 1), synthetic_dataset(32, 2), tmp_path / "quiet", progress=False)
    train(cfg, synthetic_dataset(64, 1), synthetic_dataset(32, 2), tmp_path / "taken", on_epoch=lambda r: None)
    assert not re.search(r"epoch \d+: loss", capsys.readouterr().err)  # no progress asked, or records taken
    with pytest.warns(BertnliWarning, match="no eval_set: the model kept is the one with the best training accuracy"):
        alone = train(cfg, synthetic_dataset(64, 1), None, tmp_path / "alone", progress=False)
    assert repr(alone) == f"TrainResult(run_dir={str(tmp_path / 'alone')!r}, epochs=2, best_accuracy=" \
                          f"{alone.best_accuracy:.4f})"  # not every record of every epoch


def test_tensorboard_log_is_written_when_asked(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32,
                                  tensorboard=True, log_every=2)
    train(cfg, synthetic_dataset(128, 1), synthetic_dataset(32, 2), tmp_path / "run", progress=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    board.Reload()
    steps = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "step"]
    logged = board.Scalars("step/loss")
    assert [e.step for e in logged] == [r["step"] for r in steps]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    assert "epoch/eval_accuracy" in board.Tags()["scalars"]


def test_the_linear_schedule_ends_at_the_last_step_when_token_budgets_vary_the_batch_count(task, tmp_path):
    cfg = TrainConfig.from_recipe("finetune", model=task["model"], num_heads=4, epochs=3, batch_size=16,
                                  max_len=32, max_tokens=40, pack=True, log_every=1, checkpoint_every=0)
    trainer = Trainer(cfg, synthetic_dataset(48, 1), None, tmp_path / "run", progress=False)
    counts = {len(trainer._epoch_batches(epoch)) for epoch in range(cfg.epochs)}
    assert len(counts) > 1, "the epochs must differ in batch count for this test to mean anything"
    trainer.fit()
    rates = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "step"]
    assert len(rates) == trainer.state.step
    assert rates[-1] == 0.0 and min(rates[:-1]) > 0.0


def test_the_linear_schedule_warms_up_over_its_share_of_steps_then_decays_to_zero():
    """20 steps, 10% warm-up: the rate climbs to its peak over 2 steps, then falls by 1/18 a step to 0."""
    from bertnli.training.optim import build_schedule

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = build_schedule(optimizer, TrainConfig.from_recipe("finetune", warmup_ratio=0.1), total_steps=20)
    rates = []
    for _ in range(21):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5, 1.0, *(1 - k / 18 for k in range(19))])


def test_gradients_are_clipped_to_the_set_norm(task, tmp_path):
    """The norm the optimizer sees is at most grad_clip; without clipping the same steps exceed it."""
    def norms_seen(grad_clip: float, run: str) -> list[float]:
        cfg = TrainConfig.from_recipe("finetune", model=task["model"], num_heads=4, batch_size=16, grad_clip=grad_clip)
        trainer = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / run, progress=False)
        seen = []
        trainer.optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: seen.append(float(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in trainer.model.parameters()
                                                  if p.grad is not None])))))
        for batch in trainer._epoch_batches(0):
            trainer.optimizer_step(batch)
        return seen

    assert max(norms_seen(0.01, "clipped")) <= 0.01 * (1 + 1e-4)
    assert min(norms_seen(0.0, "free")) > 0.01


def test_a_second_run_in_a_busy_folder_is_refused(task, tmp_path):
    from bertnli.training import RunDir

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    # As if another process were training there:
    with RunDir(tmp_path / "run").lock(), pytest.raises(ConfigError, match="another process is training"):
        train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)  # free again


def test_a_resume_survives_a_cut_off_metrics_line_and_a_part_written_checkpoint(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=16, log_every=2)
    run = tmp_path / "run"
    trainer = Trainer(cfg, synthetic_dataset(64, 1), None, run, progress=False)
    trainer.train_epoch()
    trainer.save_checkpoint()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "step", "ep')  # killed in the middle of a line
    leftover = run / ".tmp-checkpoint.pt.@host~1~12345@.x1y2z3"  # killed in the middle of a save
    leftover.write_bytes(b"\0" * 100)
    result = train(cfg, synthetic_dataset(64, 1), None, run, resume=True, progress=False)
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert not leftover.exists()


def test_saved_files_get_the_usual_permissions(task, tmp_path):
    """Those that open() gives under the process's umask (0644 under 022), not a temporary file's 0600."""
    from bertnli.paths import FILE_MODE

    if FILE_MODE & 0o044 == 0:
        pytest.skip("this process's umask makes every new file owner-only anyway")
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    for name in ("config.json", "checkpoint.pt", "model/model.safetensors", "model/config.json", "curves.png"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == FILE_MODE, name


def test_ctrl_c_during_the_last_evaluation_still_stops_the_run(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=32)
    train_set, eval_set = synthetic_dataset(64, 1), synthetic_dataset(32, 2)

    def interrupt_at_the_end(record):
        if record["epoch"] == cfg.epochs:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(cfg, train_set, eval_set, tmp_path / "run", progress=False, on_epoch=interrupt_at_the_end)
    assert not (tmp_path / "run" / "evaluation.json").exists()  # stopped before the reports
    result = train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
    assert [e["epoch"] for e in result.epochs] == [1, 2] and (tmp_path / "run" / "evaluation.json").is_file()


def test_sigterm_while_the_reports_are_written_says_how_to_write_them(task, tmp_path, monkeypatch):
    """After the last checkpoint, SIGTERM (a scheduler's notice) is told as Ctrl-C is, not a silent end."""
    from bertnli import evaluation

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    train_set, eval_set = synthetic_dataset(64, 1), synthetic_dataset(32, 2)
    def callers_handler(signum, frame):  # reached only if bertnli left SIGTERM to its caller
        raise AssertionError("SIGTERM was not handled by the run")

    report, outer = evaluation.write_report, signal.signal(signal.SIGTERM, callers_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(evaluation, "write_report", lambda *args: os.kill(os.getpid(), signal.SIGTERM))
            with pytest.raises(TrainingInterrupted, match="resume=True") as stopped:
                train(cfg, train_set, eval_set, tmp_path / "run", progress=False)
        assert stopped.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, outer)
    assert evaluation.write_report is report and not (tmp_path / "run" / "evaluation.json").exists()
    train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "evaluation.json").is_file()  # written by the resume


def test_python_callers_get_clear_errors_before_any_file_is_written(task, tmp_path):
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    examples = synthetic_dataset(64, 1).examples
    with pytest.raises(TypeError, match=r"numbered: pair 0 has label \d \(a int\); labels are names such as"):
        Dataset("numbered", [Example(e.premise, e.hypothesis, ["entailment", "neutral", "contradiction"].index(e.label))
                             for e in examples])
    unlabelled = Dataset("some unlabelled", [*examples, Example("a b", "c")])
    for args, error, message in [
        ((cfg, Dataset("shouted", [Example(e.premise, e.hypothesis, e.label.upper()) for e in examples]), None),
         DataError, "labels must be lower-case names"),
        ((cfg, synthetic_dataset(64, 1), unlabelled), DataError, "1 pairs have no label"),
        ((cfg, examples, None), TypeError, "must be a bertnli.data.Dataset"),
    ]:
        with pytest.raises(error, match=message):
            train(*args, tmp_path / "run", progress=False)
        assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(ConfigError, match="epochs=0"):  # where the setting is made, before train is called
        replace(cfg, epochs=0)
    changed = replace(cfg)
    changed.epochs = 0  # after it was made: train checks again
    with pytest.raises(ConfigError, match="epochs=0"):
        train(changed, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(ConfigError, match="not a run directory"):
        train(cfg, synthetic_dataset(64, 1), None, tmp_path / "elsewhere", resume=True, progress=False)
    assert not (tmp_path / "elsewhere").exists()


def test_a_checkpoint_that_does_not_fit_is_one_clear_error(task, tmp_path):
    from bertnli.errors import CheckpointError

    cfg = TrainConfig.from_recipe("finetune", model=task["model"], num_heads=4, epochs=2, batch_size=32)
    trainer = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", progress=False)
    trainer.save_checkpoint()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]  # another optimizer layout
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not fit this model or optimizer"):
        train(cfg, synthetic_dataset(64, 1), None, tmp_path / "run", resume=True, progress=False)


def test_a_run_stopped_during_its_last_needed_evaluation_stops_early_on_resume(task, tmp_path):
    """Early stopping is decided from saved progress: a resume ends where the uninterrupted run ended."""
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=4, batch_size=32, lr=1e-12,
                                  early_stopping=1)
    train_set, eval_set = synthetic_dataset(64, 1), synthetic_dataset(32, 2)
    whole = train(cfg, train_set, eval_set, tmp_path / "whole", progress=False)
    assert len(whole.epochs) == 2

    def interrupt_second_evaluation(record):
        if record["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(cfg, train_set, eval_set, tmp_path / "run", progress=False, on_epoch=interrupt_second_evaluation)
    resumed = train(cfg, train_set, eval_set, tmp_path / "run", resume=True, progress=False)
    assert [e["epoch"] for e in resumed.epochs] == [e["epoch"] for e in whole.epochs]


DDP_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from synthetic import synthetic_dataset
from bertnli.errors import TrainingInterrupted
from bertnli.training import RunDir, TrainConfig, Trainer, train

step = Trainer.optimizer_step

def step_then_interrupt_rank_1(self, batch):
    sums = step(self, batch)
    if self.rank == 1 and self.state.step == 2:  # the step about to be counted as the third
        os.kill(os.getpid(), signal.SIGINT)
    return sums

if {interrupt!r}:
    Trainer.optimizer_step = step_then_interrupt_rank_1
# Dropout on, and 330 pairs in global batches of 16: ranks draw masks of different sizes, from their own streams.
cfg = TrainConfig.from_recipe("d2l", model={model!r}, num_heads=4, epochs=2, batch_size=8, log_every=5,
                              dropout=0.1)
try:
    train(cfg, synthetic_dataset(330, 1), None, {run!r}, progress=False, resume={resume!r})
except TrainingInterrupted:
    print(f"interrupted {{os.environ['RANK']}}")  # one write: the two processes share the pipe
"""


def run_ddp(model: str, run: Path, interrupt: bool = False, resume: bool = False) -> str:
    """`DDP_RUN` in two processes under torchrun; what they printed."""
    script = run.parent / f"ddp_{run.name}_{interrupt}_{resume}.py"
    script.write_text(DDP_RUN.format(tests=str(TESTS), model=model, run=str(run), interrupt=interrupt, resume=resume))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ctrl_c_seen_by_one_rank_stops_every_rank_and_the_resumed_run_ends_as_one_never_stopped(task, tmp_path):
    stopped = run_ddp(task["model"], tmp_path / "run", interrupt=True)
    assert sorted(stopped.split()) == ["0", "1", "interrupted", "interrupted"]
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["progress"]["step"] == 4  # one step after the signal, on both ranks: not at a log boundary
    # Its batches are cut for two processes: one process may not take it over.
    with pytest.raises(ConfigError, match="trained by 2 processes"):
        train(TrainConfig(), synthetic_dataset(330, 1), None, tmp_path / "run", resume=True, progress=False)
    run_ddp(task["model"], tmp_path / "run", resume=True)
    run_ddp(task["model"], tmp_path / "whole")
    assert step_records(tmp_path / "run")[-3:] == step_records(tmp_path / "whole")[-3:]
    weights = [load_file(run / "model" / "model.safetensors") for run in (tmp_path / "run", tmp_path / "whole")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


def test_training_on_from_a_classifier_keeps_its_output_layer_when_it_scores_the_same_labels(task, tmp_path):
    from bertnli.model import BERTClassifier
    from bertnli.weights import load_pretrained, save_classifier

    pretrained = load_pretrained(task["model"], num_heads=4)
    source = BERTClassifier.from_pretrained(pretrained.model, 3)
    order = ["neutral", "entailment", "contradiction"]
    save_classifier(tmp_path / "source", source, pretrained.tokenizer, order, 64)
    cfg = TrainConfig.from_recipe("d2l", model=str(tmp_path / "source"), epochs=1, batch_size=32)
    trainer = Trainer(cfg, synthetic_dataset(64, 1), None, tmp_path / "on", progress=False)
    assert trainer.labels == ["entailment", "contradiction", "neutral"]  # d2l's order, not the source's
    rows = [order.index(label) for label in trainer.labels]
    assert torch.equal(trainer.model.output.weight, source.output.weight[rows])
    assert torch.equal(trainer.model.output.bias, source.output.bias[rows])
    # Two-class data: the three-class layer cannot serve, and a new one is trained, as said.
    two_class = Dataset("rte", [Example(e.premise, e.hypothesis, "not_entailment" if e.label != "entailment"
                                        else "entailment") for e in synthetic_dataset(64, 1).examples])
    with pytest.warns(BertnliWarning, match="classifies neutral, entailment, contradiction, and the training data "
                                            "has entailment, not_entailment: its output layer is left behind"):
        trainer = Trainer(cfg, two_class, None, tmp_path / "rte", progress=False)
    assert trainer.model.output.weight.shape == (2, source.output.weight.shape[1])  # one row a label of its own


def test_figures_draw_the_chance_level_of_the_runs_own_labels(task, tmp_path):
    from bertnli.plots import comparison_figure

    def two_class(data):
        return Dataset("rte", [Example(e.premise, e.hypothesis, "entailment" if e.label == "entailment" else
                                       "not_entailment") for e in data.examples])

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=32)
    train(cfg, two_class(synthetic_dataset(64, 1)), two_class(synthetic_dataset(32, 2)), tmp_path / "two",
          progress=False)
    train(cfg, synthetic_dataset(64, 1), synthetic_dataset(32, 2), tmp_path / "three", progress=False)

    def chance(figure):
        return [line.get_label() for line in figure.axes[1].lines if line.get_label().startswith("chance")]

    assert chance(curves_figure(tmp_path / "two")) == ["chance (1/2)"]
    assert chance(curves_figure(tmp_path / "three")) == ["chance (1/3)"]
    assert chance(comparison_figure([tmp_path / "two", tmp_path / "two"])) == ["chance (1/2)"]
    assert chance(comparison_figure([tmp_path / "two", tmp_path / "three"])) == []  # two tasks: no one level


def test_time_spent_saving_mid_epoch_checkpoints_is_not_counted_as_training(task, tmp_path, monkeypatch):
    """The clock stands still except while a checkpoint is saved: the epoch's training time must stay 0."""
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    save = Trainer.save_checkpoint

    def slow_save(self):
        clock[0] += 10.0
        save(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", slow_save)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=64,
                                  checkpoint_every=3, log_every=2)
    result = train(cfg, read_dataset(task["train"]), None, tmp_path / "run", progress=False)
    assert result.epochs[0]["train_seconds"] == 0.0


def test_a_checkpoint_that_cannot_be_written_is_one_error_and_the_previous_one_stays(tmp_path):
    """A full disk, played by a limit on file size in a child process (Python ignores SIGXFSZ, so the write
    fails instead of killing it)."""
    script = f"""
import resource, torch
from bertnli.training import RunDir
from bertnli.errors import CheckpointError
run = RunDir({str(tmp_path)!r})
run.save_checkpoint({{"small": torch.zeros(10)}})
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    run.save_checkpoint({{"large": torch.zeros(1 << 20)}})
except CheckpointError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith(f"{tmp_path / 'checkpoint.pt'}: could not be written, the previous one is kept (")
    assert done.stdout.rstrip().endswith("is the disk full?") and "Traceback" not in done.stderr
    assert list(torch.load(tmp_path / "checkpoint.pt")) == ["small"] and [p.name for p in tmp_path.iterdir()] == [
        "checkpoint.pt"]


def test_fp16_steps_the_loss_scaler_skips_do_not_stop_training_but_broken_weights_do(task, tmp_path):
    """In fp16 a loss that overflows is a step the scaler skips (the weights stay as they were): training goes
    on. Weights that are no longer numbers stop it, as a loss does in other precisions."""
    from bertnli.training.loop import Trainer

    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=1, batch_size=16, log_every=1,
                                  precision="fp16", device="cpu", checkpoint_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on a CPU is slow, and says so
        trainer = Trainer(cfg, synthetic_dataset(96, 1), None, tmp_path / "run", progress=False)
    real, calls = trainer.step_model, []

    def overflowing(*args, **kwargs):
        calls.append(1)
        logits = real(*args, **kwargs)
        return logits * float("inf") if len(calls) == 2 else logits

    trainer.step_model = overflowing
    result = trainer.fit()
    assert len(calls) == 6 and len(result.epochs) == 1
    assert all(bool(w.isfinite().all()) for w in trainer.model.parameters())
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.state = type(trainer.state)()
    calls.clear()
    with pytest.raises(TrainingDiverged, match="the weights overflowed"):
        trainer.fit()


def test_fp16_stops_when_every_loss_overflows_for_long(task, tmp_path, monkeypatch):
    """A model whose every fp16 loss overflows never changes its weights (each step is skipped): that stops the
    run, where the odd overflowed step did not (above). Steps count, not micro-batches."""
    from bertnli.training.loop import Trainer

    monkeypatch.setattr(Trainer, "OVERFLOW_PATIENCE", 4)
    cfg = TrainConfig.from_recipe("d2l", model=task["model"], num_heads=4, epochs=2, batch_size=16, grad_accum=2,
                                  log_every=1, precision="fp16", device="cpu", checkpoint_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on a CPU is slow, and says so
        trainer = Trainer(cfg, synthetic_dataset(96, 1), None, tmp_path / "run", progress=False)
    real, calls = trainer.step_model, []

    def overflowing(*args, **kwargs):  # two micro-batches a step; the second step is good: the count starts again
        calls.append(1)
        logits = real(*args, **kwargs)
        return logits * float("inf") if len(calls) not in (3, 4) else logits

    trainer.step_model = overflowing
    before = [w.detach().clone() for w in trainer.model.parameters()]
    with pytest.raises(TrainingDiverged, match=r"overflowed in each of the last 4 steps by step 6 \(epoch 2\)"):
        trainer.fit()
    assert len(calls) == 12
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())]
    assert any(changed)  # the second step, the only one not skipped

