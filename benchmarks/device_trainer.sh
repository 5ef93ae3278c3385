#!/usr/bin/env bash
# The trainer's GPU checks in one run on a lent GPU machine (issue: compact reward-model trainer).
#
#   1. tests/test_trainer_gpu.py: varlen packs == padded batches in bf16, compiled == eager training;
#   2. benchmarks/train_throughput.py: ours eager (the baseline, re-measured on the same card),
#      ours --compile, ours --compile without activation checkpointing, ours with Liger's kernels,
#      then TRL's RewardTrainer. Variants that no longer fit the time budget are skipped; TRL keeps
#      its reserve, so every ratio printed is against TRL on the same card in the same run.
#
# The device image lacks trl, datasets (with dill, multiprocess) and liger-kernel; they travel as
# wheels in .whl (ignored by git; `make device-wheels` downloads them):
#
#   device run: command "bash benchmarks/device_trainer.sh", carry [".whl"], timeout_s 560
#
# About 8 minutes in all. Logs go to $OUT (the device tool brings that folder back). Extra
# arguments go to the benchmark: `bash benchmarks/device_trainer.sh --smoke` is a CPU dry run.
set -uo pipefail
OUT=${OUT:-/tmp/device-trainer}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels in .whl"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

timeout 75 python3 -m pytest -q -p no:cacheprovider tests/test_trainer_gpu.py 2>&1 | tee "$OUT/gpu-tests.log"

timeout 380 python3 benchmarks/train_throughput.py --time-budget 370 --trl-reserve 130 --side-timeout 150 \
    --summary "$OUT/throughput.json" \
    --ours-variant= \
    --ours-variant=--compile \
    "--ours-variant=--compile --no-gradient-checkpointing --micro-batch-tokens 16384" \
    --ours-variant=--liger \
    "$@" 2>&1 | tee "$OUT/throughput.log"
