"""Task tails of a multi-task (Ladon-style) split model: classification, detection and segmentation.

Every task network is a torchvision ResNet front (stages up to ``split_after``) followed by a task *back*:

``classification``
    the remaining ResNet stages, pooling and classifier (:func:`~.backbones.split_backbone`'s ``back``);
``detection``
    the remaining stages up to ``layer3``, a small FPN-style adapter (1x1 lateral convolutions and a
    top-down sum over the last two stage outputs) and torchvision's FCOS head
    (:class:`torchvision.models.detection.fcos.FCOSHead`), trained with torchvision's FCOS loss
    (:meth:`torchvision.models.detection.FCOS.compute_loss`: centre sampling, sigmoid focal loss, GIoU,
    centre-ness); one anchor point per location, anchor size = stride;
``segmentation``
    the remaining stages up to ``layer2``, torchvision's FCN head (``fcn``) or DeepLabV3 ASPP head
    (``deeplabv3``), upsampled bilinearly to the image size.

The teacher of a task is its network on the unsplit float backbone; in the student the front becomes the
shared quantized head and each task's back sits behind its own decoder (:class:`~.bottleneck.SplitTail`).
:class:`DetectionOutputs` turns the dense FCOS outputs into the top-``k`` candidate boxes (decoded, clipped,
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
from aeforge.errors import ConfigError

DET_LAST_STAGE = "layer3"
SEG_LAST_STAGE = "layer2"
DET_CHANNELS = 64  # FPN and FCOS head width (GroupNorm(16) needs a multiple of 16)
DET_CANDIDATES = 100  # top-k candidate boxes the detection tail outputs (before NMS)


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


class _NoBackbone(nn.Module):
    """Stands in for FCOS's backbone: the features come from the task back, never from FCOS itself."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels


class DetectionBack(nn.Module):
    """Remaining stages -> FPN-style adapter -> FCOS head; ``forward`` returns the dense head outputs.

    The output dict (``cls_logits`` ``(N, A, K)``, ``bbox_regression`` ``(N, A, 4)``, ``bbox_ctrness``
    ``(N, A, 1)``, A anchor points over all levels) feeds :meth:`loss` in training and :meth:`detect`.
    """

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, input_shape: tuple[int, int, int],
                 feature_shape: tuple[int, int, int]) -> None:
        super().__init__()
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOS, FCOSHead
        from torchvision.models.detection.image_list import ImageList

        self.stages = nn.Sequential(OrderedDict(stages))
        self.num_classes = num_classes
        with torch.no_grad():
            outputs = self._stage_outputs(torch.zeros(1, *feature_shape))
        self.levels = min(2, len(outputs))
        self.lateral = nn.ModuleList(nn.Conv2d(int(o.shape[1]), DET_CHANNELS, 1) for o in outputs[-self.levels:])
        self.head = FCOSHead(DET_CHANNELS, 1, num_classes, num_convs=2)
        sizes = tuple((input_shape[1] // int(o.shape[-2]),) for o in outputs[-self.levels:])
        generator = AnchorGenerator(sizes=sizes, aspect_ratios=((1.0,),) * self.levels)
        fcos = FCOS(_NoBackbone(DET_CHANNELS), num_classes, min_size=input_shape[1], max_size=input_shape[2],
                    image_mean=[0.0] * 3, image_std=[1.0] * 3, anchor_generator=generator, head=self.head)
        object.__setattr__(self, "_fcos", fcos)  # torchvision's loss and matching; unregistered (shares head)
        images = ImageList(torch.zeros(1, *input_shape), [tuple(input_shape[1:])])
        level_shapes = [torch.zeros(1, DET_CHANNELS, *o.shape[-2:]) for o in outputs[-self.levels:]]
        anchors = generator(images, level_shapes)[0]
        self.register_buffer("anchors", anchors, persistent=False)
        self.anchors_per_level = [int(o.shape[-2] * o.shape[-1]) for o in outputs[-self.levels:]]
        self.image_size = (int(input_shape[1]), int(input_shape[2]))

    def _stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self._stage_outputs(features)[-self.levels:]
        pyramid = [lateral(level) for lateral, level in zip(self.lateral, levels, strict=True)]
        for i in range(len(pyramid) - 2, -1, -1):  # top-down: coarser levels added into finer ones
            pyramid[i] = pyramid[i] + F.interpolate(pyramid[i + 1], size=pyramid[i].shape[-2:], mode="nearest")
        return self.head(pyramid)

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """torchvision's FCOS loss (classification + box regression + centre-ness) of a batch."""
        anchors = [self.anchors] * len(targets)
        losses = self._fcos.compute_loss(targets, outputs, anchors, self.anchors_per_level)
        return sum(losses.values())  # type: ignore[return-value]

    def detect(self, outputs: dict[str, torch.Tensor], candidates: int = DET_CANDIDATES) -> tuple[torch.Tensor, ...]:
        """Top-``candidates`` boxes ``(N, k, 4)`` (pixels, clipped), scores ``(N, k)`` and labels ``(N, k)``."""
        logits, regression, ctrness = outputs["cls_logits"], outputs["bbox_regression"], outputs["bbox_ctrness"]
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctrness))  # FCOS's score, as torchvision's
        anchors = self.anchors
        centre_x = 0.5 * (anchors[:, 0] + anchors[:, 2])
        centre_y = 0.5 * (anchors[:, 1] + anchors[:, 3])
        size = torch.stack([anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]] * 2, dim=-1)
        rel = regression * size  # BoxLinearCoder(normalize_by_size=True).decode
        height, width = self.image_size
        boxes = torch.stack([(centre_x - rel[..., 0]).clamp(0, width), (centre_y - rel[..., 1]).clamp(0, height),
                             (centre_x + rel[..., 2]).clamp(0, width), (centre_y + rel[..., 3]).clamp(0, height)],
                            dim=-1)
        flat = scores.flatten(1)
        k = min(candidates, int(flat.shape[1]))
        top, index = torch.topk(flat, k, dim=1)
        anchor_index = torch.div(index, self.num_classes, rounding_mode="floor")
        labels = index - anchor_index * self.num_classes
        picked = torch.gather(boxes, 1, anchor_index.unsqueeze(-1).expand(-1, -1, 4))
        return picked, top, labels


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
        raise ConfigError(f"data.source: task {task.name!r} ({task.kind}) needs data.source shapes")
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
        back = DetectionBack(_stages_after(resnet, backbone, split_after, DET_LAST_STAGE), num_classes,
                             input_shape, feature_shape)  # type: ignore[arg-type]
    else:
        stages = _stages_after(resnet, backbone, split_after, SEG_LAST_STAGE)
        with torch.no_grad():
            channels = int(nn.Sequential(OrderedDict(stages))(torch.zeros(1, *feature_shape)).shape[1])
        back = SegmentationBack(stages, num_classes, str(task.head), channels, tuple(input_shape[1:]))  # type: ignore
    return TaskNet(front, back)


def student_back(teacher: TaskNet) -> nn.Module:
    """A trainable copy of the teacher's back (the student's task tail starts from it)."""
    back = copy.deepcopy(teacher.back)  # (one memo: the copied FCOS helper shares the copied head)
    if isinstance(back, DetectionBack):
        assert back._fcos.head is back.head
    return back


def task_loss(task: TaskConfig, back: nn.Module, outputs: Any, targets: dict[str, Any]) -> torch.Tensor:
    """The supervised loss of one task: cross-entropy, the FCOS loss, or per-pixel cross-entropy."""
    if task.kind == "classification":
        return F.cross_entropy(outputs, targets["labels"])
    if task.kind == "detection":
        return back.loss(outputs, targets["detection"])  # type: ignore[operator]
    return F.cross_entropy(outputs, targets["masks"])


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
