"""Value intervals and constant-multiplication digits: the arithmetic of the analytical estimates.

A datapath value is a :data:`Node` ``(lo, hi, lsb_exponent)``: its real range and the weight of its
lowest bit. Every adder's width is the width its result needs above the higher LSB of its operands;
a constant weight with ``d`` nonzero canonical-signed-digit (CSD) digits is ``d`` shifted terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aeforge.fixedpoint import FixedPoint


# ------------------------------------------------------------------------------------ CSD
def csd_digits(code: int) -> list[tuple[int, int]]:
    """Canonical signed digits of an integer: ``[(position, +1 | -1), ...]``, ``sum(s * 2**p) == code``."""
    code = int(code)
    digits: list[tuple[int, int]] = []
    position = 0
    while code != 0:
        if code & 1:
            digit = 2 - (code & 3)  # +1 when code % 4 == 1, -1 when code % 4 == 3
            digits.append((position, digit))
            code -= digit
        code >>= 1
        position += 1
    return digits


def csd_nonzero(code: int) -> int:
    """Number of nonzero CSD digits of an integer (a constant multiplication costs this minus one adders)."""
    return len(csd_digits(code))


# ------------------------------------------------------------------------------------ intervals
# A datapath value: (lo, hi, lsb_exponent) -- its real range and the weight of its lowest bit.
Node = tuple[float, float, int]


def msb(lo: float, hi: float) -> int:
    """Smallest m with ``-2**m <= lo`` and ``hi < 2**m`` (the integer part of the value's width)."""
    m = -1074
    if hi > 0:
        m = math.floor(math.log2(hi)) + 1
        while hi >= 2.0**m:  # guard the log's rounding
            m += 1
    if lo < 0:
        m = max(m, math.ceil(math.log2(-lo)))
        while -lo > 2.0**m:
            m += 1
    return m


def node_bits(node: Node) -> int:
    """Bits of a two's complement (signed range) or unsigned word holding ``node``; 0 for a constant 0."""
    lo, hi, lsb = node
    if lo == 0 and hi == 0:
        return 0
    return max(msb(lo, hi) - lsb + (1 if lo < 0 else 0), 1)


def adder_bits(a: Node, b: Node) -> tuple[Node, int]:
    """The sum node and the bits of its ripple adder (result MSB down to the higher operand LSB)."""
    total = (a[0] + b[0], a[1] + b[1], min(a[2], b[2]))
    top = msb(total[0], total[1]) + (1 if total[0] < 0 else 0)
    return total, max(top - max(a[2], b[2]), 1)


def _lowest_set_exponent(value: float) -> int:
    mantissa, exponent = math.frexp(abs(value))
    integer = int(mantissa * 2**53)
    return exponent - 53 + ((integer & -integer).bit_length() - 1)


@dataclass
class _Tree:
    adders: int = 0
    bits: int = 0
    carry: int = 0
    depth: int = 0
    level_bits: list[int] = field(default_factory=list)  # live bits after each level


def sum_tree(terms: list[Node]) -> tuple[Node | None, _Tree]:
    """Balanced adder tree over ``terms``: each level pairs the narrowest nodes; returns (sum, cost)."""
    tree = _Tree()
    nodes = [t for t in terms if not (t[0] == 0 and t[1] == 0)]
    while len(nodes) > 1:
        nodes.sort(key=node_bits)
        paired: list[Node] = []
        for i in range(0, len(nodes) - 1, 2):
            total, bits = adder_bits(nodes[i], nodes[i + 1])
            tree.adders += 1
            tree.bits += bits
            tree.carry += math.ceil(bits / 4)
            paired.append(total)
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
        tree.depth += 1
        tree.level_bits.append(sum(node_bits(n) for n in nodes))
    return (nodes[0] if nodes else None), tree


def constant_node(value: float) -> Node:
    return (value, value, _lowest_set_exponent(value)) if value != 0 else (0.0, 0.0, 0)


def type_node(spec: FixedPoint) -> Node:
    return (spec.min_value, spec.max_value, -spec.frac_bits)




def negate(node: Node) -> Node:
    return (-node[1], -node[0], node[2])


def shift_node(node: Node, exponent: int) -> Node:
    """``node * 2**exponent`` (wiring: no hardware)."""
    scale = 2.0**exponent
    return (node[0] * scale, node[1] * scale, node[2] + exponent)


def max_node(a: Node, b: Node) -> Node:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]))


def square_node(node: Node) -> Node:
    lo, hi, lsb = node
    top = max(lo * lo, hi * hi)
    return (0.0 if lo < 0 < hi or lo == 0 or hi == 0 else min(lo * lo, hi * hi), top, 2 * lsb)


def live_width(nodes: list[Node]) -> tuple[int, int]:
    """(lowest LSB exponent, widest word above it, with a sign bit) of the nonconstant nodes; (0, 1) if none."""
    live = [n for n in nodes if node_bits(n)]
    lsb = min((n[2] for n in live), default=0)
    return lsb, max((msb(n[0], n[1]) - lsb + 1 for n in live), default=1)
