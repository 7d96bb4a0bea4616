"""Tests of the fixed-point contract (:mod:`aeforge.fixedpoint`).

The numeric semantics are checked against an independent reference of the Vitis HLS
``ap_fixed<W, I, Q, O>`` rules written here with exact Python integers / ``fractions.Fraction``
(round ``x * 2**F`` per quantization mode, then handle overflow), against hand-checked examples
from the Vitis HLS documentation, and against an independent numpy implementation of the QKeras
``quantized_bits`` / ``quantized_relu`` math.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeforge.errors import QuantizationError
from aeforge.fixedpoint import OVERFLOW_MODES, ROUNDING_MODES, FixedPoint

ALL_ROUNDING = ("RND_CONV", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN", "TRN_ZERO")
ALL_OVERFLOW = ("SAT", "SAT_SYM", "SAT_ZERO", "WRAP")


# ---------------------------------------------------------------------------------------------
# Independent reference of the ap_fixed semantics (exact integer arithmetic, no numpy).
# ---------------------------------------------------------------------------------------------
def ref_code(x: float, bits: int, int_bits: int, signed: bool, rounding: str, overflow: str) -> int:
    """The integer code ``ap_[u]fixed<bits, int_bits, rounding, overflow>`` stores for ``x``."""
    scaled = Fraction(x) * Fraction(2) ** (bits - int_bits)
    low_int = math.floor(scaled)
    rest = scaled - low_int
    half = Fraction(1, 2)
    if rounding == "TRN":  # towards -inf
        code = low_int
    elif rounding == "TRN_ZERO":  # towards zero
        code = low_int if scaled >= 0 else math.ceil(scaled)
    elif rest > half:
        code = low_int + 1
    elif rest < half:
        code = low_int
    else:  # an exact tie between two codes
        code = {
            "RND_CONV": low_int if low_int % 2 == 0 else low_int + 1,  # to even
            "RND": low_int + 1,  # towards +inf
            "RND_MIN_INF": low_int,  # towards -inf
            "RND_ZERO": low_int if scaled > 0 else low_int + 1,  # towards zero
            "RND_INF": low_int + 1 if scaled > 0 else low_int,  # away from zero
        }[rounding]
    if signed:
        base, low, high = -(2 ** (bits - 1)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if overflow == "SAT_SYM":
            low = -high
    else:
        base, low, high = 0, 0, 2**bits - 1
    if low <= code <= high:
        return code
    if overflow in ("SAT", "SAT_SYM"):
        return min(max(code, low), high)
    if overflow == "SAT_ZERO":
        return 0
    assert overflow == "WRAP"
    return (code - base) % 2**bits + base


def ref_value(x: float, spec: FixedPoint) -> Fraction:
    code = ref_code(x, spec.bits, spec.int_bits, spec.signed, spec.rounding, spec.overflow)
    return Fraction(code) * Fraction(2) ** (spec.int_bits - spec.bits)


def assert_matches_reference(spec: FixedPoint, values: list[float]) -> None:
    got = spec.quantize(np.asarray(values, dtype=np.float64))
    assert got.shape == (len(values),)
    assert got.dtype == np.float64
    for x, y in zip(values, got.tolist(), strict=True):
        expected = ref_value(x, spec)
        assert Fraction(y) == expected, f"{spec.ap_type()} of {x!r}: got {y!r}, expected {float(expected)!r}"


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------
@st.composite
def fixed_specs(draw, max_bits: int = 24, int_range: tuple[int, int] = (-8, 30), rounding=ALL_ROUNDING,
                overflow=ALL_OVERFLOW) -> FixedPoint:
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, max_bits))
    int_bits = draw(st.integers(*int_range))
    return FixedPoint(bits, int_bits, signed=signed, rounding=draw(st.sampled_from(rounding)),
                      overflow=draw(st.sampled_from(overflow)))


@st.composite
def interesting_values(draw, spec: FixedPoint) -> float:
    """A float64 value: on the grid, an exact half-LSB tie, one ulp off a tie, far out of range..."""
    frac = spec.frac_bits
    near_codes = st.integers(spec.min_code - 4, spec.max_code + 4)
    wide_codes = st.integers(-(2 ** (spec.bits + 3)), 2 ** (spec.bits + 3))
    code = draw(st.one_of(near_codes, wide_codes))
    kind = draw(st.sampled_from(["grid", "tie", "tie", "near_tie", "random", "in_range", "huge", "zero"]))
    if kind == "grid":
        return math.ldexp(code, -frac)
    tie = math.ldexp(2 * code + 1, -frac - 1)
    if kind == "tie":
        return tie
    if kind == "near_tie":
        return math.nextafter(tie, draw(st.sampled_from([math.inf, -math.inf])))
    if kind == "random":
        # |x| <= 1e300 so that x * 2**F stays finite (test_huge_finite_values_saturate covers more)
        return draw(st.floats(-1e300, 1e300, allow_subnormal=False))
    bound = 4 * max(abs(spec.min_value), spec.max_value, spec.lsb)
    if kind == "in_range":
        return draw(st.floats(-bound, bound, allow_subnormal=False))
    if kind == "huge":
        return draw(st.sampled_from([1.0, -1.0])) * bound * draw(st.floats(1.0, 1e30))
    return draw(st.sampled_from([0.0, -0.0]))


@st.composite
def spec_and_values(draw, specs=None) -> tuple[FixedPoint, list[float]]:
    spec = draw(specs if specs is not None else fixed_specs())
    values = draw(st.lists(interesting_values(spec), min_size=1, max_size=16))
    return spec, values


# ---------------------------------------------------------------------------------------------
# Numeric semantics
# ---------------------------------------------------------------------------------------------
def test_mode_tables_are_complete():
    assert set(ROUNDING_MODES) == set(ALL_ROUNDING)
    assert set(OVERFLOW_MODES) == set(ALL_OVERFLOW)


@settings(max_examples=400, deadline=None)
@given(spec_and_values())
def test_quantize_matches_independent_reference(case):
    spec, values = case
    assert_matches_reference(spec, values)


@pytest.mark.parametrize("overflow", ALL_OVERFLOW)
@pytest.mark.parametrize("rounding", ALL_ROUNDING)
def test_quantize_matches_reference_exhaustively_on_small_types(rounding, overflow):
    """Every quarter-LSB point over four times the range, for every small type and both signs."""
    for signed, bits, int_bits in itertools.product((True, False), range(1, 5), (-2, 0, 2, 5)):
        if signed and bits < 2:
            continue
        spec = FixedPoint(bits, int_bits, signed=signed, rounding=rounding, overflow=overflow)
        span = 2 ** (bits + 2)
        values = [math.ldexp(k, -spec.frac_bits - 2) for k in range(-4 * span, 4 * span + 1)]
        assert_matches_reference(spec, values)


@pytest.mark.parametrize(
    ("type_string", "value", "expected"),
    [
        # Quantization modes, ap_fixed<3,2> (LSB 0.5), as in the Vitis HLS user guide.
        ("ap_fixed<3,2,AP_RND,AP_SAT>", 1.25, 1.5),
        ("ap_fixed<3,2,AP_RND,AP_SAT>", -1.25, -1.0),
        ("ap_fixed<3,2,AP_RND_ZERO,AP_SAT>", 1.25, 1.0),
        ("ap_fixed<3,2,AP_RND_ZERO,AP_SAT>", -1.25, -1.0),
        ("ap_fixed<3,2,AP_RND_MIN_INF,AP_SAT>", 1.25, 1.0),
        ("ap_fixed<3,2,AP_RND_MIN_INF,AP_SAT>", -1.25, -1.5),
        ("ap_fixed<3,2,AP_RND_INF,AP_SAT>", 1.25, 1.5),
        ("ap_fixed<3,2,AP_RND_INF,AP_SAT>", -1.25, -1.5),
        ("ap_fixed<3,2,AP_RND_CONV,AP_SAT>", 0.75, 1.0),
        ("ap_fixed<3,2,AP_RND_CONV,AP_SAT>", 1.25, 1.0),
        ("ap_fixed<3,2,AP_RND_CONV,AP_SAT>", -0.75, -1.0),
        ("ap_fixed<3,2,AP_RND_CONV,AP_SAT>", -1.25, -1.0),
        ("ap_fixed<3,2,AP_TRN,AP_SAT>", 1.25, 1.0),
        ("ap_fixed<3,2,AP_TRN,AP_SAT>", -1.25, -1.5),
        ("ap_fixed<3,2,AP_TRN_ZERO,AP_SAT>", 1.25, 1.0),
        ("ap_fixed<3,2,AP_TRN_ZERO,AP_SAT>", -1.25, -1.0),
        # Round half to even, ap_fixed<4,2> (LSB 0.25).
        ("ap_fixed<4,2,AP_RND_CONV>", 0.375, 0.5),
        ("ap_fixed<4,2,AP_RND_CONV>", 0.125, 0.0),
        ("ap_fixed<4,2,AP_RND_CONV>", 0.625, 0.5),
        ("ap_fixed<4,2,AP_RND_CONV>", -0.375, -0.5),
        ("ap_fixed<4,2,AP_RND_CONV>", 0.1, 0.0),
        # Overflow modes, ap_fixed<4,4> (integers -8..7).
        ("ap_fixed<4,4,AP_RND,AP_SAT>", 19.0, 7.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT>", -19.0, -8.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", 19.0, 0.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", -19.0, 0.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", -8.0, -8.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", 19.0, 7.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", -19.0, -7.0),
        ("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", -8.0, -7.0),  # the signed minimum is -max
        ("ap_fixed<4,4,AP_RND,AP_WRAP>", 31.0, -1.0),
        ("ap_fixed<4,4,AP_RND,AP_WRAP>", -19.0, -3.0),
        ("ap_fixed<4,4,AP_RND,AP_WRAP>", 8.0, -8.0),
        # ap_fixed<3,2,AP_TRN,AP_WRAP>: range -2..1.5 in steps of 0.5.
        ("ap_fixed<3,2,AP_TRN,AP_WRAP>", 1.75, 1.5),
        ("ap_fixed<3,2,AP_TRN,AP_WRAP>", 2.0, -2.0),
        ("ap_fixed<3,2,AP_TRN,AP_WRAP>", 2.5, -1.5),
        ("ap_fixed<3,2,AP_TRN,AP_WRAP>", -2.25, 1.5),
        ("ap_fixed<3,2>", 2.5, -1.5),  # the defaults are AP_TRN, AP_WRAP
        # Unsigned types.
        ("ap_ufixed<4,4,AP_RND,AP_WRAP>", 19.0, 3.0),
        ("ap_ufixed<4,4,AP_RND,AP_WRAP>", -1.0, 15.0),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>", -0.3, 0.0),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>", -100.0, 0.0),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>", 100.0, 3.75),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT_SYM>", -100.0, 0.0),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT_SYM>", 100.0, 3.75),
        ("ap_ufixed<4,2,AP_TRN,AP_SAT_ZERO>", -0.1, 0.0),
        ("ap_ufixed<4,2,AP_RND_CONV,AP_SAT>", -0.125, 0.0),  # a tie at -LSB/2 rounds to even 0
        # Negative int_bits and int_bits > bits (the LSB is a power of two either way).
        ("ap_fixed<4,-2,AP_RND_CONV,AP_SAT>", 0.02, 0.015625),
        ("ap_fixed<4,-2,AP_RND_CONV,AP_SAT>", 1.0, 0.109375),
        ("ap_fixed<2,6,AP_TRN,AP_SAT>", 17.0, 16.0),
        ("ap_fixed<2,6,AP_TRN,AP_SAT>", -0.5, -16.0),
        ("ap_fixed<2,6,AP_RND_CONV,AP_SAT>", 24.0, 16.0)  # tie to even code 2, saturated to 1,
    ],
)
def test_vitis_documentation_examples(type_string, value, expected):
    spec = FixedPoint.parse(type_string)
    got = spec.quantize(np.array([value]))
    assert got.tolist() == [expected]
    assert ref_value(value, spec) == Fraction(expected)  # the test's reference agrees too


def test_quantize_keeps_shape_and_handles_scalars_and_lists():
    spec = FixedPoint(8, 3)
    grid = np.linspace(-5, 5, 24).reshape(2, 3, 4)
    assert spec.quantize(grid).shape == (2, 3, 4)
    assert spec.quantize(0.3).shape == ()
    assert float(spec.quantize(0.3)) == 0.3125
    assert spec.quantize([0.3, -0.3]).tolist() == [0.3125, -0.3125]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_refuses_non_finite_values(bad):
    with pytest.raises(QuantizationError, match="non-finite"):
        FixedPoint(8, 3).quantize(np.array([1.0, bad]))


@settings(max_examples=150, deadline=None)
@given(spec_and_values(fixed_specs(overflow=("SAT", "SAT_SYM", "SAT_ZERO"))))
def test_quantized_values_are_representable_and_fixed_points(case):
    spec, values = case
    once = spec.quantize(np.array(values))
    assert spec.is_representable(once).all()
    assert np.array_equal(spec.quantize(once), once)
    assert (once >= spec.min_value).all()
    assert (once <= spec.max_value).all()


@settings(max_examples=150, deadline=None)
@given(spec_and_values(fixed_specs(rounding=("RND_CONV", "RND", "TRN", "RND_MIN_INF"), overflow=("SAT",))))
def test_saturating_quantization_is_monotonic(case):
    spec, values = case
    ordered = np.sort(np.array(values))
    assert (np.diff(spec.quantize(ordered)) >= 0).all()


def test_derived_properties():
    spec = FixedPoint(8, 3)
    assert (spec.frac_bits, spec.lsb) == (5, 2.0**-5)
    assert (spec.min_code, spec.max_code) == (-128, 127)
    assert (spec.min_value, spec.max_value) == (-4.0, 4.0 - 2.0**-5)
    assert not spec.narrow_range
    sym = FixedPoint(8, 3, overflow="SAT_SYM")
    assert (sym.min_code, sym.max_code, sym.narrow_range) == (-127, 127, True)
    unsigned = FixedPoint(8, 3, signed=False, overflow="SAT_SYM")
    assert (unsigned.min_code, unsigned.max_code, unsigned.narrow_range) == (0, 255, False)
    assert (unsigned.min_value, unsigned.max_value) == (0.0, 8.0 - 2.0**-5)
    assert FixedPoint(4, -2).lsb == 2.0**-6
    assert FixedPoint(2, 6).lsb == 16.0


def test_is_representable():
    spec = FixedPoint(4, 2)  # -2.0 .. 1.75 step 0.25
    got = spec.is_representable(np.array([0.25, -2.0, 1.75, 2.0, -2.25, 0.3, 0.0]))
    assert got.tolist() == [True, True, True, False, False, False, True]
    assert not FixedPoint(4, 2, overflow="SAT_SYM").is_representable(np.array([-2.0]))[0]


def test_modes_are_normalised():
    spec = FixedPoint(8, 3, rounding="ap_rnd_conv", overflow="AP_SAT_SYM")
    assert (spec.rounding, spec.overflow) == ("RND_CONV", "SAT_SYM")
    assert spec == FixedPoint(8, 3, rounding="RND_CONV", overflow="SAT_SYM")
    assert FixedPoint(8, 3, signed=0).signed is False


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"bits": 0, "int_bits": 0}, "bits"),
        ({"bits": 65, "int_bits": 0}, "bits"),
        ({"bits": 1, "int_bits": 0, "signed": True}, "at least 2 bits"),
        ({"bits": 8.0, "int_bits": 3}, "integer"),
        ({"bits": True, "int_bits": 3}, "integer"),
        ({"bits": 8, "int_bits": "3"}, "int_bits"),
        ({"bits": 8, "int_bits": 1000}, "int_bits"),
        ({"bits": 8, "int_bits": 3, "rounding": "ROUND"}, "ROUND"),
        ({"bits": 8, "int_bits": 3, "overflow": "CLAMP"}, "CLAMP"),
    ],
)
def test_invalid_types_are_refused(kwargs, fragment):
    with pytest.raises(QuantizationError, match=fragment):
        FixedPoint(**kwargs)


def test_trn_of_tiny_negative_float64_is_minus_one_lsb():
    """AP_TRN floors: any negative value, however small, becomes -LSB (saturated to the minimum).

    ``np.ldexp`` underflows a subnormal float64 to -0.0 when the type's LSB is above 1, which
    must not turn floor(-tiny) into 0.
    """
    tiny = -math.ulp(0.0)  # -5e-324, the smallest negative float64
    for spec in (FixedPoint(2, 12, rounding="TRN"), FixedPoint(8, 9, rounding="TRN")):
        assert ref_value(tiny, spec) == Fraction(-spec.lsb)
        assert spec.quantize(np.array([tiny])).tolist() == [-spec.lsb], spec.ap_type()
    assert FixedPoint(8, 3, rounding="TRN").quantize(np.array([tiny])).tolist() == [-(2.0**-5)]


def test_huge_finite_values_are_quantized_not_refused():
    """A finite double far out of range overflows like any other value, even when x * 2**F
    does not fit a double (it must not be refused as "non-finite")."""
    for overflow in ALL_OVERFLOW:
        spec = FixedPoint(8, 3, overflow=overflow)
        for value in (1e308, -1e308, float(np.finfo(np.float64).max)):
            got = spec.quantize(np.array([value])).tolist()
            assert got == [float(ref_value(value, spec))], f"{spec.ap_type()} of {value!r}"


def test_wrap_of_codes_beyond_float64_precision():
    """WRAP keeps the low bits exactly even when the unbounded code is above 2**53."""
    spec = FixedPoint(2, 0, overflow="WRAP")  # codes -2..1, LSB 0.25
    assert ref_value(2.0**52, spec) == 0
    assert spec.quantize(np.array([2.0**52])).tolist() == [0.0]
    spec = FixedPoint(16, 6, rounding="TRN", overflow="WRAP")  # hls4ml's fixed<16,6>
    for value in (2.0**43, 3.0 * 2.0**50, -(2.0**60) - 2.0**10):
        assert spec.quantize(np.array([value])).tolist() == [float(ref_value(value, spec))], value


# ---------------------------------------------------------------------------------------------
# Type strings
# ---------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(fixed_specs(max_bits=64, int_range=(-128, 128)))
def test_type_string_round_trips(spec):
    assert FixedPoint.parse(spec.ap_type()) == spec
    assert FixedPoint.parse(spec.hls4ml_type()) == spec
    assert FixedPoint.parse(str(spec)) == spec
    assert FixedPoint.from_config(spec.ap_type()) == spec
    assert FixedPoint.from_config(spec.as_dict()) == spec
    kind = "ap_fixed" if spec.signed else "ap_ufixed"
    assert spec.ap_type() == f"{kind}<{spec.bits},{spec.int_bits},AP_{spec.rounding},AP_{spec.overflow}>"
    assert spec.hls4ml_type() == spec.ap_type().removeprefix("ap_").replace("AP_", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ap_fixed<8,3>", FixedPoint(8, 3, True, "TRN", "WRAP")),
        ("ap_ufixed<8,3>", FixedPoint(8, 3, False, "TRN", "WRAP")),
        ("fixed<16,6>", FixedPoint(16, 6, True, "TRN", "WRAP")),
        ("ufixed<9,1,RND_CONV,SAT>", FixedPoint(9, 1, False, "RND_CONV", "SAT")),
        ("ap_fixed<6,2,AP_RND_CONV>", FixedPoint(6, 2, True, "RND_CONV", "WRAP")),
        ("ap_fixed<11,4,AP_RND_CONV,AP_SAT>", FixedPoint(11, 4, True, "RND_CONV", "SAT")),
        ("  ap_fixed < 11 , 4 , AP_RND , AP_SAT_SYM >  ", FixedPoint(11, 4, True, "RND", "SAT_SYM")),
        ("AP_FIXED<11,4,ap_rnd_zero,ap_sat_zero>", FixedPoint(11, 4, True, "RND_ZERO", "SAT_ZERO")),
        ("ap_fixed<8,3,AP_TRN,AP_WRAP,0>", FixedPoint(8, 3, True, "TRN", "WRAP")),
        ("ap_fixed<4,-2,AP_RND_INF,AP_SAT>", FixedPoint(4, -2, True, "RND_INF", "SAT")),
        ("ap_fixed<2,6>", FixedPoint(2, 6, True, "TRN", "WRAP")),
    ],
)
def test_parse(text, expected):
    assert FixedPoint.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ap_fixed",
        "ap_fixed<8>",
        "ap_fixed<>",
        "ap_fixed<8,3,AP_TRN,AP_WRAP,0,1>",
        "ap_int<8>",
        "ap_fixed<8,3",
        "ap_fixed<8.0,3>",
        "ap_fixed<eight,3>",
        "ap_fixed<8,3,AP_TRN,AP_WRAP,1>",
        "ap_fixed<8,3>x",
        "float",
    ],
)
def test_parse_syntax_errors_name_the_string(text):
    with pytest.raises(QuantizationError) as info:
        FixedPoint.parse(text)
    assert repr(text) in str(info.value)


def test_parse_value_errors_name_the_string():
    """Well-formed strings with impossible values must also name the string they came from."""
    for text in ("ap_fixed<0,0>", "ap_fixed<1,1>", "ap_fixed<65,3>", "ap_fixed<8,3,AP_ROUND>",
                 "ap_fixed<8,3,AP_TRN,AP_CLIP>"):
        with pytest.raises(QuantizationError) as info:
            FixedPoint.parse(text)
        assert text in str(info.value)


@pytest.mark.parametrize("value", [8, None, 3.5, ["ap_fixed<8,3>"]])
def test_parse_refuses_non_strings(value):
    with pytest.raises(QuantizationError):
        FixedPoint.parse(value)


# ---------------------------------------------------------------------------------------------
# from_scale / from_config
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bits", "scale", "signed", "int_bits"),
    [
        (8, 2.0**-5, True, 3),
        (8, 1.0, True, 8),
        (6, 0.25, False, 4),
        (4, 4.0, True, 6),
        (16, 2.0**-20, True, -4),
        (8, 1, True, 8),
    ],
)
def test_from_scale_accepts_powers_of_two(bits, scale, signed, int_bits):
    spec = FixedPoint.from_scale(bits, scale, signed=signed)
    assert spec == FixedPoint(bits, int_bits, signed=signed)
    assert spec.lsb == scale


@settings(max_examples=100, deadline=None)
@given(fixed_specs(max_bits=32))
def test_from_scale_inverts_lsb(spec):
    again = FixedPoint.from_scale(spec.bits, spec.lsb, signed=spec.signed, rounding=spec.rounding,
                                  overflow=spec.overflow)
    assert again == spec


@pytest.mark.parametrize("scale", [0.3, 0.75, 3.0, 1.0 + 2.0**-52, 0.1])
def test_from_scale_refuses_non_power_of_two(scale):
    with pytest.raises(QuantizationError, match="power of two") as info:
        FixedPoint.from_scale(8, scale)
    assert repr(scale) in str(info.value)


@pytest.mark.parametrize("scale", [0.0, -0.25, math.inf, math.nan, "0.25", None])
def test_from_scale_refuses_non_positive_or_non_numbers(scale):
    with pytest.raises(QuantizationError, match="positive finite"):
        FixedPoint.from_scale(8, scale)


def test_from_config_forms():
    assert FixedPoint.from_config("ap_fixed<8,3,AP_RND_CONV,AP_SAT>") == FixedPoint(8, 3)
    assert FixedPoint.from_config({"bits": 8, "int_bits": 3}) == FixedPoint(8, 3)
    assert FixedPoint.from_config({"bits": 8, "scale": 0.25, "signed": False}) == FixedPoint(8, 6, False)
    assert FixedPoint.from_config(
        {"bits": 6, "int_bits": 2, "rounding": "TRN", "overflow": "SAT_SYM", "signed": True}
    ) == FixedPoint(6, 2, True, "TRN", "SAT_SYM")
    spec = FixedPoint(5, 1, False)
    assert FixedPoint.from_config(spec) is spec


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ({"bits": 8, "int_bits": 3, "sign": True}, ["model.act_type", "unknown", "sign"]),
        ({"bits": 8, "int_bits": 3, "frac_bits": 5}, ["model.act_type", "frac_bits"]),
        ({"int_bits": 3}, ["model.act_type", "bits"]),
        ({"bits": 8}, ["model.act_type", "int_bits"]),
        ({"bits": 8, "int_bits": 3, "scale": 0.25}, ["model.act_type", "not both"]),
        ({"bits": 8, "scale": 0.3}, ["model.act_type", "power of two"]),
        ({"bits": 8, "int_bits": 3, "rounding": "NEAREST"}, ["model.act_type", "NEAREST"]),
        ({"bits": "8", "int_bits": 3}, ["model.act_type", "bits"]),
        ("ap_fixed<8>", ["model.act_type", "ap_fixed<8>"]),
        (8, ["model.act_type", "8"]),
        (None, ["model.act_type", "None"]),
        ([8, 3], ["model.act_type"]),
    ],
)
def test_from_config_errors_name_the_field(value, fragments):
    with pytest.raises(QuantizationError) as info:
        FixedPoint.from_config(value, where="model.act_type")
    message = str(info.value)
    assert message.startswith("model.act_type")
    for fragment in fragments:
        assert fragment in message


def test_from_config_refuses_non_boolean_signed():
    """``signed: "false"`` (a quoted YAML string) must not silently make a signed type."""
    for signed in ("false", "0", 2.5):
        with pytest.raises(QuantizationError, match="signed"):
            FixedPoint.from_config({"bits": 8, "int_bits": 3, "signed": signed}, where="model.act_type")


# ---------------------------------------------------------------------------------------------
# QKeras
# ---------------------------------------------------------------------------------------------
def qkeras_quantized_bits(x, bits, integer, symmetric=0, keep_negative=True):
    """QKeras ``quantized_bits(bits, integer, symmetric, keep_negative, alpha=1)`` (numpy port)."""
    x = np.asarray(x, dtype=np.float64)
    m = 2.0 ** (bits - int(keep_negative))
    m_i = 2.0**integer
    p = x * m / m_i
    return m_i * np.clip(np.round(p), int(keep_negative) * (-m + int(symmetric)), m - 1) / m


def qkeras_quantized_relu(x, bits, integer):
    """QKeras ``quantized_relu(bits, integer)`` without sigmoid or slope (numpy port)."""
    x = np.asarray(x, dtype=np.float64)
    m = 2.0**bits
    m_i = 2.0**integer
    p = x * m / m_i
    return m_i * np.clip(np.round(p) / m, 0.0, 1.0 - 1.0 / m)


def test_qkeras_examples():
    assert FixedPoint.from_qkeras({"class_name": "quantized_bits", "config": {"bits": 6, "integer": 1}}) == (
        FixedPoint(6, 2, True, "RND_CONV", "SAT")
    )
    assert FixedPoint(6, 2).to_qkeras() == {
        "class_name": "quantized_bits",
        "config": {"bits": 6, "integer": 1, "keep_negative": True, "symmetric": False, "alpha": 1},
    }
    assert FixedPoint.from_qkeras({"class_name": "quantized_relu", "config": {"bits": 9, "integer": 1}}) == (
        FixedPoint(9, 1, False, "RND_CONV", "SAT")
    )
    assert FixedPoint(9, 1, signed=False).to_qkeras(relu=True) == {
        "class_name": "quantized_relu",
        "config": {"bits": 9, "integer": 1},
    }
    assert FixedPoint(9, 1, signed=False).to_qkeras()["config"] == {
        "bits": 9, "integer": 1, "keep_negative": False, "symmetric": False, "alpha": 1,
    }
    assert FixedPoint(8, 3, overflow="SAT_SYM").to_qkeras()["config"]["symmetric"] is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quantized_bits(6,1,alpha=1)", FixedPoint(6, 2)),
        ("quantized_bits(6, 1)", FixedPoint(6, 2)),
        ("quantized_bits(bits=6, integer=1, alpha=1.0)", FixedPoint(6, 2)),
        ("quantized_bits(8,3,1)", FixedPoint(8, 4, overflow="SAT_SYM")),
        ("quantized_bits(8,3,symmetric=True)", FixedPoint(8, 4, overflow="SAT_SYM")),
        ("quantized_bits(8,3,0,0)", FixedPoint(8, 3, signed=False)),
        ("quantized_bits(8,3,keep_negative=False)", FixedPoint(8, 3, signed=False)),
        ("quantized_bits(4,0,1,False)", FixedPoint(4, 0, signed=False)),  # symmetric is moot unsigned
        ("quantized_bits(8,0,alpha=None)", FixedPoint(8, 1)),
        ("quantized_bits()", FixedPoint(8, 1)),  # QKeras defaults bits=8, integer=0
        ("quantized_relu(9,1)", FixedPoint(9, 1, signed=False)),
        ("quantized_relu(4, 2, 0, 0.0)", FixedPoint(4, 2, signed=False)),
        ("quantized_relu(bits=6)", FixedPoint(6, 0, signed=False)),
    ],
)
def test_qkeras_string_forms(text, expected):
    assert FixedPoint.from_qkeras(text) == expected


@settings(max_examples=100, deadline=None)
@given(fixed_specs(max_bits=24, rounding=("RND_CONV",), overflow=("SAT", "SAT_SYM")))
def test_qkeras_round_trip(spec):
    back = FixedPoint.from_qkeras(spec.to_qkeras())
    if spec.signed:
        assert back == spec
    else:  # SAT_SYM is SAT for unsigned types, and QKeras has only the one
        assert back == FixedPoint(spec.bits, spec.int_bits, signed=False)
        relu = FixedPoint.from_qkeras(spec.to_qkeras(relu=True))
        assert relu == back


def _qkeras_inputs(draw, spec):
    values = draw(st.lists(interesting_values(spec), min_size=1, max_size=16))
    return np.array([v for v in values if abs(v) < 1e38] or [0.0], dtype=np.float32)  # QKeras is float32


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(2, 16), st.integers(-4, 10), st.booleans(), st.booleans())
def test_quantized_bits_math_matches(data, bits, integer, keep_negative, symmetric):
    config = {"bits": bits, "integer": integer, "keep_negative": keep_negative, "symmetric": symmetric,
              "alpha": 1}
    spec = FixedPoint.from_qkeras({"class_name": "quantized_bits", "config": config})
    x = _qkeras_inputs(data.draw, spec)
    expected = qkeras_quantized_bits(x, bits, integer, symmetric, keep_negative)
    np.testing.assert_array_equal(spec.quantize(x), expected)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(1, 16), st.integers(-4, 10))
def test_quantized_relu_math_matches(data, bits, integer):
    config = {"bits": bits, "integer": integer}
    spec = FixedPoint.from_qkeras({"class_name": "quantized_relu", "config": config})
    x = _qkeras_inputs(data.draw, spec)
    np.testing.assert_array_equal(spec.quantize(x), qkeras_quantized_relu(x, bits, integer))


@pytest.mark.parametrize(
    "quantizer",
    [
        {"class_name": "quantized_bits", "config": {"bits": 8, "integer": 3, "alpha": "auto_po2"}},
        {"class_name": "quantized_bits", "config": {"bits": 8, "integer": 3, "alpha": "auto"}},
        {"class_name": "quantized_bits", "config": {"bits": 8, "integer": 3, "alpha": 0.5}},
        {"class_name": "quantized_bits", "config": {"bits": 8, "use_stochastic_rounding": True}},
        {"class_name": "quantized_relu", "config": {"bits": 8, "use_stochastic_rounding": True}},
        {"class_name": "quantized_relu", "config": {"bits": 8, "negative_slope": 0.25}},
        {"class_name": "quantized_relu", "config": {"bits": 8, "relu_upper_bound": 6.0}},
        {"class_name": "quantized_relu", "config": {"bits": 8, "use_sigmoid": 1}},
        {"class_name": "quantized_tanh", "config": {"bits": 8}},
        {"config": {"bits": 8}},
        "quantized_bits(8,3,alpha='auto_po2')",
        "quantized_bits(8,3,alpha=auto_po2)",
        "quantized_bits(8,3,use_stochastic_rounding=True)",
        "quantized_relu(8,3,0,0.5)",
        "quantized_po2(4)",
        "quantized_bits(8,3,0,1,1,0)",
        "quantized_bits 8 3",
    ],
)
def test_qkeras_refusals_name_where(quantizer):
    with pytest.raises(QuantizationError, match="layer enc1"):
        FixedPoint.from_qkeras(quantizer, where="layer enc1")


@pytest.mark.parametrize(
    ("spec", "relu"),
    [
        (FixedPoint(8, 3, rounding="TRN"), False),
        (FixedPoint(8, 3, rounding="RND"), False),
        (FixedPoint(8, 3, overflow="WRAP"), False),
        (FixedPoint(8, 3, overflow="SAT_ZERO"), False),
        (FixedPoint(8, 3), True),  # quantized_relu is unsigned
    ],
)
def test_to_qkeras_refusals(spec, relu):
    with pytest.raises(QuantizationError, match=r"ap_fixed<8,3"):
        spec.to_qkeras(relu=relu)


# ---------------------------------------------------------------------------------------------
# Integer codes and RTL bit patterns
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ["RND_CONV", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF"])
def test_rounding_just_inside_half_an_lsb_below_zero(rounding: str) -> None:
    """-0.49999999999999996 LSB + 1 rounds to 0.5 in doubles; it must still round to code 0, not be a tie."""
    spec = FixedPoint(2, 0, True, rounding, "SAT")
    values = [np.nextafter(-0.125, 0.0), -0.125, np.nextafter(-0.375, 0.0), -0.375, np.nextafter(-0.125, -1.0)]
    expected = [ref_code(v, 2, 0, True, rounding, "SAT") for v in values]
    assert spec.to_codes(np.array(values)).tolist() == expected


@settings(max_examples=150, deadline=None)
@given(spec_and_values(fixed_specs(max_bits=24)))
def test_codes_and_bits_round_trip(case):
    spec, values = case
    x = np.array(values)
    codes = spec.to_codes(x)
    assert codes.dtype == np.int64
    expected_codes = [ref_code(v, spec.bits, spec.int_bits, spec.signed, spec.rounding, spec.overflow)
                      for v in values]
    assert codes.tolist() == expected_codes
    assert np.array_equal(spec.from_codes(codes), spec.quantize(x))
    patterns = spec.to_bits(x)
    assert patterns.dtype == np.uint64
    assert ((patterns >= 0) & (patterns < 2**spec.bits)).all()
    assert [int(p) for p in patterns] == [c % 2**spec.bits for c in expected_codes]  # two's complement
    assert np.array_equal(spec.from_bits(patterns), spec.quantize(x))


@pytest.mark.parametrize(
    ("bits", "int_bits", "signed"),
    [(1, 0, False), (2, 1, True), (4, 2, True), (5, -1, False), (8, 3, True), (8, 8, False), (10, 12, True)],
)
def test_every_bit_pattern_round_trips(bits, int_bits, signed):
    spec = FixedPoint(bits, int_bits, signed=signed, rounding="TRN", overflow="WRAP")
    patterns = np.arange(2**bits, dtype=np.uint64)
    values = spec.from_bits(patterns)
    assert len(set(values.tolist())) == 2**bits
    assert np.array_equal(spec.to_bits(values), patterns)
    codes = spec.to_codes(values)
    expected = [p - 2**bits if signed and p >= 2 ** (bits - 1) else p for p in range(2**bits)]
    assert codes.tolist() == expected
    assert np.array_equal(spec.from_codes(codes), values)


def test_twos_complement_patterns():
    spec = FixedPoint(8, 3)  # LSB 1/32
    values = np.array([0.0, 2.0**-5, 1.0, -(2.0**-5), -1.0, -4.0, 4.0 - 2.0**-5, 100.0, -100.0])
    assert spec.to_codes(values).tolist() == [0, 1, 32, -1, -32, -128, 127, 127, -128]
    assert spec.to_bits(values).tolist() == [0x00, 0x01, 0x20, 0xFF, 0xE0, 0x80, 0x7F, 0x7F, 0x80]
    back = spec.from_bits(np.array([0xFF, 0xE0, 0x80, 0x7F]))
    assert back.tolist() == [-(2.0**-5), -1.0, -4.0, 4.0 - 2.0**-5]
    sym = FixedPoint(8, 3, overflow="SAT_SYM")
    assert sym.to_bits(np.array([-100.0, -4.0])).tolist() == [0x81, 0x81]
    unsigned = FixedPoint(8, 3, signed=False)
    assert unsigned.to_bits(np.array([-1.0, 0.5, 100.0])).tolist() == [0, 16, 255]
    assert unsigned.from_bits(np.array([255, 128])).tolist() == [8.0 - 2.0**-5, 4.0]


@pytest.mark.parametrize(
    ("spec", "patterns"),
    [
        (FixedPoint(8, 3), [256]),
        (FixedPoint(8, 3), [-1]),
        (FixedPoint(8, 3, signed=False), [0, 300]),
        (FixedPoint(1, 0, signed=False), [2]),
        (FixedPoint(4, 2), [16, 1]),
    ],
)
def test_out_of_range_bit_patterns_are_rejected(spec, patterns):
    with pytest.raises(QuantizationError, match="bit pattern out of range"):
        spec.from_bits(np.array(patterns))


def test_widest_numeric_types_saturate_to_the_exact_max_code():
    """Up to NUMERIC_MAX_BITS (53) codes are float64-exact: saturation gives the exact max code."""
    for bits, signed in ((52, False), (53, False), (53, True)):
        spec = FixedPoint(bits, bits, signed=signed)
        assert spec.to_codes(np.array([1e30])).tolist() == [spec.max_code], spec.ap_type()
        assert spec.to_codes(np.array([-1e30])).tolist() == [spec.min_code], spec.ap_type()
        patterns = spec.to_bits(np.array([spec.max_value, spec.min_value, 1.0]))
        assert spec.from_bits(patterns).tolist() == [spec.max_value, spec.min_value, 1.0]


def test_wider_types_are_refused_by_the_numeric_reference():
    """Wider types are valid type strings, but their codes are not float64-exact: refuse, never round."""
    for bits, signed in ((54, False), (55, True), (63, True), (64, False)):
        spec = FixedPoint(bits, 10, signed=signed)
        assert spec.ap_type().startswith("ap_")
        for method in (spec.quantize, spec.to_codes, spec.to_bits, spec.from_bits):
            with pytest.raises(QuantizationError, match="at most 53 bits"):
                method(np.array([1]))
