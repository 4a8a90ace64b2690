"""Do exported models agree with bertnli? Labels and logits through `transformers` and onnxruntime.

Exports MODEL with `bertnli export --format hf` and `--format onnx` into a temporary folder, then labels
every pair of DATA three ways: bertnli itself, the exported folder through `transformers`
(`AutoTokenizer` + `AutoModelForSequenceClassification`), and `model.onnx` through onnxruntime with the
exported `tokenizer.json`. fp32 on the CPU.

    python benchmarks/export_agreement.py --model runs/snli-dev --data ../shared/data/snli/snli_1.0_dev.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware


def batches(n: int, size: int = 64):
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def transformers_logits(folder: Path, premises: list[str], hypotheses: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    out = []
    with torch.inference_mode():
        for part in batches(len(premises)):
            inputs = tokenizer(premises[part], hypotheses[part], truncation=True, padding=True, return_tensors="pt")
            out.append(model(**inputs).logits.numpy())
    return np.concatenate(out)


def onnx_logits(folder: Path, premises: list[str], hypotheses: list[str]) -> np.ndarray:
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=tokenizer.padding["pad_id"] if tokenizer.padding else 0)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for part in batches(len(premises)):
        encodings = tokenizer.encode_batch(list(zip(premises[part], hypotheses[part])))
        feed = {name: np.array([getattr(e, attr) for e in encodings], dtype=np.int64) for name, attr in
                (("input_ids", "ids"), ("token_type_ids", "type_ids"), ("attention_mask", "attention_mask"))}
        out.append(session.run(["logits"], feed)[0])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bertnli run or model folder")
    parser.add_argument("--data", required=True, help="pairs to label (any format bertnli reads)")
    args = parser.parse_args()
    from bertnli import NLIModel
    from bertnli.data import read_dataset
    from bertnli.export import export

    data = read_dataset(args.data)
    premises, hypotheses = [e.premise for e in data.examples], [e.hypothesis for e in data.examples]
    ours = NLIModel.load(args.model, device="cpu")
    reference = ours.logits(ours.encode(premises, hypotheses))
    with tempfile.TemporaryDirectory() as scratch:
        hf, onnx = export(args.model, Path(scratch) / "hf", "hf"), export(args.model, Path(scratch) / "onnx", "onnx")
        others = {"transformers": transformers_logits(hf, premises, hypotheses),
                  "onnxruntime": onnx_logits(onnx, premises, hypotheses)}
    print(f"\nexport agreement on {data.name} ({len(data):,} pairs), fp32, {hardware()}")
    print(f"{'':16}{'same label':>12}{'max |Δ logit|':>16}")
    for name, logits in others.items():
        same = float((logits.argmax(1) == reference.argmax(1)).mean())
        print(f"{name:16}{same:>12.4%}{float(np.abs(logits - reference).max()):>16.2e}")
    print(json.dumps({"labels": ours.labels}))


if __name__ == "__main__":
    main()
