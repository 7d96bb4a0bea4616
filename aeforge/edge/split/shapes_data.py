"""A synthetic "shapes" data set for multi-task split computing (``data.source: shapes``), generated in code.

Each image (``image_size`` square, RGB) holds 1..``shapes_per_image`` filled shapes of random colour, size
and place on a dim random background; a later shape may cover part of an earlier one. Every image has

* a **class label**: the kind of its largest shape (0 square, 1 circle, 2 triangle; area as drawn);
* **boxes and labels**: one ``(x1, y1, x2, y2)`` pixel box (the tight box of the visible pixels) and kind
  per visible shape (float32 ``(k, 4)``, int64 ``(k,)``);
* a **mask**: the kind + 1 of the shape on top at each pixel, 0 for background (int64 ``(H, W)``).

Images are normalised to [-1, 1] like the other split sources. Everything is drawn from one
``numpy.random.default_rng(split_seed)``, so a data set is reproducible; shapes never touch the border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from aeforge.edge.split.config import SplitDataConfig
from aeforge.edge.split.data import SplitData
from aeforge.errors import DataError

SHAPE_KINDS = ("square", "circle", "triangle")
NUM_KINDS = len(SHAPE_KINDS)
MIN_VISIBLE_PIXELS = 12  # a shape covered to fewer pixels than this gets no box (and its pixels stay labelled)


def _draw(kind: int, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Boolean ``(size, size)`` mask of one shape centred at (cx, cy) with half-extent ``radius``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if kind == 0:
        return (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)
    if kind == 1:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    # an upright isosceles triangle with apex at the top of the box
    top, bottom = cy - radius, cy + radius
    inside = (yy >= top) & (yy <= bottom)
    half_width = radius * (yy - top) / max(2 * radius, 1e-6)
    return inside & (np.abs(xx - cx) <= half_width)


def make_shapes(count: int, image_size: int, max_shapes: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                                 list[np.ndarray], list[np.ndarray],
                                                                                 np.ndarray]:
    """``count`` images: uint8 ``(N, 3, S, S)``, class labels, boxes, box labels and int64 masks ``(N, S, S)``."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, 3, image_size, image_size), dtype=np.uint8)
    masks = np.zeros((count, image_size, image_size), dtype=np.int64)
    labels = np.empty(count, dtype=np.int64)
    boxes: list[np.ndarray] = []
    box_labels: list[np.ndarray] = []
    low, high = max(4.0, image_size * 0.08), image_size * 0.24
    for index in range(count):
        background = rng.uniform(0, 70, size=3)
        canvas = np.empty((3, image_size, image_size), dtype=np.float32)
        canvas[:] = background[:, None, None]
        canvas += rng.normal(0, 6, size=canvas.shape).astype(np.float32)
        owner = np.full((image_size, image_size), -1, dtype=np.int64)  # which shape is on top
        kinds = []
        for shape in range(int(rng.integers(1, max_shapes + 1))):
            kind = int(rng.integers(0, NUM_KINDS))
            radius = float(rng.uniform(low, high))
            cx, cy = rng.uniform(radius + 1, image_size - radius - 1, size=2)
            region = _draw(kind, image_size, float(cx), float(cy), radius)
            colour = rng.uniform(110, 255, size=3)
            canvas[:, region] = colour[:, None]
            owner[region] = shape
            kinds.append(kind)
        image_boxes, image_labels, areas = [], [], []
        for shape, kind in enumerate(kinds):
            ys, xs = np.nonzero(owner == shape)
            areas.append(len(xs))
            if len(xs) < MIN_VISIBLE_PIXELS:
                continue
            image_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            image_labels.append(kind)
        if not image_boxes:  # cannot happen for the first shape (nothing covers it yet) unless tiny; guard anyway
            raise DataError("data.source shapes: an image without a visible shape (raise data.image_size)")
        labels[index] = kinds[int(np.argmax(areas))]
        masks[index] = np.where(owner >= 0, np.asarray([*kinds, 0])[owner] + 1, 0)
        images[index] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
        boxes.append(np.asarray(image_boxes, dtype=np.float32))
        box_labels.append(np.asarray(image_labels, dtype=np.int64))
    return images, labels, boxes, box_labels, masks


@dataclass
class ShapesData(SplitData):
    """:class:`SplitData` (class labels) plus per-image boxes, box labels and masks of train and test."""

    boxes_train: list[torch.Tensor] | None = None
    box_labels_train: list[torch.Tensor] | None = None
    masks_train: torch.Tensor | None = None
    boxes_test: list[torch.Tensor] | None = None
    box_labels_test: list[torch.Tensor] | None = None
    masks_test: torch.Tensor | None = None

    @property
    def num_kinds(self) -> int:
        """Object classes of detection (shape kinds)."""
        return NUM_KINDS

    @property
    def num_mask_classes(self) -> int:
        """Segmentation classes: background and one per shape kind."""
        return NUM_KINDS + 1

    def targets(self, split: str, index: torch.Tensor) -> dict[str, object]:
        """Class labels, detection targets (list of ``{"boxes", "labels"}``) and masks of ``index`` images."""
        train = split == "train"
        boxes = self.boxes_train if train else self.boxes_test
        box_labels = self.box_labels_train if train else self.box_labels_test
        masks = self.masks_train if train else self.masks_test
        labels = self.y_train if train else self.y_test
        assert boxes is not None and box_labels is not None and masks is not None
        return {"labels": labels[index],
                "detection": [{"boxes": boxes[int(i)], "labels": box_labels[int(i)]} for i in index],
                "masks": masks[index]}

    def indexed_train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of shuffled training indices (the order drawn from ``generator``)."""
        order = torch.randperm(len(self.x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]


def shapes_data(config: SplitDataConfig) -> ShapesData:
    """The shapes data set of ``config`` (``shapes_count`` images, ``test_fraction`` held out, ``split_seed``)."""
    images, labels, boxes, box_labels, masks = make_shapes(config.shapes_count, config.image_size,
                                                           config.shapes_per_image, config.split_seed)
    count = len(images) if config.max_samples is None else min(len(images), config.max_samples)
    n_test = max(1, round(count * config.test_fraction))
    if n_test >= count:
        raise DataError(f"data: {count} samples leave none for training (test_fraction {config.test_fraction})")
    x = (torch.from_numpy(images[:count]).float() / 255.0 - 0.5) / 0.5
    y = torch.from_numpy(labels[:count])
    m = torch.from_numpy(masks[:count])
    b = [torch.from_numpy(item) for item in boxes[:count]]
    bl = [torch.from_numpy(item) for item in box_labels[:count]]
    test, train = slice(0, n_test), slice(n_test, count)
    return ShapesData(
        x[train], y[train], x[test], y[test], NUM_KINDS, "shapes", eval_batch_size=config.eval_batch_size,
        classes=list(SHAPE_KINDS), boxes_train=b[train], box_labels_train=bl[train], masks_train=m[train],
        boxes_test=b[test], box_labels_test=bl[test], masks_test=m[test],
    )
