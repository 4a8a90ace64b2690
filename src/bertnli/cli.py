"""The `bertnli` command line: argument parsing and printing only; the work happens in the modules."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bertnli.errors import (
    BertnliError,
    BertnliWarning,
    CheckpointError,
    DataError,
    DownloadError,
    Interrupted,
    NoPairs,
    ProcessLost,
)

if TYPE_CHECKING:  # imported where used, so that `bertnli --help` starts at once
    from bertnli.data import Dataset, Example
    from bertnli.evaluation import Evaluation
    from bertnli.training import RunDir, TrainConfig, TrainResult

EXAMPLES = {
    "train": """examples:
  bertnli train --dataset snli --out runs/snli                       # official SNLI, downloaded once
  bertnli train --train ../shared/data/snli/snli_1.0_dev.jsonl --out runs/dev --epochs 1
  bertnli train --dataset snli --recipe d2l --model bert.small --d2l-text --out runs/d2l   # the d2l chapter
  bertnli train --train a.jsonl --train b.jsonl --eval dev.jsonl --model bert.base.torch.zip    # a d2l archive
  bertnli train --resume runs/dev                                    # continue a stopped run
  bertnli train --dataset snli --out runs/cpu --eval-every 2000      # long epochs: validate every 2,000 steps
  bertnli train --dataset snli --out runs/gpu --batch-size 256 --compile   # one GPU: CUDA graphs
  torchrun --nproc-per-node 4 -m bertnli train --dataset snli --out runs/ddp""",
    "evaluate": """examples:
  bertnli evaluate --model runs/dev --data ../shared/data/mnli/multinli_1.0_dev_matched.jsonl
  bertnli evaluate --model runs/dev --data snli_1.0_test.jsonl --data SICK.txt --report reports/
  bertnli evaluate --model runs/dev --data rte/dev.tsv --two-class --json""",
    "predict": """examples:
  bertnli predict --model runs/dev "A man plays a guitar." "A person makes music."
  bertnli predict --model runs/dev --input pairs.jsonl --output predictions.jsonl
  bertnli predict --model runs/dev --input claims.csv --columns premise=evidence,hypothesis=claim --output out.csv
  cat pairs.jsonl | bertnli predict --model runs/dev --input - > predictions.jsonl
  zcat pairs.jsonl.gz | bertnli predict --model runs/dev --input - --output-format csv | csvlook
  bertnli predict --model runs/dev --input million.jsonl --output labels.jsonl --compile   # big job, GPU""",
    "data": """examples:
  bertnli data download snli                 # fetch and verify snli_1.0.zip into the cache
  bertnli data inspect ../shared/data/sick/SICK.txt""",
    "plot": """examples:
  bertnli plot runs/dev                      # curves, confusion, class_scores and accuracy .png
  bertnli plot runs/d2l runs/finetune --out recipes.png   # a table of the runs, and their curves on one figure""",
    "serve": """examples:
  bertnli serve --model runs/dev --port 8000
  curl -s localhost:8000/predict -H 'content-type: application/json' \\
       -d '{"pairs": [{"premise": "A dog runs.", "hypothesis": "An animal moves."}]}'""",
    "export": """examples:
  bertnli export runs/dev --format hf exported/hf
  bertnli export runs/dev --format onnx exported/onnx

then, in Python (truncation=True cuts long pairs as bertnli does; transformers ignores the tokenizer's setting):
  pipeline("text-classification", model="exported/hf", top_k=None, truncation=True)
  AutoTokenizer.from_pretrained("exported/onnx")(premises, hypotheses, truncation=True, padding=True,
                                                 return_tensors="np")  # inputs of exported/onnx/model.onnx""",
}


def _non_negative(text: str) -> float:
    """An argparse type: a number of at least 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertnli",
        description="Fine-tune pretrained BERT encoders for natural language inference.",
        epilog="Run `bertnli COMMAND --help` for each command's options and examples.",
    )
    from bertnli import __version__

    parser.add_argument("--version", action="version", version=f"bertnli {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, epilog=EXAMPLES.get(name),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    _add_train(command("train", "Fine-tune a pretrained BERT on NLI pairs."))
    _add_evaluate(command("evaluate", "Score a fine-tuned model on labelled data."))
    _add_predict(command("predict", "Label premise–hypothesis pairs."))
    _add_data(command("data", "Download or inspect NLI datasets."))
    plot = command("plot", "Draw a run's curves, confusion matrix, per-class scores and accuracy breakdown; "
                           "or compare several runs.")
    plot.add_argument("runs", nargs="+", metavar="RUN", help="a run directory; several to compare them")
    plot.add_argument("--out", type=Path, help="where several runs' comparison goes (default: comparison.png)")
    _add_serve(command("serve", "Serve a model over HTTP (JSON API with OpenAPI docs)."))
    _add_export(command("export", "Export a model to Hugging Face or ONNX."))
    return parser


def _add_data_options(p: argparse._ActionsContainer, labels: bool = True) -> None:
    """How to read data files; ``labels``: the command reads their labels (predict ignores them)."""
    p.add_argument("--format", choices=["jsonl", "csv", "tsv"], help="the files' format (default: detected)")
    p.add_argument("--columns", type=_mapping, metavar="ROLE=COLUMN,...",
                   help="which column holds the premise, hypothesis, label, genre or id, e.g. "
                        "premise=sentence_A,hypothesis=sentence_B (label= for unlabelled files)" if labels else
                        "which column holds the premise, the hypothesis and each pair's id (given back with its "
                        "prediction; found by itself under id, pairID, pair_ID or index), e.g. "
                        "premise=evidence,hypothesis=claim,id=claim_id")
    if labels:
        p.add_argument("--label-map", type=_label_map, metavar="glue|d2l|RAW=NAME,...",
                       help="what numeric labels mean: glue (0 entailment, 1 neutral, 2 contradiction), d2l "
                            "(0 entailment, 1 contradiction, 2 neutral), or e.g. 0=entailment,1=not_entailment")
    p.add_argument("--d2l-text", action="store_true",
                   help="read SNLI's binary-parse columns without parentheses, exactly as the d2l chapter")
    p.add_argument("--limit", type=_positive, help="use only the first N pairs of each file (quick trials)")


def _mapping(text: str) -> dict[str, str | None]:
    """An argparse type: ``key=value,key=value`` (an empty value is None)."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not sep or not key.strip() for key, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE,KEY=VALUE, not {text!r}")
    keys = [key.strip() for key, _, _ in pairs]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise argparse.ArgumentTypeError(f"{twice!r} is given twice in {text!r}")
    return {key.strip(): value.strip() or None for key, _, value in pairs}


def _label_map(text: str) -> str | dict[str, str | None]:
    return _mapping(text) if "=" in text else text


def _add_train(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("data")
    src.add_argument("--dataset", help="a public dataset by name, downloaded and cached: snli, mnli, rte or sick; "
                                       "trains on its train split, validates on its dev split (mnli: dev_matched, "
                                       "sick: TRIAL)")
    src.add_argument("--train", action="append", metavar="FILE",
                     help="training file (jsonl, txt, tsv, csv, SICK.txt, zip or folder), with :split to choose one "
                          "of several (snli_1.0.zip:train, SICK.txt:train); repeat to combine")
    src.add_argument("--eval", action="append", metavar="FILE", help="validation file(s)")
    src.add_argument("--validation-fraction", type=float,
                     help="without --eval, hold out this seeded share of the training data "
                          "(default: 10%%, at most 10,000 pairs)")
    _add_data_options(src)
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, help="run directory (default runs/<dataset or file name>)")
    run.add_argument("--resume", type=Path, metavar="RUN", help="continue a stopped run from its checkpoint")
    run.add_argument("--overwrite", action="store_true", help="start over in an existing run directory")
    _add_no_progress(run)
    hp = p.add_argument_group("recipe (defaults come from --recipe)")
    hp.add_argument("--model", default="minilm",
                    help="pretrained checkpoint: minilm (default, offline), bert.small or bert.base (d2l's, "
                         "downloaded once), a d2l zip or folder, a Hugging Face folder or hub id, or a bertnli run")
    hp.add_argument("--recipe", choices=["finetune", "d2l"], default="finetune",
                    help="finetune: AdamW 5e-5, batch 32, warm-up + linear decay; "
                         "d2l: Adam 1e-4, batch 512, 5 epochs, no gradient clipping, as the chapter")
    for flag, kind, text in [
        ("--epochs", int, "passes over the training data"),
        ("--batch-size", int, "pairs per micro-batch and process (a step takes --grad-accum of them on "
                               "each torchrun process)"),
        ("--lr", float, "peak learning rate"), ("--max-len", int, "tokens per pair, with specials"),
        ("--seed", int, "random seed (data order, dropout, validation split)"),
        ("--weight-decay", float, "weight decay (AdamW) or L2 penalty (Adam)"),
        ("--warmup-ratio", float, "share of steps warming up"),
        ("--max-tokens", int, "also cap each batch at this many padded tokens (with --pack or --compile: tokens); "
                                "per process and micro-batch, like --batch-size"),
        ("--grad-accum", int, "batches per optimizer step"),
        ("--grad-clip", float, "clip the gradient norm (0: no clipping)"),
        ("--early-stopping", int, "stop after N epochs in which no validation beat the best (--select-by)"),
        ("--num-heads", int, "attention heads, for d2l checkpoints of unusual sizes"),
        ("--dropout", float, "replace the checkpoint's dropout rate"),
        ("--checkpoint-every", int, "steps between mid-epoch checkpoints (0: at epoch ends only)"),
        ("--eval-every", int, "validate every N steps of an epoch too (counted from its start), keeping the "
                              "model whenever it is the best yet: for long epochs (0: at epoch ends only)"),
    ]:
        hp.add_argument(flag, type=kind, help=f"{text}; {_recipe_defaults(flag)}")
    hp.add_argument("--log-every", type=int, help="steps between logged records; default: every 50 steps, or "
                                                  "about 20 times an epoch when epochs are shorter")
    hp.add_argument("--optimizer", choices=["adam", "adamw"], help=_recipe_defaults("--optimizer"))
    hp.add_argument("--schedule", choices=["constant", "linear"], help=_recipe_defaults("--schedule"))
    hp.add_argument("--select-by", choices=["accuracy", "macro_f1"],
                    help="the validation score that picks the kept model and counts for --early-stopping: "
                         "macro_f1 for data where one label dominates, on which accuracy rewards a model that "
                         "always answers it; default accuracy")
    hw = p.add_argument_group("hardware")
    _add_hardware(hw)
    hw.add_argument("--compile", action="store_true",
                    help="for GPUs: torch.compile the model and train on packed rows of fixed shape, compiled once "
                         "and replayed as CUDA graphs; costs a minute or more to start")
    hw.add_argument("--tensorboard", action="store_true", help="also write a TensorBoard log in the run")
    hw.add_argument("--pack", action="store_true",
                    help="pack several pairs into each row of max-len tokens (block-diagonal attention); "
                         "batches are then drawn without sorting by length")
    hw.add_argument("--no-cache", action="store_true", help="encode the data afresh instead of using the cache")


def _recipe_defaults(flag: str) -> str:
    """The default of a training setting, per recipe where they differ: "default finetune 3, d2l 5"."""
    from bertnli.training.config import RECIPES, TrainConfig

    name = flag.lstrip("-").replace("-", "_")
    shown = {recipe: str(RECIPES[recipe].get(name, getattr(TrainConfig, name))) for recipe in ("finetune", "d2l")}
    if len(set(shown.values())) == 1:
        return "default " + shown["finetune"].replace("None", "unset")
    return "default " + ", ".join(f"{recipe} {value}" for recipe, value in shown.items())


def _add_hardware(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 autocast on GPUs with bf16 units, fp16 (training scales the loss) on older "
                        "GPUs, fp32 on CPUs; bf16 also speeds up CPUs with bf16 units")


def _add_max_len(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-len", type=_positive, metavar="N",
                   help="tokens read of each pair (default: the length the model was trained at, saved with it); "
                        "up to the model's positions (512 for BERT checkpoints), to read more of long premises")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory or a saved model folder")
    p.add_argument("--data", action="append", required=True, metavar="FILE", help="labelled file; repeat")
    p.add_argument("--two-class", action="store_true",
                   help="merge neutral and contradiction into not_entailment (for RTE-style data)")
    p.add_argument("--report", type=Path, metavar="DIR", help="write evaluation.md, evaluation.json and plots here")
    p.add_argument("--mistakes", type=int, default=10, metavar="N",
                   help="how many of the most confidently wrong pairs the report and --json list (default 10; "
                        "a negative number: every mistake, most confident first)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    _add_max_len(p)
    _add_hardware(p)
    _add_inference_compile(p)
    _add_no_progress(p)
    _add_data_options(p)


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory or a saved model folder")
    p.add_argument("premise", nargs="?")
    p.add_argument("hypothesis", nargs="?")
    p.add_argument("--input", type=Path,
                   help="pairs to label: jsonl with premise/hypothesis (or sentence1/sentence2) keys, or any "
                        "file that --data takes; labels in it are ignored; - reads standard input")
    p.add_argument("--output", type=Path,
                   help="where to write the predictions: the input line of each pair, its texts, label and "
                        "probabilities, as CSV or TSV for a .csv or .tsv file, else JSON lines (.jsonl; - or "
                        "none: standard output, JSON lines unless --output-format says otherwise); written a chunk "
                        "at a time (8,192 pairs on a CPU, 65,536 on a GPU) into OUTPUT.partial, which takes its "
                        "place once whole: Ctrl-C, SIGTERM, a crash or SIGKILL keep the chunks done there")
    p.add_argument("--output-format", choices=["jsonl", "csv", "tsv"],
                   help="the format on standard output (a file's is its suffix's)")
    p.add_argument("--resume", action="store_true",
                   help="go on from OUTPUT.partial, which a run on the same input left when it stopped: its "
                        "predictions are kept (once OUTPUT.partial.json shows them to be of these pairs, model and "
                        "columns), and the rest are made")
    p.add_argument("--no-texts", action="store_true",
                   help="leave each pair's texts out of the output (join it to the input by line or id): long "
                        "premises would make it as large as the input")
    _add_max_len(p)
    _add_hardware(p)
    _add_inference_compile(p)
    _add_no_progress(p)
    _add_data_options(p, labels=False)


def _add_no_progress(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (in a log file rather than a terminal they are a line every 30 s)")


def _add_inference_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action="store_true",
                   help="for large jobs on GPUs: compile the model for packed batches of fixed shape, replayed "
                        "as CUDA graphs; costs a minute or more to start")


def _add_data(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="fetch a public dataset into the cache and verify it",
                                  epilog="examples:\n  bertnli data download snli\n"
                                         "  BERTNLI_CACHE=/data/cache bertnli data download mnli"
                                         "   # commands run with the same BERTNLI_CACHE find it\n\n"
                                         "Archives go to $BERTNLI_CACHE/data (default ~/.cache/bertnli/data), "
                                         "where train --dataset and data inspect NAME:SPLIT find them.",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("name", help="snli, mnli, rte or sick")
    download.add_argument("--url", help="fetch from this mirror instead of the official address")
    inspect = actions.add_parser("inspect", help="read a file and report its size, labels and skipped rows",
                                 epilog="examples:\n  bertnli data inspect ../shared/data/sick/SICK.txt\n"
                                        "  bertnli data inspect glue.tsv --label-map glue",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    inspect.add_argument("files", nargs="+")
    _add_data_options(inspect)


def _add_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a run directory or a saved model folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    _add_max_len(p)
    _add_hardware(p)
    p.add_argument("--max-pairs", type=_positive, default=256, help="pairs allowed in one request (default 256)")
    p.add_argument("--max-chars", type=_positive,
                   help="characters allowed in one text (default 16 for each token the model reads: 2,048 at "
                        "--max-len 128, 8,192 at 512)")
    p.add_argument("--max-batch-pairs", type=_positive,
                   help="pairs of concurrent requests run together in one model call (default 1024 on GPUs, 128 on "
                        "CPUs; smaller keeps a short request from waiting on a long batch, larger keeps a GPU busy)")
    p.add_argument("--max-wait-ms", type=_non_negative, default=5.0,
                   help="how long a request waits for others to share its model call (default 5)")


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a run directory or a saved model folder")
    p.add_argument("out", type=Path, help="output folder (an earlier export there is replaced)")
    p.add_argument("--format", choices=["hf", "onnx"], required=True,
                   help="hf: a BertForSequenceClassification folder; onnx: model.onnx (opset 17, int64 input_ids, "
                        "token_type_ids, attention_mask → logits) with its tokenizer and bertnli_onnx.json")


# ---- commands ------------------------------------------------------------------------------------
def _read(spec: str | Path | BinaryIO, args: argparse.Namespace, split: str | None = None) -> Dataset:
    """One data file (or an archive's split), cut to ``--limit`` pairs when given."""
    from bertnli.data import read_dataset

    return read_dataset(spec, split=split, format=getattr(args, "format", None),
                        columns=getattr(args, "columns", None), label_map=getattr(args, "label_map", None),
                        d2l_text=getattr(args, "d2l_text", False), limit=getattr(args, "limit", None))


def _combine(name: str, parts: list[Dataset]) -> Dataset:
    from bertnli.data import Dataset

    combined = Dataset(name, [e for part in parts for e in part.examples], tokenised=parts[0].tokenised,
                       predicted=any(part.predicted for part in parts),
                       skipped_lines=parts[0].skipped_lines if len(parts) == 1 else {})  # several: whose line?
    for part in parts:
        combined.skipped.update(part.skipped)
    return combined


def cmd_train(args: argparse.Namespace) -> None:
    from bertnli.training import RunDir, train

    if args.resume:
        _resume(args)
        return
    _check_data_choice(args)
    cfg = _train_config(args)
    from bertnli.weights.pretrained import check_model_source

    check_model_source(cfg.model)  # a mistyped --model path, before the data are read
    source = _data_source(args, cfg.seed)
    out = args.out or Path("runs") / (args.dataset or Path(args.train[0]).stem)
    RunDir(out).refuse_existing(args.overwrite)  # before the data are read: that can take a while
    train_set, eval_set = _load_training_data(argparse.Namespace(**source))
    _note(train_set.describe())
    _note(eval_set.describe())
    _print_result(train(cfg, train_set, eval_set, out, overwrite=args.overwrite, progress=not args.no_progress,
                        source=source, on_epoch=_print_epoch))


def _resume(args: argparse.Namespace) -> None:
    """Continue a run started from the command line, on the data it recorded, with the settings it recorded."""
    from bertnli.training import RunDir, TrainConfig, train

    defaults = vars(_parser().parse_args(["train"]))
    given = sorted(k for k, v in vars(args).items() if k not in ("resume", "no_progress") and v != defaults[k])
    if given:
        raise BertnliError(f"--resume continues {args.resume} with the settings it started with; drop "
                           + ", ".join("--" + k.replace("_", "-") for k in given)
                           + " (or start a new run with --out)")
    run = RunDir(args.resume)
    source = run.read_config()["data"].get("source")
    if source is None:
        raise BertnliError(f"{args.resume} was started from Python, not the command line; resume it with "
                           "bertnli.train(cfg, train_set, eval_set, run_dir, resume=True)")
    files = [source.get(role) for role in ("train", "eval")] if isinstance(source, dict) else [0]
    if not all(f is None or (isinstance(f, list) and all(isinstance(name, str) for name in f)) for f in files):
        raise BertnliError(f"{run.config_path}: data.source is not the record of data files that bertnli writes")
    train_set, eval_set = _load_training_data(argparse.Namespace(**source))
    _print_result(train(TrainConfig(), train_set, eval_set, args.resume, resume=True, source=source,
                        progress=not args.no_progress, on_epoch=_print_epoch))


def _check_data_choice(args: argparse.Namespace) -> None:
    if not args.dataset and not args.train:
        raise BertnliError("give training data: --train FILE (repeatable) or --dataset snli")
    if args.dataset and (args.train or args.eval):
        raise BertnliError("give --dataset or --train/--eval files, not both")
    if (args.dataset or args.eval) and args.validation_fraction is not None:
        raise BertnliError("--validation-fraction splits --train files that come without --eval; "
                           + ("--dataset brings its own validation split" if args.dataset else "drop one of the two"))
    if args.validation_fraction is not None:
        from bertnli.data.splits import check_validation_fraction

        check_validation_fraction(args.validation_fraction)  # before any file is read


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe's settings with the options given (an option not given is None: the recipe's value)."""
    from bertnli.training import TrainConfig

    overrides = {k: getattr(args, k) for k in (
        "epochs", "batch_size", "lr", "max_len", "seed", "weight_decay", "warmup_ratio", "max_tokens",
        "grad_accum", "grad_clip", "early_stopping", "num_heads", "dropout", "log_every", "checkpoint_every",
        "eval_every", "optimizer", "schedule", "select_by")}
    return TrainConfig.from_recipe(args.recipe, model=_absolute(args.model), device=args.device,
                                   precision=args.precision, compile=args.compile or None,
                                   tensorboard=args.tensorboard or None,
                                   cache=False if args.no_cache else None, pack=args.pack or None, **overrides)


def _data_source(args: argparse.Namespace, seed: int) -> dict:
    """How the data were chosen, as the run records it for --resume: files as absolute paths, so that a resume
    finds them from any folder, and the seed and size rule of the validation split."""
    from bertnli.data.splits import DEFAULT_VALIDATION_CAP

    source = {k: getattr(args, k) for k in ("dataset", "train", "eval", "validation_fraction", "format", "columns",
                                            "label_map", "d2l_text", "limit")}
    source["train"], source["eval"] = ([_absolute(spec) for spec in specs] if specs else specs
                                       for specs in (args.train, args.eval))
    return {**source, "seed": seed, "validation_cap": DEFAULT_VALIDATION_CAP}


def _absolute(spec: str) -> str:
    """A local file or folder (or ``file:split``) as an absolute path; names (``snli``, ``minilm``) as given."""
    head, sep, tail = spec.rpartition(":")
    for path, suffix in ((spec, ""), (head, sep + tail)):
        if path and Path(path).exists():
            return os.path.abspath(path) + suffix
    return spec


def _load_training_data(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """(train, validation) from --dataset, or --train/--eval files, holding out a slice when no --eval."""
    from bertnli.data import download, train_validation_split
    from bertnli.data.download import remote_dataset
    from bertnli.data.labels import require_labelled

    eval_set: Dataset | None
    if args.dataset:
        archive = download(args.dataset)  # reuses a verified copy in the cache without touching the network
        validation = remote_dataset(args.dataset).validation
        train_set, eval_set = _read(archive, args, "train"), _read(archive, args, validation)
    else:
        train_set = _combine("+".join(Path(s).name for s in args.train), [_read(s, args) for s in args.train])
        eval_set = _combine("+".join(Path(s).name for s in args.eval), [_read(s, args) for s in args.eval]) \
            if args.eval else None
    for dataset in (train_set, eval_set):  # before a split, whose sizes would be the complaint
        if dataset is not None:
            require_labelled(dataset)
    if eval_set is None:
        _note(f"read {train_set.describe()}")  # the halves below no longer list what was skipped
        train_set, eval_set = train_validation_split(  # runs recorded before the cap was set held out 10%
            train_set, validation_fraction=args.validation_fraction, seed=args.seed,
            cap=getattr(args, "validation_cap", None))
    return train_set, eval_set


def _print_epoch(record: dict) -> None:
    """An epoch's line on standard error, with the run's other notes (validations within epochs included):
    standard output holds the result alone."""
    from bertnli.training.loop import describe_epoch

    _note(describe_epoch(record))


def _first_process() -> bool:
    """True but in the second and later processes that torchrun starts (it sets LOCAL_RANK as well as RANK;
    a RANK alone, as some job schedulers set it, is not torchrun's)."""
    return os.environ.get("RANK", "0") == "0" or "LOCAL_RANK" not in os.environ


def _error(args: argparse.Namespace, message: str, storage: bool, own: bool = False) -> None:
    """The error line. Under torchrun every process meets bad settings alike, and the first says so; errors
    of reading or writing files (``storage``) may be one machine's own, so each machine's first process
    says them too, naming its rank; an ``own`` error (a lost peer, which the first process may be) every
    process says that meets it."""
    line = f"bertnli {args.command}: error: {message}"
    if _first_process():
        print(line, file=sys.stderr)
    elif own or (storage and os.environ.get("LOCAL_RANK") == "0"):
        print(f"bertnli {args.command}: error: (process {os.environ['RANK']}) {message}", file=sys.stderr)
    _tell_torchrun(line)


def _tell_torchrun(line: str) -> None:
    """Under torchrun, the error line in the file it names for this process: its failure summary then shows the
    line as the root cause, where it would otherwise point to its own documentation."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError):
            record = {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}
            Path(path).write_text(json.dumps({"message": record}), encoding="utf-8")  # as torch's @record writes


def _note(text: str) -> None:
    """A line on standard error, from the first process only (above any progress bar drawn there)."""
    if _first_process():
        from bertnli.progress import progress_note

        progress_note(text)


def _print_result(result: TrainResult) -> None:
    if not _first_process():
        return
    best = f" (validation accuracy {result.best_accuracy:.4f})" if result.best_accuracy is not None else ""
    print(f"best model{best} saved in {result.run_dir / 'model'}; curves in {result.run_dir / 'curves.png'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from bertnli.evaluation import check_scorable, evaluate, require_gold_labels, write_reports
    from bertnli.inference import NLIModel

    if args.report:
        _check_report(args.report)
    datasets = [_read(spec, args) for spec in args.data]  # every file read before any is scored: errors come first
    given_as: dict[str, set[str]] = {}
    for spec, dataset in zip(args.data, datasets):
        given_as.setdefault(dataset.name, set()).add(str(spec))
    for spec, dataset in zip(args.data, datasets):  # claims.jsonl and claims.tsv: named as given, to tell apart
        if len(given_as[dataset.name]) > 1:
            dataset.name = str(spec)
    for spec, dataset in zip(args.data, datasets):
        require_gold_labels(dataset, spec)
    model = NLIModel.load(args.model, device=args.device, precision=args.precision, max_len=args.max_len,
                          compile=args.compile, progress=not args.no_progress)
    for dataset in datasets:  # a file the model cannot be scored on stops the command before any scoring
        check_scorable(model.labels, dataset, args.two_class)
    top = None if args.mistakes < 0 else args.mistakes
    _warn_of_training_pairs(args.model, args.data, datasets)
    results = [evaluate(model, dataset, two_class=args.two_class, top_errors=top) for dataset in datasets]
    for spec, dataset, result in zip(args.data, datasets, results):  # what was scored, for a later reader
        cut = args.limit and len(dataset) == args.limit  # a --limit beyond the file's pairs took them all
        limit = f" (its first {args.limit:,} labelled pairs)" if cut else ""
        result.notes.insert(0, f"Model {args.model}, data {_absolute(spec)}{limit}.")
    if args.report:
        write_reports(results, args.report)
        print(f"report written to {args.report}", file=sys.stderr)
    if args.json:
        payload = results[0].to_dict() if len(results) == 1 else {"results": [r.to_dict() for r in results]}
        print(json.dumps(payload, indent=2))
        return
    for r in results:
        _print_evaluation(r)
    if len(results) > 1:
        print("\n" + _comparison_table(results))


def _warn_of_training_pairs(model: str, specs: Sequence[str], datasets: Sequence[Dataset]) -> None:
    """A warning for each data file that holds pairs ``model`` was trained on (as its run recorded them): its
    scores would measure memory as much as skill."""
    run = _run_of(model)
    source = run.read_config()["data"].get("source") if run is not None else None
    trained_on = list((source if isinstance(source, dict) else {}).get("train") or [])
    for spec, dataset in zip(specs, datasets):
        if _absolute(spec) in trained_on:
            _note(f"warning: {spec} is what {model} was trained on: its scores include the training pairs "
                  f"(the run's own held-out pairs were scored in its evaluation.md)")
        elif run is not None and (inside := run.trained_on(dataset.examples)):
            lines = ", ".join(str(dataset.examples[i].line) for i in inside[:3]) + ", ..." * (len(inside) > 3)
            _note(f"warning: {len(inside):,} of the {len(dataset):,} pairs of {spec} are pairs {model} was trained "
                  f"on (lines {lines}): their scores measure memory as much as skill")


def _run_of(model: str) -> RunDir | None:
    """The run that trained ``model`` (a run directory, or a run's model/ folder); None for a model elsewhere."""
    from bertnli.training import RunDir
    from bertnli.weights.native import resolve_model_dir

    path = Path(model).expanduser()
    return next((run for run in (RunDir(path), RunDir(path.parent)) if run.holds_run_record()
                 and run.model_dir.resolve() == resolve_model_dir(path).resolve()), None)


def _print_evaluation(result: Evaluation) -> None:
    from bertnli.data.example import describe_skipped

    report = result.report
    width = max(len(label) for label in report.labels) + 2
    print(f"\n{result.dataset}: accuracy {result.describe_accuracy()}, macro F1 {report.macro_f1():.4f}")
    print(result.describe_majority())
    for note in result.notes:
        print(note)
    if result.skipped:
        print("skipped " + describe_skipped(result.skipped, result.skipped_lines))
    print(f"{'':{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}")
    for label, s in report.per_class().items():
        print(f"{label:{width}}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>10,}")
    print("confusion (rows gold, columns predicted):")
    print(f"{'':{width}}" + "".join(f"{label:>{width}}" for label in report.labels))
    for label, row in zip(report.labels, report.confusion):
        print(f"{label:{width}}" + "".join(f"{n:>{width},}" for n in row))
    if result.by_genre:
        genre_width = max(len(g["genre"]) for g in result.by_genre) + 2
        print("accuracy by genre:")
        for g in result.by_genre:
            print(f"{g['genre']:{genre_width}}{g['accuracy']:>10.4f}  ({g['pairs']:,} pairs)")


def _comparison_table(results: list[Evaluation]) -> str:
    width = max(40, *(len(r.dataset) + 1 for r in results))  # names whole: "[2-class]" ends some
    lines = [f"{'dataset':{width}}{'pairs':>10}{'accuracy':>10}{'95% interval':>16}{'macro F1':>10}"]
    lines += [f"{r.dataset:{width}}{r.report.total:>10,}{r.accuracy:>10.4f}"
              f"{'{:.4f}–{:.4f}'.format(*r.accuracy_interval):>16}{r.report.macro_f1():>10.4f}" for r in results]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> None:
    from bertnli.inference import NLIModel
    from bertnli.paths import is_stream

    as_lines = _check_predict_options(args)
    # The model first: a wrong --model must not cost the input's reading, nor a stream that cannot be read again.
    model = NLIModel.load(args.model, device=args.device, precision=args.precision, max_len=args.max_len,
                          compile=args.compile, progress=args.input is not None and not args.no_progress)
    examples, tokenised = _pairs_to_predict(args)
    if not as_lines:
        [p] = model.predict(examples, tokenised=tokenised)
        print(p.label)
        for label, prob in sorted(p.probabilities.items(), key=lambda kv: -kv[1]):
            print(f"  {label:15} {prob:.4f}")
        if p.truncated:
            print(f"  (the pair is longer than the model's {model.max_len} tokens: it read the pair cut)")
        return
    from bertnli.data.writers import Layout, Progress, partial_path, resume_point, write_predictions
    from bertnli.runtime import precision_name
    from bertnli.weights.native import resolve_model_dir

    to_file = args.output is not None and not is_stream(args.output)
    layout = Layout(args.output.suffix if to_file else f".{args.output_format or 'jsonl'}", tuple(model.labels),
                    any(e.id is not None for e in examples), not args.no_texts,
                    f"{resolve_model_dir(args.model).resolve()} in {precision_name(model.dtype)}"
                    + (f", reading {model.max_len} tokens" if args.max_len else ""))  # as partials made before
    start = resume_point(args.output, examples, layout) if args.resume else Progress()
    if args.resume:
        partial = partial_path(args.output)
        _note(f"resuming after the {start.pairs:,} predictions in {partial}" if start.pairs else
              f"{partial} holds no whole chunk on record (the run stopped in its first): predicting from the first "
              "pair" if partial.exists() else f"no {partial} to resume from: predicting from the first pair")
    cut = write_predictions(model.predict_chunks(examples[start.pairs :], tokenised=tokenised), examples,
                            args.output, sys.stdout, layout, start)
    if args.output:
        print(f"{len(examples):,} prediction{'s' if len(examples) != 1 else ''} written to {args.output}",
              file=sys.stderr)
    if cut:
        _note(f"truncated: {model.describe_truncation(cut, len(examples))}")


def _check_predict_options(args: argparse.Namespace) -> bool:
    """Refuse, before any work, options that cannot go together; returns whether predictions are written as
    lines (else one pair given without --output is shown as a readable table)."""
    from bertnli.data.example import is_blank
    from bertnli.data.writers import holds_kept_predictions, partial_path, record_path
    from bertnli.paths import is_stream

    if args.input is not None and args.premise is not None:
        raise BertnliError("give a premise and a hypothesis, or --input pairs.jsonl, not both")
    if args.input is None and (args.premise is None or args.hypothesis is None):
        missing = "a premise and a hypothesis" if args.premise is None else "the hypothesis after the premise"
        raise BertnliError(f"give {missing} (quoted), or --input pairs.jsonl")
    if args.input is None and (is_blank(args.premise) or is_blank(args.hypothesis)):
        raise BertnliError("the premise and the hypothesis must not be empty")
    as_lines = args.input is not None or args.output is not None or args.output_format is not None
    if args.output is not None and str(args.output) == "-":  # standard output, as --input - is standard input
        args.output = None
    if args.output:
        _check_output(args.output, args.input)
        if args.output_format and not is_stream(args.output):
            raise BertnliError(f"--output-format is for standard output and other streams; --output {args.output} is "
                               "written as its suffix says (.jsonl, .csv or .tsv)")
    if args.resume and (args.output is None or is_stream(args.output)):
        raise BertnliError("--resume goes on from OUTPUT.partial: give the --output file of the interrupted run")
    if not args.resume and args.output and holds_kept_predictions(args.output):
        raise BertnliError(f"{partial_path(args.output)} holds the predictions of a run that stopped (or is still "
                           f"writing them): the same command with --resume goes on from them; remove it and "
                           f"{record_path(args.output).name} to start over")
    return as_lines


def _pairs_to_predict(args: argparse.Namespace) -> tuple[list[Example], bool]:
    """The pairs of --input (or the one pair given), and whether their texts are tokenised."""
    from bertnli.data import Dataset, Example

    if not args.input:
        return [Example(args.premise, args.hypothesis)], False
    args.columns = {**(args.columns or {}), "label": None}  # labels in the file are not read
    try:
        dataset = _read(sys.stdin.buffer if str(args.input) == "-" else args.input, args)
    except NoPairs as empty:  # a pipeline's batch may come empty: its output is empty too
        _note(f"{empty}; no predictions to write")
        dataset = Dataset(str(args.input), [])
    if dataset.skipped:
        print(dataset.describe(), file=sys.stderr)
    first_line: dict[str | int, int | None] = {}
    repeated = [(e.id, first_line[e.id], e.line) for e in dataset.examples
                if e.id is not None and first_line.setdefault(e.id, e.line) != e.line]
    if repeated:
        name, first, again = repeated[0]
        _note(f"warning: {len(repeated):,} pairs have the id of an earlier pair ({name!r} on lines {first} and "
              f"{again}, first): joined back by id, their predictions would be mixed up; join by line")
    return dataset.examples, dataset.tokenised


def _check_output(path: Path, source: Path | None = None) -> None:
    """Refuse, before any work, an output that cannot be written or that would overwrite the input."""
    if path.is_dir():
        raise BertnliError(f"--output {path} is a folder; name a file")
    from bertnli.data.writers import OUTPUT_SUFFIXES
    from bertnli.paths import is_stream

    if path.suffix.lower() not in OUTPUT_SUFFIXES and not is_stream(path):
        raise BertnliError(f"--output {path}: predictions are written as JSON lines (.jsonl), CSV (.csv) or TSV "
                           f"(.tsv), not {path.suffix}; name the file with one of these")
    if source is not None and path.exists() and path.resolve() == source.resolve():
        raise BertnliError(f"--output {path} is the --input file; writing there would destroy the input")
    if not is_stream(path):  # /dev/stdout, a pipe: written as it is
        _check_writable("--output", path, path.absolute().parents)


def _check_report(path: Path) -> None:
    """Refuse, before any work, a report folder that cannot be made or written."""
    from bertnli.training import RunDir

    if path.exists() and not path.is_dir():
        raise BertnliError(f"--report {path} is a file; name a folder")
    if RunDir(path).holds_run_record():
        raise BertnliError(f"--report {path} is a training run: its evaluation.md and figures are the run's own "
                           f"held-out evaluation; name another folder, such as {path / 'eval'}")
    _check_writable("--report", path, [path.absolute(), *path.absolute().parents])


def _check_writable(flag: str, path: Path, folders: Sequence[Path]) -> None:
    """Refuse ``path`` when the first of ``folders`` that exists is no folder this process may write in."""
    folder = next(p for p in folders if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise BertnliError(f"{flag} {path} cannot be written ({folder} is not a writable folder)")


def cmd_data(args: argparse.Namespace) -> None:
    if args.action == "download":
        from bertnli.data import download

        path = download(args.name, url=args.url)
        print(f"{args.name}: {path}")
        return
    for spec in args.files:
        dataset = _read(spec, args)
        print(dataset.describe())
        print("  columns: " + ", ".join(f"{role}={column}" for role, column in dataset.columns.items()))
        if "label" not in dataset.columns and "label" not in (args.columns or {}):
            print("  no label column found: --columns label=COLUMN names one")


def cmd_plot(args: argparse.Namespace) -> None:
    from bertnli.evaluation import read_report
    from bertnli.plots import plot_comparison, plot_curves, plot_evaluation
    from bertnli.training import RunDir
    from bertnli.training.run import runs_table

    runs = [RunDir(path) for path in args.runs]
    for run in runs:
        run.read_config()
        run.require_metrics()
    if len(runs) > 1:
        print(runs_table(runs))
        print(plot_comparison(runs, args.out or Path("comparison.png")))
        return
    if args.out is not None:
        raise BertnliError("--out names the figure that compares several runs; one run's figures go in its folder")
    [run] = runs
    paths = [plot_curves(run)]
    saved = run.path / "evaluation.json"
    if saved.is_file():
        paths += plot_evaluation(read_report(saved), run.path)
    for path in paths:
        print(path)


def cmd_serve(args: argparse.Namespace) -> None:
    from bertnli.serving import serve
    from bertnli.serving.batcher import model_thread_running

    try:
        serve(args.model, host=args.host, port=args.port, device=args.device, max_pairs=args.max_pairs,
              max_chars=args.max_chars, precision=args.precision, max_len=args.max_len,
              max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms)
    except KeyboardInterrupt:
        if not model_thread_running():
            raise
        # A forced quit (a second Ctrl-C) during a model call: leave now, as asked. Python would wait for the
        # call, then abort in the middle of it; a server has nothing to save.
        print(f"bertnli {args.command}: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)


def cmd_export(args: argparse.Namespace) -> None:
    from bertnli.export import export

    replacing = Path(args.out).is_dir() and any(Path(args.out).iterdir())
    path = export(args.model, args.out, args.format)
    print(f"exported to {path}" + (" (replacing the earlier export there)" if replacing else ""))
    if args.format == "hf":
        print(f'use: pipeline("text-classification", model="{path}", top_k=None, truncation=True)')
    else:
        print(f"use: onnxruntime on {path / 'model.onnx'} (int64 input_ids, token_type_ids, attention_mask → "
              f"logits), with {path / 'tokenizer.json'}")
    print("encode pairs with truncation=True (transformers ignores the tokenizer's own setting): pairs longer "
          "than the model reads are then cut as bertnli cuts them")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "data": cmd_data,
            "plot": cmd_plot, "serve": cmd_serve, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        python_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            """bertnli's own warnings as one line (from the first process only); others as Python shows them."""
            if issubclass(category, BertnliWarning):
                _note(f"warning: {message}")
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        with _library_notes():
            return _run(args)


@contextlib.contextmanager
def _library_notes() -> Iterator[None]:
    """What bertnli's library logs at INFO (a run's opening line, where a resumed run takes up) as lines on
    standard error, for the length of a command; from Python it stays with the caller's logging set-up."""
    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _note(self.format(record))

    library, notes = logging.getLogger("bertnli.training"), Notes()
    level = library.level
    library.addHandler(notes)
    library.setLevel(logging.INFO)
    try:
        yield
    finally:
        library.removeHandler(notes)
        library.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    try:
        COMMANDS[args.command](args)
    except Interrupted as exc:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone: the work is kept all the same
            _note(f"bertnli {args.command}: {exc}")
        return 128 + exc.signum  # as a shell reports a process ended by that signal
    except BertnliError as exc:
        _error(args, str(exc), storage=isinstance(exc, (DataError, CheckpointError, DownloadError)),
               own=isinstance(exc, ProcessLost))
        return 1
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as the shell's own tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + 13  # as a shell reports a process ended by SIGPIPE
    except OSError as exc:  # a file that cannot be read or written: the path and the reason, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        _error(args, f"{where}{exc.strerror or exc}", storage=True)
        return 1
    except KeyboardInterrupt:
        print(f"bertnli {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
