"""Brevitas -> QONNX export for the hardware path (hls4ml), with the fixed-point contract checked.

:func:`export_qonnx` exports a Brevitas model with ``brevitas.export.export_qonnx``, cleans the
graph with qonnx, folds a zero ``Pad`` into the following ``Conv`` (:class:`FoldZeroPadIntoConv`),
converts it to channels-last (:func:`aeforge.quantize.qonnx_layout.to_channels_last`, the layout
hls4ml wants; the graph input and an image output become NHWC / NLC), turns ``Gemm`` into
``MatMul`` + ``Add``, the ``sq_error`` sum into a ``MatMul`` with ones, and cleans up again.

Before anything is written, :func:`check_hardware_graph` refuses (naming the ONNX node and the
PyTorch module it came from) whatever the hardware path cannot compute exactly:

* a ``Quant`` node whose scale is not one constant power of two, whose zero point is not 0, whose
  bit width is not a constant integer, or whose rounding mode hls4ml cannot reproduce (only
  ``ROUND`` = ``AP_RND_CONV`` and ``FLOOR`` = ``AP_TRN``);
* an unquantized (float) weight or bias feeding ``Conv``/``MatMul``/``Gemm``/bias ``Add``;
* an activation that reaches a ``Conv``/``MatMul``/``Gemm``, a pooling, upsampling or merge, or
  the graph output without being quantized, or a graph input not quantized by ``input_type``;
* padded, dilated or ceil-mode pooling, an ``AveragePool`` window that is not a power of two (its
  mean would need rounding), a ``Resize`` that is not nearest-neighbour by integer factors;
* an element-wise ``Add``/``Sub`` of two activations of different fixed-point types, a ``Mul``
  that is not the square of a difference, a ``ReduceSum`` that is not a whole-sample sum of
  squares (the ``sq_error`` score);
* any op outside :data:`SUPPORTED_OPS` (``ConvTranspose``, ``BatchNormalization``, ...).

Every activation then has an exact type (:func:`activation_types`): a ``Quant`` node's
(:func:`quant_node_type`), the input's for max pooling and upsampling, ``log2(window)`` more
fractional bits for an average, one more integer bit for a residual add, and the exact
difference, square and sum types of ``sq_error``. That is how the hls4ml backend sets its precisions.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ArtifactError, QuantizationError
from aeforge.fixedpoint import FixedPoint

if TYPE_CHECKING:  # heavy imports stay inside the functions
    import torch
    from onnx import NodeProto
    from qonnx.core.modelwrapper import ModelWrapper

SUPPORTED_OPS = ("Quant", "Conv", "MatMul", "Gemm", "Add", "Relu", "Reshape", "Flatten", "Transpose", "Pad", "Identity",
                 "MaxPool", "AveragePool", "Resize", "Sub", "Mul", "ReduceSum")
"""ONNX ops the hardware path computes exactly (with the quantization rules above)."""

_SHAPE_OPS = ("Reshape", "Flatten", "Transpose", "Pad", "Identity")
_COMPUTE_OPS = ("Conv", "MatMul", "Gemm")
_UNSUPPORTED_HINTS = {
    "ConvTranspose": "hls4ml has no exact ONNX ConvTranspose path; keep the decoder off the hardware artifact",
    "BatchNormalization": "fold batch normalisation into the preceding layer's weights before QAT",
    "Trunc": "QONNX Trunc (Brevitas TruncAvgPool) is not supported; use a torch AvgPool with a power-of-two window",
    "BipolarQuant": "binary (bipolar) quantizers are not supported by this exporter",
}
_ROUNDING = {"ROUND": "RND_CONV", "FLOOR": "TRN"}

META_INPUT_TYPE = "aeforge.input_type"
META_OUTPUT_TYPE = "aeforge.output_type"
META_LAYOUT = "aeforge.layout"


# ------------------------------------------------------------------------------------ naming
def module_of(node: NodeProto) -> str | None:
    """The PyTorch module an exported ONNX node came from (from the exporter's name scopes), or None."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [str(s) for s in ast.literal_eval(prop.value)]
            except (ValueError, SyntaxError, TypeError):
                return None
            inner = [s for s in scopes[1:-1] if s and not s.endswith("export_handler")]
            return inner[-1].split(".fused_activation_quant_proxy")[0] if inner else None
    return None


def describe_node(node: NodeProto) -> str:
    """``ONNX node 'Conv_0' (Conv, module 'conv')`` for error messages."""
    module = module_of(node)
    where = f", module '{module}'" if module else ""
    return f"ONNX node '{node.name}' ({node.op_type}{where})"


# ------------------------------------------------------------------------------------ Quant nodes
def _attribute(node: NodeProto, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def quant_node_type(model: ModelWrapper, node: NodeProto) -> FixedPoint:
    """The fixed-point type a QONNX ``Quant`` node implements; refuses what hardware cannot do exactly."""
    what = describe_node(node)
    if node.op_type != "Quant":
        raise ArtifactError(f"{what} is not a Quant node")
    if len(node.input) != 4:
        raise QuantizationError(f"{what}: expected 4 inputs (x, scale, zero point, bit width)")
    scale, zero_point, bit_width = (model.get_initializer(name) for name in node.input[1:4])
    if scale is None or zero_point is None or bit_width is None:
        raise QuantizationError(
            f"{what}: scale, zero point and bit width must be constants (runtime-computed scales have no "
            "fixed-point equivalent)"
        )
    scale = np.asarray(scale, dtype=np.float64)
    if scale.size == 0 or not np.all(scale == scale.flat[0]):
        raise QuantizationError(
            f"{what}: per-channel scales {np.unique(scale).tolist()} are not supported; hardware needs one "
            "power-of-two scale per tensor"
        )
    if np.any(np.asarray(zero_point) != 0):
        raise QuantizationError(f"{what}: zero point {np.unique(zero_point).tolist()} is not 0; hardware "
                                "fixed-point types are symmetric around zero")
    bit_width = np.asarray(bit_width, dtype=np.float64)
    if bit_width.size != 1 or bit_width.item() != round(bit_width.item()) or bit_width.item() < 1:
        raise QuantizationError(f"{what}: bit width {bit_width.tolist()} is not one positive integer")
    rounding_mode = str(_attribute(node, "rounding_mode", "ROUND")).upper()
    if rounding_mode not in _ROUNDING:
        raise QuantizationError(
            f"{what}: rounding mode {rounding_mode} has no hls4ml equivalent (only ROUND = AP_RND_CONV and "
            "FLOOR = AP_TRN)"
        )
    signed = bool(_attribute(node, "signed", 1))
    narrow = bool(_attribute(node, "narrow", 0))
    if narrow and not signed:
        raise QuantizationError(f"{what}: narrow range is only supported for signed quantizers")
    try:
        return FixedPoint.from_scale(
            int(bit_width.item()), float(scale.flat[0]), signed=signed, rounding=_ROUNDING[rounding_mode],
            overflow="SAT_SYM" if narrow else "SAT",
        )
    except QuantizationError as error:
        raise QuantizationError(f"{what}: {error}") from None


def tensor_type(model: ModelWrapper, tensor: str) -> FixedPoint | None:
    """Fixed-point type of an activation tensor: its producing ``Quant`` node, looked up through shape ops."""
    producer = model.find_producer(tensor)
    while producer is not None and producer.op_type in (*_SHAPE_OPS, "MaxPool", "Resize"):
        producer = model.find_producer(producer.input[0])
    if producer is None or producer.op_type != "Quant":
        return None
    return quant_node_type(model, producer)


def qonnx_io_types(model: ModelWrapper) -> tuple[FixedPoint, FixedPoint]:
    """The (input, output) fixed-point types recorded by :func:`export_qonnx` in the model's metadata."""
    types = []
    for key in (META_INPUT_TYPE, META_OUTPUT_TYPE):
        text = model.get_metadata_prop(key)
        if text is None:
            raise ArtifactError(f"QONNX model has no '{key}' metadata; export it with aeforge.quantize.export")
        types.append(FixedPoint.parse(text))
    return types[0], types[1]


# ------------------------------------------------------------------------------------ checks
@dataclass
class _Tensor:
    """What the checker knows of a tensor: its state, its exact type and, for squares, the base type."""

    state: str  # input, float_const, param, quant (exactly typed), acc, relu
    type: FixedPoint | None = None
    base: FixedPoint | None = None  # a difference / square of two tensors of this type (sq_error)
    square_of: str | None = None  # the difference tensor a square was computed from


def check_hardware_graph(model: ModelWrapper, input_type: FixedPoint) -> FixedPoint:
    """Refuse anything the fixed-point hardware path cannot compute exactly; return the output type.

    ``model`` is a cleaned QONNX graph (either layout). Every tensor gets a state: the graph input,
    a quantized constant (weights, biases), a float constant, an exactly typed activation (a
    ``Quant`` output and what pooling, upsampling, residual adds and the ``sq_error`` ops compute
    from those), an accumulator (Conv/MatMul/Gemm output, plus bias) or a ReLU of an accumulator.
    The rules are in the module docstring; every error names the ONNX node and the PyTorch module.
    """
    tensors = _walk(model, input_type)
    output_type = None
    for output in model.graph.output:
        info = tensors.get(output.name)
        if info is None or info.state != "quant" or info.type is None:
            producer = model.find_producer(output.name)
            raise QuantizationError(
                f"graph output '{output.name}' (from {describe_node(producer) if producer else 'the input'}) is "
                "not quantized; end the model with a quantized activation (e.g. QuantReLU, QuantIdentity)"
            )
        output_type = info.type
    if output_type is None or len(model.graph.output) != 1:
        raise ArtifactError("the hardware path takes exactly one (quantized) graph output")
    return output_type


def activation_types(model: ModelWrapper, input_type: FixedPoint) -> dict[str, FixedPoint]:
    """The exact fixed-point type of every typed activation tensor of a checked graph, by tensor name."""
    return {name: info.type for name, info in _walk(model, input_type).items()
            if info.state == "quant" and info.type is not None}


def _walk(model: ModelWrapper, input_type: FixedPoint) -> dict[str, _Tensor]:
    from qonnx.transformation.general import SortGraph

    model = model.transform(SortGraph())
    initializers = {init.name for init in model.graph.initializer}
    inputs = [inp.name for inp in model.graph.input if inp.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"the hardware path takes exactly one graph input, found {sorted(inputs)}")
    tensors: dict[str, _Tensor] = {inputs[0]: _Tensor("input")}
    for name in initializers:
        tensors[name] = _Tensor("float_const")
    for node in model.graph.node:
        what = describe_node(node)
        if node.op_type not in SUPPORTED_OPS:
            hint = _UNSUPPORTED_HINTS.get(node.op_type, "")
            raise ArtifactError(
                f"{what}: op {node.op_type} is not supported by the hardware path"
                + (f" ({hint})" if hint else "")
                + f"; supported ops: {', '.join(SUPPORTED_OPS)}"
            )
        args = [tensors.get(name, _Tensor("missing")) if name else _Tensor("absent") for name in node.input]
        out = _node_tensor(model, node, args, input_type, what)
        for name in node.output:
            tensors[name] = out
    return tensors


def _node_tensor(model: ModelWrapper, node: NodeProto, args: list[_Tensor], input_type: FixedPoint,
                 what: str) -> _Tensor:
    op = node.op_type
    states = [arg.state for arg in args]
    if op == "Quant":
        node_type = quant_node_type(model, node)  # checks scale, zero point, bit width, rounding
        if states[0] == "float_const":
            return _Tensor("param", node_type)
        if states[0] == "input" and node_type != input_type:
            raise QuantizationError(
                f"{what}: the input quantizer is {node_type.ap_type()} but the input type is "
                f"{input_type.ap_type()}"
            )
        if states[0] in ("param", "missing", "absent"):
            raise ArtifactError(f"{what}: unexpected input to a Quant node")
        return _Tensor("quant", node_type)
    if op in _SHAPE_OPS or op in ("MaxPool", "Resize"):
        if op == "Pad":
            _check_zero_pad(model, node, what)
        if op == "MaxPool":
            _check_pool(node, what)
        if op == "Resize":
            _check_resize(model, node, what)
        if states[0] in ("acc", "relu"):
            raise QuantizationError(f"{what}: takes an unquantized accumulator; quantize the layer output first")
        if states[0] == "input" and op != "Identity":
            raise QuantizationError(f"{what}: the graph input reaches it unquantized; add an input quantizer "
                                    f"(QuantIdentity) of type {input_type.ap_type()}")
        arg = args[0]  # a reordering keeps what a sum of squares needs to know; pooling etc. do not
        return _Tensor(arg.state, arg.type, arg.base, arg.square_of) if op in _SHAPE_OPS and op != "Pad" \
            else _Tensor(arg.state, arg.type)
    if op in _COMPUTE_OPS:
        return _compute_tensor(model, node, args, input_type, what)
    if op == "AveragePool":
        window = _check_pool(node, what)
        source = _typed(args[0], what, input_type)
        return _Tensor("quant", avgpool_exact_type(source, window, what))
    if op == "Add":
        kinds = sorted(states)
        if kinds == ["acc", "param"]:
            return _Tensor("acc")
        if "acc" in kinds and "float_const" in kinds:
            constant = node.input[states.index("float_const")]
            raise QuantizationError(
                f"{what}: adds the float (unquantized) bias '{constant}'; give the layer a bias quantizer"
            )
        if states == ["quant", "quant"]:
            from aeforge.quantize.models.spec import add_type

            return _Tensor("quant", add_type(_same_type(node, args, what, "add")))
        raise ArtifactError(
            f"{what}: only a quantized bias, or another quantized activation of the same type (a residual "
            f"add), may be added to a layer output (inputs are {states}); quantize both operands first"
        )
    if op == "Sub":
        if states != ["quant", "quant"]:
            raise ArtifactError(f"{what}: a subtraction needs two quantized activations (inputs are {states})")
        base = _same_type(node, args, what, "subtract")
        return _Tensor("quant", difference_type(base), base=base)
    if op == "Mul":
        same = len(node.input) == 2 and _origin(model, node.input[0]) == _origin(model, node.input[1])
        if not same or states != ["quant", "quant"] or args[0].base is None or args[0].square_of is not None:
            raise ArtifactError(
                f"{what}: the only multiplication of activations on the hardware path is the square of a "
                "difference (the sq_error score, sum((a - b) ** 2)); got inputs " + ", ".join(node.input)
            )
        return _Tensor("quant", square_type(args[0].base), base=args[0].base, square_of=_origin(model, node.input[0]))
    if op == "ReduceSum":
        return _sum_of_squares(model, node, args[0], what)
    if op == "Relu":
        if states[0] not in ("acc", "quant"):
            raise ArtifactError(f"{what}: unexpected ReLU input")
        for consumer in model.find_consumers(node.output[0]) or []:
            if consumer.op_type != "Quant":
                raise QuantizationError(
                    f"{what}: its output feeds {describe_node(consumer)} without a quantizer; use a "
                    "quantized activation (QuantReLU with an act_quant)"
                )
        return _Tensor("relu")
    raise AssertionError(op)  # pragma: no cover - SUPPORTED_OPS is exhaustive above


def _compute_tensor(model: ModelWrapper, node: NodeProto, args: list[_Tensor], input_type: FixedPoint,
                    what: str) -> _Tensor:
    op, data = node.op_type, args[0].state
    if data == "input":
        raise QuantizationError(
            f"{what}: the graph input reaches it unquantized; add an input quantizer (QuantIdentity) "
            f"of type {input_type.ap_type()}"
        )
    if data != "quant":
        raise QuantizationError(
            f"{what}: its input activation is not quantized; put a quantized activation (e.g. "
            "QuantReLU/QuantIdentity) in front of it"
        )
    if op == "Gemm" and (_attribute(node, "alpha", 1.0) != 1.0 or _attribute(node, "beta", 1.0) != 1.0):
        raise QuantizationError(f"{what}: Gemm alpha/beta other than 1 rescale by a non-quantized factor")
    if op == "Conv":
        if _attribute(node, "group", 1) != 1:
            raise ArtifactError(f"{what}: grouped/depthwise convolutions are not supported")
        if any(d != 1 for d in _attribute(node, "dilations", [1])):
            raise ArtifactError(f"{what}: dilated convolutions are not supported")
        if _attribute(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ArtifactError(f"{what}: auto_pad is not supported (hls4ml ignores it); use explicit pads")
    for role, name, arg in zip(["weight", "bias"], node.input[1:], args[1:], strict=False):
        _check_parameter(model, node, name, arg.state, role, what)
    if op == "MatMul" and args[0].square_of is not None and _is_ones(model, node.input[1]):
        return _sum_of_squares(model, node, args[0], what)  # the rewritten ReduceSum of sq_error
    return _Tensor("acc")


def _typed(arg: _Tensor, what: str, input_type: FixedPoint) -> FixedPoint:
    if arg.state == "input":
        raise QuantizationError(f"{what}: the graph input reaches it unquantized; add an input quantizer "
                                f"(QuantIdentity) of type {input_type.ap_type()}")
    if arg.state != "quant" or arg.type is None:
        raise QuantizationError(f"{what}: its input is not quantized; quantize the layer output first")
    return arg.type


def _same_type(node: NodeProto, args: list[_Tensor], what: str, verb: str) -> FixedPoint:
    first, second = (arg.type for arg in args)
    if (first.bits, first.int_bits, first.signed) != (second.bits, second.int_bits, second.signed):
        raise QuantizationError(
            f"{what}: cannot {verb} '{node.input[0]}' ({first.ap_type()}) and '{node.input[1]}' "
            f"({second.ap_type()}) exactly as one fixed-point type; re-quantize one of them to the other's type "
            "(a QuantIdentity) before the merge"
        )
    return first


def _origin(model: ModelWrapper, name: str) -> str:
    """The tensor ``name`` copies through Identity nodes."""
    producer = model.find_producer(name)
    while producer is not None and producer.op_type == "Identity":
        name = producer.input[0]
        producer = model.find_producer(name)
    return name


def _is_ones(model: ModelWrapper, name: str) -> bool:
    producer = model.find_producer(name)
    value = model.get_initializer(producer.input[0]) if producer is not None else None
    return value is not None and np.asarray(value).ndim == 2 and np.asarray(value).shape[1] == 1 \
        and bool(np.all(np.asarray(value) == 1))


def _sum_of_squares(model: ModelWrapper, node: NodeProto, arg: _Tensor, what: str) -> _Tensor:
    if arg.square_of is None or arg.base is None:
        raise ArtifactError(f"{what}: the only sum on the hardware path is the sq_error score, the sum of "
                            "squared differences sum((a - b) ** 2) over a sample")
    from aeforge.quantize.models.spec import sq_error_type

    shape = model.get_tensor_shape(node.input[0])
    elements = int(np.prod(shape[1:])) if shape else 0
    if elements < 1:
        raise ArtifactError(f"{what}: unknown input shape")
    return _Tensor("quant", sq_error_type(arg.base, elements))


def difference_type(spec: FixedPoint) -> FixedPoint:
    """Exact (signed) type of ``a - b`` for ``a``, ``b`` of type ``spec``."""
    bound = spec.max_code - spec.min_code
    bits = bound.bit_length() + 1
    return FixedPoint(bits, bits - spec.frac_bits, signed=True)


def square_type(spec: FixedPoint) -> FixedPoint:
    """Exact (unsigned) type of ``(a - b) ** 2`` for ``a``, ``b`` of type ``spec``."""
    bound = (spec.max_code - spec.min_code) ** 2
    bits = max(bound.bit_length(), 1)
    return FixedPoint(bits, bits - 2 * spec.frac_bits, signed=False)


def avgpool_exact_type(spec: FixedPoint, window: int, what: str) -> FixedPoint:
    """Exact type of the mean of ``window`` values of ``spec``; refuses a window that is not a power of two."""
    from aeforge.errors import ConfigError
    from aeforge.quantize.models.spec import avgpool_type

    try:
        return avgpool_type(spec, window, what)
    except ConfigError as error:
        raise QuantizationError(str(error)) from None


def _check_pool(node: NodeProto, what: str) -> int:
    """Refuse padded, dilated, ceil-mode pooling; return the window size."""
    kernel = [int(k) for k in _attribute(node, "kernel_shape", [])]
    if not kernel:
        raise ArtifactError(f"{what}: pooling without kernel_shape")
    if any(int(p) for p in _attribute(node, "pads", [])) or _attribute(node, "auto_pad", "NOTSET") not in (
            "NOTSET", "VALID"):
        raise ArtifactError(f"{what}: padded pooling is not supported on the hardware path; use padding 'valid'")
    if _attribute(node, "ceil_mode", 0):
        raise ArtifactError(f"{what}: ceil_mode pooling is not supported; use floor (the default)")
    if any(int(d) != 1 for d in _attribute(node, "dilations", [1])):
        raise ArtifactError(f"{what}: dilated pooling is not supported")
    if _attribute(node, "storage_order", 0):
        raise ArtifactError(f"{what}: MaxPool storage_order 1 is not supported")
    return int(np.prod(kernel))


def _check_resize(model: ModelWrapper, node: NodeProto, what: str) -> None:
    mode = _attribute(node, "mode", "nearest")
    if mode != "nearest":
        raise ArtifactError(f"{what}: {mode} resizing is not exact in fixed point; use nearest-neighbour upsampling")
    if len(node.input) > 3 and node.input[3]:
        raise ArtifactError(f"{what}: Resize by 'sizes' is not supported by hls4ml; give integer scale factors")
    scales = model.get_initializer(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scales is None:
        raise ArtifactError(f"{what}: Resize needs constant scales")
    scales = np.asarray(scales, dtype=np.float64).ravel()
    integer = bool(np.all(scales == np.round(scales)) and np.all(scales >= 1))
    if len(scales) not in (3, 4) or not integer or scales[0] != 1 or (scales[1] != 1 and scales[-1] != 1):
        raise ArtifactError(f"{what}: only upsampling of 1-D or 2-D images by integer factors is supported "
                            f"(scales {scales.tolist()})")
    if _attribute(node, "coordinate_transformation_mode", "half_pixel") != "asymmetric" or \
            _attribute(node, "nearest_mode", "round_prefer_floor") != "floor":
        raise ArtifactError(f"{what}: nearest upsampling must use coordinate_transformation_mode 'asymmetric' and "
                            "nearest_mode 'floor' (torch nn.Upsample(mode='nearest') exports that)")


def _check_parameter(model: ModelWrapper, node: NodeProto, name: str, kind: str, role: str, what: str) -> None:
    if kind == "param":
        return
    if kind == "float_const":
        raise QuantizationError(
            f"{what}: its {role} '{name}' is a float (unquantized) tensor; give the layer a {role} quantizer "
            "(hardware needs power-of-two fixed-point weights and biases)"
        )
    raise ArtifactError(f"{what}: its {role} '{name}' is computed at run time, which is not supported")


def _check_zero_pad(model: ModelWrapper, node: NodeProto, what: str) -> None:
    mode = _attribute(node, "mode", "constant")
    if mode != "constant":
        raise ArtifactError(f"{what}: only constant zero padding is supported, got mode {mode!r}")
    if len(node.input) < 2 or model.get_initializer(node.input[1]) is None:
        raise ArtifactError(f"{what}: pads must be constant")
    if len(node.input) > 2 and node.input[2]:
        value = model.get_initializer(node.input[2])
        if value is None or np.any(np.asarray(value) != 0):
            raise ArtifactError(f"{what}: only zero padding is supported (pad value {value})")
    if len(node.input) > 3 and node.input[3]:
        raise ArtifactError(f"{what}: Pad with an 'axes' input is not supported")
    if np.any(np.asarray(model.get_initializer(node.input[1])) < 0):
        raise ArtifactError(f"{what}: negative pads (cropping) are not supported")


def __getattr__(name: str) -> Any:  # FoldZeroPadIntoConv is built lazily (qonnx is a heavy import)
    if name == "FoldZeroPadIntoConv":
        from aeforge.quantize.qonnx_layout import fold_zero_pad_transformation

        return fold_zero_pad_transformation()
    raise AttributeError(name)


# ------------------------------------------------------------------------------------ export
def to_hardware_qonnx(model: ModelWrapper, input_type: FixedPoint) -> ModelWrapper:
    """Clean, check, fold pads, go channels-last (NHWC input), Gemm -> MatMul, sums -> MatMul, clean again."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    from aeforge.quantize.qonnx_layout import (
        fold_zero_pad_transformation,
        gemm_to_matmul,
        reduce_sum_to_matmul,
        split_repeated_inputs,
        to_channels_last,
    )

    model = ModelWrapper(copy.deepcopy(model.model))  # the caller's model is not modified
    _default_opset_first(model)
    split_repeated_inputs(model)
    with _quiet():
        model = cleanup_model(model)
    output_type = check_hardware_graph(model, input_type)
    with _quiet():
        model = model.transform(fold_zero_pad_transformation()())
        model = model.transform(InferShapes())
        model = to_channels_last(model)
        model = gemm_to_matmul(model)
        model = reduce_sum_to_matmul(model)
        model = cleanup_model(model)
    if check_hardware_graph(model, input_type) != output_type:  # pragma: no cover - a rewrite bug
        raise ArtifactError("the channels-last rewrite changed the output type")
    for node in model.graph.node:
        if node.op_type in ("Conv", "MaxPool", "AveragePool") and node.domain != "qonnx.custom_op.channels_last":
            raise ArtifactError(f"{describe_node(node)}: could not be converted to channels-last")
    leftover = [n for n in model.graph.node if n.op_type in ("Gemm", "ReduceSum")]
    if leftover:
        raise ArtifactError(f"{describe_node(leftover[0])}: could not be converted to MatMul")
    model.set_metadata_prop(META_INPUT_TYPE, input_type.ap_type())
    model.set_metadata_prop(META_OUTPUT_TYPE, output_type.ap_type())
    model.set_metadata_prop(META_LAYOUT, "channels_last")
    return model


def _default_opset_first(model: ModelWrapper) -> None:
    """List the standard ONNX opset first: qonnx (node execution, GemmToMatMul) reads the first entry
    as "the" opset, and Brevitas lists the qonnx domain (version 2) first."""
    imports = list(model.model.opset_import)
    ordered = sorted(imports, key=lambda entry: entry.domain not in ("", "ai.onnx"))
    if [e.domain for e in ordered] != [e.domain for e in imports]:
        del model.model.opset_import[:]
        model.model.opset_import.extend(ordered)


def export_qonnx(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    input_type: FixedPoint,
    path: str | os.PathLike[str] | None = None,
) -> ModelWrapper:
    """Export a Brevitas model to a hardware-ready, channels-last QONNX graph (and write it to ``path``).

    ``input_shape`` is the shape of one sample, channels-first as the PyTorch model takes it (e.g.
    ``(1, 8, 8)``); the exported graph has batch size 1 and takes NHWC input ``(1, 8, 8, 1)``.
    ``input_type`` must equal the model's input quantizer. ``model`` is not modified (a float32
    copy is exported). The file is written atomically: on any error no file is left at ``path``.
    The input and output types are recorded in the model metadata (:func:`qonnx_io_types`).
    """
    import torch
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    if not isinstance(input_type, FixedPoint):
        raise QuantizationError(f"input_type must be a FixedPoint, got {input_type!r}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ArtifactError(f"input_shape must be the positive shape of one sample, got {input_shape!r}")
    exported = copy.deepcopy(model).float().eval()
    try:
        with _quiet():
            proto = brevitas_export_qonnx(exported, torch.zeros((1, *shape)), export_path=None)
    except Exception as error:
        raise ArtifactError(f"Brevitas QONNX export failed: {type(error).__name__}: {error}") from error
    qonnx_model = to_hardware_qonnx(ModelWrapper(proto), input_type)
    if path is not None:
        save_model_atomic(qonnx_model, path)
    return qonnx_model


def save_model_atomic(model: ModelWrapper, path: str | os.PathLike[str]) -> Path:
    """Save an ONNX model through a temporary file in the same directory and an atomic rename."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        onnx.save(model.model, temporary)
        current = os.umask(0)
        os.umask(current)
        os.chmod(temporary, 0o666 & ~current)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints (they go to stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
