"""Lowering of Brevitas' QONNX graph to standard ONNX for :mod:`aeforge.edge.onnx_export`.

:func:`lower` replaces every QONNX ``Quant`` node by standard ONNX (``qdq``: int8 Q/DQ where
TensorRT INT8 can take the quantizer, exact float fake quantization elsewhere; ``float``: every
quantizer in float), keeps each exact sum of squares (``sq_error`` layers, :class:`ExactSum`) in a
float type wide enough to hold it exactly, and converts to float16 for the ``fp16`` format. The
encodings are described in :mod:`aeforge.edge.onnx_export`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.edge.trt_rules import weight_axis
from aeforge.errors import ArtifactError, QuantizationError

if TYPE_CHECKING:
    import onnx

INPUT_NAME, OUTPUT_NAME = "input", "output"
_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "FloatQuant", "IntQuant")
_ROUNDINGS = ("ROUND", "FLOOR", "ROUND_TO_ZERO")


FLOAT32_MANTISSA_BITS, FLOAT64_MANTISSA_BITS = 24, 53


@dataclass(frozen=True)
class ExactSum:
    """A sum of squares that must stay exact (an ``sq_error`` layer): its module path, layer name and width.

    ``bits`` is the width of its exact (unsigned) fixed-point result. Every partial sum is a
    non-negative integer number of result LSBs no larger than the result, so the sum is exact in
    float32 while ``bits <= 24`` and in float64 while ``bits <= 53``.
    """

    module: str
    layer: str
    bits: int

    @property
    def dtype(self) -> type:
        """The narrowest float type holding every partial sum exactly (float32 or float64)."""
        return np.float32 if self.bits <= FLOAT32_MANTISSA_BITS else np.float64


def lower(
    proto: onnx.ModelProto, mode: str, fp16: bool = False, sums: tuple[ExactSum, ...] = ()
) -> tuple[onnx.ModelProto, dict[str, dict], dict[str, dict]]:
    """Replace every QONNX ``Quant`` node by standard ONNX (``mode`` ``qdq`` or ``float``).

    Returns the model, the quantization table and the precision table (one entry per ``sums``
    layer: module, bits, dtype, nodes). A sum wider than float32's mantissa is computed in float64
    (a ``Cast`` on each input) and must then be the graph output; with ``fp16`` the sums stay in
    float32 or float64.
    """
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
    precision: dict[str, dict] = {}
    kept: set[str] = set()
    for exact in sums:
        precision[exact.layer] = lowering.widen(exact, fp16, kept)
    graph.toposort()
    if fp16:
        _to_fp16(graph, kept)
    graph.inputs[0].name = INPUT_NAME
    graph.outputs[0].name = OUTPUT_NAME
    for tensor in graph.tensors().values():  # shapes are re-inferred after retargeting
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
            tensor.shape = None
    with quiet():
        return gs.export_onnx(graph, do_type_check=False), lowering.table, precision


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

    # -------------------------------------------------------------------- exact sums of squares
    def widen(self, exact: ExactSum, fp16: bool, kept: set[str]) -> dict[str, Any]:
        """Compute the nodes of ``exact.module`` in ``exact.dtype`` (and keep them out of float16)."""
        import onnx
        import onnx_graphsurgeon as gs

        where = f"sq_error layer {exact.layer!r} (module {exact.module!r})"
        if exact.bits > FLOAT64_MANTISSA_BITS:
            raise QuantizationError(
                f"{where}: its exact result needs {exact.bits} bits, more than float64's {FLOAT64_MANTISSA_BITS}-bit "
                "mantissa, so no float runtime computes it exactly; use a narrower type or fewer elements")
        nodes = [n for n in self.graph.nodes if _inside(self.modules.get(n.name), exact.module)]
        if not nodes:
            raise ArtifactError(f"{where}: no ONNX node of this module found (the exporter's name scopes are missing)")
        dtype = exact.dtype
        record = {"module": exact.module, "bits": exact.bits, "dtype": np.dtype(dtype).name,
                  "nodes": [n.name for n in nodes]}
        if dtype == np.float32 and not fp16:
            return record  # already float32, exact as computed
        inside = {id(n) for n in nodes}
        to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        casts: dict[str, Any] = {}
        for node in nodes:
            for index, tensor in enumerate(node.inputs):
                if isinstance(tensor, gs.Constant):
                    if np.issubdtype(tensor.values.dtype, np.floating) and tensor.values.dtype != dtype:
                        node.inputs[index] = wide = self.constant(f"{tensor.name}_{np.dtype(dtype).name}",
                                                                  tensor.values.astype(dtype))
                        kept.add(wide.name)
                    continue
                producer = tensor.inputs[0] if tensor.inputs else None
                if producer is not None and id(producer) in inside:
                    continue
                if not _is_float(tensor.dtype):
                    continue
                if tensor.name not in casts:
                    casts[tensor.name] = self.variable(f"{tensor.name}_{np.dtype(dtype).name}", dtype)
                    record["nodes"].append(self.node("Cast", exact.module, [tensor], [casts[tensor.name]], to=to))
                    kept.add(casts[tensor.name].name)
                node.inputs[index] = casts[tensor.name]
        for node in nodes:
            if node.op == "Constant":
                raise ArtifactError(f"{where}: ONNX node '{node.name}' is a Constant inside the sum; not supported")
            for tensor in node.outputs:
                if not _is_float(tensor.dtype):
                    continue
                tensor.dtype = dtype
                kept.add(tensor.name)
                outside = [c for c in tensor.outputs if id(c) not in inside]
                if not outside:
                    continue
                if dtype != np.float32:
                    raise QuantizationError(
                        f"{where}: its exact result needs {exact.bits} bits, more than float32's "
                        f"{FLOAT32_MANTISSA_BITS}-bit mantissa, so it is computed in float64, which is supported only "
                        f"as the model output; here it feeds {outside[0].op} '{outside[0].name}' (make it the last "
                        "layer or use a narrower type)")
                narrow = self.variable(f"{tensor.name}_fp16", np.float32)  # float16 once _to_fp16 runs
                record["nodes"].append(self.node("Cast", exact.module, [tensor], [narrow],
                                                 to=onnx.TensorProto.FLOAT16))
                for consumer in outside:
                    consumer.inputs[consumer.inputs.index(tensor)] = narrow
        return record

    def _key(self, label: str) -> str:
        key, index = label, 1
        while key in self.table:
            index += 1
            key = f"{label}#{index}"
        return key


def _inside(module: str | None, prefix: str) -> bool:
    return module is not None and (module == prefix or module.startswith(f"{prefix}."))


def _is_float(dtype: Any) -> bool:
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.floating)


def _round(values: np.ndarray, rounding: str) -> np.ndarray:
    if rounding == "ROUND":
        return np.round(values)  # half to even, as torch.round and ONNX Round
    if rounding == "FLOOR":
        return np.floor(values)
    return np.trunc(values)


def _to_fp16(graph: Any, kept: Set[str] = frozenset()) -> None:
    """Float32 -> float16 inside the graph except the ``kept`` tensors; the graph input/output stay as they were.

    A ``Cast`` at each end keeps the float32 input and output (none at the output when it is kept).
    """
    import onnx
    import onnx_graphsurgeon as gs

    kept = set(kept) | {t.name for n in graph.nodes if n.op == "Resize" for t in n.inputs[1:3]}  # float32 scales
    for tensor in graph.tensors().values():
        if tensor.name in kept:
            continue
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
    if out.name in kept:
        graph.toposort()
        return
    half_out = gs.Variable(f"{out.name}_fp16", dtype=np.float16)
    producer = out.inputs[0]
    producer.outputs[producer.outputs.index(out)] = half_out
    out.dtype = np.float32
    graph.nodes.append(gs.Node("Cast", name="output/Cast", attrs={"to": onnx.TensorProto.FLOAT},
                               inputs=[half_out], outputs=[out]))
    graph.toposort()


@contextlib.contextmanager
def quiet():
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
