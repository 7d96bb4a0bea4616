"""Fixed-point building blocks of split heads: calibrated activation points and quantized convolutions.

:class:`QPoint` quantizes an activation to a power-of-two grid chosen by calibration
(:func:`calibrate`: the range minimising the quantization MSE on a batch); :class:`QConv` is a
convolution with power-of-two weight and bias types (BatchNorm folded by :func:`fold_conv_bn`).
Both are used by the bottleneck (:mod:`aeforge.edge.split.bottleneck`) and by the fixed-point
conversion of backbone stages (:mod:`aeforge.edge.split.backbones`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
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


