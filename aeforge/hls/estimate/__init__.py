"""Tool-free resource/latency estimates and ASIC energy-per-inference estimates.

Every estimate works from the model's :class:`~aeforge.quantize.models.spec.SequentialSpec` (any
hardware model: a :class:`~aeforge.quantize.models.sequential.SequentialQuantModel`, or one with
``as_sequential()`` such as the ECON-T encoder), layer kind by layer kind:

* :mod:`~aeforge.hls.estimate.intervals` -- value intervals, CSD digits, adder widths and trees;
* :mod:`~aeforge.hls.estimate.layers` -- per-layer cost (:func:`layer_costs`): adders of constant
  multiplications, quantizer rounding and saturation, pooling comparators and adders, residual
  adders, ``sq_error`` multipliers;
* :mod:`~aeforge.hls.estimate.resources` -- :func:`estimate_resources` (LUT/FF/CARRY/DSP/latency of
  the da4ml RTL, an upper bound without CSE sharing) and :func:`estimate_from_rtl`;
* :mod:`~aeforge.hls.estimate.energy` -- :func:`estimate_energy` (from a generic Yosys netlist) and
  :func:`estimate_mac_energy` (programmable-weight MAC model), Horowitz ISSCC 2014 energies scaled
  to the node, calibrated against the ECON-T ASIC's published 2.4 nJ per inference;
* :mod:`~aeforge.hls.estimate.activity` -- :func:`measure_activity` (word-level toggle rate).
"""

from __future__ import annotations

from aeforge.hls.estimate.activity import forward_values, measure_activity
from aeforge.hls.estimate.energy import (
    DEFAULT_ACTIVITY,
    ECONT_CLOCK_MHZ,
    ECONT_NODE_NM,
    ECONT_PUBLISHED_NJ,
    ENERGY_LIMITS,
    FF_CLOCK_GE,
    FF_DATA_GE,
    FULL_ADDER_GE,
    GE_WEIGHTS,
    HOROWITZ_45NM_PJ,
    HOROWITZ_NODE_NM,
    HOROWITZ_VDD_V,
    NODE_RANGE_NM,
    NODE_VDD_V,
    RANDOM_TOGGLE,
    EnergyEstimate,
    _gate_model_ge,
    add_energy_pj,
    e_toggle_45nm_fj,
    e_toggle_fj,
    estimate_energy,
    estimate_mac_energy,
    mult_energy_pj,
    node_scale,
    node_vdd_v,
)
from aeforge.hls.estimate.intervals import (
    Node,
    adder_bits,
    constant_node,
    csd_digits,
    csd_nonzero,
    node_bits,
    sum_tree,
    type_node,
)
from aeforge.hls.estimate.layers import (
    GENERIC_GATES_PER_ADDER_BIT,
    XC7_DSP_MIN_PRODUCT_BITS,
    XC7_MULT_LUT_PER_BIT2,
    LayerEstimate,
    layer_costs,
)
from aeforge.hls.estimate.resources import (
    DA4ML_TO_XC7_LUT,
    TARGETS,
    XC7_CARRY_PER_LUT,
    XC7_LUT_CALIBRATION,
    ResourceEstimate,
    estimate_from_rtl,
    estimate_resources,
)

__all__ = [
    "DA4ML_TO_XC7_LUT",
    "DEFAULT_ACTIVITY",
    "ECONT_CLOCK_MHZ",
    "ECONT_NODE_NM",
    "ECONT_PUBLISHED_NJ",
    "ENERGY_LIMITS",
    "FF_CLOCK_GE",
    "FF_DATA_GE",
    "FULL_ADDER_GE",
    "GENERIC_GATES_PER_ADDER_BIT",
    "GE_WEIGHTS",
    "HOROWITZ_45NM_PJ",
    "HOROWITZ_NODE_NM",
    "HOROWITZ_VDD_V",
    "NODE_RANGE_NM",
    "NODE_VDD_V",
    "RANDOM_TOGGLE",
    "TARGETS",
    "XC7_CARRY_PER_LUT",
    "XC7_DSP_MIN_PRODUCT_BITS",
    "XC7_LUT_CALIBRATION",
    "XC7_MULT_LUT_PER_BIT2",
    "EnergyEstimate",
    "LayerEstimate",
    "Node",
    "ResourceEstimate",
    "_gate_model_ge",
    "add_energy_pj",
    "adder_bits",
    "constant_node",
    "csd_digits",
    "csd_nonzero",
    "e_toggle_45nm_fj",
    "e_toggle_fj",
    "estimate_energy",
    "estimate_from_rtl",
    "estimate_mac_energy",
    "estimate_resources",
    "forward_values",
    "layer_costs",
    "measure_activity",
    "mult_energy_pj",
    "node_bits",
    "node_scale",
    "node_vdd_v",
    "sum_tree",
    "type_node",
]
