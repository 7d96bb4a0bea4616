"""The Brevitas model of a :class:`~aeforge.quantize.models.spec.SequentialSpec`.

:func:`build_sequential` turns a spec (see :mod:`aeforge.quantize.models.spec` for the layer kinds
and their fixed-point semantics) into a :class:`SequentialQuantModel` with the same conventions as
the ECON-T encoder (:mod:`aeforge.quantize.models.econt`): a ``QuantIdentity`` input quantizer
named ``input_quant``, explicit zero padding (TensorFlow SAME puts the extra pixel bottom/right),
channels-last flatten, and the port properties ``input_shape`` (channels-first, as the module
takes it), ``input_type``, ``output_type`` and :meth:`~SequentialQuantModel.fixed_point_types`,
so export and hardware generation treat every model alike. Layer ``i`` of the spec is module
``layers.<i>``; its parameters are ``layers.<i>.weight`` / ``layers.<i>.bias`` (torch layouts:
conv ``(out, in, k...)``, dense ``(out, in)``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from aeforge.errors import ArtifactError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.spec import (  # noqa: F401  (re-exported: the spec API lives in spec.py)
    ACTIVATION_LAYERS,
    INPUT_SOURCE,
    LAYER_KINDS,
    PADDINGS,
    WEIGHT_LAYERS,
    AddSpec,
    AvgPoolSpec,
    Conv1DSpec,
    Conv2DSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    LayerSpec,
    MaxPoolSpec,
    QuantSpec,
    ReLUSpec,
    SequentialSpec,
    SqErrorSpec,
    UpsampleSpec,
    accumulator_type,
    padding_pairs,
    spatial,
)
from aeforge.quantize.quantizers import brevitas_quant


# ---------------------------------------------------------------------------------------- torch
class PaddedQuantConv2d(QuantConv2d):
    """``QuantConv2d`` that first zero-pads explicitly (``tf_padding``: left, right, top, bottom)."""

    def __init__(self, *args: Any, tf_padding: tuple[int, int, int, int] = (0, 0, 0, 0), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d(tf_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(self.pad(x))


SamePaddedQuantConv2d = PaddedQuantConv2d  # the name of earlier releases


class PaddedQuantConv1d(QuantConv1d):
    """``QuantConv1d`` that first zero-pads explicitly (``tf_padding``: left, right)."""

    def __init__(self, *args: Any, tf_padding: tuple[int, int] = (0, 0), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = nn.ConstantPad1d(tf_padding, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(self.pad(x))


class ChannelsLastFlatten(nn.Module):
    """Flatten ``(N, C, H, W)`` / ``(N, C, L)`` in Keras/hls4ml order (channels last); ``(N, F)`` passes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        elif x.dim() == 3:
            x = x.permute(0, 2, 1)
        return x.flatten(1)


class ResidualAdd(nn.Module):
    """``x + source`` (the output of an earlier layer); exact in float64."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x + other


class SquaredErrorSum(nn.Module):
    """``sum((source - x) ** 2)`` per sample, ``(N, 1)``; exact in float64 while it fits 53 bits."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        diff = other - x
        return (diff * diff).flatten(1).sum(dim=1, keepdim=True)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[-1], *shape[:-1]) if len(shape) > 1 else shape


class SequentialQuantModel(nn.Module):
    """The Brevitas model of a :class:`SequentialSpec`; ``quantized=False`` gives the float twin.

    Takes ``(N, C, H, W)`` images, ``(N, C, L)`` sequences or ``(N, F)`` vectors; layer ``i`` of
    the spec is ``layers.<i>``.
    """

    def __init__(self, spec: SequentialSpec, quantized: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self._quantized = quantized
        self.input_quant = QuantIdentity(
            act_quant=self._quant(spec.input.type, "act", "input_quant"), return_quant_tensor=False
        )
        modules = [self._module(index, layer, shape)
                   for index, (layer, shape) in enumerate(zip(spec.layers, spec.input_shapes(), strict=True))]
        self.layers = nn.ModuleList(modules)
        self._kept = spec.sources()

    def _quant(self, fixed: FixedPoint | None, role: str, where: str) -> type | None:
        return brevitas_quant(fixed, role, where=where) if self._quantized and fixed is not None else None

    def _module(self, index: int, layer: LayerSpec, shape: tuple[int, ...]) -> nn.Module:
        where = f"layers.{index} ({layer.name})"
        if isinstance(layer, (Conv1DSpec, Conv2DSpec)):
            dims = len(shape) - 1
            kernel = spatial(layer.kernel_size, dims, where)
            strides = spatial(layer.strides, dims, where)
            pads = padding_pairs(layer.padding, shape[:dims], kernel, strides, where)
            common = {"stride": strides, "padding": 0, "bias": layer.bias is not None,
                      "weight_quant": self._quant(layer.weight, "weight", f"{where}.weight"),
                      "bias_quant": self._quant(layer.bias, "bias", f"{where}.bias")}
            if dims == 1:
                return PaddedQuantConv1d(shape[-1], layer.filters, kernel, tf_padding=pads[0], **common)
            return PaddedQuantConv2d(shape[-1], layer.filters, kernel, tf_padding=(*pads[1], *pads[0]), **common)
        if isinstance(layer, DenseSpec):
            return QuantLinear(shape[0], layer.units, bias=layer.bias is not None,
                               weight_quant=self._quant(layer.weight, "weight", f"{where}.weight"),
                               bias_quant=self._quant(layer.bias, "bias", f"{where}.bias"))
        if isinstance(layer, ReLUSpec):
            return QuantReLU(act_quant=self._quant(layer.type, "act", where), return_quant_tensor=False)
        if isinstance(layer, QuantSpec):
            return QuantIdentity(act_quant=self._quant(layer.type, "act", where), return_quant_tensor=False)
        if isinstance(layer, FlattenSpec):
            return ChannelsLastFlatten()
        if isinstance(layer, (MaxPoolSpec, AvgPoolSpec)):
            dims = len(shape) - 1
            pool, strides = layer.windows(dims)
            if isinstance(layer, MaxPoolSpec):
                return (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(pool, strides)
            return (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(pool, strides)
        if isinstance(layer, UpsampleSpec):
            factors = spatial(layer.size, len(shape) - 1, where)
            return nn.Upsample(scale_factor=tuple(float(f) for f in factors), mode="nearest")
        if isinstance(layer, AddSpec):
            return ResidualAdd(layer.source)
        return SquaredErrorSum(layer.source)

    @property
    def quantized(self) -> bool:
        return self._quantized

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample as the module takes it, channels-first: ``(C, H, W)``, ``(C, L)`` or ``(F,)``."""
        return _channels_first(self.spec.input.shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output sample as the module returns it (channels-first for images)."""
        return _channels_first(self.spec.output_shape)

    @property
    def input_type(self) -> FixedPoint | None:
        """Fixed-point type of the input port (None for the float model)."""
        return self.spec.input.type if self._quantized else None

    @property
    def output_type(self) -> FixedPoint | None:
        """Fixed-point type of the output port (a conv/dense output: its exact accumulator type)."""
        return self.spec.output_type if self._quantized else None

    def layer_names(self) -> dict[str, str]:
        """Module path (``layers.<i>``) -> spec layer name."""
        return {f"layers.{i}": layer.name for i, layer in enumerate(self.spec.layers)}

    def fixed_point_types(self) -> dict[str, str]:
        """Quantizer -> hardware type string, keyed like the econt encoder (module/parameter names)."""
        if not self._quantized:
            return {}
        types = {"input_quant": self.spec.input.type.ap_type()}
        for index, layer in enumerate(self.spec.layers):
            if isinstance(layer, WEIGHT_LAYERS):
                types[f"layers.{index}.weight"] = layer.weight.ap_type()
                if layer.bias is not None:
                    types[f"layers.{index}.bias"] = layer.bias.ap_type()
            elif isinstance(layer, ACTIVATION_LAYERS):
                types[f"layers.{index}"] = layer.type.ap_type()
        return types

    def accumulator_types(self) -> dict[str, str]:
        """Conv/dense module -> exact accumulator type string (for hls4ml ``accum``/``result``)."""
        if not self._quantized:
            return {}
        return {
            f"layers.{index}": out_type.ap_type()
            for index, (layer, out_type) in enumerate(zip(self.spec.layers, self.spec.output_types(), strict=True))
            if isinstance(layer, WEIGHT_LAYERS)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        kept: dict[str, torch.Tensor] = {INPUT_SOURCE: x} if INPUT_SOURCE in self._kept else {}
        for layer, module in zip(self.spec.layers, self.layers, strict=True):
            x = module(x, kept[module.source]) if isinstance(module, (ResidualAdd, SquaredErrorSum)) else module(x)
            if layer.name in self._kept:
                kept[layer.name] = x
        return x


def build_sequential(spec: SequentialSpec | Mapping[str, Any], quantized: bool = True) -> SequentialQuantModel:
    """The Brevitas model of ``spec`` (a :class:`SequentialSpec` or its dict form)."""
    return SequentialQuantModel(SequentialSpec.from_dict(spec), quantized=quantized)


# ---------------------------------------------------------------------------------------- files
def save_sequential(model: SequentialQuantModel, spec_path: str | Path, weights_path: str | Path) -> None:
    """Write the spec (JSON, :meth:`SequentialSpec.to_dict`) and the state_dict (``torch.save``)."""
    from aeforge.artifact import write_json_atomic

    write_json_atomic(Path(spec_path), model.spec.to_dict())
    torch.save(model.state_dict(), Path(weights_path))


def load_sequential(spec_path: str | Path, weights_path: str | Path, quantized: bool = True) -> SequentialQuantModel:
    """Inverse of :func:`save_sequential`: build from the spec file and load the weights (strict)."""
    spec_path, weights_path = Path(spec_path), Path(weights_path)
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise ArtifactError(f"{path}: file not found")
    try:
        data = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{spec_path}: unreadable model spec: {error}") from None
    model = build_sequential(SequentialSpec.from_dict(data, where=str(spec_path)), quantized=quantized)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a variety of errors on a corrupt file
        raise ArtifactError(f"{weights_path}: unreadable weights: {error}") from None
    load_state(model, state, where=str(weights_path))
    return model


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "weights") -> None:
    """``load_state_dict`` (strict) with an :class:`ArtifactError` naming missing/extra/mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{where}: state_dict does not match the model (missing {missing}, unexpected {extra})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ArtifactError(
                f"{where}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(dict(state))
