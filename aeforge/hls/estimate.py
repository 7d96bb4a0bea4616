"""Tool-free resource/latency estimates and ASIC energy-per-inference estimates.

Resources (:func:`estimate_resources`), in the spirit of FINN's per-layer analytical cost
functions, computed from the quantized model alone (no da4ml, no Yosys). Every weight is a
constant, so each Conv2D/Dense output is a sum of shifted copies of its inputs: a weight code with
``d`` nonzero canonical-signed-digit (CSD) digits contributes ``d`` terms (``d - 1`` adders of the
shift-and-add constant multiplication), and the terms of one output are summed by a balanced adder
tree. Value ranges are propagated as intervals (exact, from the real weights and types), so every
adder's width is the width its result needs above the higher LSB of its operands. On ``xc7`` a
ripple adder costs one LUT per bit and one CARRY4 per 4 bits; rounding adders and saturation muxes of
the quantizers cost one LUT per bit. Pipeline registers (da4ml's scheme: input rank, ``N - 1`` cuts
at equal adder-tree depth, output rank) count the bits alive at each cut. This is an *upper bound*
on the adder count: da4ml's CMVM solver shares common subexpressions across outputs, which this
model does not; ``ResourceEstimate.calibrated_lut`` applies the factor measured against Yosys here
(``XC7_LUT_CALIBRATION``).

Energy, two independent methods, both per inference (II = 1: one inference per clock):

* :func:`estimate_energy` -- from a synthesized *generic* Yosys netlist (cell counts): every gate,
  weighted by its size in two-input-gate equivalents (GE), dissipates ``e_toggle`` per output
  transition; gates toggle with probability ``activity`` per inference (times ``glitch_factor``);
  each flip-flop pays its clock load every cycle plus a data term.
* :func:`estimate_mac_energy` -- from the model: ``MACs x (multiplier + adder energy)`` at the
  operand widths, for a design with *programmable* weights (real multipliers, weight registers),
  which is how the ECON-T ASIC was built.

Per-operation energies: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, doi:10.1109/ISSCC.2014.6757323, 45 nm, 0.9 V: integer add 8 bit 0.03 pJ, 32 bit 0.1 pJ;
integer multiply 8 bit 0.2 pJ, 32 bit 3.1 pJ (FP16 add 0.4 pJ, FP32 add 0.9 pJ, FP32 mult 3.7 pJ,
not used). Other widths follow the power law through the two tabulated points. The energy per
GE transition is derived from the same four entries (``HOROWITZ_45NM_PJ``): a ripple adder is ``n``
full adders of 6 GE (2 XOR of 1.5 GE, 2 AND, 1 OR), an ``n x n`` array multiplier ``n^2`` AND
gates plus ``n (n - 1)`` full adders, and with random operands (Horowitz's condition) every node
toggles with probability 0.5; the geometric mean over the four entries is ``E_TOGGLE_45NM_FJ``.

Node scaling: dynamic energy ``C V^2`` with capacitance proportional to the feature size,
``e(node, V) = e_45 * (node / 45 nm) * (V / 0.9 V)^2``; the supply per node (``NODE_VDD_V``) is the
nominal core voltage of a typical low-power process (65 nm LP: 1.2 V), log-interpolated between
table entries and overridable with ``vdd_v``.

Calibration target: the ECON-T autoencoder ASIC, G. Di Guglielmo et al., "A reconfigurable neural
network ASIC for detector front-end data compression at the HL-LHC", IEEE Trans. Nucl. Sci. 68
(2021) 2179, arXiv:2105.01683: LP CMOS 65 nm, "total area of 3.6 mm^2 and consumes 95 mW of power.
The simulated energy consumption per inference is 2.4 nJ" (95 mW / 40 MHz). ``ECONT_PUBLISHED_NJ``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, ConfigError
from aeforge.fixedpoint import FixedPoint

# ------------------------------------------------------------------------------------ constants
TARGETS = ("xc7", "generic")
XC7_LUT_CALIBRATION = 0.67
"""Yosys-xc7 LUTs / estimated LUTs, measured with Yosys 0.23 on da4ml RTL (the gap is da4ml's
common-subexpression sharing): ECON-T encoder 31,622 / 50,959 = 0.62, MLP 16-24-8 7,327 / 11,461
= 0.64, MLP 8-8-4 910 / 1,152 = 0.79, conv 6x6x2-3x3x4-dense 6 20,667 / 31,813 = 0.65; geometric
mean 0.67. The table is in the docstring of
``tests/integration/test_estimate_vs_yosys.py``."""
GENERIC_GATES_PER_ADDER_BIT = 6.0
"""Yosys generic gates per ripple-adder bit (ABC maps a full adder to about 2 XOR/XNOR and 3-4
AND/OR-type cells); used for ``ResourceEstimate.gates`` (also an upper bound: Yosys / estimate
0.62 ECON-T, 0.61 and 0.68 for the MLPs)."""
DA4ML_TO_XC7_LUT = 0.94
"""Yosys-xc7 LUTs / da4ml's own cost (ECON-T encoder, 3 stages: 31,622 / 33,738)."""
XC7_CARRY_PER_LUT = 0.225
"""CARRY4 per LUT in da4ml designs on xc7 (ECON-T encoder: 7,107 / 31,622)."""

HOROWITZ_45NM_PJ: dict[tuple[str, int], float] = {
    ("add", 8): 0.03,
    ("add", 32): 0.1,
    ("mult", 8): 0.2,
    ("mult", 32): 3.1,
}
"""Integer energy per operation, pJ, 45 nm 0.9 V (Horowitz, ISSCC 2014)."""
HOROWITZ_NODE_NM = 45.0
HOROWITZ_VDD_V = 0.9
RANDOM_TOGGLE = 0.5
"""Toggle probability of a datapath node with random operands (the condition of the table)."""

GE_WEIGHTS: dict[str, float] = {
    "$_BUF_": 0.5, "$_NOT_": 0.5,
    "$_AND_": 1.0, "$_NAND_": 1.0, "$_OR_": 1.0, "$_NOR_": 1.0, "$_ANDNOT_": 1.0, "$_ORNOT_": 1.0,
    "$_XOR_": 1.5, "$_XNOR_": 1.5, "$_MUX_": 1.5, "$_NMUX_": 1.5,
    "$_AOI3_": 1.25, "$_OAI3_": 1.25, "$_AOI4_": 1.5, "$_OAI4_": 1.5,
}  # fmt: skip
"""Switched capacitance of Yosys' internal gates relative to a two-input gate (gate equivalents)."""
FULL_ADDER_GE = 2 * GE_WEIGHTS["$_XOR_"] + 2 * GE_WEIGHTS["$_AND_"] + GE_WEIGHTS["$_OR_"]
FF_CLOCK_GE = 4.0
"""GE transitions a flip-flop costs every clock cycle with its data constant: both clock edges on
its clocked internal nodes (about 1.5 GE each) plus its share of the clock tree (about 1 GE).
An assumption of this model, not from Horowitz's table."""
FF_DATA_GE = 4.0
"""GE transitions of a flip-flop whose stored bit toggles (master and slave stages)."""
_FF_CELL = re.compile(r"\$_(S?DFFS?E?|ALDFFE?|DFFSRE?|FF|SDFFCE|DLATCH)_\w*")

NODE_VDD_V: dict[float, float] = {
    250.0: 2.5, 180.0: 1.8, 130.0: 1.2, 90.0: 1.2, 65.0: 1.2, 45.0: 0.9, 40.0: 0.9,
    28.0: 0.9, 22.0: 0.8, 16.0: 0.8, 7.0: 0.75, 5.0: 0.7,
}  # fmt: skip
"""Nominal core supply per node (typical low-power processes; 45 nm is Horowitz's 0.9 V)."""
NODE_RANGE_NM = (5.0, 250.0)
ECONT_PUBLISHED_NJ = 2.4
"""ECON-T ASIC, 65 nm LP, 40 MHz: 95 mW, simulated 2.4 nJ per inference (Di Guglielmo et al. 2021)."""
ECONT_NODE_NM = 65.0
ECONT_CLOCK_MHZ = 40.0
DEFAULT_ACTIVITY = 0.125
"""Default gate toggle probability per inference (the common vendor power-tool default of 12.5 %);
measure it with :func:`measure_activity` instead where inputs are available."""

ENERGY_LIMITS = (
    "Order-of-magnitude model, not a power sign-off: no wire or routing capacitance beyond the gate "
    "weights, no glitch propagation (only a flat glitch_factor), no leakage (static power), one "
    "average gate energy for every cell (no library characterisation), activity assumed or measured "
    "on the model's word-level values (not on the gate netlist); node scaling C ~ feature size and "
    "V^2 is crude below 28 nm (FinFET) and ignores LP/HP process flavours; the generic Yosys netlist "
    "is not a mapped ASIC netlist (no sizing, no buffering, no retiming). Expect a factor of 2-3 "
    "either way."
)


# ------------------------------------------------------------------------------------ dataclasses
@dataclass(frozen=True)
class LayerEstimate:
    """Analytical cost of one layer (adders and bits summed over all its outputs)."""

    name: str
    kind: str  # conv2d, dense, quant, relu
    macs: int  # multiply-accumulates (non-padded inputs x outputs); 0 for quantizers
    nonzero_weights: int  # nonzero weight uses (conv: per output pixel)
    csd_digits: int  # nonzero CSD digits over those uses (shift-and-add terms)
    adders: int
    adder_bits: int  # summed result widths of the adders (the LUTs of their ripple chains)
    lut: int
    carry: int
    depth: int  # adder levels (delay units)
    outputs: int  # elements of the layer's output
    output_bits: int  # bits of the layer's output vector

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResourceEstimate:
    """Tool-free resource and latency estimate of a quantized model (see the module docstring).

    Measured against Yosys (xc7): LUT and gate counts are upper bounds (Yosys / estimate 0.6-0.8);
    flip-flops are the da4ml register scheme with cuts at equal adder depth (Yosys / estimate
    1.0-1.4: da4ml's own delay model places the cuts elsewhere).
    """

    target: str
    lut: int | None
    ff: int
    carry: int | None
    dsp: int
    gates: int  # generic-gate estimate (GENERIC_GATES_PER_ADDER_BIT per adder bit)
    latency_cycles: int
    ii: int
    register_bits: int
    combinational_depth: int  # adder levels from input to output
    macs: int
    layers: tuple[LayerEstimate, ...]
    method: str
    calibrated_lut: int | None = None  # lut x XC7_LUT_CALIBRATION (CSE sharing measured here)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [layer.as_dict() for layer in self.layers]
        return data


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per inference of a design at a technology node (see the module docstring)."""

    energy_j_per_inference: float
    power_w: float  # at clock_mhz, one inference per clock
    breakdown_j: dict[str, float]
    node_nm: float
    clock_mhz: float
    vdd_v: float
    activity: float | None  # gate toggle probability per inference (None: the MAC method's table)
    e_toggle_fj: float  # energy per GE transition at this node and supply
    method: str
    limits: str
    inputs: dict[str, Any] = field(default_factory=dict)  # counts the estimate was made from

    @property
    def energy_nj(self) -> float:
        return self.energy_j_per_inference * 1e9

    @property
    def ratio_to_econt(self) -> float:
        """This estimate / the published ECON-T 2.4 nJ per inference."""
        return self.energy_nj / ECONT_PUBLISHED_NJ

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["energy_nj"] = self.energy_nj
        data["ratio_to_econt_2p4_nj"] = self.ratio_to_econt
        return data


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


def _msb(lo: float, hi: float) -> int:
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
    return max(_msb(lo, hi) - lsb + (1 if lo < 0 else 0), 1)


def adder_bits(a: Node, b: Node) -> tuple[Node, int]:
    """The sum node and the bits of its ripple adder (result MSB down to the higher operand LSB)."""
    total = (a[0] + b[0], a[1] + b[1], min(a[2], b[2]))
    msb = _msb(total[0], total[1]) + (1 if total[0] < 0 else 0)
    return total, max(msb - max(a[2], b[2]), 1)


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


# ------------------------------------------------------------------------------------ model -> ops
@dataclass
class _Linear:
    name: str
    kind: str  # conv2d | dense
    weight_codes: np.ndarray  # conv: (F, C, kh, kw); dense: (out, in)
    weight_type: FixedPoint
    bias: np.ndarray | None  # real values
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom


@dataclass
class _Quant:
    name: str
    kind: str  # relu | quant
    type: FixedPoint
    relu: bool


@dataclass
class _Flatten:
    name: str


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _linear(name: str, kind: str, module: Any, weight: FixedPoint, bias: FixedPoint | None, **kw: Any) -> _Linear:
    codes = weight.to_codes(_numpy(module.weight))
    bias_values = None
    if bias is not None and getattr(module, "bias", None) is not None:
        bias_values = bias.quantize(_numpy(module.bias))
    return _Linear(name, kind, codes, weight, bias_values, **kw)


def model_ops(model: Any) -> tuple[FixedPoint, tuple[int, ...], list[Any]]:
    """(input type, channels-last input shape, ops) of an EcontEncoder or SequentialQuantModel."""
    from aeforge.quantize.models.econt import EcontAutoencoder, EcontEncoder
    from aeforge.quantize.models.sequential import (
        Conv2DSpec,
        DenseSpec,
        FlattenSpec,
        QuantSpec,
        ReLUSpec,
        SequentialQuantModel,
    )

    if isinstance(model, EcontAutoencoder):
        raise ArtifactError("estimates are for the on-detector encoder: pass model.encoder, not the autoencoder")
    if not isinstance(model, (EcontEncoder, SequentialQuantModel)):
        raise ArtifactError(f"estimates support EcontEncoder and SequentialQuantModel, not {type(model).__name__}")
    if not getattr(model, "quantized", False) or model.input_type is None:
        raise ArtifactError(f"{type(model).__name__} is not quantized; estimates need the QAT model")
    shape = tuple(int(s) for s in model.input_shape)
    shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    ops: list[Any] = []
    if isinstance(model, EcontEncoder):
        q = model.quant_config
        pad = tuple(int(p) for p in model.pad.padding)
        ops.append(_linear("conv", "conv2d", model.conv, q.weight, q.bias, stride=tuple(model.conv.stride), pad=pad))
        ops.append(_Quant("conv_act", "relu", q.conv_activation, True))
        ops.append(_Flatten("flatten"))
        ops.append(_linear("dense", "dense", model.dense, q.weight, q.bias))
        ops.append(_Quant("latent_act", "relu", q.latent, True))
        return model.input_type, shape, ops
    for layer, module in zip(model.spec.layers, model.layers, strict=True):
        if isinstance(layer, Conv2DSpec):
            pad = tuple(int(p) for p in module.pad.padding)
            ops.append(_linear(layer.name, "conv2d", module, layer.weight, layer.bias, stride=layer.strides, pad=pad))
        elif isinstance(layer, DenseSpec):
            ops.append(_linear(layer.name, "dense", module, layer.weight, layer.bias))
        elif isinstance(layer, ReLUSpec):
            ops.append(_Quant(layer.name, "relu", layer.type, True))
        elif isinstance(layer, QuantSpec):
            ops.append(_Quant(layer.name, "quant", layer.type, False))
        elif isinstance(layer, FlattenSpec):
            ops.append(_Flatten(layer.name))
        else:
            raise ArtifactError(f"layer {layer.name!r}: kind {layer.kind!r} has no cost model")
    return model.input_type, shape, ops


def _windows(op: _Linear, shape: tuple[int, ...]) -> tuple[tuple[int, int, int], list[list[tuple[int, int]]]]:
    """Conv output shape and, per output pixel, the (flat input index, flat weight index) pairs (padding dropped)."""
    height, width, channels = shape
    filters, _, kh, kw = op.weight_codes.shape
    left, right, top, bottom = op.pad
    sh, sw = op.stride
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    pixels = []
    for r in range(out_h):
        for c in range(out_w):
            pairs = []
            for i in range(kh):
                for j in range(kw):
                    y, x = r * sh + i - top, c * sw + j - left
                    if 0 <= y < height and 0 <= x < width:
                        for ch in range(channels):
                            pairs.append(((y * width + x) * channels + ch, (ch * kh + i) * kw + j))
            pixels.append(pairs)
    return (out_h, out_w, filters), pixels


def _linear_cost(op: _Linear, nodes: list[Node], shape: tuple[int, ...]) -> tuple[list[Node], tuple, dict, list]:
    """Output nodes, output shape, cost counters and per-level live bits of one conv/dense layer."""
    lsb_w = -op.weight_type.frac_bits
    if op.kind == "dense":
        if len(shape) != 1:
            raise ArtifactError(f"{op.name}: dense needs a 1-D input, got {shape}")
        matrix = op.weight_codes.reshape(op.weight_codes.shape[0], -1)
        out_shape: tuple[int, ...] = (matrix.shape[0],)
        groups = [[(i, i) for i in range(len(nodes))]]
    else:
        if len(shape) != 3:
            raise ArtifactError(f"{op.name}: conv2d needs an (H, W, C) input, got {shape}")
        matrix = op.weight_codes.reshape(op.weight_codes.shape[0], -1)
        out_shape, groups = _windows(op, shape)
    counters = {"macs": 0, "nonzero": 0, "digits": 0, "adders": 0, "bits": 0, "carry": 0, "depth": 0}
    levels: list[int] = []
    outputs: list[Node] = []
    digit_cache: dict[int, list[tuple[int, int]]] = {}
    for pairs in groups:  # conv: one group per pixel; outputs are (pixel, filter), channels-last
        for f in range(matrix.shape[0]):
            terms: list[Node] = []
            for x_index, w_index in pairs:
                counters["macs"] += 1
                code = int(matrix[f, w_index])
                lo, hi, lsb = nodes[x_index]
                if code == 0 or (lo == 0 and hi == 0):
                    continue
                counters["nonzero"] += 1
                digits = digit_cache.setdefault(code, csd_digits(code))
                counters["digits"] += len(digits)
                for position, sign in digits:
                    scale = sign * 2.0 ** (position + lsb_w)
                    terms.append((min(lo * scale, hi * scale), max(lo * scale, hi * scale), lsb + position + lsb_w))
            if op.bias is not None and op.bias[f] != 0:
                terms.append(constant_node(float(op.bias[f])))
            total, tree = sum_tree(terms)
            outputs.append(total if total is not None else (0.0, 0.0, 0))
            counters["adders"] += tree.adders
            counters["bits"] += tree.bits
            counters["carry"] += tree.carry
            counters["depth"] = max(counters["depth"], tree.depth)
            for level, bits in enumerate(tree.level_bits):
                if level >= len(levels):
                    levels.append(0)
                levels[level] += bits
    # an output whose tree finished early stays alive at the later levels
    finals = sum(node_bits(n) for n in outputs)
    levels = [max(b, 0) for b in levels]
    if levels:
        levels[-1] = finals
    return outputs, out_shape, counters, levels


def _quant_node(node: Node, spec: FixedPoint, relu: bool) -> tuple[Node, int, int]:
    """Output node, LUT bits (rounding adder + saturation mux) and delay units of one quantizer."""
    lo, hi, lsb = node
    if relu:
        lo, hi = max(lo, 0.0), max(hi, 0.0)
    out_lo, out_hi = (float(v) for v in spec.quantize(np.array([lo, hi])))
    out = (out_lo, out_hi, -spec.frac_bits)
    if node[0] == 0 and node[1] == 0:
        return (0.0, 0.0, 0), 0, 0
    bits = 0
    delay = 0
    if lsb < -spec.frac_bits and spec.rounding != "TRN":
        bits += max(_msb(lo, hi) + 1 + spec.frac_bits, 1)  # add half (+ the new LSB) above the new LSB
        delay = 1
    clamps = lo < spec.min_value or hi > spec.max_value or (relu and node[0] < 0)
    if clamps:
        bits += node_bits(out)  # one LUT per output bit selects value / bound
        delay = max(delay, 1)
    return out, bits, delay


def _check_stages(pipeline_stages: int | None) -> None:
    if pipeline_stages is None:
        return
    if isinstance(pipeline_stages, bool) or not isinstance(pipeline_stages, int) or pipeline_stages < 1:
        raise ConfigError(f"pipeline_stages must be an integer >= 1, got {pipeline_stages!r}")


def _register_bits(profile: list[tuple[int, int]], stages: int | None) -> int:
    """da4ml's register scheme: input and output ranks plus ``stages - 1`` cuts at equal delay."""
    if stages is None:
        return 0
    total_delay = profile[-1][0]
    bits = profile[0][1] + profile[-1][1]
    for k in range(1, stages):
        cut = total_delay * k / stages
        alive = profile[0][1]
        for delay, live in profile:
            if delay <= cut:
                alive = live
        bits += alive
    return bits


def estimate_resources(model: Any, pipeline_stages: int | None = None, target: str = "xc7") -> ResourceEstimate:
    """Analytical LUT/FF/CARRY/latency estimate of the da4ml RTL of ``model`` (no tools needed).

    ``pipeline_stages`` as in :func:`~aeforge.hls.rtl.generate_rtl` (None: combinational). ``target``
    ``xc7`` (LUT6 + CARRY4) or ``generic`` (gates only; ``lut``/``carry`` None). An upper bound on
    LUTs (no common-subexpression sharing); ``calibrated_lut`` applies ``XC7_LUT_CALIBRATION``.
    """
    if target not in TARGETS:
        raise ConfigError(f"estimate target must be one of {', '.join(TARGETS)}, got {target!r}")
    _check_stages(pipeline_stages)
    in_type, shape, ops = model_ops(model)
    nodes: list[Node] = [type_node(in_type)] * math.prod(shape)
    profile: list[tuple[int, int]] = [(0, sum(node_bits(n) for n in nodes))]
    delay = 0
    layers: list[LayerEstimate] = []
    for op in ops:
        if isinstance(op, _Flatten):
            shape = (math.prod(shape),)
            continue
        if isinstance(op, _Linear):
            input_bits = profile[-1][1]
            nodes, shape, c, levels = _linear_cost(op, nodes, shape)
            for level_bits in levels:  # a cut inside the tree registers the cheaper of inputs and partial sums
                delay += 1
                profile.append((delay, min(level_bits, input_bits)))
            out_bits = sum(node_bits(n) for n in nodes)
            layers.append(LayerEstimate(
                op.name, op.kind, c["macs"], c["nonzero"], c["digits"], c["adders"], c["bits"],
                c["bits"], c["carry"], c["depth"], len(nodes), out_bits,
            ))  # fmt: skip
            continue
        quantized = [_quant_node(n, op.type, op.relu) for n in nodes]
        nodes = [q[0] for q in quantized]
        bits = sum(q[1] for q in quantized)
        depth = max((q[2] for q in quantized), default=0)
        out_bits = sum(node_bits(n) for n in nodes)
        if depth:
            delay += depth
            profile.append((delay, out_bits))
        else:
            profile[-1] = (profile[-1][0], out_bits)
        layers.append(LayerEstimate(op.name, op.kind, 0, 0, 0, 0, bits, bits, 0, depth, len(nodes), out_bits))
    register_bits = _register_bits(profile, pipeline_stages)
    lut_bits = sum(layer.lut for layer in layers)
    adder_total = sum(layer.adder_bits for layer in layers if layer.kind in ("conv2d", "dense"))
    gates = round(adder_total * GENERIC_GATES_PER_ADDER_BIT + (lut_bits - adder_total) * 2) + register_bits
    is_xc7 = target == "xc7"
    return ResourceEstimate(
        target=target,
        lut=lut_bits if is_xc7 else None,
        ff=register_bits,
        carry=sum(layer.carry for layer in layers) if is_xc7 else None,
        dsp=0,
        gates=gates,
        latency_cycles=0 if pipeline_stages is None else pipeline_stages,
        ii=1,
        register_bits=register_bits,
        combinational_depth=delay,
        macs=sum(layer.macs for layer in layers),
        layers=tuple(layers),
        method=(
            "analytical (aeforge.hls.estimate): CSD shift-and-add terms per constant weight, balanced "
            "adder trees over interval-propagated widths, 1 LUT/bit + 1 CARRY4/4 bits per ripple adder, "
            "1 LUT/bit per rounding adder and saturation mux, da4ml register ranks; no CSE sharing "
            f"(upper bound; calibrated_lut = lut x {XC7_LUT_CALIBRATION})"
        ),
        calibrated_lut=round(lut_bits * XC7_LUT_CALIBRATION) if is_xc7 else None,
    )


def estimate_from_rtl(project: Any) -> ResourceEstimate:
    """xc7 estimate from a generated :class:`~aeforge.hls.rtl.RtlProject` (da4ml's cost, register bits)."""
    lut = round(float(project.estimated_luts) * DA4ML_TO_XC7_LUT)
    return ResourceEstimate(
        target="xc7",
        lut=lut,
        ff=int(project.register_bits),
        carry=round(lut * XC7_CARRY_PER_LUT),
        dsp=0,
        gates=0,
        latency_cycles=int(project.latency_cycles),
        ii=1,
        register_bits=int(project.register_bits),
        combinational_depth=round(max(project.extra.get("combinational_delay", [0]) or [0])),
        macs=0,
        layers=(),
        method=(
            f"da4ml cost x {DA4ML_TO_XC7_LUT} (LUT), x {XC7_CARRY_PER_LUT} CARRY4 per LUT, da4ml register bits "
            "(factors measured on the ECON-T encoder against Yosys 0.23 synth_xilinx)"
        ),
        calibrated_lut=lut,
    )


# ------------------------------------------------------------------------------------ energy
def _power_law(op: str, width: float) -> float:
    """Horowitz 45 nm energy (pJ) of an ``op`` at ``width`` bits: power law through the 8- and 32-bit entries."""
    e8, e32 = HOROWITZ_45NM_PJ[(op, 8)], HOROWITZ_45NM_PJ[(op, 32)]
    exponent = math.log(e32 / e8) / math.log(4.0)
    return e8 * (width / 8.0) ** exponent


def add_energy_pj(bits: float, node_nm: float = HOROWITZ_NODE_NM, vdd_v: float | None = None) -> float:
    """Energy of one ``bits``-wide integer addition, pJ (Horowitz table, scaled to the node)."""
    return _power_law("add", bits) * node_scale(node_nm, vdd_v)


def mult_energy_pj(
    a_bits: float, b_bits: float, node_nm: float = HOROWITZ_NODE_NM, vdd_v: float | None = None
) -> float:
    """Energy of one ``a_bits x b_bits`` integer multiplication, pJ (an ``n x n`` entry at ``n = sqrt(a b)``)."""
    return _power_law("mult", math.sqrt(a_bits * b_bits)) * node_scale(node_nm, vdd_v)


def _gate_model_ge(op: str, bits: int) -> float:
    if op == "add":
        return bits * FULL_ADDER_GE
    return bits * bits * GE_WEIGHTS["$_AND_"] + bits * (bits - 1) * FULL_ADDER_GE


def e_toggle_45nm_fj() -> float:
    """Energy per GE transition at 45 nm 0.9 V, fJ: geometric mean over the table's four entries."""
    values = [
        energy * 1000.0 / (_gate_model_ge(op, bits) * RANDOM_TOGGLE) for (op, bits), energy in HOROWITZ_45NM_PJ.items()
    ]
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _check_node(node_nm: Any) -> float:
    if isinstance(node_nm, bool) or not isinstance(node_nm, (int, float)) or not math.isfinite(node_nm):
        raise ConfigError(f"node_nm must be a number of nanometres, got {node_nm!r}")
    low, high = NODE_RANGE_NM
    if not low <= node_nm <= high:
        raise ConfigError(f"node_nm must be within {low:g}..{high:g} nm, got {node_nm!r}")
    return float(node_nm)


def node_vdd_v(node_nm: float) -> float:
    """Nominal supply at ``node_nm`` (``NODE_VDD_V``, interpolated linearly in log(node))."""
    node_nm = _check_node(node_nm)
    points = sorted(NODE_VDD_V.items())
    for (n0, v0), (n1, v1) in itertools.pairwise(points):
        if n0 <= node_nm <= n1:
            t = math.log(node_nm / n0) / math.log(n1 / n0)
            return v0 + t * (v1 - v0)
    return points[-1][1]


def _check_vdd(vdd_v: Any) -> None:
    if vdd_v is None:
        return
    if isinstance(vdd_v, bool) or not isinstance(vdd_v, (int, float)) or not 0.3 <= vdd_v <= 5.0:
        raise ConfigError(f"vdd_v must be a supply voltage within 0.3..5 V, got {vdd_v!r}")


def node_scale(node_nm: float, vdd_v: float | None = None) -> float:
    """Energy at (node, V) / energy at Horowitz's 45 nm 0.9 V: ``(node / 45) * (V / 0.9)^2``."""
    node_nm = _check_node(node_nm)
    _check_vdd(vdd_v)
    vdd = node_vdd_v(node_nm) if vdd_v is None else float(vdd_v)
    return (node_nm / HOROWITZ_NODE_NM) * (vdd / HOROWITZ_VDD_V) ** 2


def e_toggle_fj(node_nm: float, vdd_v: float | None = None) -> float:
    """Energy per GE transition at ``node_nm`` (and ``vdd_v``, default the node's nominal), fJ."""
    return e_toggle_45nm_fj() * node_scale(node_nm, vdd_v)


def _check_positive(value: Any, name: str, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"{name} must be at most {upper:g}, got {value!r}")
    return float(value)


def _cells(report: Any) -> dict[str, int]:
    if isinstance(report, dict):
        return {str(k): int(v) for k, v in report.items()}
    target = getattr(report, "target", None)
    if target != "generic":
        raise ConfigError(
            f"energy estimate needs a Yosys report of target 'generic' (gate-level cells), got target {target!r}; "
            "synthesize with target='generic'"
        )
    return {str(k): int(v) for k, v in report.cells.items()}


def estimate_energy(
    report: Any,
    node_nm: float = ECONT_NODE_NM,
    clock_mhz: float = ECONT_CLOCK_MHZ,
    activity: float = DEFAULT_ACTIVITY,
    vdd_v: float | None = None,
    glitch_factor: float = 1.0,
    cycles_per_inference: int = 1,
) -> EnergyEstimate:
    """Energy per inference from a generic-gate netlist (a ``YosysReport`` of target ``generic`` or its cells).

    ``activity``: probability a gate output (and a register bit) toggles per inference; use
    :func:`measure_activity`. ``glitch_factor`` multiplies the combinational term (1 = none).
    Flip-flops pay ``FF_CLOCK_GE`` every cycle; ``cycles_per_inference`` is 1 for II = 1.
    """
    node_nm = _check_node(node_nm)
    _check_vdd(vdd_v)
    clock_mhz = _check_positive(clock_mhz, "clock_mhz", upper=1e5)
    activity = _check_positive(activity, "activity", upper=1.0)
    glitch_factor = _check_positive(glitch_factor, "glitch_factor", upper=100.0)
    if isinstance(cycles_per_inference, bool) or not isinstance(cycles_per_inference, int) or cycles_per_inference < 1:
        raise ConfigError(f"cycles_per_inference must be an integer >= 1, got {cycles_per_inference!r}")
    cells = _cells(report)
    gate_ge = 0.0
    flip_flops = 0
    for name, count in cells.items():
        if _FF_CELL.fullmatch(name):
            flip_flops += count
        elif name in GE_WEIGHTS:
            gate_ge += GE_WEIGHTS[name] * count
        elif name.startswith("$_"):
            gate_ge += count  # another single-output internal gate: one GE
        elif name in ("$scopeinfo",):
            continue
        else:
            raise ConfigError(
                f"report cell {name!r} is not a generic gate; the energy estimate needs a Yosys 'generic' "
                "netlist (synthesize with target='generic')"
            )
    e_fj = e_toggle_fj(node_nm, vdd_v)
    comb_j = gate_ge * activity * glitch_factor * e_fj * 1e-15
    ff_data_j = flip_flops * FF_DATA_GE * activity * e_fj * 1e-15
    clock_j = flip_flops * FF_CLOCK_GE * cycles_per_inference * e_fj * 1e-15
    energy = comb_j + ff_data_j + clock_j
    vdd = node_vdd_v(node_nm) if vdd_v is None else float(vdd_v)
    return EnergyEstimate(
        energy_j_per_inference=energy,
        power_w=energy * clock_mhz * 1e6 / cycles_per_inference,
        breakdown_j={"combinational": comb_j, "flip_flops": ff_data_j, "clock": clock_j},
        node_nm=node_nm,
        clock_mhz=clock_mhz,
        vdd_v=vdd,
        activity=activity,
        e_toggle_fj=e_fj,
        method=(
            "netlist: sum(gate GE) x activity x glitch_factor x e_toggle + FF x (FF_DATA_GE x activity + "
            f"FF_CLOCK_GE) x e_toggle; e_toggle = {e_toggle_45nm_fj():.3f} fJ/GE at 45 nm 0.9 V (Horowitz ISSCC "
            "2014 add/mult table over a gate model), scaled by (node/45 nm)(V/0.9 V)^2"
        ),
        limits=ENERGY_LIMITS,
        inputs={"gate_ge": gate_ge, "flip_flops": flip_flops, "glitch_factor": glitch_factor, "cells": len(cells)},
    )


def estimate_mac_energy(
    model: Any,
    node_nm: float = ECONT_NODE_NM,
    clock_mhz: float = ECONT_CLOCK_MHZ,
    vdd_v: float | None = None,
    weight_register_copies: int = 1,
) -> EnergyEstimate:
    """Energy per inference of a *programmable-weight* implementation: MACs x (mult + add energy).

    Every MAC (padding excluded, zero weights included: the weights are not known at design
    time) costs a ``input_bits x weight_bits`` multiplication and an accumulator-wide addition
    (Horowitz table, random operands, scaled to the node); biases one addition per output; the
    weight registers pay their clock load every cycle (``weight_register_copies = 3`` for
    triple modular redundancy).
    """
    node_nm = _check_node(node_nm)
    _check_vdd(vdd_v)
    clock_mhz = _check_positive(clock_mhz, "clock_mhz", upper=1e5)
    if (
        isinstance(weight_register_copies, bool)
        or not isinstance(weight_register_copies, int)
        or (weight_register_copies < 0)
    ):
        raise ConfigError(f"weight_register_copies must be an integer >= 0, got {weight_register_copies!r}")
    from aeforge.quantize.models.sequential import accumulator_type

    in_type, _, ops = model_ops(model)
    estimate = estimate_resources(model, target="generic")
    per_layer = {layer.name: layer for layer in estimate.layers}
    nodes_type = in_type
    mult_pj = add_pj = 0.0
    weight_bits = 0
    macs = 0
    for op in ops:
        if isinstance(op, _Quant):
            nodes_type = op.type
            continue
        if not isinstance(op, _Linear):
            continue
        layer = per_layer[op.name]
        fan_in = int(np.prod(op.weight_codes.shape[1:]))
        acc = accumulator_type(nodes_type, op.weight_type, None, fan_in)
        mult_pj += layer.macs * _power_law("mult", math.sqrt(nodes_type.bits * op.weight_type.bits))
        add_pj += layer.macs * _power_law("add", acc.bits)
        if op.bias is not None:
            add_pj += layer.outputs * _power_law("add", acc.bits)
        weight_bits += op.weight_codes.size * op.weight_type.bits
        if op.bias is not None:
            weight_bits += op.bias.size * op.weight_type.bits
        macs += layer.macs
        nodes_type = acc  # a linear layer feeding another one without a quantizer
    scale = node_scale(node_nm, vdd_v)
    e_fj = e_toggle_fj(node_nm, vdd_v)
    mult_j = mult_pj * scale * 1e-12
    add_j = add_pj * scale * 1e-12
    register_j = weight_bits * weight_register_copies * FF_CLOCK_GE * e_fj * 1e-15
    energy = mult_j + add_j + register_j
    vdd = node_vdd_v(node_nm) if vdd_v is None else float(vdd_v)
    return EnergyEstimate(
        energy_j_per_inference=energy,
        power_w=energy * clock_mhz * 1e6,
        breakdown_j={"multipliers": mult_j, "adders": add_j, "weight_registers_clock": register_j},
        node_nm=node_nm,
        clock_mhz=clock_mhz,
        vdd_v=vdd,
        activity=None,
        e_toggle_fj=e_fj,
        method=(
            "MAC: MACs x (Horowitz mult at sqrt(in_bits x w_bits) + add at accumulator bits, 45 nm 0.9 V power "
            "laws through the 8/32-bit entries) x (node/45 nm)(V/0.9 V)^2 + weight-register clock load "
            f"(FF_CLOCK_GE x e_toggle per bit per cycle, x {weight_register_copies} copies)"
        ),
        limits=(
            "Random-operand energies (Horowitz's condition): sparse or correlated detector data costs less; "
            "no control, memory or I/O; " + ENERGY_LIMITS
        ),
        inputs={"macs": macs, "weight_bits": weight_bits, "weight_register_copies": weight_register_copies},
    )


# ------------------------------------------------------------------------------------ activity
def forward_values(model: Any, inputs: np.ndarray) -> list[tuple[str, np.ndarray, int, int]]:
    """The quantized model's word-level signals, in numpy: ``[(name, values (n, elements), lsb_exp, bits)]``.

    ``inputs`` channels-first as the model takes them, on the input grid. Signals: the input, each
    conv/dense accumulator (exact, before quantization) and each quantizer's output.
    """
    in_type, shape, ops = model_ops(model)
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim < 2 or tuple(x.shape[1:]) != tuple(int(s) for s in model.input_shape):
        raise ConfigError(f"inputs must have shape (n, {', '.join(str(s) for s in model.input_shape)}), got {x.shape}")
    if len(shape) == 3:
        x = np.moveaxis(x, 1, -1)
    x = in_type.quantize(x).reshape(len(x), -1)
    signals = [("input", x, -in_type.frac_bits, in_type.bits)]
    nodes: list[Node] = [type_node(in_type)] * math.prod(shape)
    for op in ops:
        if isinstance(op, _Flatten):
            shape = (math.prod(shape),)
            continue
        if isinstance(op, _Quant):
            x = op.type.quantize(np.maximum(x, 0.0) if op.relu else x)
            nodes = [_quant_node(n, op.type, op.relu)[0] for n in nodes]
            signals.append((op.name, x, -op.type.frac_bits, op.type.bits))
            continue
        weight = op.weight_codes * op.weight_type.lsb
        nodes, out_shape, _, _ = _linear_cost(op, nodes, shape)
        if op.kind == "dense":
            x = x @ weight.reshape(weight.shape[0], -1).T
        else:
            _, pixels = _windows(op, shape)
            flat_w = weight.reshape(weight.shape[0], -1)
            out = np.zeros((len(x), len(pixels), weight.shape[0]))
            for p, pairs in enumerate(pixels):
                if pairs:
                    xi, wi = (np.array(v) for v in zip(*pairs, strict=True))
                    out[:, p, :] = x[:, xi] @ flat_w[:, wi].T
            x = out.reshape(len(x), -1)
        if op.bias is not None:
            x = x + np.tile(op.bias, len(x[0]) // len(op.bias))
        shape = out_shape
        live = [n for n in nodes if node_bits(n)]
        lsb = min((n[2] for n in live), default=0)
        bits = max((_msb(n[0], n[1]) - lsb + 1 for n in live), default=1)
        signals.append((op.name, x, lsb, bits))
    return signals


def measure_activity(model: Any, inputs: np.ndarray) -> float:
    """Mean bit-toggle probability per inference of the model's internal words between consecutive inputs.

    Every signal of :func:`forward_values` is written as a two's complement word of its width;
    the result is toggled bits / (bits x (n - 1)), weighted over all words. A word-level proxy for
    the gate activity of :func:`estimate_energy` (glitches and adder-internal carries not seen).
    """
    inputs = np.asarray(inputs)
    if len(inputs) < 2:
        raise ConfigError(f"measure_activity needs at least 2 inputs, got {len(inputs)}")
    toggled = 0
    total = 0
    for _, values, lsb, bits in forward_values(model, inputs):
        codes = np.round(np.ldexp(values, -lsb)).astype(np.int64)
        patterns = (codes & ((1 << bits) - 1)).astype(np.uint64)
        flips = np.ascontiguousarray(np.bitwise_xor(patterns[1:], patterns[:-1]))
        toggled += int(np.unpackbits(flips.view(np.uint8)).sum())
        total += bits * flips.size
    return toggled / total if total else 0.0
