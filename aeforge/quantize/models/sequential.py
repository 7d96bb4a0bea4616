"""A generic sequential quantized model: Conv2D / Dense / ReLU / re-quantization / Flatten.

The architecture is plain data, a :class:`SequentialSpec` (an :class:`InputSpec` and a list of
layer specs), that round-trips through JSON/YAML-friendly dicts (:meth:`SequentialSpec.to_dict`,
:meth:`SequentialSpec.from_dict`; fixed-point types are ``ap_type()`` strings). Shapes follow
Keras and are channels-last: ``(H, W, C)`` images or ``(F,)`` feature vectors.

:func:`build_sequential` turns a spec into a Brevitas :class:`SequentialQuantModel` with the
same conventions as the ECON-T encoder (:mod:`aeforge.quantize.models.econt`): a ``QuantIdentity``
input quantizer named ``input_quant``, TensorFlow SAME padding (the extra pixel bottom/right),
channels-last flatten, and the port properties ``input_shape`` (channels-first, as the module
takes it), ``input_type``, ``output_type`` and :meth:`~SequentialQuantModel.fixed_point_types`,
so export and HLS treat both model families alike. Layer ``i`` of the spec is module
``layers.<i>``; its parameters are ``layers.<i>.weight`` / ``layers.<i>.bias`` (torch layouts:
conv ``(out, in, kh, kw)``, dense ``(out, in)``).

Layer semantics (``type`` is a :class:`~aeforge.fixedpoint.FixedPoint`):

* ``conv2d``: quantized weights and (optional) bias, no activation; the result is exact (its
  exact accumulator type is :meth:`SequentialSpec.output_types`);
* ``dense``: same, on a 1-D input (put a ``flatten`` first);
* ``relu``: ReLU, then quantization to ``type`` (QKeras ``quantized_relu``);
* ``quant``: quantization to ``type`` (QKeras ``QActivation(quantized_bits)``);
* ``flatten``: channels-last flatten (Keras / hls4ml order).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from aeforge.errors import ArtifactError, ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.econt import same_padding
from aeforge.quantize.quantizers import brevitas_quant, check_brevitas_compatible

PADDINGS = ("same", "valid")


# ---------------------------------------------------------------------------------------- checks
def _int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{what} must be an integer or a pair of integers, got {value!r}")
        return _int(value[0], what), _int(value[1], what)
    number = _int(value, what)
    return number, number


def _fixed(value: Any, what: str, optional: bool = False) -> FixedPoint | None:
    if value is None and optional:
        return None
    try:
        spec = FixedPoint.from_config(value, where=what)
        check_brevitas_compatible(spec, where=what)
    except QuantizationError as error:
        raise ConfigError(str(error)) from None
    return spec


class _LayerBase:
    """Shared checks of the layer specs (``kind`` names the layer class in dicts and messages)."""

    kind: ClassVar[str] = ""
    name: str

    def _where(self, what: str) -> str:
        label = f"{self.kind} layer {self.name!r}" if self.name else f"{self.kind} layer"
        return f"{label}: {what}"

    def _set(self, attribute: str, value: Any) -> None:
        object.__setattr__(self, attribute, value)

    def _check_name(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"{self.kind} layer: name must be a string, got {self.name!r}")


# ---------------------------------------------------------------------------------------- specs
@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """The input port: one sample's shape, channels-last ``(H, W, C)`` or ``(F,)``, and its type."""

    shape: tuple[int, ...]
    type: FixedPoint

    def __post_init__(self) -> None:
        if not isinstance(self.shape, (list, tuple)) or len(self.shape) not in (1, 3):
            raise ConfigError(f"input: shape must be (H, W, C) or (F,), got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_int(s, "input: shape entries") for s in self.shape))
        object.__setattr__(self, "type", _fixed(self.type, "input: type"))


@dataclass(frozen=True, kw_only=True)
class Conv2DSpec(_LayerBase):
    """2-D convolution with quantized weights (Keras ``QConv2D``, channels-last, no activation)."""

    kind: ClassVar[str] = "conv2d"
    filters: int
    kernel_size: tuple[int, int]
    weight: FixedPoint
    bias: FixedPoint | None = None
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("filters", _int(self.filters, self._where("filters")))
        self._set("kernel_size", _pair(self.kernel_size, self._where("kernel_size")))
        self._set("strides", _pair(self.strides, self._where("strides")))
        if self.padding not in PADDINGS:
            raise ConfigError(self._where(f"padding must be 'same' or 'valid', got {self.padding!r}"))
        self._set("weight", _fixed(self.weight, self._where("weight")))
        self._set("bias", _fixed(self.bias, self._where("bias"), optional=True))
        if not self.weight.signed:
            raise ConfigError(self._where(f"weight type must be signed, got {self.weight.ap_type()}"))


@dataclass(frozen=True, kw_only=True)
class DenseSpec(_LayerBase):
    """Fully connected layer with quantized weights (Keras ``QDense``, no activation)."""

    kind: ClassVar[str] = "dense"
    units: int
    weight: FixedPoint
    bias: FixedPoint | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("units", _int(self.units, self._where("units")))
        self._set("weight", _fixed(self.weight, self._where("weight")))
        self._set("bias", _fixed(self.bias, self._where("bias"), optional=True))
        if not self.weight.signed:
            raise ConfigError(self._where(f"weight type must be signed, got {self.weight.ap_type()}"))


@dataclass(frozen=True, kw_only=True)
class ReLUSpec(_LayerBase):
    """ReLU followed by quantization to ``type`` (QKeras ``quantized_relu``; usually unsigned)."""

    kind: ClassVar[str] = "relu"
    type: FixedPoint
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("type", _fixed(self.type, self._where("type")))


@dataclass(frozen=True, kw_only=True)
class QuantSpec(_LayerBase):
    """Re-quantization to ``type`` (QKeras ``QActivation(quantized_bits(...))``)."""

    kind: ClassVar[str] = "quant"
    type: FixedPoint
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("type", _fixed(self.type, self._where("type")))


@dataclass(frozen=True, kw_only=True)
class FlattenSpec(_LayerBase):
    """Channels-last flatten, ``(H, W, C) -> (H*W*C,)`` in Keras order (a no-op on ``(F,)``)."""

    kind: ClassVar[str] = "flatten"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()


LayerSpec = Conv2DSpec | DenseSpec | ReLUSpec | QuantSpec | FlattenSpec
LAYER_KINDS: dict[str, type] = {cls.kind: cls for cls in (Conv2DSpec, DenseSpec, ReLUSpec, QuantSpec, FlattenSpec)}


def accumulator_type(in_type: FixedPoint, weight: FixedPoint, bias: FixedPoint | None, fan_in: int) -> FixedPoint:
    """Smallest signed type holding every exact result of ``sum(fan_in products) + bias``.

    The LSB is the finer of the product LSB and the bias LSB; the width covers the worst case
    ``fan_in * max|x| * max|w| + max|b|``. Useful as the hls4ml ``accum``/``result`` type.
    """
    frac = in_type.frac_bits + weight.frac_bits
    if bias is not None:
        frac = max(frac, bias.frac_bits)

    def code_bound(spec: FixedPoint) -> int:  # max |code| of spec, on the accumulator LSB
        return max(abs(spec.min_code), abs(spec.max_code)) << (frac - spec.frac_bits)

    in_max = max(abs(in_type.min_code), abs(in_type.max_code))
    w_max = max(abs(weight.min_code), abs(weight.max_code))
    products = fan_in * in_max * w_max << (frac - in_type.frac_bits - weight.frac_bits)
    bound = products + (code_bound(bias) if bias is not None else 0)
    bits = max(bound.bit_length() + 1, 2)
    return FixedPoint(bits, bits - frac, signed=True)


@dataclass(frozen=True)
class SequentialSpec:
    """A sequential model: the input port and the layers, in order.

    Layers given without a name are named ``<kind>_<index>``; names must be unique. Shapes are
    checked on construction (a Dense needs a 1-D input, a Conv2D a 3-D one).
    """

    input: InputSpec
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.input, InputSpec):
            raise ConfigError(f"model input must be an InputSpec, got {type(self.input).__name__}")
        if not isinstance(self.layers, (list, tuple)):
            raise ConfigError(f"model layers must be a list, got {type(self.layers).__name__}")
        named: list[LayerSpec] = []
        seen: set[str] = set()
        for index, layer in enumerate(self.layers):
            if type(layer) not in LAYER_KINDS.values():
                raise ConfigError(f"layers[{index}]: not a layer spec: {layer!r}")
            if not layer.name:
                layer = dataclasses.replace(layer, name=f"{layer.kind}_{index}")
            if layer.name in seen:
                raise ConfigError(f"layers[{index}]: duplicate layer name {layer.name!r}")
            seen.add(layer.name)
            named.append(layer)
        object.__setattr__(self, "layers", tuple(named))
        self.output_shapes()  # validates the shapes

    # -------------------------------------------------------------------- shapes and types
    def output_shapes(self) -> list[tuple[int, ...]]:
        """Channels-last output shape of every layer; raises ConfigError naming a misfit layer."""
        shape = self.input.shape
        shapes = []
        for layer in self.layers:
            where = f"{layer.kind} layer {layer.name!r}"
            if isinstance(layer, Conv2DSpec):
                if len(shape) != 3:
                    raise ConfigError(f"{where}: needs an (H, W, C) input, got shape {shape}")
                spatial = []
                for size, kernel, stride in zip(shape[:2], layer.kernel_size, layer.strides, strict=True):
                    out = math.ceil(size / stride) if layer.padding == "same" else (size - kernel) // stride + 1
                    if out < 1:
                        raise ConfigError(f"{where}: kernel {layer.kernel_size} does not fit the input {shape}")
                    spatial.append(out)
                shape = (*spatial, layer.filters)
            elif isinstance(layer, DenseSpec):
                if len(shape) != 1:
                    raise ConfigError(
                        f"{where}: needs a 1-D input, got shape {shape}; put a flatten layer first "
                        "(a Dense on the last axis of an image is not supported)"
                    )
                shape = (layer.units,)
            elif isinstance(layer, FlattenSpec):
                shape = (math.prod(shape),)
            shapes.append(shape)
        return shapes

    def output_types(self) -> list[FixedPoint]:
        """Fixed-point type of every layer's output (conv/dense: the exact accumulator type)."""
        current = self.input.type
        shape = self.input.shape
        types = []
        for layer, out_shape in zip(self.layers, self.output_shapes(), strict=True):
            if isinstance(layer, Conv2DSpec):
                fan_in = layer.kernel_size[0] * layer.kernel_size[1] * shape[-1]
                current = accumulator_type(current, layer.weight, layer.bias, fan_in)
            elif isinstance(layer, DenseSpec):
                current = accumulator_type(current, layer.weight, layer.bias, shape[0])
            elif isinstance(layer, (ReLUSpec, QuantSpec)):
                current = layer.type
            types.append(current)
            shape = out_shape
        return types

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Channels-last shape of one output sample."""
        shapes = self.output_shapes()
        return shapes[-1] if shapes else self.input.shape

    @property
    def output_type(self) -> FixedPoint:
        types = self.output_types()
        return types[-1] if types else self.input.type

    # -------------------------------------------------------------------- plain dicts
    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready form; :meth:`from_dict` reads it back."""
        layers = []
        for layer in self.layers:
            entry: dict[str, Any] = {"kind": layer.kind, "name": layer.name}
            for spec_field in dataclasses.fields(layer):
                if spec_field.name == "name":
                    continue
                value = getattr(layer, spec_field.name)
                if isinstance(value, FixedPoint):
                    value = value.ap_type()
                elif isinstance(value, tuple):
                    value = list(value)
                entry[spec_field.name] = value
            layers.append(entry)
        return {"input": {"shape": list(self.input.shape), "type": self.input.type.ap_type()}, "layers": layers}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> SequentialSpec:
        """Build from :meth:`to_dict`'s form; errors (ConfigError) name the field and the layer."""
        if isinstance(data, SequentialSpec):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with 'input' and 'layers', got {type(data).__name__}")
        _check_keys(data, {"input", "layers"}, where, required={"input"})
        raw_input = data["input"]
        if not isinstance(raw_input, Mapping):
            raise ConfigError(f"{where}.input: expected a mapping with 'shape' and 'type'")
        _check_keys(raw_input, {"shape", "type"}, f"{where}.input", required={"shape", "type"})
        try:
            input_spec = InputSpec(shape=raw_input["shape"], type=raw_input["type"])
        except ConfigError as error:
            raise ConfigError(f"{where}.{error}") from None
        raw_layers = data.get("layers") or []
        if not isinstance(raw_layers, (list, tuple)):
            raise ConfigError(f"{where}.layers: expected a list, got {type(raw_layers).__name__}")
        layers = [_layer_from_dict(raw, f"{where}.layers[{i}]") for i, raw in enumerate(raw_layers)]
        try:
            return cls(input=input_spec, layers=tuple(layers))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None


def _check_keys(data: Mapping, known: set[str], where: str, required: Collection[str] = ()) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")


def _layer_from_dict(raw: Any, where: str) -> LayerSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'kind', got {raw!r}")
    kind = raw.get("kind")
    if kind not in LAYER_KINDS:
        raise ConfigError(f"{where}: unknown layer kind {kind!r}; expected one of {', '.join(LAYER_KINDS)}")
    cls = LAYER_KINDS[kind]
    name = raw.get("name", "")
    label = f"{where} ({kind} {name!r})" if name else f"{where} ({kind})"
    spec_fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {n for n, f in spec_fields.items() if f.default is dataclasses.MISSING}
    _check_keys(raw, set(spec_fields) | {"kind"}, label, required=required)
    try:
        return cls(**{k: v for k, v in raw.items() if k != "kind"})
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


# ---------------------------------------------------------------------------------------- torch
class SamePaddedQuantConv2d(QuantConv2d):
    """``QuantConv2d`` that first zero-pads as TensorFlow does (``pad``: left, right, top, bottom)."""

    def __init__(self, *args: Any, tf_padding: tuple[int, int, int, int] = (0, 0, 0, 0), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d(tf_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(self.pad(x))


class ChannelsLastFlatten(nn.Module):
    """Flatten ``(N, C, H, W)`` in Keras/hls4ml order (``H, W, C``); ``(N, F)`` passes through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.flatten(1)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape


class SequentialQuantModel(nn.Module):
    """The Brevitas model of a :class:`SequentialSpec`; ``quantized=False`` gives the float twin.

    Takes ``(N, C, H, W)`` images or ``(N, F)`` vectors; layer ``i`` of the spec is ``layers.<i>``.
    """

    def __init__(self, spec: SequentialSpec, quantized: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self._quantized = quantized

        def quant(fixed: FixedPoint | None, role: str, where: str) -> type | None:
            return brevitas_quant(fixed, role, where=where) if quantized and fixed is not None else None

        self.input_quant = QuantIdentity(
            act_quant=quant(spec.input.type, "act", "input_quant"), return_quant_tensor=False
        )
        modules: list[nn.Module] = []
        shape = spec.input.shape
        for index, (layer, out_shape) in enumerate(zip(spec.layers, spec.output_shapes(), strict=True)):
            where = f"layers.{index} ({layer.name})"
            if isinstance(layer, Conv2DSpec):
                pad_h = same_padding(shape[0], layer.kernel_size[0], layer.strides[0])
                pad_w = same_padding(shape[1], layer.kernel_size[1], layer.strides[1])
                tf_padding = (*pad_w, *pad_h) if layer.padding == "same" else (0, 0, 0, 0)
                module: nn.Module = SamePaddedQuantConv2d(
                    shape[2], layer.filters, layer.kernel_size, stride=layer.strides, padding=0,
                    bias=layer.bias is not None, tf_padding=tf_padding,
                    weight_quant=quant(layer.weight, "weight", f"{where}.weight"),
                    bias_quant=quant(layer.bias, "bias", f"{where}.bias"),
                )
            elif isinstance(layer, DenseSpec):
                module = QuantLinear(
                    shape[0], layer.units, bias=layer.bias is not None,
                    weight_quant=quant(layer.weight, "weight", f"{where}.weight"),
                    bias_quant=quant(layer.bias, "bias", f"{where}.bias"),
                )
            elif isinstance(layer, ReLUSpec):
                module = QuantReLU(act_quant=quant(layer.type, "act", where), return_quant_tensor=False)
            elif isinstance(layer, QuantSpec):
                module = QuantIdentity(act_quant=quant(layer.type, "act", where), return_quant_tensor=False)
            else:
                module = ChannelsLastFlatten()
            modules.append(module)
            shape = out_shape
        self.layers = nn.ModuleList(modules)

    @property
    def quantized(self) -> bool:
        return self._quantized

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample as the module takes it, channels-first: ``(C, H, W)`` or ``(F,)``."""
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
            if isinstance(layer, (Conv2DSpec, DenseSpec)):
                types[f"layers.{index}.weight"] = layer.weight.ap_type()
                if layer.bias is not None:
                    types[f"layers.{index}.bias"] = layer.bias.ap_type()
            elif isinstance(layer, (ReLUSpec, QuantSpec)):
                types[f"layers.{index}"] = layer.type.ap_type()
        return types

    def accumulator_types(self) -> dict[str, str]:
        """Conv/dense module -> exact accumulator type string (for hls4ml ``accum``/``result``)."""
        if not self._quantized:
            return {}
        return {
            f"layers.{index}": out_type.ap_type()
            for index, (layer, out_type) in enumerate(zip(self.spec.layers, self.spec.output_types(), strict=True))
            if isinstance(layer, (Conv2DSpec, DenseSpec))
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        for module in self.layers:
            x = module(x)
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
