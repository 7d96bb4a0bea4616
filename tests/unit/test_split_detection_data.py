"""COCO- and VOC-layout loaders (``data.source: coco|voc``): trees written from the shapes data load back to the
generator's truth; hand-written files pin the conventions; bad trees fail naming the file and field."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from aeforge.edge.split.config import SplitDataConfig, parse_split_config  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.detection_data import (  # noqa: E402
    VOC_CLASSES,
    coco_mask,
    decode_rle,
    read_coco,
    read_voc,
    voc_objects,
)
from aeforge.edge.split.shapes_data import (  # noqa: E402
    MIN_VISIBLE_PIXELS,
    SHAPE_KINDS,
    make_shapes,
    shape_instances,
    write_coco_tree,
    write_voc_tree,
)
from aeforge.edge.split.task_outputs import IGNORE_LABEL, confusion  # noqa: E402
from aeforge.errors import ConfigError, DataError  # noqa: E402

SIZE, SHAPES, SEED = 32, 3, 4


def _mask_without_tiny_shapes(count: int) -> np.ndarray:
    """The generator's masks with the pixels of shapes too covered to get a box set to background."""
    _, _, _, _, masks = make_shapes(count, SIZE, SHAPES, SEED)
    expected = masks.copy()
    for n, (owner, _) in enumerate(shape_instances(count, SIZE, SHAPES, SEED)):
        for shape in np.unique(owner[owner >= 0]):
            if np.count_nonzero(owner == shape) < MIN_VISIBLE_PIXELS:
                expected[n][owner == shape] = 0
    return expected


def test_coco_tree_loads_back_to_the_generators_truth(tmp_path: Path) -> None:
    write_coco_tree(tmp_path, "train2017", 24, SIZE, SHAPES, SEED)
    samples = read_coco(tmp_path, "train2017", SIZE)
    images, labels, boxes, box_labels, _ = make_shapes(24, SIZE, SHAPES, SEED)
    assert samples.class_names == SHAPE_KINDS and samples.skipped == 0
    assert np.array_equal(samples.images, images)  # PNG: lossless
    assert np.array_equal(samples.labels, labels)  # the largest visible shape's kind
    for n in range(24):
        np.testing.assert_array_equal(samples.boxes[n], boxes[n])
        np.testing.assert_array_equal(samples.box_labels[n], box_labels[n])  # category ids 10/20/30 -> 0/1/2
    assert samples.masks is not None and np.array_equal(samples.masks, _mask_without_tiny_shapes(24))


def test_coco_resize_scales_boxes_and_masks(tmp_path: Path) -> None:
    write_coco_tree(tmp_path, "train2017", 6, SIZE, SHAPES, SEED)
    half = read_coco(tmp_path, "train2017", SIZE // 2)
    full = read_coco(tmp_path, "train2017", SIZE)
    assert half.images.shape == (6, 3, 16, 16) and half.masks is not None and half.masks.shape == (6, 16, 16)
    for n in range(6):
        keep = ((full.boxes[n][:, 2:] - full.boxes[n][:, :2]) / 2 >= 1).all(1)
        np.testing.assert_allclose(half.boxes[n], full.boxes[n][keep] / 2)
    assert np.array_equal(half.masks, full.masks[:, 1::2, 1::2])  # nearest: the second pixel of each 2x2 block


def test_voc_tree_loads_back_to_the_generators_truth(tmp_path: Path) -> None:
    write_voc_tree(tmp_path, {"train": 20, "val": 8}, SIZE, SHAPES, SEED)
    images, _, boxes, box_labels, masks = make_shapes(28, SIZE, SHAPES, SEED)
    train = read_voc(tmp_path, "train", SIZE)
    val = read_voc(tmp_path, "val", SIZE, image_set="main")
    assert train.class_names == VOC_CLASSES and len(train.images) == 20 and len(val.images) == 8
    assert val.masks is None and train.masks is not None
    assert np.array_equal(train.masks, masks[:20])  # the palette PNG's indices are the mask classes
    assert np.abs(train.images.astype(int) - images[:20]).mean() < 6  # JPEG q95 4:4:4: ~3 (a swap: > 20)
    for n in range(28):
        got = train if n < 20 else val
        i = n if n < 20 else n - 20
        np.testing.assert_array_equal(got.boxes[i], boxes[n])  # 1-based inclusive corners undone
        np.testing.assert_array_equal(got.box_labels[i], box_labels[n])
        areas = (boxes[n][:, 2] - boxes[n][:, 0]) * (boxes[n][:, 3] - boxes[n][:, 1])
        assert got.labels[i] == box_labels[n][int(np.argmax(areas))]  # the largest box's class


def test_load_split_data_from_configs(tmp_path: Path) -> None:
    write_coco_tree(tmp_path / "coco", "train2017", 30, SIZE, SHAPES, SEED)
    write_coco_tree(tmp_path / "coco", "val2017", 10, SIZE, SHAPES, SEED + 1)
    held_out = load_split_data(SplitDataConfig(source="coco", root=str(tmp_path / "coco"), image_size=SIZE,
                                               test_fraction=0.2))
    assert held_out.x_train.shape == (24, 3, SIZE, SIZE) and held_out.x_test.shape == (6, 3, SIZE, SIZE)
    assert held_out.num_classes == 3 and held_out.num_kinds == 3 and held_out.num_mask_classes == 4
    both = load_split_data(SplitDataConfig(source="coco", root=str(tmp_path / "coco"), image_size=SIZE,
                                           val_split="val2017", max_samples=20, mean=[0.5] * 3, std=[0.5] * 3))
    assert len(both.x_train) == 20 and len(both.x_test) == 10
    images, labels, boxes, _, _ = make_shapes(10, SIZE, SHAPES, SEED + 1)
    assert torch.allclose(both.x_test, (torch.from_numpy(images).float() / 255 - 0.5) / 0.5)
    targets = both.targets("test", torch.tensor([0, 3]))
    assert torch.equal(targets["labels"], torch.from_numpy(labels[[0, 3]]))
    assert torch.equal(targets["detection"][1]["boxes"], torch.from_numpy(boxes[3]))
    write_voc_tree(tmp_path / "voc", {"train": 20, "val": 6}, SIZE, SHAPES, SEED)
    voc = load_split_data(SplitDataConfig(source="voc", root=str(tmp_path / "voc"), image_size=SIZE,
                                          val_split="val"))
    assert voc.num_kinds == 20 and voc.num_mask_classes == 21 and voc.masks_test is not None
    boxes_only = load_split_data(SplitDataConfig(source="voc", root=str(tmp_path / "voc"), image_size=SIZE,
                                                 val_split="val", voc_image_set="main"))
    assert boxes_only.masks_train is None and "masks" not in boxes_only.targets("train", torch.tensor([0]))


def test_segmentation_task_without_masks_is_refused(tmp_path: Path) -> None:
    from aeforge.edge.split.tasks import task_classes

    write_voc_tree(tmp_path, {"train": 20}, SIZE, SHAPES, SEED)
    config = parse_split_config(f"model: {{family: split}}\ntasks: [classification, segmentation]\n"
                                f"data: {{source: voc, root: {tmp_path}, image_size: 32, voc_image_set: main}}\n",
                                source="v.yaml")
    data = load_split_data(config.data)
    assert task_classes(config.model.tasks[0], data) == 20
    with pytest.raises(ConfigError, match=r"task 'seg' .segmentation. needs masks.*voc_image_set: segmentation"):
        task_classes(config.model.tasks[1], data)


def test_rle_and_polygons() -> None:
    region = np.zeros((4, 3), dtype=bool)
    region[1:3, 1] = True  # column-major: 5 zeros, 2 ones, 5 zeros
    assert np.array_equal(decode_rle([5, 2, 5], 4, 3), region)
    assert np.array_equal(coco_mask({"size": [4, 3], "counts": [5, 2, 5]}, 4, 3, "a"), region)
    square = coco_mask([[1, 1, 4, 1, 4, 4, 1, 4]], 6, 6, "a")  # PIL fills the closed polygon's pixels
    assert square[1:5, 1:5].all() and square.sum() == 16
    with pytest.raises(DataError, match=r"a\.segmentation\.counts: uncompressed RLE must .* summing to 12"):
        coco_mask({"size": [4, 3], "counts": [5, 2]}, 4, 3, "a")
    with pytest.raises(DataError, match=r"a\.segmentation\.size: expected \[4, 3\]"):
        coco_mask({"size": [3, 4], "counts": [12]}, 4, 3, "a")


def test_compressed_rle_needs_pycocotools() -> None:
    if importlib.util.find_spec("pycocotools") is not None:
        pytest.skip("pycocotools is installed: compressed RLE decodes through it")
    with pytest.raises(DataError, match=r"annotations\[7\] \(id 9\): compressed RLE segmentation needs pycocotools"):
        coco_mask({"size": [4, 3], "counts": "52203"}, 4, 3, "f.json: annotations[7] (id 9)")


def test_crowd_regions_are_ignored_and_voc_borders_kept_as_ignore(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "train2017").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "train2017" / "a.png")
    crowd = np.zeros((8, 8), dtype=bool)
    crowd[:, 6:] = True
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 3, "bbox": [0, 0, 4, 2], "segmentation": [[0, 0, 3, 0, 3, 1, 0, 1]]},
        {"id": 2, "image_id": 5, "category_id": 7, "bbox": [0, 2, 3, 3], "area": 100},
        {"id": 3, "image_id": 5, "category_id": 3, "bbox": [6, 0, 2, 8], "iscrowd": 1,
         "segmentation": {"size": [8, 8], "counts": [48, 16]}},
    ]
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps({
        "images": [{"id": 5, "file_name": "a.png", "width": 8, "height": 8}], "annotations": annotations,
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))
    samples = read_coco(tmp_path, "train2017", 8)
    assert samples.class_names == ("cat", "dog")
    assert samples.box_labels[0].tolist() == [0, 1] and samples.labels[0] == 1  # "area" 100 beats 4 x 2
    np.testing.assert_array_equal(samples.boxes[0], [[0, 0, 4, 2], [0, 2, 3, 5]])  # crowd: no box
    assert samples.masks is not None
    assert (samples.masks[0][:, 6:] == IGNORE_LABEL).all() and (samples.masks[0][0:2, 0:4] == 1).all()
    matrix = confusion(np.zeros((1, 8, 8)), samples.masks[:1], 3)
    assert matrix.sum() == 48  # ignored pixels are not counted


def _coco_tree(tmp_path: Path, payload: object) -> Path:
    (tmp_path / "train2017").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    path = tmp_path / "annotations" / "instances_train2017.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


@pytest.mark.parametrize(("payload", "message"), [
    ("{not json", r"instances_train2017\.json: malformed JSON"),
    ({"images": [], "annotations": []}, r"instances_train2017\.json: categories: missing or not a list"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 8}], "annotations": [], "categories": []},
     r"images\[0\]\.height: missing"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2]}]},
     r"annotations\[0\]\.bbox: expected \[x, y, width, height\]"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2]}]},
     r"annotations\[0\]\.category_id: no category 2"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]},
     r"train2017/a\.png: image file not found"),
])
def test_bad_coco_trees(tmp_path: Path, payload: object, message: str) -> None:
    _coco_tree(tmp_path, payload)
    with pytest.raises(DataError, match=message):
        read_coco(tmp_path, "train2017", 8)


def test_missing_paths_and_bad_voc_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"annotations/instances_val2017\.json: COCO annotation file not found"):
        read_coco(tmp_path, "val2017", 8)
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/train\.txt: VOC image set not found"):
        read_voc(tmp_path, "train", 8)
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object><name>dog</name>")
    with pytest.raises(DataError, match=r"bad\.xml: malformed XML"):
        voc_objects(bad)
    bad.write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(DataError, match=r"bad\.xml: object\[0\]\.name: expected a VOC class"):
        voc_objects(bad)
    bad.write_text("<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax>"
                   "<ymax>4</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"bad\.xml: object\[0\]\.bndbox\.xmax: expected a number, got 'x'"):
        voc_objects(bad)
    bad.write_text("<annotation><object><name>dog</name><difficult>1</difficult></object><object><name>cat</name>"
                   "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object></annotation>")
    boxes, labels = voc_objects(bad)  # difficult objects are left out
    assert boxes.tolist() == [[0, 1, 5, 6]] and labels.tolist() == [VOC_CLASSES.index("cat")]


def test_config_fields(tmp_path: Path) -> None:
    config = SplitDataConfig(source="coco", root="/data/coco")
    assert config.train_split == "train2017" and config.val_split is None
    assert SplitDataConfig(source="voc", root="/data/VOC2012").train_split == "train"
    with pytest.raises(ConfigError, match=r"data.root: required for data.source voc"):
        SplitDataConfig(source="voc")
    with pytest.raises(ConfigError, match=r"data.root: only for data.source coco or voc"):
        SplitDataConfig(source="shapes", root="/x")
    with pytest.raises(ConfigError, match=r"data.val_split: expected a split name"):
        SplitDataConfig(source="coco", root="/x", val_split="../val")
    with pytest.raises(ConfigError, match=r"data.voc_image_set: expected one of segmentation, main"):
        SplitDataConfig(source="voc", root="/x", voc_image_set="layout")
    from aeforge.edge.split.config import load_split_config

    path = tmp_path / "m.yaml"
    path.write_text("model: {family: split}\ndata:\n  source: coco\n  root: /nonexistent/coco\n")
    with pytest.raises(ConfigError, match=r"m.yaml:4: data.root: not a directory: /nonexistent/coco"):
        load_split_config(path)
