#!/usr/bin/env bash
# 2026-12-01, fifth session: the torch tests on CUDA at this stop's final tree (after the stranger5a/5b merges), and the
# channel rule (a 1 -> 10 conv kept in float, 10 -> 16 quantized) with --device cuda against --device ort. Nothing carried.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, onnx, onnxruntime; print(torch.__version__, torch.cuda.get_device_name(0), onnx.__version__, onnxruntime.__version__)"
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/integration/test_torch_backend.py \
  tests/integration/test_torch_float16.py tests/integration/test_torch_ops.py tests/integration/test_torch_program.py \
  tests/integration/test_bad_inputs_gpu.py tests/unit/test_placement_alignment.py 2>&1 | tail -4
mkdir -p /tmp/ch && python3 - <<'PY'
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
w1 = rng.standard_normal((10, 1, 5, 5)).astype(np.float32) * 0.3
w2 = rng.standard_normal((16, 10, 3, 3)).astype(np.float32) * 0.2
nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="narrow", pads=[2, 2, 2, 2]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["y"], name="wide", pads=[1, 1, 1, 1])]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 16, 16])],
                      [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 10  # onnxruntime 1.30 (the H200 machine) reads IR <= 13; onnx 1.23 writes 14
onnx.save(model, "/tmp/ch/m.onnx")
np.savez("/tmp/ch/cal.npz", x=rng.standard_normal((128, 1, 16, 16)).astype(np.float32))
np.savez("/tmp/ch/held.npz", x=rng.standard_normal((32, 1, 16, 16)).astype(np.float32))
PY
for d in cuda ort; do
  python3 -m quant calibrate /tmp/ch/m.onnx --data /tmp/ch/cal.npz --method entropy,percentile,mse --device $d \
    --output /tmp/ch/$d > /tmp/ch/$d.log 2>&1; echo "calibrate --device $d: exit $?"; grep -E '^(collection|quantized)' /tmp/ch/$d.log
done
python3 - <<'PY'
import json
for m in ("entropy", "percentile", "mse"):
    a, b = (json.load(open(f"/tmp/ch/{d}/{m}/quant.json")) for d in ("cuda", "ort"))
    fl = lambda q: sorted(u["node"] for u in q["unquantized"] if u["op_type"] == "Conv")
    print(m, "float convs cuda:", fl(a), "ort:", fl(b), "| amax cuda == ort:",
          {t: v["amax"] for t, v in a["activations"].items()} == {t: v["amax"] for t, v in b["activations"].items()})
PY
for d in cuda ort; do echo "== eval entropy --device $d"
  python3 -m quant eval /tmp/ch/m.onnx /tmp/ch/$d/entropy/model.int8.onnx --data /tmp/ch/held.npz --device $d 2>&1 | tail -5
done
