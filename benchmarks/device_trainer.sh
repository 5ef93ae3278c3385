#!/usr/bin/env bash
# The trainer's GPU checks in one run on a lent GPU machine (issue: compact reward-model trainer).
#
#   1. tests/test_trainer_gpu.py: varlen packs == padded batches in bf16, compiled == eager training
#      (the GPU default: compiled blocks, also with Liger installed);
#   2. benchmarks/train_throughput.py: ours with eager blocks (the baseline, re-measured on the same
#      card), then in order of promise: compiled blocks without activation checkpointing and one
#      131,072-token pack per step (the 35%-MFU setting on an H200: 112 GiB, so it fails on an
#      80 GB H100), the trainer's GPU default (compiled, checkpointed), Liger's kernels without
#      checkpointing, compiled without checkpointing on 32k-token packs (fits an H100); then TRL's
#      RewardTrainer. Variants that no longer fit the time budget are skipped; TRL keeps its
#      reserve, so every ratio printed is against TRL on the same card in the same run;
#   3. benchmarks/profile_trainer.py on the compiled, uncheckpointed step of 32k-token packs, in
#      the time left: where the rest of the step goes, for the next change.
#
# The device image lacks trl, datasets (with dill, multiprocess) and liger-kernel; they travel as
# wheels in .whl (ignored by git; `make device-wheels` downloads them):
#
#   device run: command "bash benchmarks/device_trainer.sh", carry [".whl"], timeout_s 520
#
# At most 8 minutes in all (the limit). Logs go to $OUT (the device tool brings that folder
# back). Extra arguments go to the benchmark: `bash benchmarks/device_trainer.sh --smoke` is a CPU dry run.
set -uo pipefail
OUT=${OUT:-/tmp/device-trainer}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels in .whl"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

timeout 70 python3 -m pytest -q -p no:cacheprovider tests/test_trainer_gpu.py 2>&1 | tee "$OUT/gpu-tests.log"

timeout 345 python3 benchmarks/train_throughput.py --time-budget 340 --trl-reserve 125 --side-timeout 150 \
    --summary "$OUT/throughput.json" \
    --ours-variant=--no-compile \
    "--ours-variant=--compile --no-gradient-checkpointing --micro-batch-tokens 131072" \
    --ours-variant=--compile \
    "--ours-variant=--liger --no-gradient-checkpointing --micro-batch-tokens 16384" \
    "--ours-variant=--compile --no-gradient-checkpointing --micro-batch-tokens 32768" \
    "$@" 2>&1 | tee "$OUT/throughput.log"

timeout 50 python3 benchmarks/profile_trainer.py --compile --no-gradient-checkpointing --micro-batch-tokens 32768 \
    --steps 2 "$@" 2>&1 | tee "$OUT/profile.log"
