"""Layer specs: the plain-data description of every hardware model aeforge builds.

A :class:`SequentialSpec` is an :class:`InputSpec` and an ordered list of layer specs; it
round-trips through JSON/YAML-friendly dicts (:meth:`SequentialSpec.to_dict`,
:meth:`SequentialSpec.from_dict`; fixed-point types are ``ap_type()`` strings). Shapes are
channels-last, as Keras and hls4ml lay them out: ``(H, W, C)`` images, ``(L, C)`` sequences or
``(F,)`` feature vectors. Layers run in order; an ``add`` (residual) or ``sq_error`` layer also
reads the output of an earlier layer, named by ``source`` (``"input"`` is the quantized input).

Layer semantics (``type`` is a :class:`~aeforge.fixedpoint.FixedPoint`):

* ``conv1d`` / ``conv2d``: quantized weights and optional bias, no activation; the result is exact
  (its exact accumulator type, :func:`accumulator_type`). ``padding`` is ``"valid"``, ``"same"``
  (TensorFlow: the extra pixel after) or explicit zero padding, an integer or ``[before, after]``
  per spatial axis;
* ``dense``: the same on a 1-D input (put a ``flatten`` first);
* ``relu``: ReLU, then quantization to ``type`` (QKeras ``quantized_relu``);
* ``quant``: quantization to ``type`` (QKeras ``QActivation(quantized_bits)``);
* ``flatten``: channels-last flatten (Keras / hls4ml order);
* ``maxpool`` / ``avgpool``: pooling over ``pool_size`` windows with ``strides`` (default: the pool
  size), no padding, on ``(L, C)`` or ``(H, W, C)``. The maximum keeps the type; the average of a
  window of ``2**k`` values is exact with ``k`` more fractional bits (other window sizes are refused);
* ``upsample``: nearest-neighbour upsampling by an integer ``size`` per spatial axis;
* ``add``: element-wise sum with the output of layer ``source``; both must have the same shape and
  type, the result has one more integer bit (exact);
* ``sq_error``: ``sum((source - x) ** 2)`` over every element, an exact ``(1,)`` score (the
  reconstruction error of an anomaly-detection autoencoder, computed on chip).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aeforge.errors import ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.exact_types import (
    accumulator_type,
    add_type,
    avgpool_type,
    sq_error_type,
)

PADDINGS = ("same", "valid")
INPUT_SOURCE = "input"


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


def _ints(value: Any, what: str) -> int | tuple[int, ...]:
    """An integer (the same for every spatial axis) or one integer per axis (1 or 2 of them)."""
    if isinstance(value, (list, tuple)):
        if len(value) not in (1, 2):
            raise ConfigError(f"{what} must be an integer or a list of 1 or 2 integers, got {value!r}")
        return tuple(_int(v, what) for v in value)
    return _int(value, what)


def spatial(value: int | tuple[int, ...], dims: int, what: str) -> tuple[int, ...]:
    """``value`` (from :func:`_ints`) expanded to ``dims`` spatial axes."""
    if isinstance(value, int):
        return (value,) * dims
    if len(value) != dims:
        raise ConfigError(f"{what}: {list(value)} has {len(value)} entries for a {dims}-D input")
    return tuple(value)


def _padding(value: Any, what: str) -> str | int | tuple[tuple[int, int], ...]:
    if isinstance(value, str):
        if value not in PADDINGS:
            raise ConfigError(f"{what} must be 'same', 'valid', an integer or [before, after] per axis, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        pairs = []
        for entry in value:
            if isinstance(entry, (list, tuple)) and len(entry) == 2:
                pairs.append((_int(entry[0], what, 0), _int(entry[1], what, 0)))
            else:
                number = _int(entry, what, 0)
                pairs.append((number, number))
        if len(pairs) not in (1, 2):
            raise ConfigError(f"{what}: explicit padding needs one entry per spatial axis, got {value!r}")
        return tuple(pairs)
    return _int(value, what, 0)


def padding_pairs(padding: Any, sizes: tuple[int, ...], kernel: tuple[int, ...],
                  strides: tuple[int, ...], what: str) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` zero padding per spatial axis for a conv's ``padding``."""
    if padding == "valid":
        return tuple((0, 0) for _ in sizes)
    if padding == "same":
        return tuple(same_padding(s, k, st) for s, k, st in zip(sizes, kernel, strides, strict=True))
    if isinstance(padding, int):
        return tuple((padding, padding) for _ in sizes)
    if len(padding) != len(sizes):
        raise ConfigError(f"{what}: padding {padding!r} has {len(padding)} entries for a {len(sizes)}-D input")
    return tuple(padding)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding ``(before, after)`` for one spatial axis: the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _fixed(value: Any, what: str, optional: bool = False) -> FixedPoint | None:
    from aeforge.quantize.quantizers import check_brevitas_compatible

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
    """The input port: one sample's shape, channels-last ``(H, W, C)``, ``(L, C)`` or ``(F,)``, and its type."""

    shape: tuple[int, ...]
    type: FixedPoint

    def __post_init__(self) -> None:
        if not isinstance(self.shape, (list, tuple)) or len(self.shape) not in (1, 2, 3):
            raise ConfigError(f"input: shape must be (H, W, C), (L, C) or (F,), got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_int(s, "input: shape entries") for s in self.shape))
        object.__setattr__(self, "type", _fixed(self.type, "input: type"))


class _WeightLayer(_LayerBase):
    def _check_weights(self) -> None:
        self._set("weight", _fixed(self.weight, self._where("weight")))
        self._set("bias", _fixed(self.bias, self._where("bias"), optional=True))
        if not self.weight.signed:
            raise ConfigError(self._where(f"weight type must be signed, got {self.weight.ap_type()}"))


@dataclass(frozen=True, kw_only=True)
class Conv2DSpec(_WeightLayer):
    """2-D convolution with quantized weights (Keras ``QConv2D``, channels-last, no activation)."""

    kind: ClassVar[str] = "conv2d"
    filters: int
    kernel_size: tuple[int, int]
    weight: FixedPoint
    bias: FixedPoint | None = None
    strides: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("filters", _int(self.filters, self._where("filters")))
        self._set("kernel_size", _pair(self.kernel_size, self._where("kernel_size")))
        self._set("strides", _pair(self.strides, self._where("strides")))
        self._set("padding", _padding(self.padding, self._where("padding")))
        self._check_weights()


@dataclass(frozen=True, kw_only=True)
class Conv1DSpec(_WeightLayer):
    """1-D convolution over ``(L, C)`` with quantized weights (Keras ``QConv1D``, no activation)."""

    kind: ClassVar[str] = "conv1d"
    filters: int
    kernel_size: int
    weight: FixedPoint
    bias: FixedPoint | None = None
    strides: int = 1
    padding: Any = "valid"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("filters", _int(self.filters, self._where("filters")))
        for attribute in ("kernel_size", "strides"):
            value = getattr(self, attribute)
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            self._set(attribute, _int(value, self._where(attribute)))
        self._set("padding", _padding(self.padding, self._where("padding")))
        self._check_weights()


@dataclass(frozen=True, kw_only=True)
class DenseSpec(_WeightLayer):
    """Fully connected layer with quantized weights (Keras ``QDense``, no activation)."""

    kind: ClassVar[str] = "dense"
    units: int
    weight: FixedPoint
    bias: FixedPoint | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("units", _int(self.units, self._where("units")))
        self._check_weights()


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


class _PoolBase(_LayerBase):
    pool_size: Any
    strides: Any
    padding: str

    def _check_pool(self) -> None:
        self._check_name()
        self._set("pool_size", _ints(self.pool_size, self._where("pool_size")))
        if self.strides is not None:
            self._set("strides", _ints(self.strides, self._where("strides")))
        if self.padding != "valid":
            raise ConfigError(self._where(f"only padding 'valid' is supported for pooling, got {self.padding!r}"))

    def windows(self, dims: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(pool size, strides) per spatial axis for a ``dims``-D input."""
        pool = spatial(self.pool_size, dims, self._where("pool_size"))
        strides = pool if self.strides is None else spatial(self.strides, dims, self._where("strides"))
        return pool, strides


@dataclass(frozen=True, kw_only=True)
class MaxPoolSpec(_PoolBase):
    """Max pooling (Keras ``MaxPooling1D/2D``, padding 'valid'); keeps the input type."""

    kind: ClassVar[str] = "maxpool"
    pool_size: Any = 2
    strides: Any = None
    padding: str = "valid"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_pool()


@dataclass(frozen=True, kw_only=True)
class AvgPoolSpec(_PoolBase):
    """Average pooling over power-of-two windows (exact: ``log2(window)`` more fractional bits)."""

    kind: ClassVar[str] = "avgpool"
    pool_size: Any = 2
    strides: Any = None
    padding: str = "valid"
    name: str = ""

    def __post_init__(self) -> None:
        self._check_pool()


@dataclass(frozen=True, kw_only=True)
class UpsampleSpec(_LayerBase):
    """Nearest-neighbour upsampling by an integer factor per spatial axis (Keras ``UpSampling1D/2D``)."""

    kind: ClassVar[str] = "upsample"
    size: Any = 2
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        self._set("size", _ints(self.size, self._where("size")))


@dataclass(frozen=True, kw_only=True)
class AddSpec(_LayerBase):
    """Residual add: this tensor plus the output of layer ``source`` (same shape and type)."""

    kind: ClassVar[str] = "add"
    source: str
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(self._where(f"source must name an earlier layer or 'input', got {self.source!r}"))


@dataclass(frozen=True, kw_only=True)
class SqErrorSpec(_LayerBase):
    """Reconstruction score: ``sum((source - x) ** 2)`` over all elements, exact, shape ``(1,)``."""

    kind: ClassVar[str] = "sq_error"
    source: str = INPUT_SOURCE
    name: str = ""

    def __post_init__(self) -> None:
        self._check_name()
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(self._where(f"source must name an earlier layer or 'input', got {self.source!r}"))


LayerSpec = (Conv2DSpec | Conv1DSpec | DenseSpec | ReLUSpec | QuantSpec | FlattenSpec | MaxPoolSpec | AvgPoolSpec
             | UpsampleSpec | AddSpec | SqErrorSpec)
LAYER_KINDS: dict[str, type] = {cls.kind: cls for cls in (
    Conv2DSpec, Conv1DSpec, DenseSpec, ReLUSpec, QuantSpec, FlattenSpec, MaxPoolSpec, AvgPoolSpec, UpsampleSpec,
    AddSpec, SqErrorSpec)}
WEIGHT_LAYERS = (Conv2DSpec, Conv1DSpec, DenseSpec)
ACTIVATION_LAYERS = (ReLUSpec, QuantSpec)


# ---------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class SequentialSpec:
    """A model: the input port and the layers, in order (``add``/``sq_error`` may reach back).

    Layers given without a name are named ``<kind>_<index>``; names must be unique and not
    ``"input"``. Shapes and types are checked on construction, with errors naming the layer.
    """

    input: InputSpec
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.input, InputSpec):
            raise ConfigError(f"model input must be an InputSpec, got {type(self.input).__name__}")
        if not isinstance(self.layers, (list, tuple)):
            raise ConfigError(f"model layers must be a list, got {type(self.layers).__name__}")
        named: list[LayerSpec] = []
        seen: set[str] = {INPUT_SOURCE}
        for index, layer in enumerate(self.layers):
            if type(layer) not in LAYER_KINDS.values():
                raise ConfigError(f"layers[{index}]: not a layer spec: {layer!r}")
            if not layer.name:
                layer = dataclasses.replace(layer, name=f"{layer.kind}_{index}")
            if layer.name in seen:
                what = "reserved" if layer.name == INPUT_SOURCE else "duplicate"
                raise ConfigError(f"layers[{index}]: {what} layer name {layer.name!r}")
            source = getattr(layer, "source", None)
            if source is not None and source not in seen:
                raise ConfigError(f"layers[{index}] ({layer.kind} {layer.name!r}): source {source!r} is not the "
                                  f"input or an earlier layer; earlier layers: {', '.join(n.name for n in named)}")
            seen.add(layer.name)
            named.append(layer)
        object.__setattr__(self, "layers", tuple(named))
        self.output_types()  # validates shapes and types

    # -------------------------------------------------------------------- shapes and types
    def sources(self) -> set[str]:
        """Names of the tensors read again later (``source`` of an add / sq_error layer)."""
        return {layer.source for layer in self.layers if isinstance(layer, (AddSpec, SqErrorSpec))}

    def output_shapes(self) -> list[tuple[int, ...]]:
        """Channels-last output shape of every layer; raises ConfigError naming a misfit layer."""
        return [shape for shape, _ in self._walk()]

    def output_types(self) -> list[FixedPoint]:
        """Fixed-point type of every layer's output (conv/dense: the exact accumulator type)."""
        return [spec for _, spec in self._walk()]

    def input_shapes(self) -> list[tuple[int, ...]]:
        """Channels-last input shape of every layer."""
        return [self.input.shape, *self.output_shapes()[:-1]]

    def _walk(self) -> list[tuple[tuple[int, ...], FixedPoint]]:
        shape, current = self.input.shape, self.input.type
        named: dict[str, tuple[tuple[int, ...], FixedPoint]] = {INPUT_SOURCE: (shape, current)}
        out = []
        for layer in self.layers:
            shape, current = _layer_output(layer, shape, current, named)
            named[layer.name] = (shape, current)
            out.append((shape, current))
        return out

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
                entry[spec_field.name] = _plain(getattr(layer, spec_field.name))
            layers.append(entry)
        return {"input": {"shape": list(self.input.shape), "type": self.input.type.ap_type()}, "layers": layers}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> SequentialSpec:
        """Build from :meth:`to_dict`'s form; errors (ConfigError) name the field and the layer."""
        if isinstance(data, SequentialSpec):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with 'input' and 'layers', got {type(data).__name__}")
        check_keys(data, {"input", "layers"}, where, required={"input"})
        raw_input = data["input"]
        if not isinstance(raw_input, Mapping):
            raise ConfigError(f"{where}.input: expected a mapping with 'shape' and 'type'")
        check_keys(raw_input, {"shape", "type"}, f"{where}.input", required={"shape", "type"})
        try:
            input_spec = InputSpec(shape=raw_input["shape"], type=raw_input["type"])
        except ConfigError as error:
            raise ConfigError(f"{where}.{error}") from None
        raw_layers = data.get("layers") or []
        if not isinstance(raw_layers, (list, tuple)):
            raise ConfigError(f"{where}.layers: expected a list, got {type(raw_layers).__name__}")
        layers = [layer_from_dict(raw, f"{where}.layers[{i}]") for i, raw in enumerate(raw_layers)]
        try:
            return cls(input=input_spec, layers=tuple(layers))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, FixedPoint):
        return value.ap_type()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _conv_output(layer: Conv1DSpec | Conv2DSpec, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    dims = 1 if isinstance(layer, Conv1DSpec) else 2
    if len(shape) != dims + 1:
        wanted = "(L, C)" if dims == 1 else "(H, W, C)"
        raise ConfigError(f"{where}: needs an {wanted} input, got shape {shape}")
    kernel = spatial(layer.kernel_size, dims, where)
    strides = spatial(layer.strides, dims, where)
    pads = padding_pairs(layer.padding, shape[:dims], kernel, strides, where)
    out = []
    for size, k, stride, (before, after) in zip(shape[:dims], kernel, strides, pads, strict=True):
        size_out = (size + before + after - k) // stride + 1
        if size + before + after < k or size_out < 1:
            raise ConfigError(f"{where}: kernel {kernel} does not fit the input {shape}")
        out.append(size_out)
    return (*out, layer.filters)


def _layer_output(layer: LayerSpec, shape: tuple[int, ...], current: FixedPoint,
                  named: dict[str, tuple[tuple[int, ...], FixedPoint]]) -> tuple[tuple[int, ...], FixedPoint]:
    where = f"{layer.kind} layer {layer.name!r}"
    if isinstance(layer, (Conv1DSpec, Conv2DSpec)):
        out = _conv_output(layer, shape, where)
        dims = len(shape) - 1
        fan_in = math.prod(spatial(layer.kernel_size, dims, where)) * shape[-1]
        return out, accumulator_type(current, layer.weight, layer.bias, fan_in)
    if isinstance(layer, DenseSpec):
        if len(shape) != 1:
            raise ConfigError(
                f"{where}: needs a 1-D input, got shape {shape}; put a flatten layer first "
                "(a Dense on the last axis of an image is not supported)"
            )
        return (layer.units,), accumulator_type(current, layer.weight, layer.bias, shape[0])
    if isinstance(layer, (ReLUSpec, QuantSpec)):
        return shape, layer.type
    if isinstance(layer, FlattenSpec):
        return (math.prod(shape),), current
    if isinstance(layer, (MaxPoolSpec, AvgPoolSpec)):
        if len(shape) not in (2, 3):
            raise ConfigError(f"{where}: needs an (L, C) or (H, W, C) input, got shape {shape}")
        pool, strides = layer.windows(len(shape) - 1)
        out = []
        for size, p, stride in zip(shape[:-1], pool, strides, strict=True):
            if size < p:
                raise ConfigError(f"{where}: pool size {pool} does not fit the input {shape}")
            out.append((size - p) // stride + 1)
        if isinstance(layer, AvgPoolSpec):
            current = avgpool_type(current, math.prod(pool), where)
        return (*out, shape[-1]), current
    if isinstance(layer, UpsampleSpec):
        if len(shape) not in (2, 3):
            raise ConfigError(f"{where}: needs an (L, C) or (H, W, C) input, got shape {shape}")
        factors = spatial(layer.size, len(shape) - 1, f"{where}: size")
        return (*(s * f for s, f in zip(shape[:-1], factors, strict=True)), shape[-1]), current
    if isinstance(layer, (AddSpec, SqErrorSpec)):
        other_shape, other_type = named[layer.source]
        if other_shape != shape:
            raise ConfigError(f"{where}: source {layer.source!r} has shape {other_shape}, this input {shape}")
        if other_type != current:
            raise ConfigError(f"{where}: source {layer.source!r} is {other_type.ap_type()} but this input is "
                              f"{current.ap_type()}; both must share a type (re-quantize one with a quant layer)")
        if isinstance(layer, AddSpec):
            return shape, add_type(current)
        return (1,), sq_error_type(current, math.prod(shape))
    raise ConfigError(f"{where}: unsupported layer kind")  # pragma: no cover - LAYER_KINDS is exhaustive


def check_keys(data: Mapping, known: set[str], where: str, required: Collection[str] = ()) -> None:
    """Refuse unknown keys (with a close match) and missing required keys."""
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")


def layer_from_dict(raw: Any, where: str) -> LayerSpec:
    """One layer spec from its dict form (``kind`` plus the fields)."""
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
    check_keys(raw, set(spec_fields) | {"kind"}, label, required=required)
    try:
        return cls(**{k: v for k, v in raw.items() if k != "kind"})
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
