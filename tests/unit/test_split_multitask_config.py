"""Multi-task split configs (``model.tasks``): defaults, both places, and errors naming the field."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from aeforge.edge.split.config import parse_split_config
from aeforge.errors import ConfigError

BASE = "model:\n  family: split\n  tasks: TASKS\ndata:\n  source: shapes\n  image_size: 64\n"


def _parse(tasks: str, base: str = BASE) -> object:
    return parse_split_config(base.replace("TASKS", tasks), source="m.yaml")


def test_defaults_names_and_heads() -> None:
    config = _parse("[classification, {kind: detection, loss_weight: 2}, {kind: segmentation, head: deeplabv3}]")
    tasks = config.model.tasks
    assert [t.name for t in tasks] == ["cls", "det", "seg"]
    assert [t.head for t in tasks] == ["backbone", "fcos", "deeplabv3"]
    assert tasks[1].loss_weight == 2.0 and tasks[0].loss_weight == 1.0


def test_top_level_tasks_and_round_trip_through_the_card() -> None:
    config = parse_split_config("model: {family: split}\ntasks: [{kind: segmentation, name: masks}]\n"
                                "data: {source: shapes}\n", source="m.yaml")
    assert config.tasks is None and [t.name for t in config.model.tasks] == ["masks"]
    again = parse_split_config(yaml.safe_dump(dataclasses.asdict(config)), source="card.json")
    assert again.model.tasks == config.model.tasks


def test_single_task_config_unchanged() -> None:
    config = parse_split_config("model: {family: split}\n", source="m.yaml")
    assert config.model.tasks is None and config.tasks is None


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ("[{kind: depth}]", "model.tasks[0].kind: expected one of classification, detection, segmentation"),
        ("[classification, {kind: detection, loss_weight: 0}]", "model.tasks[1].loss_weight: must be a positive"),
        ("[{kind: detection, head: yolo}]", "model.tasks[0].head: a detection tail is one of fcos"),
        ("[{kind: segmentation, head: fcos}]", "model.tasks[0].head: a segmentation tail is one of fcn, deeplabv3"),
        ("[classification, classification]", "model.tasks[1].name: duplicate task name 'cls'"),
        ("[{kind: classification, name: Cls-1}]", "model.tasks[0].name: expected 1-16 of a-z"),
        ("[{kind: detection, lr: 1}]", "model.tasks[0].lr: unknown key"),
        ("[{kind: detection, nms_iou: 1.5}]", "model.tasks[0].nms_iou: must be a number in [0, 1]"),
        ("[{kind: detection, detections: 0}]", "model.tasks[0].detections: must be an integer in 1..100"),
        ("[]", "model.tasks: expected a non-empty list"),
        ("[7]", "model.tasks[0]: expected a mapping"),
    ],
)
def test_task_errors_name_the_field(tasks: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(tasks)
    assert expected in str(info.value), str(info.value)
    assert str(info.value).startswith("m.yaml"), str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: {family: split, tasks: [detection]}\ndata: {source: digits}\n",
         "data.source: tasks det need boxes and masks: use data.source shapes"),
        ("model: {family: split, tasks: [classification], bottleneck: entropic}\n",
         "model.bottleneck: model.tasks needs the quantized bottleneck"),
        ("model: {family: split, tasks: [classification], backbone: mobilenet_v2, split_after: features.3}\n",
         "model.backbone: model.tasks supports resnet18, resnet50"),
        ("model: {family: split, tasks: [classification], split_after: layer3}\n",
         "model.split_after: with model.tasks split after one of stem, layer1, layer2"),
        ("model: {family: split, tasks: [classification], num_classes: 3}\n", "model.num_classes: not supported"),
        ("model: {family: split, tasks: [classification]}\ntasks: [classification]\n",
         "tasks: given both at the top level and as model.tasks"),
        ("data: {source: shapes, shapes_count: 5}\n", "data.shapes_count: must be >= 20"),
        ("data: {source: shapes, shapes_per_image: 9}\n", "data.shapes_per_image: must be in 1..8"),
        ("data: {source: shapes, image_size: 16}\n", "data.image_size: shapes images must be >= 32"),
    ],
)
def test_multitask_errors_name_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_split_config(text, source="m.yaml")
    assert expected in str(info.value), str(info.value)


def test_shipped_multitask_example_loads() -> None:
    from pathlib import Path

    from aeforge.edge.split.config import config_family, load_split_config

    path = Path(__file__).resolve().parents[2] / "aeforge" / "configs" / "split_multitask_shapes.yaml"
    config = load_split_config(path)
    assert config_family(path) == "split" and config.data.source == "shapes"
    assert [(t.name, t.kind, t.head) for t in config.model.tasks] == [
        ("cls", "classification", "backbone"), ("det", "detection", "fcos"), ("seg", "segmentation", "fcn")]
