"""Standard-ONNX export of a Brevitas model for edge runtimes (ONNX Runtime, TensorRT).

:func:`export_edge_onnx` writes one of three formats, all reproducing the Brevitas model:

``qdq`` (TensorRT explicit quantization)
    Every fixed-point quantizer becomes standard ONNX. Brevitas' own QCDQ exporter
    (``brevitas.export.export_onnx_qcdq``) cannot be used as is: it refuses any quantizer wider
    than 8 bits (``RuntimeError: Bit width 11 is not supported``, so the default ECON-T types
    ``ap_fixed<11,4>``/``ap_ufixed<12,3>``/``ap_ufixed<9,1>`` fail), its torch.export path refuses
    quantized biases, and for narrower types it emits uint8 activations and integer
    ``Q -> Clip(int) -> DQ`` chains that TensorRT rejects. So the model is exported with Brevitas'
    QONNX exporter (exact ``Quant`` nodes, as for the hardware path) and each ``Quant`` node is
    lowered here, exactly:

    * weights fitting signed INT8 become an int8 initializer (the Brevitas clamp folded in) and a
      per-channel ``DequantizeLinear`` on the output-channel axis (0 for Conv/Gemm, 1 for
      ConvTranspose), zero point 0;
    * biases (and weights that do not fit INT8) are folded into float constants holding the
      quantized values (TensorRT takes float biases and fuses them);
    * activations that fit signed INT8 with their own power-of-two scale (signed <= 8 bits,
      unsigned <= 7 bits, rounding half to even) become ``[Clip(float)] -> QuantizeLinear(int8)
      -> DequantizeLinear``; the float Clip to ``[lo*scale, hi*scale]`` reproduces the narrower
      integer range exactly (``Q(clip(x)) == clamp(round(x/s), lo, hi)`` for integer lo, hi);
    * an unsigned 8-bit activation (0..255) does not fit int8 with the same scale; it stays exact
      as a uint8 ``QuantizeLinear``/``DequantizeLinear`` pair and the TensorRT check reports it
      (``q-dtype-int8``): use at most 7 unsigned bits for TensorRT INT8;
    * wider types (or FLOOR/ROUND_TO_ZERO rounding, or a non-power-of-two scale) become float fake
      quantization ``Div(scale) -> Round|Floor -> Clip(lo, hi) -> Mul(scale)``, exact in FP32
      (ONNX ``Round`` rounds half to even like ``torch.round``); the TensorRT check reports them
      (``float-quant``): TensorRT INT8 has no integer type for them.

``fp32``
    The same network with every quantizer in float: weights and biases folded to their quantized
    float values, activation quantizers as the float ``Div -> Round -> Clip -> Mul`` above. It is
    the fake-quantized QAT network in plain float ops (no Q/DQ), exact in FP32 for any bit width,
    and runs on any ONNX runtime. (It is *not* the float pre-training model.)

``fp16``
    ``fp32`` with every float initializer and intermediate tensor in float16; the graph input and
    output stay float32 (a ``Cast`` at each end), so it takes the same arrays. Approximate: float16
    holds 11 significant bits, so wider fixed-point grids and accumulations round.

All formats: graph input ``input`` (channels-first, ``(batch, *input_shape)``; ``batch=None`` gives
a dynamic first axis named ``batch``), output ``output``, opset 13..19 (default 17), no
initializers as graph inputs, shapes inferred, ``onnx.checker`` (full check) clean, file written
atomically. ONNX Runtime reproduces Brevitas within float rounding only with its graph
optimizations off (its QDQ fusions requantize): use :func:`exact_session_options`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.edge.trt_rules import TrtViolation, check_trt, weight_axis
from aeforge.errors import ArtifactError, ConfigError, QuantizationError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

    from aeforge.config import QuantConfig

FORMATS = ("qdq", "fp32", "fp16")
OPSET_MIN, OPSET_MAX, DEFAULT_OPSET = 13, 19, 17
INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "output", "batch"
_EXPORT_OPSET = 18  # what torch's exporter writes natively; the lowered graph is retargeted
_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "FloatQuant", "IntQuant")
_ROUNDINGS = ("ROUND", "FLOOR", "ROUND_TO_ZERO")


# ------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class EdgeExport:
    """What :func:`export_edge_onnx` wrote.

    Shapes list ``"batch"`` for a dynamic batch axis. ``quantization`` maps each quantizer (module
    name, ``.weight``/``.bias`` for parameters) to ``{tensor, nodes, encoding, scale, zero_point,
    bits, signed, narrow, rounding, axis}``; encodings: ``int8-qdq``, ``uint8-qdq``, ``int8-dq``
    (weights), ``float-round`` (float fake quantization), ``folded`` (constant in float).
    """

    path: Path
    format: str
    opset: int
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    input_dtype: str
    output_dtype: str
    quantization: dict[str, dict[str, Any]]
    sha256: str
    trt_violations: tuple[TrtViolation, ...] = field(default_factory=tuple)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.input_shape) and self.input_shape[0] == BATCH_DIM

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for run cards)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "opset": self.opset,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "input_dtype": self.input_dtype,
            "output_dtype": self.output_dtype,
            "quantization": copy.deepcopy(self.quantization),
            "sha256": self.sha256,
            "trt_violations": [v.as_dict() for v in self.trt_violations],
        }


# ------------------------------------------------------------------------------------ ORT
def exact_session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime session options under which an exported model reproduces Brevitas.

    All graph optimizations are off: ORT's QDQ fusions (e.g. ``WeightBiasQuantization``,
    QDQ -> QLinearConv) requantize and change results by up to a few LSBs. ``threads`` sets the
    intra-op thread count (None: ORT's default); execution is sequential.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    return options


# ------------------------------------------------------------------------------------ variants
def trt_quant_config(bits: int = 8) -> QuantConfig:
    """An ECON-T :class:`QuantConfig` whose every quantizer fits TensorRT INT8 (for tests and demos).

    Input, weights and biases are signed ``bits``-bit; the ReLU outputs (which QuantConfig requires
    unsigned) get ``bits - 1`` unsigned bits, the non-negative half of a signed ``bits``-bit
    integer, so that they map to INT8 exactly. ``bits`` in 3..8.
    """
    from aeforge.config import QuantConfig
    from aeforge.fixedpoint import FixedPoint

    if isinstance(bits, bool) or not isinstance(bits, int) or not 3 <= bits <= 8:
        raise ConfigError(f"bits must be an integer in 3..8, got {bits!r}")
    unsigned = bits - 1
    return QuantConfig(
        input=FixedPoint(bits, min(2, bits - 1)),
        weight=FixedPoint(bits, min(2, bits - 1)),
        bias=FixedPoint(bits, min(2, bits - 1)),
        conv_activation=FixedPoint(unsigned, min(3, unsigned - 1), signed=False),
        latent=FixedPoint(unsigned, 1, signed=False),
    )


# ------------------------------------------------------------------------------------ export
def export_edge_onnx(
    module: torch.nn.Module,
    input_shape: Sequence[int],
    out_path: str | os.PathLike[str],
    fmt: str = "qdq",
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
) -> EdgeExport:
    """Export a Brevitas model to standard ONNX for edge runtimes (see the module docstring).

    ``input_shape`` is one sample, channels-first, as the module takes it (e.g. ``(1, 8, 8)``);
    ``batch`` fixes the batch size, None makes it dynamic. ``module`` is not modified. The file
    is written atomically: on any error nothing is left at ``out_path``.
    """
    import onnx

    if fmt not in FORMATS:
        raise ConfigError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET_MIN <= opset <= OPSET_MAX:
        raise ConfigError(
            f"opset: must be an integer in {OPSET_MIN}..{OPSET_MAX} (QDQ needs >= 13; TensorRT 10 parses <= 20), "
            f"got {opset!r}"
        )
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"batch: must be a positive integer or None (dynamic), got {batch!r}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input_shape must be the positive shape of one sample, got {input_shape!r}")

    proto = _brevitas_qonnx(module, shape, batch)
    model, table = _lower(proto, "qdq" if fmt == "qdq" else "float", fp16=fmt == "fp16")
    model = _finalize(model, opset, module)
    violations = tuple(check_trt(model))

    data = model.SerializeToString()
    path = Path(out_path)
    _write_atomic(path, data)
    graph = model.graph
    return EdgeExport(
        path=path,
        format=fmt,
        opset=opset,
        input_name=graph.input[0].name,
        output_name=graph.output[0].name,
        input_shape=_value_shape(graph.input[0]),
        output_shape=_value_shape(graph.output[0]),
        input_dtype=onnx.helper.tensor_dtype_to_np_dtype(graph.input[0].type.tensor_type.elem_type).name,
        output_dtype=onnx.helper.tensor_dtype_to_np_dtype(graph.output[0].type.tensor_type.elem_type).name,
        quantization=table,
        sha256=hashlib.sha256(data).hexdigest(),
        trt_violations=violations,
    )


def _brevitas_qonnx(module: torch.nn.Module, shape: tuple[int, ...], batch: int | None) -> onnx.ModelProto:
    """Brevitas QONNX export (torch.export), dynamic batch axis ``batch`` when ``batch`` is None."""
    import torch
    from brevitas.export import export_qonnx

    exported = copy.deepcopy(module).cpu().float().eval()
    kwargs: dict[str, Any] = {"dynamo": True, "opset_version": _EXPORT_OPSET}
    if batch is None:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim(BATCH_DIM, min=1)},)
    example = torch.zeros((2 if batch is None else batch, *shape))
    try:
        with _quiet():
            return export_qonnx(exported, example, export_path=None, **kwargs)
    except Exception as error:
        raise ArtifactError(f"Brevitas QONNX export failed: {type(error).__name__}: {error}") from error


# ------------------------------------------------------------------------------------ lowering
def _lower(proto: onnx.ModelProto, mode: str, fp16: bool = False) -> tuple[onnx.ModelProto, dict[str, dict]]:
    """Replace every QONNX ``Quant`` node by standard ONNX (``mode`` ``qdq`` or ``float``)."""
    import onnx_graphsurgeon as gs

    from aeforge.quantize.export import module_of

    modules = {node.name: module_of(node) for node in proto.graph.node}
    graph = gs.import_onnx(proto)
    lowering = _Lowering(graph, mode, modules)
    for node in list(graph.nodes):
        domain = node.domain or ""
        if node.op == "Quant" and domain not in ("", "ai.onnx"):
            lowering.quant(node)
        elif node.op in _QONNX_OPS or domain not in ("", "ai.onnx"):
            raise QuantizationError(
                f"ONNX node '{node.name}' ({domain}::{node.op}, module '{modules.get(node.name)}'): not supported by "
                "the edge export (only fixed-point Quant nodes are lowered to standard ONNX)"
            )
    graph.cleanup(remove_unused_graph_inputs=True).toposort()
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ArtifactError(
            f"the edge export takes exactly one graph input and one output, found inputs "
            f"{[t.name for t in graph.inputs]} and outputs {[t.name for t in graph.outputs]}"
        )
    if fp16:
        _to_fp16(graph)
    graph.inputs[0].name = INPUT_NAME
    graph.outputs[0].name = OUTPUT_NAME
    for tensor in graph.tensors().values():  # shapes are re-inferred after retargeting
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
            tensor.shape = None
    with _quiet():
        return gs.export_onnx(graph, do_type_check=False), lowering.table


class _Lowering:
    """Lowers QONNX ``Quant`` nodes of one onnx-graphsurgeon graph, recording the quantization table."""

    def __init__(self, graph: Any, mode: str, modules: dict[str, str | None]) -> None:
        self.graph = graph
        self.mode = mode
        self.modules = modules
        self.table: dict[str, dict[str, Any]] = {}
        self.names = {t for t in graph.tensors()} | {n.name for n in graph.nodes}

    def unique(self, name: str) -> str:
        candidate, index = name, 1
        while candidate in self.names:
            index += 1
            candidate = f"{name}_{index}"
        self.names.add(candidate)
        return candidate

    def constant(self, name: str, value: np.ndarray) -> Any:
        import onnx_graphsurgeon as gs

        return gs.Constant(self.unique(name), np.asarray(value))

    def variable(self, name: str, dtype: Any) -> Any:
        import onnx_graphsurgeon as gs

        return gs.Variable(self.unique(name), dtype=dtype)

    def node(self, op: str, label: str, inputs: list, outputs: list, **attrs: Any) -> str:
        import onnx_graphsurgeon as gs

        name = self.unique(f"{label}/{op}")
        self.graph.nodes.append(gs.Node(op, name=name, attrs=attrs, inputs=inputs, outputs=outputs))
        return name

    # -------------------------------------------------------------------- one Quant node
    def quant(self, node: Any) -> None:
        import onnx_graphsurgeon as gs

        module = self.modules.get(node.name)
        where = f"ONNX node '{node.name}' (Quant{f', module {module!r}' if module else ''})"
        if len(node.inputs) != 4:
            raise QuantizationError(f"{where}: expected 4 inputs (x, scale, zero point, bit width)")
        x, scale_t, zero_t, bits_t = node.inputs
        for tensor, what in ((scale_t, "scale"), (zero_t, "zero point"), (bits_t, "bit width")):
            if not isinstance(tensor, gs.Constant):
                raise QuantizationError(f"{where}: the {what} is computed at run time; only constant quantizers "
                                        "can be exported")
        scale = np.asarray(scale_t.values, dtype=np.float64)
        if np.any(np.asarray(zero_t.values) != 0):
            raise QuantizationError(f"{where}: zero point {np.unique(zero_t.values).tolist()} is not 0; only "
                                    "symmetric fixed-point quantizers are supported")
        bits_value = float(np.asarray(bits_t.values).ravel()[0]) if np.asarray(bits_t.values).size == 1 else -1.0
        if bits_value != round(bits_value) or bits_value < 1:
            raise QuantizationError(f"{where}: bit width {np.asarray(bits_t.values).tolist()} is not one positive "
                                    "integer")
        bits = int(bits_value)
        signed = bool(node.attrs.get("signed", 1))
        narrow = bool(node.attrs.get("narrow", 0))
        rounding = node.attrs.get("rounding_mode", "ROUND")
        rounding = (rounding.decode() if isinstance(rounding, bytes) else str(rounding)).upper()
        if rounding not in _ROUNDINGS:
            raise QuantizationError(f"{where}: rounding mode {rounding} is not supported ({', '.join(_ROUNDINGS)})")
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise QuantizationError(f"{where}: scale {scale.ravel()[:4].tolist()} is not positive and finite")
        if signed:
            low, high = -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
        else:
            low, high = 0, 2**bits - 1 - int(narrow)
        y = node.outputs[0]
        info = {"bits": bits, "signed": signed, "narrow": narrow, "rounding": rounding, "zero_point": 0,
                "int_range": [low, high]}
        node.inputs.clear()
        node.outputs.clear()
        if isinstance(x, gs.Constant):
            self._constant_quant(x, y, scale, low, high, rounding, info, module, where)
        else:
            if scale.size != 1:
                raise QuantizationError(f"{where}: per-channel activation scales are not supported")
            label = (module or node.name).removesuffix(".act_quant")
            self._activation_quant(x, y, float(scale.ravel()[0]), low, high, rounding, info, label)

    def _constant_quant(
        self, x: Any, y: Any, scale: np.ndarray, low: int, high: int, rounding: str, info: dict, module: str | None,
        where: str,
    ) -> None:
        values = np.asarray(x.values, dtype=np.float64)
        codes = np.clip(_round(values / scale, rounding), low, high)
        consumers = list(y.outputs)
        if y in self.graph.outputs:
            raise ArtifactError(f"{where}: a quantized constant is the graph output")
        roles = {"weight" if c.inputs.index(y) == 1 else "bias" if c.inputs.index(y) == 2 else "input"
                 for c in consumers}
        owner = self.modules.get(consumers[0].name) if consumers else None
        role = roles.pop() if len(roles) == 1 else "param"
        label = f"{owner or module or (consumers[0].name if consumers else y.name)}.{role}"
        axes = {weight_axis(c.op, c.attrs, values.ndim) for c in consumers if c.op in _COMPUTE_OPS}
        as_int8 = (
            self.mode == "qdq" and role == "weight" and low >= -128 and high <= 127 and scale.size == 1
            and consumers and all(c.op in _COMPUTE_OPS for c in consumers) and len(axes) == 1 and values.ndim >= 2
        )
        if as_int8:
            axis = axes.pop()
            channels = values.shape[axis]
            inputs = [
                self.constant(f"{label}_int8", codes.astype(np.int8)),
                self.constant(f"{label}_scale", np.full(channels, scale.item(), dtype=np.float32)),
                self.constant(f"{label}_zero_point", np.zeros(channels, dtype=np.int8)),
            ]
            name = self.node("DequantizeLinear", label, inputs, [y], axis=axis)
            self.table[self._key(label)] = {"tensor": y.name, "nodes": [name], "encoding": "int8-dq",
                                            "scale": float(scale.item()), "axis": axis, "channels": channels, **info}
            return
        folded = self.constant(f"{label}_quantized", (codes * scale).astype(np.float32))
        for consumer in consumers:
            for index, tensor in enumerate(consumer.inputs):
                if tensor is y:
                    consumer.inputs[index] = folded
        scale_value: float | list = float(scale.ravel()[0]) if scale.size == 1 else scale.ravel().tolist()
        self.table[self._key(label)] = {"tensor": folded.name, "nodes": [], "encoding": "folded",
                                        "scale": scale_value, "axis": None, **info}

    def _activation_quant(
        self, x: Any, y: Any, scale: float, low: int, high: int, rounding: str, info: dict, label: str
    ) -> None:
        power_of_two = math.frexp(scale)[0] == 0.5
        dtype = None
        if self.mode == "qdq" and rounding == "ROUND" and power_of_two:
            if low >= -128 and high <= 127:
                dtype = np.int8
            elif low >= 0 and high <= 255:
                dtype = np.uint8
        nodes: list[str] = []
        scale_c = self.constant(f"{label}_scale", np.array(scale, dtype=np.float32))
        if dtype is not None:
            full = (low, high) == (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
            source = x
            if not full:
                source = self.variable(f"{label}_clipped", np.float32)
                bounds = [self.constant(f"{label}_{k}", np.array(v * scale, dtype=np.float32))
                          for k, v in (("min", low), ("max", high))]
                nodes.append(self.node("Clip", label, [x, *bounds], [source]))
            zero = self.constant(f"{label}_zero_point", np.array(0, dtype=dtype))
            quantized = self.variable(f"{label}_{np.dtype(dtype).name}", dtype)
            nodes.append(self.node("QuantizeLinear", label, [source, scale_c, zero], [quantized]))
            nodes.append(self.node("DequantizeLinear", label, [quantized, scale_c, zero], [y]))
            encoding = f"{np.dtype(dtype).name}-qdq"
        else:
            scaled = self.variable(f"{label}_scaled", np.float32)
            nodes.append(self.node("Div", label, [x, scale_c], [scaled]))
            rounded = self.variable(f"{label}_rounded", np.float32)
            if rounding == "ROUND":
                nodes.append(self.node("Round", label, [scaled], [rounded]))
            elif rounding == "FLOOR":
                nodes.append(self.node("Floor", label, [scaled], [rounded]))
            else:  # ROUND_TO_ZERO: sign(v) * floor(|v|)
                magnitude, floored, sign = (self.variable(f"{label}_{k}", np.float32) for k in ("abs", "floor", "sign"))
                nodes.append(self.node("Abs", label, [scaled], [magnitude]))
                nodes.append(self.node("Floor", label, [magnitude], [floored]))
                nodes.append(self.node("Sign", label, [scaled], [sign]))
                nodes.append(self.node("Mul", f"{label}/trunc", [sign, floored], [rounded]))
            clipped = self.variable(f"{label}_clipped", np.float32)
            bounds = [self.constant(f"{label}_{k}", np.array(v, dtype=np.float32)) for k, v in (("min", low),
                                                                                                  ("max", high))]
            nodes.append(self.node("Clip", label, [rounded, *bounds], [clipped]))
            nodes.append(self.node("Mul", label, [clipped, scale_c], [y]))
            encoding = "float-round"
        self.table[self._key(label)] = {"tensor": y.name, "nodes": nodes, "encoding": encoding, "scale": scale,
                                        "axis": None, **info}

    def _key(self, label: str) -> str:
        key, index = label, 1
        while key in self.table:
            index += 1
            key = f"{label}#{index}"
        return key


def _round(values: np.ndarray, rounding: str) -> np.ndarray:
    if rounding == "ROUND":
        return np.round(values)  # half to even, as torch.round and ONNX Round
    if rounding == "FLOOR":
        return np.floor(values)
    return np.trunc(values)


def _to_fp16(graph: Any) -> None:
    """Float32 -> float16 everywhere inside the graph; the graph input/output stay float32 via Casts."""
    import onnx
    import onnx_graphsurgeon as gs

    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and tensor.values.dtype == np.float32:
            tensor.values = tensor.values.astype(np.float16)
        elif isinstance(tensor, gs.Variable) and tensor.dtype == np.float32:
            tensor.dtype = np.float16
    for node in graph.nodes:
        if node.op == "Constant" and isinstance(node.attrs.get("value"), gs.Constant):
            value = node.attrs["value"]
            if value.values.dtype == np.float32:
                value.values = value.values.astype(np.float16)
    inp, out = graph.inputs[0], graph.outputs[0]
    half_in = gs.Variable(f"{inp.name}_fp16", dtype=np.float16)
    for consumer in list(inp.outputs):
        for index, tensor in enumerate(consumer.inputs):
            if tensor is inp:
                consumer.inputs[index] = half_in
    inp.dtype = np.float32
    graph.nodes.append(gs.Node("Cast", name="input/Cast", attrs={"to": onnx.TensorProto.FLOAT16},
                               inputs=[inp], outputs=[half_in]))
    half_out = gs.Variable(f"{out.name}_fp16", dtype=np.float16)
    producer = out.inputs[0]
    producer.outputs[producer.outputs.index(out)] = half_out
    out.dtype = np.float32
    graph.nodes.append(gs.Node("Cast", name="output/Cast", attrs={"to": onnx.TensorProto.FLOAT},
                               inputs=[half_out], outputs=[out]))
    graph.toposort()


# ------------------------------------------------------------------------------------ finishing
# Reductions whose ``axes`` moved from an attribute to an input in opset 18 (ReduceSum did in 13).
_AXES_INPUT_SINCE_18 = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                  "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})


def _axes_input_to_attribute(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Rewrite an opset-18 reduction (``axes`` input) into the opset 13-17 form (``axes`` attribute)."""
    import onnx
    from onnx import numpy_helper

    for attribute in list(node.attribute):
        if attribute.name == "noop_with_empty_axes":
            if attribute.i:
                raise ArtifactError(f"ONNX node '{node.name}': {node.op_type} with noop_with_empty_axes=1 "
                                    "needs opset >= 18")
            node.attribute.remove(attribute)
    if len(node.input) < 2 or not node.input[1]:
        return
    name = node.input[1]
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for other in model.graph.node:
        if other.op_type == "Constant" and other.output[0] == name:
            constants[name] = numpy_helper.to_array(other.attribute[0].t)
    if name not in constants:
        raise ArtifactError(f"ONNX node '{node.name}': {node.op_type} reduces over computed axes ({name!r}); "
                            "that needs opset >= 18")
    axes = [int(axis) for axis in constants[name].reshape(-1)]
    del node.input[1:]
    node.attribute.append(onnx.helper.make_attribute("axes", axes))
    if not any(name in other.input for other in model.graph.node):
        kept = [init for init in model.graph.initializer if init.name != name]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)


def _finalize(model: onnx.ModelProto, opset: int, module: Any) -> onnx.ModelProto:
    """Retarget to ``opset`` (default domain only), infer shapes, full onnx.checker, metadata."""
    import onnx

    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", opset))
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    initializers = {init.name for init in model.graph.initializer}
    kept = [inp for inp in model.graph.input if inp.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    del model.graph.value_info[:]
    for node in model.graph.node:
        del node.metadata_props[:]
        if node.op_type == "Reshape" and opset < 14:
            _drop_attribute(node, "allowzero")
        if node.op_type == "Pad" and opset < 18 and len(node.input) > 3 and node.input[3]:
            raise ArtifactError(f"ONNX node '{node.name}': Pad with an 'axes' input needs opset >= 18")
        if node.op_type in _AXES_INPUT_SINCE_18 and opset < 18:
            _axes_input_to_attribute(model, node)
    model.producer_name = "aeforge"
    del model.metadata_props[:]
    metadata = {"aeforge.edge": "1"}
    for key, attribute in (("aeforge.input_type", "input_type"), ("aeforge.output_type", "output_type")):
        value = getattr(module, attribute, None)
        if value is not None and hasattr(value, "ap_type"):
            metadata[key] = value.ap_type()
    onnx.helper.set_model_props(model, metadata)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as error:
        raise ArtifactError(f"the exported ONNX graph is invalid at opset {opset}: {type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0]}") from None
    return model


def _drop_attribute(node: onnx.NodeProto, name: str) -> None:
    for attribute in list(node.attribute):
        if attribute.name == name:
            node.attribute.remove(attribute)


def _value_shape(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory and an atomic rename (nothing left on error)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArtifactError(f"{path.parent}: cannot create the output directory: {error}") from None
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        current = os.umask(0)
        os.umask(current)
        os.chmod(temporary, 0o666 & ~current)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' prints, warnings and info logging."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "brevitas")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
