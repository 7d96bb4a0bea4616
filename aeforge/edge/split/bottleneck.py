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
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint

_MAX_SAMPLES_PER_CALL = 1 << 15
BIAS_BITS = 12


# ------------------------------------------------------------------------------------ fixed-point types
def choose_activation_type(samples: np.ndarray, bits: int, signed: bool) -> FixedPoint:
    """The power-of-two fixed-point type of ``bits`` bits minimising the quantization MSE of ``samples``."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if not math.isfinite(peak):
        raise ConfigError("calibration: activations are not finite (diverged training?)")
    if peak <= 0.0:
        return FixedPoint(bits, 1 if signed else 0, signed=signed)
    top = math.ceil(math.log2(peak)) + (1 if signed else 0)  # no value saturates
    best: tuple[float, FixedPoint] | None = None
    for int_bits in range(top, top - (6 if bits <= 4 else 3), -1):
        spec = FixedPoint(bits, int_bits, signed=signed)
        codes = np.clip(np.round(values / spec.lsb), spec.min_code, spec.max_code)
        error = float(np.mean((codes * spec.lsb - values) ** 2))
        if best is None or error < best[0] * (1 - 1e-9):
            best = (error, spec)
    assert best is not None
    return best[1]


def parameter_type(values: torch.Tensor, bits: int) -> FixedPoint:
    """Signed power-of-two type of ``bits`` bits covering ``values`` without saturation."""
    peak = float(values.detach().abs().max()) if values.numel() else 0.0
    if not math.isfinite(peak):
        raise ConfigError("parameters are not finite (diverged training?)")
    int_bits = 1 if peak <= 0 else math.floor(math.log2(peak)) + 2  # peak < 2**(int_bits - 1)
    return FixedPoint(bits, int_bits, signed=True)


# ------------------------------------------------------------------------------------ quantized layers
class QPoint(nn.Module):
    """An activation quantization point: a Brevitas ``QuantIdentity`` with a calibrated power-of-two type.

    Before calibration (``spec`` None) it passes values through; while ``observing`` it records
    samples (and passes values through) for :func:`calibrate`.
    """

    def __init__(self, bits: int, signed: bool, group: str = "front", spec: FixedPoint | None = None) -> None:
        super().__init__()
        self.bits = bits
        self.signed = signed
        self.group = group
        self.spec: FixedPoint | None = None
        self.quant: nn.Module | None = None
        self.observing = False
        self._samples: list[torch.Tensor] = []
        if spec is not None:
            self.set_spec(spec)

    def set_spec(self, spec: FixedPoint) -> None:
        import brevitas.nn as qnn

        from aeforge.quantize.quantizers import brevitas_quant

        if spec.bits != self.bits or spec.signed != self.signed:
            raise ConfigError(f"quantization point expects {self.bits}-bit {'signed' if self.signed else 'unsigned'} "
                              f"types, got {spec.ap_type()}")
        self.spec = spec
        self.quant = qnn.QuantIdentity(act_quant=brevitas_quant(spec, "act"), return_quant_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            flat = x.detach().reshape(-1)
            step = max(1, flat.numel() // _MAX_SAMPLES_PER_CALL)
            self._samples.append(flat[::step].cpu())
            return x
        if self.quant is None:
            return x
        out = self.quant(x)
        return getattr(out, "value", out)

    def take_samples(self) -> np.ndarray:
        samples = torch.cat(self._samples).numpy() if self._samples else np.zeros(0, dtype=np.float32)
        self._samples = []
        return samples

    def get_extra_state(self) -> dict[str, Any]:
        return {"spec": None if self.spec is None else self.spec.ap_type()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("spec"):
            self.set_spec(FixedPoint.parse(state["spec"]))

    def extra_repr(self) -> str:
        return f"{self.spec.ap_type() if self.spec else 'uncalibrated'}, group={self.group}"


class QConv(nn.Module):
    """A Brevitas ``QuantConv2d`` with power-of-two fixed-point weights (``bits``) and bias (:data:`BIAS_BITS`).

    Built from a float convolution (BN already folded in); types come from the weights' range and
    are re-derived by :meth:`recalibrate` (the parameters themselves are kept, so optimizers go on).
    """

    def __init__(self, conv: nn.Conv2d, bits: int, group: str = "front") -> None:
        super().__init__()
        self.bits = bits
        self.group = group
        self.geometry = {
            "in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel_size": conv.kernel_size,
            "stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups,
        }
        weight = nn.Parameter(conv.weight.detach().clone())
        bias = nn.Parameter(conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels))
        self.weight_spec = parameter_type(weight, bits)
        self.bias_spec = parameter_type(bias, BIAS_BITS)
        self.conv = self._make(weight, bias)

    def _make(self, weight: nn.Parameter, bias: nn.Parameter) -> nn.Module:
        import brevitas.nn as qnn

        from aeforge.quantize.quantizers import brevitas_quant

        layer = qnn.QuantConv2d(
            **self.geometry, bias=True, weight_quant=brevitas_quant(self.weight_spec, "weight"),
            bias_quant=brevitas_quant(self.bias_spec, "bias"), return_quant_tensor=False,
        )
        layer.weight = weight
        layer.bias = bias
        return layer

    def recalibrate(self) -> None:
        """Re-derive the weight and bias types from the current parameters."""
        self.set_specs(parameter_type(self.conv.weight, self.bits), parameter_type(self.conv.bias, BIAS_BITS))

    def set_specs(self, weight_spec: FixedPoint, bias_spec: FixedPoint) -> None:
        self.weight_spec, self.bias_spec = weight_spec, bias_spec
        self.conv = self._make(self.conv.weight, self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return getattr(out, "value", out)

    def get_extra_state(self) -> dict[str, Any]:
        return {"weight": self.weight_spec.ap_type(), "bias": self.bias_spec.ap_type()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_specs(FixedPoint.parse(state["weight"]), FixedPoint.parse(state["bias"]))

    def extra_repr(self) -> str:
        return f"weight={self.weight_spec.ap_type()}, bias={self.bias_spec.ap_type()}, group={self.group}"


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    """A float copy of ``conv`` with the eval-mode ``bn`` folded in (always with a bias)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    conv = copy.deepcopy(conv).eval()
    if bn is not None:
        conv = fuse_conv_bn_eval(conv, copy.deepcopy(bn).eval())
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    return conv


def bn_as_conv(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """An eval-mode BatchNorm as a depthwise 1x1 convolution (per-channel scale and shift)."""
    channels = bn.num_features
    conv = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.copy_(scale.reshape(channels, 1, 1, 1))
        conv.bias.copy_(bn.bias - bn.running_mean * scale)
    return conv


def qpoints(module: nn.Module, groups: Iterable[str] | None = None) -> list[QPoint]:
    wanted = None if groups is None else set(groups)
    return [m for m in module.modules() if isinstance(m, QPoint) and (wanted is None or m.group in wanted)]


def qconvs(module: nn.Module, groups: Iterable[str] | None = None) -> list[QConv]:
    wanted = None if groups is None else set(groups)
    return [m for m in module.modules() if isinstance(m, QConv) and (wanted is None or m.group in wanted)]


@torch.no_grad()
def calibrate(module: nn.Module, inputs: torch.Tensor, groups: Iterable[str] | None = None,
              batch_size: int = 64) -> dict[str, str]:
    """Choose the types of ``module``'s quantization points (in ``groups``, None: all) on ``inputs``.

    Weight types of the matching :class:`QConv` are re-derived first; the points observe float values
    (points outside ``groups`` keep quantizing). Returns ``{module name: type}``.
    """
    groups = None if groups is None else tuple(groups)
    for conv in qconvs(module, groups):
        conv.recalibrate()
    points = qpoints(module, groups)
    was_training = module.training
    module.eval()
    for point in points:
        point.observing = True
    try:
        for start in range(0, len(inputs), batch_size):
            module(inputs[start:start + batch_size])
    finally:
        for point in points:
            point.observing = False
        module.train(was_training)
    for point in points:
        point.set_spec(choose_activation_type(point.take_samples(), point.bits, point.signed))
    return {name: m.spec.ap_type() for name, m in module.named_modules() if isinstance(m, QPoint) and m.spec}


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

    def decoded_features(self, x: torch.Tensor) -> torch.Tensor:
        """The student's reconstruction of the split features (decoder output)."""
        return self.tail.decoder(self.head(x))

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's features at the split point (frozen, eval mode)."""
        from aeforge.edge.split.backbones import split_backbone

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
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights, quantize_front, split_backbone
    from aeforge.edge.split.config import check_split_point

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
    model = build_split_model(
        spec.backbone, spec.split_after, spec.channels, spec.bits, spec.num_classes, input_size=spec.input_shape,
        code_signed=spec.code_signed, head_bits=spec.head_bits, encoder_channels=spec.encoder_channels,
        teacher=teacher, calibration=torch.zeros(1, *spec.input_shape),
    )
    model.load_state_dict(state)
    return model
