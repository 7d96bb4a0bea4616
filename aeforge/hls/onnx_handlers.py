"""hls4ml ONNX layer handlers for channels-last pooling and upsampling, used while aeforge converts.

hls4ml 1.3's own handlers read the wrong axes of channels-last graphs: ``MaxPool``/``AveragePool``
on ``(N, L, C)`` take ``C`` for the length and set no ``pad_left``/``pad_right`` (the layer cannot
even be built), and ``Resize`` swaps height and width (wrong for any non-square image) and indexes
a 4th axis that a 1-D ``(N, L, C)`` tensor does not have. :func:`channels_last_handlers` swaps in
handlers that read the shapes of :func:`aeforge.quantize.qonnx_layout.to_channels_last` graphs for
the duration of a conversion (hls4ml keeps its handlers in a module-level dict) and restores
hls4ml's afterwards; :func:`hls4ml_view` is the copy of the graph they parse.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qonnx.core.modelwrapper import ModelWrapper

_LOCK = threading.Lock()
SCALES_ATTRIBUTE = "aeforge_scales"


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    from hls4ml.converters.onnx_to_hls import get_onnx_attribute

    return get_onnx_attribute(node, name, default)


def parse_pool(node: Any, input_names: list[str], input_shapes: list[list[int]], graph: Any) -> dict[str, Any]:
    """Channels-last ``MaxPool``/``AveragePool`` (no padding: export refuses padded pooling)."""
    shape = input_shapes[0]
    kernel = [int(k) for k in _attribute(node, "kernel_shape")]
    strides = [int(s) for s in _attribute(node, "strides", kernel)]
    kind = node.op_type.replace("Pool", "")  # Max / Average
    layer: dict[str, Any] = {
        "name": node.name, "inputs": input_names, "outputs": list(node.output), "data_format": "channels_last",
        "count_pad": False,
    }
    if len(shape) == 3:  # (N, L, C)
        layer.update(class_name=f"{kind}Pooling1D", n_in=shape[1], n_filt=shape[2], pool_width=kernel[0],
                     stride_width=strides[0], pad_left=0, pad_right=0,
                     n_out=(shape[1] - kernel[0]) // strides[0] + 1)
    elif len(shape) == 4:  # (N, H, W, C)
        layer.update(class_name=f"{kind}Pooling2D", in_height=shape[1], in_width=shape[2], n_filt=shape[3],
                     pool_height=kernel[0], pool_width=kernel[1], filt_height=kernel[0], filt_width=kernel[1],
                     stride_height=strides[0], stride_width=strides[1],
                     pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                     out_height=(shape[1] - kernel[0]) // strides[0] + 1,
                     out_width=(shape[2] - kernel[1]) // strides[1] + 1)
    else:
        raise ValueError(f"{node.name}: pooling needs an (N, L, C) or (N, H, W, C) input, got {shape}")
    return layer


def parse_resize(node: Any, input_names: list[str], input_shapes: list[list[int]], graph: Any) -> dict[str, Any]:
    """Channels-last nearest ``Resize`` by integer scales; 1-D is a 2-D resize of height 1."""
    shape = input_shapes[0]
    scales = [int(s) for s in _attribute(node, SCALES_ATTRIBUTE)]
    layer: dict[str, Any] = {
        "name": node.name, "class_name": "Resize", "inputs": input_names[:1], "outputs": list(node.output),
        "algorithm": "nearest", "data_format": "channels_last", "n_chan": shape[-1],
    }
    if len(shape) == 3:
        layer.update(in_height=1, out_height=1, in_width=shape[1], out_width=shape[1] * scales[1])
    else:
        layer.update(in_height=shape[1], out_height=shape[1] * scales[1], in_width=shape[2],
                     out_width=shape[2] * scales[2])
    return layer


def hls4ml_view(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` for hls4ml to parse: ``Resize`` keeps only its data input, its scales move to an attribute.

    hls4ml turns every initializer into a ``Constant`` layer and looks up a shape for every input
    name (the empty ``roi`` has none); a ``Constant`` no layer consumes breaks its precision passes.
    """
    import copy

    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper

    view = ModelWrapper(copy.deepcopy(model.model))
    for node in view.get_nodes_by_op_type("Resize"):
        scales = view.get_initializer(node.input[2])
        node.attribute.append(helper.make_attribute(SCALES_ATTRIBUTE, [round(float(s)) for s in np.ravel(scales)]))
        constants = [name for name in node.input[1:] if name]
        del node.input[1:]
        for name in constants:
            if not view.find_consumers(name):
                view.graph.initializer.remove(next(i for i in view.graph.initializer if i.name == name))
    return view


HANDLERS = {"MaxPool": parse_pool, "AveragePool": parse_pool, "Resize": parse_resize}


@contextlib.contextmanager
def channels_last_handlers() -> Iterator[None]:
    """hls4ml's ONNX handlers for pooling and ``Resize`` replaced by the ones above, for the duration."""
    import importlib

    onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")  # the module, not the function
    with _LOCK:
        saved = {op: onnx_to_hls.layer_handlers.get(op) for op in HANDLERS}
        onnx_to_hls.layer_handlers.update(HANDLERS)
        try:
            yield
        finally:
            for op, handler in saved.items():
                if handler is None:
                    onnx_to_hls.layer_handlers.pop(op, None)
                else:
                    onnx_to_hls.layer_handlers[op] = handler
