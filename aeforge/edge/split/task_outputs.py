"""NumPy post-processing and metrics of multi-task outputs (no torch: the tail server uses it).

* :func:`postprocess_detections`: score threshold and per-class non-maximum suppression of the top-k
  candidates a detection tail outputs, padded to a fixed number of detections per image (score 0, label -1);
* :func:`mask_labels`: per-pixel class of mask logits;
* :func:`box_map50` (VOC-style all-point average precision at IoU 0.5, mean over classes with objects)
  and :func:`mean_iou` (mean over classes of intersection over union, from a confusion matrix);
* :func:`task_entries`: the ``tasks`` section of a multi-task ``split.json``, checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError

IGNORE_LABEL = 255
"""Mask pixels of this value (VOC's object borders, COCO crowd regions) carry no loss and no metric."""


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with ``(k, 4)`` boxes (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first (stable for equal scores)."""
    order = np.argsort(-scores, kind="stable")
    ordered = boxes[order].astype(np.float64)
    x1, y1, x2, y2 = ordered.T
    areas = (x2 - x1) * (y2 - y1)
    inter = (np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
             * np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None))
    overlaps = inter / np.maximum(areas[:, None] + areas - inter, 1e-9)
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(int(order[i]))
            suppressed |= overlaps[i] > iou
    return keep


def postprocess_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, score_threshold: float,
                           nms_iou: float, detections: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates ``(N, k, 4)``, ``(N, k)``, ``(N, k)`` -> kept boxes ``(N, D, 4)`` float32, scores ``(N, D)``
    float32 and labels ``(N, D)`` int32, D = ``detections``, best first, padded with score 0 and label -1."""
    count = boxes.shape[0]
    out_boxes = np.zeros((count, detections, 4), dtype=np.float32)
    out_scores = np.zeros((count, detections), dtype=np.float32)
    out_labels = np.full((count, detections), -1, dtype=np.int32)
    for n in range(count):
        chosen = np.flatnonzero(scores[n] > score_threshold)
        kept: list[int] = []
        for label in np.unique(labels[n, chosen]):
            members = chosen[labels[n, chosen] == label]
            kept.extend(int(members[i]) for i in nms(boxes[n, members], scores[n, members], nms_iou))
        kept.sort(key=lambda i: (-float(scores[n, i]), i))
        kept = kept[:detections]
        out_boxes[n, :len(kept)] = boxes[n, kept]
        out_scores[n, :len(kept)] = scores[n, kept]
        out_labels[n, :len(kept)] = labels[n, kept]
    return out_boxes, out_scores, out_labels


def mask_labels(mask_logits: np.ndarray) -> np.ndarray:
    """Per-pixel classes int32 ``(N, H, W)`` of mask logits ``(N, K, H, W)``."""
    return np.argmax(mask_logits, axis=1).astype(np.int32)


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP (area under the monotone precision envelope)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def box_map50(predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
              truths: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int) -> float:
    """Box mAP at IoU 0.5: ``predictions`` per image (boxes, scores, labels; label -1 = padding),
    ``truths`` per image (boxes, labels); mean of the per-class APs over classes that have objects."""
    aps = []
    for label in range(num_classes):
        total = sum(int(np.sum(t_labels == label)) for _, t_labels in truths)
        if total == 0:
            continue
        found: list[tuple[float, bool]] = []
        for (p_boxes, p_scores, p_labels), (t_boxes, t_labels) in zip(predictions, truths, strict=True):
            mine = np.flatnonzero(p_labels == label)
            mine = mine[np.argsort(-p_scores[mine], kind="stable")]
            targets = t_boxes[t_labels == label]
            used = np.zeros(len(targets), dtype=bool)
            for index in mine:
                hit = False
                if len(targets):
                    overlaps = box_iou(p_boxes[index], targets)
                    best = int(np.argmax(overlaps))
                    if overlaps[best] >= 0.5 and not used[best]:
                        used[best] = hit = True
                found.append((float(p_scores[index]), hit))
        if not found:
            aps.append(0.0)
            continue
        found.sort(key=lambda item: -item[0])
        hits = np.array([hit for _, hit in found], dtype=np.float64)
        true_positives = np.cumsum(hits)
        precision = true_positives / np.arange(1, len(hits) + 1)
        aps.append(_average_precision(true_positives / total, precision))
    return float(np.mean(aps)) if aps else 0.0


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` pixel confusion matrix (rows: truth, columns: prediction); truth ``IGNORE_LABEL`` is left out."""
    truth, pred = truth.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    keep = truth != IGNORE_LABEL
    index = truth[keep] * num_classes + pred[keep]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction of a confusion matrix."""
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])) if present.any() else 0.0


def task_entries(raw: Any, where: str) -> tuple[dict[str, Any], ...]:
    """split.json's ``tasks`` of a multi-task export (None: a single-task export), checked field by field."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ArtifactError(f"{where}: tasks must be a non-empty list, got {raw!r}")
    seen = set()
    for index, task in enumerate(raw):
        if not isinstance(task, dict):
            raise ArtifactError(f"{where}: tasks[{index}] must be an object")
        for key, kind in (("name", str), ("kind", str), ("file", str), ("sha256", str), ("outputs", dict)):
            if not isinstance(task.get(key), kind):
                raise ArtifactError(f"{where}: tasks[{index}].{key} missing or not a {kind.__name__}")
        if task["kind"] not in ("classification", "detection", "segmentation"):
            raise ArtifactError(f"{where}: tasks[{index}].kind: unknown {task['kind']!r}")
        if "/" in task["file"] or "\\" in task["file"] or not task["file"].endswith(".onnx"):
            raise ArtifactError(f"{where}: tasks[{index}].file must be a file name ending in .onnx")
        if task["name"] in seen:
            raise ArtifactError(f"{where}: tasks[{index}].name: duplicate {task['name']!r}")
        seen.add(task["name"])
    return tuple(raw)
