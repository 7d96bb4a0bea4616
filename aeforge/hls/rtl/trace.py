"""Trace a quantized aeforge model into da4ml's trace API, layer by layer from its spec.

da4ml has no PyTorch/Brevitas importer, so :func:`trace_model` replays the fixed-point semantics
of the model's :class:`~aeforge.quantize.models.spec.SequentialSpec` (every hardware model is
converted to its :class:`~aeforge.quantize.models.sequential.SequentialQuantModel` first,
:func:`to_sequential_model`) on a ``FixedVariableArrayInput`` quantized to the input type. Per kind:

* ``conv1d`` / ``conv2d``: zero pad (the spec's explicit/same/valid padding), window slices and one
  constant matmul per output position (da4ml's CMVM solver: adder trees, no multipliers), bias add;
* ``dense``: constant matmul plus bias; ``flatten``: channels-last reshape (wiring);
* ``relu`` / ``quant``: :func:`quantize` (``ap_fixed`` rounding then overflow, below);
* ``maxpool``: a tree of da4ml ``max_of`` (subtract, then mux on the sign bit) per window;
* ``avgpool``: an adder tree per window times ``2**-k`` (a shift: exact);
* ``upsample``: nearest neighbour, repeated wires;
* ``add``: element-wise adders with the traced output of layer ``source``;
* ``sq_error``: differences, squares (da4ml variable x variable multipliers) and an adder tree.

Rounding: da4ml rounds only ``TRN`` (floor) and ``RND`` (half up). Brevitas, QKeras and the
``ap_fixed`` default round half to even (``RND_CONV``); that is built here from ``TRN`` with the
usual hardware trick: add ``half - 1 ulp`` of the source plus the bit that becomes the new LSB,
then truncate (a tie rounds up exactly when the truncated result would be odd). Overflow ``SAT``,
``SAT_SYM`` and ``WRAP`` map directly. ``TRN_ZERO`` and the other modes are refused.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, QuantizationError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint

MAX_TYPE_BITS = 64
"""Widest fixed-point type the tracer accepts for a port or quantizer (aeforge's Verilator binder
moves each bus element through an int64; internal widths are whatever da4ml derives)."""
ROUNDINGS = ("RND_CONV", "TRN")
OVERFLOWS = ("SAT", "SAT_SYM", "WRAP")


# ------------------------------------------------------------------------------------ the model
def to_sequential_model(model: Any, what: str = "the RTL generator") -> Any:
    """The quantized :class:`SequentialQuantModel` of ``model`` (itself, or ``model.as_sequential()``).

    Raises :class:`ArtifactError` naming what is accepted: the ECON-T autoencoder (pass its
    encoder), float models, and classes that are neither a SequentialQuantModel nor describe
    themselves with ``as_sequential()``.
    """
    from aeforge.quantize.models.econt import EcontAutoencoder
    from aeforge.quantize.models.sequential import SequentialQuantModel

    name = type(model).__name__
    if isinstance(model, EcontAutoencoder):
        raise ArtifactError(f"{what} works on the on-detector encoder: pass model.encoder, not the autoencoder")
    if not isinstance(model, SequentialQuantModel) and not callable(getattr(model, "as_sequential", None)):
        raise ArtifactError(
            f"{what} accepts a SequentialQuantModel or a model with as_sequential() (e.g. EcontEncoder), not {name}"
        )
    if not getattr(model, "quantized", False) or getattr(model, "input_type", None) is None:
        raise ArtifactError(f"{name} is not quantized; {what} needs the QAT model")
    if not isinstance(model, SequentialQuantModel):
        model = model.as_sequential()
        if not isinstance(model, SequentialQuantModel):
            raise ArtifactError(f"{name}.as_sequential() returned {type(model).__name__}, not a SequentialQuantModel")
    return model


# ------------------------------------------------------------------------------------ fixed point
def da4ml_available() -> str | None:
    """None when da4ml can be imported, else the reason it cannot."""
    try:
        import da4ml  # noqa: F401
        from da4ml.trace import FixedVariableArrayInput  # noqa: F401
    except Exception as error:  # ImportError, or a broken binary extension
        return f"da4ml is not installed or broken ({error}); install it with `pip install da4ml`"
    return None


def _require_da4ml() -> None:
    reason = da4ml_available()
    if reason is not None:
        raise ToolUnavailableError(reason)


def kif(spec: FixedPoint) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of a type."""
    k = int(spec.signed)
    return k, spec.int_bits - k, spec.frac_bits


def check_type(spec: FixedPoint, where: str) -> None:
    """Refuse types the RTL path cannot build (too wide, unsupported rounding or overflow)."""
    if spec.bits > MAX_TYPE_BITS:
        raise QuantizationError(
            f"{where}: {spec.ap_type()} is wider than the {MAX_TYPE_BITS} bits the RTL path supports (its "
            "simulation moves each port lane through an int64)"
        )
    if spec.rounding not in ROUNDINGS:
        raise QuantizationError(
            f"{where}: rounding AP_{spec.rounding} is not supported by the RTL generator (supported: "
            f"{', '.join('AP_' + r for r in ROUNDINGS)})"
        )
    if spec.overflow not in OVERFLOWS:
        raise QuantizationError(
            f"{where}: overflow AP_{spec.overflow} is not supported by the RTL generator (supported: "
            f"{', '.join('AP_' + o for o in OVERFLOWS)})"
        )


def _wrap(vars_: np.ndarray, like: Any) -> Any:
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(np.asarray(vars_, dtype=object), like.solver_options, hwconf=like.hwconf)


def quantize(x: Any, spec: FixedPoint, where: str) -> Any:
    """``ap_fixed`` quantization of a FixedVariableArray to ``spec`` (round first, then overflow)."""
    check_type(spec, where)
    out = [_quantize_variable(v, spec) for v in x._vars.ravel()]
    return _wrap(np.array(out, dtype=object).reshape(x._vars.shape), x)


def relu_quantize(x: Any, spec: FixedPoint, where: str) -> Any:
    """ReLU then quantization to ``spec`` (an unsigned saturating type's clamp is the ReLU itself)."""
    check_type(spec, where)
    out = []
    for v in x._vars.ravel():
        if _is_constant(v):
            out.append(_constant(max(float(v.low), 0.0), spec, v))
        else:
            out.append(_quantize_variable(v.relu() if spec.signed or spec.overflow == "WRAP" else v, spec))
    return _wrap(np.array(out, dtype=object).reshape(x._vars.shape), x)


def _is_constant(v: Any) -> bool:
    return v.low == v.high


def _constant(value: float, spec: FixedPoint, like: Any) -> Any:
    """A da4ml constant holding ``value`` quantized to ``spec`` by aeforge's own ap_fixed semantics.

    da4ml 0.6 folds constants itself but gets negative values wrong (Decimal's remainder keeps the sign)
    and wraps unsigned ones modulo twice their range; a bias-only output (a row of pruned weights) is such
    a constant, so constants never reach its quantizer.
    """
    from da4ml.trace import FixedVariable

    quantized = float(spec.quantize(np.array([value], dtype=np.float64))[0])
    return FixedVariable.from_const(Decimal(quantized), hwconf=like.hwconf)


def _quantize_variable(v: Any, spec: FixedPoint) -> Any:
    if _is_constant(v):
        return _constant(float(v.low), spec, v)
    k, i, f = kif(spec)
    _, _, fx = v.kif
    if spec.rounding == "TRN" or fx <= f:  # truncation, or nothing below the new LSB: no rounding
        return v.quantize(k, i, f, spec.overflow, "TRN")
    # round half to even = floor(x + half - ulp + lsb_bit * ulp), ulp = 2**-fx
    lsb_bit = v.quantize(0, 1 - f, f, "WRAP", "TRN")  # 0 or 2**-f: the bit that becomes the LSB
    shifted = v + (2.0 ** (-f - 1) - 2.0 ** (-fx)) + lsb_bit * 2.0 ** (f - fx)
    return shifted.quantize(k, i, f, spec.overflow, "TRN")


# ------------------------------------------------------------------------------------ layers
def _grid(values: Any, spec: FixedPoint) -> np.ndarray:
    """Quantized constant parameters (float64), as Brevitas computes them with ``spec``."""
    import torch

    if isinstance(values, torch.Tensor):
        values = values.detach().to(torch.float64).cpu().numpy()
    return spec.quantize(np.asarray(values, dtype=np.float64))


def _params(layer: Any, module: Any) -> tuple[np.ndarray, np.ndarray | None]:
    weight = _grid(module.weight, layer.weight)
    bias = _grid(module.bias, layer.bias) if layer.bias is not None and module.bias is not None else None
    return weight, bias


def _conv(x: Any, layer: Any, module: Any, where: str) -> Any:
    """Channels-last 1-D/2-D conv: ``x`` (*spatial, C), torch weight (F, C, *kernel)."""
    from aeforge.quantize.models.spec import padding_pairs, spatial

    dims = x.ndim - 1
    kernel = spatial(layer.kernel_size, dims, where)
    strides = spatial(layer.strides, dims, where)
    pads = padding_pairs(layer.padding, x.shape[:dims], kernel, strides, where)
    padded = np.zeros(tuple(s + b + a for s, (b, a) in zip(x.shape[:dims], pads, strict=True)) + x.shape[-1:],
                      dtype=object)
    padded[tuple(slice(b, b + s) for s, (b, _) in zip(x.shape[:dims], pads, strict=True))] = x._vars
    out_sizes = [(p - k) // s + 1 for p, k, s in zip(padded.shape[:dims], kernel, strides, strict=True)]
    positions = list(itertools.product(*(range(n) for n in out_sizes)))
    windows = np.empty((len(positions), math.prod(kernel) * x.shape[-1]), dtype=object)
    for row, position in enumerate(positions):
        index = tuple(slice(p * s, p * s + k) for p, s, k in zip(position, strides, kernel, strict=True))
        windows[row] = padded[index].ravel()
    weight, bias = _params(layer, module)
    filters = weight.shape[0]
    matrix = np.transpose(weight, (*range(2, 2 + dims), 1, 0)).reshape(-1, filters)  # (*kernel, C) x F
    out = _solver_input(_wrap(windows, x), matrix) @ matrix
    if bias is not None:
        out = out + bias[None, :]
    return out.reshape(*out_sizes, filters)


EXHAUSTIVE_SEARCH_MAX_WEIGHTS = 16384
"""Constant matrices up to this many entries get da4ml's exhaustive decomposition search (its default);
larger ones a single search pass: on a 128x128 matrix that is 6x faster at the same cost, and it is what
makes a 640x128 layer traceable in about a minute instead of many."""


def _solver_input(x: Any, matrix: np.ndarray) -> Any:
    """``x`` with the da4ml solver options for multiplying by the constant ``matrix``."""
    if matrix.size <= EXHAUSTIVE_SEARCH_MAX_WEIGHTS:
        return x
    from da4ml.trace import FixedVariableArray

    options = {**(x.solver_options or {}), "search_all_decompose_dc": False}
    return FixedVariableArray(x._vars, options, hwconf=x.hwconf)


def _dense(x: Any, layer: Any, module: Any) -> Any:
    weight, bias = _params(layer, module)
    out = _solver_input(x, weight) @ weight.T
    return out + bias if bias is not None else out


def _pool_windows(x: Any, layer: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(positions, window, C)`` object array of the pooling windows, and the output spatial shape."""
    dims = x.ndim - 1
    pool, strides = layer.windows(dims)
    out_sizes = [(n - p) // s + 1 for n, p, s in zip(x.shape[:dims], pool, strides, strict=True)]
    positions = list(itertools.product(*(range(n) for n in out_sizes)))
    windows = np.empty((len(positions), math.prod(pool), x.shape[-1]), dtype=object)
    for row, position in enumerate(positions):
        index = tuple(slice(q * s, q * s + p) for q, s, p in zip(position, strides, pool, strict=True))
        windows[row] = x._vars[index].reshape(-1, x.shape[-1])
    return windows, tuple(out_sizes)


def _maxpool(x: Any, layer: Any) -> Any:
    windows, sizes = _pool_windows(x, layer)
    out = np.empty((windows.shape[0], windows.shape[2]), dtype=object)
    for row, channel in np.ndindex(out.shape):
        out[row, channel] = _tree(list(windows[row, :, channel]), lambda a, b: a.max_of(b))
    return _wrap(out.reshape(*sizes, -1), x)


def _avgpool(x: Any, layer: Any) -> Any:
    windows, sizes = _pool_windows(x, layer)
    size = windows.shape[1]
    shift = size.bit_length() - 1  # a power of two (the spec refuses other windows)
    out = np.empty((windows.shape[0], windows.shape[2]), dtype=object)
    for row, channel in np.ndindex(out.shape):
        out[row, channel] = _tree(list(windows[row, :, channel]), lambda a, b: a + b) * 2.0**-shift
    return _wrap(out.reshape(*sizes, -1), x)


def _tree(values: list[Any], op: Any) -> Any:
    """A balanced binary tree of ``op`` over ``values`` (log2 depth)."""
    while len(values) > 1:
        paired = [op(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        values = paired + ([values[-1]] if len(values) % 2 else [])
    return values[0]


def _upsample(x: Any, layer: Any, where: str) -> Any:
    from aeforge.quantize.models.spec import spatial

    vars_ = x._vars
    for axis, factor in enumerate(spatial(layer.size, x.ndim - 1, where)):
        vars_ = np.repeat(vars_, factor, axis=axis)
    return _wrap(vars_, x)


def _sq_error(x: Any, source: Any) -> Any:
    diff = (source - x)._vars.ravel()
    squares = [d**2 for d in diff]  # d * d on the same variable: an unsigned product
    return _wrap(np.array([_tree(squares, lambda a, b: a + b)], dtype=object), x)


def trace_layers(model: Any, x: Any) -> Any:
    """Trace every layer of a quantized SequentialQuantModel on the FixedVariableArray ``x``."""
    from aeforge.quantize.models import spec as S

    kept: dict[str, Any] = {S.INPUT_SOURCE: x}
    sources = model.spec.sources()
    for index, (layer, module) in enumerate(zip(model.spec.layers, model.layers, strict=True)):
        where = f"layers.{index} ({layer.kind} {layer.name!r})"
        if isinstance(layer, (S.Conv1DSpec, S.Conv2DSpec)):
            x = _conv(x, layer, module, where)
        elif isinstance(layer, S.DenseSpec):
            x = _dense(x, layer, module)
        elif isinstance(layer, S.ReLUSpec):
            x = relu_quantize(x, layer.type, where)
        elif isinstance(layer, S.QuantSpec):
            x = quantize(x, layer.type, where)
        elif isinstance(layer, S.FlattenSpec):
            x = x.reshape(-1)
        elif isinstance(layer, S.MaxPoolSpec):
            x = _maxpool(x, layer)
        elif isinstance(layer, S.AvgPoolSpec):
            x = _avgpool(x, layer)
        elif isinstance(layer, S.UpsampleSpec):
            x = _upsample(x, layer, where)
        elif isinstance(layer, S.AddSpec):
            x = x + kept[layer.source]
        elif isinstance(layer, S.SqErrorSpec):
            x = _sq_error(x, kept[layer.source])
        else:  # pragma: no cover - the spec's kinds are exhaustive
            raise ArtifactError(f"{where}: layer kind {layer.kind!r} is not supported by the RTL generator")
        if layer.name in sources:
            kept[layer.name] = x
    return x


def trace_model(model: Any) -> Any:
    """Trace a quantized aeforge model into a da4ml ``CombLogic`` (the combinational netlist).

    ``model``: a SequentialQuantModel or a model with ``as_sequential()`` (the ECON-T encoder).
    Raises :class:`ArtifactError` for other models (and float models), :class:`QuantizationError`
    for types the generator cannot build (width > 64 bits, rounding other than RND_CONV/TRN,
    overflow SAT_ZERO), :class:`ToolUnavailableError` without da4ml.
    """
    _require_da4ml()
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    model = to_sequential_model(model)
    check_type(model.input_type, "input_quant")
    inp = FixedVariableArrayInput(model.spec.input.shape)  # channels-last, the bus order
    k, i, f = kif(model.input_type)
    # the port carries the input type; inputs are on its grid, so the input quantizer is the identity
    x = inp.quantize(k, i, f, "WRAP", "TRN")
    outputs = trace_layers(model, x)
    with _integer_constants_rounded():
        return comb_trace(inp, outputs)


def _nearest_integer(value: Any) -> int:
    """``int(value)``, except that a Decimal within 1e-9 of an integer becomes that integer."""
    if isinstance(value, Decimal):
        nearest = value.to_integral_value(rounding=ROUND_HALF_EVEN)
        if abs(value - nearest) < Decimal("1e-9"):
            return int(nearest)
    return int(value)


@contextlib.contextmanager
def _integer_constants_rounded() -> Iterator[None]:
    """Work around a da4ml 0.6 tracer bug while lowering a trace to ops.

    ``comb_trace`` turns a constant add into an integer as ``int(constant / step)`` on Decimals. After a long
    chain of adder-tree scalings (a layer whose input factor is ~1e-13) that ratio comes out as 47.99999...,
    and the truncation adds a constant one LSB too small (seen on the 640-128-...-8 AD autoencoder: one bias
    of 569 off, so the RTL disagreed with Brevitas). These ratios are integers by construction, so the
    tracer's ``int`` is replaced by one that takes the nearest integer when the value is that close to it.
    """
    from da4ml.trace import tracer

    tracer.int = _nearest_integer  # module global shadows the builtin inside da4ml's tracer only
    try:
        yield
    finally:
        del tracer.int
