"""Exact fixed-point result types of the layer kinds (no rounding anywhere: every sum fits).

These are the types the fixed-point contract gives an unquantized layer output; the hardware
generators (hls4ml precisions, da4ml tracing, QONNX checks, estimates) derive the same ones.
"""

from __future__ import annotations

from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint


def accumulator_type(in_type: FixedPoint, weight: FixedPoint, bias: FixedPoint | None, fan_in: int) -> FixedPoint:
    """Smallest signed type holding every exact result of ``sum(fan_in products) + bias``.

    The LSB is the finer of the product LSB and the bias LSB; the width covers the worst case
    ``fan_in * max|x| * max|w| + max|b|``. Useful as the hls4ml ``accum``/``result`` type.
    """
    frac = in_type.frac_bits + weight.frac_bits
    if bias is not None:
        frac = max(frac, bias.frac_bits)

    def code_bound(spec: FixedPoint) -> int:  # max |code| of spec, on the accumulator LSB
        return max(abs(spec.min_code), abs(spec.max_code)) << (frac - spec.frac_bits)

    in_max = max(abs(in_type.min_code), abs(in_type.max_code))
    w_max = max(abs(weight.min_code), abs(weight.max_code))
    products = fan_in * in_max * w_max << (frac - in_type.frac_bits - weight.frac_bits)
    bound = products + (code_bound(bias) if bias is not None else 0)
    bits = max(bound.bit_length() + 1, 2)
    return FixedPoint(bits, bits - frac, signed=True)


def add_type(spec: FixedPoint) -> FixedPoint:
    """Exact type of the sum of two values of type ``spec`` (one more integer bit)."""
    return FixedPoint(spec.bits + 1, spec.int_bits + 1, signed=spec.signed)


def avgpool_type(spec: FixedPoint, window: int, where: str) -> FixedPoint:
    """Exact type of the mean of ``window`` values of type ``spec`` (``window`` a power of two)."""
    shift = window.bit_length() - 1
    if window != 1 << shift:
        raise ConfigError(f"{where}: an average over {window} values is not exact in fixed point; use a "
                          "power-of-two window (e.g. 2 or 2x2) or a max pooling")
    return FixedPoint(spec.bits + shift, spec.int_bits, signed=spec.signed)


def sq_error_type(spec: FixedPoint, elements: int) -> FixedPoint:
    """Exact (unsigned) type of ``sum((a - b) ** 2)`` over ``elements`` pairs of type ``spec``."""
    max_diff = spec.max_code - spec.min_code  # largest |a - b| in codes
    bound = elements * max_diff * max_diff
    bits = max(bound.bit_length(), 1)
    frac = 2 * spec.frac_bits
    return FixedPoint(bits, bits - frac, signed=False)
