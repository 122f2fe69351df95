"""Typed, frozen, validated configuration: validated when built, before any expensive work."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from quant.core.errors import QuantError
from quant.core.histogram import DEFAULT_BINS

CONFIG_VERSION = 1
METHODS = ("entropy", "minmax", "percentile", "mse", "auto")  # auto: per tensor, the best of the others (data)
METHOD_ALIASES = {"max": "minmax", "kl": "entropy"}  # Model Optimizer's / TensorRT's names
WEIGHT_STORAGE = ("int8", "float")  # int8: INT8 initializer + DequantizeLinear; float: float weight + Q + DQ
HIGH_PRECISION = ("fp32", "fp16")  # the type of the layers left unquantized in model.int8.onnx
WEIGHT_METHODS = ("minmax", "percentile", "mse")
TARGETS = ("tensorrt", "ort-cpu", "all")
REDUCE_RANGE = ("auto", "on", "off")
TUPLE_FIELDS = ("exclude", "exclude_op_types", "exclude_patterns", "include", "quantize_op_types")
MAX_BINS = 2**16  # memory is tensors x bins x 8 bytes: 1,000 tensors at 2^16 bins already hold 512 MB
MAX_SEED = 2**32 - 1

# field -> (accepted types, what to say); None is accepted where the default is None
_TYPES = {"percentile": ((int, float), "a number"), "bins": ((int,), "an integer"),
          "batch_size": ((int,), "an integer"), "memory_budget_mb": ((int, float), "a number"),
          "num_samples": ((int,), "an integer"), "seed": ((int,), "an integer"),
          "weight_method": ((str,), "a string"), "trt_version": ((str,), "a string"),
          "external_data": ((bool,), "true or false"), "target": ((str,), "a string"),
          "reduce_range": ((str,), "a string"), "version": ((int,), "an integer"),
          "weight_storage": ((str,), "a string"), "high_precision": ((str,), "a string"),
          "bias_correction": ((bool,), "true or false"), "equalize": ((bool,), "true or false"),
          "smooth": ((bool,), "true or false")}
_OPTIONAL = {"batch_size", "num_samples"}


def check_trt_version(version: str) -> str:
    """``version`` if it is MAJOR[.MINOR[.PATCH[.BUILD]]] of a TensorRT release (major 5..99), else QuantError."""
    parts = version.split(".") if isinstance(version, str) else []
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and p.isascii() and len(p) <= 2 for p in parts) \
            or not 5 <= int(parts[0]) <= 99:
        raise QuantError(f"--trt-version must be a TensorRT version like 10.3.0, got '{version}'",
                         hint="write it as MAJOR.MINOR.PATCH, e.g. --trt-version 8.6.1")
    return version


def _check_types(config) -> None:
    for name, value in ((f.name, getattr(config, f.name)) for f in fields(config)):
        if name == "methods" or name in TUPLE_FIELDS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise QuantError(f"calibration config '{name}' must be a list of strings, got {value!r:.60}")
            continue
        types, what = _TYPES[name]
        if value is None and name in _OPTIONAL:
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise QuantError(f"calibration config '{name}' must be {what}, got {value!r:.60}")


@dataclass(frozen=True)
class CalibrationConfig:
    """How to calibrate. ``methods`` all come from one collection pass."""

    methods: tuple[str, ...] = ("entropy",)
    percentile: float = 99.99
    bins: int = DEFAULT_BINS
    batch_size: int | None = None  # None: as many samples as fit memory_budget_mb of activations
    memory_budget_mb: float = 128.0
    num_samples: int | None = None
    seed: int = 0
    weight_method: str = "minmax"
    exclude: tuple[str, ...] = ()
    trt_version: str = "10.3.0"
    external_data: bool = False  # write model.int8.onnx weights to model.int8.onnx.data (automatic over 2 GB)
    target: str = "tensorrt"  # tensorrt (model.int8.onnx), ort-cpu (model.ort-cpu.int8.onnx) or all
    reduce_range: str = "auto"  # ort-cpu: 7-bit weights (auto: on x86 without VNNI)
    exclude_op_types: tuple[str, ...] = ()  # op types kept in float (e.g. "Conv")
    exclude_patterns: tuple[str, ...] = ()  # regular expressions (re.search) on node names kept in float
    include: tuple[str, ...] = ()  # nodes quantized although the heuristics would keep them in float
    weight_storage: str = "int8"
    high_precision: str = "fp32"
    bias_correction: bool = False  # FP32 biases absorb the mean output shift of quantization (second pass)
    equalize: bool = False  # cross-layer equalization of Conv -> (ReLU) -> Conv pairs, folded into FP32 weights
    quantize_op_types: tuple[str, ...] = ()  # also Q/DQ the inputs of these op types (Model Optimizer: Add,Mul,...)
    smooth: bool = False  # per-channel scaling of depthwise convolutions' inputs, folded into their weights (data)
    version: int = field(default=CONFIG_VERSION)

    def __post_init__(self) -> None:
        _check_types(self)
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        methods = tuple(METHOD_ALIASES.get(m, m) for m in methods)
        object.__setattr__(self, "methods", methods)
        for key in TUPLE_FIELDS:
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))
        self._check_selection()
        if not methods:
            raise QuantError("no calibration method given", hint=f"use --method with one or more of {', '.join(METHODS)}")
        for method in methods:
            if method not in METHODS:
                aliases = ", ".join(f"{a} = {m}" for a, m in METHOD_ALIASES.items())
                names = [m.strip() for m in str(method).split(",")]
                if len(names) > 1:  # the CLI's --method list given to the API as one string
                    raise QuantError(f"unknown calibration method '{method}'",
                                     hint=f"name one method per item: methods=({', '.join(map(repr, names))})")
                raise QuantError(f"unknown calibration method '{method}'",
                                 hint=f"choose from: {', '.join(METHODS)} (aliases: {aliases})")
        if len(set(methods)) != len(methods):
            raise QuantError(f"a method is listed twice in {','.join(methods)}", hint="list each method once")
        if self.weight_method not in WEIGHT_METHODS:
            raise QuantError(f"unknown weight method '{self.weight_method}'",
                             hint=f"choose from: {', '.join(WEIGHT_METHODS)}")
        if not 0.0 < self.percentile <= 100.0:
            raise QuantError(f"--percentile must be in (0, 100], got {self.percentile}", hint="e.g. --percentile 99.99")
        if self.bins < 256 or self.bins > MAX_BINS or self.bins & (self.bins - 1):
            raise QuantError(f"--bins must be a power of two from 256 to {MAX_BINS}, got {self.bins}",
                             hint="e.g. --bins 4096")
        if self.batch_size is not None and self.batch_size < 1:
            raise QuantError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0 < self.memory_budget_mb < float("inf"):
            raise QuantError(f"--memory-budget must be a finite number of MB > 0, got {self.memory_budget_mb}",
                             hint="e.g. --memory-budget 512")
        if not 0 <= self.seed <= MAX_SEED:
            raise QuantError(f"--seed must be an integer from 0 to {MAX_SEED}, got {self.seed}", hint="e.g. --seed 0")
        check_trt_version(self.trt_version)
        if self.num_samples is not None and self.num_samples < 1:
            raise QuantError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.target not in TARGETS:
            raise QuantError(f"unknown --target '{self.target}'", hint=f"choose from: {', '.join(TARGETS)}")
        if self.reduce_range not in REDUCE_RANGE:
            raise QuantError(f"unknown --reduce-range '{self.reduce_range}'", hint=f"choose from: {', '.join(REDUCE_RANGE)}")
        if self.weight_storage not in WEIGHT_STORAGE:
            raise QuantError(f"unknown --weight-storage '{self.weight_storage}'",
                             hint=f"choose from: {', '.join(WEIGHT_STORAGE)}")
        if self.high_precision not in HIGH_PRECISION:
            raise QuantError(f"unknown --high-precision '{self.high_precision}'",
                             hint=f"choose from: {', '.join(HIGH_PRECISION)}")
        if self.bias_correction and self.target == "ort-cpu":
            raise QuantError("--bias-correction corrects the biases of model.int8.onnx, which --target ort-cpu does "
                             "not write", hint="use --target tensorrt or --target all with --bias-correction")
        if self.version != CONFIG_VERSION:
            raise QuantError(f"calibration config version {self.version} is not supported (this quant reads "
                             f"version {CONFIG_VERSION})", hint="recalibrate with this version of quant")

    def _check_selection(self) -> None:
        """Exclusion patterns compile; no node is both included and excluded by name."""
        import re

        for pattern in self.exclude_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise QuantError(f"--exclude-regex '{pattern}' is not a regular expression: {exc}",
                                 hint=r"e.g. --exclude-regex '^/encoder/layer\.0/'") from None
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise QuantError(f"{', '.join(repr(n) for n in both)} given to both --include and --exclude",
                             hint="name each node in one of them")

    @property
    def targets(self) -> tuple[str, ...]:
        return ("tensorrt", "ort-cpu") if self.target == "all" else (self.target,)

    def params(self, method: str) -> dict:
        """Parameters of one method's calibrator."""
        return {"percentile": self.percentile} if method == "percentile" else {}

    def to_json(self) -> dict:
        data = asdict(self)
        data["methods"] = list(self.methods)
        for key in TUPLE_FIELDS:
            data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CalibrationConfig":
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict):
            raise QuantError(f"a calibration config must be an object, got {type(data).__name__}")
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise QuantError(f"unknown calibration config keys {unknown}")
        data = dict(data)
        for key in ("methods",) + TUPLE_FIELDS:
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return cls(**data)

    def replace(self, **changes) -> "CalibrationConfig":
        """A copy with ``changes`` (keyword arguments of quant.calibrate/recalibrate): a name that is no field
        is refused with the nearest field (``method=`` is ``methods=``), not passed on as an unknown key."""
        refuse_unknown_keywords(changes, SETTINGS, "not a calibration setting")
        data = self.to_json()
        data.update(changes)
        return CalibrationConfig.from_json(data)

    def refuse_unused_percentile(self) -> None:
        """A percentile given where no method reads it (activations or weights) would be ignored: refused."""
        if "percentile" in self.methods or "auto" in self.methods or self.weight_method == "percentile":
            return
        raise QuantError(f"--percentile applies to the percentile method, but --method is {','.join(self.methods)} "
                         f"and --weight-method {self.weight_method}: it would be ignored",
                         hint="add percentile to --method (e.g. --method entropy,percentile) or drop --percentile")


SETTINGS = tuple(f.name for f in fields(CalibrationConfig) if f.name != "version")  # the keywords of replace()


def refuse_unknown_keywords(given, known, what: str, also=()) -> None:  # also: names, or a function
    """A keyword argument outside ``known`` is refused with the nearest name of ``known`` or ``also`` (the
    function's own parameters), never passed on to fail deeper down or be ignored: ``method=`` is ``methods=``."""
    import difflib

    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    if callable(also):  # the function's named parameters
        import inspect

        also = [n for n, p in inspect.signature(also).parameters.items() if p.kind is not p.VAR_KEYWORD]
    names = list(dict.fromkeys([*known, *also]))
    near = list(dict.fromkeys(m for u in unknown for m in difflib.get_close_matches(u, names, n=2)))
    raise QuantError(f"unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                     f"{', '.join(repr(u) for u in unknown)}: {what}",
                     hint=f"did you mean {' or '.join(m + '=' for m in near)}?" if near
                     else f"the keywords are: {', '.join(names)}")
