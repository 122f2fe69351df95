#!/usr/bin/env bash
# The benchmark call on the GPU machine: GPU side (both models), then ONNX Runtime pinned to 2 of its cores.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ../../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,utilization.gpu --format=csv
python3 benchmarks/gpu.py --side gpu --label gpu --out $OUT/gpu-side.json --work /tmp/bench ${GPU_MODELS:+--models $GPU_MODELS}
taskset -c 0,1 python3 benchmarks/gpu.py --side cpu --threads 2 --label gpu-host-2-cores --work /tmp/bench \
  --note "the GPU machine's host CPU, the process pinned to 2 cores (taskset -c 0,1), otherwise idle" \
  --models ${CPU_MODELS:-resnet50} --out $OUT/cpu2.json
