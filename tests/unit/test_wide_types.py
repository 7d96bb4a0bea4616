"""Types wider than 32 bits (RTL lanes) and than float32's mantissa (QONNX execution, onnxruntime)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from aeforge.errors import DataError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.rtl.simulate import _to_lanes, check_lane_bits, lane_patterns, lane_values


def _fixed(bits: int, int_bits: int, signed: bool = True) -> FixedPoint:
    return FixedPoint(bits, int_bits, signed=signed, rounding="TRN", overflow="WRAP")


@pytest.mark.parametrize(("bits", "int_bits", "signed"), [(8, 3, True), (33, 14, True), (40, 21, True),
                                                          (53, 20, True), (64, 40, True), (48, 10, False),
                                                          (64, 11, False)])
def test_lane_patterns_round_trip(bits: int, int_bits: int, signed: bool) -> None:
    lane = _fixed(bits, int_bits, signed)
    rng = np.random.default_rng(bits)
    significant = min(bits, 53) - int(signed)  # float64 values hold at most 53 significant bits
    codes = rng.integers(0, 2**significant - 1, size=200, dtype=np.int64, endpoint=True)
    if signed:
        codes = codes * rng.choice([-1, 1], size=200) - (rng.random(200) < 0.1)
    values = np.ldexp(codes.astype(np.float64), -lane.frac_bits)
    patterns = lane_patterns(lane, values)
    assert patterns.dtype == np.int64
    np.testing.assert_array_equal(lane_values(lane, patterns), values)
    # what the Verilog testbench reads back: unsigned bus slices
    unsigned = patterns.view(np.uint64)
    np.testing.assert_array_equal(lane_values(lane, unsigned), values)
    if bits < 64:
        assert np.all(unsigned < np.uint64(1 << bits))


def test_lane_patterns_extremes_and_legacy_int32() -> None:
    lane = _fixed(64, 64)
    assert lane_patterns(lane, np.array([-(2.0**63), -1.0, 0.0])).tolist() == [-(2**63), -1, 0]
    small = _fixed(12, 4)
    patterns = lane_patterns(small, np.array([-8.0, -small.lsb, 0.0, 8.0 - small.lsb]))
    assert patterns.tolist() == [0x800, 0xFFF, 0, 0x7FF]
    # old projects' emulators return sign-extended int32 lanes
    np.testing.assert_array_equal(lane_values(small, patterns.astype(np.int32) - (patterns >= 0x800) * 0x1000),
                                  [-8.0, -small.lsb, 0.0, 8.0 - small.lsb])


def test_lane_refusals() -> None:
    with pytest.raises(DataError, match="off the grid or outside"):
        lane_patterns(_fixed(8, 4), np.array([8.0]))
    with pytest.raises(DataError, match="off the grid or outside"):
        lane_patterns(_fixed(8, 4), np.array([2.0**-6]))
    with pytest.raises(QuantizationError, match=r"model_out: a 72-bit lane is outside the 1\.\.64 bits"):
        check_lane_bits(72, "model_out")  # FixedPoint itself stops at 64 bits; da4ml lanes are checked too


def test_inputs_without_channel_axis_go_to_the_bus_channels_last() -> None:
    """A (C, L) sample (e.g. a Keras (12, 12) input before Flatten) is sent as (L, C), the tracer's order.

    The cause of mnist_dense_po2's 256/256 RTL mismatches: only 4-D batches used to be transposed.
    """
    lane = _fixed(8, 4)
    project = SimpleNamespace(input_shape=(3, 5), input_type=FixedPoint(8, 4), input=SimpleNamespace(lane_type=lane))
    x = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5) / 8
    expected = lane_patterns(lane, np.moveaxis(x, 1, -1).reshape(2, -1))
    np.testing.assert_array_equal(_to_lanes(project, x), expected)


# ------------------------------------------------------------------------------------ float64 QONNX
def _wide_graph(conv: bool):
    """Quant(input) -> [channels-last Conv] -> MatMul -> Add: sums of ~36 bits, no output quantizer."""
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    from aeforge.quantize.qonnx_layout import CHANNELS_LAST_DOMAIN

    rng = np.random.default_rng(0)
    weight = np.ldexp(rng.integers(-2**11, 2**11, size=(24 if conv else 12, 4)).astype(np.float64), -10)
    conv_weight = np.ldexp(rng.integers(-2**7, 2**7, size=(3, 2, 2, 1)).astype(np.float64), -6)  # OHWI
    bias = np.ldexp(rng.integers(-2**11, 2**11, size=(4,)).astype(np.float64), -20)
    inits = [numpy_helper.from_array(np.float32(v), name) for name, v in
             (("scale", 2.0**-16), ("zero", 0.0), ("bits", 24.0))]
    inits += [numpy_helper.from_array(weight.astype(np.float32), "w"), numpy_helper.from_array(bias.astype(np.float32),
                                                                                               "b")]
    nodes = [helper.make_node("Quant", ["x", "scale", "zero", "bits"], ["q"], domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND")]
    if conv:
        inits.append(numpy_helper.from_array(conv_weight.astype(np.float32), "cw"))
        inits.append(numpy_helper.from_array(np.array([2, 24], dtype=np.int64), "shape"))
        nodes += [helper.make_node("Conv", ["q", "cw"], ["c"], domain=CHANNELS_LAST_DOMAIN, kernel_shape=[2, 2]),
                  helper.make_node("Reshape", ["c", "shape"], ["flat"])]
        source, shape = "flat", [2, 3, 5, 1]
    else:
        source, shape = "q", [2, 12]
    nodes += [helper.make_node("MatMul", [source, "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1),
                                                    helper.make_opsetid(CHANNELS_LAST_DOMAIN, 13)])
    return ModelWrapper(model), weight, conv_weight, bias


@pytest.mark.parametrize("conv", [False, True], ids=["dense", "channels-last-conv"])
def test_float64_qonnx_execution_is_exact(conv: bool) -> None:
    pytest.importorskip("qonnx")
    from aeforge.verification import predict_qonnx

    model, weight, conv_weight, bias = _wide_graph(conv)
    in_type = FixedPoint(24, 8)
    rng = np.random.default_rng(1)
    x = in_type.quantize(rng.uniform(in_type.min_value, in_type.max_value, size=(6, *([3, 5, 1] if conv else [12]))))
    if conv:  # channels-last 2x2 valid conv with 3 filters -> (2, 4, 3), flattened channels-last to 24
        windows = np.stack([x[:, i:i + 2, j:j + 2, 0].reshape(6, -1) for i in range(2) for j in range(4)], axis=1)
        features = (windows @ conv_weight[:, :, :, 0].reshape(3, -1).T).reshape(6, -1)
    else:
        features = x
    expected = features @ weight + bias  # exact in float64 (under 53 bits)
    got = predict_qonnx(model, x, in_type, batch_size=2, float64=True)
    np.testing.assert_array_equal(got, expected)


def test_which_models_need_float64(tmp_path) -> None:
    pytest.importorskip("brevitas")
    from aeforge.edge.onnx_export import ort_inexact_reason
    from aeforge.quantize.models.sequential import build_sequential
    from aeforge.verification import float32_exact, widest_exact_type

    def model(in_type: str, quantized_conv: bool):
        layers = [{"kind": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3,
                   "weight": "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"}]
        if quantized_conv:
            layers.append({"kind": "relu", "name": "act", "type": "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"})
        layers += [{"kind": "flatten", "name": "flat"},
                   {"kind": "dense", "name": "fc", "units": 3, "weight": "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"},
                   {"kind": "quant", "name": "out", "type": "ap_fixed<12,6,AP_RND_CONV,AP_SAT>"}]
        return build_sequential({"input": {"shape": [6, 6, 1], "type": in_type}, "layers": layers})

    narrow = model("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", True)
    assert float32_exact(narrow) and ort_inexact_reason(narrow) is None
    wide = model("ap_fixed<20,8,AP_RND_CONV,AP_SAT>", False)
    _where, widest = widest_exact_type(wide)
    assert widest.bits > 24 and not float32_exact(wide)
    reason = ort_inexact_reason(wide)
    assert reason is not None and "layers.0 (conv2d 'conv')" in reason and "no float64 kernel" in reason
