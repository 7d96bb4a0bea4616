"""The generic sequential Brevitas model against an integer-arithmetic reference of the hardware."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from aeforge.errors import ArtifactError, ConfigError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.sequential import (
    Conv2DSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    QuantSpec,
    ReLUSpec,
    SequentialSpec,
    accumulator_type,
    build_sequential,
    load_sequential,
    save_sequential,
)

W = FixedPoint(6, 2)  # ap_fixed<6,2>
B = FixedPoint(8, 3)
T8 = "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"
T6 = "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"


def mlp_spec() -> SequentialSpec:
    return SequentialSpec(
        input=InputSpec(shape=(16,), type=FixedPoint(10, 4)),
        layers=(
            DenseSpec(name="hidden", units=32, weight=W, bias=B),
            ReLUSpec(name="hidden_relu", type=FixedPoint(9, 4, signed=False)),
            DenseSpec(name="out", units=8, weight=W, bias=FixedPoint(7, 1)),
        ),
    )


def conv_spec() -> SequentialSpec:
    return SequentialSpec(
        input=InputSpec(shape=(8, 8, 2), type=FixedPoint(8, 3)),
        layers=(
            Conv2DSpec(name="conv", filters=4, kernel_size=3, strides=1, padding="same", weight=W, bias=B),
            ReLUSpec(name="conv_relu", type=FixedPoint(10, 4, signed=False)),
            FlattenSpec(name="flatten"),
            DenseSpec(name="dense", units=10, weight=W, bias=B),
        ),
    )


def _spread_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights over the whole quantizer range, so that saturation and rounding are exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 1.5)


# ------------------------------------------------------------------------------ integer reference
def _int_dense(codes: np.ndarray, in_type: FixedPoint, layer, module) -> tuple[np.ndarray, FixedPoint]:
    """Integer dense: returns accumulator codes and their LSB type (frac bits)."""
    w = layer.weight.to_codes(module.weight.detach().double().numpy())  # (out, in)
    return _add_bias(codes @ w.T, in_type.frac_bits + layer.weight.frac_bits, layer, module)


def _add_bias(acc: np.ndarray, frac: int, layer, module) -> tuple[np.ndarray, FixedPoint]:
    """Add the bias codes on the common (finer) LSB; returns codes and a type with that LSB."""
    if layer.bias is not None:
        b = layer.bias.to_codes(module.bias.detach().double().numpy())
        shift = frac - layer.bias.frac_bits
        if shift >= 0:
            acc = acc + (b << shift)
        else:  # bias finer than the products: move the products to the bias LSB
            acc, frac = (acc << -shift) + b, layer.bias.frac_bits
    return acc, FixedPoint(53, 53 - frac)


def _int_conv(codes: np.ndarray, in_type: FixedPoint, layer, module) -> tuple[np.ndarray, FixedPoint]:
    """Integer NHWC conv with TensorFlow SAME padding (extra pixel bottom/right)."""
    w = layer.weight.to_codes(module.weight.detach().double().numpy())  # (F, C, kh, kw)
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    n, height, width, _ = codes.shape
    if layer.padding == "same":
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h, pad_w = max((out_h - 1) * sh + kh - height, 0), max((out_w - 1) * sw + kw - width, 0)
        codes = np.pad(codes, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    hwio = w.transpose(2, 3, 1, 0)
    frac = in_type.frac_bits + layer.weight.frac_bits
    acc = np.zeros((n, out_h, out_w, layer.filters), dtype=np.int64)
    for i in range(out_h):
        for j in range(out_w):
            window = codes[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            acc[:, i, j, :] = np.tensordot(window, hwio, axes=([1, 2, 3], [0, 1, 2]))
    return _add_bias(acc, frac, layer, module)


def integer_reference(model, x_channels_last: np.ndarray) -> np.ndarray:
    """What fixed-point hardware computes: integer codes through every layer; NHWC / (N, F) input."""
    spec = model.spec
    values = spec.input.type.quantize(x_channels_last)
    codes, code_type = spec.input.type.to_codes(values), spec.input.type
    for index, layer in enumerate(spec.layers):
        module = model.layers[index]
        if isinstance(layer, DenseSpec):
            codes, code_type = _int_dense(codes, code_type, layer, module)
        elif isinstance(layer, Conv2DSpec):
            codes, code_type = _int_conv(codes, code_type, layer, module)
        elif isinstance(layer, FlattenSpec):
            codes = codes.reshape(len(codes), -1)
        else:  # relu / quant: requantize the exact value
            value = code_type.from_codes(codes)
            if isinstance(layer, ReLUSpec):
                value = np.maximum(value, 0.0)
            codes, code_type = layer.type.to_codes(value), layer.type
    result = code_type.from_codes(codes)
    return result.transpose(0, 3, 1, 2) if result.ndim == 4 else result


def test_mlp_matches_integer_reference() -> None:
    model = build_sequential(mlp_spec()).double().eval()
    _spread_weights(model)
    x = np.random.default_rng(1).normal(0, 3, (400, 16))
    expected = integer_reference(model, x)
    with torch.no_grad():
        got = model(torch.as_tensor(x)).numpy()
    assert got.shape == (400, 8)
    assert np.count_nonzero(expected) > 1000
    np.testing.assert_array_equal(got, expected)
    assert np.all(model.spec.output_type.is_representable(got))


def test_conv_model_matches_integer_reference() -> None:
    model = build_sequential(conv_spec()).double().eval()
    _spread_weights(model, seed=3)
    x_nhwc = np.random.default_rng(2).normal(0, 2, (300, 8, 8, 2))
    expected = integer_reference(model, x_nhwc)
    with torch.no_grad():
        got = model(torch.as_tensor(x_nhwc.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == (300, 10)
    assert np.count_nonzero(expected) > 1000
    np.testing.assert_array_equal(got, expected)
    hidden = model.layers[1](model.layers[0](model.input_quant(torch.as_tensor(x_nhwc.transpose(0, 3, 1, 2)))))
    assert (hidden == FixedPoint(10, 4, signed=False).max_value).any()  # the ReLU saturates somewhere


def test_strided_valid_conv_and_requantization_match_reference() -> None:
    spec = SequentialSpec(
        input=InputSpec(shape=(7, 9, 3), type=FixedPoint(8, 2)),
        layers=(
            Conv2DSpec(filters=5, kernel_size=(3, 2), strides=(2, 3), padding="same", weight=W, bias=B),
            QuantSpec(type=FixedPoint(7, 3)),
            Conv2DSpec(filters=2, kernel_size=2, padding="valid", weight=FixedPoint(4, 1), bias=FixedPoint(10, 2)),
        ),
    )
    model = build_sequential(spec).double().eval()
    _spread_weights(model, seed=5)
    x = np.random.default_rng(4).normal(0, 2, (64, 7, 9, 3))
    with torch.no_grad():
        got = model(torch.as_tensor(x.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == (64, *model.output_shape) == (64, 2, 3, 2)
    np.testing.assert_array_equal(got, integer_reference(model, x))


def test_float32_model_agrees_with_float64() -> None:
    model = build_sequential(conv_spec()).eval()
    _spread_weights(model)
    x = torch.randn(128, 2, 8, 8) * 2
    with torch.no_grad():
        single = model(x).double()
        double = model.double()(x.double())
    assert torch.equal(single, double)


# ------------------------------------------------------------------------------ shapes and padding
def test_output_shapes_and_types() -> None:
    spec = conv_spec()
    assert spec.output_shapes() == [(8, 8, 4), (8, 8, 4), (256,), (10,)]
    types = spec.output_types()
    assert types[1] == FixedPoint(10, 4, signed=False)
    # conv: 18 taps of |x| <= 4 (ap_fixed<8,3>) times |w| <= 2 plus |b| <= 4, on a 2**-9 grid
    assert types[0] == accumulator_type(FixedPoint(8, 3), W, B, 18)
    assert types[0].frac_bits == 9 and types[0].max_value >= 18 * 4 * 2 + 4
    model = build_sequential(spec)
    assert model.input_shape == (2, 8, 8)
    assert model.output_shape == (10,)
    assert model.input_type == FixedPoint(8, 3)
    assert model.output_type == types[-1]


def test_accumulator_type_holds_the_extremes() -> None:
    in_type, weight, bias = FixedPoint(8, 3), FixedPoint(6, 2), FixedPoint(4, 4)
    acc = accumulator_type(in_type, weight, bias, fan_in=10)
    worst = 10 * in_type.min_value * weight.min_value + bias.max_value
    assert acc.is_representable(np.array([worst, -worst])).all()
    assert not FixedPoint(acc.bits - 1, acc.int_bits - 1).is_representable(np.array([worst])).all()


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "out"), [(8, 3, 2, 4), (8, 3, 1, 8), (7, 3, 2, 4), (8, 2, 2, 4), (5, 5, 1, 5)]
)
def test_same_padding_shapes(size: int, kernel: int, stride: int, out: int) -> None:
    spec = SequentialSpec(
        input=InputSpec(shape=(size, size, 1), type=FixedPoint(8, 3)),
        layers=(Conv2DSpec(filters=1, kernel_size=kernel, strides=stride, padding="same", weight=W),),
    )
    model = build_sequential(spec, quantized=False).double()
    assert spec.output_shape == (out, out, 1)
    assert model(torch.zeros(2, 1, size, size, dtype=torch.float64)).shape == (2, 1, out, out)


def test_same_padding_is_bottom_right_on_stride_two() -> None:
    """8x8, k=3, s=2: TensorFlow pads one row/column at the bottom/right only."""
    spec = SequentialSpec(
        input=InputSpec(shape=(8, 8, 1), type=FixedPoint(8, 3)),
        layers=(Conv2DSpec(filters=1, kernel_size=3, strides=2, padding="same", weight=W),),
    )
    model = build_sequential(spec, quantized=False).double()
    assert model.layers[0].pad.padding == (0, 1, 0, 1)
    with torch.no_grad():
        model.layers[0].weight.zero_()
        model.layers[0].weight[0, 0, 0, 0] = 1.0  # top-left tap
        image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
        image[0, 0, 0, 0] = 1.0
        out = model(image)
    assert out[0, 0, 0, 0] == 1.0 and out.sum() == 1.0  # with top/left padding the tap would miss it


def test_valid_padding_does_not_pad() -> None:
    spec = SequentialSpec(
        input=InputSpec(shape=(8, 8, 1), type=FixedPoint(8, 3)),
        layers=(Conv2DSpec(filters=1, kernel_size=3, strides=2, padding="valid", weight=W),),
    )
    assert spec.output_shape == (3, 3, 1)
    model = build_sequential(spec, quantized=False)
    assert model.layers[0].pad.padding == (0, 0, 0, 0)


def test_flatten_is_channels_last() -> None:
    spec = SequentialSpec(
        input=InputSpec(shape=(4, 4, 2), type=FixedPoint(8, 3)),
        layers=(FlattenSpec(), DenseSpec(units=1, weight=W)),
    )
    model = build_sequential(spec, quantized=False).double()
    with torch.no_grad():
        model.layers[1].weight.zero_()
        model.layers[1].weight[0, 1] = 1.0  # flat index 1 = pixel (0, 0), channel 1 in (H, W, C) order
        x = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
        x[0, 1, 0, 0] = 3.0
        assert model(x).item() == 3.0
        x = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
        x[0, 0, 0, 1] = 3.0  # channels-first index 1 would be this pixel
        assert model(x).item() == 0.0


def test_relu_and_quant_layer_semantics() -> None:
    spec = SequentialSpec(
        input=InputSpec(shape=(5,), type=FixedPoint(8, 4)),
        layers=(QuantSpec(type=FixedPoint(4, 2, signed=False)), ReLUSpec(type=FixedPoint(5, 2))),
    )
    model = build_sequential(spec).double()
    x = torch.tensor([[-3.3, -0.25, 0.3, 1.125, 9.0]], dtype=torch.float64)
    with torch.no_grad():
        requantized = model.layers[0](model.input_quant(x))
        out = model(x)
    assert requantized.tolist() == [[0.0, 0.0, 0.25, 1.0, 3.75]]  # unsigned clamps, half to even
    assert out.tolist() == [[0.0, 0.0, 0.25, 1.0, 1.875]]  # signed ReLU type saturates at 1.875


# ------------------------------------------------------------------------------ parameters and dicts
def test_parameter_names_and_fixed_point_types() -> None:
    model = build_sequential(conv_spec())
    assert list(model.state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"]
    assert model.layers[0].weight.shape == (4, 2, 3, 3)
    assert model.layers[3].weight.shape == (10, 256)
    assert model.fixed_point_types() == {
        "input_quant": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
        "layers.0.weight": W.ap_type(),
        "layers.0.bias": B.ap_type(),
        "layers.1": "ap_ufixed<10,4,AP_RND_CONV,AP_SAT>",
        "layers.3.weight": W.ap_type(),
        "layers.3.bias": B.ap_type(),
    }
    assert set(model.accumulator_types()) == {"layers.0", "layers.3"}
    assert model.layer_names() == {"layers.0": "conv", "layers.1": "conv_relu", "layers.2": "flatten",
                                   "layers.3": "dense"}
    assert float(model.layers[0].quant_weight().scale) == W.lsb


def test_float_twin_shares_parameter_names() -> None:
    float_model = build_sequential(conv_spec(), quantized=False)
    quant_model = build_sequential(conv_spec())
    assert float_model.state_dict().keys() == quant_model.state_dict().keys()
    quant_model.load_state_dict(float_model.state_dict())
    assert float_model.input_type is None and float_model.fixed_point_types() == {}


@pytest.mark.parametrize("make", [mlp_spec, conv_spec])
def test_dict_round_trip_is_json_and_yaml_friendly(make) -> None:
    spec = make()
    data = spec.to_dict()
    assert SequentialSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert SequentialSpec.from_dict(yaml.safe_load(yaml.safe_dump(data))) == spec
    assert data["layers"][0]["weight"] == W.ap_type()
    assert build_sequential(data).spec == spec


def test_from_dict_accepts_short_forms() -> None:
    spec = SequentialSpec.from_dict({
        "input": {"shape": [6], "type": {"bits": 8, "int_bits": 3}},
        "layers": [{"kind": "dense", "units": 3, "weight": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"},
                   {"kind": "relu", "type": "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"}],
    })
    assert [layer.name for layer in spec.layers] == ["dense_0", "relu_1"]
    assert spec.layers[0].bias is None


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"kind": "dense", "name": "fc", "units": 4, "weight": T6, "unit": 3}, "'fc'.*unknown key 'unit'"),
        ({"kind": "dense", "name": "fc", "weight": T6}, "'fc'.*missing key.*'units'"),
        ({"kind": "dense", "name": "fc", "units": 0, "weight": T6}, "'fc'.*units"),
        ({"kind": "dense", "name": "fc", "units": 2, "weight": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
         "'fc'.*must be signed"),
        ({"kind": "dense", "name": "fc", "units": 2, "weight": "fixed<6"}, "'fc'.*weight"),
        ({"kind": "relu", "name": "act", "type": "ap_ufixed<6,2,AP_RND,AP_SAT>"}, "'act'.*AP_RND"),
        ({"kind": "pool", "name": "p"}, "layers\\[1\\].*unknown layer kind 'pool'"),
        ({"kind": "conv2d", "name": "c", "filters": 2, "kernel_size": 3, "weight": T6,
          "padding": "full"}, "'c'.*padding"),
        ({"kind": "conv2d", "name": "c", "filters": 2, "kernel_size": [3, 3, 3], "weight": T6},
         "'c'.*kernel_size"),
    ],
)
def test_from_dict_errors_name_the_layer(layer: dict, message: str) -> None:
    data = {"input": {"shape": [8], "type": T8}, "layers": [{"kind": "flatten"}, layer]}
    with pytest.raises(ConfigError, match=message):
        SequentialSpec.from_dict(data)


def test_shape_errors_name_the_layer() -> None:
    with pytest.raises(ConfigError, match=r"'fc'.*flatten"):
        SequentialSpec(input=InputSpec(shape=(4, 4, 1), type=W), layers=(DenseSpec(name="fc", units=2, weight=W),))
    with pytest.raises(ConfigError, match=r"'c'.*needs an \(H, W, C\) input"):
        SequentialSpec(input=InputSpec(shape=(16,), type=W),
                       layers=(Conv2DSpec(name="c", filters=2, kernel_size=3, weight=W),))
    with pytest.raises(ConfigError, match=r"'c'.*does not fit"):
        SequentialSpec(input=InputSpec(shape=(2, 2, 1), type=W),
                       layers=(Conv2DSpec(name="c", filters=2, kernel_size=3, weight=W),))
    with pytest.raises(ConfigError, match=r"duplicate layer name 'x'"):
        SequentialSpec(input=InputSpec(shape=(4,), type=W), layers=(FlattenSpec(name="x"), FlattenSpec(name="x")))
    with pytest.raises(ConfigError, match=r"input.*shape"):
        SequentialSpec.from_dict({"input": {"shape": [4, 4, 1, 1], "type": T8}, "layers": []})
    with pytest.raises(ConfigError, match=r"unknown key 'layer'"):
        SequentialSpec.from_dict({"input": {"shape": [4], "type": T8}, "layer": []})


# ------------------------------------------------------------------------------ files
def test_save_and_load_round_trip(tmp_path) -> None:
    model = build_sequential(conv_spec())
    _spread_weights(model)
    save_sequential(model, tmp_path / "model.json", tmp_path / "model.pt")
    loaded = load_sequential(tmp_path / "model.json", tmp_path / "model.pt")
    assert loaded.spec == model.spec
    x = torch.randn(8, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_refuses_mismatched_weights(tmp_path) -> None:
    save_sequential(build_sequential(conv_spec()), tmp_path / "conv.json", tmp_path / "conv.pt")
    save_sequential(build_sequential(mlp_spec()), tmp_path / "mlp.json", tmp_path / "mlp.pt")
    wider = conv_spec().to_dict()
    wider["layers"][0]["filters"] = 5
    save_sequential(build_sequential(wider), tmp_path / "wide.json", tmp_path / "wide.pt")
    with pytest.raises(ArtifactError, match=r"mlp.pt.*missing.*layers.3.weight.*unexpected.*layers.2.weight"):
        load_sequential(tmp_path / "conv.json", tmp_path / "mlp.pt")
    with pytest.raises(ArtifactError, match=r"wide.pt: layers.0.weight has shape"):
        load_sequential(tmp_path / "conv.json", tmp_path / "wide.pt")
    with pytest.raises(ArtifactError, match=r"missing.pt: file not found"):
        load_sequential(tmp_path / "conv.json", tmp_path / "missing.pt")
    bad = {"input": {"shape": [4], "type": T8}, "layers": [{"kind": "x"}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"bad.json.layers\[0\].*unknown layer kind"):
        load_sequential(tmp_path / "bad.json", tmp_path / "mlp.pt")


def test_type_strings_without_modes_mean_vitis_defaults() -> None:
    """``ap_fixed<8,3>`` is TRN/WRAP to Vitis; WRAP has no Brevitas equivalent and is refused."""
    with pytest.raises(ConfigError, match=r"input: type: overflow AP_WRAP"):
        SequentialSpec.from_dict({"input": {"shape": [4], "type": "ap_fixed<8,3>"}})
