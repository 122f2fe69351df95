"""Float types of the tensors that get Q/DQ, and the opset / IR version a valid Q/DQ model needs for them.

ONNX ties QuantizeLinear's scale to its input's type and DequantizeLinear's output to its scale's type:
before opset 19 both are float32 only, from opset 19 they may be float16 or bfloat16. So a float16 tensor
gets a float16 scale and the model is raised to opset 19 (IR version 9), as Model Optimizer does for its
float16 output. Statistics (histograms, amax) stay float32 whatever the model's type.

bfloat16 is refused: ONNX Runtime's CPU provider, which quant calibrates and validates with, has no
bfloat16 kernel for QuantizeLinear, Conv, MatMul, Add, Relu or Sigmoid (probed with onnxruntime 1.32), so a
bfloat16 Q/DQ model could be neither calibrated nor checked here.
"""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require

FLOAT, FLOAT16, DOUBLE, BFLOAT16 = 1, 10, 11, 16
TYPE_NAMES = {FLOAT: "float32", FLOAT16: "float16", DOUBLE: "float64", BFLOAT16: "bfloat16"}
FLOAT16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from opset 19
BFLOAT16_HINT = ("calibrate the float32 model (quant's Q/DQ model is what TensorRT builds; the layers left "
                 "in float can run in 16 bits there, see --high-precision fp16)")


def elem_types(model) -> dict[str, int]:
    """Element type of every tensor whose type is declared or can be inferred (ONNX type inference)."""
    onnx = require("onnx")
    types: dict[str, int] = {}
    graph = model.graph
    inferred = None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # over 2 GB, or an op without a type-inference function: fall back to what is declared
        inferred = None
    for g in ([inferred] if inferred is not None else []) + [graph]:
        for value in list(g.value_info) + list(g.input) + list(g.output):
            elem = value.type.tensor_type.elem_type
            if elem:
                types[value.name] = elem
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def quantized_types(model, plan) -> dict[str, int]:
    """tensor -> element type for every tensor the plan quantizes (activations, residuals, weights)."""
    types = elem_types(model)
    default = model_float_type(model, types)
    tensors = list(plan.consumers) + list(plan.weights)
    return {t: types.get(t, default) for t in tensors}


def model_float_type(model, types: dict[str, int] | None = None) -> int:
    """The float type of the model's first float graph input (or initializer); float32 when it has none.

    Graph inputs and initializers declare their types, so no type inference runs here (on a 100 MB model each
    inference serializes the whole graph: ~0.6 s, and a calibrate run asked five times)."""
    if types is None:
        types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
        types.update({init.name: init.data_type for init in model.graph.initializer})
    for value in list(model.graph.input) + list(model.graph.initializer):
        elem = types.get(value.name)
        if elem in TYPE_NAMES:
            return elem
    return FLOAT


def check_quantizable_types(types: dict[str, int]) -> None:
    """Refuse tensors QuantizeLinear cannot take here (bfloat16: no ORT CPU kernels; float64: not in ONNX)."""
    for elem, why, hint in ((BFLOAT16, "ONNX Runtime's CPU provider has no bfloat16 kernels for QuantizeLinear, Conv "
                                       "or MatMul, so a bfloat16 model can be neither calibrated nor validated here",
                             BFLOAT16_HINT),
                            (DOUBLE, "ONNX's QuantizeLinear takes no float64 input",
                             "export the model in float32 or float16")):
        bad = sorted(t for t, e in types.items() if e == elem)
        if bad:
            shown = ", ".join(f"'{t}'" for t in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise QuantError(f"the model's quantized tensors {shown} are {TYPE_NAMES[elem]}: {why}", hint=hint)


def np_float(elem: int):
    return {FLOAT: np.float32, FLOAT16: np.float16}[elem]


def scale_array(scale: np.ndarray, elem: int) -> np.ndarray:
    """A float32 scale in the tensor's own type (float16: rounded to nearest, never 0 or infinite).

    Below float16's normal range (a scale under 2**-14, an amax under about 0.0078) its steps are coarse: a scale
    rounded down there by more than 1/255 would clip the tensor's largest values (a weight's max |w| by up to 10%),
    so such a scale takes the next float16 up instead (then every value stays within half a step).
    """
    scale = np.asarray(scale, dtype=np.float32)
    if elem != FLOAT16:
        return scale
    info = np.finfo(np.float16)
    rounded = np.clip(scale, float(info.smallest_subnormal), float(info.max)).astype(np.float16)
    clips = rounded.astype(np.float64) * 127.5 < scale.astype(np.float64) * 127  # amax / scale past 127.5
    return np.where(clips, np.nextafter(rounded, np.float16(np.inf)), rounded).astype(np.float16)


def required_opset(types: dict[str, int]) -> int:
    return FLOAT16_QDQ_OPSET if FLOAT16 in types.values() else 13


def raise_versions(model, opset: int):
    """``model`` at opset >= ``opset`` with the IR version that opset needs (the model itself when it has them)."""
    from quant.core.onnx_model import opset_version, upgrade_opset

    if opset_version(model) < opset:
        model = upgrade_opset(model, opset, "float16 Q/DQ needs it")
    fix_ir_version(model)
    return model


def fix_ir_version(model) -> None:
    """Raise ``model.ir_version`` (in place) to the lowest one its opsets allow, never lowering it."""
    onnx = require("onnx")
    try:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except TypeError:  # older onnx without ignore_unknown
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    if model.ir_version < needed:
        model.ir_version = needed
