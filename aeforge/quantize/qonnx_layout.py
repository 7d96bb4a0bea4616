"""Graph rewrites that make a cleaned Brevitas QONNX graph take the form hls4ml converts.

* :class:`FoldZeroPadIntoConv` (:func:`fold_zero_pad_transformation`) -- a zero ``Pad`` (TensorFlow
  SAME or explicit padding) folds into the ``pads`` of the ``Conv`` it feeds;
* :func:`split_repeated_inputs` -- a node reading one tensor twice (``Mul(d, d)``, the square of
  ``sq_error``) gets an ``Identity`` copy for the second read: qonnx's tensor renaming (cleanup)
  only renames the first occurrence and would break the graph otherwise;
* :func:`to_channels_last` -- every activation of rank >= 3 goes channels-last (``NHWC``/``NLC``),
  the layout hls4ml computes in; ``Conv``/``MaxPool``/``AveragePool`` move to the
  ``qonnx.custom_op.channels_last`` domain (conv weights ``OHWI``), ``Resize`` scales and ``Pad``
  pads are permuted, element-wise ops stay, a ``Transpose`` that only undid the layout (the
  channels-last flatten of :class:`~aeforge.quantize.models.sequential.ChannelsLastFlatten`)
  disappears, and a ``Flatten`` of a channels-first tensor gets the ``Transpose`` it needs. qonnx's
  own ``ConvertToChannelsLastAndClean`` leaves transposes around pooling, upsampling and residual
  forks, which hls4ml cannot take;
* :func:`reduce_sum_to_matmul` -- the whole-sample ``ReduceSum`` of ``sq_error`` becomes a
  ``Flatten`` and a ``MatMul`` with constant ones (a quantized ``ufixed<1,1>`` weight): hls4ml has no
  ``ReduceSum``, and a ``Dense`` with ones weights and an exact accumulator is the same sum.

:func:`register_channels_last_ops` registers the channels-last ``AveragePool`` qonnx executes
(qonnx ships ``Conv``, ``MaxPool`` and ``BatchNormalization`` only); call it before executing or
shape-inferring such a graph.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ArtifactError

if TYPE_CHECKING:
    from onnx import NodeProto
    from qonnx.core.modelwrapper import ModelWrapper

CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"
_ELEMENTWISE = ("Quant", "Relu", "Identity", "Add", "Sub", "Mul")
_LAYOUT_OPS = ("Conv", "MaxPool", "AveragePool")


def _describe(node: NodeProto) -> str:
    from aeforge.quantize.export import describe_node

    return describe_node(node)


def _attribute(node: NodeProto, name: str, default: Any = None) -> Any:
    from aeforge.quantize.export import _attribute as attribute

    return attribute(node, name, default)


def _to_last(rank: int) -> list[int]:
    """Permutation NC... -> N...C."""
    return [0, *range(2, rank), 1]


def _to_first(rank: int) -> list[int]:
    """Permutation N...C -> NC...."""
    return [0, rank - 1, *range(1, rank - 1)]


@functools.cache
def register_channels_last_ops() -> None:
    """Register the channels-last ``AveragePool`` with qonnx (idempotent)."""
    from qonnx.custom_op.channels_last.max_pool import MaxPool_v1
    from qonnx.custom_op.registry import add_op_to_domain

    class AveragePool_v10(MaxPool_v1):  # qonnx derives the op type and (since-)opset from the name
        """ONNX ``AveragePool`` on a channels-last tensor (executed channels-first by onnxruntime)."""

        _channelsLast_node_types = ["Conv", "MaxPool", "BatchNormalization", "AveragePool"]  # noqa: RUF012

        def get_nodeattr_types(self) -> dict:
            types = dict(super().get_nodeattr_types())
            types.update({"count_include_pad": ("i", False, 0), "ceil_mode": ("i", False, 0)})
            return types

    add_op_to_domain(CHANNELS_LAST_DOMAIN, AveragePool_v10)


# ------------------------------------------------------------------------------------ zero pads
@functools.cache
def fold_zero_pad_transformation() -> type:
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


# ------------------------------------------------------------------------------------ repeated inputs
def split_repeated_inputs(model: ModelWrapper) -> ModelWrapper:
    """Give a node that reads one tensor twice an ``Identity`` copy for the repeated reads (in place)."""
    from onnx import helper

    for node in list(model.graph.node):
        seen: set[str] = set()
        for index, name in enumerate(node.input):
            if name and name in seen:
                copy_name = model.make_new_valueinfo_name()
                identity = helper.make_node("Identity", [name], [copy_name], name=f"{node.name}_copy{index}")
                model.graph.node.insert(list(model.graph.node).index(node), identity)
                node.input[index] = copy_name
            seen.add(name)
    return model


# ------------------------------------------------------------------------------------ channels-last
def _constant_size(model: ModelWrapper, name: str) -> int | None:
    """Element count of a constant (an initializer or a Quant of one), None for an activation."""
    value = model.get_initializer(name)
    if value is None:
        producer = model.find_producer(name)
        if producer is None or producer.op_type != "Quant":
            return None
        value = model.get_initializer(producer.input[0])
        if value is None:
            return None
    return int(np.asarray(value).size)


def _set_attribute(node: NodeProto, name: str, value: list[int]) -> None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            node.attribute.remove(attribute)
            break
    node.attribute.append(helper.make_attribute(name, value))


def _permute_initializer(model: ModelWrapper, name: str, permute, what: str) -> None:
    value = model.get_initializer(name)
    if value is None:
        raise ArtifactError(f"{what}: '{name}' must be a constant")
    model.set_initializer(name, permute(np.asarray(value)))


def to_channels_last(model: ModelWrapper) -> ModelWrapper:
    """A channels-last copy of a cleaned, checked, channels-first QONNX graph (graph input and output too)."""
    import copy

    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.general import SortGraph
    from qonnx.transformation.infer_shapes import InferShapes

    register_channels_last_ops()
    model = ModelWrapper(copy.deepcopy(model.model)).transform(SortGraph())
    graph = model.graph
    shapes = {name: list(model.get_tensor_shape(name) or []) for name in model.get_all_tensor_names()}
    rank = {name: len(shape) for name, shape in shapes.items()}
    last: set[str] = set()
    graph_input = graph.input[0]
    if rank[graph_input.name] >= 3:
        last.add(graph_input.name)
    nodes = list(graph.node)
    for node in nodes:
        op, what = node.op_type, _describe(node)
        data = [name for name in node.input if name in last]
        if not data:
            continue
        r = rank[data[0]]
        if op in _ELEMENTWISE:
            for name in node.input[1:] if op == "Quant" else node.input:
                if name in last or not name:
                    continue
                size = _constant_size(model, name)
                if size != 1:
                    raise ArtifactError(
                        f"{what}: combines a channels-last activation with '{name}', which is "
                        + ("not a scalar constant" if size is not None else "in another layout")
                        + "; only same-layout tensors and scalars can be combined on the hardware path"
                    )
            last.add(node.output[0])
        elif op in _LAYOUT_OPS:
            if node.input[0] != data[0] or len(data) != 1:
                raise ArtifactError(f"{what}: only the data input may be an activation")
            node.domain = CHANNELS_LAST_DOMAIN
            if op == "Conv":
                weight = model.find_producer(node.input[1])
                source = weight.input[0] if weight is not None and weight.op_type == "Quant" else node.input[1]
                _permute_initializer(model, source, lambda w: np.transpose(w, _to_last(w.ndim)), what)
                if weight is not None:
                    model.set_tensor_shape(node.input[1], [shapes[node.input[1]][i] for i in _to_last(r)])
            last.add(node.output[0])
        elif op == "Resize":
            for index in (2, 3):
                if len(node.input) > index and node.input[index]:
                    _permute_initializer(model, node.input[index], lambda s, r=r: s[_to_last(r)], what)
            last.add(node.output[0])
        elif op == "Pad":
            _permute_initializer(
                model, node.input[1], lambda p, r=r: np.concatenate([p[:r][_to_last(r)], p[r:][_to_last(r)]]), what
            )
            last.add(node.output[0])
        elif op == "Transpose":
            perm = list(next((a.ints for a in node.attribute if a.name == "perm"), range(r - 1, -1, -1)))
            first = _to_first(r)  # stored axis i of the NCHW view is stored axis first[i] of NHWC
            new_perm = [first[p] for p in perm]
            _set_attribute(node, "perm", new_perm)
        elif op in ("Flatten", "Reshape"):
            consumers = model.find_consumers(node.output[0]) or []
            if rank[node.output[0]] >= 3:
                raise ArtifactError(f"{what}: reshapes an image to rank {rank[node.output[0]]}; only flattening "
                                    "is supported on the hardware path")
            if consumers and all(c.op_type == "ReduceSum" for c in consumers):
                continue  # a whole-sample sum does not depend on the element order
            transposed = model.make_new_valueinfo_name()
            transpose = helper.make_node("Transpose", [data[0]], [transposed], perm=_to_first(r),
                                         name=f"{node.name}_to_channels_first")
            graph.node.insert(list(graph.node).index(node), transpose)
            node.input[0] = transposed
            model.set_tensor_shape(transposed, shapes[data[0]])
        elif op == "ReduceSum":
            continue  # whole-sample sums are checked by check_hardware_graph
        else:
            raise ArtifactError(f"{what}: op {op} cannot take a channels-last image on the hardware path")
    for name in last:
        model.set_tensor_shape(name, [shapes[name][i] for i in _to_last(rank[name])])
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in last:
            perm = next(a.ints for a in node.attribute if a.name == "perm")
            model.set_tensor_shape(node.output[0], [model.get_tensor_shape(node.input[0])[p] for p in perm])
    _drop_identity_transposes(model)
    _import_channels_last_opset(model)
    return model.transform(InferShapes()).transform(SortGraph())


def _import_channels_last_opset(model: ModelWrapper) -> None:
    """Declare the channels-last domain at the standard opset, so qonnx executes e.g. MaxPool-10, not MaxPool-1."""
    from onnx import helper

    imports = {entry.domain: entry.version for entry in model.model.opset_import}
    if CHANNELS_LAST_DOMAIN in imports:
        return
    version = imports.get("", imports.get("ai.onnx", 13))
    model.model.opset_import.append(helper.make_opsetid(CHANNELS_LAST_DOMAIN, version))


def _drop_identity_transposes(model: ModelWrapper) -> None:
    """Remove ``Transpose`` nodes whose permutation became the identity."""
    from onnx import helper

    outputs = {o.name for o in model.graph.output}
    for node in list(model.graph.node):
        if node.op_type != "Transpose":
            continue
        perm = [int(p) for p in next(a.ints for a in node.attribute if a.name == "perm")]
        if perm != list(range(len(perm))):
            continue
        if node.output[0] in outputs:
            index = list(model.graph.node).index(node)
            model.graph.node.remove(node)
            model.graph.node.insert(index, helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                                            name=node.name))
            continue
        for consumer in model.find_consumers(node.output[0]) or []:
            for index, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[index] = node.input[0]
        model.graph.node.remove(node)


# ------------------------------------------------------------------------------------ ReduceSum
def reduce_sum_to_matmul(model: ModelWrapper) -> ModelWrapper:
    """Every whole-sample ``ReduceSum`` (keepdims) -> ``Flatten`` + ``MatMul`` with quantized ones (in place)."""
    from onnx import helper

    for node in model.get_nodes_by_op_type("ReduceSum"):
        what = _describe(node)
        shape = model.get_tensor_shape(node.input[0])
        axes = model.get_initializer(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if axes is None:
            axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        wanted = set(range(1, len(shape)))
        if axes is None or {int(a) % len(shape) for a in np.asarray(axes).ravel()} != wanted or not keepdims:
            raise ArtifactError(
                f"{what}: only a sum over every element of a sample, keeping the dimension "
                "(x.flatten(1).sum(dim=1, keepdim=True)), is supported on the hardware path"
            )
        n = int(np.prod(shape[1:]))
        flat, ones, weight = (model.make_new_valueinfo_name() for _ in range(3))
        params = [model.make_new_valueinfo_name() for _ in range(3)]
        model.set_initializer(ones, np.ones((n, 1), dtype=np.float32))
        for name, value in zip(params, (1.0, 0.0, 1.0), strict=True):
            model.set_initializer(name, np.asarray(value, dtype=np.float32))
        index = list(model.graph.node).index(node)
        new_nodes = [
            helper.make_node("Flatten", [node.input[0]], [flat], axis=1, name=f"{node.name}_flatten"),
            helper.make_node("Quant", [ones, *params], [weight], domain="qonnx.custom_op.general",
                             name=f"{node.name}_ones", rounding_mode="ROUND", signed=0, narrow=0),
            helper.make_node("MatMul", [flat, weight], [node.output[0]], name=f"{node.name}_sum"),
        ]
        model.graph.node.remove(node)
        for offset, new in enumerate(new_nodes):
            model.graph.node.insert(index + offset, new)
        model.set_tensor_shape(flat, [shape[0], n])
        model.set_tensor_shape(weight, [n, 1])
    return model


# ------------------------------------------------------------------------------------ Gemm
def gemm_to_matmul(model: ModelWrapper) -> ModelWrapper:
    """Every ``Gemm`` (alpha = beta = 1, checked before) -> ``MatMul`` (+ bias ``Add``), in place.

    A transposed weight (``transB``, what torch exports) is transposed in its initializer, behind
    its ``Quant`` node (per-tensor quantization commutes with the transpose). Unlike qonnx's
    ``GemmToMatMul`` this also takes a ``Gemm`` without bias.
    """
    from onnx import helper

    for node in model.get_nodes_by_op_type("Gemm"):
        what = _describe(node)
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("transA", 0):
            raise ArtifactError(f"{what}: Gemm with transA is not supported")
        if attributes.get("transB", 0):
            weight = model.find_producer(node.input[1])
            source = weight.input[0] if weight is not None and weight.op_type == "Quant" else node.input[1]
            _permute_initializer(model, source, lambda w: np.asarray(w).T.copy(), what)
            shape = model.get_tensor_shape(node.input[1])
            if weight is not None and shape:
                model.set_tensor_shape(node.input[1], list(reversed(shape)))
        index = list(model.graph.node).index(node)
        has_bias = len(node.input) > 2 and node.input[2]
        product = model.make_new_valueinfo_name() if has_bias else node.output[0]
        new_nodes = [helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=f"{node.name}_matmul")]
        if has_bias:
            new_nodes.append(
                helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias")
            )
            model.set_tensor_shape(product, model.get_tensor_shape(node.output[0]))
        model.graph.node.remove(node)
        for offset, new in enumerate(new_nodes):
            model.graph.node.insert(index + offset, new)
    return model
