"""A synthetic "shapes" data set for multi-task split computing (``data.source: shapes``), generated in code.

Each image (``image_size`` square, RGB) holds 1..``shapes_per_image`` filled shapes of random colour, size
and place on a dim random background; a later shape may cover part of an earlier one. Every image has

* a **class label**: the kind of its largest shape (0 square, 1 circle, 2 triangle; area as drawn);
* **boxes and labels**: one ``(x1, y1, x2, y2)`` pixel box (the tight box of the visible pixels) and kind
  per visible shape (float32 ``(k, 4)``, int64 ``(k,)``);
* a **mask**: the kind + 1 of the shape on top at each pixel, 0 for background (int64 ``(H, W)``).

Images are normalised to [-1, 1] like the other split sources. Everything is drawn from one
``numpy.random.default_rng(split_seed)``, so a data set is reproducible; shapes never touch the border.

:class:`DenseTaskData` holds these targets for any source (shapes, COCO, VOC: :mod:`~.detection_data`);
:func:`write_coco_tree` and :func:`write_voc_tree` write shapes images as COCO 2017- and VOC2012-layout trees
(to try and test those loaders without the real data sets).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def _shapes_image(rng: np.random.Generator, image_size: int, max_shapes: int) -> tuple[np.ndarray, np.ndarray,
                                                                                      list[int]]:
    """One image: uint8 ``(3, S, S)``, the index of the shape on top at each pixel (-1: background), kinds."""
    low, high = max(4.0, image_size * 0.08), image_size * 0.24
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
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), owner, kinds


def shape_instances(count: int, image_size: int, max_shapes: int, seed: int) -> list[tuple[np.ndarray, list[int]]]:
    """Per image of :func:`make_shapes` (same arguments) the owner map and the shapes' kinds (instance masks)."""
    rng = np.random.default_rng(seed)
    return [_shapes_image(rng, image_size, max_shapes)[1:] for _ in range(count)]  # type: ignore[misc]


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
    for index in range(count):
        images[index], owner, kinds = _shapes_image(rng, image_size, max_shapes)
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
        boxes.append(np.asarray(image_boxes, dtype=np.float32))
        box_labels.append(np.asarray(image_labels, dtype=np.int64))
    return images, labels, boxes, box_labels, masks


@dataclass
class DenseTaskData(SplitData):
    """:class:`SplitData` (class labels) plus per-image boxes, box labels and masks of train and test
    (shapes, COCO, VOC). Masks hold 0 for background, object class + 1, or ``IGNORE_LABEL``; None: no masks."""

    boxes_train: list[torch.Tensor] | None = None
    box_labels_train: list[torch.Tensor] | None = None
    masks_train: torch.Tensor | None = None
    boxes_test: list[torch.Tensor] | None = None
    box_labels_test: list[torch.Tensor] | None = None
    masks_test: torch.Tensor | None = None
    kind_names: tuple[str, ...] = SHAPE_KINDS  # object classes of detection, in label order

    @property
    def num_kinds(self) -> int:
        """Object classes of detection."""
        return len(self.kind_names)

    @property
    def num_mask_classes(self) -> int:
        """Segmentation classes: background and one per object class."""
        return len(self.kind_names) + 1

    def targets(self, split: str, index: torch.Tensor) -> dict[str, object]:
        """Class labels, detection targets (list of ``{"boxes", "labels"}``) and masks of ``index`` images."""
        train = split == "train"
        boxes = self.boxes_train if train else self.boxes_test
        box_labels = self.box_labels_train if train else self.box_labels_test
        masks = self.masks_train if train else self.masks_test
        labels = self.y_train if train else self.y_test
        assert boxes is not None and box_labels is not None
        targets: dict[str, object] = {
            "labels": labels[index],
            "detection": [{"boxes": boxes[int(i)], "labels": box_labels[int(i)]} for i in index]}
        if masks is not None:
            targets["masks"] = masks[index]
        return targets

    def indexed_train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of shuffled training indices (the order drawn from ``generator``)."""
        order = torch.randperm(len(self.x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]


ShapesData = DenseTaskData  # the shapes set's data (its name before COCO and VOC sources existed)


def shapes_data(config: SplitDataConfig) -> DenseTaskData:
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
    return DenseTaskData(
        x[train], y[train], x[test], y[test], NUM_KINDS, "shapes", eval_batch_size=config.eval_batch_size,
        classes=list(SHAPE_KINDS), boxes_train=b[train], box_labels_train=bl[train], masks_train=m[train],
        boxes_test=b[test], box_labels_test=bl[test], masks_test=m[test],
    )


# ------------------------------------------------------------------------------------ COCO / VOC trees
def _rle(region: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a boolean mask (column-major runs, starting with zeros)."""
    flat = region.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], changes])).astype(int).tolist()


def write_coco_tree(root: str | Path, split: str, count: int, image_size: int, max_shapes: int, seed: int) -> Path:
    """Shapes images as a COCO 2017-layout split: ``root/SPLIT/*.png`` and ``root/annotations/instances_SPLIT.json``
    (one annotation per shape with a box, uncompressed-RLE mask of its visible pixels; category ids 10, 20, 30)."""
    from PIL import Image

    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, _, _, _, _ = make_shapes(count, image_size, max_shapes, seed)
    entries, annotations = [], []
    for index, ((owner, kinds), pixels) in enumerate(zip(shape_instances(count, image_size, max_shapes, seed),
                                                         images, strict=True)):
        name = f"{index:06d}.png"
        Image.fromarray(pixels.transpose(1, 2, 0)).save(root / split / name)
        entries.append({"id": index + 1, "file_name": name, "width": image_size, "height": image_size})
        for shape, kind in enumerate(kinds):
            region = owner == shape
            ys, xs = np.nonzero(region)
            if len(xs) < MIN_VISIBLE_PIXELS:
                continue
            x1, y1 = int(xs.min()), int(ys.min())
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 10 * (kind + 1),
                                "bbox": [x1, y1, int(xs.max()) + 1 - x1, int(ys.max()) + 1 - y1],
                                "area": len(xs), "iscrowd": 0,
                                "segmentation": {"size": [image_size, image_size], "counts": _rle(region)}})
    categories = [{"id": 10 * (kind + 1), "name": name} for kind, name in enumerate(SHAPE_KINDS)]
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return path


VOC_SHAPE_NAMES = ("aeroplane", "bicycle", "bird")
"""The VOC class names a shapes VOC tree uses for square, circle and triangle (VOC labels 0, 1, 2)."""


def write_voc_tree(root: str | Path, splits: dict[str, int], image_size: int, max_shapes: int, seed: int) -> Path:
    """Shapes images as a VOC2012-layout tree: ``JPEGImages`` (quality 95, 4:4:4), ``Annotations`` (one object per shape
    with a box, named by :data:`VOC_SHAPE_NAMES`), ``SegmentationClass`` (palette PNG of the mask) and
    ``ImageSets/{Main,Segmentation}/SPLIT.txt``; ``splits`` maps split names to image counts, in order."""
    from PIL import Image

    root = Path(root)
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    images, _, boxes, box_labels, masks = make_shapes(sum(splits.values()), image_size, max_shapes, seed)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1:NUM_KINDS + 1] = [[128, 0, 0], [0, 128, 0], [128, 128, 0]]
    start = 0
    for split, count in splits.items():
        ids = [f"2007_{index:06d}" for index in range(start, start + count)]
        for index, image_id in zip(range(start, start + count), ids, strict=True):
            Image.fromarray(images[index].transpose(1, 2, 0)).save(root / "JPEGImages" / f"{image_id}.jpg",
                                                                  quality=95, subsampling=0)
            mask = Image.fromarray(masks[index].astype(np.uint8), mode="P")
            mask.putpalette(palette.ravel().tolist())
            mask.save(root / "SegmentationClass" / f"{image_id}.png")
            objects = "".join(
                f"<object><name>{VOC_SHAPE_NAMES[int(kind)]}</name><difficult>0</difficult><bndbox>"
                f"<xmin>{int(x1) + 1}</xmin><ymin>{int(y1) + 1}</ymin><xmax>{int(x2)}</xmax><ymax>{int(y2)}</ymax>"
                f"</bndbox></object>" for (x1, y1, x2, y2), kind in zip(boxes[index], box_labels[index], strict=True))
            (root / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation><filename>{image_id}.jpg</filename><size><width>{image_size}</width><height>"
                f"{image_size}</height><depth>3</depth></size>{objects}</annotation>")
        for folder in ("Main", "Segmentation"):
            (root / "ImageSets" / folder / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        start += count
    return root
