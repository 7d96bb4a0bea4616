"""A constant add after a long chain of constant matmuls must come out of da4ml's tracer exact.

da4ml 0.6 turns a constant add into an integer by truncating a Decimal ratio; after many scalings that
ratio can be 47.999... (Decimal's 28 digits), so the constant came out one LSB short. aeforge's trace wraps
``comb_trace`` in :func:`_integer_constants_rounded`; this replays the situation on random deep chains.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

pytest.importorskip("da4ml")

from aeforge.hls.rtl.trace import _integer_constants_rounded, _nearest_integer


def _deep_chain(seed: int):
    from da4ml.trace import FixedVariableArrayInput

    rng = np.random.default_rng(seed)
    inp = FixedVariableArrayInput((8,))
    x = inp.quantize(1, 3, 4, "WRAP", "TRN")
    weights = []
    for _ in range(6):  # each layer scales by 2**-6..2**-9: the last factor is ~2**-45
        weight = rng.integers(-7, 8, size=(8, 8)) * 2.0 ** -rng.integers(6, 10)
        x = x @ weight
        weights.append(weight)
    bias = rng.integers(-2000, 2000, size=8) * 2.0**-20
    inputs = rng.integers(-64, 64, size=(20, 8)) * 2.0**-4
    expected = inputs
    for weight in weights:
        expected = expected @ weight  # float64 is exact here: < 53 significant bits
    return inp, x + bias, inputs, expected + bias


@pytest.mark.parametrize("seed", range(12))  # seed 10 is one where plain comb_trace is one LSB off
def test_constant_add_after_deep_chain_is_exact(seed: int) -> None:
    from da4ml.trace import comb_trace

    inp, out, inputs, expected = _deep_chain(seed)
    with _integer_constants_rounded():
        logic = comb_trace(inp, out)
    np.testing.assert_array_equal(logic.predict(inputs), expected)


def test_patch_is_scoped_and_rounds_only_near_integers() -> None:
    from da4ml.trace import tracer

    with _integer_constants_rounded():
        assert tracer.int is _nearest_integer
    assert "int" not in vars(tracer)
    assert _nearest_integer(Decimal("47.99999999999999999999")) == 48
    assert _nearest_integer(Decimal("-3.000000000000000000001")) == -3
    assert _nearest_integer(Decimal("2.5")) == 2  # far from an integer: truncation, as int() does
    assert _nearest_integer(7.9) == 7


@pytest.mark.parametrize("text", ["ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>",
                                  "ap_fixed<6,2,AP_TRN,AP_WRAP>", "ap_ufixed<5,1,AP_TRN,AP_WRAP>",
                                  "ap_fixed<4,2,AP_RND_CONV,AP_SAT_SYM>"])
def test_constants_quantize_like_ap_fixed(text: str) -> None:
    """A bias-only output (every weight of the row pruned) is a constant: it must round and overflow as ap_fixed.

    da4ml's own constant folding gets negative values and unsigned wrap-around wrong (-0.171875 to
    ap_fixed<8,3> gave -0.21875 instead of -0.1875 in the 95 %-sparse AD autoencoder).
    """
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    from aeforge.fixedpoint import FixedPoint
    from aeforge.hls.rtl.trace import quantize, relu_quantize

    spec = FixedPoint.parse(text)
    constants = np.array([-0.171875, -5.5 / 32, -3.0, -0.03125, 0.0, 0.046875, 1.234375, 2.5, 7.96875, 40.0])
    inp = FixedVariableArrayInput((1,))
    x = inp.quantize(1, 3, 4, "WRAP", "TRN")
    zero = x * 0.0
    consts = zero + constants  # one constant variable per value, no input dependence
    for function, reference in ((quantize, constants), (relu_quantize, np.maximum(constants, 0.0))):
        out = function(consts, spec, "test")
        with _integer_constants_rounded():
            logic = comb_trace(inp, out)
        got = logic.predict(np.zeros((1, 1)))[0]
        np.testing.assert_array_equal(got, spec.quantize(reference), err_msg=f"{function.__name__} {text}")
