"""A detector's evaluation: score threshold, non-maximum suppression, then AP at IoU 0.5 against ground truth.

    quant eval detector.onnx out/model.int8.onnx --data heldout.npz --eval-fn examples/eval_fn/detection.py:mean_ap

The model returns ``boxes`` [N, K, 4] as (cx, cy, w, h) and ``scores`` [N, K] in [0, 1] (one class). The
ground truth is stored in the data file beside the input, as ``gt_boxes`` [N, M, 4] in (x1, y1, x2, y2) with
rows of -1 (all four) as padding; ``data.column("gt_boxes")`` returns it for each held-out sample, in order. The
function returns two named scores, both higher-is-better; gate one with ``--eval-fn ...:mean_ap@AP50``.
"""
import numpy as np

SCORE_THRESHOLD = 0.3
NMS_IOU = 0.5
MATCH_IOU = 0.5


def corners(boxes):
    """(cx, cy, w, h) -> (x1, y1, x2, y2); negative sizes count as positive."""
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    w, h = np.abs(w), np.abs(h)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def iou(box, others):
    """IoU of one (x1, y1, x2, y2) box with each of ``others`` [M, 4]."""
    x1, y1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x2, y2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(boxes, scores):
    """Indices kept by greedy NMS, best score first (ties: the lower index first)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    kept = []
    while len(order):
        best, order = order[0], order[1:]
        kept.append(best)
        order = order[iou(boxes[best], boxes[order]) <= NMS_IOU] if len(order) else order
    return kept


def detections(boxes, scores):
    """(boxes, scores) of one image after the threshold and NMS."""
    keep = scores >= SCORE_THRESHOLD
    boxes, scores = corners(boxes[keep]), scores[keep]
    kept = nms(boxes, scores)
    return boxes[kept], scores[kept]


def average_precision(found, total):
    """All-point interpolated AP from (score, is_true_positive) pairs and the number of ground-truth boxes."""
    if total == 0:
        return 1.0 if not found else 0.0
    found.sort(key=lambda pair: -pair[0])
    hits = np.cumsum([tp for _, tp in found]) if found else np.zeros(0)
    recall = np.concatenate([[0.0], hits / total])
    precision = np.concatenate([[1.0], hits / np.arange(1, len(found) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def mean_ap(run, data):
    truths = iter(data.column("gt_boxes"))
    found, total, matched = [], 0, 0
    for feeds, _ in data.batches():
        boxes, scores = run(feeds)  # outputs in the model's order: boxes, scores
        for image_boxes, image_scores in zip(boxes, scores):
            truth = next(truths)
            truth = truth[(truth != -1).any(axis=1)]  # drop the padding rows
            total += len(truth)
            taken = np.zeros(len(truth), bool)
            for box, score in zip(*detections(image_boxes, image_scores)):
                overlaps = iou(box, truth) if len(truth) else np.zeros(0)
                overlaps[taken] = 0
                best = int(np.argmax(overlaps)) if len(overlaps) else -1
                hit = best >= 0 and overlaps[best] >= MATCH_IOU
                if hit:
                    taken[best] = True
                    matched += 1
                found.append((float(score), bool(hit)))
    return {"AP50": 100.0 * average_precision(found, total), "recall": 100.0 * matched / max(total, 1)}


mean_ap.higher_is_better = {"AP50": True, "recall": True}
