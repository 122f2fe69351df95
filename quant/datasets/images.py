"""A folder of images: class sub-folders give labels; a preprocessing spec turns images into arrays."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.datasets.base import DataSource

DEFAULT_SCALE = 1.0 / 255.0
HIGH_PRECISION_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}  # 16-bit / 32-bit integer and float grayscale
MAX_SIDE = 16384  # pixels; a resize beyond this is a typo, not an image size
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _finite_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: resize, colour, (x * scale - mean) / std, layout, dtype."""

    resize: tuple[int, int] | None = None  # (height, width); None keeps the image size
    color: str = "RGB"  # RGB, BGR or L (grayscale)
    scale: float = 1.0 / 255.0  # DEFAULT_SCALE: the full range of the image to [0, 1] (see apply)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    dtype: str = "float32"
    version: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        if self.resize is not None and (len(self.resize) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in self.resize)):
            raise QuantError(f"preprocess resize must be [height, width] in pixels (1 to {MAX_SIDE}), got "
                             f"{list(self.resize)}", hint="e.g. --resize 224,224")
        if not _finite_number(self.scale):
            raise QuantError(f"preprocess scale must be a finite number, got {self.scale!r}", hint="e.g. --scale 0.00392")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not values or not all(_finite_number(v) for v in values):
                raise QuantError(f"preprocess {name} must be one or more finite numbers, got {list(values)}",
                                 hint=f"e.g. --{name} 0.5,0.5,0.5")
        if len(self.mean) not in (1, 3) or len(self.std) not in (1, 3):
            raise QuantError(f"preprocess mean and std take 1 or 3 values (one per channel), got "
                             f"{len(self.mean)} and {len(self.std)}", hint="e.g. --mean 0.485,0.456,0.406")
        if self.color not in ("RGB", "BGR", "L"):
            raise QuantError(f"preprocess color must be RGB, BGR or L, got '{self.color}'")
        if self.layout not in ("NCHW", "NHWC"):
            raise QuantError(f"preprocess layout must be NCHW or NHWC, got '{self.layout}'")
        if any(s == 0 for s in self.std):
            raise QuantError("preprocess std must not contain 0")
        try:
            if np.dtype(self.dtype).kind not in "fiu":
                raise TypeError
        except (TypeError, ValueError):
            raise QuantError(f"preprocess dtype '{self.dtype}' is not a NumPy number dtype", hint="e.g. float32") from None
        if np.dtype(self.dtype).kind in "iu":  # pixels as stored: scale, mean and std are not applied (see apply)
            if self.scale not in (DEFAULT_SCALE, 1.0) or any(m != 0 for m in self.mean) or any(v != 1 for v in self.std):
                raise QuantError(f"preprocess dtype {self.dtype} feeds the pixels as stored: scale, mean and std "
                                 f"apply to float dtypes only (got scale {self.scale:g}, mean {list(self.mean)}, "
                                 f"std {list(self.std)})", hint="drop --scale/--mean/--std, or use --dtype float32")
            object.__setattr__(self, "scale", 1.0)  # recorded as applied: the stored values
            if np.iinfo(self.dtype).min > 0 or np.iinfo(self.dtype).max < 255:
                raise QuantError(f"preprocess dtype {self.dtype} cannot hold 8-bit pixel values (0 to 255)",
                                 hint="use --dtype uint8 (or uint16 for 16-bit images, float32 for scaled values)")

    @classmethod
    def from_json(cls, path: str | Path) -> "Preprocess":
        from quant.core.readback import NUMBER, OneOf, Optional, parse_json, validate

        hint = 'write JSON like {"resize": [224, 224], "mean": [0.485, 0.456, 0.406]}'
        raw = parse_json(path, "the preprocessing spec", hint)
        numbers = OneOf(NUMBER, [NUMBER])
        validate(raw, {"resize?": Optional([int]), "color?": str, "scale?": NUMBER, "mean?": numbers,
                       "std?": numbers, "layout?": str, "dtype?": str, "version?": int},
                 path, "the preprocessing spec", hint)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise QuantError(f"unknown keys {unknown} in the preprocessing spec '{path}'",
                             hint=f"known keys: {', '.join(sorted(known - {'version'}))}")
        for key in ("resize", "mean", "std"):
            if isinstance(raw.get(key), (int, float)):
                raw[key] = (raw[key],)
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        try:
            return cls(**raw)
        except QuantError as exc:
            raise QuantError(f"the preprocessing spec '{path}': {exc.message}", hint=exc.hint or hint) from None

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, image) -> np.ndarray:
        """A PIL image -> array shaped [C, H, W] or [H, W, C].

        8-bit images as PIL gives them; 16-bit grayscale (PNG, TIFF: PIL modes I;16*, I) and float TIFFs
        (mode F) at full precision. The default scale, 1/255, means "the image's full range to [0, 1]": it
        becomes 1/65535 for 16-bit images and 1 (values as stored) for float images; any other --scale
        multiplies the stored values as given.
        """
        mode = image.mode
        deep = mode in HIGH_PRECISION_MODES
        if deep:
            if self.resize is not None:
                height, width = self.resize
                image = image.convert("F").resize((width, height), resample=2)  # bilinear, in float
            pixels = np.asarray(image.convert("F") if image.mode != "F" else image, dtype=np.float32)
            pixels = pixels[:, :, None] if self.color == "L" else np.repeat(pixels[:, :, None], 3, axis=2)
        else:
            image = image.convert("L" if self.color == "L" else "RGB")
            if self.resize is not None:
                height, width = self.resize
                image = image.resize((width, height), resample=2)  # bilinear
            pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.color == "BGR":
            pixels = pixels[:, :, ::-1]
        if np.dtype(self.dtype).kind == "f":
            scale = self.scale
            if deep and scale == DEFAULT_SCALE:
                scale = 1.0 / 65535.0 if mode != "F" else 1.0
            pixels = (pixels * np.float32(scale) - np.asarray(self.mean, np.float32)) / np.asarray(
                self.std, np.float32)
        else:
            info = np.iinfo(self.dtype)
            if pixels.size and (pixels.max() > info.max or pixels.min() < info.min):  # astype would wrap around
                raise QuantError(f"preprocess dtype {self.dtype} cannot hold this image's values ({pixels.min():g} to "
                                 f"{pixels.max():g}, {mode} image)", hint="use --dtype uint8 (8-bit images), uint16 "
                                                                           "(16-bit images) or float32")
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels.astype(self.dtype))


def _refuse_deep_color_png(path: Path) -> None:
    """PIL reads 16-bit colour PNGs as 8 bits per channel without a word: refuse them rather than clip."""
    if path.suffix.lower() != ".png":
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return  # PIL reports it
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 \
            and head[25] in (2, 4, 6):
        raise QuantError(f"image '{path}' is a 16-bit colour PNG, which PIL can only read as 8 bits per channel",
                         hint="save it as 16-bit grayscale or 8-bit colour, or feed the arrays as .npy")


class ImageFolderSource(DataSource):
    """Images in ``root`` or in its class sub-folders (sorted folder names give labels 0..K-1)."""

    def __init__(self, root: Path, preprocess: Preprocess, key: str = "input") -> None:
        self.root = root
        self.preprocess = preprocess
        self.key = key
        self.synthetic_keys = (key,)
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = classes
        self.files: list[Path] = []
        labels: list[int] = []
        if classes:
            for label, name in enumerate(classes):
                found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                self.files += found
                labels += [label] * len(found)
        else:
            self.files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.labels = np.asarray(labels, dtype=np.int64) if classes else None
        self.description = f"{root} ({len(self.files)} images" + (f", {len(classes)} classes)" if classes else ")")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def keys(self) -> list[str]:
        return [self.key] + (["label"] if self.labels is not None else [])

    def sample(self, index: int) -> dict[str, np.ndarray]:
        pil = require("PIL.Image")
        path = self.files[index]
        _refuse_deep_color_png(path)
        try:
            with pil.open(path) as image:
                array = self.preprocess.apply(image)
        except QuantError as exc:  # the image is fine, the preprocessing does not fit it
            raise QuantError(f"image '{path}': {exc.message}", hint=exc.hint) from None
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError ...
            raise QuantError(f"cannot read image '{path}': {exc}", hint="remove or replace the broken file") from None
        out = {self.key: array}
        if self.labels is not None:
            out["label"] = np.asarray(self.labels[index])
        return out

    def column(self, key: str) -> np.ndarray | None:
        return self.labels if key == "label" else None
