"""Keras/QKeras layers (in execution order) and their weights -> a SequentialSpec and a state dict.

The translation walks the layers once, quantizing each weight layer's stored weights as QKeras
does at inference (after folding a BatchNormalization that follows it), so every layer's exact
input type is known when the next layer is translated. See :mod:`aeforge.quantize.qkeras` for the
supported layers and the semantics of each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aeforge.errors import ConfigError, DataError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.spec import (
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
)
from aeforge.quantize.qkeras.files import KerasLayer
from aeforge.quantize.qkeras.quantizers import (
    SIGNATURES,
    WeightQuantizer,
    activation_type,
    parse_quantizer,
    weight_quantizer,
)

DEFAULT_INPUT_TYPE = FixedPoint(16, 6)
"""hls4ml's default precision, for a model whose input is not quantized (``ap_fixed<16,6>``)."""

IGNORED_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
                  "GaussianDropout", "GaussianNoise", "ActivityRegularization")
"""Layers that are identities at inference and are skipped."""

WEIGHT_CLASSES = ("QDense", "QConv1D", "QConv2D", "QConv2DBatchnorm")
POOL_CLASSES = {"MaxPooling1D": MaxPoolSpec, "MaxPooling2D": MaxPoolSpec, "AveragePooling1D": AvgPoolSpec,
                "AveragePooling2D": AvgPoolSpec, "MaxPool1D": MaxPoolSpec, "MaxPool2D": MaxPoolSpec,
                "AvgPool1D": AvgPoolSpec, "AvgPool2D": AvgPoolSpec}
BN_KEYS = ("gamma", "beta", "moving_mean", "moving_variance")

Weights = dict[str, list[tuple[str, np.ndarray]]]


@dataclass
class Translation:
    """The result: spec, quantized weights (torch layout) and what the card records."""

    spec: SequentialSpec
    state_dict: dict[str, torch.Tensor]
    source_names: dict[str, str]
    ignored: tuple[str, ...]
    input_type_source: str  # "quantizer" | "given" | "default"
    postprocess: dict[str, Any] | None = None
    folded_batchnorm: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _OpenWeightLayer:
    """A weight layer whose quantization waits for a possible BatchNormalization after it."""

    layer: KerasLayer
    arrays: dict[str, np.ndarray]
    kernel_q: WeightQuantizer
    bias_q: WeightQuantizer | None
    in_shape: tuple[int, ...]
    bn: KerasLayer | None = None
    bn_arrays: dict[str, np.ndarray] | None = None


class Translator:
    """Walks the ordered Keras layers and builds the spec and the quantized weights."""

    def __init__(self, source: str, weights: Weights, weights_source: str, input_type: FixedPoint | None) -> None:
        self.source = source
        self.weights = weights
        self.weights_source = weights_source
        self.given_input_type = input_type
        self.input_type: FixedPoint | None = None
        self.input_type_source = "default"
        self.shape: tuple[int, ...] = ()
        self.layers: list[LayerSpec] = []
        self.state: dict[str, torch.Tensor] = {}
        self.source_names: dict[str, str] = {}
        self.ignored: list[str] = []
        self.used_weights: set[str] = set()
        self.pending_relu: tuple[str, str] | None = None  # (spec name, Keras layer name) of a float ReLU
        self.open: _OpenWeightLayer | None = None
        self.postprocess: dict[str, Any] | None = None
        self.folded: list[dict[str, str]] = []

    def error(self, layer: KerasLayer, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: layer {layer.name!r} ({layer.class_name}): {message}")

    # ------------------------------------------------------------------- driver
    def run(self, layers: list[KerasLayer]) -> Translation:
        if not layers:
            raise ConfigError(f"{self.source}: the model has no layers")
        first = layers[0]
        if first.class_name == "InputLayer":
            batch_shape = first.config.get("batch_input_shape", first.config.get("batch_shape"))
            self.shape = self._input_shape(first, batch_shape)
            self.used_weights.add(first.name)
            layers = layers[1:]
        elif "batch_input_shape" in first.config:
            self.shape = self._input_shape(first, first.config["batch_input_shape"])
        else:
            raise ConfigError(f"{self.source}: no InputLayer and no 'batch_input_shape': the input shape is unknown")
        for layer in layers:
            self.translate(layer)
        self.close_weight_layer()
        self.flush_relu()
        self.resolve_input()
        self.type_output()
        extra = sorted(name for name, arrays in self.weights.items() if arrays and name not in self.used_weights)
        if extra:
            raise DataError(f"{self.weights_source}: weights for layer(s) {extra} that the model does not have "
                            "(or that take none)")
        spec = self.current_spec()
        return Translation(spec, self.state, self.source_names, tuple(self.ignored), self.input_type_source,
                           self.postprocess, self.folded)

    def type_output(self) -> None:
        """End a model whose last layer has no output quantizer with the identity quantizer to its exact type.

        The exact accumulator (or pooled) values are all representable in that type, so nothing changes
        numerically; the hardware output port gets an explicit fixed-point type.
        """
        if not self.layers or isinstance(self.layers[-1], (ReLUSpec, QuantSpec)):
            return
        last = self.layers[-1]
        _, exact = self.current()
        name = f"{last.name}_output"
        self.add(QuantSpec(type=exact, name=name), self.source_names[last.name].split("+")[0])

    def _input_shape(self, layer: KerasLayer, batch_shape: Any) -> tuple[int, ...]:
        if not isinstance(batch_shape, list) or len(batch_shape) not in (2, 3, 4):
            raise self.error(layer, f"input shape {batch_shape!r} is not (batch, H, W, C), (batch, L, C) or "
                                    "(batch, F)")
        dims = batch_shape[1:]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise self.error(layer, f"input shape {batch_shape!r} must have fixed positive sizes")
        return tuple(dims)

    def resolve_input(self) -> None:
        """Fix the input type when the model turns out to have no input quantizer."""
        if self.input_type is None:
            given = self.given_input_type
            self.input_type = given if given is not None else DEFAULT_INPUT_TYPE
            self.input_type_source = "given" if given is not None else "default"

    def current_spec(self) -> SequentialSpec:
        self.resolve_input()
        assert self.input_type is not None
        try:
            return SequentialSpec(input=InputSpec(shape=self.shape, type=self.input_type), layers=tuple(self.layers))
        except ConfigError as error:
            raise ConfigError(f"{self.source}: {error}") from None

    def current(self) -> tuple[tuple[int, ...], FixedPoint]:
        """Shape and type of the tensor the next layer reads."""
        spec = self.current_spec()
        return spec.output_shape, spec.output_type

    def add(self, spec: LayerSpec, *keras_names: str) -> None:
        """Append a layer; shape and type errors name the Keras layer."""
        self.resolve_input()
        self.layers.append(spec)
        try:
            SequentialSpec(input=InputSpec(shape=self.shape, type=self.input_type), layers=tuple(self.layers))
        except ConfigError as error:
            self.layers.pop()
            raise ConfigError(f"{self.source}: layer {keras_names[-1]!r}: {error}") from None
        self.source_names[spec.name] = "+".join(keras_names)

    # ------------------------------------------------------------------- layers
    def translate(self, layer: KerasLayer) -> None:
        kind, config = layer.class_name, layer.config
        if kind in IGNORED_LAYERS:
            self.ignored.append(layer.name)
            return
        if kind == "BatchNormalization":
            self.batchnorm(layer)
            return
        self.close_weight_layer()
        if self.postprocess is not None:
            raise self.error(layer, f"follows the softmax {self.postprocess['layer']!r}; a softmax is supported only "
                                    "as the last layer (it becomes host-side post-processing)")
        if kind == "InputLayer":
            raise self.error(layer, "an InputLayer inside the model is not supported")
        if kind in ("Activation", "QActivation"):
            self.activation(layer, config.get("activation"), layer.name, own_layer=True)
            return
        if kind == "ReLU":
            if config.get("max_value") is not None:
                raise self.error(layer, f"max_value={config['max_value']!r} is not supported")
            for key in ("negative_slope", "threshold"):
                if config.get(key, 0) not in (0, 0.0, None):
                    raise self.error(layer, f"{key}={config[key]!r} is not supported")
            self.float_relu(layer.name, layer.name)
            return
        if kind == "Softmax":
            if config.get("axis", -1) not in (-1, [-1]):
                raise self.error(layer, f"softmax over axis {config['axis']!r}; only the last axis is supported")
            self.softmax(layer)
            return
        self.flush_relu()
        if kind in WEIGHT_CLASSES:
            self.open_weight_layer(layer)
        elif kind == "Flatten":
            self._check_channels_last(layer)
            self.add(FlattenSpec(name=layer.name), layer.name)
        elif kind in POOL_CLASSES:
            self.pool(layer)
        elif kind == "QBatchNormalization":
            raise self.error(layer, "QBatchNormalization (quantized gamma/beta) is not supported; use "
                                    "BatchNormalization right after a QConv/QDense (folded) or QConv2DBatchnorm")
        elif kind in ("Dense", "Conv1D", "Conv2D"):
            raise self.error(layer, f"an unquantized {kind} has no fixed-point weights; use Q{kind} with quantizers")
        else:
            raise self.error(layer, f"unsupported layer class {kind!r}")

    def _check_channels_last(self, layer: KerasLayer) -> None:
        if layer.config.get("data_format") not in (None, "channels_last"):
            raise self.error(layer, f"data_format={layer.config['data_format']!r}; only channels_last is supported")

    def pool(self, layer: KerasLayer) -> None:
        self._check_channels_last(layer)
        config = layer.config
        padding = str(config.get("padding", "valid")).lower()
        if padding != "valid":
            raise self.error(layer, f"padding={config.get('padding')!r} is not supported for pooling (only 'valid')")
        cls = POOL_CLASSES[layer.class_name]
        pool_size, strides = config.get("pool_size", 2), config.get("strides")
        try:
            spec = cls(name=layer.name, pool_size=_ints(pool_size), strides=None if strides is None else _ints(strides))
        except ConfigError as error:
            raise self.error(layer, str(error)) from None
        self.add(spec, layer.name)

    # ------------------------------------------------------------------- activations
    def float_relu(self, spec_name: str, keras_name: str) -> None:
        if self.pending_relu is None:
            self.pending_relu = (spec_name, keras_name)

    def flush_relu(self) -> None:
        """A float ReLU not followed by a quantizer: exact, on the unsigned half of its input type."""
        if self.pending_relu is None:
            return
        spec_name, keras_name = self.pending_relu
        self.pending_relu = None
        _, current = self.current()
        exact = FixedPoint(current.bits - 1, current.int_bits - 1, signed=False) if current.signed else current
        self.add(ReLUSpec(type=exact, name=spec_name), keras_name)

    def softmax(self, layer: KerasLayer) -> None:
        self.flush_relu()
        self.postprocess = {"op": "softmax", "axis": -1, "layer": layer.name, "where": "host"}

    def activation(self, layer: KerasLayer, value: Any, name: str, own_layer: bool) -> None:
        """A layer's activation: ignored (linear), a float ReLU, a softmax, or a quantizer layer."""
        kind, fixed = self.parse_activation(layer, value)
        if kind == "linear":
            if own_layer:
                self.ignored.append(layer.name)
            return
        if kind == "relu":
            self.float_relu(name, layer.name)
            return
        if kind == "softmax":
            self.softmax(layer)
            return
        assert fixed is not None
        pending = self.pending_relu
        if pending is None and kind == "quant" and not self.layers and self.input_type is None and (
            self.given_input_type is None or self.given_input_type == fixed
        ):
            self.input_type = fixed
            self.input_type_source = "quantizer"
            self.source_names["input_quant"] = layer.name
            return
        if pending is not None or kind == "relu_q":
            sources = (pending[1], layer.name) if pending is not None and pending[1] != layer.name else (layer.name,)
            self.pending_relu = None
            self.add(ReLUSpec(type=fixed, name=name), *sources)
            return
        self.add(QuantSpec(type=fixed, name=name), layer.name)

    def parse_activation(self, layer: KerasLayer, value: Any) -> tuple[str, FixedPoint | None]:
        """``("linear"|"relu"|"softmax", None)`` or ``("relu_q"|"quant", type)``."""
        if value is None:
            return "linear", None
        if isinstance(value, Mapping) and value.get("class_name") in ("linear", "relu", "softmax") and not (
            value.get("config") or {}
        ):
            value = value["class_name"]
        if isinstance(value, str):
            text = value.strip()
            if text in ("linear", "None", ""):
                return "linear", None
            if text in ("relu", "softmax"):
                return text, None
            if "(" not in text and text not in SIGNATURES:
                raise self.error(layer, f"unsupported activation {value!r} (supported: linear, relu, a trailing "
                                        "softmax, quantized_bits, quantized_relu)")
        if layer.class_name == "Activation":
            raise self.error(layer, f"unsupported activation {value!r}")
        try:
            quantizer = parse_quantizer(value, "activation")
            kind, fixed = activation_type(quantizer, "activation")
        except QuantizationError as error:
            raise self.error(layer, str(error)) from None
        return ("relu_q" if kind == "relu" else "quant"), fixed

    # ------------------------------------------------------------------- weight layers
    def open_weight_layer(self, layer: KerasLayer) -> None:
        config = layer.config
        self._check_channels_last(layer)
        dims = 0 if layer.class_name == "QDense" else (1 if layer.class_name == "QConv1D" else 2)
        if dims:
            dilation = config.get("dilation_rate", 1)
            if any(d != 1 for d in (dilation if isinstance(dilation, (list, tuple)) else [dilation])):
                raise self.error(layer, f"dilation_rate={dilation!r} is not supported (only 1)")
            if config.get("groups", 1) != 1:
                raise self.error(layer, f"groups={config['groups']!r} is not supported (only 1)")
            padding = str(config.get("padding", "valid")).lower()
            if padding not in ("same", "valid"):
                raise self.error(layer, f"padding={config.get('padding')!r} is not supported (same or valid)")
        if config.get("kernel_quantizer") is None:
            raise self.error(layer, "no kernel_quantizer: float weights have no fixed-point type; add one "
                                    "(e.g. quantized_bits(6, 0, alpha=1))")
        folds_bn = layer.class_name == "QConv2DBatchnorm"
        use_bias = bool(config.get("use_bias", True))
        try:
            kernel_q = weight_quantizer(parse_quantizer(config["kernel_quantizer"], "kernel_quantizer"), "kernel",
                                        "kernel_quantizer")
            bias_q = None
            if config.get("bias_quantizer") is not None:
                bias_q = weight_quantizer(parse_quantizer(config["bias_quantizer"], "bias_quantizer"), "bias",
                                          "bias_quantizer")
        except QuantizationError as error:
            raise self.error(layer, str(error)) from None
        if (use_bias or folds_bn) and bias_q is None:
            raise self.error(layer, "no bias_quantizer: hardware needs quantized biases (hls4ml would give a float "
                                    "bias fixed<16,6>); add bias_quantizer or use_bias=False")
        in_shape, _ = self.current()
        arrays = self.layer_arrays(layer, allowed=("kernel", "bias", *BN_KEYS, "iteration"))
        open_layer = _OpenWeightLayer(layer, arrays, kernel_q, bias_q if (use_bias or folds_bn) else None, in_shape)
        if folds_bn:
            bn_arrays = {key: arrays.pop(key) for key in BN_KEYS if key in arrays}
            arrays.pop("iteration", None)
            open_layer.bn, open_layer.bn_arrays = layer, bn_arrays
        self.open = open_layer
        if folds_bn:
            self.close_weight_layer()

    def layer_arrays(self, layer: KerasLayer, allowed: tuple[str, ...]) -> dict[str, np.ndarray]:
        where = f"{self.weights_source}: layer {layer.name!r}"
        stored = self.weights.get(layer.name)
        if not stored:
            raise DataError(f"{where}: weights missing from the file")
        self.used_weights.add(layer.name)
        arrays: dict[str, np.ndarray] = {}
        for weight_name, array in stored:
            kind = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
            if kind not in allowed or kind in arrays:
                raise DataError(f"{where}: unexpected weight {weight_name!r}")
            arrays[kind] = np.asarray(array)
        return arrays

    def batchnorm(self, layer: KerasLayer) -> None:
        open_layer = self.open
        if open_layer is None or open_layer.bn is not None:
            before = "another BatchNormalization" if open_layer is not None else (
                f"{self.layers[-1].kind} layer {self.layers[-1].name!r}" if self.layers else "the input")
            raise self.error(layer, f"batch normalization after {before} cannot be folded; it is supported only "
                                    "right after a QConv1D/QConv2D/QDense without an activation (folded into its "
                                    "weights)")
        if self.parse_activation(open_layer.layer, open_layer.layer.config.get("activation"))[0] != "linear":
            raise self.error(layer, f"cannot be folded into {open_layer.layer.name!r}: that layer applies the "
                                    f"activation {open_layer.layer.config.get('activation')!r} before it; move the "
                                    "activation after the batch normalization")
        if open_layer.bias_q is None:
            raise self.error(layer, f"folding it into {open_layer.layer.name!r} creates a bias, but that layer has no "
                                    "bias_quantizer; add one")
        axis = layer.config.get("axis", -1)
        rank = len(open_layer.in_shape)
        if axis not in (-1, [-1], rank, [rank]):
            raise self.error(layer, f"axis={axis!r}: only the channel (last) axis is supported")
        open_layer.bn, open_layer.bn_arrays = layer, self.layer_arrays(layer, allowed=BN_KEYS)

    def close_weight_layer(self) -> None:
        """Quantize the open weight layer (folding its batch normalization) and add it to the spec."""
        open_layer, self.open = self.open, None
        if open_layer is None:
            return
        layer, config = open_layer.layer, open_layer.layer.config
        index = len(self.layers)
        spec, kernel_shape, units = self._weight_spec(open_layer)
        where = f"{self.weights_source}: layer {layer.name!r}"
        arrays = dict(open_layer.arrays)
        has_bias = bool(config.get("use_bias", True))
        expected = {"kernel"} | ({"bias"} if has_bias else set())
        if set(arrays) != expected:
            raise DataError(f"{where}: stores {sorted(arrays)}, the model needs {sorted(expected)}")
        if tuple(arrays["kernel"].shape) != kernel_shape:
            raise DataError(f"{where}: kernel has shape {tuple(arrays['kernel'].shape)}, "
                            f"the model needs {kernel_shape}")
        if has_bias and tuple(arrays["bias"].shape) != (units,):
            raise DataError(f"{where}: bias has shape {tuple(arrays['bias'].shape)}, the model needs {(units,)}")
        kernel = arrays["kernel"].astype(np.float32)
        bias = arrays["bias"].astype(np.float32) if has_bias else None
        if open_layer.bn is not None:
            kernel, bias = self._fold(open_layer, kernel, bias, units)
        try:
            if not (np.all(np.isfinite(kernel)) and (bias is None or np.all(np.isfinite(bias)))):
                raise ValueError("non-finite values")
            q_kernel = open_layer.kernel_q(kernel)
            q_bias = open_layer.bias_q(bias) if bias is not None and open_layer.bias_q is not None else None
            weight_type = open_layer.kernel_q.container(q_kernel)
            bias_type = open_layer.bias_q.container(q_bias) if q_bias is not None and open_layer.bias_q else None
        except (QuantizationError, ValueError, TypeError) as error:
            raise DataError(f"{where}: cannot quantize the stored weights: {error}") from None
        try:
            spec = type(spec)(**{**_fields(spec), "weight": weight_type, "bias": bias_type})
        except ConfigError as error:
            raise self.error(layer, str(error)) from None
        names = (layer.name,) if open_layer.bn is None or open_layer.bn is layer else (layer.name, open_layer.bn.name)
        self.add(spec, *names)
        if open_layer.bn is not None:
            self.folded.append({"batchnorm": open_layer.bn.name, "into": layer.name})
        # Keras (k..., in, out) -> torch (out, in, k...)
        q_kernel = np.moveaxis(q_kernel, (-1, -2), (0, 1)) if q_kernel.ndim > 2 else q_kernel.T
        self.state[f"layers.{index}.weight"] = _tensor(q_kernel)
        if q_bias is not None:
            self.state[f"layers.{index}.bias"] = _tensor(q_bias)
        self.activation(layer, config.get("activation"), f"{layer.name}_activation", own_layer=False)

    def _weight_spec(self, open_layer: _OpenWeightLayer) -> tuple[LayerSpec, tuple[int, ...], int]:
        """A provisional spec (types fixed later), the Keras kernel shape and the output units."""
        layer, config = open_layer.layer, open_layer.layer.config
        in_shape = open_layer.in_shape
        placeholder = FixedPoint(8, 1)
        try:
            if layer.class_name == "QDense":
                if len(in_shape) != 1:
                    raise self.error(layer, f"needs a 1-D input, got shape {in_shape}; put a Flatten before it (a "
                                            "Dense on the last axis of a sequence or image is not supported)")
                spec: LayerSpec = DenseSpec(name=layer.name, units=config.get("units"), weight=placeholder)
                return spec, (in_shape[0], spec.units), spec.units
            padding = str(config.get("padding", "valid")).lower()
            if layer.class_name == "QConv1D":
                if len(in_shape) != 2:
                    raise self.error(layer, f"needs an (L, C) input, got shape {in_shape}")
                spec = Conv1DSpec(name=layer.name, filters=config.get("filters"),
                                  kernel_size=_ints(config.get("kernel_size")), strides=_ints(config.get("strides", 1)),
                                  padding=padding, weight=placeholder)
                return spec, (spec.kernel_size, in_shape[-1], spec.filters), spec.filters
            if len(in_shape) != 3:
                raise self.error(layer, f"needs an (H, W, C) input, got shape {in_shape}")
            spec = Conv2DSpec(name=layer.name, filters=config.get("filters"),
                              kernel_size=_ints(config.get("kernel_size")), strides=_ints(config.get("strides", 1)),
                              padding=padding, weight=placeholder)
            return spec, (*spec.kernel_size, in_shape[-1], spec.filters), spec.filters
        except ConfigError as error:
            if str(error).startswith(self.source):
                raise
            raise self.error(layer, str(error)) from None

    def _fold(self, open_layer: _OpenWeightLayer, kernel: np.ndarray, bias: np.ndarray | None,
              units: int) -> tuple[np.ndarray, np.ndarray]:
        """QKeras's QConv2DBatchnorm inference fold, in float32 and in QKeras's order of operations."""
        bn = open_layer.bn
        assert bn is not None and open_layer.bn_arrays is not None
        config, arrays = bn.config, dict(open_layer.bn_arrays)
        where = f"{self.weights_source}: layer {bn.name!r}"
        needed = {"moving_mean", "moving_variance"} | ({"gamma"} if config.get("scale", True) else set()) | (
            {"beta"} if config.get("center", True) else set())
        if set(arrays) != needed:
            raise DataError(f"{where}: stores {sorted(arrays)}, the batch normalization needs {sorted(needed)}")
        for key, array in arrays.items():
            if tuple(array.shape) != (units,):
                raise DataError(f"{where}: {key} has shape {tuple(array.shape)}, the model needs {(units,)}")
        epsilon = np.float32(config.get("epsilon", 1e-3))
        variance = arrays["moving_variance"].astype(np.float32) + epsilon
        if np.any(variance <= 0):
            raise DataError(f"{where}: moving_variance + epsilon is not positive")
        inv = (1.0 / np.sqrt(variance.astype(np.float64))).astype(np.float32)  # tf.math.rsqrt
        if "gamma" in arrays:
            inv = inv * arrays["gamma"].astype(np.float32)
        base = bias if bias is not None else np.zeros(units, np.float32)
        folded_bias = inv * (base - arrays["moving_mean"].astype(np.float32))
        if "beta" in arrays:
            folded_bias = folded_bias + arrays["beta"].astype(np.float32)
        return (inv * kernel).astype(np.float32), folded_bias.astype(np.float32)


def _ints(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _fields(spec: LayerSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _tensor(values: np.ndarray) -> torch.Tensor:
    values = np.ascontiguousarray(values, dtype=np.float64)
    single = values.astype(np.float32)
    return torch.from_numpy(single if np.array_equal(single, values) else values)
