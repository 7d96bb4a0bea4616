"""Edge export of every SequentialSpec layer kind: onnxruntime equals Brevitas bit for bit (QDQ and FP32).

Three small models cover the kinds: a 1-D one (conv1d, maxpool, upsample, avgpool, residual add,
sq_error in float32), a 2-D one (conv2d, add, maxpool, avgpool, upsample) and an anomaly score whose
exact sum of squares needs 29 bits (float64). Each runs on 2,000 random on-grid inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx_graphsurgeon")

from aeforge.edge import onnx_export  # noqa: E402
from aeforge.edge.onnx_export import EdgeExport, exact_session_options, export_edge_onnx  # noqa: E402
from aeforge.edge.qdq_lowering import ExactSum, lower  # noqa: E402
from aeforge.edge.trt_rules import split_severities  # noqa: E402
from aeforge.errors import QuantizationError  # noqa: E402
from aeforge.quantize.models.sequential import SequentialQuantModel, build_sequential  # noqa: E402
from aeforge.verification import predict_brevitas  # noqa: E402

N = 2000
T = "AP_RND_CONV,AP_SAT"
IN8 = f"ap_fixed<8,3,{T}>"
CONV = {"weight": f"ap_fixed<6,1,{T}>", "bias": f"ap_fixed<8,2,{T}>", "padding": "same"}

MODELS: dict[str, dict[str, Any]] = {
    "1d": {"input": {"shape": [16, 2], "type": IN8}, "layers": [
        {"kind": "conv1d", "filters": 2, "kernel_size": 3, **CONV, "name": "conv"},
        {"kind": "relu", "type": f"ap_ufixed<7,3,{T}>", "name": "relu"},  # int8 Q/DQ
        {"kind": "maxpool", "pool_size": 2, "name": "max"},
        {"kind": "upsample", "size": 2, "name": "up"},
        {"kind": "quant", "type": IN8, "name": "q"},  # DQ -> MaxPool -> Resize -> Q
        {"kind": "add", "source": "input", "name": "res"},  # two int8 tensors
        {"kind": "avgpool", "pool_size": 2, "name": "avg"},  # ap_fixed<10,4>: not int8, float between Q/DQ
        {"kind": "quant", "type": IN8, "name": "rq"},
        {"kind": "upsample", "size": [2], "name": "up2"},
        {"kind": "sq_error", "source": "input", "name": "score"},  # 21 bits: exact in float32
    ]},
    "2d": {"input": {"shape": [8, 8, 2], "type": IN8}, "layers": [
        {"kind": "conv2d", "filters": 2, "kernel_size": 3, **CONV, "name": "conv"},
        {"kind": "quant", "type": IN8, "name": "q"},
        {"kind": "add", "source": "input", "name": "res"},
        {"kind": "maxpool", "pool_size": 2, "name": "max"},
        {"kind": "avgpool", "pool_size": [2, 2], "name": "avg"},
        {"kind": "upsample", "size": [2, 2], "name": "up"},
        {"kind": "relu", "type": f"ap_ufixed<7,3,{T}>", "name": "out"},
    ]},
    "wide": {"input": {"shape": [4, 4, 2], "type": f"ap_fixed<12,4,{T}>"}, "layers": [
        {"kind": "conv2d", "filters": 2, "kernel_size": 3, **CONV, "name": "conv"},
        {"kind": "quant", "type": f"ap_fixed<12,4,{T}>", "name": "q"},
        {"kind": "sq_error", "source": "input", "name": "score"},  # 29 bits: float64
    ]},
}


def _model(name: str) -> SequentialQuantModel:
    torch.manual_seed(0)
    module = build_sequential(MODELS[name]).eval()
    with torch.no_grad():  # trained-like weights: several LSBs, both signs
        for layer in module.layers:
            if hasattr(layer, "weight") and layer.weight is not None:
                layer.weight.uniform_(-0.9, 0.9)
                layer.bias.uniform_(-0.5, 0.5)
    return module


def _on_grid(module: SequentialQuantModel, n: int = N, seed: int = 0) -> np.ndarray:
    spec = module.input_type
    codes = np.random.default_rng(seed).integers(spec.min_code, spec.max_code + 1, size=(n, *module.input_shape))
    return (codes * spec.lsb).astype(np.float32)


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), exact_session_options(threads=1), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _assert_bit_exact(module: SequentialQuantModel, result: EdgeExport, x: np.ndarray) -> np.ndarray:
    reference = predict_brevitas(module, x, module.input_type).reshape(len(x), -1)
    got = _ort(result.path, x).astype(np.float64).reshape(len(x), -1)
    assert len(np.unique(reference)) > 20  # a meaningful comparison
    mismatch = np.flatnonzero(np.any(got != reference, axis=1))
    assert mismatch.size == 0, f"{mismatch.size} of {len(x)} differ; first {mismatch[:1]}"
    return reference


@pytest.fixture(scope="module")
def models() -> dict[str, SequentialQuantModel]:
    return {name: _model(name) for name in MODELS}


@pytest.mark.parametrize("fmt", ["qdq", "fp32"])
@pytest.mark.parametrize("name", ["1d", "2d", "wide"])
def test_every_kind_is_bit_exact(name: str, fmt: str, models: dict, tmp_path: Path) -> None:
    module = models[name]
    result = export_edge_onnx(module, module.input_shape, tmp_path / f"{name}.onnx", fmt=fmt)
    reference = _assert_bit_exact(module, result, _on_grid(module))
    if name == "wide":  # sums beyond float32's 24-bit mantissa really occur
        assert reference.max() / module.input_type.lsb**2 > 2**24
    ops = {node.op_type for node in onnx.load(result.path).graph.node}
    assert ("DequantizeLinear" in ops) == (fmt == "qdq")
    errors, notes = split_severities(result.trt_violations)
    if name == "wide":  # the 29-bit sum runs in float64, which TensorRT cannot
        assert result.output_dtype == "float64" and result.precision["score"]["dtype"] == "float64"
        assert {(v.rule, v.node) for v in errors} >= {("float64", "output")}
        assert any(v.rule == "float64" and v.op_type == "Cast" for v in errors)
        return
    assert errors == [] and result.output_dtype == "float32"
    if name == "1d":
        assert result.precision == {"score": {"module": "layers.9", "bits": 21, "dtype": "float32",
                                              "nodes": result.precision["score"]["nodes"]}}
    if fmt == "qdq":
        assert {"MaxPool", "AveragePool", "Resize", "Add"} <= ops
        assert {entry["encoding"] for entry in result.quantization.values()} == {"int8-qdq", "int8-dq", "folded"}
        assert notes == []  # every quantizer fits INT8: TensorRT-clean


@pytest.mark.parametrize(("name", "opset"), [("1d", 13), ("2d", 19)])
def test_resize_and_pooling_at_the_opset_bounds(name: str, opset: int, models: dict, tmp_path: Path) -> None:
    module = models[name]
    result = export_edge_onnx(module, module.input_shape, tmp_path / "m.onnx", opset=opset, batch=None)
    proto = onnx.load(result.path)
    assert [(e.domain, e.version) for e in proto.opset_import] == [("", opset)]
    resize = next(node for node in proto.graph.node if node.op_type == "Resize")
    assert ({a.name for a in resize.attribute} >= {"keep_aspect_ratio_policy"}) == (opset >= 18)
    _assert_bit_exact(module, result, _on_grid(module, 300, seed=1))
    assert split_severities(result.trt_violations)[0] == []


def test_fp16_keeps_the_sum_of_squares_in_float32(models: dict, tmp_path: Path) -> None:
    module = models["1d"]
    result = export_edge_onnx(module, module.input_shape, tmp_path / "h.onnx", fmt="fp16")
    proto = onnx.load(result.path)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    reduce_sum = next(node for node in proto.graph.node if node.op_type == "ReduceSum")
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    assert types.get(reduce_sum.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT
    x = _on_grid(module, 300)
    reference = predict_brevitas(module, x, module.input_type).reshape(len(x), -1)
    got = _ort(result.path, x).reshape(len(x), -1)
    assert np.all(np.isfinite(got)) and np.abs(got - reference).max() <= 0.05 * reference.max()


def test_float64_sum_is_refused_where_it_cannot_be_exact(models: dict, tmp_path: Path) -> None:
    module = models["wide"]
    proto = onnx_export._brevitas_qonnx(module, module.input_shape, None)
    with pytest.raises(QuantizationError, match=r"sq_error layer 'score'.*54 bits.*53-bit"):
        lower(proto, "qdq", sums=(ExactSum("layers.2", "score", 54),))

    spec = {**MODELS["wide"], "layers": [*MODELS["wide"]["layers"],
                                         {"kind": "quant", "type": f"ap_ufixed<16,12,{T}>", "name": "after"}]}
    torch.manual_seed(0)
    feeding = build_sequential(spec).eval()
    target = tmp_path / "mid.onnx"
    with pytest.raises(QuantizationError, match=r"sq_error layer 'score'.*29 bits.*float64.*only as the model output"):
        export_edge_onnx(feeding, feeding.input_shape, target)
    assert not target.exists()

