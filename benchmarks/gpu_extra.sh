#!/usr/bin/env bash
# Third call: BERT on the GPU machine's host pinned to 2 cores, and GPU details (bare forward, amax spread).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ../../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
python3 benchmarks/gpu.py --extra --models resnet50,bert-base --work /tmp/bench --out $OUT/gpu-extra.json
taskset -c 0,1 python3 benchmarks/gpu.py --side cpu --threads 2 --label gpu-host-2-cores --work /tmp/bench \
  --note "the GPU machine's host CPU, the process pinned to 2 cores (taskset -c 0,1), otherwise idle" \
  --models bert-base --skip cli,eval --out $OUT/cpu2-bert.json
