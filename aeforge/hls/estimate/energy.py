"""ASIC energy-per-inference estimates, two independent methods, both per inference (II = 1).

* :func:`estimate_energy` -- from a synthesized *generic* Yosys netlist (cell counts): every gate,
  weighted by its size in two-input-gate equivalents (GE), dissipates ``e_toggle`` per output
  transition; gates toggle with probability ``activity`` per inference (times ``glitch_factor``);
  each flip-flop pays its clock load every cycle plus a data term.
* :func:`estimate_mac_energy` -- from the model's spec: ``MACs x (multiplier + adder energy)`` at the
  operand widths, for a design with *programmable* weights (real multipliers, weight registers),
  which is how the ECON-T ASIC was built.
  Pooling comparators, residual and average adders are charged one addition each, and a
  ``sq_error`` layer one ``diff x diff`` multiplication, one subtraction and one accumulation per
  element.

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

from aeforge.errors import ConfigError

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
    (Horowitz table, random operands, scaled to the node); biases one addition per output; pooling
    comparators and adders, residual adds and ``sq_error`` subtractions / accumulations one addition
    at their width, each ``sq_error`` square a multiplication; the weight registers pay their clock
    load every cycle (``weight_register_copies = 3`` for triple modular redundancy).
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
    from aeforge.hls.estimate.layers import layer_costs
    from aeforge.quantize.models.spec import accumulator_type, add_type

    model, costs = layer_costs(model, target="generic")
    out_types = model.spec.output_types()
    in_types = [model.spec.input.type, *out_types[:-1]]
    mult_pj = add_pj = 0.0
    weight_bits = macs = 0
    for cost, module, in_type, out_type in zip(costs, model.layers, in_types, out_types, strict=True):
        layer, est = cost.spec, cost.estimate
        if layer.kind in ("conv1d", "conv2d", "dense"):
            weight = module.weight
            fan_in = math.prod(weight.shape[1:])
            acc = accumulator_type(in_type, layer.weight, None, fan_in)
            mult_pj += est.macs * _power_law("mult", math.sqrt(in_type.bits * layer.weight.bits))
            add_pj += est.macs * _power_law("add", acc.bits)
            weight_bits += weight.numel() * layer.weight.bits
            if layer.bias is not None:
                add_pj += est.outputs * _power_law("add", acc.bits)
                weight_bits += module.bias.numel() * layer.weight.bits
            macs += est.macs
        elif layer.kind == "maxpool":
            add_pj += est.comparators * _power_law("add", in_type.bits)
        elif layer.kind in ("avgpool", "add"):
            add_pj += est.adders * _power_law("add", out_type.bits)
        elif layer.kind == "sq_error":
            diff_bits = add_type(in_type).bits
            mult_pj += est.multipliers * _power_law("mult", diff_bits)
            add_pj += est.multipliers * _power_law("add", diff_bits)
            add_pj += (est.adders - est.multipliers) * _power_law("add", out_type.bits)
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
            "laws through the 8/32-bit entries) + one add per comparator / pooling or residual adder, one mult "
            "per sq_error square, x (node/45 nm)(V/0.9 V)^2 + weight-register clock load "
            f"(FF_CLOCK_GE x e_toggle per bit per cycle, x {weight_register_copies} copies)"
        ),
        limits=(
            "Random-operand energies (Horowitz's condition): sparse or correlated detector data costs less; "
            "no control, memory or I/O; " + ENERGY_LIMITS
        ),
        inputs={"macs": macs, "weight_bits": weight_bits, "weight_register_copies": weight_register_copies},
    )
