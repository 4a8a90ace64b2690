"""Prediction throughput: bertnli's NLIModel against the Hugging Face `pipeline` and `Trainer.predict`.

Same model, the same real pairs (SNLI dev, repeated to reach --pairs), same batch size and precision;
each side in its own process. Timed from texts in to labels out, tokenisation included. Every side
predicts its pairs twice and reports the second pass, past its start-up (kernel choices for each new
shape; compilation for `bertnli-compiled`); the first pass's time is printed too. The side
`bertnli-compiled` (torch.compile, packed rows of fixed shape, CUDA graphs on a GPU) packs batches of
--batch-size times the mean pair length in tokens, so about as many pairs.

    python benchmarks/predict_throughput.py --pairs 2000 --batch-size 32        # 2-core CPU
    python benchmarks/predict_throughput.py --pairs 200000 --batch-size 256     # GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from bertnli.data import NLI_LABELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_common_arguments,
    device_of,
    hardware,
    peak_memory_mb,
    print_table,
    real_pairs,
    resolved_precision,
    run_sides,
    run_times,
)
from train_throughput import model_folder

LABELS = list(NLI_LABELS)


def classifier_folder(args: argparse.Namespace) -> Path:
    """The same (untrained) classifier for every side: bertnli's format plus a Hugging Face export of it."""
    from bertnli.model import BERTClassifier
    from bertnli.weights import load_pretrained, save_classifier

    folder = args.scratch / f"predict-{args.model}"
    if not (folder / "hf" / "config.json").exists():
        pretrained = load_pretrained(model_folder(args.model, args.scratch, args.tokenizer_from))
        torch.manual_seed(0)
        network = BERTClassifier.from_pretrained(pretrained.model, len(LABELS))
        save_classifier(folder / "bertnli", network, pretrained.tokenizer, LABELS, 128)
        from bertnli.export import export

        export(str(folder / "bertnli"), folder / "hf", "hf")
    return folder


def run_bertnli(args: argparse.Namespace, folder: Path, data, compile: bool = False) -> dict:
    from bertnli import NLIModel

    premises, hypotheses = [e.premise for e in data.examples], [e.hypothesis for e in data.examples]
    model = NLIModel.load(folder / "bertnli", device=str(device_of(args)), precision=args.precision,
                          batch_size=args.batch_size, batch_tokens=None, compile=compile)
    if compile:
        model.plan = replace(model.plan, max_tokens=round(args.batch_size * model.encode(premises, hypotheses)
                                                          .valid_lens.mean()))
    seconds = run_times(lambda: model.predict_proba(premises, hypotheses), 2)
    tokens = int(model.encode(premises, hypotheses).valid_lens.sum())
    return _row("bertnli NLIModel (compiled)" if compile else "bertnli NLIModel", len(data), tokens, seconds, args)


def run_pipeline(args: argparse.Namespace, folder: Path, data) -> dict:
    from transformers import pipeline

    from bertnli.runtime import PRECISIONS

    device = device_of(args)
    dtype = PRECISIONS[resolved_precision(args)] or torch.float32
    classify = pipeline("text-classification", model=str(folder / "hf"), device=device, dtype=dtype)
    inputs = [{"text": e.premise, "text_pair": e.hypothesis} for e in data.examples]
    seconds = run_times(lambda: classify(inputs, batch_size=args.batch_size, truncation=True, top_k=None), 2)
    tokens = sum(len(x) for x in classify.tokenizer([e.premise for e in data.examples],
                                                     [e.hypothesis for e in data.examples])["input_ids"])
    return _row("transformers pipeline", len(data), tokens, seconds, args)


def run_trainer(args: argparse.Namespace, folder: Path, data) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "hf"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder / "hf"))
    cpu = device_of(args).type == "cpu"

    rows: list[dict] = []

    def predict() -> None:
        encoded = tokenizer([e.premise for e in data.examples], [e.hypothesis for e in data.examples],
                            truncation=True, max_length=128)
        rows[:] = [{k: encoded[k][i] for k in encoded} for i in range(len(data))]
        with tempfile.TemporaryDirectory() as out:
            targs = TrainingArguments(output_dir=out, per_device_eval_batch_size=args.batch_size, report_to=[],
                                      bf16_full_eval=resolved_precision(args) == "bf16",
                                      fp16_full_eval=resolved_precision(args) == "fp16", use_cpu=cpu,
                                      disable_tqdm=True)
            Trainer(model=model, args=targs, data_collator=DataCollatorWithPadding(tokenizer)).predict(rows)

    seconds = run_times(predict, 2)
    tokens = sum(len(r["input_ids"]) for r in rows)
    return _row("transformers Trainer.predict", len(data), tokens, seconds, args)


def _row(name: str, pairs: int, tokens: int, seconds: list[float], args: argparse.Namespace) -> dict:
    """A side's row from the seconds of its two passes: the second is reported, the first kept."""
    return {"name": name, "pairs_per_s": pairs / seconds[-1], "tokens_per_s": tokens / seconds[-1],
            "seconds": seconds[-1], "first_pass_seconds": seconds[0], "pairs": pairs,
            "peak_mb": peak_memory_mb(device_of(args))}


SIDES = {"bertnli": run_bertnli, "bertnli-compiled": partial(run_bertnli, compile=True), "pipeline": run_pipeline,
         "trainer": run_trainer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs for bertnli")
    parser.add_argument("--peer-pairs", type=int, help="pairs for the pipeline and Trainer (default: --pairs)")
    parser.add_argument("--sides", default="pipeline,trainer,bertnli",
                        help="any of pipeline, trainer, bertnli, bertnli-compiled")
    args = parser.parse_args()
    folder = classifier_folder(args)
    if args.side:
        pairs = args.pairs if args.side.startswith("bertnli") else args.peer_pairs or args.pairs
        print(json.dumps(SIDES[args.side](args, folder, real_pairs(pairs))))
        return
    rows = run_sides(__file__, args.sides.split(","), args.side_timeout, args.repeat)
    print_table(f"prediction, {args.model}, batch {args.batch_size}, {resolved_precision(args)}, {hardware()}; "
                "data snli dev",
                rows, "pairs_per_s")
    for r in rows:
        print(f"  {r['name']}: {r['pairs']:,} pairs in {r['seconds']:.2f} s "
              f"(first pass {r['first_pass_seconds']:.2f} s)")


if __name__ == "__main__":
    main()
