"""Why Model Optimizer max scores 83.2 on PP-OCRv4 det where quant minmax scores 70.8: placement experiments.

    python benchmarks/suite_worker.py modelopt-max FP32.onnx CAL.npz MO.onnx   # in the suite's modelopt venv
    python benchmarks/modelopt_placement.py MO.onnx

FP32.onnx is the model as published (rapidocr_onnxruntime's ch_PP-OCRv4_det_infer.onnx), CAL.npz the suite's
benchmarks/.cache/suite/ppocr-det/calibration.npz. Scores Model Optimizer's own model as written, and with its
activation Q/DQ pairs bypassed where they feed Add/Mul/GlobalAveragePool/Resize (all together, then one op type
at a time), with the suite's metric on the suite's held-out pages. Not a test.
"""
import sys, json, collections, numpy as np, onnx
from onnx import helper, numpy_helper
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent)); sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import suite, suite_models, quant
from quant.backends.onnxruntime import OrtRunner
from quant.core.onnx_model import with_outputs
task = suite_models.TASKS['ppocr-det'](suite.CACHE/'suite'/'models')
fp32 = suite.CACHE/'suite'/'ppocr-det'/'fp32.onnx'
fp32_out = suite.outputs_of(OrtRunner(fp32), task.heldout)
def score(model):
    return round(task.score(suite.outputs_of(OrtRunner(model, mode='emulate'), task.heldout), None, fp32_out)['map_iou'], 2)
mo = onnx.load(sys.argv[1])
prod = {o: n for n in mo.graph.node for o in n.output}
cons = collections.defaultdict(list)
for n in mo.graph.node:
    for i, t in enumerate(n.input): cons[t].append((n, i))
# which op types read a DQ of an activation (not a weight)
reads = collections.Counter()
for n in mo.graph.node:
    if n.op_type != 'DequantizeLinear': continue
    q = prod.get(n.input[0])
    if q is None or q.op_type != 'QuantizeLinear': continue  # weight DQ (int8 initializer)
    for c, _ in cons[n.output[0]]: reads[c.op_type] += 1
print('modelopt-max: activation DQ outputs read by', dict(reads), flush=True)
def strip(model, op_types):
    """Bypass activation Q/DQ pairs where they feed ops of op_types (the consumer reads the float tensor)."""
    m = onnx.ModelProto(); m.CopyFrom(model)
    prod = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type not in op_types: continue
        for i, t in enumerate(n.input):
            dq = prod.get(t)
            if dq is not None and dq.op_type == 'DequantizeLinear':
                q = prod.get(dq.input[0])
                if q is not None and q.op_type == 'QuantizeLinear':
                    n.input[i] = q.input[0]
    return m
print('modelopt-max as written', score(mo), flush=True)
others = sorted(set(reads) - {'Conv', 'ConvTranspose', 'MatMul', 'Gemm'})
print('modelopt-max without Q/DQ on', others, score(strip(mo, set(others))), flush=True)
for op in others:
    print('modelopt-max without Q/DQ on', op, score(strip(mo, {op})), flush=True)
