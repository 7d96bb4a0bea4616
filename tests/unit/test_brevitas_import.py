"""aeforge.import_module: a user's Brevitas module -> an imported run, bit-exact or refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFixedPoint,
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFixedPoint,
    Int16Bias,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint  # noqa: E402
from torch import nn  # noqa: E402

import aeforge  # noqa: E402
from aeforge.errors import AeforgeError  # noqa: E402
from aeforge.quantize.models.boundary import hardware_model  # noqa: E402
from aeforge.verification import predict_brevitas  # noqa: E402

INPUT = "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"


def _act(bits: int = 10, signed: bool = True, **kw) -> QuantIdentity:
    quant = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True, **kw)


def _relu(bits: int = 6) -> QuantReLU:
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True)


def _calibrate(model: nn.Module, shape: tuple[int, ...], steps: int = 301, scale: float = 2.0) -> nn.Module:
    """Forward passes in train mode until every statistics-based quantizer has its scale (300 steps)."""
    torch.manual_seed(0)
    for parameter in model.parameters():  # spread the weights so that every layer matters
        if parameter.dim() > 1:
            torch.nn.init.uniform_(parameter, -0.6, 0.6)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(8, *shape) * scale)
    return model.eval()


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        _act(),
        QuantLinear(57, 16, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=6,
                    bias_quant=Int16Bias, return_quant_tensor=False),
        nn.BatchNorm1d(16),
        _relu(),
        nn.Dropout(0.2),
        QuantLinear(16, 5, bias=True, weight_quant=Int8WeightPerChannelFixedPoint, bias_quant=Int16Bias,
                    return_quant_tensor=False),
        QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=12),
    )


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    return _calibrate(_mlp(), (57,))


def test_mlp_with_batchnorm_and_per_channel_weights_imports_bit_exact(mlp: nn.Module, tmp_path: Path) -> None:
    run = aeforge.import_module(mlp, input_shape=(57,), input_type=INPUT, out=tmp_path / "run")
    assert run == tmp_path / "run"
    card = json.loads((run / "card.json").read_text())
    assert card["family"] == "imported" and card["kind"] == "import"
    assert card["source"]["folded_batchnorm"] == ["1 <- 2"]
    assert card["source"]["ignored"] == ["4 (Dropout)"]
    model = hardware_model(run)
    assert model.input_shape == (57,) and model.input_type.ap_type() == INPUT
    inputs = model.verification_inputs(3000, seed=5)
    ours = predict_brevitas(model.module, inputs, model.input_type)
    # the reference is the module with its BatchNorm folded (Brevitas' MergeBatchNorm semantics)
    from aeforge.quantize.brevitas_import import _run, convert_module

    converted = convert_module(mlp, (57,), model.input_type, inputs)
    np.testing.assert_array_equal(ours.reshape(len(inputs), -1), _run(converted.reference, inputs))
    assert ours.shape == (3000, 5) and np.unique(ours).size > 50  # a real, non-constant model


def test_conv_model_with_pooling_residual_and_flatten_order(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = _act(8)
            self.conv1 = QuantConv2d(2, 4, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint,
                                     weight_bit_width=5, bias=False, return_quant_tensor=False)
            self.act1 = QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=6, return_quant_tensor=False)
            self.conv2 = QuantConv2d(4, 4, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint,
                                     weight_bit_width=5, bias=False, return_quant_tensor=False)
            self.act2 = QuantReLU(act_quant=self.act1.act_quant, return_quant_tensor=False)  # one type for the add
            self.pool = nn.MaxPool2d(2)
            self.avg = nn.AvgPool2d(2)
            self.flat = nn.Flatten()
            self.q = QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=10, return_quant_tensor=True)
            self.fc = QuantLinear(16, 3, bias=False, weight_quant=Int8WeightPerTensorFixedPoint,
                                  return_quant_tensor=False)

        def forward(self, x):
            x = self.act1(self.conv1(self.inp(x)))
            y = self.act2(self.conv2(x))
            z = self.avg(self.pool(x + y))
            return self.fc(self.q(self.flat(z)))

    model = _calibrate(Net(), (2, 8, 8))
    run = aeforge.import_module(model, input_shape=(2, 8, 8), input_type="ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
                                out=tmp_path / "conv")
    kinds = [layer["kind"] for layer in json.loads((run / "model.json").read_text())["layers"]]
    # the input QuantIdentity stays a layer unless its calibrated type is the input type itself
    assert kinds[kinds.index("conv2d"):] == ["conv2d", "relu", "conv2d", "relu", "add", "maxpool", "avgpool",
                                              "flatten", "quant", "dense"]
    hw = hardware_model(run)
    inputs = hw.verification_inputs(500)
    with torch.no_grad():
        reference = model.double()(torch.as_tensor(inputs)).numpy()  # channels-first flatten inside the module
    np.testing.assert_array_equal(predict_brevitas(hw.module, inputs, hw.input_type), reference)


def test_conv1d_model_and_sample_becomes_the_verification_set(tmp_path: Path) -> None:
    model = _calibrate(nn.Sequential(
        _act(8),
        QuantConv1d(3, 4, 3, stride=2, padding=1, weight_quant=Int8WeightPerTensorFixedPoint, bias=True,
                    bias_quant=Int16Bias, return_quant_tensor=False),
        _relu(5),
        nn.Upsample(scale_factor=2, mode="nearest"),
    ), (3, 16))
    sample = np.random.default_rng(1).normal(size=(64, 3, 16))
    run = aeforge.import_module(model, (3, 16), "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", tmp_path / "c1", sample=sample)
    hw = hardware_model(run)
    drawn = hw.verification_inputs(128)
    grid = hw.input_type.quantize(sample)
    assert all(any(np.array_equal(row, s) for s in grid) for row in drawn[:10])


# ------------------------------------------------------------------------------------ refusals
def _refused(model: nn.Module, shape: tuple[int, ...], tmp_path: Path, match: str) -> None:
    with pytest.raises(AeforgeError, match=match):
        aeforge.import_module(model, shape, INPUT, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_non_power_of_two_scale_is_refused_naming_the_module(tmp_path: Path) -> None:
    model = _calibrate(nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True),
        QuantLinear(4, 2, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
    ), (4,))
    _refused(model, (4,), tmp_path, r"^0: scale .* is not a power of two.*FixedPoint")


def test_float_bias_is_refused(tmp_path: Path) -> None:
    model = _calibrate(nn.Sequential(_act(), QuantLinear(4, 2, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                                          bias_quant=None)), (4,))
    _refused(model, (4,), tmp_path, r"^1: the bias is float.*bias_quant")


def test_uncalibrated_activation_quantizer_is_refused(tmp_path: Path) -> None:
    model = _calibrate(nn.Sequential(_act(), QuantLinear(4, 2, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
                                     _relu()), (4,), steps=20)
    _refused(model, (4,), tmp_path, r"still collecting statistics \(\d+ of 300")


def test_unsupported_layer_and_branches_are_refused(tmp_path: Path) -> None:
    model = nn.Sequential(_act(), QuantLinear(4, 4, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
                          nn.Sigmoid())
    _refused(_calibrate(model, (4,)), (4,), tmp_path, r"^2: Sigmoid is not supported")

    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = _act()
            self.a = QuantLinear(4, 4, bias=False, weight_quant=Int8WeightPerTensorFixedPoint)
            self.b = QuantLinear(4, 4, bias=False, weight_quant=Int8WeightPerTensorFixedPoint)

        def forward(self, x):
            x = self.inp(x)
            return self.a(x) + self.b(x)

    _refused(_calibrate(TwoBranches(), (4,)), (4,), tmp_path, r"^b \(QuantLinear\): reads .*no parallel branches")


def test_bad_arguments(tmp_path: Path, mlp: nn.Module) -> None:
    with pytest.raises(AeforgeError, match="input_shape"):
        aeforge.import_module(mlp, (1, 2, 3, 4), INPUT, tmp_path / "x")
    with pytest.raises(AeforgeError, match="ap_fixed"):
        aeforge.import_module(mlp, (57,), "fixed<<", tmp_path / "x")
    with pytest.raises(AeforgeError, match=r"torch\.nn\.Module"):
        aeforge.import_module(object(), (57,), INPUT, tmp_path / "x")
