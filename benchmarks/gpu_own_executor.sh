#!/usr/bin/env bash
# Sixth call, after onnx2torch was replaced by quant's own executor: nothing is carried but this tree (no wheel).
# The backend's tests on CUDA, executor-vs-ORT diffs (plus a Hugging Face BERT-base), then the full GPU side and the
# cold CLI phases of benchmarks/gpu.py. The CPU sides are those already in benchmarks/results/gpu.json.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv
python3 -c "import importlib.util as u, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnx2torch importable:', u.find_spec('onnx2torch') is not None)"
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/integration/test_torch_backend.py tests/integration/test_torch_ops.py 2>&1 | tail -6
timeout 120 python3 benchmarks/gpu_executor_check.py --device cuda --work /tmp/bench --out $OUT/executor-check.json
python3 benchmarks/gpu.py --side gpu --label gpu --out $OUT/gpu-side.json --work /tmp/bench
python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50,bert-base --work /tmp/bench --out $OUT/gpu-cli.json
