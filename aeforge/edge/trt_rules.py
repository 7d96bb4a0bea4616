"""TensorRT explicit-quantization (Q/DQ) rules, checked on an ONNX file without TensorRT.

:func:`check_trt` reads a model (path or ``onnx.ModelProto``) with onnx-graphsurgeon and returns
one :class:`TrtViolation` per finding, each naming the node, its op, a stable rule id and a
severity. An **error** means TensorRT refuses the graph or would compute other numbers than
Brevitas; a **note** means TensorRT runs it and computes the Brevitas numbers, but a layer runs in
FP32 instead of INT8 because its quantizer is not INT8-representable (:data:`NOTE_RULES`:
``float-quant``, ``activation-not-quantized``). The rules:

``opset``
    default-domain opset outside what the TensorRT 10.0 ONNX parser takes (9..20), or below 13
    in a graph with Q/DQ (per-axis Q/DQ needs opset 13).
``unsupported-op``
    an op outside :data:`TRT_OPS` or in a non-standard domain (QONNX ``Quant``, ``com.microsoft``).
``q-dtype-int8``
    a ``QuantizeLinear``/``DequantizeLinear`` whose integer type is not signed INT8 (uint8, int16,
    int32 bias DQ, or a ``QuantizeLinear`` without zero point, which means uint8).
``zero-point-nonzero``
    a zero point that is not all zeros (TensorRT quantization is symmetric).
``qdq-constant``
    a scale or zero point that is not a constant initializer.
``weight-axis``
    a per-channel weight ``DequantizeLinear`` whose axis is not the output-channel axis of the
    layer it feeds (0 for Conv/Gemm with ``transB=1``, 1 for ConvTranspose, Gemm without ``transB``
    and MatMul), or whose scale length is not the number of channels.
``int-clip``
    a ``Clip`` on an integer tensor (Brevitas' sub-8-bit ``Q -> Clip(int) -> DQ``): TensorRT
    cannot run it; clip the float tensor before ``QuantizeLinear`` instead.
``initializer-input``
    an initializer also listed as a graph input (TensorRT then treats the weights as runtime inputs).
``dynamic-shape``
    a graph input with unknown rank or a dynamic dimension other than the first (batch) one;
    a dynamic batch is fine (one optimization profile).
``float64``
    a ``Cast`` to double or a double graph input/output (the float64 sum of an ``sq_error`` layer
    wider than 24 bits): TensorRT has no FP64; its parser computes double in FP32, which rounds.
``float-quant`` (note)
    fake quantization computed in float (``Round``/``Floor``) in a Q/DQ graph: a type TensorRT
    INT8 cannot hold (wider than 8 bits, or not round-half-even), run in FP32 (exact) and inexact
    in FP16.
``activation-not-quantized`` (note)
    a Conv/ConvTranspose/Gemm/MatMul with an INT8 weight but a float (not ``DequantizeLinear``)
    activation: TensorRT runs the layer in FP32, not INT8 (exact while the accumulator fits
    float32's 24-bit mantissa and TF32 is off, as :mod:`aeforge.edge.runners.trt_runner` builds).

The op list encodes the support matrix of ONNX-TensorRT ``docs/operators.md`` for TensorRT 10.0
(opsets 9 to 20). :func:`polygraphy_lint` runs ``polygraphy check lint`` (onnx.checker plus
ONNX Runtime, no TensorRT needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeforge.errors import ArtifactError, ToolUnavailableError

if TYPE_CHECKING:
    import onnx

TRT_VERSION = "10.0"
TRT_OPSET_MIN, TRT_OPSET_MAX = 9, 20
QDQ_OPSET_MIN = 13

_TRT_OP_NAMES = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos
    Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid
    HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM MatMul Max MaxPool
    Mean Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
"""
TRT_OPS = frozenset(_TRT_OP_NAMES.split())
"""ONNX ops the TensorRT 10.0 ONNX parser supports (ONNX-TensorRT operators.md, opsets 9..20)."""

RULES = {
    "opset": "opset outside the TensorRT parser's range",
    "unsupported-op": "op not supported by TensorRT",
    "q-dtype-int8": "Q/DQ integer type is not signed INT8",
    "zero-point-nonzero": "nonzero zero point",
    "qdq-constant": "scale or zero point is not a constant",
    "weight-axis": "per-channel weight scales on the wrong axis",
    "int-clip": "Clip on an integer (quantized) tensor",
    "initializer-input": "initializer listed as a graph input",
    "dynamic-shape": "dynamic non-batch input dimension",
    "float-quant": "fake quantization in float (type TensorRT INT8 cannot hold)",
    "activation-not-quantized": "INT8 weight with a float activation",
    "float64": "double-precision tensor (TensorRT has no FP64)",
}
"""Rule id -> one-line description (the ids are stable)."""

ERROR, NOTE = "error", "note"
NOTE_RULES = frozenset({"float-quant", "activation-not-quantized"})
"""Rules that are notes: TensorRT runs the layer exactly, in FP32 instead of INT8 (every other rule is an error)."""

_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Ops that move or select values without changing them (TensorRT commutes Q/DQ across them).
_SHAPE_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Pad", "MaxPool", "Resize",
              "Upsample")
_DEFAULT_DOMAINS = ("", "ai.onnx")
_DOUBLE = 11  # onnx.TensorProto.DOUBLE
_POLYGRAPHY_MAIN = "import sys; from polygraphy.tools import main; sys.exit(main())"


@dataclass(frozen=True)
class TrtViolation:
    """One finding: the node (or tensor/model) it is about, its op, the rule id, a message and its severity.

    ``severity`` is ``"error"`` or ``"note"``; left empty it follows the rule (:data:`NOTE_RULES`).
    """

    node: str
    op_type: str
    rule: str
    message: str
    severity: str = ""

    def __post_init__(self) -> None:
        if not self.severity:
            object.__setattr__(self, "severity", NOTE if self.rule in NOTE_RULES else ERROR)
        elif self.severity not in (ERROR, NOTE):
            raise ValueError(f"severity must be {ERROR!r} or {NOTE!r}, got {self.severity!r}")

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        """``node (op) [rule]: message``."""
        return f"{self.node} ({self.op_type}) [{self.rule}]: {self.message}"

    def __str__(self) -> str:
        return f"{self.severity}: {self.describe()}"


def split_severities(
    violations: Iterable[TrtViolation], int8_only: bool = False
) -> tuple[list[TrtViolation], list[TrtViolation]]:
    """``(errors, notes)``; with ``int8_only`` every note counts as an error (a layer must run in INT8)."""
    violations = list(violations)
    if int8_only:
        return violations, []
    return [v for v in violations if v.is_error], [v for v in violations if not v.is_error]


def weight_axis(op_type: str, attrs: dict[str, Any], weight_rank: int) -> int:
    """The output-channel axis of a layer's weight, the axis its per-channel scales must use."""
    if op_type == "ConvTranspose":
        return 1
    if op_type == "Gemm":
        return 0 if int(attrs.get("transB", 0)) else 1
    if op_type == "MatMul":
        return weight_rank - 1
    return 0


def load_model(model: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    """An ONNX model from a path (ArtifactError naming the file when missing or not ONNX) or as is."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ArtifactError(f"expected an ONNX file path or onnx.ModelProto, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf DecodeError, OSError, ...
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ArtifactError(f"{path}: not an ONNX model (no graph nodes)")
    return proto


def check_trt(model: str | os.PathLike[str] | onnx.ModelProto) -> list[TrtViolation]:
    """Check a model against the TensorRT explicit-quantization rules (see the module docstring)."""
    import onnx_graphsurgeon as gs

    proto = load_model(model)
    violations: list[TrtViolation] = []
    try:
        graph = gs.import_onnx(proto)
    except Exception as error:
        raise ArtifactError(f"cannot import the ONNX graph: {type(error).__name__}: {error}") from None
    has_qdq = any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in graph.nodes)
    violations += _check_opset(proto, has_qdq)
    violations += _check_inputs(proto)
    for node in graph.nodes:
        violations += _check_node(node, has_qdq)
    violations += _check_outputs(proto)
    return violations


def _check_opset(proto: onnx.ModelProto, has_qdq: bool) -> list[TrtViolation]:
    versions = [e.version for e in proto.opset_import if e.domain in _DEFAULT_DOMAINS]
    if not versions:
        return [TrtViolation("<model>", "-", "opset", "no default-domain opset import")]
    opset = versions[0]
    low = QDQ_OPSET_MIN if has_qdq else TRT_OPSET_MIN
    if opset < low:
        why = "per-axis QuantizeLinear/DequantizeLinear need opset 13" if has_qdq else "too old"
        return [TrtViolation("<model>", "-", "opset", f"opset {opset} < {low} ({why}); re-export with --opset 17")]
    if opset > TRT_OPSET_MAX:
        return [TrtViolation(
            "<model>", "-", "opset",
            f"opset {opset} > {TRT_OPSET_MAX}, the newest the TensorRT {TRT_VERSION} parser takes",
        )]
    return []


def _check_inputs(proto: onnx.ModelProto) -> list[TrtViolation]:
    out = []
    initializers = {init.name for init in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in initializers:
            out.append(TrtViolation(
                inp.name, "input", "initializer-input",
                f"initializer '{inp.name}' is also a graph input; TensorRT treats it as a runtime input, not "
                "constant weights (export with keep_initializers_as_inputs=False)",
            ))
            continue
        tensor_type = inp.type.tensor_type
        if not tensor_type.HasField("shape"):
            out.append(TrtViolation(inp.name, "input", "dynamic-shape", f"input '{inp.name}' has unknown rank"))
            continue
        for axis, dim in enumerate(tensor_type.shape.dim):
            if axis > 0 and not dim.HasField("dim_value"):
                name = dim.dim_param or "?"
                out.append(TrtViolation(
                    inp.name, "input", "dynamic-shape",
                    f"input '{inp.name}' axis {axis} is dynamic ('{name}'); only the batch axis (0) may be",
                ))
    return out


def _check_outputs(proto: onnx.ModelProto) -> list[TrtViolation]:
    import onnx

    return [
        TrtViolation(out.name, "output", "float64", f"output '{out.name}' is double; TensorRT has no FP64 and "
                     "returns FP32, which cannot hold the exact value")
        for out in proto.graph.output if out.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    ]


def _producer(tensor: Any) -> Any:
    return tensor.inputs[0] if getattr(tensor, "inputs", None) else None


def _constant(tensor: Any) -> Any:
    """The numpy value of a constant tensor (initializer or Constant node output), else None."""
    import onnx_graphsurgeon as gs

    if isinstance(tensor, gs.Constant):
        return tensor.values
    producer = _producer(tensor)
    if producer is not None and producer.op == "Constant" and "value" in producer.attrs:
        value = producer.attrs["value"]
        return value.values if isinstance(value, gs.Constant) else None
    return None


def _is_integer(tensor: Any) -> bool:
    """Whether a tensor holds integers: a QuantizeLinear output (through shape ops) or an integer constant."""
    import numpy as np

    producer = _through_shape_ops(tensor)
    if producer is not None and producer.op == "QuantizeLinear":
        return True
    value = _constant(tensor)
    return value is not None and np.issubdtype(value.dtype, np.integer)


def _qdq_integer_dtype(node: Any) -> Any:
    """The integer type of a Q/DQ node: its zero point's dtype, else the data's (DQ) or uint8 (Q)."""
    import numpy as np

    if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name:
        zero_point = _constant(node.inputs[2])
        if zero_point is not None:
            return zero_point.dtype
        dtype = getattr(node.inputs[2], "dtype", None)
        if dtype is not None:
            return np.dtype(dtype)
    if node.op == "DequantizeLinear":
        value = _constant(node.inputs[0])
        if value is not None:
            return value.dtype
        dtype = getattr(node.inputs[0], "dtype", None)
        return np.dtype(dtype) if dtype is not None else None
    return np.dtype(np.uint8)  # QuantizeLinear without a zero point produces uint8


def _check_node(node: Any, has_qdq: bool) -> list[TrtViolation]:
    name = node.name or (node.outputs[0].name if node.outputs else "<unnamed>")
    op = node.op
    out: list[TrtViolation] = []

    def flag(rule: str, message: str) -> None:
        out.append(TrtViolation(name, op, rule, message))

    domain = getattr(node, "domain", "") or ""
    if domain not in _DEFAULT_DOMAINS:
        flag("unsupported-op", f"op {domain}::{op} is not a standard ONNX op; TensorRT has no parser for it")
        return out
    if op not in TRT_OPS:
        flag("unsupported-op", f"op {op} is not in the TensorRT {TRT_VERSION} ONNX operator support matrix")
        return out
    if op in ("QuantizeLinear", "DequantizeLinear"):
        out += _check_qdq(node, name)
    elif op == "Cast" and int(node.attrs.get("to", 0)) == _DOUBLE:
        flag("float64", "casts to double (an exact sum wider than float32's 24-bit mantissa); TensorRT has no FP64 "
             "and computes it in FP32, which rounds: use a narrower type, or run this model on onnxruntime")
    elif op == "Clip":
        if node.inputs and _is_integer(node.inputs[0]):
            flag("int-clip", "clips an integer (quantized) tensor, which TensorRT cannot run; clip the float "
                 "tensor before QuantizeLinear (Clip(float) -> Q -> DQ is exact)")
    elif op in ("Round", "Floor") and has_qdq:
        flag("float-quant", _float_quant_message(node))
    elif op in _COMPUTE_OPS:
        out += _check_compute(node, name)
    return out


def _check_qdq(node: Any, name: str) -> list[TrtViolation]:
    import numpy as np

    out = []
    op = node.op
    scale = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if scale is None:
        out.append(TrtViolation(name, op, "qdq-constant", "the scale is not a constant initializer"))
    has_zp = len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name
    zero_point = _constant(node.inputs[2]) if has_zp else None
    if has_zp and zero_point is None:
        out.append(TrtViolation(name, op, "qdq-constant", "the zero point is not a constant initializer"))
    dtype = _qdq_integer_dtype(node)
    if dtype is not None and np.dtype(dtype) != np.int8:
        hint = ""
        if np.dtype(dtype) == np.uint8:
            hint = ("; an unsigned activation must fit signed INT8 with the same scale (at most 7 bits, e.g. "
                    "ap_ufixed<7,...>)")
            if not has_zp and op == "QuantizeLinear":
                hint = " (QuantizeLinear without a zero point outputs uint8)" + hint
        out.append(TrtViolation(name, op, "q-dtype-int8",
                                f"integer type {np.dtype(dtype).name}, TensorRT needs signed INT8{hint}"))
    if zero_point is not None and np.any(np.asarray(zero_point) != 0):
        out.append(TrtViolation(
            name, op, "zero-point-nonzero",
            f"zero point {np.unique(zero_point).tolist()} is not 0; TensorRT quantization is symmetric",
        ))
    if op == "DequantizeLinear" and scale is not None and np.asarray(scale).ndim == 1:
        out += _check_weight_axis(node, name, np.asarray(scale))
    return out


def _check_weight_axis(node: Any, name: str, scale: Any) -> list[TrtViolation]:
    axis = int(node.attrs.get("axis", 1))
    data = node.inputs[0]
    value = _constant(data)
    shape = value.shape if value is not None else getattr(data, "shape", None)
    out = []
    for consumer in node.outputs[0].outputs:
        if consumer.op not in _COMPUTE_OPS or len(consumer.inputs) < 2 or consumer.inputs[1] is not node.outputs[0]:
            continue
        rank = len(shape) if shape is not None else 2
        expected = weight_axis(consumer.op, consumer.attrs, rank)
        if axis < 0:
            axis += rank
        if axis != expected:
            out.append(TrtViolation(
                name, node.op, "weight-axis",
                f"per-channel scales on axis {axis}, but the output channels of {consumer.op} "
                f"'{consumer.name}' are axis {expected}",
            ))
        elif shape is not None and isinstance(shape[axis], int) and scale.size != shape[axis]:
            out.append(TrtViolation(
                name, node.op, "weight-axis",
                f"{scale.size} scales for {shape[axis]} output channels of {consumer.op} '{consumer.name}'",
            ))
    return out


def _through_shape_ops(tensor: Any) -> Any:
    producer = _producer(tensor)
    while producer is not None and producer.op in _SHAPE_OPS:
        producer = _producer(producer.inputs[0]) if producer.inputs else None
    return producer


def _check_compute(node: Any, name: str) -> list[TrtViolation]:
    if len(node.inputs) < 2:
        return []
    weight_producer = _producer(node.inputs[1])
    if weight_producer is None or weight_producer.op != "DequantizeLinear":
        return []
    data_producer = _through_shape_ops(node.inputs[0])
    if data_producer is not None and data_producer.op == "DequantizeLinear":
        return []
    source = f"{data_producer.op} '{data_producer.name}'" if data_producer is not None else "the graph input"
    return [TrtViolation(
        name, node.op, "activation-not-quantized",
        f"INT8 weight but its activation comes from {source}, not a DequantizeLinear; TensorRT runs this "
        "layer in FP32 instead of INT8 (exact with TF32 off)",
    )]


def _float_quant_message(node: Any) -> str:
    """Describe a float fake quantizer ``Div -> Round -> Clip(lo, hi) -> Mul``, with its grid when known."""
    import numpy as np

    grid = ""
    consumers = node.outputs[0].outputs if node.outputs else []
    for consumer in consumers:
        if consumer.op == "Clip" and len(consumer.inputs) >= 3:
            low, high = (_constant(t) for t in consumer.inputs[1:3])
            if low is not None and high is not None:
                low, high = float(np.asarray(low)), float(np.asarray(high))
                levels = high - low + 1
                bits = int(np.ceil(np.log2(levels))) if levels > 1 else 1
                signed = "signed" if low < 0 else "unsigned"
                grid = f" of a {bits}-bit {signed} grid [{low:g}, {high:g}]"
    rounding = "round half to even" if node.op == "Round" else "floor (truncation)"
    return (f"float fake quantization ({rounding}){grid}: TensorRT INT8 Q/DQ cannot represent it (signed 8-bit, "
            "round half to even only), so TensorRT computes it in FP32, exactly (inexact in FP16)")


def format_violations(violations: Iterable[TrtViolation], source: str = "model", int8_only: bool = False) -> str:
    """Human-readable report for the CLI: errors, then notes, one line each, under a one-line verdict."""
    errors, notes = split_severities(violations, int8_only)
    if not errors and not notes:
        return f"{source}: TensorRT {TRT_VERSION} explicit-quantization rules: no violations"
    if errors:
        verdict = ("TensorRT refuses it or would compute other numbers than Brevitas" if not int8_only
                   else "not every layer runs in INT8 (--int8-only)")
    else:
        verdict = "TensorRT runs it and computes the Brevitas numbers; some layers run in FP32, not INT8"
    lines = [f"{source}: TensorRT {TRT_VERSION} rules: {len(errors)} error(s), {len(notes)} note(s): {verdict}"]
    lines += [f"  error: {v.describe()}" for v in errors]
    lines += [f"  note: {v.describe()}" for v in notes]
    return "\n".join(lines)


def polygraphy_lint(path: str | os.PathLike[str], timeout: float = 300.0) -> list[str]:
    """Run ``polygraphy check lint`` (onnx.checker + ONNX Runtime per node); return its error/warning lines.

    Needs polygraphy, onnx-graphsurgeon and onnxruntime (no TensorRT). Raises ToolUnavailableError
    when polygraphy is missing and ArtifactError when the file is missing or lint cannot run.
    """
    import importlib.util

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    if importlib.util.find_spec("polygraphy") is None:
        raise ToolUnavailableError("polygraphy is not installed (pip install polygraphy)")
    with tempfile.TemporaryDirectory(prefix="aeforge-lint-") as tmp:
        report = Path(tmp) / "lint.json"
        command = [sys.executable, "-c", _POLYGRAPHY_MAIN, "check", "lint", str(path), "-o", str(report)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{path}: polygraphy lint did not finish in {timeout:g} s") from None
        if not report.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ArtifactError(f"{path}: polygraphy lint failed (exit {result.returncode}): {' | '.join(tail)}")
        data = json.loads(report.read_text(encoding="utf-8"))
    lines = []
    for entry in data.get("lint_entries", []):
        nodes = entry.get("nodes")
        where = f" [{', '.join(nodes)}]" if nodes else ""
        message = str(entry.get("message", "")).strip()
        lines.append(f"{entry.get('level', '?')}: {entry.get('source', '?')}{where}: {message}")
    return lines
