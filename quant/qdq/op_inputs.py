"""Q/DQ on the inputs of further op types (Add, Mul, GlobalAveragePool, Resize, ...), as Model Optimizer places them.

quant's default placement quantizes the inputs of weighted ops only (plus the residual Add input TensorRT fuses).
Model Optimizer also puts a Q/DQ pair on every float activation input of Add, Mul, GlobalAveragePool, Resize and
similar ops; TensorRT then runs those ops in INT8 too (it fuses the pairs). On PP-OCRv4 det this placement is
what separates Model Optimizer max (83.2 map IoU) from quant minmax (70.8) with the same activation ranges
(benchmarks/RESULTS.md). ``--quantize-op-types`` adds those pairs to the plan: the tensors are histogrammed in the
same pass and get their range from the same method.
"""
from __future__ import annotations

from typing import Sequence

from quant.core.onnx_model import initializers
from quant.qdq.placement import QuantPlan, _float_tensors

DATA_INPUTS = {"Resize": (0,), "Upsample": (0,), "Pad": (0,), "Slice": (0,), "Reshape": (0,), "Expand": (0,),
               "Tile": (0,), "Gather": (0,), "Transpose": (0,), "Squeeze": (0,), "Unsqueeze": (0,), "Split": (0,),
               "ReduceMean": (0,), "Clip": (0,)}  # ops whose other inputs are shapes, indices or bounds
MODEL_OPTIMIZER_OP_TYPES = ("Add", "Mul", "GlobalAveragePool", "Resize")


WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _epilogue_tensors(model, constants) -> set[str]:
    """Outputs of a Mul/Add with a constant operand applied to a weighted op's output (a BatchNormalization
    exported as Mul + Add), directly or through such a chain: TensorRT fuses them into the layer, and Model
    Optimizer puts no Q/DQ there (quantizing the conv output before a per-channel scale would lose channels)."""
    layer_outputs = {n.output[0] for n in model.graph.node if n.op_type in WEIGHTED}
    epilogue: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("Mul", "Add", "Sub", "Div") and len(node.input) == 2:
            data = [t for t in node.input if t not in constants]
            if len(data) == 1 and (data[0] in layer_outputs or data[0] in epilogue):
                epilogue.add(node.output[0])
    return epilogue


def add_op_inputs(model, plan: QuantPlan, op_types: Sequence[str]) -> int:
    """Give every float, non-constant data input of the nodes of ``op_types`` a Q/DQ pair in ``plan``.

    A Mul/Add that applies a constant scale or shift to a weighted op's output (an exported BatchNormalization)
    gets none: TensorRT fuses it into that layer. Returns how many node inputs were added.
    """
    if not op_types:
        return 0
    wanted = set(op_types)
    constants = initializers(model)
    floats = _float_tensors(model)
    epilogue = _epilogue_tensors(model, constants)
    added = 0
    for node in model.graph.node:
        if node.op_type not in wanted or node.domain not in ("", "ai.onnx"):
            continue
        if node.output[0] in epilogue:  # a scale or shift TensorRT fuses into the layer before it: no Q/DQ between
            continue
        indices = DATA_INPUTS.get(node.op_type, range(len(node.input)))
        for index in indices:
            if index >= len(node.input):
                continue
            tensor = node.input[index]
            if not tensor or tensor in constants or tensor not in floats:
                continue
            consumers = plan.consumers.setdefault(tensor, [])
            if (node.name, index) not in consumers:
                consumers.append((node.name, index))
                added += 1
    return added
