"""--high-precision fp16: the layers left unquantized in a Q/DQ model run in float16.

What Model Optimizer's ``high_precision_dtype=fp16`` does to its output, and with the same I/O rule as its
default (no ``--direct_io_types``): the model's float32 inputs and outputs stay float32, with a Cast to
float16 after each input and a Cast back to float32 before each output, so the deployed model keeps the
interface of the FP32 model. Inside, every float32 tensor becomes float16: initializers (clipped to float16's
range), Q/DQ scales (so the model is raised to opset 19), Cast targets, ConstantOfShape values. An input slot
that the ONNX schema types float32 only (e.g. Resize's ``scales``) keeps float32 (a Cast is put in front
where the tensor feeding it became float16). Models with subgraphs (If, Loop, Scan) are refused.
"""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.qdq.float_types import FLOAT, FLOAT16, FLOAT16_QDQ_OPSET, elem_types, raise_versions

FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_float16(model):
    """A copy of ``model`` (a Q/DQ model) whose float32 computation runs in float16, I/O types kept."""
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    from quant.core.onnx_model import opset_version
    from quant.qdq.insert import name_allocator

    control = sorted({n.op_type for n in model.graph.node if any(a.type in (a.GRAPH, a.GRAPHS) for a in n.attribute)})
    if control:
        raise QuantError(f"--high-precision fp16 does not convert models with subgraphs ({', '.join(control)})",
                         hint="use --high-precision fp32 (the default) for this model")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out = raise_versions(out, FLOAT16_QDQ_OPSET)
    graph = out.graph
    types = elem_types(out)
    is_float = {name for name, elem in types.items() if elem == FLOAT}
    fresh = name_allocator(graph)
    opset = opset_version(out)

    # Input slots that must stay float32, by the op's schema.
    keep32: set[tuple[int, int]] = set()  # (node index, input index)
    for n_index, node in enumerate(graph.node):
        for i_index, tensor in enumerate(node.input):
            if tensor in is_float and not _slot_takes_float16(node, i_index, opset):
                keep32.add((n_index, i_index))
    initializers = {init.name: init for init in graph.initializer}
    read_as16 = {t for n_index, node in enumerate(graph.node) for i_index, t in enumerate(node.input)
                 if (n_index, i_index) not in keep32}
    read_as32 = {graph.node[n].input[i] for n, i in keep32}

    # Initializers: float16 copies where read as float16, the float32 original kept where a slot needs it.
    converted: dict[str, str] = {}
    for name, init in list(initializers.items()):
        if init.data_type != FLOAT or name not in read_as16:
            continue
        values = np.clip(numpy_helper.to_array(init), -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
        if name in read_as32:
            new = fresh(f"{name}_fp16")
            graph.initializer.append(numpy_helper.from_array(values, new))
            converted[name] = new
        else:
            init.CopyFrom(numpy_helper.from_array(values, name))

    inputs = {v.name for v in graph.input if v.type.tensor_type.elem_type == FLOAT and v.name not in initializers}
    produced = {t for node in graph.node for t in node.output}
    outputs = {v.name for v in graph.output if v.type.tensor_type.elem_type == FLOAT and v.name in produced}
    renamed_outputs = {name: fresh(f"{name}_fp16") for name in outputs}
    input_casts = {name: fresh(f"{name}_fp16") for name in inputs}
    new_nodes = [helper.make_node("Cast", [name], [cast], name=fresh(f"{name}_Cast_fp16"), to=FLOAT16)
                 for name, cast in input_casts.items()]
    cast32: dict[str, str] = {}
    for n_index, node in enumerate(graph.node):
        for i_index, tensor in enumerate(node.input):
            fp16_name = input_casts.get(tensor) or renamed_outputs.get(tensor) or converted.get(tensor) or tensor
            if (n_index, i_index) in keep32:
                if tensor in initializers:
                    continue  # the float32 initializer itself
                if fp16_name not in cast32:
                    cast32[fp16_name] = fresh(f"{tensor}_fp32")
                    new_nodes.append(helper.make_node("Cast", [fp16_name], [cast32[fp16_name]],
                                                      name=fresh(f"{tensor}_Cast_fp32"), to=FLOAT))
                node.input[i_index] = cast32[fp16_name]
            else:
                node.input[i_index] = fp16_name
        for o_index, tensor in enumerate(node.output):
            if tensor in renamed_outputs:
                node.output[o_index] = renamed_outputs[tensor]
        _retarget(node, helper, numpy_helper)
        new_nodes.append(node)
    for name, fp16_name in renamed_outputs.items():
        new_nodes.append(helper.make_node("Cast", [fp16_name], [name], name=fresh(f"{name}_Cast_fp32"), to=FLOAT))
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]  # float32 annotations are stale; types are inferred where needed
    return out


def _retarget(node, helper, numpy_helper) -> None:
    """Ops that create float32 tensors from attributes create float16 ones instead."""
    for attribute in node.attribute:
        if node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
            attribute.i = FLOAT16
        elif node.op_type == "ConstantOfShape" and attribute.name == "value" and attribute.t.data_type == FLOAT:
            values = numpy_helper.to_array(attribute.t).astype(np.float16)
            attribute.t.CopyFrom(numpy_helper.from_array(values, attribute.t.name))
        elif attribute.name == "dtype" and attribute.type == attribute.INT and attribute.i == FLOAT:
            attribute.i = FLOAT16  # RandomNormal, EyeLike, ...


def _slot_takes_float16(node, index: int, opset: int) -> bool:
    """Whether input ``index`` of ``node`` may be float16 by its ONNX schema (unknown ops: assume yes)."""
    onnx = require("onnx")
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:  # custom domain or unknown op: leave the decision to the runtime
        return True
    formal = schema.inputs
    if not formal:
        return True
    param = formal[min(index, len(formal) - 1)]
    constraints = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    allowed = constraints.get(param.type_str, [param.type_str])
    return "tensor(float16)" in allowed
