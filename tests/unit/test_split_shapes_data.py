"""The synthetic shapes data (class labels, boxes, masks agree) and the multi-task metrics and NMS."""

from __future__ import annotations

import numpy as np
import pytest

from aeforge.edge.split.task_outputs import (
    box_map50,
    confusion,
    mask_labels,
    mean_iou,
    nms,
    postprocess_detections,
)

torch = pytest.importorskip("torch")

from aeforge.edge.split.config import SplitDataConfig  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.shapes_data import NUM_KINDS, make_shapes  # noqa: E402


def test_boxes_labels_masks_and_class_agree() -> None:
    images, labels, boxes, box_labels, masks = make_shapes(60, 48, 3, seed=5)
    assert images.shape == (60, 3, 48, 48) and images.dtype == np.uint8
    assert masks.shape == (60, 48, 48) and set(np.unique(masks)) <= set(range(NUM_KINDS + 1))
    for n in range(60):
        assert len(boxes[n]) == len(box_labels[n]) >= 1
        assert boxes[n].dtype == np.float32 and box_labels[n].dtype == np.int64
        for (x1, y1, x2, y2), kind in zip(boxes[n], box_labels[n], strict=True):
            assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 48
            inside = masks[n, int(y1):int(y2), int(x1):int(x2)]
            assert np.any(inside == kind + 1)  # the box holds pixels of its shape
        # the class label is the kind with the most visible pixels among the shapes' kinds
        assert labels[n] in box_labels[n] or np.count_nonzero(masks[n] == labels[n] + 1) > 0
        visible = [np.count_nonzero(masks[n] == k + 1) for k in range(NUM_KINDS)]
        assert visible[labels[n]] > 0
        # background pixels are dimmer than every shape's pixels
        bright = images[n].max(axis=0)
        assert bright[masks[n] == 0].max() < bright[masks[n] > 0].min()


def test_deterministic_and_split() -> None:
    a = make_shapes(20, 32, 2, seed=1)
    b = make_shapes(20, 32, 2, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[4], b[4])
    data = load_split_data(SplitDataConfig(source="shapes", image_size=32, shapes_count=40, test_fraction=0.25))
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
    assert float(data.x_train.min()) >= -1.0 and float(data.x_train.max()) <= 1.0
    assert data.num_classes == 3 and data.num_mask_classes == 4 and data.num_kinds == 3
    targets = data.targets("test", torch.tensor([0, 3]))
    assert targets["masks"].shape == (2, 32, 32) and len(targets["detection"]) == 2
    assert targets["detection"][1]["boxes"].shape[1] == 4


def test_nms_and_postprocess() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    out_boxes, scores, labels = postprocess_detections(boxes[None], np.array([[0.9, 0.8, 0.01]]),
                                                       np.array([[0, 1, 0]]), 0.05, 0.5, 4)
    assert labels.tolist() == [[0, 1, -1, -1]]  # other classes are not suppressed; low scores dropped
    assert scores[0, 2] == 0 and out_boxes.shape == (1, 4, 4)


def test_map_and_miou() -> None:
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32), np.array([0, 1]))]
    perfect = [(truth[0][0], np.array([0.9, 0.8]), np.array([0, 1]))]
    assert box_map50(perfect, truth, 2) == pytest.approx(1.0)
    shifted = [(truth[0][0] + 6, np.array([0.9, 0.8]), np.array([0, 1]))]  # IoU < 0.5
    assert box_map50(shifted, truth, 2) == 0.0
    half = [(truth[0][0], np.array([0.9, 0.8]), np.array([0, 0]))]  # class 1 missed, class 0 found
    assert box_map50(half, truth, 2) == pytest.approx(0.5)
    masks = np.array([[[0, 1], [2, 2]]])
    assert mean_iou(confusion(masks, masks, 3)) == pytest.approx(1.0)
    logits = np.eye(3)[masks].transpose(0, 3, 1, 2)
    assert np.array_equal(mask_labels(logits), masks)
    assert mean_iou(confusion(np.zeros_like(masks), masks, 3)) == pytest.approx((1 / 4) / 3)
