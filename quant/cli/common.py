"""Options shared by several commands, defined once; argument parsing that fails in one line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quant.core.errors import QuantError
from quant.cli import validators as V


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one 'Error:' line plus a hint, exit code 2.

    An option is only its full name (``--meth`` is not ``--method``: an abbreviation would change meaning
    the day a new flag shares its prefix), and a single-valued option given twice with different values is
    refused (argparse keeps the last one silently)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise QuantError(message, hint=f"see '{self.prog} --help'")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        vars(namespace).pop(_GIVEN, None)  # the bookkeeping of _StoreOnce is no option
        return namespace, extras


_GIVEN = "_quant_options_given"


def unknown_arguments(parser: argparse.ArgumentParser, extras: list[str], commands: dict | None = None) -> None:
    """Refuse what the command does not take; an option that starts or nearly spells one of its own is named,
    else the other ``commands`` (name -> parser) that take it."""
    import difflib

    options = [o for o in parser._option_string_actions if o.startswith("--")]
    for extra in (e.split("=", 1)[0] for e in extras if e.startswith("--")):
        near = [o for o in options if o.startswith(extra)] or difflib.get_close_matches(extra, options, 3, 0.8)
        if near:
            raise QuantError(f"unrecognized arguments: {' '.join(extras)}",
                             hint=f"did you mean {' or '.join(sorted(near)[:3])}? (see '{parser.prog} --help')")
        elsewhere = [f"'{other.prog}'" for other in (commands or {}).values()
                     if other is not parser and extra in other._option_string_actions]
        if elsewhere:
            raise QuantError(f"unrecognized arguments: {' '.join(extras)}",
                             hint=f"{extra} is an option of {', '.join(elsewhere)}, not of '{parser.prog}' "
                                  f"(see '{parser.prog} --help')")
    parser.error(f"unrecognized arguments: {' '.join(extras)}")


class _StoreOnce(argparse._StoreAction):
    """argparse's 'store', refusing a second, different value for the same destination (``--method minmax
    --method mse``); the same value again changes nothing and passes."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = vars(namespace).setdefault(_GIVEN, {})
        if option_string is not None and self.dest in given and given[self.dest][1] != values:  # the same: no harm
            first_option, first = given[self.dest]
            also = "" if first_option == option_string else f" (as {first_option})"
            how = ", with the values separated by commas" if "," in str(self.metavar or "") else ""
            raise QuantError(f"{option_string} is given twice ({first}{also}, then {values}): one value would be "
                             "dropped silently",
                             hint=f"give {option_string} once{how}")
        if option_string is not None:
            given[self.dest] = (option_string, values)
        super().__call__(parser, namespace, values, option_string)


def add_data_options(parser: argparse.ArgumentParser, required: bool = True, batch_default: int | None = 32) -> None:
    group = parser.add_argument_group("data")
    where = group.add_mutually_exclusive_group(required=required)
    where.add_argument("--data", metavar="PATH",
                       help=".npy/.npz file (one array per input, or one key per sample x_0000, x_0001, ...), folder "
                            "of .npy files, image folder (class sub-folders = labels), Hugging Face dataset saved "
                            "to disk, .parquet/.arrow file, or Polygraphy's --save-inputs .json")
    where.add_argument("--data-loader-script", dest="data", metavar="FILE.py[:FUNC]",
                       help="Polygraphy-style data loader: FUNC() (default load_data) returns or yields feed dicts "
                            "{input name: array}, one per batch")
    group.add_argument("--input-map", action="append", default=[], metavar="INPUT=KEY",
                       help="feed model input INPUT from data key/column KEY (repeatable)")
    group.add_argument("--split", help="split of a saved Hugging Face DatasetDict")
    group.add_argument("--num-samples", type=V.count(1, "num-samples"), metavar="N", help="use N samples drawn by position with --seed (default: all)")
    group.add_argument("--batch-size", type=V.count(1, "batch-size"), default=batch_default, metavar="B",
                       help="samples per run (default: " + (str(batch_default) if batch_default else
                                                            "as many as --memory-budget allows, up to 64") + ")")
    group.add_argument("--seed", type=V.seed, default=0, help="seed for drawing --num-samples (default: 0)")
    pre = parser.add_argument_group("image preprocessing (image folders and image columns)")
    pre.add_argument("--preprocess", metavar="SPEC.json", help="JSON with resize, color, scale, mean, std, layout, dtype")
    pre.add_argument("--preprocess-from", metavar="DIR",
                     help="apply the preprocessing recorded in DIR/quant.json by 'quant calibrate' (automatic when "
                          "the INT8 model sits in a calibration folder, and with --calibration DIR)")
    pre.add_argument("--resize", metavar="H,W", help="resize images to H x W")
    pre.add_argument("--color", choices=["RGB", "BGR", "L"], help="channel order, or L for grayscale (default RGB)")
    pre.add_argument("--scale", type=V.number(name="scale"), help="multiply pixels by this first (default 1/255)")
    pre.add_argument("--mean", metavar="M[,M,M]", help="subtract per channel after scaling")
    pre.add_argument("--std", metavar="S[,S,S]", help="divide per channel after the mean")
    pre.add_argument("--layout", choices=["NCHW", "NHWC"], help="array layout (default NCHW)")
    pre.add_argument("--dtype", help="array dtype (default float32)")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--output-name and --class-axis: which output a metric scores and where its classes lie."""
    group = parser.add_argument_group("outputs")
    group.add_argument("--output-name", metavar="NAME",
                       help="the model output that labels and metrics score (default: the one output that fits the "
                            "labels, or the only output; a metric can name its own as METRIC@NAME)")
    group.add_argument("--class-axis", type=V.integer(-16, 16, "class-axis"), metavar="AXIS",
                       help="axis of the classes for argmax agreement (default 1: [N, C] scores and [N, C, H, W] maps; "
                            "a 3-D output [N, C, L] or [N, T, C] needs it unless its values are probabilities)")
def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="ort", metavar="ort|cuda[:N]|cpu",
                        help="where FP32 and emulated INT8 run: ort = ONNX Runtime on the CPU (default: installed "
                             "with quant, no torch needed); cuda, cuda:N or cpu = the ONNX graph run with "
                             "PyTorch (needs torch: pip install 'quant-trt[gpu]'), in IEEE fp32 with TF32 off")


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise QuantError(f"{flag} takes comma-separated numbers, got '{text}'", hint=f"e.g. {flag} 0.5,0.5,0.5") from None


def preprocess_from_args(args):
    """What the user asked for: None (nothing: the recorded or default spec applies), a dict of the fields
    given as flags, or a full Preprocess when --preprocess SPEC.json is given (flags change it)."""
    from quant.datasets import Preprocess

    changes = {}
    if args.resize:
        values = _floats(args.resize, "--resize")
        if len(values) != 2 or any(v < 1 or v != int(v) for v in values):
            raise QuantError(f"--resize takes H,W in pixels, got '{args.resize}'", hint="e.g. --resize 224,224")
        changes["resize"] = (int(values[0]), int(values[1]))
    for flag in ("color", "scale", "layout", "dtype"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    for flag in ("mean", "std"):
        if getattr(args, flag) is not None:
            changes[flag] = _floats(getattr(args, flag), f"--{flag}")
    if args.preprocess:
        spec = Preprocess.from_json(args.preprocess)
        given = Preprocess(**{**spec.to_dict(), **changes}) if changes else spec
    else:
        if changes:
            Preprocess(**changes)  # validate the values now, before any work
        given = changes or None
    if getattr(args, "preprocess_from", None):
        from quant.datasets import choose_preprocess
        from quant.datasets.recorded import recorded_preprocess

        if recorded_preprocess(args.preprocess_from)[0] is None:
            raise QuantError(f"'{args.preprocess_from}' has no quant.json with recorded image preprocessing",
                             hint="pass a folder written by 'quant calibrate' on image data")
        choice = choose_preprocess(given, args.preprocess_from)
        from dataclasses import replace

        return replace(choice, explicit=True)  # asked for by name: refused with array data, as --resize is
    return given


def input_map_from_args(args) -> dict[str, str]:
    mapping = {}
    for item in args.input_map:
        name, sep, key = item.partition("=")
        if not sep or not name or not key:
            raise QuantError(f"--input-map takes INPUT=KEY, got '{item}'", hint="e.g. --input-map pixel_values=image")
        if name in mapping:
            raise QuantError(f"--input-map gives input {name!r} twice ({mapping[name]}, then {key})",
                             hint="map each model input once")
        mapping[name] = key
    return mapping


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise QuantError(f"{what} '{path}' does not exist", hint=f"check the path of the {what}")
    return p


def _terminal(text: str) -> str:
    """Lines as printed: a name's control characters (ESC, CR, NUL, ...) shown as escapes, never sent to the terminal."""
    from quant.core.text import printable

    return "\n".join(printable(line) for line in text.split("\n"))


def stdout(text: str = "") -> None:
    sys.stdout.write(_terminal(text) + "\n")


def stderr(text: str = "") -> None:
    sys.stderr.write(_terminal(text) + "\n")


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing output files that quant cannot prove it wrote (never an input)")


def input_files(*paths) -> list[Path]:
    """The inputs a command reads, for the output checks: the paths given (that exist) and, for ONNX
    models, their external data files."""
    out = []
    for path in paths:
        if path is None or not isinstance(path, (str, Path)) or not str(path):
            continue
        path = Path(path)
        try:
            if not path.exists():
                continue
        except (OSError, ValueError):  # a symlink loop, a NUL byte: reported when the input is read
            continue
        out.append(path)
        if path.suffix == ".onnx" and path.is_file():
            out += _external_data_files(path)
        out += _calibration_record(path)
    return out


_RECORD = ("quant.json", "summary.json", "model.int8.onnx", "model.ort-cpu.int8.onnx", "calibration.cache",
           "histograms.npz", ".quant-manifest.json", "model.fp32.onnx", "bias_correction.npz")


def _calibration_record(path: Path) -> list[Path]:
    """The files of the calibration a path belongs to (its folder, or the folder of a model inside one, and
    each method's sub-folder): an --output-json there must not replace the quant.json a later command reads."""
    folder = path if path.is_dir() else path.parent
    if (folder / "quant.json").is_file() and (folder.parent / "summary.json").is_file():
        folder = folder.parent  # one method of a multi-method folder: the whole calibration
    if not any((folder / name).is_file() for name in ("quant.json", "summary.json")):
        return []
    folders = [folder] + [sub for sub in _subfolders(folder) if (sub / "quant.json").is_file()]
    files = [f / name for f in folders for name in _RECORD if (f / name).exists()]
    return files + [data for f in files if f.suffix == ".onnx" for data in _external_data_files(f)]  # --external-data


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _external_data_files(model: Path) -> list[Path]:
    try:
        import onnx

        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # not readable: the command itself reports that
        return []
    from quant.core.onnx_model import _external_tensors

    files = set()
    for tensor in _external_tensors(proto):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if location and "\0" not in location:
            files.add(model.parent / location)
    return sorted(files)


def print_warnings(result, keep_float=()) -> None:
    """stderr lines for tensors whose scale is a guess or was raised (also in each quant.json, under warnings)."""
    from quant.pipeline.checks import warning_lines

    seen = set()
    for method in result.methods:
        for line in warning_lines(result.warnings(method, keep_float)):
            if line not in seen:
                seen.add(line)
                stderr(line)


def add_ray_options(parser: argparse.ArgumentParser, shards: bool = False) -> None:
    group = parser.add_argument_group("cluster (Ray; needs pip install ray)")
    group.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run the work as Ray tasks: on the cluster at ADDRESS ('auto', host:port, ray://...), "
                            "or on a new local cluster when no address is given; results are identical to one process "
                            "(on the same --device: with cpu or cuda the workers run PyTorch, one GPU each for cuda)")
    if shards:
        from quant.cli import validators

        group.add_argument("--ray-shards", type=validators.integer(1, validators.MAX_COUNT, "ray-shards"), metavar="N",
                           help="calibration shards (default: two per CPU of the cluster, per GPU with --device cuda); "
                                "never changes a result")


def ray_from_args(args):
    """RayOptions from --ray/--ray-shards, or None without --ray."""
    if getattr(args, "ray", None) is None:
        if getattr(args, "ray_shards", None) is not None:
            raise QuantError("--ray-shards splits the calibration over Ray tasks, but --ray is not given: it would be "
                             "ignored", hint="add --ray (a new local cluster) or --ray ADDRESS, or drop --ray-shards")
        return None
    from quant.distributed.ray_cluster import RayOptions

    return RayOptions(address=None if args.ray == "local" else args.ray, shards=getattr(args, "ray_shards", None))
