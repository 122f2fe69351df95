#!/usr/bin/env bash
# Fifth call: the final code's torch tests on CUDA, and a cold ResNet-50 CLI run with torchvision no longer imported.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ../../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
python3 -m pytest -q -p no:cacheprovider tests/integration/test_torch_backend.py tests/integration/test_bad_inputs_gpu.py 2>&1 | tail -4
python3 benchmarks/gpu.py --cli-only --side gpu --label gpu --models resnet50 --work /tmp/bench --out $OUT/gpu-cli-final.json
