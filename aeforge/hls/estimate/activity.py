"""Word-level switching activity of a model's internal signals (:func:`measure_activity`).

:func:`forward_values` runs the quantized model's spec in numpy (float64, exact on these grids) and
returns every word the hardware holds: the input, each conv/dense accumulator (before
quantization), each quantizer's output, pooling, residual and reconstruction-score results; the
word widths come from the interval nodes of :mod:`aeforge.hls.estimate.layers`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aeforge.errors import ConfigError
from aeforge.hls.estimate.intervals import live_width
from aeforge.hls.estimate.layers import conv_windows, layer_costs, pool_windows, upsample_index, weight_codes


def _linear(layer: Any, module: Any, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    codes, bias = weight_codes(layer, module)
    weight = (codes * layer.weight.lsb).reshape(codes.shape[0], -1)
    if layer.kind == "dense":
        out = x @ weight.T
    else:
        _, positions = conv_windows(layer, shape)
        out3 = np.zeros((len(x), len(positions), weight.shape[0]))
        for p, pairs in enumerate(positions):
            if pairs:
                xi, wi = (np.array(v) for v in zip(*pairs, strict=True))
                out3[:, p, :] = x[:, xi] @ weight[:, wi].T
        out = out3.reshape(len(x), -1)
    if bias is not None:
        out = out + np.tile(bias, out.shape[1] // len(bias))
    return out


def forward_values(model: Any, inputs: np.ndarray) -> list[tuple[str, np.ndarray, int, int]]:
    """The quantized model's word-level signals, in numpy: ``[(name, values (n, elements), lsb_exp, bits)]``.

    ``inputs`` channels-first as the model takes them, on the input grid; values are channels-last.
    Flatten and upsample layers (wiring) add no signal.
    """
    model, costs = layer_costs(model)
    spec = model.spec
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim < 2 or tuple(x.shape[1:]) != tuple(int(s) for s in model.input_shape):
        raise ConfigError(f"inputs must have shape (n, {', '.join(str(s) for s in model.input_shape)}), got {x.shape}")
    if x.ndim >= 3:
        x = np.moveaxis(x, 1, -1)
    in_type = spec.input.type
    x = in_type.quantize(x).reshape(len(x), -1)
    signals = [("input", x, -in_type.frac_bits, in_type.bits)]
    kept = {"input": x}
    sources = spec.sources()
    shape = spec.input.shape
    for cost, module in zip(costs, model.layers, strict=True):
        layer = cost.spec
        kind = layer.kind
        if kind in ("conv1d", "conv2d", "dense"):
            x = _linear(layer, module, x, shape)
        elif kind in ("relu", "quant"):
            x = layer.type.quantize(np.maximum(x, 0.0) if kind == "relu" else x)
        elif kind in ("maxpool", "avgpool"):
            _, windows = pool_windows(layer, shape)
            stacked = x[:, np.array(windows, dtype=np.int64)]
            x = stacked.max(axis=2) if kind == "maxpool" else stacked.sum(axis=2) / stacked.shape[2]
        elif kind == "upsample":
            x = x[:, upsample_index(layer, shape)[1]]
        elif kind == "add":
            x = x + kept[layer.source]
        elif kind == "sq_error":
            diff = kept[layer.source] - x
            x = (diff * diff).sum(axis=1, keepdims=True)
        shape = cost.shape
        if layer.name in sources:
            kept[layer.name] = x
        if kind in ("relu", "quant"):
            signals.append((layer.name, x, -layer.type.frac_bits, layer.type.bits))
        elif kind not in ("flatten", "upsample"):
            lsb, bits = live_width(cost.nodes)
            signals.append((layer.name, x, lsb, bits))
    return signals


def measure_activity(model: Any, inputs: np.ndarray) -> float:
    """Mean bit-toggle probability per inference of the model's internal words between consecutive inputs.

    Every signal of :func:`forward_values` is written as a two's complement word of its width;
    the result is toggled bits / (bits x (n - 1)), weighted over all words. A word-level proxy for
    the gate activity of :func:`~aeforge.hls.estimate.energy.estimate_energy` (glitches and
    adder-internal carries not seen).
    """
    inputs = np.asarray(inputs)
    if len(inputs) < 2:
        raise ConfigError(f"measure_activity needs at least 2 inputs, got {len(inputs)}")
    toggled = 0
    total = 0
    for _, values, lsb, bits in forward_values(model, inputs):
        codes = np.round(np.ldexp(values, -lsb)).astype(np.int64)
        patterns = (codes & ((1 << bits) - 1)).astype(np.uint64)
        flips = np.ascontiguousarray(np.bitwise_xor(patterns[1:], patterns[:-1]))
        toggled += int(np.unpackbits(flips.view(np.uint8)).sum())
        total += bits * flips.size
    return toggled / total if total else 0.0
