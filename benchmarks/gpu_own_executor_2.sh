#!/usr/bin/env bash
# Seventh call: a Hugging Face BERT-base through the executor (vs ORT FP32 and ORT emulate), ResNet-50's cold CLI
# measured again (two more pairs of cold runs: the sixth call's 12.4/13.4 s vs 10.2 s before differed mostly in the
# save phase, which the executor does not touch), and the bare forward pass.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
timeout 150 python3 benchmarks/gpu_executor_check.py --device cuda --models hf-bert-base --work /tmp/bench --out $OUT/executor-check-hf.json
for run in 2 3; do
  python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50 --work /tmp/bench --out $OUT/gpu-cli-$run.json
done
timeout 120 python3 benchmarks/gpu.py --extra --models resnet50 --work /tmp/bench --out $OUT/gpu-extra.json
