"""The fixed-point types of every hls4ml layer: what the QONNX graph prescribes, and what hls4ml built.

:func:`graph_types` derives, per ONNX node, the types the hls4ml configuration must name: the
activation types of :func:`aeforge.quantize.export.activation_types` (quantizers, pooling,
upsampling, merges, the ``sq_error`` sum), the exact accumulators of ``Conv``/``MatMul``
(:func:`accumulator_type`) and of the average pool. hls4ml's average pool sums a window in
``accum_t`` and divides by the window size in ``accum_t`` (``nnet_pooling.h``: ``y /= length``;
``nnet_pooling_stream.h``: ``sum / N``): with ``log2(window)`` more integer bits for the sum and
``log2(window)`` more fractional bits for the quotient, both steps are exact, so the cast to the
result type (the mean's exact type) is the Brevitas average bit for bit.

:func:`check_hls_precisions` reads back what hls4ml built and raises
:class:`~aeforge.errors.ArtifactError` naming the layer if any type differs from the contract
(or holds weights off their grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ArtifactError, QuantizationError
from aeforge.fixedpoint import MAX_BITS, FixedPoint

if TYPE_CHECKING:
    from qonnx.core.modelwrapper import ModelWrapper

_WEIGHT_LAYERS = {"Conv1D": 1, "Conv2D": 2, "Dense": 0, "PointwiseConv1D": 1, "PointwiseConv2D": 2}
_PASS_THROUGH_LAYERS = ("Reshape", "Transpose", "ZeroPadding1D", "ZeroPadding2D", "Resize", "Clone")
_POOLING_LAYERS = ("Pooling1D", "Pooling2D")


def accumulator_type(
    input_type: FixedPoint, weight_type: FixedPoint, bias_type: FixedPoint | None, fan_in: int
) -> FixedPoint:
    """The narrowest signed type that holds ``bias + sum(x_i * w_i)`` over ``fan_in`` terms exactly.

    Works on integer codes: products of the extreme codes, times the fan-in, plus the extreme bias
    codes aligned to the finer LSB. Every partial sum (in any order) stays inside that range,
    because each product range contains zero. No rounding or overflow ever happens in it, so the
    modes are the cheapest (``TRN``, ``WRAP``).
    """
    if fan_in < 1:
        raise QuantizationError(f"fan-in must be >= 1, got {fan_in}")
    product_frac = input_type.frac_bits + weight_type.frac_bits
    frac = max(product_frac, bias_type.frac_bits) if bias_type is not None else product_frac
    corners = [
        a * b for a in (input_type.min_code, input_type.max_code) for b in (weight_type.min_code, weight_type.max_code)
    ]
    shift = frac - product_frac
    low, high = fan_in * min(corners) << shift, fan_in * max(corners) << shift
    if bias_type is not None:
        bias_shift = frac - bias_type.frac_bits
        low += bias_type.min_code << bias_shift
        high += bias_type.max_code << bias_shift
    bits = max(high.bit_length(), (-low - 1).bit_length() if low < 0 else 0) + 1
    if bits > MAX_BITS:
        raise QuantizationError(
            f"an exact accumulator for {input_type.ap_type()} x {weight_type.ap_type()} over {fan_in} terms "
            f"needs {bits} bits (more than {MAX_BITS})"
        )
    return FixedPoint(bits, bits - frac, signed=True, rounding="TRN", overflow="WRAP")


def covers(container: FixedPoint, value: FixedPoint) -> bool:
    """Does every value of ``value`` fit in ``container`` exactly (same or finer grid, wider range)?"""
    return (
        container.frac_bits >= value.frac_bits
        and container.min_value <= value.min_value
        and container.max_value >= value.max_value
    )


@dataclass(frozen=True)
class _GraphTypes:
    """Types the QONNX graph prescribes, by ONNX node name."""

    results: dict[str, FixedPoint]  # Quant, Relu, shape ops, graph input
    accumulators: dict[str, FixedPoint]  # Conv, MatMul and the bias Add
    weights: dict[str, FixedPoint]
    biases: dict[str, FixedPoint]
    absorbed: dict[str, FixedPoint]  # Conv/MatMul -> the Quant applied directly to its (biased) sum


def graph_types(model: ModelWrapper, input_type: FixedPoint) -> _GraphTypes:
    """Every activation, weight, bias and accumulator type of a hardware-ready QONNX graph."""
    from aeforge.quantize.export import activation_types, describe_node, quant_node_type, tensor_type

    exact = activation_types(model, input_type)
    results: dict[str, FixedPoint] = {}
    accumulators: dict[str, FixedPoint] = {}
    weights: dict[str, FixedPoint] = {}
    biases: dict[str, FixedPoint] = {}
    absorbed: dict[str, FixedPoint] = {}
    for graph_input in model.graph.input:
        results[graph_input.name] = input_type
    for node in model.graph.node:
        if node.op_type == "Quant":
            results[node.name] = quant_node_type(model, node)
        elif node.op_type == "Relu":
            consumers = model.find_consumers(node.output[0]) or []
            if len(consumers) == 1 and consumers[0].op_type == "Quant":
                results[node.name] = quant_node_type(model, consumers[0])
        elif node.op_type in ("Conv", "MatMul"):
            what = describe_node(node)
            data_type = exact.get(node.input[0]) or tensor_type(model, node.input[0])
            if data_type is None:
                if node.input[0] not in results or model.find_producer(node.input[0]) is not None:
                    raise QuantizationError(f"{what}: input activation is not quantized")
                data_type = results[node.input[0]]
            weight_type = tensor_type(model, node.input[1])
            weight = model.get_initializer(model.find_producer(node.input[1]).input[0]) if weight_type else None
            if weight_type is None or weight is None:
                raise QuantizationError(f"{what}: weight is not a quantized constant")
            bias_type, bias_node = None, None
            if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
                bias_type = tensor_type(model, node.input[2])
            elif node.op_type == "MatMul":
                consumers = model.find_consumers(node.output[0]) or []
                if len(consumers) == 1 and consumers[0].op_type == "Add":
                    bias_node = consumers[0]
                    other = [name for name in bias_node.input if name != node.output[0]]
                    bias_type = tensor_type(model, other[0]) if other else None
            if node.op_type == "Conv":
                fan_in = int(np.prod(weight.shape)) // int(weight.shape[0])
            else:
                fan_in = int(weight.shape[0])
            accumulator = accumulator_type(data_type, weight_type, bias_type, fan_in)
            accumulators[node.name] = accumulator
            weights[node.name] = weight_type
            if bias_type is not None:
                biases[node.name] = bias_type
            if bias_node is not None:
                accumulators[bias_node.name] = accumulator
            sum_consumers = model.find_consumers((bias_node or node).output[0]) or []
            if len(sum_consumers) == 1 and sum_consumers[0].op_type == "Quant":
                absorbed[node.name] = quant_node_type(model, sum_consumers[0])
        elif node.op_type in ("Reshape", "Flatten", "Transpose", "Pad", "Identity"):
            source = tensor_type(model, node.input[0])
            if source is None and node.input[0] in results:
                source = results[node.input[0]]
            if source is not None:
                results[node.name] = source
        elif node.op_type == "AveragePool":
            # hls4ml sums the window in accum_t, then divides by the window: exact with log2(window) more
            # integer bits for the sum and log2(window) more fractional bits for the quotient
            source, mean = exact[node.input[0]], exact[node.output[0]]
            shift = mean.frac_bits - source.frac_bits
            accumulators[node.name] = FixedPoint(source.bits + 2 * shift, source.int_bits + shift,
                                                 signed=source.signed, rounding="TRN", overflow="WRAP")
        elif node.op_type == "MaxPool":
            accumulators[node.name] = exact[node.input[0]]
        if node.op_type not in ("Quant", "Relu") and node.output[0] in exact:
            results[node.name] = exact[node.output[0]]  # pooling, upsampling, merges, the sq_error sum
    return _GraphTypes(results, accumulators, weights, biases, absorbed)

def _parse_precision(precision: Any, where: str) -> FixedPoint:
    try:
        return FixedPoint.parse(str(precision))
    except QuantizationError as error:
        raise ArtifactError(f"hls4ml layer {where}: unexpected precision {precision}: {error}") from None


def check_hls_precisions(
    hls_model: Any, qonnx_model: ModelWrapper, input_type: FixedPoint, output_type: FixedPoint
) -> dict[str, dict[str, str]]:
    """Read back the types hls4ml built; raise if any is not what the fixed-point contract needs.

    Returns ``{layer: {type name: hls4ml precision}}`` for reports.
    """
    types = graph_types(qonnx_model, input_type)
    table: dict[str, dict[str, str]] = {}
    variable_types: dict[str, FixedPoint] = {}
    origins: dict[str, str] = {}  # tensor -> the tensor it copies (io_stream Clone outputs)
    for layer in hls_model.get_layers():
        name, kind = layer.name, layer.class_name
        table[name] = {key: str(t.precision) for key, t in layer.types.items()}
        where = f"'{name}' ({kind})"
        result = _parse_precision(layer.get_output_variable().type.precision, where)
        inputs = [variable_types[i] for i in layer.inputs if i in variable_types]
        if kind == "Input":
            expected = input_type
        elif kind in _WEIGHT_LAYERS:
            expected = _check_weight_layer(layer, inputs, where, types)
        elif kind == "Activation":
            activation = str(layer.get_attr("activation")).lower()
            onnx_name = name.removesuffix("_act")
            if activation not in ("relu", "linear") or onnx_name not in types.results:
                raise ArtifactError(f"hls4ml layer {where}: activation {activation!r} has no QONNX counterpart")
            expected = types.results[onnx_name]
        elif kind.endswith(_POOLING_LAYERS):
            expected = _check_pool_layer(layer, inputs, where, types)
        elif kind == "Merge":
            expected = _check_merge_layer(layer, inputs, where, types, [origins.get(i, i) for i in layer.inputs])
        elif kind in _PASS_THROUGH_LAYERS:
            if len(inputs) != 1:
                raise ArtifactError(f"hls4ml layer {where}: input type unknown")
            expected = inputs[0]
        else:
            raise ArtifactError(f"hls4ml layer {where}: layer type {kind} is not part of the exact hardware path")
        if result != expected:
            raise ArtifactError(
                f"hls4ml layer {where}: result type {result.ap_type()} differs from the contract's "
                f"{expected.ap_type()}"
            )
        for output in layer.outputs:  # a Clone (io_stream fork) has several
            variable_types[output] = result
            origins[output] = origins.get(layer.inputs[0], layer.inputs[0]) if kind == "Clone" else output
    outputs = hls_model.get_output_variables()
    if len(outputs) != 1:
        raise ArtifactError(f"the hls4ml model has {len(outputs)} outputs; expected 1")
    final = _parse_precision(outputs[0].type.precision, "output")
    if final != output_type:
        raise ArtifactError(
            f"hls4ml output type {final.ap_type()} differs from the output type {output_type.ap_type()}"
        )
    return table


def _check_weight_layer(layer: Any, inputs: list[FixedPoint], where: str, types: _GraphTypes) -> FixedPoint:
    if len(inputs) != 1:
        raise ArtifactError(f"hls4ml layer {where}: input type unknown")
    weight_type = _parse_precision(layer.types["weight_t"].precision, where)
    bias_type = _parse_precision(layer.types["bias_t"].precision, where) if "bias_t" in layer.types else None
    for key, value_type in (("weight", weight_type), ("bias", bias_type)):
        data = layer.weights[key].data if key in layer.weights else None
        if data is None:
            continue
        if value_type is None or not np.all(value_type.is_representable(np.asarray(data, dtype=np.float64))):
            raise ArtifactError(f"hls4ml layer {where}: {key} values are not on the {key}_t grid")
    spatial = _WEIGHT_LAYERS[layer.class_name]
    if spatial == 0:
        fan_in = int(layer.get_attr("n_in"))
    else:
        kernel = [int(layer.get_attr("filt_width"))] + ([int(layer.get_attr("filt_height"))] if spatial == 2 else [])
        fan_in = int(layer.get_attr("n_chan")) * int(np.prod(kernel))
    has_bias = bias_type is not None and np.any(np.asarray(layer.weights["bias"].data) != 0)
    needed = accumulator_type(inputs[0], weight_type, bias_type if has_bias else None, fan_in)
    # hls4ml folds a Quant applied directly to the sum into result_t: casting the exact accumulator
    # to the quantizer's type (same rounding and saturation) is that quantizer, bit for bit.
    absorbed = [t for node, t in types.absorbed.items() if layer.name.endswith(f"_{node}")]
    # the sq_error sum has an exact contract type (its lower bound is 0, tighter than needed's range)
    absorbed += [t for node, t in types.results.items() if layer.name.endswith(f"_{node}")]
    for key in ("accum_t", "result_t"):
        held = _parse_precision(layer.types[key].precision, where)
        if key == "result_t" and held in absorbed:
            continue
        if not covers(held, needed):
            raise ArtifactError(
                f"hls4ml layer {where}: {key} {held.ap_type()} cannot hold the exact sum ({needed.ap_type()})"
            )
    return _parse_precision(layer.get_output_variable().type.precision, where)


def _contract(types: _GraphTypes, name: str, where: str) -> FixedPoint:
    if name not in types.results:
        raise ArtifactError(f"hls4ml layer {where}: has no counterpart with a fixed-point type in the QONNX graph")
    return types.results[name]


def _check_pool_layer(layer: Any, inputs: list[FixedPoint], where: str, types: _GraphTypes) -> FixedPoint:
    """Max keeps the type; the average needs an accumulator holding the window sum and the exact quotient."""
    if len(inputs) != 1:
        raise ArtifactError(f"hls4ml layer {where}: input type unknown")
    if layer.get_attr("count_pad") or any(int(layer.get_attr(k) or 0) for k in ("pad_left", "pad_right", "pad_top",
                                                                                 "pad_bottom")):
        raise ArtifactError(f"hls4ml layer {where}: padded pooling is not exact")
    strided = any(layer.get_attr(f"pool_{axis}") not in (None, layer.get_attr(f"stride_{axis}"))
                  for axis in ("width", "height"))
    if strided and layer.model.config.get_config_value("IOType") == "io_stream":
        raise ArtifactError(f"hls4ml layer {where}: io_stream pooling needs strides equal to the pool size "
                            "(hls4ml asserts it in C-simulation); use io_parallel or pool with strides = pool_size")
    accum = _parse_precision(layer.types["accum_t"].precision, where)
    window = int(layer.get_attr("pool_width")) * int(layer.get_attr("pool_height") or 1)
    shift = window.bit_length() - 1
    if str(layer.get_attr("pool_op")) == "Average":
        if window != 1 << shift:
            raise ArtifactError(f"hls4ml layer {where}: a mean over {window} values is not exact")
        source = inputs[0]
        needed = FixedPoint(source.bits + 2 * shift, source.int_bits + shift, signed=source.signed)
        if not covers(accum, needed):
            raise ArtifactError(f"hls4ml layer {where}: accum_t {accum.ap_type()} cannot hold the window sum and "
                                f"its exact quotient ({needed.ap_type()})")
    elif not covers(accum, inputs[0]):
        raise ArtifactError(f"hls4ml layer {where}: accum_t {accum.ap_type()} cannot hold {inputs[0].ap_type()}")
    return _contract(types, layer.name, where)


def _check_merge_layer(layer: Any, inputs: list[FixedPoint], where: str, types: _GraphTypes,
                       sources: list[str]) -> FixedPoint:
    """Add/subtract of one type, or the square (multiply) of one tensor; the result is the exact contract type."""
    from aeforge.quantize.export import difference_type
    from aeforge.quantize.models.spec import add_type

    op = str(layer.get_attr("op"))
    if len(layer.inputs) != 2 or len(inputs) != 2:
        raise ArtifactError(f"hls4ml layer {where}: input types unknown")
    first, second = inputs
    if (first.bits, first.int_bits, first.signed) != (second.bits, second.int_bits, second.signed):
        raise ArtifactError(f"hls4ml layer {where}: merges {first.ap_type()} with {second.ap_type()}")
    expected = _contract(types, layer.name, where)
    exact = {"add": add_type, "subtract": difference_type}
    if op == "multiply":
        # the square of a difference: its range follows from the difference's operands (checked at export)
        if sources[0] != sources[1]:
            raise ArtifactError(f"hls4ml layer {where}: only the square of one tensor is an exact multiply here")
        return expected
    if op not in exact:
        raise ArtifactError(f"hls4ml layer {where}: merge '{op}' is not part of the exact hardware path")
    needed = exact[op](first)
    if not covers(expected, needed):
        raise ArtifactError(f"hls4ml layer {where}: result {expected.ap_type()} cannot hold the exact {op} "
                            f"({needed.ap_type()})")
    return expected
