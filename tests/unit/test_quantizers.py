"""Brevitas quantizers built from FixedPoint types agree bit for bit with ``FixedPoint.quantize``.

For random types and float32 inputs (exact half-LSB ties, values one float32 ulp off a tie, values
far out of range, signed zeros, negatives for unsigned types) the activation, weight and bias
quantizers give identical values, their scale is exactly the type's LSB, their zero point is 0 and
their bit width is the type's.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")

from brevitas.nn import QuantIdentity, QuantLinear  # noqa: E402

from aeforge.errors import QuantizationError  # noqa: E402
from aeforge.fixedpoint import FixedPoint  # noqa: E402
from aeforge.quantize.quantizers import (  # noqa: E402
    brevitas_quant,
    brevitas_threshold,
    check_brevitas_compatible,
)

BREVITAS_ROUNDING = ("RND_CONV", "TRN", "TRN_ZERO")
BREVITAS_OVERFLOW = ("SAT", "SAT_SYM")
WIDTH = 32  # values per example; the weight row and bias vector have this many entries
FLOAT32_MAX = float(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------------------
# Layers, built once per type (building a Brevitas layer costs milliseconds)
# ---------------------------------------------------------------------------------------------
@functools.cache
def act_layer(spec: FixedPoint) -> QuantIdentity:
    return QuantIdentity(act_quant=brevitas_quant(spec, "act"), return_quant_tensor=True)


@functools.cache
def weight_layer(spec: FixedPoint) -> QuantLinear:
    return QuantLinear(WIDTH, 1, bias=False, weight_quant=brevitas_quant(spec, "weight"))


@functools.cache
def bias_layer(spec: FixedPoint) -> QuantLinear:
    return QuantLinear(1, WIDTH, bias=True, weight_quant=None, bias_quant=brevitas_quant(spec, "bias"))


def check_quant_tensor(quant_tensor, spec: FixedPoint, x: np.ndarray) -> None:
    """Values equal the numpy reference exactly; scale, zero point, bit width and sign match."""
    got = quant_tensor.value.detach().double().numpy().reshape(-1)[: len(x)]
    expected = spec.quantize(x.astype(np.float64))
    mismatch = np.flatnonzero(got != expected)
    assert mismatch.size == 0, (
        f"{spec.ap_type()}: inputs {x[mismatch].tolist()} gave {got[mismatch].tolist()}, "
        f"expected {expected[mismatch].tolist()}"
    )
    assert quant_tensor.scale.numel() == 1
    assert float(quant_tensor.scale) == spec.lsb
    assert float(quant_tensor.zero_point) == 0.0
    assert float(quant_tensor.bit_width) == spec.bits
    assert bool(quant_tensor.signed) == spec.signed
    int_values = quant_tensor.int().detach().double().numpy().reshape(-1)[: len(x)]
    np.testing.assert_array_equal(int_values, spec.to_codes(x.astype(np.float64)))


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------
@st.composite
def brevitas_specs(draw, signed=None) -> FixedPoint:
    signed = draw(st.booleans()) if signed is None else signed
    return FixedPoint(
        draw(st.integers(2, 16)),
        draw(st.integers(-4, 12)),
        signed=signed,
        rounding=draw(st.sampled_from(BREVITAS_ROUNDING)),
        overflow=draw(st.sampled_from(BREVITAS_OVERFLOW)),
    )


@st.composite
def float32_value(draw, spec: FixedPoint) -> float:
    """A float32 value (returned as a Python float holding it exactly)."""
    frac = spec.frac_bits
    code = draw(st.integers(spec.min_code - 4, spec.max_code + 4))
    kinds = ["grid", "tie", "tie", "tie", "near_tie", "random", "in_range", "huge", "zero"]
    kind = draw(st.sampled_from(kinds))
    if kind == "grid":
        return math.ldexp(code, -frac)
    tie = math.ldexp(2 * code + 1, -frac - 1)  # exact in float32: at most 19 significant bits
    if kind == "tie":
        return tie
    if kind == "near_tie":
        direction = draw(st.sampled_from([np.float32(np.inf), np.float32(-np.inf)]))
        return float(np.nextafter(np.float32(tie), direction))
    if kind == "random":
        # Subnormal float32 inputs are left out: Brevitas computes x / scale in float32, which for a
        # scale above 1 can underflow a negative subnormal to -0.0, so AP_TRN gives 0 instead of
        # -LSB; every normal float32 is covered (see test_tiny_negative_normal_inputs).
        return draw(st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False))
    bound = 4 * max(abs(spec.min_value), spec.max_value, spec.lsb)
    if kind == "in_range":
        return draw(st.floats(-bound, bound, width=32, allow_subnormal=False))
    if kind == "huge":
        sign = draw(st.sampled_from([1.0, -1.0]))
        return sign * float(np.float32(min(bound * draw(st.floats(1.0, 1e30)), FLOAT32_MAX)))
    return draw(st.sampled_from([0.0, -0.0]))


@st.composite
def spec_and_inputs(draw, signed=None) -> tuple[FixedPoint, np.ndarray]:
    spec = draw(brevitas_specs(signed))
    values = draw(st.lists(float32_value(spec), min_size=1, max_size=WIDTH))
    x = np.array(values, dtype=np.float32)
    assert np.array_equal(x.astype(np.float64), np.array(values))  # every value is a float32
    return spec, x


# ---------------------------------------------------------------------------------------------
# Bit-exactness against the numpy reference
# ---------------------------------------------------------------------------------------------
@settings(max_examples=250, deadline=None)
@given(spec_and_inputs())
def test_activation_quantizer_matches_reference(case):
    spec, x = case
    layer = act_layer(spec)
    layer.eval()
    with torch.no_grad():
        out = layer(torch.from_numpy(x))
    check_quant_tensor(out, spec, x)


@settings(max_examples=40, deadline=None)
@given(spec_and_inputs())
def test_activation_quantizer_matches_reference_in_training_mode(case):
    spec, x = case
    layer = act_layer(spec)
    layer.train()
    try:
        out = layer(torch.from_numpy(x))
    finally:
        layer.eval()
    check_quant_tensor(out, spec, x)


@settings(max_examples=150, deadline=None)
@given(spec_and_inputs(signed=True))
def test_weight_quantizer_matches_reference(case):
    spec, x = case
    layer = weight_layer(spec)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, : len(x)] = torch.from_numpy(x)
    check_quant_tensor(layer.quant_weight(), spec, x)


@settings(max_examples=150, deadline=None)
@given(spec_and_inputs())
def test_bias_quantizer_matches_reference(case):
    spec, x = case
    layer = bias_layer(spec)
    with torch.no_grad():
        layer.bias.zero_()
        layer.bias[: len(x)] = torch.from_numpy(x)
    check_quant_tensor(layer.quant_bias(), spec, x)


@pytest.mark.parametrize(
    ("type_string", "inputs", "expected"),
    [
        ("ap_fixed<4,2,AP_RND_CONV,AP_SAT>", [0.375, 0.125, -0.375, 0.625], [0.5, 0.0, -0.5, 0.5]),
        ("ap_fixed<4,2,AP_RND_CONV,AP_SAT>", [9.0, -9.0, 1.875, -2.125], [1.75, -2.0, 1.75, -2.0]),
        ("ap_fixed<4,2,AP_RND_CONV,AP_SAT_SYM>", [-9.0, -2.0, -1.875], [-1.75, -1.75, -1.75]),
        ("ap_fixed<4,2,AP_TRN,AP_SAT>", [0.3, -0.01, -0.3, 1.99], [0.25, -0.25, -0.5, 1.75]),
        ("ap_fixed<4,2,AP_TRN_ZERO,AP_SAT>", [0.3, -0.01, -0.3, -1.99], [0.25, 0.0, -0.25, -1.75]),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>", [-0.3, -5.0, 0.375, 5.0], [0.0, 0.0, 0.5, 3.75]),
        ("ap_ufixed<4,2,AP_TRN,AP_SAT_SYM>", [-0.01, 3.99], [0.0, 3.75]),
        ("ap_fixed<2,6,AP_RND_CONV,AP_SAT>", [8.0, 24.0, -40.0], [0.0, 16.0, -32.0]),
        ("ap_fixed<16,-4,AP_RND_CONV,AP_SAT>", [2.0**-21, 3 * 2.0**-21], [0.0, 2.0**-19]),
        ("ap_fixed<16,-4,AP_RND_CONV,AP_SAT>", [1.0, -1.0], [2.0**-5 - 2.0**-20, -(2.0**-5)]),
    ],
)
def test_hand_checked_activation_examples(type_string, inputs, expected):
    spec = FixedPoint.parse(type_string)
    out = act_layer(spec).eval()(torch.tensor(inputs, dtype=torch.float32))
    assert out.value.tolist() == expected
    assert spec.quantize(np.array(inputs)).tolist() == expected


def test_tiny_negative_normal_inputs():
    """AP_TRN floors every negative input to at most -LSB, also for the smallest normal float32."""
    tiny = float(np.finfo(np.float32).tiny)  # 2**-126
    x = np.array([-tiny, tiny, -3 * tiny], dtype=np.float32)
    for int_bits in (12, 9, 3):
        spec = FixedPoint(8 if int_bits < 12 else 2, int_bits, rounding="TRN")
        out = act_layer(spec).eval()(torch.from_numpy(x))
        assert out.value.tolist() == [-spec.lsb, 0.0, -spec.lsb]
        check_quant_tensor(out, spec, x)


def test_quantizer_class_carries_the_type_and_threshold():
    spec = FixedPoint(8, 3, overflow="SAT_SYM")
    for role in ("weight", "bias", "act"):
        quant = brevitas_quant(spec, role)
        assert quant.fixed_point_type == spec
        assert quant.bit_width == 8
        assert quant.signed is True
        assert quant.narrow_range is True
    assert brevitas_threshold(FixedPoint(8, 3)) == 4.0  # lsb 2**-5 times 2**7
    assert brevitas_threshold(FixedPoint(8, 3, signed=False)) == 8.0  # lsb 2**-5 times 2**8
    assert brevitas_threshold(FixedPoint(2, 12)) == 2.0**11


def test_layer_forward_uses_the_quantized_weight_and_bias():
    """A QuantLinear with fixed-point weight, bias and input computes on the quantized values."""
    weight_spec, bias_spec, act_spec = FixedPoint(6, 1), FixedPoint(12, 4), FixedPoint(8, 3)
    layer = QuantLinear(
        3,
        2,
        bias=True,
        weight_quant=brevitas_quant(weight_spec, "weight"),
        bias_quant=brevitas_quant(bias_spec, "bias"),
        input_quant=brevitas_quant(act_spec, "act"),
    )
    weight = np.array([[0.3, -0.7, 0.11], [0.9, 0.01, -1.5]], dtype=np.float32)
    bias = np.array([0.123, -2.71], dtype=np.float32)
    x = np.array([[1.1, -0.4, 3.3]], dtype=np.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
        out = layer(torch.from_numpy(x)).numpy()
    expected = act_spec.quantize(x) @ weight_spec.quantize(weight).T + bias_spec.quantize(bias)
    np.testing.assert_array_equal(out, expected)  # all terms are exact in float32


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ["RND", "RND_ZERO", "RND_INF", "RND_MIN_INF"])
@pytest.mark.parametrize("role", ["weight", "bias", "act"])
def test_rounding_without_brevitas_equivalent_is_refused(rounding, role):
    spec = FixedPoint(8, 3, rounding=rounding)
    with pytest.raises(QuantizationError, match=rf"^decoder\.fc1: rounding AP_{rounding} "):
        brevitas_quant(spec, role, where="decoder.fc1")


@pytest.mark.parametrize("overflow", ["WRAP", "SAT_ZERO"])
@pytest.mark.parametrize("role", ["weight", "bias", "act"])
def test_overflow_without_brevitas_equivalent_is_refused(overflow, role):
    spec = FixedPoint(8, 3, overflow=overflow)
    with pytest.raises(QuantizationError, match=rf"^encoder\.conv2: overflow AP_{overflow} "):
        brevitas_quant(spec, role, where="encoder.conv2")


def test_hls4ml_default_modes_are_refused():
    """``fixed<16,6>`` means AP_TRN, AP_WRAP; WRAP cannot be trained, so it is refused, not approximated."""
    with pytest.raises(QuantizationError, match=r"enc\.act.*AP_WRAP"):
        brevitas_quant(FixedPoint.parse("fixed<16,6>"), "act", where="enc.act")


def test_check_brevitas_compatible():
    for rounding in BREVITAS_ROUNDING:
        for overflow in BREVITAS_OVERFLOW:
            check_brevitas_compatible(FixedPoint(8, 3, rounding=rounding, overflow=overflow))
    with pytest.raises(QuantizationError, match="layer x"):
        check_brevitas_compatible(FixedPoint(8, 3, rounding="RND_INF"), where="layer x")


def test_unsigned_weight_type_is_refused():
    spec = FixedPoint(8, 3, signed=False)
    with pytest.raises(QuantizationError, match=r"^dec\.out: weight types must be signed.*ap_ufixed<8,3"):
        brevitas_quant(spec, "weight", where="dec.out")
    brevitas_quant(spec, "act")  # unsigned activations and biases are fine
    brevitas_quant(spec, "bias")


@pytest.mark.parametrize("role", ["input", "Weight", "", None])
def test_unknown_role_is_refused(role):
    with pytest.raises(QuantizationError, match=r"enc\.fc"):
        brevitas_quant(FixedPoint(8, 3), role, where="enc.fc")
