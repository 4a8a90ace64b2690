#!/usr/bin/env bash
# The GPU benchmarks behind the README's GPU table, and a profile of one training step, in one go
# (about 9 minutes on an H100/H200).
#   MODEL   a Hugging Face folder or `minilm` (default)          OUT   where the log goes (default .)
#   BERTNLI_SHARED_DATA   the folder holding snli/snli_1.0_dev.jsonl (default ../shared/data)
set -u
cd "$(dirname "$0")/.."
MODEL=${MODEL:-minilm}
LOG=${OUT:-.}/gpu_suite.log
export PYTHONUNBUFFERED=1
exec > >(tee -a "$LOG") 2>&1
date; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
run() { echo "=== $*"; python3 "$@" --side-timeout 240; }
# bertnli trains two epochs and reports the second: past the compilation of `bertnli-compiled`.
run benchmarks/train_throughput.py --model "$MODEL" --pairs 200000 --trainer-pairs 20000 --batch-size 256 \
    --epochs 2 --sides trainer,bertnli,bertnli-compiled
run benchmarks/predict_throughput.py --model "$MODEL" --pairs 200000 --peer-pairs 20000 --batch-size 256 \
    --sides pipeline,trainer,bertnli,bertnli-compiled
run benchmarks/train_throughput.py --model bert-base-random --tokenizer-from "$MODEL" --pairs 100000 \
    --trainer-pairs 12000 --batch-size 256
# At batch 1024 the peer is a hand-written loop over length-sorted batches (the design notes' 49,600 pairs/s).
run benchmarks/train_throughput.py --model "$MODEL" --pairs 300000 --batch-size 1024 --epochs 2 \
    --sides plain,bertnli,bertnli-compiled
# Where an eager step's time goes at batch 1024 (host or device, which kernels); the trace opens in Perfetto.
echo "=== benchmarks/step_profile.py"
python3 benchmarks/step_profile.py --model "$MODEL" --batch-size 1024 --steps 10 --trace "${OUT:-.}/step_trace.json"
date
