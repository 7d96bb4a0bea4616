"""Import a QKeras model (Keras model JSON + HDF5 weights) into aeforge, without TensorFlow.

:func:`load_qkeras` reads the architecture (``model.to_json()``; or the ``model_config`` of a
full-model ``.h5``) and the weights (Keras 2 ``model.save_weights('w.h5')`` layout, or the
``model_weights`` group of ``model.save('m.h5')``) with ``json`` and ``h5py``, and returns an
:class:`ImportedModel`: a :class:`~aeforge.quantize.models.sequential.SequentialSpec`, a torch
state_dict whose weights are already quantized exactly as QKeras quantizes them at inference,
and, when the topology is the ECON-T encoder, the matching aeforge ECON-T configuration.

Supported (channels-last only, a linear chain of layers):

===========================================  =============================================
Keras / QKeras layer                         aeforge
===========================================  =============================================
``InputLayer`` (or ``batch_input_shape``)    :class:`InputSpec` shape ``(H, W, C)``/``(F,)``
first ``QActivation(quantized_bits)``        the input quantizer (:class:`InputSpec` type)
``QActivation(quantized_bits)``              :class:`QuantSpec`
``QActivation(quantized_relu)``              :class:`ReLUSpec`
float ReLU (``Activation('relu')``,          folded into the ``QActivation`` right after it
``ReLU()``, ``QActivation('relu')``,         (``ReLUSpec`` with that quantizer's type);
``activation='relu'``)                       refused anywhere else (it has no fixed-point type)
``QConv2D`` / ``QDense``                     :class:`Conv2DSpec` / :class:`DenseSpec`, plus
                                             a ``ReLUSpec``/``QuantSpec`` for a quantizer
                                             given as their ``activation``
``Flatten``                                  :class:`FlattenSpec` (channels-last order)
``Dropout`` and kin, linear activations      ignored (identities at inference)
===========================================  =============================================

Refused with a :class:`~aeforge.errors.ConfigError` naming the layer: other layer classes
(``BatchNormalization``, ``QBatchNormalization``, plain ``Dense``/``Conv2D``, ...), branches and
shared layers, ``channels_first``, dilation, groups, ``quantized_bits`` with ``alpha`` other than
1 (``"auto_po2"``, a float), stochastic rounding, ``qnoise_factor`` != 1, kernels or biases
without a quantizer. HDF5 problems (missing, extra or mis-shaped weights) raise
:class:`~aeforge.errors.DataError` naming the layer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aeforge.config import ModelConfig, QuantConfig
from aeforge.errors import AeforgeError, ConfigError, DataError, QuantizationError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint, _parse_qkeras_call
from aeforge.quantize.models.econt import IMAGE_SIZE, EcontEncoder
from aeforge.quantize.models.sequential import (
    Conv2DSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    LayerSpec,
    QuantSpec,
    ReLUSpec,
    SequentialQuantModel,
    SequentialSpec,
    build_sequential,
    load_state,
)

if TYPE_CHECKING:
    import h5py

IGNORED_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "AlphaDropout", "GaussianDropout", "GaussianNoise")
"""Layers that are identities at inference and are skipped."""

_QUANTIZER_KEYS = {
    "quantized_bits": {
        "bits", "integer", "symmetric", "keep_negative", "alpha", "use_stochastic_rounding", "qnoise_factor",
        "scale_axis", "var_name", "use_ste", "use_variables", "elements_per_scale", "min_po2_exponent",
        "max_po2_exponent", "post_training_scale",
    },
    "quantized_relu": {
        "bits", "integer", "use_sigmoid", "negative_slope", "use_stochastic_rounding", "relu_upper_bound",
        "is_quantized_clip", "qnoise_factor", "var_name", "use_ste", "use_variables",
    },
}


@dataclass(frozen=True)
class EcontImport:
    """The aeforge ECON-T encoder equivalent of an imported model."""

    model: ModelConfig
    quant: QuantConfig
    encoder_state_dict: dict[str, torch.Tensor] = field(repr=False)

    def build_encoder(self) -> EcontEncoder:
        """An :class:`EcontEncoder` with the imported (quantized) weights loaded."""
        encoder = EcontEncoder(self.model, self.quant)
        load_state(encoder, self.encoder_state_dict, where="imported ECON-T encoder")
        return encoder


@dataclass(frozen=True)
class ImportedModel:
    """What :func:`load_qkeras` found.

    ``state_dict`` holds QKeras-quantized weights in torch layout, keyed ``layers.<i>.weight`` /
    ``layers.<i>.bias`` (float32 where that is exact, else float64). ``source_names`` maps
    ``input_quant`` and every spec layer name to the Keras layer(s) it came from; ``ignored``
    lists Keras layers that were skipped. ``econt`` is set when the model is the ECON-T encoder
    (otherwise ``econt_mismatch`` says why not).
    """

    spec: SequentialSpec
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source_names: dict[str, str]
    ignored: tuple[str, ...] = ()
    econt: EcontImport | None = None
    econt_mismatch: str | None = None

    def build(self) -> SequentialQuantModel:
        """The Brevitas model with the imported weights loaded (float32; ``.double()`` as needed)."""
        model = build_sequential(self.spec)
        load_state(model, self.state_dict, where="imported QKeras weights")
        return model


@dataclass(frozen=True)
class _KerasLayer:
    name: str
    class_name: str
    config: dict[str, Any]


@dataclass
class _WeightPlan:
    index: int
    keras_name: str
    spec: Conv2DSpec | DenseSpec


# ------------------------------------------------------------------------------------------- API
def load_qkeras(
    model_json: str | Path | None,
    weights_h5: str | Path,
    input_type: FixedPoint | str | None = None,
) -> ImportedModel:
    """Import a QKeras model from its JSON architecture and HDF5 weights (no TensorFlow needed).

    ``model_json=None`` reads the architecture from the ``model_config`` attribute of a full-model
    ``.h5``. ``input_type`` is the type of the input port for a model whose first layer is not a
    ``QActivation(quantized_bits)``: QKeras then feeds its input unquantized, so the result
    matches only for data already on that grid. When the model does have an input quantizer,
    an equal ``input_type`` changes nothing and a different one keeps the quantizer as a layer.
    """
    weights_h5 = Path(weights_h5)
    if model_json is None:
        source = str(weights_h5)
        model = _read_h5_model_config(weights_h5)
    else:
        source = str(model_json)
        model = _read_json(Path(model_json))
    if input_type is not None and not isinstance(input_type, FixedPoint):
        try:
            input_type = FixedPoint.from_config(input_type, where="input_type")
        except QuantizationError as error:
            raise ConfigError(str(error)) from None
    spec, plans, source_names, ignored = parse_qkeras_model(model, source=source, input_type=input_type)
    weights = read_keras_weights(weights_h5)
    state_dict = _quantized_state(spec, plans, weights, str(weights_h5))
    econt, mismatch = match_econt(spec, state_dict)
    return ImportedModel(spec, state_dict, source_names, ignored, econt, mismatch)


def parse_qkeras_model(
    model: Mapping[str, Any], source: str = "<model>", input_type: FixedPoint | None = None
) -> tuple[SequentialSpec, list[_WeightPlan], dict[str, str], tuple[str, ...]]:
    """Translate a Keras model config (``json.loads(model.to_json())``) into a SequentialSpec.

    Returns the spec, which spec layers take weights from which Keras layer, the source names and
    the ignored Keras layers. Raises :class:`ConfigError` naming the offending layer.
    """
    layers = _ordered_layers(model, source)
    return _Translator(source, input_type).run(layers)


# ------------------------------------------------------------------------------------------- JSON
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: model JSON not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read model JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a Keras model JSON (expected an object with 'class_name' and 'config')")
    return data


def _read_h5_model_config(path: Path) -> dict[str, Any]:
    with _open_h5(path) as handle:
        raw = handle.attrs.get("model_config")
    if raw is None:
        raise ConfigError(f"{path}: no 'model_config' attribute (a weights-only file); give the model JSON as well")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: model_config attribute is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: model_config attribute is not a Keras model config")
    return data


def _layer_entry(raw: Any, index: int, source: str) -> tuple[_KerasLayer, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("class_name"), str):
        raise ConfigError(f"{source}: layers[{index}] is not a Keras layer entry (no 'class_name')")
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: layers[{index}] ({raw['class_name']}): 'config' is not a mapping")
    name = config.get("name", raw.get("name"))
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: layers[{index}] ({raw['class_name']}) has no name")
    class_name = raw["class_name"].rsplit(">", 1)[-1]  # "Package>Class" of registered objects
    return _KerasLayer(name, class_name, dict(config)), raw.get("inbound_nodes")


def _ordered_layers(model: Mapping[str, Any], source: str) -> list[_KerasLayer]:
    """The model's layers in execution order; a Functional model must be a linear chain."""
    class_name = model.get("class_name")
    config = model.get("config")
    if class_name == "Sequential":
        raw_layers = config.get("layers") if isinstance(config, Mapping) else config
        if not isinstance(raw_layers, list):
            raise ConfigError(f"{source}: Sequential model without a 'layers' list")
        return [_layer_entry(raw, i, source)[0] for i, raw in enumerate(raw_layers)]
    if class_name not in ("Functional", "Model"):
        raise ConfigError(
            f"{source}: unsupported Keras model class {class_name!r}; expected 'Sequential' or 'Functional'"
        )
    if not isinstance(config, Mapping) or not isinstance(config.get("layers"), list):
        raise ConfigError(f"{source}: {class_name} model without a 'layers' list")
    layers: dict[str, _KerasLayer] = {}
    inbound: dict[str, list[str]] = {}
    for index, raw in enumerate(config["layers"]):
        layer, nodes = _layer_entry(raw, index, source)
        if layer.name in layers:
            raise ConfigError(f"{source}: duplicate layer name {layer.name!r}")
        layers[layer.name] = layer
        inbound[layer.name] = _inbound_layers(nodes, layer, source)
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for name, sources in inbound.items():
        for parent in sources:
            if parent not in layers:
                raise ConfigError(f"{source}: layer {name!r} takes its input from unknown layer {parent!r}")
            consumers[parent].append(name)
    roots = [name for name, sources in inbound.items() if not sources]
    if len(roots) != 1:
        raise ConfigError(f"{source}: expected one model input, found {len(roots)}: {roots}")
    order = [roots[0]]
    while consumers[order[-1]]:
        following = consumers[order[-1]]
        if len(following) > 1:
            raise ConfigError(
                f"{source}: layer {order[-1]!r} feeds {len(following)} layers {following}; "
                "branches are not supported (only a linear chain of layers)"
            )
        order.append(following[0])
    unreached = [name for name in layers if name not in order]
    if unreached:
        raise ConfigError(f"{source}: layer(s) {unreached} are not on the chain from the input to the output")
    outputs = config.get("output_layers")
    if outputs and isinstance(outputs[0], str):  # Keras 3 writes a single output as a flat list
        outputs = [outputs]
    if outputs:
        names = [entry[0] for entry in outputs if isinstance(entry, list) and entry]
        if names != [order[-1]]:
            raise ConfigError(f"{source}: model outputs {names} are not the end of the chain {order[-1]!r}")
    return [layers[name] for name in order]


def _inbound_layers(nodes: Any, layer: _KerasLayer, source: str) -> list[str]:
    """Names of the layers feeding ``layer`` (Keras 2 nested lists or Keras 3 ``keras_history``)."""
    if not nodes:
        return []
    if not isinstance(nodes, list):
        raise ConfigError(f"{source}: layer {layer.name!r}: cannot read 'inbound_nodes'")
    if len(nodes) > 1:
        raise ConfigError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) is called {len(nodes)} times (a shared layer); "
            "only a linear chain of layers is supported"
        )
    node = nodes[0]
    names: list[str] = []
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        _collect_history(node.get("args", []), names)
    elif isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        for entry in node:
            if isinstance(entry, list) and entry and isinstance(entry[0], str):
                names.append(entry[0])
            else:
                raise ConfigError(f"{source}: layer {layer.name!r}: cannot read inbound node {entry!r}")
    if len(names) != 1:
        raise ConfigError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) has {len(names)} inputs {names}; "
            "branches and merges are not supported (only a linear chain of layers)"
        )
    return names


def _collect_history(value: Any, names: list[str]) -> None:
    if isinstance(value, Mapping):
        is_tensor = value.get("class_name") == "__keras_tensor__"
        history = value.get("config", {}).get("keras_history") if is_tensor else None
        if history:
            names.append(history[0])
            return
        for item in value.values():
            _collect_history(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_history(item, names)


# ------------------------------------------------------------------------------------------- layers
class _Translator:
    """Walks the ordered Keras layers and builds the SequentialSpec."""

    def __init__(self, source: str, input_type: FixedPoint | None) -> None:
        self.source = source
        self.given_input_type = input_type
        self.input_type: FixedPoint | None = None
        self.shape: tuple[int, ...] | None = None
        self.layers: list[LayerSpec] = []
        self.plans: list[_WeightPlan] = []
        self.source_names: dict[str, str] = {}
        self.ignored: list[str] = []
        self.pending_relu: str | None = None  # a float ReLU waiting for its quantizer

    def error(self, layer: _KerasLayer, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: layer {layer.name!r} ({layer.class_name}): {message}")

    def run(
        self, layers: list[_KerasLayer]
    ) -> tuple[SequentialSpec, list[_WeightPlan], dict[str, str], tuple[str, ...]]:
        if not layers:
            raise ConfigError(f"{self.source}: the model has no layers")
        body = layers
        if layers[0].class_name == "InputLayer":
            self.shape = self._input_shape(layers[0], layers[0].config.get("batch_input_shape",
                                                                          layers[0].config.get("batch_shape")))
            body = layers[1:]
        elif "batch_input_shape" in layers[0].config:
            self.shape = self._input_shape(layers[0], layers[0].config["batch_input_shape"])
        else:
            raise ConfigError(f"{self.source}: no InputLayer and no 'batch_input_shape': the input shape is unknown")
        for layer in body:
            self.translate(layer)
        if self.pending_relu is not None:
            raise ConfigError(
                f"{self.source}: layer {self.pending_relu!r}: a float ReLU at the end of the model has no "
                "fixed-point type; follow it with QActivation(quantized_relu(...))"
            )
        if self.input_type is None:
            self.input_type = self.given_input_type
        if self.input_type is None:
            raise ConfigError(
                f"{self.source}: the model input is not quantized: make the first layer "
                "QActivation(quantized_bits(...)), or pass input_type (the fixed-point type the input data is on)"
            )
        try:
            spec = SequentialSpec(input=InputSpec(shape=self.shape, type=self.input_type), layers=tuple(self.layers))
        except ConfigError as error:
            raise ConfigError(f"{self.source}: {error}") from None
        return spec, self.plans, self.source_names, tuple(self.ignored)

    def _input_shape(self, layer: _KerasLayer, batch_shape: Any) -> tuple[int, ...]:
        if not isinstance(batch_shape, list) or len(batch_shape) not in (2, 4):
            raise self.error(layer, f"input shape {batch_shape!r} is not (batch, H, W, C) or (batch, F)")
        dims = batch_shape[1:]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise self.error(layer, f"input shape {batch_shape!r} must have fixed positive sizes")
        return tuple(dims)

    def add(self, spec: LayerSpec, *keras_names: str) -> None:
        self.layers.append(spec)
        self.source_names[spec.name] = "+".join(keras_names)

    def translate(self, layer: _KerasLayer) -> None:
        kind = layer.class_name
        config = layer.config
        if kind in IGNORED_LAYERS:
            self.ignored.append(layer.name)
            return
        if kind == "InputLayer":
            raise self.error(layer, "an InputLayer inside the model is not supported")
        if kind in ("Activation", "QActivation"):
            self.activation(layer, config.get("activation"), layer.name, own_layer=True)
            return
        if kind == "ReLU":
            if config.get("max_value") is not None:
                raise self.error(layer, f"max_value={config['max_value']!r} is not supported")
            for key in ("negative_slope", "threshold"):
                if config.get(key, 0) != 0:
                    raise self.error(layer, f"{key}={config[key]!r} is not supported")
            self.float_relu(layer)
            return
        if self.pending_relu is not None:
            raise self.error(
                layer,
                f"the float ReLU {self.pending_relu!r} before it has no fixed-point type; put a "
                "QActivation(quantized_relu(...)) right after the ReLU",
            )
        if kind == "QConv2D":
            self.conv(layer)
        elif kind == "QDense":
            self.dense(layer)
        elif kind == "Flatten":
            if config.get("data_format") not in (None, "channels_last"):
                raise self.error(layer, f"data_format={config['data_format']!r}; only channels_last is supported")
            self.add(FlattenSpec(name=layer.name), layer.name)
        elif kind in ("BatchNormalization", "QBatchNormalization"):
            raise self.error(
                layer, "batch normalization is not supported; fold it into the preceding layer's weights "
                "(e.g. QConv2DBatchnorm then export the folded QConv2D) before import"
            )
        elif kind in ("Dense", "Conv2D"):
            raise self.error(layer, f"an unquantized {kind} has no fixed-point weights; use Q{kind} with quantizers")
        else:
            raise self.error(layer, f"unsupported layer class {kind!r}")

    # ------------------------------------------------------------------- activations
    def float_relu(self, layer: _KerasLayer) -> None:
        if self.pending_relu is None:
            self.pending_relu = layer.name

    def activation(self, layer: _KerasLayer, value: Any, name: str, own_layer: bool) -> None:
        """A layer's activation: ignored (linear), a pending float ReLU, or a quantizer layer."""
        kind, fixed = self.parse_activation(layer, value)
        if kind == "linear":
            if own_layer:
                self.ignored.append(layer.name)
            return
        if kind == "relu":
            self.float_relu(layer)
            return
        assert fixed is not None
        if layer.class_name == "Activation":
            raise self.error(layer, f"unsupported activation {value!r}")
        if self.pending_relu is not None or kind == "quantized_relu":
            sources = (self.pending_relu, layer.name) if self.pending_relu not in (None, layer.name) else (layer.name,)
            self.add(ReLUSpec(type=fixed, name=name), *sources)
            self.pending_relu = None
            return
        if not self.layers and self.input_type is None and (
            self.given_input_type is None or self.given_input_type == fixed
        ):
            self.input_type = fixed
            self.source_names["input_quant"] = layer.name
            return
        self.add(QuantSpec(type=fixed, name=name), layer.name)

    def parse_activation(self, layer: _KerasLayer, value: Any) -> tuple[str, FixedPoint | None]:
        """``("linear"|"relu", None)`` or ``("quantized_bits"|"quantized_relu", type)``."""
        if value is None:
            return "linear", None
        if isinstance(value, str):
            text = value.strip()
            if text in ("linear", "None", ""):
                return "linear", None
            if text == "relu":
                return "relu", None
            if "(" not in text:
                raise self.error(layer, f"unsupported activation {value!r}")
            try:
                value = _parse_qkeras_call(text, where="activation")
            except QuantizationError as error:
                raise self.error(layer, str(error)) from None
        if isinstance(value, Mapping) and value.get("class_name") in ("linear", "relu") and not value.get("config"):
            return self.parse_activation(layer, value["class_name"])
        fixed = self.quantizer(layer, value, "activation", allowed=("quantized_bits", "quantized_relu"))
        return str(value["class_name"]), fixed

    def quantizer(self, layer: _KerasLayer, value: Any, what: str, allowed: tuple[str, ...]) -> FixedPoint:
        """The exact FixedPoint of a QKeras quantizer config (dict or string form)."""
        if isinstance(value, str):
            try:
                value = _parse_qkeras_call(value, where=what)
            except QuantizationError as error:
                raise self.error(layer, str(error)) from None
        if not isinstance(value, Mapping) or "class_name" not in value:
            raise self.error(layer, f"{what}: cannot read quantizer {value!r}")
        name = value["class_name"]
        if name not in allowed:
            raise self.error(layer, f"{what}: quantizer {name!r} is not supported (only {', '.join(allowed)})")
        config = dict(value.get("config") or {})
        unknown = sorted(set(config) - _QUANTIZER_KEYS[name])
        if unknown:
            raise self.error(layer, f"{what}: unknown {name} option(s) {unknown}; cannot tell their effect")
        if config.get("qnoise_factor", 1.0) not in (None, 1, 1.0):
            raise self.error(layer, f"{what}: qnoise_factor={config['qnoise_factor']!r} (partial quantization)")
        if config.get("post_training_scale") is not None:
            raise self.error(layer, f"{what}: post_training_scale is not supported")
        for key in ("bits", "integer"):
            number = config.get(key)
            if isinstance(number, float) and number.is_integer():
                config[key] = int(number)
            elif number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise self.error(layer, f"{what}: {key}={number!r} must be an integer")
        try:
            return FixedPoint.from_qkeras({"class_name": name, "config": config}, where=f"{what} {name}")
        except QuantizationError as error:
            raise self.error(layer, str(error)) from None

    # ------------------------------------------------------------------- weight layers
    def weight_types(self, layer: _KerasLayer) -> tuple[FixedPoint, FixedPoint | None]:
        config = layer.config
        if config.get("kernel_quantizer") is None:
            raise self.error(layer, "no kernel_quantizer: float weights have no fixed-point type")
        weight = self.quantizer(layer, config["kernel_quantizer"], "kernel_quantizer", allowed=("quantized_bits",))
        if not config.get("use_bias", True):
            return weight, None
        if config.get("bias_quantizer") is None:
            raise self.error(
                layer, "no bias_quantizer: hardware needs quantized biases (hls4ml would give a float bias "
                "fixed<16,6>); add bias_quantizer or use_bias=False"
            )
        bias = self.quantizer(layer, config["bias_quantizer"], "bias_quantizer", allowed=("quantized_bits",))
        return weight, bias

    def conv(self, layer: _KerasLayer) -> None:
        config = layer.config
        if config.get("data_format") not in (None, "channels_last"):
            raise self.error(layer, f"data_format={config['data_format']!r}; only channels_last is supported")
        if _as_pair(config.get("dilation_rate", 1)) != (1, 1):
            raise self.error(layer, f"dilation_rate={config['dilation_rate']!r} is not supported (only 1)")
        if config.get("groups", 1) != 1:
            raise self.error(layer, f"groups={config['groups']!r} is not supported (only 1)")
        padding = str(config.get("padding", "valid")).lower()
        if padding not in ("same", "valid"):
            raise self.error(layer, f"padding={config.get('padding')!r} is not supported (same or valid)")
        weight, bias = self.weight_types(layer)
        try:
            spec = Conv2DSpec(
                name=layer.name, filters=config.get("filters"), kernel_size=_list_or_int(config.get("kernel_size")),
                strides=_list_or_int(config.get("strides", 1)), padding=padding, weight=weight, bias=bias,
            )
        except ConfigError as error:
            raise self.error(layer, str(error)) from None
        self.weighted(layer, spec)

    def dense(self, layer: _KerasLayer) -> None:
        weight, bias = self.weight_types(layer)
        try:
            spec = DenseSpec(name=layer.name, units=layer.config.get("units"), weight=weight, bias=bias)
        except ConfigError as error:
            raise self.error(layer, str(error)) from None
        self.weighted(layer, spec)

    def weighted(self, layer: _KerasLayer, spec: Conv2DSpec | DenseSpec) -> None:
        self.plans.append(_WeightPlan(len(self.layers), layer.name, spec))
        self.add(spec, layer.name)
        self.activation(layer, layer.config.get("activation"), f"{layer.name}_activation", own_layer=False)


def _list_or_int(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _as_pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return value, value


# ------------------------------------------------------------------------------------------- HDF5
def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ToolUnavailableError("reading Keras HDF5 files needs h5py (pip install h5py)") from None
    return h5py


@contextlib.contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    h5py = _h5py()
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
    with handle:
        yield handle


def _attr_strings(node: h5py.Group, name: str) -> list[str] | None:
    """A string-list attribute as Keras writes it (possibly chunked as ``name0``, ``name1``, ...)."""
    if name in node.attrs:
        values = list(node.attrs[name])
    elif f"{name}0" in node.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in node.attrs:
            values.extend(node.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_weights(path: str | Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Keras 2 HDF5 weights: layer name -> ``[(weight name, array), ...]`` in stored order.

    Reads ``model.save_weights('w.h5')`` files and the ``model_weights`` group of
    ``model.save('m.h5')``; refuses other layouts (e.g. Keras 3 ``.weights.h5``) with a DataError.
    """
    path = Path(path)
    h5py = _h5py()
    with _open_h5(path) as handle:
        root = handle.get("model_weights", handle)
        layer_names = _attr_strings(root, "layer_names")
        if layer_names is None:
            layout = " (this looks like a Keras 3 .weights.h5 file)" if "layers" in root or "vars" in root else ""
            raise DataError(
                f"{path}: not a Keras 2 HDF5 weights file: no 'layer_names' attribute{layout}; "
                "save with model.save_weights('weights.h5') under Keras 2 / QKeras"
            )
        weights: dict[str, list[tuple[str, np.ndarray]]] = {}
        for layer in layer_names:
            if layer not in root:
                raise DataError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            group = root[layer]
            arrays = []
            for weight_name in _attr_strings(group, "weight_names") or []:
                dataset = group.get(weight_name)
                if not isinstance(dataset, h5py.Dataset):
                    raise DataError(f"{path}: layer {layer!r}: weight {weight_name!r} is listed but not stored")
                arrays.append((weight_name, np.asarray(dataset[()])))
            weights[layer] = arrays
    return weights


def _quantized_state(
    spec: SequentialSpec, plans: list[_WeightPlan], weights: dict[str, list[tuple[str, np.ndarray]]], source: str
) -> dict[str, torch.Tensor]:
    shapes = [spec.input.shape, *spec.output_shapes()]
    planned = {plan.keras_name for plan in plans}
    extra = sorted(name for name, arrays in weights.items() if arrays and name not in planned)
    if extra:
        raise DataError(f"{source}: weights for layer(s) {extra} that the model does not have (or that take none)")
    state: dict[str, torch.Tensor] = {}
    for plan in plans:
        layer = plan.spec
        in_shape = shapes[plan.index]
        where = f"{source}: layer {plan.keras_name!r}"
        stored = weights.get(plan.keras_name)
        if not stored:
            raise DataError(f"{where}: weights missing from the file")
        by_kind: dict[str, np.ndarray] = {}
        for weight_name, array in stored:
            kind = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
            if kind not in ("kernel", "bias") or kind in by_kind:
                raise DataError(f"{where}: unexpected weight {weight_name!r}")
            by_kind[kind] = array
        if isinstance(layer, Conv2DSpec):
            kernel_shape: tuple[int, ...] = (*layer.kernel_size, in_shape[-1], layer.filters)
            bias_shape = (layer.filters,)
        else:
            kernel_shape, bias_shape = (in_shape[0], layer.units), (layer.units,)
        expected = {"kernel": kernel_shape} | ({"bias": bias_shape} if layer.bias is not None else {})
        if set(by_kind) != set(expected):
            raise DataError(f"{where}: stores {sorted(by_kind)}, the model needs {sorted(expected)}")
        for kind, shape in expected.items():
            if tuple(by_kind[kind].shape) != shape:
                raise DataError(f"{where}: {kind} has shape {tuple(by_kind[kind].shape)}, the model needs {shape}")
        try:
            kernel = layer.weight.quantize(by_kind["kernel"].astype(np.float64))
            bias = layer.bias.quantize(by_kind["bias"].astype(np.float64)) if layer.bias is not None else None
        except (QuantizationError, ValueError, TypeError) as error:
            raise DataError(f"{where}: cannot quantize the stored weights: {error}") from None
        kernel = kernel.transpose(3, 2, 0, 1) if isinstance(layer, Conv2DSpec) else kernel.T
        state[f"layers.{plan.index}.weight"] = _tensor(kernel)
        if bias is not None:
            state[f"layers.{plan.index}.bias"] = _tensor(bias)
    return state


def _tensor(values: np.ndarray) -> torch.Tensor:
    values = np.ascontiguousarray(values, dtype=np.float64)
    single = values.astype(np.float32)
    return torch.from_numpy(single if np.array_equal(single, values) else values)


# ------------------------------------------------------------------------------------------- ECON-T
def match_econt(
    spec: SequentialSpec, state_dict: Mapping[str, torch.Tensor]
) -> tuple[EcontImport | None, str | None]:
    """The aeforge ECON-T encoder equivalent of ``spec``, or None and the reason it is not one.

    ECON-T is ``input (8, 8, 1) -> QConv2D(same, square kernel, equal strides) -> quantized_relu ->
    Flatten -> QDense -> quantized_relu``, with one weight type and one bias type for both layers.
    """
    kinds = [layer.kind for layer in spec.layers]
    if kinds != ["conv2d", "relu", "flatten", "dense", "relu"]:
        return None, f"layers are {kinds}, ECON-T is conv2d, relu, flatten, dense, relu"
    conv, conv_act, _, dense, latent = spec.layers
    assert isinstance(conv, Conv2DSpec) and isinstance(dense, DenseSpec)
    assert isinstance(conv_act, ReLUSpec) and isinstance(latent, ReLUSpec)
    checks = [
        (spec.input.shape == (IMAGE_SIZE, IMAGE_SIZE, 1), f"input shape {spec.input.shape} is not (8, 8, 1)"),
        (conv.kernel_size[0] == conv.kernel_size[1], f"kernel {conv.kernel_size} is not square"),
        (conv.strides[0] == conv.strides[1], f"strides {conv.strides} differ"),
        (conv.padding == "same", "conv padding is not 'same'"),
        (conv.bias is not None and dense.bias is not None, "a layer has no bias"),
        (conv.weight == dense.weight, "conv and dense weight types differ"),
        (conv.bias == dense.bias, "conv and dense bias types differ"),
    ]
    for ok, reason in checks:
        if not ok:
            return None, reason
    assert conv.bias is not None
    try:
        model = ModelConfig(
            filters=conv.filters, kernel_size=conv.kernel_size[0], stride=conv.strides[0], latent_dim=dense.units
        )
        quant = QuantConfig(
            input=spec.input.type, weight=conv.weight, bias=conv.bias,
            conv_activation=conv_act.type, latent=latent.type,
        )
    except AeforgeError as error:
        return None, str(error)
    encoder_state = {
        "conv.weight": state_dict["layers.0.weight"], "conv.bias": state_dict["layers.0.bias"],
        "dense.weight": state_dict["layers.3.weight"], "dense.bias": state_dict["layers.3.bias"],
    }
    return EcontImport(model, quant, encoder_state), None
