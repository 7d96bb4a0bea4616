"""QKeras quantizer semantics, reproduced without TensorFlow (checked against qkeras/quantizers.py 0.9)."""

from __future__ import annotations

import numpy as np
import pytest

from aeforge.errors import QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.qkeras.quantizers import activation_type, parse_quantizer, weight_quantizer


@pytest.mark.parametrize(
    ("text", "name", "config"),
    [
        ("quantized_relu(3,1)", "quantized_relu", {"bits": 3, "integer": 1}),
        ("quantized_relu(2)", "quantized_relu", {"bits": 2}),
        ("quantized_relu", "quantized_relu", {}),
        ("quantized_bits(6,0,alpha=1)", "quantized_bits", {"bits": 6, "integer": 0, "alpha": 1}),
        ("quantized_bits(8, 3, 1, keep_negative=False)", "quantized_bits",
         {"bits": 8, "integer": 3, "symmetric": 1, "keep_negative": False}),
        ("quantized_po2(4,1)", "quantized_po2", {"bits": 4, "max_value": 1}),
        ("ternary(alpha=1, threshold=0.5)", "ternary", {"alpha": 1, "threshold": 0.5}),
        ("binary(use_01=True)", "binary", {"use_01": True}),
        ("quantized_bits(4,0,alpha='auto_po2')", "quantized_bits", {"bits": 4, "integer": 0, "alpha": "auto_po2"}),
    ],
)
def test_string_forms_follow_qkeras_constructor_order(text: str, name: str, config: dict) -> None:
    parsed = parse_quantizer(text, "q")
    assert (parsed.name, parsed.config) == (name, config)


def test_dict_form_and_refusals() -> None:
    parsed = parse_quantizer({"module": "qkeras.quantizers", "class_name": "quantized_relu",
                              "config": {"bits": 4.0, "integer": 1}}, "q")
    assert parsed.config == {"bits": 4, "integer": 1}
    with pytest.raises(QuantizationError, match=r"quantized_tanh.*not supported"):
        parse_quantizer("quantized_tanh(4)", "q")
    with pytest.raises(QuantizationError, match="stochastic"):
        parse_quantizer("quantized_bits(4,0,use_stochastic_rounding=True)", "q")
    with pytest.raises(QuantizationError, match="too many"):
        parse_quantizer("binary(0,1,0,7)", "q")


def test_activation_types() -> None:
    assert activation_type(parse_quantizer("quantized_relu(3,1)", "a"), "a") == ("relu", FixedPoint(3, 1, False))
    assert activation_type(parse_quantizer("quantized_relu(2)", "a"), "a") == ("relu", FixedPoint(2, 0, False))
    assert activation_type(parse_quantizer("quantized_bits(6,2)", "a"), "a") == ("quant", FixedPoint(6, 3))
    # QKeras ignores relu_upper_bound while is_quantized_clip is True (its default, never serialized)
    bounded = parse_quantizer({"class_name": "quantized_relu", "config": {"bits": 4, "relu_upper_bound": 0.5}}, "a")
    assert activation_type(bounded, "a") == ("relu", FixedPoint(4, 0, False))
    for text, message in [("quantized_relu_po2(4)", "powers of two"), ("quantized_po2(4)", "powers of two"),
                          ("ternary()", "dead band"), ("quantized_relu(4,0,0,0.25)", "negative_slope"),
                          ("quantized_bits(1,0)", "sign function")]:
        with pytest.raises(QuantizationError, match=message):
            activation_type(parse_quantizer(text, "a"), "a")


def qkeras_po2(x: np.ndarray, bits: int, max_value: float | None = None) -> np.ndarray:
    """QKeras's quantized_po2 as written in its source (float64 log2, which is exact away from ties)."""
    need_sign = 0 if max_value is not None and max_value <= 1 else 1
    effect = bits - 1 - need_sign
    min_exp, max_exp = -(2**effect), 2**effect - 1
    sign = np.sign(x)
    sign += 1.0 - np.abs(sign)
    a = np.abs(x)
    f = np.where(a < 1e-7, 1e-7, a)
    if max_value is not None:
        f = np.where(f >= max_value, max_value, f)
    e = np.clip(np.round(np.log(f) / np.log(2.0)), min_exp, max_exp)
    return sign * 2.0 ** np.where(a < 1e-7, min_exp, e)


def test_po2_rounds_in_the_log_domain() -> None:
    q = weight_quantizer(parse_quantizer("quantized_po2(4)", "w"), "kernel", "w")
    boundary = np.float32(2.0**0.5)  # log2 = 0.5: below rounds to 1, above to 2
    below, above = np.nextafter(boundary, np.float32(0)), np.nextafter(boundary, np.float32(2))
    values = np.array([below, boundary, above, -above, 0.0, -0.0, 1e-9, 0.7, 3.0, 100.0, 1e-3], dtype=np.float32)
    expected = [1.0, 1.0, 2.0, -2.0, 2**-4, 2**-4, 2**-4, 0.5, 4.0, 8.0, 2**-4]
    assert float(below) < float(boundary) < 2**0.5 < float(above)  # float32(sqrt(2)) is just below the true boundary
    np.testing.assert_array_equal(q(values), expected)
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 2, 5000) * 10.0 ** rng.uniform(-3, 1, 5000)).astype(np.float32)
    np.testing.assert_array_equal(q(x), qkeras_po2(x.astype(np.float64), 4))
    assert q.container(q(x)) == FixedPoint(9, 5)


def test_po2_max_value_and_wide_ranges() -> None:
    q = weight_quantizer(parse_quantizer("quantized_po2(5,1)", "w"), "kernel", "w")
    x = np.array([3.0, 1.0, 0.9, -5.0, 2**-20], dtype=np.float32)
    np.testing.assert_array_equal(q(x), qkeras_po2(x.astype(np.float64), 5, 1.0))
    assert q.container(q(x)) == FixedPoint(18, 2)
    wide = weight_quantizer(parse_quantizer("quantized_po2(8)", "w"), "kernel", "w")  # 2**-64 .. 2**63
    values = wide(np.array([0.3, -2.5, 0.01], dtype=np.float32))
    assert wide.container(values) == FixedPoint(10, 3)  # too wide to hold all: the exponents used (-7 .. 1)


def test_binary_ternary_and_scaled_bits() -> None:
    x = np.array([-0.7, -0.2, 0.0, 0.2, 0.5], dtype=np.float32)
    binary = weight_quantizer(parse_quantizer("binary(alpha=1)", "w"), "kernel", "w")
    np.testing.assert_array_equal(binary(x), [-1, -1, 1, 1, 1])
    binary01 = weight_quantizer(parse_quantizer("binary(use_01=True, alpha=0.5)", "w"), "kernel", "w")
    np.testing.assert_array_equal(binary01(x), [0, 0, 0.5, 0.5, 0.5])
    assert binary01.container(binary01(x)) == FixedPoint(2, 1)
    ternary = weight_quantizer(parse_quantizer("ternary(alpha=2)", "w"), "kernel", "w")
    np.testing.assert_array_equal(ternary(np.array([-0.33, -0.32, 0.0, 0.33, 1.0], np.float32)), [-2, 0, 0, 2, 2])
    scaled = weight_quantizer(parse_quantizer("quantized_bits(4,0,alpha=0.5)", "w"), "kernel", "w")
    np.testing.assert_array_equal(scaled(np.array([0.3, -2.0], np.float32)), [0.125, -0.5])  # alpha * Q(x)
    assert scaled.container(scaled(np.zeros(1, np.float32))) == FixedPoint(4, 0)
    bias = weight_quantizer(parse_quantizer("quantized_bits(4,0)", "b"), "bias", "b")  # alpha None on a bias: 1
    assert bias.fixed == FixedPoint(4, 1)
    for text, message in [("quantized_bits(4,0)", "auto_po2"), ("binary()", "auto_po2"),
                          ("quantized_bits(4,0,alpha='auto')", "per-channel"), ("ternary(alpha=0.3)", "power of two"),
                          ("quantized_relu(4)", "not a weight quantizer"),
                          ("quantized_po2(4,quadratic_approximation=True)", "quadratic")]:
        with pytest.raises(QuantizationError, match=message):
            weight_quantizer(parse_quantizer(text, "w"), "kernel", "w")
