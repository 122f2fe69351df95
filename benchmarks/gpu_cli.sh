#!/usr/bin/env bash
# Fourth call: `quant calibrate` with ONNX Runtime held to 2 threads on 2 pinned cores, and the GPU CLI's phases.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ../../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50,bert-base --work /tmp/bench --out $OUT/gpu-cli.json
taskset -c 0,1 python3 benchmarks/gpu.py --cli-only --side cpu --threads 2 --label gpu-host-2-cores --work /tmp/bench \
  --note "the GPU machine's host CPU, the process pinned to 2 cores (taskset -c 0,1) and ORT to 2 threads" \
  --models resnet50,bert-base --out $OUT/cpu2-cli.json
