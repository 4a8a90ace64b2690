#!/usr/bin/env bash
# The GPU benchmarks behind the README's GPU table in one go, most telling first, each line cut short at the
# suite's deadline (SUITE_SECONDS, default 540: 9 minutes); then, with what time is left, the GPU tests and a
# profile of one training step.
#   MODEL   a Hugging Face folder or `minilm` (default)          OUT   where the log goes (default .)
#   BERTNLI_SHARED_DATA   the folder holding snli/snli_1.0_dev.jsonl (default ../shared/data)
set -u
cd "$(dirname "$0")/.."
MODEL=${MODEL:-minilm}
LOG=${OUT:-.}/gpu_suite.log
DEADLINE=$((SECONDS + ${SUITE_SECONDS:-540}))
export PYTHONUNBUFFERED=1
exec > >(tee -a "$LOG") 2>&1
date; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# run SECONDS SCRIPT ARGS...: at most SECONDS for the line (less if the deadline is nearer), as much for a side.
run() {
    local limit=$(( $1 < DEADLINE - SECONDS ? $1 : DEADLINE - SECONDS )); shift
    if (( limit < 20 )); then echo "=== skipped (deadline): $*"; return; fi
    echo "=== $(date +%T) $* (at most ${limit} s)"
    timeout "$limit" python3 "$@" --side-timeout "$limit"
}
# Every side trains two epochs and reports the second, past its start-up (compilation; kernel choices for
# each new shape), and predicts its pairs twice, reporting the second pass.
# The 50,000 pairs/s line: the Trainer and a hand-written loop over length-sorted batches (the design notes'
# 49,600 pairs/s) against eager and compiled bertnli, all at batch 1024.
run 200 benchmarks/train_throughput.py --model "$MODEL" --pairs 200000 --trainer-pairs 30000 --batch-size 1024 \
    --epochs 2 --sides trainer,plain,bertnli,bertnli-compiled
run 110 benchmarks/predict_throughput.py --model "$MODEL" --pairs 60000 --peer-pairs 10000 --batch-size 256 \
    --sides pipeline,trainer,bertnli,bertnli-compiled
run 130 benchmarks/train_throughput.py --model bert-base-random --tokenizer-from "$MODEL" --pairs 40000 \
    --trainer-pairs 8000 --batch-size 256 --epochs 2 --sides trainer,bertnli,bertnli-compiled
run 100 benchmarks/train_throughput.py --model "$MODEL" --pairs 100000 --trainer-pairs 15000 --batch-size 256 \
    --epochs 2 --sides trainer,bertnli,bertnli-compiled
# The product's own path on the GPU: a short compiled run with validation and its final report, then the model
# evaluated compiled (timings in its log lines).
limit=$(( DEADLINE - SECONDS ))
if (( limit >= 40 )); then
    echo "=== $(date +%T) bertnli train --compile, then evaluate --compile (at most ${limit} s)"
    snli=${BERTNLI_SHARED_DATA:-../shared/data}/snli/snli_1.0_dev.jsonl
    run_dir=$(mktemp -d)/run
    timeout "$limit" sh -c "python3 -m bertnli train --model '$MODEL' --train '$snli' --limit 8000 --epochs 2 \
        --batch-size 256 --lr 1e-4 --compile --no-progress --out '$run_dir' && \
        python3 -m bertnli evaluate --model '$run_dir' --data '$snli' --limit 2000 --compile --no-progress"
    echo "exit status $?"
    rm -rf "$(dirname "$run_dir")"
fi
# The tests that need a GPU (a training step that never waits for it, eager and compiled).
limit=$(( DEADLINE - SECONDS ))
if (( limit >= 40 )); then
    echo "=== $(date +%T) tests/test_gpu.py (at most ${limit} s)"
    PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} timeout "$limit" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py
fi
# Where an eager step's time goes at batch 1024 (host or device, which kernels); the trace opens in Perfetto.
limit=$(( DEADLINE - SECONDS ))
if (( limit >= 20 )); then
    echo "=== benchmarks/step_profile.py (at most ${limit} s)"
    timeout "$limit" python3 benchmarks/step_profile.py --model "$MODEL" --batch-size 1024 --steps 10 \
        --trace "${OUT:-.}/step_trace.json" && gzip -f "${OUT:-.}/step_trace.json"  # Perfetto opens .json.gz
fi
date
