"""Labeled text-line images for PP-OCR recognition, rendered offline: Debian's fortunes in DejaVu Sans.

Needs `apt-get install fortunes fonts-dejavu-core` (or any folder of text files and a .ttf via arguments).
Lines are drawn black on white at height 48, normalized as PP-OCR does ((x / 255 - 0.5) / 0.5, CHW), and
padded on the right to a multiple of 32 pixels, so widths vary between samples as in real use.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from quant.datasets import DataSource

FORTUNES = Path("/usr/share/games/fortunes")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
HEIGHT = 48


def load_lines(count: int, seed: int, charset: set[str], folder: Path = FORTUNES, min_len: int = 8,
               max_len: int = 36) -> list[str]:
    """``count`` distinct lines (seeded choice) whose characters the model knows."""
    if not folder.is_dir():
        raise SystemExit(f"no fortunes at {folder}: apt-get install fortunes")
    lines = set()
    for path in sorted(folder.iterdir()):
        if path.suffix or not path.is_file():
            continue
        for line in path.read_text(errors="ignore").splitlines():
            line = " ".join(line.split())
            if min_len <= len(line) <= max_len and all(ch in charset or ch == " " for ch in line):
                lines.add(line)
    ordered = sorted(lines)
    random.Random(seed).shuffle(ordered)
    if len(ordered) < count:
        raise SystemExit(f"only {len(ordered)} usable lines in {folder}")
    return ordered[:count]


def render(text: str, font_path: Path = FONT) -> np.ndarray:
    """One line as float32 [3, 48, W], W a multiple of 32."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), 30)
    width = int(math.ceil(font.getlength(text))) + 12
    image = Image.new("RGB", (width, HEIGHT), "white")
    ImageDraw.Draw(image).text((6, 7), text, fill="black", font=font)
    pixels = (np.asarray(image, np.float32) / 255.0 - 0.5) / 0.5
    padded = np.zeros((HEIGHT, int(math.ceil(width / 32) * 32), 3), np.float32)
    padded[:, :width] = pixels
    return np.ascontiguousarray(padded.transpose(2, 0, 1))


class RenderedLines(DataSource):
    """Rendered lines as a quant data source: input 'x', string label column 'label'."""

    def __init__(self, lines: list[str], input_name: str = "x") -> None:
        self.lines = list(lines)
        self.input_name = input_name
        self.description = f"{len(lines)} rendered fortune lines"
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def keys(self) -> list[str]:
        return [self.input_name, "label"]

    def sample(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = render(self.lines[index])
        return {self.input_name: self._cache[index], "label": np.asarray(self.lines[index])}

    def column(self, key: str):
        return np.asarray(self.lines) if key == "label" else None


def ctc_decode(probabilities: np.ndarray, characters: list[str]) -> list[str]:
    """Greedy CTC: argmax per step, merge repeats, drop blank (index 0); index i > 0 is characters[i - 1]."""
    table = [""] + list(characters) + [" "]
    texts = []
    for row in np.asarray(probabilities).argmax(-1):
        previous, out = 0, []
        for index in row:
            if index != previous and index != 0:
                out.append(table[index] if index < len(table) else "")
            previous = index
        texts.append("".join(out))
    return texts


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def make_metrics(characters: list[str]):
    """(cer, exact_match) functions for quant's metric API: f(outputs, labels) per batch."""

    def cer(outputs, labels):
        texts = ctc_decode(outputs[0], characters)
        errors = sum(edit_distance(t, str(g)) for t, g in zip(texts, labels))
        return float(errors), float(sum(len(str(g)) for g in labels))

    def exact_match(outputs, labels):
        texts = ctc_decode(outputs[0], characters)
        hits = sum(t.replace(" ", "") == str(g).replace(" ", "") for t, g in zip(texts, labels))
        return 100.0 * hits, float(len(labels))

    cer.higher_is_better = False
    return cer, exact_match
