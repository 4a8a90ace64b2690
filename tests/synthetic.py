"""A small NLI task with a real signal, and a tiny randomly initialised BERT to learn it.

Premise: a few words. Hypothesis: one word, maybe after "no". The label follows from the pair:
the word is in the premise → entailment, or contradiction if negated; not in the premise → neutral.
Getting it right needs attention across the two segments, so a model that learns it really learns.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from bertnli.data.example import Dataset, Example
from bertnli.model import BertConfig, BERTModel
from bertnli.text import WordTokenizer
from bertnli.weights import save_d2l

WORDS = ["red", "blue", "green", "dog", "cat", "bird", "runs", "sleeps", "eats", "big", "small", "old"]
SPECIALS = ["<unk>", "<pad>", "<cls>", "<sep>", "<mask>"]


def synthetic_dataset(size: int, seed: int, name: str = "synthetic") -> Dataset:
    rng = random.Random(seed)
    examples = []
    for _ in range(size):
        premise = rng.sample(WORDS, 4)
        label = rng.choice(["entailment", "contradiction", "neutral"])
        if label == "neutral":
            word = rng.choice([w for w in WORDS if w not in premise])
            hypothesis = word
        else:
            word = rng.choice(premise)
            hypothesis = word if label == "entailment" else f"no {word}"
        examples.append(Example(" ".join(premise), hypothesis, label))
    return Dataset(name, examples)


def tiny_d2l_checkpoint(directory: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised d2l-format checkpoint (vocab.json + pretrained.params) over WORDS."""
    torch.manual_seed(seed)
    tokenizer = WordTokenizer([*SPECIALS, "no", *WORDS])
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_layers=layers, num_heads=4,
                     ffn_size=2 * hidden, max_position=128, dropout=0.0, attention_dropout=0.0)
    save_d2l(BERTModel(cfg), tokenizer, directory)
    return directory


def dead_owner() -> str:
    """The `bertnli.paths.owner` mark of a process of this machine that has ended, as a killed writer leaves it."""
    import subprocess
    import sys

    from bertnli.paths import owner

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return owner().replace(f"~{os.getpid()}@", f"~{done.stdout.strip()}@")
