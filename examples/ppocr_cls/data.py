"""A real model for the notebooks: PP-OCR's mobile text-direction classifier (0 vs 180 degrees).

The ONNX file ships inside the rapidocr_onnxruntime wheel (a PyPI package; nothing is fetched at run time).
Labeled data is rendered here: fragments of the Zen of Python in Pillow's built-in font, upright (label 0)
or turned by 180 degrees (label 1), preprocessed as PP-OCR does (height 48, width padded to 192,
(x / 255 - 0.5) / 0.5, CHW). Calibration and held-out sets use disjoint fragments.
"""
from __future__ import annotations

import codecs
import importlib.util
import math
from pathlib import Path

import numpy as np

from quant.datasets import DataSource

HEIGHT, WIDTH = 48, 192


def model_path() -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")  # locates the package without importing it (no cv2)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install rapidocr_onnxruntime  (it carries the PP-OCR ONNX models)")
    return Path(spec.submodule_search_locations[0]) / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def fragments() -> list[str]:
    """Short phrases from the Zen of Python (shipped with Python), in a fixed order."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this  # the text is this.s, in ROT13

    words = codecs.decode(this.s, "rot13").split()
    return [" ".join(words[i:i + 3]) for i in range(0, len(words) - 2, 2)]


def render(text: str, upside_down: bool) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=30)
    width = int(math.ceil(font.getlength(text))) + 12
    image = Image.new("RGB", (width, HEIGHT), "white")
    ImageDraw.Draw(image).text((6, 6), text, fill="black", font=font)
    if upside_down:
        image = image.rotate(180)
    scaled = min(WIDTH, int(math.ceil(HEIGHT * width / HEIGHT)))
    image = image.resize((scaled, HEIGHT), resample=2)
    pixels = (np.asarray(image, np.float32) / 255.0 - 0.5) / 0.5
    out = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    out[:, :scaled] = pixels[:, :WIDTH]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class DirectionSet(DataSource):
    """Every fragment upright and upside down: input 'x' [3, 48, 192], 'label' 0 or 1."""

    def __init__(self, texts: list[str]) -> None:
        self.items = [(t, flip) for t in texts for flip in (False, True)]
        self.description = f"{len(self.items)} rendered Zen of Python fragments"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def keys(self) -> list[str]:
        return ["x", "label"]

    def sample(self, index: int) -> dict[str, np.ndarray]:
        text, flip = self.items[index]
        return {"x": render(text, flip), "label": np.asarray(int(flip))}

    def column(self, key: str):
        return np.asarray([int(flip) for _, flip in self.items]) if key == "label" else None


def calibration_and_held_out() -> tuple[DirectionSet, DirectionSet]:
    texts = fragments()
    return DirectionSet(texts[0::2]), DirectionSet(texts[1::2])
