"""COCO- and VOC-layout data sets from local folders for multi-task split computing (``data.source: coco|voc``).

Both give the targets the multi-task training consumes (:class:`~.shapes_data.DenseTaskData`):

* an **image class**: the category of the image's largest object (COCO: the annotation's ``area``, else its box
  area; VOC: the box area; the first such object on a tie);
* **boxes and labels**: ``(x1, y1, x2, y2)`` pixels of the resized image and contiguous labels ``0..K-1``;
* a **semantic mask**: 0 background, label + 1 where an object is, ``IGNORE_LABEL`` (255) where no loss and
  no metric apply (VOC's object borders, COCO crowd regions).

Every image is resized to ``data.image_size`` square (bilinear; masks nearest; boxes scaled, clipped, and
dropped when narrower than one pixel), normalised with ``data.mean``/``data.std``, and held in memory: use
``data.max_samples`` for a subset of a large set. Images without a usable object are left out.

``coco`` (COCO 2017 layout)
    ``ROOT/annotations/instances_SPLIT.json`` and the images under ``ROOT/SPLIT/``; category ids (sorted) are
    remapped to contiguous labels; ``iscrowd`` annotations give no box but an ignored mask region. Masks come
    from polygons or RLE through pycocotools when it is installed; without it polygons are drawn with PIL and
    uncompressed RLE decoded in NumPy, while compressed RLE is refused naming the annotation id.
``voc`` (VOC2012 layout)
    ``ROOT/ImageSets/Segmentation/SPLIT.txt`` (``data.voc_image_set: segmentation``; boxes and masks) or
    ``ROOT/ImageSets/Main/SPLIT.txt`` (``main``; boxes only), ``ROOT/JPEGImages/ID.jpg``,
    ``ROOT/Annotations/ID.xml`` (``difficult`` objects left out; 1-based inclusive corners become
    ``(xmin - 1, ymin - 1, xmax, ymax)``) and ``ROOT/SegmentationClass/ID.png`` (palette indices = label + 1).

Splits: ``data.train_split`` and ``data.val_split``; without ``val_split`` a ``test_fraction`` of the
training split (drawn with ``split_seed``) is held out.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.edge.split.config import SplitDataConfig
from aeforge.edge.split.shapes_data import DenseTaskData
from aeforge.edge.split.task_outputs import IGNORE_LABEL
from aeforge.errors import DataError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
VOC_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class DenseSamples:
    """Resized images uint8 ``(N, 3, S, S)``, image classes, boxes / box labels per image, masks ``(N, S, S)``."""

    images: np.ndarray
    labels: np.ndarray
    boxes: list[np.ndarray]
    box_labels: list[np.ndarray]
    masks: np.ndarray | None
    class_names: tuple[str, ...]
    skipped: int = 0  # images left out (no usable object)


def _image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(3, size, size)`` uint8 RGB of an image file, and its original (width, height)."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except OSError as error:
        raise DataError(f"{path}: unreadable image: {error}") from None
    original = rgb.size
    if original != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy(), original


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if mask.shape == (size, size):
        return mask.astype(np.int64)
    resized = Image.fromarray(mask.astype(np.uint8), mode="L").resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.int64)


def _scale_boxes(boxes: np.ndarray, original: tuple[int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in original pixels -> resized pixels (clipped), and which are at least one pixel wide and high."""
    scale = np.array([size / original[0], size / original[1]] * 2, dtype=np.float64)
    scaled = np.clip(boxes.astype(np.float64) * scale, 0, size).astype(np.float32).reshape(-1, 4)
    keep = ((scaled[:, 2] - scaled[:, 0]) >= 1.0) & ((scaled[:, 3] - scaled[:, 1]) >= 1.0)
    return scaled, keep


def _finish(images: list[np.ndarray], labels: list[int], boxes: list[np.ndarray], box_labels: list[np.ndarray],
            masks: list[np.ndarray] | None, names: tuple[str, ...], skipped: int, where: str) -> DenseSamples:
    if not images:
        raise DataError(f"{where}: no image with a usable object ({skipped} left out)")
    return DenseSamples(np.stack(images), np.asarray(labels, dtype=np.int64), boxes, box_labels,
                        np.stack(masks) if masks is not None else None, names, skipped)


# ------------------------------------------------------------------------------------ COCO
def _number_list(value: Any, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def _check_fields(item: Any, where: str, fields: dict[str, type | tuple[type, ...]]) -> None:
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    for key, kind in fields.items():
        if key not in item:
            raise DataError(f"{where}.{key}: missing")
        if not isinstance(item[key], kind) or isinstance(item[key], bool):
            raise DataError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {item[key]!r}")


def decode_rle(counts: list[int], height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of COCO's uncompressed RLE (column-major runs, starting with zeros)."""
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in counts:
        if value:
            flat[position:position + run] = True
        position += run
        value = not value
    return flat.reshape(width, height).T


def coco_mask(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """Boolean mask of one COCO annotation's ``segmentation`` (polygons or RLE); ``where`` names it in errors."""
    try:
        from pycocotools import mask as coco_masks
    except ImportError:
        coco_masks = None
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if _number_list(p, len(p)) and len(p) >= 6 and len(p) % 2 == 0]
        if len(polygons) != len(segmentation):
            raise DataError(f"{where}.segmentation: polygons must be lists of >= 6 numbers (x, y pairs)")
        if coco_masks is not None:
            rle = coco_masks.merge(coco_masks.frPyObjects(polygons, height, width))
            return coco_masks.decode(rle).astype(bool)
        from PIL import Image, ImageDraw

        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in polygons:
            draw.polygon([(float(x), float(y)) for x, y in zip(polygon[0::2], polygon[1::2], strict=True)], fill=1)
        return np.asarray(canvas, dtype=bool)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size")
        if not _number_list(size, 2) or [int(size[0]), int(size[1])] != [height, width]:
            raise DataError(f"{where}.segmentation.size: expected [{height}, {width}] (the image's height, width), "
                            f"got {size!r}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) \
                    or sum(counts) != height * width:
                raise DataError(f"{where}.segmentation.counts: uncompressed RLE must be non-negative integers "
                                f"summing to {height * width}")
            return decode_rle(counts, height, width)
        if isinstance(counts, str):
            if coco_masks is None:
                raise DataError(f"{where}: compressed RLE segmentation needs pycocotools (pip install pycocotools)")
            return coco_masks.decode({"size": [height, width], "counts": counts.encode()}).astype(bool)
    raise DataError(f"{where}.segmentation: expected polygons (a list of lists) or RLE ({{size, counts}}), "
                    f"got {type(segmentation).__name__}")


def _coco_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: COCO annotation file not found (data.root/annotations/instances_SPLIT.json)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: malformed JSON: {error}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DataError(f"{path}: {key}: missing or not a list")
    return raw


def read_coco(root: str | Path, split: str, size: int, limit: int | None = None) -> DenseSamples:
    """The images of COCO split ``split`` under ``root`` (sorted by image id, the first ``limit``), resized."""
    root = Path(root).expanduser()
    path = root / "annotations" / f"instances_{split}.json"
    raw = _coco_json(path)
    image_dir = root / split
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: COCO image folder not found (data.root/SPLIT)")
    for index, category in enumerate(raw["categories"]):
        _check_fields(category, f"{path}: categories[{index}]", {"id": int, "name": str})
    categories = sorted(raw["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: label for label, c in enumerate(categories)}
    names = tuple(c["name"] for c in categories)
    images: dict[int, dict[str, Any]] = {}
    for index, image in enumerate(raw["images"]):
        _check_fields(image, f"{path}: images[{index}]", {"id": int, "file_name": str, "width": int, "height": int})
        if Path(image["file_name"]).is_absolute() or ".." in Path(image["file_name"]).parts:
            raise DataError(f"{path}: images[{index}].file_name: must be relative to {image_dir}, "
                            f"got {image['file_name']!r}")
        images[image["id"]] = image
    by_image: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for index, annotation in enumerate(raw["annotations"]):
        where = f"{path}: annotations[{index}]"
        _check_fields(annotation, where, {"id": int, "image_id": int, "category_id": int, "bbox": list})
        if not _number_list(annotation["bbox"], 4):
            raise DataError(f"{where}.bbox: expected [x, y, width, height] numbers, got {annotation['bbox']!r}")
        if annotation["image_id"] not in images:
            raise DataError(f"{where}.image_id: no image {annotation['image_id']} in images")
        if annotation["category_id"] not in label_of:
            raise DataError(f"{where}.category_id: no category {annotation['category_id']} in categories")
        by_image.setdefault(annotation["image_id"], []).append((index, annotation))
    chosen = sorted(i for i in images if i in by_image)
    kept_images: list[np.ndarray] = []
    labels: list[int] = []
    boxes: list[np.ndarray] = []
    box_labels: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    skipped = len(images) - len(chosen)
    for image_id in chosen:
        if limit is not None and len(kept_images) >= limit:
            break
        info = images[image_id]
        height, width = info["height"], info["width"]
        mask = np.zeros((height, width), dtype=np.uint8)
        raw_boxes, raw_labels, areas = [], [], []
        for index, annotation in by_image[image_id]:
            where = f"{path}: annotations[{index}] (id {annotation['id']})"
            label = label_of[annotation["category_id"]]
            crowd = bool(annotation.get("iscrowd", 0))
            if annotation.get("segmentation"):
                region = coco_mask(annotation["segmentation"], height, width, where)
                mask[region] = IGNORE_LABEL if crowd else label + 1
            if crowd:
                continue
            x, y, w, h = (float(v) for v in annotation["bbox"])
            raw_boxes.append([x, y, x + w, y + h])
            raw_labels.append(label)
            area = annotation.get("area", w * h)
            areas.append(float(area) if isinstance(area, (int, float)) else w * h)
        if not raw_boxes:
            skipped += 1
            continue
        pixels, original = _image(image_dir / info["file_name"], size)
        if original != (width, height):
            raise DataError(f"{path}: images id {image_id}: width, height {width}x{height} but "
                            f"{info['file_name']} is {original[0]}x{original[1]}")
        scaled, keep = _scale_boxes(np.asarray(raw_boxes), original, size)
        if not keep.any():
            skipped += 1
            continue
        kept = np.flatnonzero(keep)
        kept_images.append(pixels)
        labels.append(raw_labels[int(kept[int(np.argmax(np.asarray(areas)[kept]))])])
        boxes.append(scaled[keep])
        box_labels.append(np.asarray(raw_labels, dtype=np.int64)[keep])
        masks.append(_resize_mask(mask, size))
    return _finish(kept_images, labels, boxes, box_labels, masks, names, skipped, f"{path}")


# ------------------------------------------------------------------------------------ VOC
def _xml_number(node: ElementTree.Element, key: str, where: str) -> float:
    text = node.findtext(key)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}.{key}: expected a number, got {text!r}") from None


def voc_objects(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(k, 4)`` (0-based pixel corners) and labels of the non-difficult objects of one VOC XML file."""
    if not path.is_file():
        raise DataError(f"{path}: VOC annotation file not found")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise DataError(f"{path}: malformed XML: {error}") from None
    boxes, labels = [], []
    for index, item in enumerate(root.findall("object")):
        where = f"{path}: object[{index}]"
        name = (item.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DataError(f"{where}.name: expected a VOC class ({', '.join(VOC_CLASSES)}), got {name!r}")
        if (item.findtext("difficult") or "0").strip() == "1":
            continue
        box = item.find("bndbox")
        if box is None:
            raise DataError(f"{where}.bndbox: missing")
        xmin, ymin, xmax, ymax = (_xml_number(box, key, f"{where}.bndbox") for key in ("xmin", "ymin", "xmax", "ymax"))
        if not (xmin <= xmax and ymin <= ymax):
            raise DataError(f"{where}.bndbox: xmin <= xmax and ymin <= ymax needed, got {xmin, ymin, xmax, ymax}")
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(VOC_CLASSES.index(name))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def _voc_mask(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path}: VOC segmentation mask not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette (P) or grey (L) PNG of class indices, got {image.mode}")
            mask = np.asarray(image, dtype=np.int64)
    except OSError as error:
        raise DataError(f"{path}: unreadable mask: {error}") from None
    bad = (mask > len(VOC_CLASSES)) & (mask != IGNORE_LABEL)
    if bad.any():
        raise DataError(f"{path}: class index {int(mask[bad][0])} outside 0..{len(VOC_CLASSES)} and "
                        f"{IGNORE_LABEL}")
    return mask


def read_voc(root: str | Path, split: str, size: int, image_set: str = "segmentation",
             limit: int | None = None) -> DenseSamples:
    """The images of VOC split ``split`` (ImageSets/Segmentation or Main) under ``root``, resized."""
    root = Path(root).expanduser()
    folder = "Segmentation" if image_set == "segmentation" else "Main"
    listing = root / "ImageSets" / folder / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: VOC image set not found (data.root/ImageSets/{folder}/SPLIT.txt)")
    for name in ("JPEGImages", "Annotations", *(("SegmentationClass",) if image_set == "segmentation" else ())):
        if not (root / name).is_dir():
            raise DataError(f"{root / name}: VOC folder not found")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    images: list[np.ndarray] = []
    labels: list[int] = []
    boxes: list[np.ndarray] = []
    box_labels: list[np.ndarray] = []
    masks: list[np.ndarray] | None = [] if image_set == "segmentation" else None
    skipped = 0
    for image_id in ids:
        if limit is not None and len(images) >= limit:
            break
        raw_boxes, raw_labels = voc_objects(root / "Annotations" / f"{image_id}.xml")
        file = next((root / "JPEGImages" / f"{image_id}{ext}" for ext in VOC_IMAGE_EXTENSIONS
                     if (root / "JPEGImages" / f"{image_id}{ext}").is_file()), root / "JPEGImages" / f"{image_id}.jpg")
        if not len(raw_boxes):
            skipped += 1
            continue
        pixels, original = _image(file, size)
        scaled, keep = _scale_boxes(raw_boxes, original, size)
        if not keep.any():
            skipped += 1
            continue
        areas = (raw_boxes[:, 2] - raw_boxes[:, 0]) * (raw_boxes[:, 3] - raw_boxes[:, 1])
        kept = np.flatnonzero(keep)
        images.append(pixels)
        labels.append(int(raw_labels[kept[int(np.argmax(areas[kept]))]]))
        boxes.append(scaled[keep])
        box_labels.append(raw_labels[keep])
        if masks is not None:
            mask = _voc_mask(root / "SegmentationClass" / f"{image_id}.png")
            if mask.shape != (original[1], original[0]):
                raise DataError(f"{root / 'SegmentationClass' / f'{image_id}.png'}: {mask.shape[1]}x{mask.shape[0]} "
                                f"but the image is {original[0]}x{original[1]}")
            masks.append(_resize_mask(mask, size))
    return _finish(images, labels, boxes, box_labels, masks, VOC_CLASSES, skipped, f"{listing}")


# ------------------------------------------------------------------------------------ data set
def _read(config: SplitDataConfig, split: str, limit: int | None) -> DenseSamples:
    if config.source == "coco":
        return read_coco(str(config.root), split, config.image_size, limit)
    return read_voc(str(config.root), split, config.image_size, config.voc_image_set, limit)


def _subset(samples: DenseSamples, index: np.ndarray) -> DenseSamples:
    return DenseSamples(samples.images[index], samples.labels[index], [samples.boxes[i] for i in index],
                        [samples.box_labels[i] for i in index],
                        samples.masks[index] if samples.masks is not None else None, samples.class_names)


def detection_data(config: SplitDataConfig) -> DenseTaskData:
    """The COCO or VOC data of ``config`` (``root``, ``train_split``, ``val_split``) as :class:`DenseTaskData`."""
    train = _read(config, str(config.train_split), config.max_samples)
    if config.val_split is not None:
        test = _read(config, config.val_split, config.max_samples)
    else:
        count = len(train.images)
        n_test = max(1, round(count * config.test_fraction))
        if n_test >= count:
            raise DataError(f"data: {count} images leave none for training (test_fraction {config.test_fraction})")
        order = np.random.default_rng(config.split_seed).permutation(count)
        train, test = _subset(train, np.sort(order[n_test:])), _subset(train, np.sort(order[:n_test]))
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)

    def tensors(samples: DenseSamples) -> dict[str, Any]:
        return {"x": (torch.from_numpy(samples.images).float() / 255.0 - mean) / std,
                "y": torch.from_numpy(samples.labels),
                "boxes": [torch.from_numpy(b) for b in samples.boxes],
                "box_labels": [torch.from_numpy(b) for b in samples.box_labels],
                "masks": torch.from_numpy(samples.masks) if samples.masks is not None else None}

    a, b = tensors(train), tensors(test)
    names = train.class_names
    if test.class_names != names:
        raise DataError(f"data.val_split {config.val_split}: categories {list(test.class_names)} differ from "
                        f"data.train_split {config.train_split}'s {list(names)}")
    return DenseTaskData(
        a["x"], a["y"], b["x"], b["y"], len(names), str(config.source), eval_batch_size=config.eval_batch_size,
        classes=list(names), boxes_train=a["boxes"], box_labels_train=a["box_labels"], masks_train=a["masks"],
        boxes_test=b["boxes"], box_labels_test=b["box_labels"], masks_test=b["masks"], kind_names=names,
    )
