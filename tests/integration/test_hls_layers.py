"""Every layer kind of the model spec through QONNX execution and hls4ml C-sim, bit for bit against Brevitas.

One small model per kind (pooling and upsampling in 1-D and 2-D, conv1d with same / valid /
explicit padding and stride, a residual add, an average pool, an sq_error anomaly score), with
spread quantized weights, on a few thousand random inputs on the input grid. Each project is
compiled once per module (io_parallel Vitis; io_stream for a pooling and an add model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hls4ml", reason="hls4ml is needed (pip install 'aeforge[hls]')")

from aeforge.quantize.models.sequential import build_sequential
from aeforge.verification import nchw_to_nhwc, predict_brevitas, predict_hls_csim, predict_qonnx
from tests.small_models import spread_weights

T = "ap_fixed<7,3,AP_RND_CONV,AP_SAT>"
U = "ap_ufixed<7,3,AP_RND_CONV,AP_SAT>"
W = "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"
N_INPUTS = 2000


def _conv(kind: str, filters: int, kernel: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "filters": filters, "kernel_size": kernel, "weight": W, "bias": W, **extra}


SPECS: dict[str, dict[str, Any]] = {
    "pool1d": {"input": {"shape": [12, 3], "type": T}, "layers": [
        {"kind": "maxpool", "pool_size": 3, "strides": 2}, {"kind": "avgpool", "pool_size": 2}]},
    "pool2d": {"input": {"shape": [6, 8, 2], "type": T}, "layers": [
        _conv("conv2d", 3, 3, padding="same"), {"kind": "relu", "type": U},
        {"kind": "maxpool", "pool_size": [2, 3]}, {"kind": "avgpool", "pool_size": [1, 2]}]},
    "upsample1d": {"input": {"shape": [5, 2], "type": T}, "layers": [
        {"kind": "upsample", "size": 3}, _conv("conv1d", 2, 3), {"kind": "quant", "type": T}]},
    "upsample2d": {"input": {"shape": [3, 4, 2], "type": T}, "layers": [
        {"kind": "upsample", "size": [2, 3]}, _conv("conv2d", 2, [2, 3], strides=[1, 2]),
        {"kind": "quant", "type": T}]},
    "conv1d": {"input": {"shape": [11, 3], "type": T}, "layers": [
        _conv("conv1d", 4, 3, padding="same"), {"kind": "relu", "name": "r1", "type": U},
        _conv("conv1d", 3, 3, padding="valid", strides=2), {"kind": "quant", "name": "q2", "type": T},
        _conv("conv1d", 2, 2, padding=[[2, 1]], strides=2), {"kind": "quant", "name": "q3", "type": T}]},
    "residual": {"input": {"shape": [6, 6, 2], "type": T}, "layers": [
        _conv("conv2d", 2, 3, padding=[[1, 1], [1, 1]]), {"kind": "quant", "name": "branch", "type": T},
        {"kind": "add", "name": "skip", "source": "input"}, {"kind": "avgpool", "pool_size": 2},
        {"kind": "flatten"}, {"kind": "dense", "units": 3, "weight": W, "bias": W},
        {"kind": "quant", "type": T}]},
    "sq_error": {"input": {"shape": [4, 4, 2], "type": T}, "layers": [
        _conv("conv2d", 3, 3, padding="same", strides=2), {"kind": "relu", "type": U},
        {"kind": "upsample", "size": 2}, _conv("conv2d", 2, 3, padding="same"),
        {"kind": "quant", "name": "reconstruction", "type": T}, {"kind": "sq_error", "source": "input"}]},
}  # fmt: skip

CASES = [(name, "io_parallel") for name in SPECS] + [("pool2d", "io_stream"), ("residual", "io_stream")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """A cache: (name, io_type) -> (Brevitas model, QONNX model, compiled project), filled once per module."""
    return {"root": tmp_path_factory.mktemp("hls_layers")}


def _build(cache: dict[Any, Any], name: str, io_type: str) -> tuple[Any, Any, Path]:
    from aeforge.hls.hls4ml_backend import build_hls_project
    from aeforge.quantize.export import export_qonnx

    key = (name, io_type)
    if key not in cache:
        model = spread_weights(build_sequential(SPECS[name]).eval(), seed=len(name))
        qonnx_model = cache.get((name, "qonnx"))
        if qonnx_model is None:
            qonnx_model = export_qonnx(model, model.input_shape, model.input_type)
            cache[(name, "qonnx")] = qonnx_model
        project = cache["root"] / f"{name}-{io_type}"
        build_hls_project(qonnx_model, project, io_type=io_type)
        cache[key] = (model, qonnx_model, project)
    return cache[key]


def _inputs(model, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low, high = model.input_type.min_value, model.input_type.max_value
    return model.input_type.quantize(rng.uniform(low, high, size=(N_INPUTS, *model.input_shape)))


@pytest.mark.parametrize(("name", "io_type"), CASES, ids=[f"{n}-{io}" for n, io in CASES])
def test_layer_kind_is_bit_exact(built: dict, name: str, io_type: str) -> None:
    from aeforge.quantize.export import qonnx_io_types

    model, qonnx_model, project = _build(built, name, io_type)
    assert qonnx_io_types(qonnx_model) == (model.input_type, model.output_type)
    inputs = _inputs(model, seed=11)
    reference = predict_brevitas(model, inputs, model.input_type)
    reference = nchw_to_nhwc(reference).reshape(N_INPUTS, -1)  # hardware outputs are channels-last
    assert np.count_nonzero(reference) > reference.size // 4  # real numbers, not zeros
    assert len(np.unique(reference)) > 8
    nhwc = nchw_to_nhwc(inputs)
    if io_type == "io_parallel":  # the QONNX graph does not depend on the io type
        qonnx_out = predict_qonnx(qonnx_model, nhwc, model.input_type).reshape(N_INPUTS, -1)
        np.testing.assert_array_equal(qonnx_out, reference, err_msg=f"{name}: QONNX execution")
    hls_out = predict_hls_csim(project, nhwc, model.input_type).reshape(N_INPUTS, -1)
    np.testing.assert_array_equal(hls_out, reference, err_msg=f"{name} {io_type}: hls4ml C-sim")


def test_every_layer_has_a_contract_precision(built: dict) -> None:
    """No fixed<16,6> default anywhere; the average pool's accumulator holds sum and quotient exactly."""
    from aeforge.hls.hls4ml_backend import load_hls_project

    _, _, project = _build(built, "residual", "io_parallel")
    precisions = load_hls_project(project).precisions
    assert not [(layer, t) for layer, types in precisions.items() for t in types.values() if "16,6" in t]
    avg = next(types for layer, types in precisions.items() if layer.startswith("AveragePool"))
    assert avg["accum_t"].startswith("fixed<12,6,")  # sum of 4 values of ap_fixed<8,4>: 2 more int, 2 more frac
    assert avg["result_t"].startswith("fixed<10,4,")
    merge = next(types for layer, types in precisions.items() if layer.startswith("Add"))
    assert merge["result_t"].startswith("fixed<8,4,")


def test_strided_pooling_is_refused_in_io_stream(built: dict, tmp_path: Path) -> None:
    """hls4ml's streaming pooling asserts strides == pool size at run time; refuse it when building."""
    from aeforge.errors import ArtifactError
    from aeforge.hls.hls4ml_backend import build_hls_project

    _build(built, "pool1d", "io_parallel")  # pool 3, stride 2
    with pytest.raises(ArtifactError, match=r"MaxPool.*io_stream pooling needs strides equal to the pool size"):
        build_hls_project(built[("pool1d", "qonnx")], tmp_path / "stream", io_type="io_stream")
    assert not (tmp_path / "stream").exists()
