"""Options shared by several commands, defined once; argument parsing that fails in one line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quant.core.errors import QuantError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one 'Error:' line plus a hint, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise QuantError(message, hint=f"see '{self.prog} --help'")


def add_data_options(parser: argparse.ArgumentParser, required: bool = True, batch_default: int | None = 32) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, metavar="PATH",
                       help=".npy/.npz file, folder of .npy files, image folder (class sub-folders = labels), "
                            "Hugging Face dataset saved to disk, or .parquet/.arrow file")
    group.add_argument("--input-map", action="append", default=[], metavar="INPUT=KEY",
                       help="feed model input INPUT from data key/column KEY (repeatable)")
    group.add_argument("--split", help="split of a saved Hugging Face DatasetDict")
    group.add_argument("--num-samples", type=int, metavar="N", help="use N samples drawn with --seed (default: all)")
    group.add_argument("--batch-size", type=int, default=batch_default, metavar="B",
                       help="samples per run (default: " + (str(batch_default) if batch_default else
                                                            "as many as --memory-budget allows, up to 64") + ")")
    group.add_argument("--seed", type=int, default=0, help="seed for drawing --num-samples (default: 0)")
    pre = parser.add_argument_group("image preprocessing (image folders and image columns)")
    pre.add_argument("--preprocess", metavar="SPEC.json", help="JSON with resize, color, scale, mean, std, layout, dtype")
    pre.add_argument("--resize", metavar="H,W", help="resize images to H x W")
    pre.add_argument("--color", choices=["RGB", "BGR", "L"], help="channel order, or L for grayscale (default RGB)")
    pre.add_argument("--scale", type=float, help="multiply pixels by this first (default 1/255)")
    pre.add_argument("--mean", metavar="M[,M,M]", help="subtract per channel after scaling")
    pre.add_argument("--std", metavar="S[,S,S]", help="divide per channel after the mean")
    pre.add_argument("--layout", choices=["NCHW", "NHWC"], help="array layout (default NCHW)")
    pre.add_argument("--dtype", help="array dtype (default float32)")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="ort", metavar="ort|cuda[:N]|cpu",
                        help="where FP32 and emulated INT8 run: ort = ONNX Runtime on the CPU (default: installed "
                             "with quant, no torch needed); cuda, cuda:N or cpu = the ONNX graph converted to "
                             "PyTorch (pip install 'quant[gpu]'), in IEEE fp32 with TF32 off")


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise QuantError(f"{flag} takes comma-separated numbers, got '{text}'", hint=f"e.g. {flag} 0.5,0.5,0.5") from None


def preprocess_from_args(args):
    from quant.datasets import Preprocess

    spec = Preprocess.from_json(args.preprocess) if args.preprocess else Preprocess()
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
    if not changes:
        return spec
    merged = spec.to_dict()
    merged.update(changes)
    return Preprocess(**merged)


def input_map_from_args(args) -> dict[str, str]:
    mapping = {}
    for item in args.input_map:
        name, sep, key = item.partition("=")
        if not sep or not name or not key:
            raise QuantError(f"--input-map takes INPUT=KEY, got '{item}'", hint="e.g. --input-map pixel_values=image")
        mapping[name] = key
    return mapping


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise QuantError(f"{what} '{path}' does not exist", hint=f"check the path of the {what}")
    return p


def stdout(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def stderr(text: str = "") -> None:
    sys.stderr.write(text + "\n")
