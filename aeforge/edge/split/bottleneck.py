"""Bottleneck injection: a backbone cut at a stage, with a quantized encoder (head) and a decoder (tail).

:func:`build_split_model` returns a :class:`SplitModel`:

``head`` (runs on the device)
    an input quantizer, the backbone's stages up to the split converted to fixed point (BN folded
    into Brevitas convolutions with power-of-two weight, bias and activation types), and an encoder of
    channel-reducing convolutions ending in the *code*: ``C`` channels of ``B``-bit values with a
    power-of-two scale (unsigned after a ReLU, or signed). Every operation is fixed-point arithmetic
    that float32 computes exactly, so the head exports through :func:`aeforge.edge.onnx_export.export_edge_onnx`
    and ONNX Runtime reproduces PyTorch's codes exactly.
``tail`` (runs on the server, float)
    a decoder restoring the channels the backbone expects at the split, the rest of the backbone
    and its classifier.

The teacher (the unmodified float backbone) is kept beside the student, unregistered, for
:meth:`SplitModel.teacher_features` (its features at the split point) and distillation.

Activation types are chosen by calibration (:func:`calibrate`): for each :class:`QPoint` the
power-of-two range minimising the quantization MSE on a batch. Types persist in the state dict
(``_extra_state``), so a saved student reloads with the same grids.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from aeforge.edge.split.backbones import build_backbone, load_backbone_weights, quantize_front, split_backbone
from aeforge.edge.split.config import check_split_point
from aeforge.edge.split.fixed import (  # noqa: F401  (re-exported: the building blocks live in fixed.py)
    BIAS_BITS,
    QConv,
    QPoint,
    bn_as_conv,
    calibrate,
    choose_activation_type,
    fold_conv_bn,
    parameter_type,
    qconvs,
    qpoints,
)
from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint


# ------------------------------------------------------------------------------------ the split model
@dataclass(frozen=True)
class SplitSpec:
    """What defines a split model's architecture (saved with the student)."""

    backbone: str
    split_after: str
    channels: int
    bits: int
    num_classes: int
    input_shape: tuple[int, int, int]
    code_signed: bool = False
    head_bits: int = 8
    encoder_channels: int = 32
    feature_shape: tuple[int, int, int] = (0, 0, 0)  # the teacher's features at the split (C, H, W)
    feature_nonnegative: bool = True
    bottleneck: str = "quantized"  # quantized | entropic (aeforge.edge.split.entropic)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        data = dict(data)
        for key in ("input_shape", "feature_shape"):
            data[key] = tuple(data[key])
        return cls(**data)


class SplitHead(nn.Module):
    """Device side: input quantizer, fixed-point backbone stages up to the split, encoder -> code values."""

    def __init__(self, input_quant: QPoint, front: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.input_quant = input_quant
        self.front = front
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.front(self.input_quant(x)))

    @property
    def code(self) -> QPoint:
        return self.encoder[-1]


class SplitTail(nn.Module):
    """Server side (float): decoder to the split's feature shape, remaining backbone stages, classifier."""

    def __init__(self, decoder: nn.Module, back: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.back = back

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.back(self.decoder(code))


class SplitModel(nn.Module):
    """``forward(x) = tail(head(x))``; the frozen teacher is kept unregistered (not in the state dict)."""

    def __init__(self, spec: SplitSpec, head: SplitHead, tail: SplitTail, teacher: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.head = head
        self.tail = tail
        object.__setattr__(self, "_teacher", teacher)

    @property
    def teacher(self) -> nn.Module:
        """The unmodified float backbone (torchvision layout)."""
        return self._teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))

    def optimizer_groups(self, params: Iterable[nn.Parameter], lr: float) -> list[dict[str, Any]]:
        """``params`` as optimizer groups, all at ``lr`` (a bottleneck with its own rates overrides this)."""
        return [{"params": list(params), "lr": lr}]

    def decoded_features(self, x: torch.Tensor) -> torch.Tensor:
        """The student's reconstruction of the split features (decoder output)."""
        return self.tail.decoder(self.head(x))

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's features at the split point (frozen, eval mode)."""
        view = split_backbone(self._teacher, self.spec.backbone, self.spec.split_after)
        self._teacher.eval()
        return view.front(x)

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        self._teacher.eval()
        return self._teacher(x)

    @property
    def code_spec(self) -> FixedPoint:
        """The code's fixed-point type (scale ``2**-frac_bits``, zero point 0)."""
        spec = self.head.code.spec
        if spec is None:
            raise ConfigError("the split model is not calibrated (call calibrate(model.head, images))")
        return spec

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the code."""
        _, height, width = self.spec.feature_shape
        return (self.spec.channels, height, width)


def _encoder(spec: SplitSpec) -> nn.Sequential:
    features = spec.feature_shape[0]
    hidden = spec.encoder_channels
    first = nn.Conv2d(features, hidden, 3, padding=1)
    last = nn.Conv2d(hidden, spec.channels, 3, padding=1)
    layers: list[nn.Module] = [QConv(first, spec.head_bits, "encoder"), nn.ReLU(),
                               QPoint(spec.head_bits - 1, signed=False, group="encoder"),
                               QConv(last, spec.head_bits, "encoder")]
    if not spec.code_signed:
        layers.append(nn.ReLU())
    layers.append(QPoint(spec.bits, signed=spec.code_signed, group="encoder"))
    return nn.Sequential(*layers)


def _decoder(spec: SplitSpec) -> nn.Sequential:
    features = spec.feature_shape[0]
    hidden = spec.encoder_channels
    layers: list[nn.Module] = [
        nn.Conv2d(spec.channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, features, 3, padding=1, bias=False), nn.BatchNorm2d(features),
    ]
    if spec.feature_nonnegative:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def normalize_input_size(input_size: int | Sequence[int]) -> tuple[int, int, int]:
    """``32`` / ``(32, 32)`` / ``(3, 32, 32)`` -> ``(3, H, W)`` (torchvision backbones take RGB)."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        shape: tuple[int, ...] = (3, input_size, input_size)
    else:
        shape = tuple(int(s) for s in input_size)
        if len(shape) == 2:
            shape = (3, *shape)
    if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
        raise ConfigError(f"input_size: expected H (square), (H, W) or (3, H, W), got {input_size!r}")
    return shape  # type: ignore[return-value]


def build_split_model(
    backbone: str = "resnet18",
    split_after: str = "layer1",
    channels: int = 4,
    bits: int = 4,
    num_classes: int = 10,
    weights: str | None = None,
    input_size: int | Sequence[int] = 32,
    *,
    code_signed: bool = False,
    head_bits: int = 8,
    encoder_channels: int | None = None,
    teacher: nn.Module | None = None,
    calibration: torch.Tensor | None = None,
) -> SplitModel:
    """Cut ``backbone`` after stage ``split_after`` and inject a ``channels`` x ``bits``-bit bottleneck.

    The teacher is ``teacher`` if given, else a torchvision ``backbone`` with ``num_classes`` outputs,
    randomly initialised (under the caller's torch seed) or loaded from the local state dict ``weights``.
    The student's head and tail start from the teacher's weights; encoder and decoder are new.
    ``calibration`` images (default: 16 seeded random images) set the head's activation types.
    """

    check_split_point(backbone, split_after, "split_after")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels: must be a positive integer, got {channels!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not (2 if code_signed else 1) <= bits <= 16:
        raise ConfigError(f"bits: must be an integer in {2 if code_signed else 1}..16, got {bits!r}")
    if not 3 <= head_bits <= 8:
        raise ConfigError(f"head_bits: must be in 3..8, got {head_bits!r}")
    shape = normalize_input_size(input_size)
    if teacher is None:
        teacher = build_backbone(backbone, num_classes)
        if weights is not None:
            load_backbone_weights(teacher, weights)
    teacher.eval()
    view = split_backbone(teacher, backbone, split_after)
    with torch.no_grad():
        try:
            features = view.front(torch.zeros(1, *shape))
            logits = view.back(features)
        except RuntimeError as error:
            raise ConfigError(f"input_size {shape}: too small for {backbone} split after {split_after}: "
                              f"{str(error).splitlines()[0]}") from None
    if logits.shape[-1] != num_classes:
        raise ConfigError(f"num_classes: the teacher has {logits.shape[-1]} outputs, expected {num_classes}")
    feature_shape = tuple(int(s) for s in features.shape[1:])
    spec = SplitSpec(
        backbone=backbone, split_after=split_after, channels=channels, bits=bits, num_classes=num_classes,
        input_shape=shape, code_signed=code_signed, head_bits=head_bits,
        encoder_channels=encoder_channels or max(channels, feature_shape[0] // 2),
        feature_shape=feature_shape,  # type: ignore[arg-type]
        feature_nonnegative=view.nonnegative,
    )
    head = SplitHead(QPoint(head_bits, signed=True, group="front"), quantize_front(view, head_bits), _encoder(spec))
    tail = SplitTail(_decoder(spec), copy.deepcopy(view.back))
    model = SplitModel(spec, head, tail, teacher)
    if calibration is None:
        generator = torch.Generator().manual_seed(0)
        calibration = torch.randn(16, *shape, generator=generator)
    calibrate(model.head, calibration)
    return model


def load_split_state(spec: SplitSpec, state: dict[str, Any], teacher: nn.Module) -> SplitModel:
    """Rebuild a saved student from its spec and state dict (types come from the state's extra state)."""
    if spec.bottleneck == "entropic":
        from aeforge.edge.split.entropic import load_entropic_state

        return load_entropic_state(spec, state, teacher)
    model = build_split_model(
        spec.backbone, spec.split_after, spec.channels, spec.bits, spec.num_classes, input_size=spec.input_shape,
        code_signed=spec.code_signed, head_bits=spec.head_bits, encoder_channels=spec.encoder_channels,
        teacher=teacher, calibration=torch.zeros(1, *spec.input_shape),
    )
    model.load_state_dict(state)
    return model
