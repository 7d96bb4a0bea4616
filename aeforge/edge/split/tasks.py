"""Task tails of a multi-task (Ladon-style) split model: classification, detection and segmentation.

Every task network is a torchvision ResNet front (stages up to ``split_after``) followed by a task *back*:

``classification``
    the remaining ResNet stages, pooling and classifier (:func:`~.backbones.split_backbone`'s ``back``);
``detection``
    the remaining stages up to ``layer3``, a small FPN-style adapter (1x1 lateral convolutions and a
    top-down sum over the last two stage outputs) and a torchvision detector head (``head``: ``fcos``,
    ``retinanet`` or ``fasterrcnn``), trained with that detector's torchvision loss (:mod:`~.detectors`);
``segmentation``
    the remaining stages up to ``layer2``, torchvision's FCN head (``fcn``) or DeepLabV3 ASPP head
    (``deeplabv3``), upsampled bilinearly to the image size.

The teacher of a task is its network on the unsplit float backbone; in the student the front becomes the
shared quantized head and each task's back sits behind its own decoder (:class:`~.bottleneck.SplitTail`).
A detection back's ``detect`` turns its dense outputs into the top-``k`` candidate boxes (decoded, clipped,
score-sorted) inside the exported ONNX graph; non-maximum suppression runs afterwards in NumPy
(:func:`~.task_outputs.postprocess_detections`), on the server and in evaluation alike.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aeforge.edge.split.backbones import backbone_stages, build_backbone, split_backbone
from aeforge.edge.split.config import TaskConfig
from aeforge.edge.split.detectors import (  # noqa: F401  (DET_CANDIDATES, DET_CHANNELS, PyramidBack: re-exported)
    DET_CANDIDATES,
    DET_CHANNELS,
    DETECTOR_BACKS,
    FCOSBack,
    PyramidBack,
)
from aeforge.edge.split.task_outputs import IGNORE_LABEL
from aeforge.errors import ConfigError

DET_LAST_STAGE = "layer3"
SEG_LAST_STAGE = "layer2"
DetectionBack = FCOSBack  # the FCOS detection back (its name before RetinaNet and Faster R-CNN tails existed)


def _stages_after(resnet: nn.Module, backbone: str, split_after: str, last: str) -> list[tuple[str, nn.Module]]:
    stages, _ = backbone_stages(resnet, backbone)
    names = [name for name, _, _ in stages]
    return [(name, module) for name, module, _ in stages[names.index(split_after) + 1:names.index(last) + 1]]


class TaskNet(nn.Module):
    """``back(front(x))``: a task network on an unsplit float backbone (a teacher)."""

    def __init__(self, front: nn.Module, back: nn.Module) -> None:
        super().__init__()
        self.front = front
        self.back = back

    def forward(self, x: torch.Tensor) -> Any:
        return self.back(self.front(x))


class SegmentationBack(nn.Module):
    """Remaining stages (up to layer2) -> FCN or DeepLabV3 head -> bilinear upsampling to the image size."""

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, head: str, in_channels: int,
                 image_size: tuple[int, int]) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead
        from torchvision.models.segmentation.fcn import FCNHead

        self.stages = nn.Sequential(OrderedDict(stages))
        self.head = FCNHead(in_channels, num_classes) if head == "fcn" else DeepLabHead(in_channels, num_classes)
        self.image_size = image_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.stages(features)), size=self.image_size, mode="bilinear",
                             align_corners=False)


def task_classes(task: TaskConfig, data: Any) -> int:
    """Outputs of ``task``'s tail on ``data``: image classes, object kinds, or mask classes (with background)."""
    if task.kind == "classification":
        return int(data.num_classes)
    if not hasattr(data, "num_kinds"):
        raise ConfigError(f"data.source: task {task.name!r} ({task.kind}) needs boxes and masks: data.source "
                          f"shapes, coco or voc, got {getattr(data, 'source', None)!r}")
    if task.kind == "segmentation" and getattr(data, "masks_train", None) is None:
        raise ConfigError(f"data: task {task.name!r} (segmentation) needs masks, and this {data.source} data has "
                          f"none (VOC: data.voc_image_set: segmentation)")
    return int(data.num_kinds if task.kind == "detection" else data.num_mask_classes)


def build_task_net(task: TaskConfig, backbone: str, split_after: str, input_shape: tuple[int, int, int],
                   num_classes: int, image_classes: int) -> TaskNet:
    """A randomly initialised (torch's global RNG) teacher for ``task``: ResNet front + task back.

    ``num_classes``: the task's outputs; ``image_classes``: the ResNet classifier's (classification only).
    """
    resnet = build_backbone(backbone, image_classes if task.kind == "classification" else 2)
    view = split_backbone(resnet, backbone, split_after)
    front = view.front
    with torch.no_grad():
        feature_shape = tuple(int(s) for s in front(torch.zeros(1, *input_shape)).shape[1:])
    back: nn.Module
    if task.kind == "classification":
        back = view.back
    elif task.kind == "detection":
        back = DETECTOR_BACKS[str(task.head)](_stages_after(resnet, backbone, split_after, DET_LAST_STAGE),
                                              num_classes, input_shape, feature_shape)  # type: ignore[arg-type]
    else:
        stages = _stages_after(resnet, backbone, split_after, SEG_LAST_STAGE)
        with torch.no_grad():
            channels = int(nn.Sequential(OrderedDict(stages))(torch.zeros(1, *feature_shape)).shape[1])
        back = SegmentationBack(stages, num_classes, str(task.head), channels, tuple(input_shape[1:]))  # type: ignore
    return TaskNet(front, back)


def student_back(teacher: TaskNet) -> nn.Module:
    """A trainable copy of the teacher's back (the student's task tail starts from it)."""
    back = copy.deepcopy(teacher.back)  # (one memo: the copied torchvision helpers share the copied heads)
    if isinstance(back, FCOSBack):
        assert back._fcos.head is back.head
    return back


def task_loss(task: TaskConfig, back: nn.Module, outputs: Any, targets: dict[str, Any]) -> torch.Tensor:
    """The supervised loss of one task: cross-entropy, the detector's loss, or per-pixel cross-entropy."""
    if task.kind == "classification":
        return F.cross_entropy(outputs, targets["labels"])
    if task.kind == "detection":
        return back.loss(outputs, targets["detection"])  # type: ignore[operator]
    return F.cross_entropy(outputs, targets["masks"], ignore_index=IGNORE_LABEL)


class ExportedTail(nn.Module):
    """What a task's ONNX tail computes from the dequantized code: logits, top-k boxes, or mask logits."""

    def __init__(self, task: TaskConfig, tail: nn.Module) -> None:
        super().__init__()
        self.kind = task.kind
        self.tail = tail

    def forward(self, code: torch.Tensor) -> Any:
        out = self.tail(code)
        if self.kind == "detection":
            return self.tail.back.detect(out)
        return out


OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "classification": ("logits",), "detection": ("boxes", "scores", "labels"), "segmentation": ("mask_logits",),
}
"""The ONNX output names of each task kind's tail."""
