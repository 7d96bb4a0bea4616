"""Test helper: write QKeras-format model files (Keras JSON + Keras 2 HDF5) without TensorFlow,
and run an independent numpy reference of the QKeras forward pass on the same description.

The reference follows the QKeras source (``qkeras/quantizers.py``), not aeforge's FixedPoint:

* ``quantized_bits``: ``m = 2**(bits - keep_negative)``, ``m_i = 2**integer``,
  ``q = m_i * clip(round_half_even(x * m / m_i), keep_negative * (-m + symmetric), m - 1) / m``;
* ``quantized_relu``: ``m = 2**bits``, ``q = m_i * clip(round_half_even(x * m / m_i), 0, m - 1) / m``;
* TensorFlow SAME padding (the extra row/column at the bottom/right), NHWC tensors, Keras kernels
  ``(kh, kw, cin, cout)`` and ``(in, out)``, channels-last flatten.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

Quantizer = dict[str, Any]  # {"class_name": ..., "config": {...}}


def qbits(bits: int, integer: int = 0, symmetric: int = 0, keep_negative: bool = True, **extra: Any) -> Quantizer:
    """A ``quantized_bits`` config as QKeras' ``get_config`` writes it."""
    config = {"bits": bits, "integer": integer, "symmetric": symmetric, "alpha": 1, "keep_negative": keep_negative,
              "use_stochastic_rounding": False, "qnoise_factor": 1.0}
    config.update(extra)
    return {"class_name": "quantized_bits", "config": config}


def qrelu(bits: int, integer: int = 0, **extra: Any) -> Quantizer:
    """A ``quantized_relu`` config as QKeras' ``get_config`` writes it."""
    config = {"bits": bits, "integer": integer, "use_sigmoid": 0, "negative_slope": 0.0,
              "use_stochastic_rounding": False, "relu_upper_bound": None, "qnoise_factor": 1.0}
    config.update(extra)
    return {"class_name": "quantized_relu", "config": config}


def _string_form(quantizer: str) -> Quantizer:
    """Parse ``quantized_relu(9, 1)`` / ``quantized_bits(bits=8, integer=3, alpha=1)`` for the reference."""
    name, args = re.fullmatch(r"(\w+)\((.*)\)", quantizer.replace(" ", "")).groups()
    positional = {"quantized_bits": ["bits", "integer", "symmetric", "keep_negative"],
                  "quantized_relu": ["bits", "integer"]}[name]
    config: dict[str, Any] = {}
    for index, arg in enumerate(a for a in args.split(",") if a):
        key, _, value = arg.rpartition("=")
        config[key or positional[index]] = _literal(value)
    return {"class_name": name, "config": config}


def _literal(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    return float(text) if "." in text else int(text)


# ---------------------------------------------------------------------------------- reference math
def ref_quantized_bits(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    bits, integer = config["bits"], config.get("integer", 0)
    keep_negative = int(bool(config.get("keep_negative", True)))
    symmetric = int(bool(config.get("symmetric", 0)))
    m = 2.0 ** (bits - keep_negative)
    m_i = 2.0**integer
    return m_i * np.clip(np.round(x * m / m_i), keep_negative * (-m + symmetric), m - 1) / m


def ref_quantized_relu(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    m = 2.0 ** config["bits"]
    m_i = 2.0 ** config.get("integer", 0)
    return m_i * np.clip(np.round(np.maximum(x, 0.0) * m / m_i), 0, m - 1) / m


def ref_quantize(x: np.ndarray, quantizer: Quantizer | str) -> np.ndarray:
    if isinstance(quantizer, str):
        quantizer = _string_form(quantizer)
    function = {"quantized_bits": ref_quantized_bits, "quantized_relu": ref_quantized_relu}[quantizer["class_name"]]
    return function(np.asarray(x, dtype=np.float64), quantizer["config"])


def ref_conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: tuple[int, int],
               padding: str) -> np.ndarray:
    """TensorFlow ``conv2d`` on NHWC ``x`` with an HWIO kernel, in float64."""
    n, height, width, _ = x.shape
    kh, kw, _, filters = kernel.shape
    sh, sw = strides
    if padding == "same":
        out_h, out_w = math.ceil(height / sh), math.ceil(width / sw)
        pad_h = max((out_h - 1) * sh + kh - height, 0)
        pad_w = max((out_w - 1) * sw + kw - width, 0)
        pads = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        x = np.pad(x, pads)
    else:
        out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    out = np.zeros((n, out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            out[:, i, j, :] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out if bias is None else out + bias


# ---------------------------------------------------------------------------------- model builder
@dataclass
class QKerasModel:
    """A QKeras model description: writes its JSON/HDF5 files and runs the numpy reference."""

    input_shape: tuple[int, ...]
    input_name: str = "input_1"
    layers: list[dict[str, Any]] = field(default_factory=list)  # Keras layer entries
    weights: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def _add(self, class_name: str, name: str, **config: Any) -> None:
        self.layers.append({"class_name": class_name, "config": {"name": name, "trainable": True,
                                                                 "dtype": "float32", **config}})

    def qactivation(self, name: str, activation: Quantizer | str) -> QKerasModel:
        self._add("QActivation", name, activation=activation)
        return self

    def activation(self, name: str, activation: str) -> QKerasModel:
        self._add("Activation", name, activation=activation)
        return self

    def dropout(self, name: str, rate: float = 0.3) -> QKerasModel:
        self._add("Dropout", name, rate=rate, noise_shape=None, seed=None)
        return self

    def flatten(self, name: str) -> QKerasModel:
        self._add("Flatten", name, data_format="channels_last")
        return self

    def _scale(self, quantizer: Quantizer | None) -> float:
        """Spread stored float weights a bit past the quantizer range (exercises saturation)."""
        if quantizer is None:
            return 1.0
        config = quantizer["config"]
        return 1.3 * 2.0 ** config.get("integer", 0)

    def qconv2d(self, name: str, filters: int, kernel_size: int | tuple[int, int], strides: int | tuple = 1,
                padding: str = "valid", kernel_quantizer: Quantizer | None = None,
                bias_quantizer: Quantizer | None = None, use_bias: bool = True, activation: Any = "linear",
                in_channels: int = 1, **extra: Any) -> QKerasModel:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        sh, sw = (strides, strides) if isinstance(strides, int) else strides
        self._add("QConv2D", name, filters=filters, kernel_size=[kh, kw], strides=[sh, sw], padding=padding,
                  data_format="channels_last", dilation_rate=[1, 1], groups=1, activation=activation,
                  use_bias=use_bias, kernel_initializer={"class_name": "HeNormal", "config": {"seed": None}},
                  bias_initializer={"class_name": "Zeros", "config": {}}, kernel_regularizer=None,
                  bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                  kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, kernel_range=None,
                  bias_range=None, **extra)
        kernel = self.rng.normal(0, 0.6, (kh, kw, in_channels, filters)) * self._scale(kernel_quantizer)
        stored = [(f"{name}/kernel:0", kernel.astype(np.float32))]
        if use_bias:
            stored.append((f"{name}/bias:0", (self.rng.normal(0, 0.6, filters) * self._scale(bias_quantizer))
                           .astype(np.float32)))
        self.weights[name] = stored
        return self

    def qdense(self, name: str, units: int, in_features: int, kernel_quantizer: Quantizer | None = None,
               bias_quantizer: Quantizer | None = None, use_bias: bool = True, activation: Any = "linear",
               **extra: Any) -> QKerasModel:
        self._add("QDense", name, units=units, activation=activation, use_bias=use_bias,
                  kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
                  bias_initializer={"class_name": "Zeros", "config": {}}, kernel_regularizer=None,
                  bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                  kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, kernel_range=None,
                  bias_range=None, **extra)
        kernel = self.rng.normal(0, 0.6, (in_features, units)) * self._scale(kernel_quantizer)
        stored = [(f"{name}/kernel:0", kernel.astype(np.float32))]
        if use_bias:
            stored.append((f"{name}/bias:0", (self.rng.normal(0, 0.6, units) * self._scale(bias_quantizer))
                           .astype(np.float32)))
        self.weights[name] = stored
        return self

    # ----------------------------------------------------------------------------- files
    def input_entry(self) -> dict[str, Any]:
        return {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *self.input_shape],
                                                       "dtype": "float32", "sparse": False, "ragged": False,
                                                       "name": self.input_name}}

    def to_json(self, functional: bool = False) -> dict[str, Any]:
        """``model.to_json()`` of a Sequential or (linear-chain) Functional model."""
        entries = [self.input_entry(), *json.loads(json.dumps(self.layers))]
        if not functional:
            return {"class_name": "Sequential", "config": {"name": "sequential", "layers": entries},
                    "keras_version": "2.13.1", "backend": "tensorflow"}
        previous = None
        for entry in entries:
            entry["name"] = entry["config"]["name"]
            entry["inbound_nodes"] = [] if previous is None else [[[previous, 0, 0, {}]]]
            previous = entry["name"]
        return {"class_name": "Functional",
                "config": {"name": "model", "layers": entries, "input_layers": [[self.input_name, 0, 0]],
                           "output_layers": [[previous, 0, 0]]},
                "keras_version": "2.13.1", "backend": "tensorflow"}

    def write(self, directory: Path, functional: bool = False, full_model: bool = False,
              stem: str = "model") -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.h5`` (weights-only, or a full-model save)."""
        model_json = directory / f"{stem}.json"
        config = self.to_json(functional)
        model_json.write_text(json.dumps(config), encoding="utf-8")
        names = [self.input_name] if functional else []
        names += [entry["config"]["name"] for entry in self.layers]
        weights = {name: self.weights.get(name, []) for name in names}
        h5_path = directory / f"{stem}.h5"
        write_weights(h5_path, weights, model_config=config if full_model else None)
        return model_json, h5_path

    # ----------------------------------------------------------------------------- reference
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The QKeras forward pass of this model on NHWC (or (N, F)) float64 input."""
        weights = {name: {w.split("/")[-1].split(":")[0]: a.astype(np.float64) for w, a in stored}
                   for name, stored in self.weights.items()}
        x = np.asarray(x, dtype=np.float64)
        for entry in self.layers:
            kind, config = entry["class_name"], entry["config"]
            name = config["name"]
            if kind in ("QActivation", "Activation"):
                x = _apply_activation(x, config["activation"])
            elif kind in ("QConv2D", "QDense"):
                kernel = ref_quantize(weights[name]["kernel"], config["kernel_quantizer"])
                bias = ref_quantize(weights[name]["bias"], config["bias_quantizer"]) if config["use_bias"] else None
                if kind == "QConv2D":
                    x = ref_conv2d(x, kernel, bias, tuple(config["strides"]), config["padding"])
                else:
                    x = x @ kernel + (0.0 if bias is None else bias)
                x = _apply_activation(x, config["activation"])
            elif kind == "Flatten":
                x = x.reshape(len(x), -1)
            elif kind == "Dropout":
                pass
            else:
                raise AssertionError(f"reference has no {kind}")
        return x


def _apply_activation(x: np.ndarray, activation: Any) -> np.ndarray:
    if activation in (None, "linear"):
        return x
    if activation == "relu":
        return np.maximum(x, 0.0)
    return ref_quantize(x, activation)


def write_weights(path: Path, weights: dict[str, list[tuple[str, np.ndarray]]],
                  model_config: dict[str, Any] | None = None) -> None:
    """Keras 2 HDF5 weights: ``save_weights`` layout, or ``model.save`` (``model_weights`` group)."""
    with h5py.File(path, "w") as handle:
        root = handle
        if model_config is not None:
            handle.attrs["model_config"] = json.dumps(model_config).encode("utf-8")
            handle.attrs["keras_version"] = b"2.13.1"
            root = handle.create_group("model_weights")
        root.attrs["layer_names"] = np.array([name.encode("utf-8") for name in weights])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.13.1"
        for name, stored in weights.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode("utf-8") for w, _ in stored], dtype="S")
            for weight_name, array in stored:
                group.create_dataset(weight_name, data=array)
