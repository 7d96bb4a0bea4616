"""Brevitas -> QONNX export for the hardware path (hls4ml), with the fixed-point contract checked.

:func:`export_qonnx` exports a Brevitas model with ``brevitas.export.export_qonnx``, cleans the
graph with qonnx, folds a zero ``Pad`` into the following ``Conv`` (:class:`FoldZeroPadIntoConv`),
converts it to channels-last (``ConvertToChannelsLastAndClean``, the layout hls4ml wants; the
graph input becomes NHWC), turns ``Gemm`` into ``MatMul`` + ``Add`` and cleans up again.

Before anything is written, :func:`check_hardware_graph` refuses (naming the ONNX node and the
PyTorch module it came from) whatever the hardware path cannot compute exactly:

* a ``Quant`` node whose scale is not one constant power of two, whose zero point is not 0, whose
  bit width is not a constant integer, or whose rounding mode hls4ml cannot reproduce (only
  ``ROUND`` = ``AP_RND_CONV`` and ``FLOOR`` = ``AP_TRN``);
* an unquantized (float) weight or bias feeding ``Conv``/``MatMul``/``Gemm``/bias ``Add``;
* an activation that reaches a ``Conv``/``MatMul``/``Gemm`` or the graph output without being
  quantized, or a graph input not quantized by ``input_type``;
* any op outside :data:`SUPPORTED_OPS` (``ConvTranspose``, ``Resize``, ``BatchNormalization``, ...).

The fixed-point type of every ``Quant`` node is read back as a :class:`FixedPoint`
(:func:`quant_node_type`), which is how the hls4ml backend sets its precisions.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ArtifactError, QuantizationError
from aeforge.fixedpoint import FixedPoint

if TYPE_CHECKING:  # heavy imports stay inside the functions
    import torch
    from onnx import NodeProto
    from qonnx.core.modelwrapper import ModelWrapper

SUPPORTED_OPS = ("Quant", "Conv", "MatMul", "Gemm", "Add", "Relu", "Reshape", "Flatten", "Transpose", "Pad", "Identity")
"""ONNX ops the hardware path computes exactly (with the quantization rules above)."""

_SHAPE_OPS = ("Reshape", "Flatten", "Transpose", "Pad", "Identity")
_COMPUTE_OPS = ("Conv", "MatMul", "Gemm")
_UNSUPPORTED_HINTS = {
    "ConvTranspose": "hls4ml has no exact ONNX ConvTranspose path; keep the decoder off the hardware artifact",
    "Resize": "upsampling is not supported on the hardware path",
    "BatchNormalization": "fold batch normalisation into the preceding layer's weights before QAT",
    "Trunc": "QONNX Trunc (average-pool rescaling) is not supported by this exporter",
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
    while producer is not None and producer.op_type in _SHAPE_OPS:
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
def check_hardware_graph(model: ModelWrapper, input_type: FixedPoint) -> FixedPoint:
    """Refuse anything the fixed-point hardware path cannot compute exactly; return the output type.

    ``model`` is a cleaned QONNX graph (either layout). Every tensor gets a state: the graph input,
    a quantized activation, a quantized constant (weights, biases), a float constant, an
    accumulator (Conv/MatMul/Gemm output, plus bias) or a ReLU of an accumulator. The rules are in
    the module docstring; every error names the ONNX node and the PyTorch module.
    """
    from qonnx.transformation.general import SortGraph

    model = model.transform(SortGraph())
    initializers = {init.name for init in model.graph.initializer}
    state: dict[str, str] = {inp.name: "input" for inp in model.graph.input if inp.name not in initializers}
    if len(state) != 1:
        raise ArtifactError(f"the hardware path takes exactly one graph input, found {sorted(state)}")
    for name in initializers:
        state[name] = "float_const"

    for node in model.graph.node:
        what = describe_node(node)
        if node.op_type not in SUPPORTED_OPS:
            hint = _UNSUPPORTED_HINTS.get(node.op_type, "")
            raise ArtifactError(
                f"{what}: op {node.op_type} is not supported by the hardware path"
                + (f" ({hint})" if hint else "")
                + f"; supported ops: {', '.join(SUPPORTED_OPS)}"
            )
        inputs = [state.get(name, "missing") if name else "absent" for name in node.input]
        out = _node_state(model, node, inputs, input_type, what)
        for name in node.output:
            state[name] = out

    output_type = None
    for output in model.graph.output:
        if state.get(output.name) != "quant":
            producer = model.find_producer(output.name)
            raise QuantizationError(
                f"graph output '{output.name}' (from {describe_node(producer) if producer else 'the input'}) is "
                "not quantized; end the model with a quantized activation (e.g. QuantReLU, QuantIdentity)"
            )
        output_type = tensor_type(model, output.name)
    if output_type is None or len(model.graph.output) != 1:
        raise ArtifactError("the hardware path takes exactly one (quantized) graph output")
    return output_type


def _node_state(model: ModelWrapper, node: NodeProto, inputs: list[str], input_type: FixedPoint, what: str) -> str:
    op = node.op_type
    if op == "Quant":
        node_type = quant_node_type(model, node)  # checks scale, zero point, bit width, rounding
        if inputs[0] == "float_const":
            return "param"
        if inputs[0] == "input" and node_type != input_type:
            raise QuantizationError(
                f"{what}: the input quantizer is {node_type.ap_type()} but the input type is "
                f"{input_type.ap_type()}"
            )
        if inputs[0] in ("param", "missing", "absent"):
            raise ArtifactError(f"{what}: unexpected input to a Quant node")
        return "quant"
    if op in _SHAPE_OPS:
        if op == "Pad":
            _check_zero_pad(model, node, what)
        if inputs[0] in ("acc", "relu"):
            raise QuantizationError(
                f"{what}: reshapes an unquantized accumulator; quantize the layer output first"
            )
        return inputs[0]
    if op in _COMPUTE_OPS:
        data = inputs[0]
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
        roles = ["weight", "bias"]
        for role, name, kind in zip(roles, node.input[1:], inputs[1:], strict=False):
            _check_parameter(model, node, name, kind, role, what)
        return "acc"
    if op == "Add":
        kinds = sorted(inputs)
        if kinds == ["acc", "param"]:
            return "acc"
        if "acc" in kinds and "float_const" in kinds:
            constant = node.input[inputs.index("float_const")]
            raise QuantizationError(
                f"{what}: adds the float (unquantized) bias '{constant}'; give the layer a bias quantizer"
            )
        raise ArtifactError(
            f"{what}: only a quantized bias may be added to a layer output (inputs are {inputs}); "
            "element-wise adds of activations are not supported"
        )
    if op == "Relu":
        if inputs[0] not in ("acc", "quant"):
            raise ArtifactError(f"{what}: unexpected ReLU input")
        for consumer in model.find_consumers(node.output[0]) or []:
            if consumer.op_type != "Quant":
                raise QuantizationError(
                    f"{what}: its output feeds {describe_node(consumer)} without a quantizer; use a "
                    "quantized activation (QuantReLU with an act_quant)"
                )
        return "relu"
    raise AssertionError(op)  # pragma: no cover - SUPPORTED_OPS is exhaustive above


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


# ------------------------------------------------------------------------------------ transformation
@functools.cache
def _fold_zero_pad_transformation() -> type:
    from qonnx.transformation.base import Transformation

    class FoldZeroPadIntoConv(Transformation):
        """Fold a constant zero ``Pad`` (spatial axes only) into the ``pads`` of the ``Conv`` it feeds.

        Works on the channels-first graph (before ``ConvertToChannelsLastAndClean``). Asymmetric
        padding (TensorFlow SAME: bottom/right only) becomes asymmetric ``Conv`` ``pads``.
        """

        def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
            for pad in model.get_nodes_by_op_type("Pad"):
                consumers = model.find_consumers(pad.output[0]) or []
                if len(consumers) != 1 or consumers[0].op_type != "Conv" or consumers[0].input[0] != pad.output[0]:
                    continue
                conv = consumers[0]
                pads = model.get_initializer(pad.input[1]) if len(pad.input) > 1 else None
                if pads is None or _attribute(pad, "mode", "constant") != "constant":
                    continue
                if len(pad.input) > 2 and pad.input[2]:
                    value = model.get_initializer(pad.input[2])
                    if value is None or np.any(np.asarray(value) != 0):
                        continue
                if len(pad.input) > 3 and pad.input[3]:
                    continue
                if _attribute(conv, "auto_pad", "NOTSET") != "NOTSET":
                    continue
                pads = [int(p) for p in np.asarray(pads).ravel()]
                rank = len(pads) // 2
                begin, end = pads[:rank], pads[rank:]
                if rank < 3 or any(begin[:2]) or any(end[:2]) or min(pads) < 0:
                    continue  # batch/channel padding or cropping: leave it alone
                spatial = rank - 2
                old = list(_attribute(conv, "pads", [0] * (2 * spatial)))
                new = [old[i] + begin[2 + i] for i in range(spatial)] + [
                    old[spatial + i] + end[2 + i] for i in range(spatial)
                ]
                for attr in conv.attribute:
                    if attr.name == "pads":
                        conv.attribute.remove(attr)
                        break
                from onnx import helper

                conv.attribute.append(helper.make_attribute("pads", new))
                conv.input[0] = pad.input[0]
                model.graph.node.remove(pad)
                return model, True
            return model, False

    return FoldZeroPadIntoConv


def __getattr__(name: str) -> Any:  # FoldZeroPadIntoConv is built lazily (qonnx is a heavy import)
    if name == "FoldZeroPadIntoConv":
        return _fold_zero_pad_transformation()
    raise AttributeError(name)


# ------------------------------------------------------------------------------------ export
def to_hardware_qonnx(model: ModelWrapper, input_type: FixedPoint) -> ModelWrapper:
    """Clean, check, fold pads, go channels-last (NHWC input), Gemm -> MatMul, clean again."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    model = ModelWrapper(copy.deepcopy(model.model))  # the caller's model is not modified
    _default_opset_first(model)
    with _quiet():
        model = cleanup_model(model)
    output_type = check_hardware_graph(model, input_type)
    with _quiet(), warnings.catch_warnings():
        # GemmToMatMul warns for any Gemm opset but 9; the result is checked below and by verification
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        model = model.transform(_fold_zero_pad_transformation()())
        model = model.transform(InferShapes())
        model = model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
        model = model.transform(GemmToMatMul())
        model = cleanup_model(model)
    check_hardware_graph(model, input_type)
    for node in model.get_nodes_by_op_type("Conv"):
        if node.domain != "qonnx.custom_op.channels_last":
            raise ArtifactError(f"{describe_node(node)}: could not be converted to channels-last")
    leftover = [n for n in model.graph.node if n.op_type in ("Gemm",)]
    if leftover:
        raise ArtifactError(f"{describe_node(leftover[0])}: Gemm could not be converted to MatMul")
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
