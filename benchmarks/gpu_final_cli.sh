#!/usr/bin/env bash
# Eighth call: the cold `quant calibrate` CLI (4 methods, 1,024 samples) on both sides with the same code, after the
# type-inference cuts (model_float_type reads declared types; no ORT extra-output model on the torch path):
# GPU side once per model and ResNet-50 twice (plus its phases), then the CPU side pinned to 2 cores with ORT at 2 threads.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
timeout 250 python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50,bert-base --work /tmp/bench \
  --out $OUT/gpu-cli-1.json
timeout 60 python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50 --work /tmp/bench \
  --out $OUT/gpu-cli-2.json
timeout 100 taskset -c 0,1 python3 benchmarks/gpu.py --cli-only --side cpu --threads 2 --label gpu-host-2-cores \
  --work /tmp/bench --models resnet50 --out $OUT/cpu2-cli-resnet50.json \
  --note "the GPU machine's host CPU, the process pinned to 2 cores (taskset -c 0,1) and ORT to 2 threads"
timeout 200 taskset -c 0,1 python3 benchmarks/gpu.py --cli-only --side cpu --threads 2 --label gpu-host-2-cores \
  --work /tmp/bench --models bert-base --out $OUT/cpu2-cli-bert-base.json \
  --note "the GPU machine's host CPU, the process pinned to 2 cores (taskset -c 0,1) and ORT to 2 threads"
