"""ONNX helpers shared by every stage: safe loading, hashing, inputs, constants, normalization."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.core.oserrors import check_regular_input

MIN_OPSET = 13  # per-channel DequantizeLinear (axis) needs opset 13
MAX_PROTOBUF = 2**31 - 1


def _onnx():
    return require("onnx")


def _refuse_program(path: Path) -> None:
    """A torch.export program (.pt2) where an ONNX model is read: only calibrate exports one; say which file to pass."""
    if path.suffix.lower() == ".pt2":
        raise QuantError(f"'{path}' is a torch.export program: only 'quant calibrate' reads one (it exports it to "
                         "ONNX and writes model.fp32.onnx next to model.int8.onnx)",
                         hint="pass the model.fp32.onnx that quant calibrate wrote into its output folder")


def load_model(path: str | Path):
    """Load an ONNX model, refusing external data that points outside the model's folder."""
    onnx = _onnx()
    path = Path(path)
    if not path.exists():
        raise QuantError(f"model file '{path}' does not exist", hint="pass the path of an FP32 ONNX model")
    if path.is_dir():
        raise QuantError(f"model path '{path}' is a folder, not an ONNX file", hint="pass the .onnx file itself")
    check_regular_input(path, "model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning, ValueError ... on garbage
        _refuse_program(path)
        raise QuantError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {exc})".rstrip(),
                         hint="pass an .onnx file exported by torch.onnx.export or another ONNX exporter") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        _refuse_program(path)
        raise QuantError(f"'{path}' is not an ONNX model: it has no graph nodes",
                         hint="pass an .onnx file exported by torch.onnx.export or another ONNX exporter")
    _check_utf8_names(model, path)
    base = path.resolve().parent
    for tensor in _external_tensors(model):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if "\0" in location:
            shown = location.replace("\0", "\\0")
            raise QuantError(f"'{path}' refers to external data '{shown}', a path with a NUL byte; refused",
                             hint="save the model again with a valid external data location")
        try:
            target = Path(os.path.realpath(base / location))
        except OSError as exc:
            raise QuantError(f"cannot resolve the external data location '{location}' of '{path}': {exc.strerror}",
                             hint="keep external data files next to the model (onnx.save(..., location='x.data'))"
                             ) from None
        if os.path.isabs(location) or base not in target.parents:
            raise QuantError(f"'{path}' refers to external data '{location}' outside the model's folder; refused",
                             hint="keep external data files next to the model (onnx.save(..., location='x.data'))")
        if not target.exists():
            raise QuantError(f"external data file '{location}' of '{path}' is missing",
                             hint="copy the model together with its external data files")
        if not target.is_file():
            raise QuantError(f"external data '{location}' of '{path}' is not a regular file",
                             hint="copy the model together with its external data files")
    if any(True for _ in _external_tensors(model)):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:  # (the last: not a regular file)
            raise QuantError(f"cannot read the external data of '{path}': {exc}",
                             hint="copy the model together with its complete external data files") from None
    if model.ByteSize() < MAX_PROTOBUF:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx.checker.ValidationError and friends
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantError(f"'{path}' is not a valid ONNX model: {first}",
                             hint="re-export the model, or check it with onnx.checker.check_model") from None
    return model


def _check_utf8_names(model, path: Path) -> None:
    """ONNX names are UTF-8 strings; protobuf hands out invalid ones as bytes, which no output format can hold."""
    graph = model.graph
    named = [("node", n.name) for n in graph.node]
    named += [("tensor", t) for n in graph.node for t in list(n.input) + list(n.output)]
    named += [("tensor", v.name) for v in list(graph.input) + list(graph.output) + list(graph.value_info)]
    named += [("initializer", i.name) for i in graph.initializer]
    for kind, name in named:
        if isinstance(name, bytes):
            raise QuantError(f"'{path}' has a {kind} name that is not valid UTF-8: {name!r}",
                             hint="rename it in the model: ONNX names are UTF-8 strings")


def _external_tensors(model):
    onnx = _onnx()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def external_data_digest(path: str | Path) -> str | None:
    """sha256 over the external data files an ONNX file refers to (their names and contents), None when it has none.

    ``file_hash`` of the .onnx file alone does not change when ``w.bin`` beside it is replaced by other weights."""
    path = Path(path)
    proto = _onnx().load(str(path), load_external_data=False)
    locations = sorted({next((e.value for e in t.external_data if e.key == "location"), "")
                        for t in _external_tensors(proto)})
    if not locations:
        return None
    digest = hashlib.sha256()
    for location in locations:
        digest.update(f"{location}\0{file_hash(path.parent / location)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(_onnx().helper.tensor_dtype_to_np_dtype(elem_type))


def input_specs(model) -> list:
    """The model's real inputs (initializers listed as inputs excluded) as InputSpecs."""
    from quant.datasets.base import InputSpec  # a plain dataclass, no heavy imports

    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            what = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional",
                    "sparse_tensor_type": "a sparse tensor"}.get(kind, "not a tensor")
            raise QuantError(f"model input '{value.name}' is {what}, not a tensor: quant feeds and calibrates tensor "
                             "inputs only", hint="export the model with tensor inputs (e.g. one input per sequence item)")
        tensor_type = value.type.tensor_type
        try:
            dtype = np_dtype(tensor_type.elem_type)
        except (KeyError, TypeError, ValueError):
            raise QuantError(f"model input '{value.name}' has an element type quant cannot feed "
                             f"(ONNX type {tensor_type.elem_type})", hint="export the model with numeric tensor inputs") from None
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tensor_type.shape.dim)
        specs.append(InputSpec(value.name, dtype, shape))
    return specs


def opset_version(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_opset(model, opset: int, why: str):
    """``model`` converted to ``opset`` by ONNX's version converter; a QuantError saying ``why`` when it cannot."""
    onnx = _onnx()
    try:
        return onnx.version_converter.convert_version(model, opset)
    except Exception as exc:
        raise QuantError(f"cannot upgrade the model from opset {opset_version(model)} to {opset} ({why}): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         hint=f"re-export the model with opset >= {opset}") from None


def normalize(model):
    """A copy with Constant nodes turned into initializers and the opset raised to >= 13."""
    onnx = _onnx()
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    model = model_copy
    if opset_version(model) < MIN_OPSET:
        model = upgrade_opset(model, MIN_OPSET, "needed for per-channel Q/DQ")
    _raise_ir_version(model)
    graph = model.graph
    _drop_initializer_inputs(graph)
    kept = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    _fold_constant_views(graph)
    seen: set[str] = set()
    for index, node in enumerate(graph.node):  # every node gets a unique name, so reports can name it
        if not node.name or node.name in seen:
            base = node.name or f"{node.op_type}_{index}"
            name, suffix = base, 1
            while name in seen:
                name, suffix = f"{base}_{suffix}", suffix + 1
            node.name = name
        seen.add(node.name)
    return model


CONSTANT_VIEWS = ("Identity", "Transpose")


def _fold_constant_views(graph) -> None:
    """Identity and Transpose of an initializer become initializers, in place.

    Exporters without constant folding write ``Conv(x, Identity(W))`` and ``MatMul(x, Transpose(W))`` (a
    torch Linear): folded, the weight is a constant, quantized per output channel with max |w|, instead of a
    layer left in float or a weight calibrated as an activation (per tensor, clipped by entropy). An
    initializer that is also a graph input (a value a user may override) or stored externally is left as it is.
    """
    onnx = _onnx()
    inputs, outputs = {v.name for v in graph.input}, {v.name for v in graph.output}
    constants = {init.name: init for init in graph.initializer
                 if init.name not in inputs and init.data_location != onnx.TensorProto.EXTERNAL}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    has_subgraphs = any(a.type in (a.GRAPH, a.GRAPHS) for node in graph.node for a in node.attribute)
    kept, unused = [], set()
    for node in graph.node:
        source = node.input[0] if node.input else ""
        if (node.op_type not in CONSTANT_VIEWS or node.domain not in ("", "ai.onnx") or source not in constants
                or len(node.output) != 1 or node.output[0] in outputs):
            kept.append(node)
            continue
        array = onnx.numpy_helper.to_array(constants[source])
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            array = np.ascontiguousarray(np.transpose(array, perm or None))
        folded = onnx.numpy_helper.from_array(array, node.output[0])
        graph.initializer.append(folded)
        constants[folded.name] = folded
        readers[source] -= 1
        if not readers[source] and source not in outputs and not has_subgraphs:
            unused.add(source)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    if unused:
        remaining = [init for init in graph.initializer if init.name not in unused]
        del graph.initializer[:]
        graph.initializer.extend(remaining)


def _raise_ir_version(model) -> None:
    """IR version at least what the opsets need (the version converter keeps the old one).

    Below IR 4 every initializer had to be a graph input; normalize drops those inputs (see
    :func:`_drop_initializer_inputs`), so the constants stay constants.
    """
    onnx = _onnx()
    try:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except TypeError:  # older onnx without ignore_unknown
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    if model.ir_version >= needed:
        return
    model.ir_version = needed


def _drop_initializer_inputs(graph) -> None:
    """Initializers are not listed as graph inputs any more, in place, whatever the IR version.

    Old exporters (IR < 4 had to; torch's keep_initializers_as_inputs) list every weight as an input too. quant
    never feeds them and quantizes them as constants, so the INT8 model cannot honour an override anyway; kept as
    inputs, each float weight stayed in model.int8.onnx beside its INT8 copy (a file larger than the FP32 one).
    """
    names = {init.name for init in graph.initializer}
    kept = [value for value in graph.input if value.name not in names]
    if len(kept) != len(graph.input):
        del graph.input[:]
        graph.input.extend(kept)


def initializers(model) -> dict[str, object]:
    return {init.name: init for init in model.graph.initializer}


def to_array(tensor) -> np.ndarray:
    return _onnx().numpy_helper.to_array(tensor)


def with_outputs(model, names: list[str]):
    """A copy of the model that also returns the given intermediate tensors (float, shape left free)."""
    onnx = _onnx()
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in list(augmented.graph.value_info) + list(augmented.graph.input)}
    if any(name not in types and name not in existing for name in names):  # e.g. a float16 model: infer, not guess
        types = _inferred_types(augmented) | types
    for name in names:
        if name not in existing:
            elem = types.get(name, onnx.TensorProto.FLOAT)
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return augmented


def _inferred_types(model) -> dict[str, int]:
    """Element types from ONNX type inference ({} when it fails, e.g. on a model over 2 GB)."""
    onnx = _onnx()
    try:
        graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # unknown ops, protobuf limits: keep the declared types only
        return {}
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.output)}
    return {name: elem for name, elem in types.items() if elem}


def try_serialize(model) -> bytes | None:
    """The model's bytes, or None when it does not fit in one protobuf (2 GB).

    One serialization instead of ByteSize() followed by SerializeToString(): ByteSize costs as much.
    """
    try:
        data = model.SerializeToString()
    except ValueError:  # protobuf refuses messages over 2 GB
        return None
    return data if len(data) < MAX_PROTOBUF else None


def serialize_for_runtime(model, workdir: Path | None = None) -> "bytes | str":
    """Bytes of the model, or (over 2 GB) a path to a copy saved with external data in ``workdir``."""
    onnx = _onnx()
    data = try_serialize(model)
    if data is not None:
        return data
    if workdir is None:
        raise QuantError("the model is larger than 2 GB and no working folder was given to spill it to")
    path = Path(workdir) / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data")
    return str(path)
