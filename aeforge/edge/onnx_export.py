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

Ops between quantizers stay float ONNX ops on the dequantized values, exact in float32:
``MaxPool`` and nearest ``Resize`` (upsample) only select values; ``AveragePool`` over ``2**k``
values and ``Add`` of two quantized tensors (residual) are exact while their exact fixed-point type
(:func:`~aeforge.quantize.models.spec.avgpool_type`, :func:`~aeforge.quantize.models.spec.add_type`)
fits float32's 24-bit mantissa, as are conv/dense accumulators (float32 is exact while every
partial sum stays below 2**24 LSBs; the worst-case type may be wider, e.g. ECON-T's 26-bit dense).
A conv or average pool whose exact type is wider than 24 bits cannot be exact in onnxruntime (its
CPU ``Conv``/``AveragePool`` have no float64 kernel): :func:`ort_inexact_reason` says so and
``EdgeExport.inexact_reason`` records it (``aeforge verify`` skips ort, ``predict --target ort`` refuses).
The sum of squares of an ``sq_error`` layer (``Sub -> Mul -> ReduceSum``; every partial sum is
non-negative and at most the result) is exact in float32 while its exact type has at most 24 bits;
wider (up to 53 bits) it is computed in float64 (a ``Cast`` on each input, a double graph output,
``EdgeExport.precision`` names the layer), which is supported only as the model's last layer and
which TensorRT cannot run exactly (rule ``float64``); wider than 53 bits it is refused.

``fp32``
    The same network with every quantizer in float: weights and biases folded to their quantized
    float values, activation quantizers as the float ``Div -> Round -> Clip -> Mul`` above. It is
    the fake-quantized QAT network in plain float ops (no Q/DQ), exact in FP32 for any bit width,
    and runs on any ONNX runtime. (It is *not* the float pre-training model.)

``fp16``
    ``fp32`` with every float initializer and intermediate tensor in float16; the graph input and
    output stay float32 (a ``Cast`` at each end), so it takes the same arrays. Approximate: float16
    holds 11 significant bits, so wider fixed-point grids and accumulations round. An ``sq_error``
    sum stays in float32 (or float64), where float16 would overflow at 65504.

All formats: graph input ``input`` (channels-first, ``(batch, *input_shape)``; ``batch=None`` gives
a dynamic first axis named ``batch``), output ``output``, opset 13..19 (default 17), no
initializers as graph inputs, shapes inferred, ``onnx.checker`` (full check) clean, file written
atomically. ONNX Runtime reproduces Brevitas within float rounding only with its graph
optimizations off (its QDQ fusions requantize): use :func:`exact_session_options`.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeforge.edge.qdq_lowering import FLOAT32_MANTISSA_BITS, ExactSum, lower, quiet
from aeforge.edge.trt_rules import TrtViolation, check_trt
from aeforge.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

    from aeforge.config import QuantConfig

FORMATS = ("qdq", "fp32", "fp16")
OPSET_MIN, OPSET_MAX, DEFAULT_OPSET = 13, 19, 17
BATCH_DIM = "batch"
_EXPORT_OPSET = 18  # what torch's exporter writes natively; the lowered graph is retargeted


# ------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class EdgeExport:
    """What :func:`export_edge_onnx` wrote.

    Shapes list ``"batch"`` for a dynamic batch axis. ``quantization`` maps each quantizer (module
    name, ``.weight``/``.bias`` for parameters) to ``{tensor, nodes, encoding, scale, zero_point,
    bits, signed, narrow, rounding, axis}``; encodings: ``int8-qdq``, ``uint8-qdq``, ``int8-dq``
    (weights), ``float-round`` (float fake quantization), ``folded`` (constant in float).
    ``precision`` maps each ``sq_error`` layer to ``{module, bits, dtype, nodes}``: the float type
    (float32, or float64 past 24 bits) its exact sum of squares is computed in.
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
    precision: dict[str, dict[str, Any]] = field(default_factory=dict)
    inexact_reason: str | None = None  # why onnxruntime cannot run it exactly (ort_inexact_reason); None: exact

    @property
    def exact_in_ort(self) -> bool:
        """onnxruntime (CPU, float32 with float64 sums where exported so) can run it bit-exactly."""
        return self.inexact_reason is None

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
            "precision": copy.deepcopy(self.precision),
            "inexact_reason": self.inexact_reason,
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

    sums = exact_sums(module)
    proto = _brevitas_qonnx(module, shape, batch)
    model, table, precision = lower(proto, "qdq" if fmt == "qdq" else "float", fp16=fmt == "fp16", sums=sums)
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
        precision=precision,
        inexact_reason=ort_inexact_reason(module),
    )


NO_FLOAT64_KERNEL = {"conv1d": "Conv", "conv2d": "Conv", "avgpool": "AveragePool"}
"""Layer kinds whose ONNX op has no float64 kernel in onnxruntime's CPU provider (measured with ORT 1.x)."""


def ort_inexact_reason(module: Any) -> str | None:
    """Why onnxruntime cannot run the edge export of ``module`` bit-exactly, or None.

    A layer whose exact result type (its accumulator, every partial sum included) is wider than
    float32's 24-bit mantissa is computed inexactly in float32; when its op has no float64 kernel
    in onnxruntime (``Conv``, ``AveragePool``) no session can compute it exactly. Wide ``dense``
    sums (``MatMul``, which has float64 kernels) stay float32 in the export and are exact while the
    actual partial sums stay below 2**24 LSBs, which verification measures; ``sq_error`` sums are
    exported in float64 (``precision``).
    """
    spec = getattr(module, "spec", None)
    if spec is None and callable(getattr(module, "as_sequential", None)):
        spec = getattr(module.as_sequential(), "spec", None)
    if spec is None or not hasattr(spec, "output_types") or getattr(module, "quantized", True) is False:
        return None
    for index, (layer, out_type) in enumerate(zip(spec.layers, spec.output_types(), strict=True)):
        op = NO_FLOAT64_KERNEL.get(getattr(layer, "kind", ""))
        if op is not None and out_type.bits > FLOAT32_MANTISSA_BITS:
            return (f"layers.{index} ({layer.kind} {layer.name!r}): its exact result {out_type.ap_type()} needs "
                    f"{out_type.bits} bits, more than float32's {FLOAT32_MANTISSA_BITS}-bit mantissa, and "
                    f"onnxruntime's CPU {op} has no float64 kernel, so onnxruntime cannot compute it exactly "
                    "(give the layer an output quantizer or narrower weights/inputs)")
    return None


def exact_sums(module: Any) -> tuple[ExactSum, ...]:
    """The ``sq_error`` layers of a model built from a ``SequentialSpec`` (``module.spec``), with their widths."""
    spec = getattr(module, "spec", None)
    if spec is None or not hasattr(spec, "output_types") or getattr(module, "quantized", True) is False:
        return ()
    return tuple(
        ExactSum(f"layers.{index}", layer.name, out_type.bits)
        for index, (layer, out_type) in enumerate(zip(spec.layers, spec.output_types(), strict=True))
        if getattr(layer, "kind", None) == "sq_error"
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
        with quiet():
            return export_qonnx(exported, example, export_path=None, **kwargs)
    except Exception as error:
        raise ArtifactError(f"Brevitas QONNX export failed: {type(error).__name__}: {error}") from error


# ------------------------------------------------------------------------------------ lowering

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
        if node.op_type == "Resize" and opset < 18:
            _resize_before_18(node)
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


# Resize attributes new in opset 18, with the value that means the opset-13 behaviour.
_RESIZE_SINCE_18 = {"antialias": 0, "keep_aspect_ratio_policy": "stretch"}


def _resize_before_18(node: onnx.NodeProto) -> None:
    """Drop Resize's opset-18 attributes where they hold their default (torch writes them explicitly)."""
    import onnx

    for attribute in list(node.attribute):
        if attribute.name == "axes" or attribute.name in _RESIZE_SINCE_18:
            value = onnx.helper.get_attribute_value(attribute)
            value = value.decode() if isinstance(value, bytes) else value
            if attribute.name == "axes" or value != _RESIZE_SINCE_18[attribute.name]:
                raise ArtifactError(
                    f"ONNX node '{node.name}': Resize with {attribute.name}={value!r} needs opset >= 18")
            node.attribute.remove(attribute)


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
