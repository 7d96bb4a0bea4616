"""EBOPs: a resource estimate of a constant-weight fixed-point network (HGQ's "effective bit operations").

For every multiplication of an input by a constant weight, ``bits(input) * bits(weight)``, summed
over the network; a zero weight (pruned) costs nothing, and so does a tap that only ever sees the
zero padding of a convolution. ``bits(input)`` is the width of the input's fixed-point type (sign
included); ``bits(weight)`` is the number of magnitude bits between the weight's leading one and its
lowest set bit (a weight ``0.75 = 0b0.11`` costs 2, ``0.5`` costs 1): the digits an adder tree has to
add. Layers that do not multiply (ReLU, pooling, flatten, add) cost nothing. With fully parallel
constant-weight arithmetic (da4ml, hls4ml ``latency``) EBOPs track LUTs roughly linearly
(``benchmarks/econt_hw_aware.py`` fits the slope and R² against Yosys).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from aeforge.fixedpoint import FixedPoint


def weight_span_bits(values: np.ndarray, spec: FixedPoint) -> np.ndarray:
    """Bits from the leading one to the lowest set bit of each value's code in ``spec`` (0 for 0)."""
    codes = np.abs(np.rint(np.ldexp(np.asarray(values, dtype=np.float64), spec.frac_bits)).astype(np.int64))
    out = np.zeros(codes.shape, dtype=np.int64)
    nonzero = codes != 0
    c = codes[nonzero]
    lowest = c & -c
    out[nonzero] = _bit_length(c) - _bit_length(lowest) + 1
    return out


def _bit_length(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, np.floor(np.log2(np.maximum(values, 1))).astype(np.int64) + 1, 0)


def tap_counts(sizes: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
               pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """For each kernel tap, the number of output positions where it reads a real (unpadded) input."""
    out_sizes = [(n + b + a - k) // s + 1 for n, (b, a), k, s in zip(sizes, pads, kernel, strides, strict=True)]
    counts = np.zeros(kernel, dtype=np.int64)
    for tap in itertools.product(*(range(k) for k in kernel)):
        total = 1
        for axis, t in enumerate(tap):
            positions = np.arange(out_sizes[axis]) * strides[axis] + t - pads[axis][0]
            total *= int(np.sum((positions >= 0) & (positions < sizes[axis])))
        counts[tap] = total
    return counts


def layer_ebops(weight_bits: Any, input_bits: Any, counts: Any | None = None) -> Any:
    """EBOPs of one conv/dense layer from its weight bits (torch layout ``(out, in, *kernel)``).

    ``input_bits``: the input type's width (a number, or a tensor broadcastable over ``in``); ``counts``:
    :func:`tap_counts` of a convolution (None for a dense layer). Works on numpy arrays and torch tensors.
    """
    per_tap = weight_bits * input_bits
    if counts is not None:
        per_tap = per_tap * counts
    return per_tap.sum()


def model_ebops(model: Any) -> dict[str, int]:
    """Exact EBOPs of a quantized model (a SequentialQuantModel or one with ``as_sequential()``), per layer
    and ``total``, from its quantized constant weights."""
    from aeforge.hls.rtl.trace import to_sequential_model
    from aeforge.quantize.models import spec as S

    model = to_sequential_model(model, "EBOPs")
    spec = model.spec
    in_types = [spec.input.type, *spec.output_types()[:-1]]
    result: dict[str, int] = {}
    for layer, module, in_type, shape in zip(spec.layers, model.layers, in_types, spec.input_shapes(), strict=True):
        if not isinstance(layer, S.WEIGHT_LAYERS):
            continue
        weight = module.weight.detach().to(torch.float64).cpu().numpy()
        bits = weight_span_bits(layer.weight.quantize(weight), layer.weight)
        counts = None
        if isinstance(layer, (S.Conv1DSpec, S.Conv2DSpec)):
            dims = len(shape) - 1
            kernel = S.spatial(layer.kernel_size, dims, layer.name)
            strides = S.spatial(layer.strides, dims, layer.name)
            pads = S.padding_pairs(layer.padding, shape[:dims], kernel, strides, layer.name)
            counts = tap_counts(tuple(shape[:dims]), kernel, strides, pads)
        result[layer.name] = int(layer_ebops(bits, in_type.bits, counts))
    result["total"] = sum(result.values())
    return result


def beta_at(epoch: int, beta: float, warmup_epochs: int, ramp_epochs: int, beta_start: float = 0.0) -> float:
    """The resource-cost weight of QAT epoch ``epoch`` (0-based).

    0 during ``warmup_epochs``; then ``ramp_epochs`` epochs rising to ``beta`` (linear from 0, or
    geometric from ``beta_start`` when it is > 0); ``beta`` afterwards.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch < warmup_epochs:
        return 0.0
    step = epoch - warmup_epochs + 1  # 1..ramp_epochs inside the ramp
    if step >= ramp_epochs:
        return float(beta)
    if beta_start > 0:
        return float(beta_start * (beta / beta_start) ** ((step - 1) / (ramp_epochs - 1)))
    return float(beta * step / ramp_epochs)
