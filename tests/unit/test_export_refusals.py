"""QONNX export refuses what the hardware path cannot compute exactly, naming the node and module.

Also: the zero-pad folding transformation, the exact accumulator widths the hls4ml backend sets,
and the Fidelity record of the verification contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("qonnx")
from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import Int8WeightPerTensorFloat
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

from aeforge.errors import ArtifactError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.hls4ml_backend import accumulator_type, covers
from aeforge.quantize.export import FoldZeroPadIntoConv, export_qonnx, quant_node_type
from aeforge.quantize.quantizers import brevitas_quant
from aeforge.verification import Fidelity, compare

IN = FixedPoint(8, 3)
W = FixedPoint(6, 2)
ACT = FixedPoint(8, 3, signed=False)


def _act(spec: FixedPoint = ACT, where: str = "act") -> QuantReLU:
    return QuantReLU(act_quant=brevitas_quant(spec, "act", where), return_quant_tensor=False)


def _weights(where: str) -> dict:
    return {"weight_quant": brevitas_quant(W, "weight", where), "bias_quant": brevitas_quant(W, "bias", where)}


class Dense(nn.Module):
    """input quant -> Linear -> QuantReLU, with the Linear's quantizers given."""

    def __init__(self, **linear_quant) -> None:
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
        self.dense = QuantLinear(4, 3, bias=True, **linear_quant)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(self.input_quant(x)))


def _export(model: nn.Module, shape: tuple[int, ...] = (4,), path: Path | None = None):
    return export_qonnx(model.eval(), shape, IN, path)


def test_a_clean_model_exports_with_its_types(tmp_path: Path) -> None:
    path = tmp_path / "ok.onnx"
    model = _export(Dense(**_weights("dense")), path=path)
    assert path.is_file()
    ops = [node.op_type for node in model.graph.node]
    assert "Gemm" not in ops and "MatMul" in ops
    assert model.get_metadata_prop("aeforge.input_type") == IN.ap_type()
    assert model.get_metadata_prop("aeforge.output_type") == ACT.ap_type()


def test_non_power_of_two_scale_is_refused(tmp_path: Path) -> None:
    model = Dense(weight_quant=Int8WeightPerTensorFloat, bias_quant=brevitas_quant(W, "bias", "dense"))
    with torch.no_grad():
        model.dense.weight.copy_(torch.linspace(-1, 1, 12).reshape(3, 4))  # scale 1/127
    path = tmp_path / "bad.onnx"
    message = r"ONNX node 'Quant_\d+' \(Quant, module 'dense\.weight_quant'\).*power of two"
    with pytest.raises(QuantizationError, match=message):
        _export(model, path=path)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_float_bias_is_refused() -> None:
    model = Dense(weight_quant=brevitas_quant(W, "weight", "dense"), bias_quant=None)
    with pytest.raises(QuantizationError, match=r"module 'dense'.*bias .* float \(unquantized\)"):
        _export(model)


def test_float_weight_is_refused() -> None:
    model = Dense(weight_quant=None, bias_quant=None)
    with pytest.raises(QuantizationError, match=r"module 'dense'.*weight .* float \(unquantized\)"):
        _export(model)


class Deconv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
        self.deconv = QuantConvTranspose2d(1, 2, 3, stride=2, padding=1, output_padding=1, **_weights("deconv"))
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(self.input_quant(x)))


def test_conv_transpose_is_refused() -> None:
    with pytest.raises(ArtifactError, match=r"ONNX node 'ConvTranspose_0' \(ConvTranspose, module 'deconv'\): op "
                       r"ConvTranspose is not supported"):
        _export(Deconv(), (1, 4, 4))


class ConvBatchNorm(nn.Module):
    def __init__(self, relu: nn.Module | None = None) -> None:
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
        self.conv = QuantConv2d(1, 2, 3, padding=1, **_weights("conv"))
        self.norm = nn.BatchNorm2d(2) if relu is None else nn.Identity()
        self.act = relu if relu is not None else _act()
        self.out_quant = QuantIdentity(act_quant=brevitas_quant(ACT, "act", "out"), return_quant_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_quant(self.act(self.norm(self.conv(self.input_quant(x)))))


def test_batch_norm_is_refused() -> None:
    with pytest.raises(ArtifactError, match=r"BatchNormalization, module 'norm'.*fold batch norm"):
        _export(ConvBatchNorm(), (1, 4, 4))


def test_unquantized_activation_into_a_layer_is_refused() -> None:
    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
            self.first = QuantLinear(4, 4, **_weights("first"))
            self.relu = nn.ReLU()
            self.second = QuantLinear(4, 2, **_weights("second"))
            self.act = _act()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.second(self.relu(self.first(self.input_quant(x)))))

    with pytest.raises(QuantizationError, match=r"Relu.*without a quantizer"):
        _export(Chain())


def test_unquantized_output_is_refused() -> None:
    class NoOutputQuant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
            self.dense = QuantLinear(4, 2, **_weights("dense"))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dense(self.input_quant(x))

    with pytest.raises(QuantizationError, match=r"graph output .* is not quantized"):
        _export(NoOutputQuant())


def test_input_type_must_match_the_input_quantizer() -> None:
    with pytest.raises(QuantizationError, match=r"input quantizer is ap_fixed<8,3.*input type is ap_fixed<11,4"):
        export_qonnx(Dense(**_weights("dense")).eval(), (4,), FixedPoint(11, 4))


def test_the_model_is_not_modified() -> None:
    model = Dense(**_weights("dense")).double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _export(model)
    assert next(model.parameters()).dtype == torch.float64
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------ Quant nodes by hand
def _quant_graph(scale: float, zero_point: float, rounding: str = "ROUND", narrow: int = 0, signed: int = 1):
    node = helper.make_node(
        "Quant", ["x", "s", "z", "b"], ["y"], name="Quant_7", domain="qonnx.custom_op.general",
        rounding_mode=rounding, signed=signed, narrow=narrow,
    )
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("z", TensorProto.FLOAT, [], [zero_point]),
            helper.make_tensor("b", TensorProto.FLOAT, [], [6.0]),
        ],
    )
    model = ModelWrapper(helper.make_model(graph))
    return model, model.graph.node[0]


def test_quant_node_types() -> None:
    assert quant_node_type(*_quant_graph(0.25, 0.0)) == FixedPoint(6, 4)
    assert quant_node_type(*_quant_graph(0.25, 0.0, "FLOOR")) == FixedPoint(6, 4, rounding="TRN")
    assert quant_node_type(*_quant_graph(0.25, 0.0, narrow=1)) == FixedPoint(6, 4, overflow="SAT_SYM")
    with pytest.raises(QuantizationError, match=r"'Quant_7'.*zero point \[3.0\] is not 0"):
        quant_node_type(*_quant_graph(0.25, 3.0))
    with pytest.raises(QuantizationError, match=r"'Quant_7'.*0\.3\d* is not a power of two"):
        quant_node_type(*_quant_graph(0.3, 0.0))
    with pytest.raises(QuantizationError, match=r"rounding mode ROUND_TO_ZERO has no hls4ml equivalent"):
        quant_node_type(*_quant_graph(0.25, 0.0, "ROUND_TO_ZERO"))
    with pytest.raises(QuantizationError, match=r"narrow range"):
        quant_node_type(*_quant_graph(0.25, 0.0, narrow=1, signed=0))


def test_zero_pad_folds_into_conv_pads() -> None:
    weight = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3) / 8
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["padded"], name="Pad_0", mode="constant"),
        helper.make_node("Conv", ["padded", "w"], ["y"], name="Conv_0", kernel_shape=[3, 3], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 0, 0, 0, 0, 1, 1]),
         helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], weight.ravel().tolist())],
    )
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    model = model.transform(InferShapes())
    x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    expected = execute_onnx(model, {"x": x})["y"]
    folded = model.transform(FoldZeroPadIntoConv())
    assert [node.op_type for node in folded.graph.node] == ["Conv"]
    pads = [list(a.ints) for a in folded.graph.node[0].attribute if a.name == "pads"]
    assert pads == [[0, 0, 1, 1]]  # TensorFlow SAME on stride 2: bottom/right only
    np.testing.assert_array_equal(execute_onnx(folded, {"x": x})["y"], expected)


# ------------------------------------------------------------------------------------ accumulators
def test_accumulator_widths_of_the_econt_encoder() -> None:
    conv = accumulator_type(FixedPoint(11, 4), FixedPoint(6, 2), FixedPoint(6, 2), 9)
    dense = accumulator_type(FixedPoint(12, 3, signed=False), FixedPoint(6, 2), FixedPoint(6, 2), 128)
    assert (conv.bits, conv.int_bits) == (20, 9)
    assert (dense.bits, dense.int_bits) == (26, 13)


@pytest.mark.parametrize(
    ("x", "w", "b", "fan_in"),
    [
        (FixedPoint(4, 2), FixedPoint(3, 1), FixedPoint(3, 1), 3),
        (FixedPoint(4, 1, signed=False), FixedPoint(3, 0), FixedPoint(5, 4), 5),
        (FixedPoint(3, 3), FixedPoint(4, 2, overflow="SAT_SYM"), None, 2),
    ],
)
def test_accumulator_holds_the_extreme_sums(x: FixedPoint, w: FixedPoint, b: FixedPoint | None, fan_in: int) -> None:
    acc = accumulator_type(x, w, b, fan_in)
    xs, ws = np.array([x.min_value, x.max_value]), np.array([w.min_value, w.max_value])
    products = np.outer(xs, ws).ravel()
    bias = np.array([0.0]) if b is None else np.array([b.min_value, b.max_value])
    extremes = np.array([fan_in * products.min() + bias.min(), fan_in * products.max() + bias.max()])
    assert np.all(acc.is_representable(extremes))
    narrower = FixedPoint(acc.bits - 1, acc.int_bits - 1, signed=True)
    assert not np.all(narrower.is_representable(extremes))  # and it is the narrowest
    assert covers(acc, x) or x.frac_bits > acc.frac_bits


# ------------------------------------------------------------------------------------ Fidelity
def test_compare_counts_exact_vectors_and_lsb_errors() -> None:
    out = FixedPoint(9, 1, signed=False)
    reference = np.zeros((4, 3))
    candidate = reference.copy()
    candidate[2, 1] = 2 * out.lsb
    candidate[3, 0] = out.lsb
    fidelity = compare(reference, candidate, out, "hls_csim")
    assert (fidelity.n, fidelity.exact, fidelity.max_lsb, fidelity.first_mismatch) == (4, 2, 2.0, 2)
    assert not fidelity.bit_exact and not fidelity.passed
    assert compare(reference, candidate, out, "ort", tolerance_lsb=2).passed
    same = compare(reference, reference, out, "qonnx")
    assert same.bit_exact and same.first_mismatch is None and same.as_dict()["bit_exact"] is True
    nan = candidate.copy()
    nan[0, 0] = np.nan
    assert compare(reference, nan, out, "x").as_dict()["max_lsb"] == "inf"
    with pytest.raises(ArtifactError, match="do not match"):
        compare(reference, reference[:3], out, "short")
    with pytest.raises(ArtifactError, match="no vectors"):
        compare(reference[:0], reference[:0], out, "empty")
    assert isinstance(fidelity, Fidelity) and "2/4 exact" in str(fidelity)


# ------------------------------------------------------------------------------------ new layer kinds
class TwoBranchAdd(nn.Module):
    """input quant -> two QuantIdentity of different types -> element-wise add (not the same type)."""

    def __init__(self, second: FixedPoint = W) -> None:
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=brevitas_quant(IN, "act", "input"), return_quant_tensor=False)
        self.left = QuantIdentity(act_quant=brevitas_quant(IN, "act", "left"), return_quant_tensor=False)
        self.right = QuantIdentity(act_quant=brevitas_quant(second, "act", "right"), return_quant_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        return self.left(x) + self.right(x)


def test_add_of_differently_typed_tensors_is_refused() -> None:
    message = r"ONNX node 'Add_0' \(Add.*cannot add .*ap_fixed<[86],[32].*ap_fixed<[68],[23].*re-quantize one of them"
    with pytest.raises(QuantizationError, match=message):
        _export(TwoBranchAdd())


def test_add_of_same_typed_tensors_is_exact() -> None:
    model = _export(TwoBranchAdd(second=IN))
    assert model.get_metadata_prop("aeforge.output_type") == FixedPoint(9, 4).ap_type()


class Pool(nn.Module):
    def __init__(self, pool: nn.Module, quantize_input: bool = True) -> None:
        super().__init__()
        act = brevitas_quant(IN, "act", "input")
        self.input_quant = QuantIdentity(act_quant=act, return_quant_tensor=False) if quantize_input else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.input_quant(x) if self.input_quant is not None else x)


def test_non_power_of_two_average_is_refused() -> None:
    with pytest.raises(QuantizationError, match=r"ONNX node 'AveragePool_0' \(AveragePool, module 'pool'\).*average "
                       r"over 9 values is not exact.*power-of-two window"):
        _export(Pool(nn.AvgPool2d(3)), (1, 6, 6))


def test_power_of_two_average_gets_more_fraction_bits() -> None:
    model = _export(Pool(nn.AvgPool2d(2)), (2, 4, 4))
    assert model.get_metadata_prop("aeforge.output_type") == FixedPoint(10, 3).ap_type()
    assert [n.domain for n in model.graph.node if n.op_type == "AveragePool"] == ["qonnx.custom_op.channels_last"]
    assert model.get_tensor_shape(model.graph.output[0].name) == [1, 2, 2, 2]  # NHWC


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (nn.MaxPool2d(2, padding=1), r"MaxPool.*padded pooling is not supported"),
        (nn.AvgPool2d(2, ceil_mode=True), r"AveragePool.*ceil_mode"),
        (nn.Upsample(scale_factor=2.0, mode="bilinear"), r"Resize.*linear resizing is not exact"),
    ],
)
def test_inexact_pooling_and_resizing_are_refused(pool: nn.Module, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        _export(Pool(pool), (1, 5, 5))


def test_unquantized_input_into_a_pooling_is_refused() -> None:
    with pytest.raises(QuantizationError, match=r"MaxPool.*graph input reaches it unquantized"):
        export_qonnx(Pool(nn.MaxPool2d(2), quantize_input=False).eval(), (1, 4, 4), IN)


def test_a_product_that_is_not_a_square_is_refused() -> None:
    class Product(TwoBranchAdd):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.input_quant(x)
            return self.left(x) * self.right(x)

    with pytest.raises(ArtifactError, match=r"'Mul_0' \(Mul.*only multiplication .* square of a difference"):
        _export(Product(second=IN))


def test_sq_error_becomes_a_sum_with_ones() -> None:
    from aeforge.quantize.models.sequential import build_sequential

    spec = {"input": {"shape": [3, 4, 2], "type": IN.ap_type()}, "layers": [
        {"kind": "quant", "name": "q", "type": IN.ap_type()}, {"kind": "sq_error", "source": "input"}]}
    model = build_sequential(spec).eval()
    exported = _export(model, model.input_shape)
    ops = [node.op_type for node in exported.graph.node]
    assert "ReduceSum" not in ops and ops.count("MatMul") == 1 and "Sub" in ops and "Mul" in ops
    assert exported.get_metadata_prop("aeforge.output_type") == model.output_type.ap_type()
