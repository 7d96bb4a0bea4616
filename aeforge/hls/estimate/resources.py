"""Tool-free resource and latency estimate of the da4ml RTL of a model (:func:`estimate_resources`).

In the spirit of FINN's per-layer analytical cost functions, computed from the quantized model's
spec alone (no da4ml, no Yosys): per-layer adders, comparators and multipliers come from
:mod:`aeforge.hls.estimate.layers`. On ``xc7`` a ripple adder costs one LUT per bit and one
CARRY4 per 4 bits; rounding adders and saturation muxes of the quantizers cost one LUT per bit.
Pipeline registers (da4ml's scheme: input rank, ``N - 1`` cuts at equal adder-tree depth, output
rank) count the bits alive at each cut, including a residual / reconstruction source kept alive
until the layer that reads it. This is an *upper bound* on the adder count: da4ml's CMVM solver
shares common subexpressions across outputs, which this model does not;
``ResourceEstimate.calibrated_lut`` applies the factor measured against Yosys here
(``XC7_LUT_CALIBRATION``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from aeforge.errors import ConfigError
from aeforge.hls.estimate.intervals import node_bits, type_node
from aeforge.hls.estimate.layers import (
    GENERIC_GATES_PER_ADDER_BIT,
    XC7_DSP_MIN_PRODUCT_BITS,
    LayerEstimate,
    layer_costs,
)

TARGETS = ("xc7", "generic")
XC7_LUT_CALIBRATION = 0.67
"""Yosys-xc7 LUTs / estimated LUTs, measured with Yosys 0.23 on da4ml RTL (the gap is da4ml's
common-subexpression sharing): ECON-T encoder 31,622 / 50,959 = 0.62, MLP 16-24-8 7,327 / 11,461
= 0.64, MLP 8-8-4 910 / 1,152 = 0.79, conv 6x6x2-3x3x4-dense 6 20,667 / 31,813 = 0.65; geometric
mean 0.67. The table is in the docstring of
``tests/integration/test_estimate_vs_yosys.py``."""
DA4ML_TO_XC7_LUT = 0.94
"""Yosys-xc7 LUTs / da4ml's own cost (ECON-T encoder, 3 stages: 31,622 / 33,738)."""
XC7_CARRY_PER_LUT = 0.225
"""CARRY4 per LUT in da4ml designs on xc7 (ECON-T encoder: 7,107 / 31,622)."""



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
    """Analytical LUT/FF/CARRY/DSP/latency estimate of the da4ml RTL of ``model`` (no tools needed).

    ``model``: a SequentialQuantModel or a model with ``as_sequential()`` (the ECON-T encoder).
    ``pipeline_stages`` as in :func:`~aeforge.hls.rtl.generate_rtl` (None: combinational). ``target``
    ``xc7`` (LUT6 + CARRY4 + DSP48E1) or ``generic`` (gates only; ``lut``/``carry`` None). An upper
    bound on LUTs (no common-subexpression sharing); ``calibrated_lut`` applies ``XC7_LUT_CALIBRATION``.
    """
    if target not in TARGETS:
        raise ConfigError(f"estimate target must be one of {', '.join(TARGETS)}, got {target!r}")
    _check_stages(pipeline_stages)
    model, costs = layer_costs(model, target)
    spec = model.spec
    sources = spec.sources()
    first = node_bits(type_node(spec.input.type)) * math.prod(spec.input.shape)
    profile: list[list[int]] = [[0, first]]  # (delay, live bits) after each delay unit
    born: dict[str, tuple[int, int]] = {"input": (0, first)}
    delay = 0
    layers: list[LayerEstimate] = []
    for cost in costs:
        layer, estimate = cost.spec, cost.estimate
        if layer.kind == "flatten":
            continue
        start = len(profile) - 1
        input_bits = profile[-1][1]
        for bits in cost.levels:  # a cut inside an adder tree registers the cheaper of inputs and partial sums
            delay += 1
            profile.append([delay, min(bits, input_bits) if cost.register_capped else bits])
        if not cost.levels and layer.kind != "upsample":
            profile[-1][1] = estimate.output_bits
        source = getattr(layer, "source", None)
        if source is not None:  # the source stays registered until this layer reads it
            born_at, bits = born[source]
            for entry in profile[born_at + 1 : start + 1]:
                entry[1] += bits
        if layer.name in sources:
            born[layer.name] = (len(profile) - 1, estimate.output_bits)
        layers.append(estimate)
    register_bits = _register_bits([(d, b) for d, b in profile], pipeline_stages)
    lut_bits = sum(layer.lut for layer in layers)
    is_xc7 = target == "xc7"
    return ResourceEstimate(
        target=target,
        lut=lut_bits if is_xc7 else None,
        ff=register_bits,
        carry=sum(layer.carry for layer in layers) if is_xc7 else None,
        dsp=sum(layer.dsp for layer in layers) if is_xc7 else 0,
        gates=sum(layer.gates for layer in layers) + register_bits,
        latency_cycles=0 if pipeline_stages is None else pipeline_stages,
        ii=1,
        register_bits=register_bits,
        combinational_depth=delay,
        macs=sum(layer.macs for layer in layers),
        layers=tuple(layers),
        method=(
            "analytical (aeforge.hls.estimate): CSD shift-and-add terms per constant weight, balanced "
            "adder trees over interval-propagated widths, 1 LUT/bit + 1 CARRY4/4 bits per ripple adder or "
            "comparator, 1 LUT/bit per rounding adder and mux, multipliers on DSP48E1 from "
            f"{XC7_DSP_MIN_PRODUCT_BITS} product bits, da4ml register ranks; no CSE sharing "
            f"(upper bound; calibrated_lut = lut x {XC7_LUT_CALIBRATION}); generic gates "
            f"{GENERIC_GATES_PER_ADDER_BIT:g} per adder bit"
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


