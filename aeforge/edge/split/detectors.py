"""Detection tails of a multi-task split model: torchvision's FCOS, RetinaNet and Faster R-CNN behind one adapter.

Every detection back (``model.tasks[i].head``: ``fcos`` | ``retinanet`` | ``fasterrcnn``) is a
:class:`PyramidBack`: the remaining ResNet stages up to ``layer3`` and a small FPN-style adapter (1x1 lateral
convolutions and a top-down sum over the last two stage outputs), then a torchvision detector's head, with the
same three methods the multi-task training, evaluation and export call:

``forward(features)``
    dense outputs (a dict of tensors);
``loss(outputs, targets)``
    torchvision's own loss of that detector (targets: a list of ``{"boxes", "labels"}``, labels ``0..K-1``);
``detect(outputs)``
    the top-``candidates`` boxes ``(N, k, 4)`` (pixels, clipped), scores ``(N, k)`` and labels ``(N, k)``, in
    fixed shapes with a dynamic batch, so the same function is the exported ONNX graph; per-class
    non-maximum suppression follows in NumPy (:func:`~.task_outputs.postprocess_detections`).

``fcos``
    :class:`~torchvision.models.detection.fcos.FCOSHead`, one anchor point per location (size = stride),
    torchvision's FCOS loss; score ``sqrt(sigmoid(cls) * sigmoid(ctrness))``.
``retinanet``
    :class:`~torchvision.models.detection.retinanet.RetinaNetHead` (GroupNorm towers), anchors of sizes
    (stride, 2 stride) and aspect ratios 0.5, 1, 2 per location; torchvision's RetinaNet loss (focal loss,
    L1 box loss, IoU matching 0.5/0.4); score ``sigmoid(cls)``.
``fasterrcnn``
    torchvision's :class:`~torchvision.models.detection.rpn.RPNHead` on the same anchors, then
    :class:`~torchvision.models.detection.faster_rcnn.TwoMLPHead` and ``FastRCNNPredictor`` on
    ``roi_align`` features of the finest pyramid level; losses: torchvision's RPN loss and Fast R-CNN loss with
    its proposal sampling (``RoIHeads.select_training_samples``). Unlike torchvision's Faster R-CNN, the
    proposals are the top-``FRCNN_PROPOSALS`` anchors by objectness **without proposal NMS** (in training and
    inference alike): torchvision's per-image proposal loop and NMS trace to a graph fixed to the export's
    batch size, this one keeps a dynamic batch. Score: the softmax class probability, per class and proposal.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

DET_CHANNELS = 64  # FPN and head width (GroupNorm(16) needs a multiple of 16)
DET_CANDIDATES = 100  # top-k candidate boxes a detection tail outputs (before NMS)
DETECTORS = ("fcos", "retinanet", "fasterrcnn")
FRCNN_PROPOSALS = 64  # Faster R-CNN: proposals per image (top anchors by objectness)
FRCNN_ROI_SIZE = 4  # Faster R-CNN: roi_align output size (pixels of the finest pyramid level)
FRCNN_HIDDEN = 128  # Faster R-CNN: width of the two-layer box head
_ASPECT_RATIOS = (0.5, 1.0, 2.0)


class _NoBackbone(nn.Module):
    """Stands in for a torchvision detector's backbone: the features come from the task back."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights: tuple[float, ...],
                 clip: float) -> torch.Tensor:
    """torchvision's ``BoxCoder.decode_single`` with broadcasting: ``deltas (..., 4)`` against ``anchors (..., 4)``."""
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    ctr_x = anchors[..., 0] + 0.5 * widths
    ctr_y = anchors[..., 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = torch.clamp(deltas[..., 2] / ww, max=clip)
    dh = torch.clamp(deltas[..., 3] / wh, max=clip)
    pred_x, pred_y = dx * widths + ctr_x, dy * heights + ctr_y
    half_w, half_h = 0.5 * torch.exp(dw) * widths, 0.5 * torch.exp(dh) * heights
    return torch.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], dim=-1)


def _clip(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    height, width = image_size
    return torch.stack([boxes[..., 0].clamp(0, width), boxes[..., 1].clamp(0, height),
                        boxes[..., 2].clamp(0, width), boxes[..., 3].clamp(0, height)], dim=-1)


def _top_candidates(scores: torch.Tensor, boxes: torch.Tensor, num_classes: int,
                    candidates: int) -> tuple[torch.Tensor, ...]:
    """Top-k of ``scores (N, A, K)`` with their boxes (``(N, A, 4)`` shared, or ``(N, A, K, 4)`` per class)."""
    flat = scores.flatten(1)
    k = min(candidates, int(flat.shape[1]))
    top, index = torch.topk(flat, k, dim=1)
    anchor_index = torch.div(index, num_classes, rounding_mode="floor")
    labels = index - anchor_index * num_classes
    if boxes.dim() == 4:  # per-class boxes: pick (anchor, class) pairs
        picked = torch.gather(boxes.flatten(1, 2), 1, index.unsqueeze(-1).expand(-1, -1, 4))
    else:
        picked = torch.gather(boxes, 1, anchor_index.unsqueeze(-1).expand(-1, -1, 4))
    return picked, top, labels


class PyramidBack(nn.Module):
    """Remaining stages (``stages``) and the FPN-style adapter; subclasses add a detector head."""

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, input_shape: tuple[int, int, int],
                 feature_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.stages = nn.Sequential(OrderedDict(stages))
        self.num_classes = num_classes
        with torch.no_grad():
            outputs = self._stage_outputs(torch.zeros(1, *feature_shape))
        self.levels = min(2, len(outputs))
        self.lateral = nn.ModuleList(nn.Conv2d(int(o.shape[1]), DET_CHANNELS, 1) for o in outputs[-self.levels:])
        self.level_shapes = [(int(o.shape[-2]), int(o.shape[-1])) for o in outputs[-self.levels:]]
        self.strides = [int(input_shape[1]) // height for height, _ in self.level_shapes]
        self.anchors_per_level = [height * width for height, width in self.level_shapes]
        self.image_size = (int(input_shape[1]), int(input_shape[2]))
        self.input_shape = tuple(int(s) for s in input_shape)

    def _stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def pyramid(self, features: torch.Tensor) -> list[torch.Tensor]:
        """The adapter's feature maps (``DET_CHANNELS`` each), finest first."""
        levels = self._stage_outputs(features)[-self.levels:]
        pyramid = [lateral(level) for lateral, level in zip(self.lateral, levels, strict=True)]
        for i in range(len(pyramid) - 2, -1, -1):  # top-down: coarser levels added into finer ones
            pyramid[i] = pyramid[i] + F.interpolate(pyramid[i + 1], size=pyramid[i].shape[-2:], mode="nearest")
        return pyramid

    def _anchor_generator(self, sizes: tuple[tuple[int, ...], ...], ratios: tuple[float, ...]) -> nn.Module:
        """A torchvision AnchorGenerator and the fixed anchors of the input size (buffer ``anchors``)."""
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.image_list import ImageList

        generator = AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * self.levels)
        images = ImageList(torch.zeros(1, *self.input_shape), [self.image_size])
        anchors = generator(images, [torch.zeros(1, DET_CHANNELS, *shape) for shape in self.level_shapes])[0]
        self.register_buffer("anchors", anchors, persistent=False)
        return generator

    @property
    def candidates(self) -> int:
        """Candidate boxes ``detect`` outputs per image."""
        return min(DET_CANDIDATES, int(self.anchors.shape[0]) * self.num_classes)


class FCOSBack(PyramidBack):
    """FCOS: ``forward`` returns ``cls_logits`` ``(N, A, K)``, ``bbox_regression`` ``(N, A, 4)``,
    ``bbox_ctrness`` ``(N, A, 1)`` (A anchor points over all levels)."""

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, input_shape: tuple[int, int, int],
                 feature_shape: tuple[int, int, int]) -> None:
        super().__init__(stages, num_classes, input_shape, feature_shape)
        from torchvision.models.detection.fcos import FCOS, FCOSHead

        self.head = FCOSHead(DET_CHANNELS, 1, num_classes, num_convs=2)
        generator = self._anchor_generator(tuple((stride,) for stride in self.strides), (1.0,))
        fcos = FCOS(_NoBackbone(DET_CHANNELS), num_classes, min_size=input_shape[1], max_size=input_shape[2],
                    image_mean=[0.0] * 3, image_std=[1.0] * 3, anchor_generator=generator, head=self.head)
        object.__setattr__(self, "_fcos", fcos)  # torchvision's loss and matching; unregistered (shares head)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.pyramid(features))

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
        boxes = _clip(torch.stack([centre_x - rel[..., 0], centre_y - rel[..., 1], centre_x + rel[..., 2],
                                   centre_y + rel[..., 3]], dim=-1), self.image_size)
        return _top_candidates(scores, boxes, self.num_classes, candidates)


class RetinaNetBack(PyramidBack):
    """RetinaNet: ``forward`` returns ``cls_logits`` ``(N, A, K)`` and ``bbox_regression`` ``(N, A, 4)``."""

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, input_shape: tuple[int, int, int],
                 feature_shape: tuple[int, int, int]) -> None:
        super().__init__(stages, num_classes, input_shape, feature_shape)
        from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

        sizes = tuple((stride, 2 * stride) for stride in self.strides)
        per_location = len(sizes[0]) * len(_ASPECT_RATIOS)
        self.head = RetinaNetHead(DET_CHANNELS, per_location, num_classes, norm_layer=partial(nn.GroupNorm, 16))
        generator = self._anchor_generator(sizes, _ASPECT_RATIOS)
        retina = RetinaNet(_NoBackbone(DET_CHANNELS), num_classes, min_size=input_shape[1], max_size=input_shape[2],
                           image_mean=[0.0] * 3, image_std=[1.0] * 3, anchor_generator=generator, head=self.head)
        object.__setattr__(self, "_retina", retina)  # torchvision's matcher, box coder and loss; unregistered

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.pyramid(features))

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """torchvision's RetinaNet loss (sigmoid focal classification + L1 box regression) of a batch."""
        losses = self._retina.compute_loss(targets, outputs, [self.anchors] * len(targets))
        return sum(losses.values())  # type: ignore[return-value]

    def detect(self, outputs: dict[str, torch.Tensor], candidates: int = DET_CANDIDATES) -> tuple[torch.Tensor, ...]:
        """Top-``candidates`` boxes ``(N, k, 4)`` (pixels, clipped), scores ``(N, k)`` and labels ``(N, k)``."""
        coder = self._retina.box_coder
        boxes = _clip(decode_boxes(outputs["bbox_regression"], self.anchors, coder.weights, coder.bbox_xform_clip),
                      self.image_size)
        return _top_candidates(torch.sigmoid(outputs["cls_logits"]), boxes, self.num_classes, candidates)


class FasterRCNNBack(PyramidBack):
    """Faster R-CNN: ``forward`` returns the RPN's ``objectness`` ``(N, A)`` and ``rpn_deltas`` ``(N, A, 4)`` and
    the finest pyramid level ``roi_features``; the RoI head runs in :meth:`loss` and :meth:`detect`."""

    def __init__(self, stages: list[tuple[str, nn.Module]], num_classes: int, input_shape: tuple[int, int, int],
                 feature_shape: tuple[int, int, int]) -> None:
        super().__init__(stages, num_classes, input_shape, feature_shape)
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.roi_heads import RoIHeads
        from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
        from torchvision.ops import MultiScaleRoIAlign

        sizes = tuple((stride, 2 * stride) for stride in self.strides)
        self.rpn_head = RPNHead(DET_CHANNELS, len(sizes[0]) * len(_ASPECT_RATIOS))
        self.box_head = TwoMLPHead(DET_CHANNELS * FRCNN_ROI_SIZE**2, FRCNN_HIDDEN)
        self.box_predictor = FastRCNNPredictor(FRCNN_HIDDEN, num_classes + 1)  # class 0: background
        generator = self._anchor_generator(sizes, _ASPECT_RATIOS)
        self.proposals = min(FRCNN_PROPOSALS, int(self.anchors.shape[0]))
        top = {"training": self.proposals, "testing": self.proposals}
        rpn = RegionProposalNetwork(generator, self.rpn_head, 0.7, 0.3, 256, 0.5, top, top, 1.0)
        pool = MultiScaleRoIAlign(["0"], FRCNN_ROI_SIZE, 2)
        roi = RoIHeads(pool, self.box_head, self.box_predictor, 0.5, 0.5, 128, 0.25, None, 0.0, 1.0,
                       DET_CANDIDATES)
        object.__setattr__(self, "_rpn", rpn)  # matching, sampling and losses; unregistered (shares the heads)
        object.__setattr__(self, "_roi", roi)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        pyramid = self.pyramid(features)
        objectness, deltas = self.rpn_head(pyramid)
        count = objectness[0].shape[0]
        flat_objectness = torch.cat([o.permute(0, 2, 3, 1).reshape(count, -1) for o in objectness], dim=1)
        flat_deltas = torch.cat([d.reshape(count, -1, 4, d.shape[-2], d.shape[-1]).permute(0, 3, 4, 1, 2)
                                 .reshape(count, -1, 4) for d in deltas], dim=1)
        return {"objectness": flat_objectness, "rpn_deltas": flat_deltas, "roi_features": pyramid[0]}

    def _proposals(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, P, 4)`` proposals: the top-P anchors by objectness, decoded and clipped (no gradient)."""
        objectness, deltas = outputs["objectness"].detach(), outputs["rpn_deltas"].detach()
        _, index = torch.topk(objectness, self.proposals, dim=1)
        anchors = self.anchors[index]
        picked = torch.gather(deltas, 1, index.unsqueeze(-1).expand(-1, -1, 4))
        coder = self._rpn.box_coder
        return _clip(decode_boxes(picked, anchors, coder.weights, coder.bbox_xform_clip), self.image_size)

    def _box_outputs(self, features: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.ops import roi_align

        pooled = roi_align(features, rois, FRCNN_ROI_SIZE, spatial_scale=1.0 / self.strides[0], sampling_ratio=2)
        return self.box_predictor(self.box_head(pooled))

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """torchvision's RPN loss (objectness + box) plus its Fast R-CNN loss on sampled proposals."""
        from torchvision.models.detection.roi_heads import fastrcnn_loss

        anchors = [self.anchors] * len(targets)
        labels, matched = self._rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = self._rpn.box_coder.encode(matched, anchors)
        rpn_objectness, rpn_box = self._rpn.compute_loss(outputs["objectness"].reshape(-1, 1),
                                                         outputs["rpn_deltas"].reshape(-1, 4), labels,
                                                         regression_targets)
        shifted = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]  # 0 is background here
        proposals, _, roi_labels, roi_targets = self._roi.select_training_samples(
            list(self._proposals(outputs)), shifted)
        rois = torch.cat([torch.cat([torch.full((len(p), 1), float(i), dtype=p.dtype, device=p.device), p], dim=1)
                          for i, p in enumerate(proposals)])
        class_logits, box_regression = self._box_outputs(outputs["roi_features"], rois)
        roi_class, roi_box = fastrcnn_loss(class_logits, box_regression, roi_labels, roi_targets)
        return rpn_objectness + rpn_box + roi_class + roi_box

    def detect(self, outputs: dict[str, torch.Tensor], candidates: int = DET_CANDIDATES) -> tuple[torch.Tensor, ...]:
        """Top-``candidates`` (proposal, class) boxes ``(N, k, 4)``, scores ``(N, k)`` and labels ``(N, k)``."""
        proposals = self._proposals(outputs)  # (N, P, 4)
        count, per_image = proposals.shape[0], proposals.shape[1]
        batch_index = torch.arange(count, dtype=proposals.dtype, device=proposals.device)
        batch_index = batch_index.reshape(-1, 1, 1).expand(-1, per_image, 1)
        rois = torch.cat([batch_index, proposals], dim=2).reshape(-1, 5)
        class_logits, box_regression = self._box_outputs(outputs["roi_features"], rois)
        scores = F.softmax(class_logits, dim=-1)[:, 1:].reshape(count, per_image, self.num_classes)
        deltas = box_regression.reshape(count, per_image, self.num_classes + 1, 4)[:, :, 1:]
        coder = self._roi.box_coder
        boxes = _clip(decode_boxes(deltas, proposals.unsqueeze(2), coder.weights, coder.bbox_xform_clip),
                      self.image_size)
        return _top_candidates(scores, boxes, self.num_classes, candidates)

    @property
    def candidates(self) -> int:
        return min(DET_CANDIDATES, self.proposals * self.num_classes)


DETECTOR_BACKS: dict[str, type[PyramidBack]] = {"fcos": FCOSBack, "retinanet": RetinaNetBack,
                                                "fasterrcnn": FasterRCNNBack}
"""The detection back of each ``head`` name."""
