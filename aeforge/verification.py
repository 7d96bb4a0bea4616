"""The verification contract: every exported form of a model against the Brevitas reference.

:class:`Fidelity` records how one target compares with the reference on ``n`` input vectors: how
many vectors match exactly, the largest error in LSBs of the output type, the first mismatching
vector. Fixed-point targets must be bit-exact (``tolerance_lsb = 0``); float runtimes state their
tolerance. :func:`compare` makes one from two arrays of predictions.

The ``predict_*`` functions run the same input vectors through each form, each in its own layout:

* :func:`predict_brevitas` -- the PyTorch/Brevitas model in float64, channels-first ``(N, C, H, W)``;
* :func:`predict_qonnx` -- ``qonnx.core.onnx_exec.execute_onnx`` on the channels-last graph, ``(N, H, W, C)``
  (float64 node by node when a type is wider than float32's mantissa);
* :func:`predict_hls_csim` -- the compiled hls4ml C-simulation (in a subprocess), ``(N, H, W, C)``.

Each first puts the inputs on the input type's grid (:func:`to_input_grid`), so all of them see
exactly the same numbers (hls4ml, fed floats, would otherwise round them a second time).

The core (:class:`Fidelity`, :func:`compare`) needs only numpy; the predictors import torch,
qonnx or the C-simulation runner when called.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ArtifactError
from aeforge.fixedpoint import FixedPoint

if TYPE_CHECKING:
    import torch
    from qonnx.core.modelwrapper import ModelWrapper


@dataclass(frozen=True)
class Fidelity:
    """How ``target`` compares with the reference on ``n`` vectors (errors in LSB of the output type)."""

    target: str
    n: int
    exact: int
    max_lsb: float
    first_mismatch: int | None
    tolerance_lsb: float = 0.0

    @property
    def bit_exact(self) -> bool:
        """Every vector matches the reference exactly."""
        return self.exact == self.n

    @property
    def passed(self) -> bool:
        """Within the stated tolerance (bit-exact when the tolerance is 0)."""
        if self.tolerance_lsb == 0:
            return self.bit_exact
        return self.max_lsb <= self.tolerance_lsb

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bit_exact"] = self.bit_exact
        data["passed"] = self.passed
        if not math.isfinite(self.max_lsb):
            data["max_lsb"] = str(self.max_lsb)  # JSON has no inf/nan
        return data

    def __str__(self) -> str:
        status = "bit-exact" if self.bit_exact else ("ok" if self.passed else "MISMATCH")
        first = "" if self.first_mismatch is None else f", first mismatch at vector {self.first_mismatch}"
        return f"{self.target}: {status}, {self.exact}/{self.n} exact, max error {self.max_lsb:g} LSB{first}"


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    output_type: FixedPoint,
    target: str,
    tolerance_lsb: float = 0.0,
) -> Fidelity:
    """Compare predictions vector by vector (first axis) and measure the error in LSB of ``output_type``.

    NaN or infinite candidate values count as mismatches with an infinite error.
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.ndim == 0 or ref.shape[0] != got.shape[0] or ref.size != got.size:
        raise ArtifactError(f"{target}: predictions of shape {got.shape} do not match the reference {ref.shape}")
    n = ref.shape[0]
    if n == 0:
        raise ArtifactError(f"{target}: no vectors to compare")
    ref, got = ref.reshape(n, -1), got.reshape(n, -1)
    with np.errstate(invalid="ignore"):
        error = np.abs(got - ref)
    error = np.where(np.isfinite(error), error, np.inf)
    matches = np.all(got == ref, axis=1)
    mismatched = np.flatnonzero(~matches)
    max_lsb = float(error.max() / output_type.lsb) if error.size else 0.0
    return Fidelity(
        target=target,
        n=int(n),
        exact=int(matches.sum()),
        max_lsb=max_lsb,
        first_mismatch=int(mismatched[0]) if mismatched.size else None,
        tolerance_lsb=float(tolerance_lsb),
    )


# ------------------------------------------------------------------------------------ layouts
def to_input_grid(inputs: np.ndarray, input_type: FixedPoint) -> np.ndarray:
    """The inputs quantized to ``input_type`` (float64), what every target is fed."""
    return input_type.quantize(np.asarray(inputs, dtype=np.float64))


def nchw_to_nhwc(images: np.ndarray) -> np.ndarray:
    """Channels-first ``(N, C, H, W)`` -> channels-last ``(N, H, W, C)`` (1D: ``(N, C, W)`` -> ``(N, W, C)``)."""
    images = np.asarray(images)
    if images.ndim < 3:
        return images
    return np.ascontiguousarray(np.moveaxis(images, 1, -1))


# ------------------------------------------------------------------------------------ predictors
def predict_brevitas(
    model: torch.nn.Module, images_nchw: np.ndarray, input_type: FixedPoint, batch_size: int = 4096
) -> np.ndarray:
    """The Brevitas model in float64 (a copy; ``model`` is not changed) on channels-first inputs."""
    import copy

    import torch

    reference = copy.deepcopy(model).double().eval()
    grid = to_input_grid(images_nchw, input_type)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(grid), batch_size):
            batch = torch.as_tensor(grid[start : start + batch_size], dtype=torch.float64)
            outputs.append(reference(batch).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def predict_qonnx(
    qonnx_model: ModelWrapper, images_nhwc: np.ndarray, input_type: FixedPoint, batch_size: int = 1000,
    float64: bool = False,
) -> np.ndarray:
    """Execute the (channels-last) QONNX graph in batches on NHWC inputs.

    By default ``execute_onnx``: standard ONNX nodes run in onnxruntime in float32, which is exact
    while every tensor's exact type fits float32's 24-bit mantissa (the QONNX ``Quant`` nodes run in
    numpy). ``float64`` runs every node in float64 instead (:class:`Float64Executor`: qonnx's
    ``Quant`` in numpy, the other nodes in ``onnx.reference``), exact up to 53 bits; the callers pass
    it when :func:`float32_exact` says a type is wider (e.g. a layer without an output quantizer).
    """
    grid = to_input_grid(images_nhwc, input_type)
    expected = tuple(d.dim_value for d in qonnx_model.graph.input[0].type.tensor_type.shape.dim)[1:]
    if grid.shape[1:] != expected:
        raise ArtifactError(f"QONNX inputs of shape {grid.shape[1:]} per sample; the graph takes {expected} (NHWC)")
    input_name, output_name = qonnx_model.graph.input[0].name, qonnx_model.graph.output[0].name
    if not float64:
        import onnxruntime
        from qonnx.core.onnx_exec import execute_onnx

        from aeforge.quantize.qonnx_layout import register_channels_last_ops

        register_channels_last_ops()  # the channels-last AveragePool qonnx does not ship
        # qonnx runs single nodes as opset-1 models; onnxruntime warns about each one. Errors still show.
        onnxruntime.set_default_logger_severity(3)
    batched: dict[int, Any] = {}
    outputs = []
    for start in range(0, len(grid), batch_size):
        batch = grid[start : start + batch_size]
        if len(batch) not in batched:
            resized = _with_batch_size(qonnx_model, len(batch))
            batched[len(batch)] = Float64Executor(resized) if float64 else resized
        if float64:
            result = batched[len(batch)].run(batch)
        else:
            result = execute_onnx(batched[len(batch)], {input_name: batch.astype(np.float32)})[output_name]
        outputs.append(np.asarray(result, dtype=np.float64))
    return np.concatenate(outputs) if outputs else np.zeros((0,))


FLOAT32_EXACT_BITS = 24
"""A fixed-point value is exact in float32 while its type has at most 24 bits (the mantissa)."""


def widest_exact_type(module: Any) -> tuple[str, FixedPoint] | None:
    """The widest exact type of any tensor of a spec-built model (``(where, type)``), or None.

    Conv/dense/pooling/add results are their exact accumulator types (every partial sum fits them),
    so this bounds every value the graph computes. None for models without a ``spec``.
    """
    spec = getattr(module, "spec", None)
    if spec is None and callable(getattr(module, "as_sequential", None)):  # e.g. the ECON-T encoder
        spec = getattr(module.as_sequential(), "spec", None)
    if spec is None or not hasattr(spec, "output_types"):
        return None
    tensors = [("input", spec.input.type)]
    tensors += [(f"layer {layer.name!r} ({layer.kind})", t) for layer, t in zip(spec.layers, spec.output_types(),
                                                                              strict=True)]
    return max(tensors, key=lambda item: item[1].bits)


def float32_exact(module: Any) -> bool:
    """Every tensor of the model is exact in float32 (see :func:`widest_exact_type`); True when unknown."""
    widest = widest_exact_type(module)
    return widest is None or widest[1].bits <= FLOAT32_EXACT_BITS


class Float64Executor:
    """Run a QONNX graph node by node in float64 (exact for fixed-point types up to 53 bits).

    ``Quant`` nodes run qonnx's own numpy ``int_quant``; channels-last nodes (qonnx's
    ``channels_last`` domain) are transposed to channels-first around the standard op, as qonnx
    does; every standard op runs in ``onnx.reference`` (numpy, so float64 kernels exist for all of
    them, Conv included, where onnxruntime's CPU provider has none).
    """

    def __init__(self, model: ModelWrapper) -> None:
        from onnx import numpy_helper

        graph = model.graph
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.input_name, self.output_name = graph.input[0].name, graph.output[0].name
        self.constants: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            value = numpy_helper.to_array(init)
            self.constants[init.name] = value.astype(np.float64) if value.dtype.kind == "f" else value
        self.steps = [self._step(node, opset) for node in graph.node]

    def _step(self, node: Any, opset: int) -> tuple[Any, Any, Any]:
        from onnx import TensorProto, helper
        from onnx.reference import ReferenceEvaluator

        from aeforge.quantize.qonnx_layout import CHANNELS_LAST_DOMAIN

        if node.op_type == "Quant" and node.domain.startswith("qonnx"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            return node, "quant", {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if node.domain not in ("", "ai.onnx", CHANNELS_LAST_DOMAIN):
            raise ArtifactError(f"QONNX node '{node.name}' ({node.domain}::{node.op_type}): not supported by the "
                                "float64 executor")
        standard = helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name,
                                    **{a.name: helper.get_attribute_value(a) for a in node.attribute})
        graph = helper.make_graph([standard], "node",
                                  [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in node.input
                                   if n],
                                  [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in node.output])
        evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
        return node, "channels_last" if node.domain == CHANNELS_LAST_DOMAIN else "standard", evaluator

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The graph output for one batch (float64, the batch size the graph was made for)."""
        from qonnx.custom_op.general.quant import quant

        context = dict(self.constants)
        context[self.input_name] = np.asarray(batch, dtype=np.float64)
        for node, kind, how in self.steps:
            inputs = [context[name] if name else None for name in node.input]
            if kind == "quant":
                x, scale, zero, bits = inputs
                outputs = [quant(x, scale, zero, bits, how.get("signed", 1), how.get("narrow", 0),
                                 how.get("rounding_mode", "ROUND"))]
            elif kind == "channels_last":  # data (and a conv's weight) to channels-first and back, as qonnx
                rank = inputs[0].ndim
                first, last = (0, rank - 1, *range(1, rank - 1)), (0, *range(2, rank), 1)
                moved = [np.transpose(v, first) if i < (2 if node.op_type == "Conv" else 1) else v
                         for i, v in enumerate(inputs)]
                outputs = [np.transpose(v, last) for v in how.run(None, dict(zip(node.input, moved, strict=True)))]
            else:
                outputs = how.run(None, {n: v for n, v in zip(node.input, inputs, strict=True) if n})
            for name, value in zip(node.output, outputs, strict=True):
                value = np.asarray(value)
                context[name] = value.astype(np.float64) if value.dtype.kind == "f" else value
        return context[self.output_name]


def _with_batch_size(model: ModelWrapper, batch: int) -> ModelWrapper:
    """A copy whose activations (every tensor computed from the graph input) have batch size ``batch``.

    qonnx's ``ChangeBatchSize`` drops all shapes and relies on re-inference, which fails on
    channels-last ``Conv`` nodes; here the known shapes are kept and only the batch axis changes.
    """
    import copy

    from qonnx.core.modelwrapper import ModelWrapper

    resized = ModelWrapper(copy.deepcopy(model.model))
    graph = resized.graph
    initializers = {init.name for init in graph.initializer}
    dynamic = {inp.name for inp in graph.input if inp.name not in initializers}
    for node in graph.node:
        if any(name in dynamic for name in node.input):
            dynamic.update(node.output)
            if node.op_type == "Reshape" and resized.get_initializer(node.input[1]) is not None:
                shape = np.array(resized.get_initializer(node.input[1]), copy=True)
                shape[0] = batch
                resized.set_initializer(node.input[1], shape)
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.name in dynamic and len(info.type.tensor_type.shape.dim) > 0:
            info.type.tensor_type.shape.dim[0].dim_value = batch
    return resized


def predict_hls_csim(
    project_dir: str | os.PathLike[str], images_nhwc: np.ndarray, input_type: FixedPoint
) -> np.ndarray:
    """The hls4ml C-simulation (in a subprocess; see :mod:`aeforge.hls.csim`) on NHWC inputs."""
    from aeforge.hls.csim import csim_predict

    return csim_predict(project_dir, to_input_grid(images_nhwc, input_type))


def verify_hls(
    model: torch.nn.Module,
    qonnx_model: ModelWrapper,
    project_dir: str | os.PathLike[str],
    images_nchw: np.ndarray,
    input_type: FixedPoint,
    output_type: FixedPoint,
) -> list[Fidelity]:
    """Brevitas (reference) vs QONNX execution vs HLS C-simulation on the same channels-first inputs."""
    grid = to_input_grid(images_nchw, input_type)
    nhwc = nchw_to_nhwc(grid)
    reference = predict_brevitas(model, grid, input_type)
    if reference.ndim >= 3:  # hardware outputs images / sequences channels-last
        reference = np.moveaxis(reference, 1, -1)
    return [
        compare(reference, reference, output_type, "brevitas"),
        compare(reference, predict_qonnx(qonnx_model, nhwc, input_type, float64=not float32_exact(model)), output_type,
                "qonnx"),
        compare(reference, predict_hls_csim(project_dir, nhwc, input_type), output_type, "hls_csim"),
    ]
