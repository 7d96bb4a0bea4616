"""``aeforge rtl``: da4ml RTL of a run's hardware model, simulated, synthesized, placed and routed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import CARD_NAME, replacing_directory, sha256_file, write_json_atomic
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError
from aeforge.quantize.models.boundary import HardwareModel, hardware_model
from aeforge.stages.paths import RTL_DIR

DEFAULT_MAX_LUTS = 2_000_000
"""Largest tool-free LUT estimate ``aeforge rtl`` builds unless told otherwise: about half of the largest
FPGAs' LUTs, and far past what da4ml's tracer and Verilator handle in minutes (the ECON-T encoder, ~30k
LUTs, takes about two)."""


def rtl_stage(
    run_dir: str | Path, pipeline_stages: int | None = None, language: str = "verilog", force: bool = False,
    synth: str | None = None, target_mhz: float | None = None, pnr: bool = False, energy: bool = False,
    node_nm: float = 65.0, n_check: int = 256, pnr_device: str = "85k", pnr_speed_grade: int = 6,
    pnr_route: bool = True, pnr_timeout_s: float = 3600.0, max_luts: int = DEFAULT_MAX_LUTS,
    abc9: bool = False, pnr_router: str | None = None,
) -> dict[str, Any]:
    """``aeforge rtl``: da4ml RTL of the hardware model in ``RUN/rtl`` (combinational or pipelined).

    ``pipeline_stages`` or ``target_mhz`` (stages chosen from the ECP5 delay calibration of
    :mod:`aeforge.hls.rtl.pnr`) set the pipelining. When the Verilog can be simulated here, the
    valid-in/valid-out top is driven back to back and with gaps on ``n_check`` realistic vectors:
    the results must equal Brevitas', and the latency (valid_in to valid_out, in clock cycles) and
    the initiation interval are measured. ``synth`` runs Yosys for that target, ``pnr`` nextpnr-ecp5
    for Fmax on ``pnr_device`` (default the LFE5U-85F: the ECON-T encoder needs ~50k LUT4s, more than a
    25k or 45k holds) at ``pnr_speed_grade`` (6 = slowest); ``pnr_route=False`` reports the
    post-placement estimate (routing the encoder takes longer than 10 minutes), ``pnr_router`` picks
    nextpnr's router (``router2`` routes large designs faster); ``abc9`` maps with Yosys' ABC9 flow
    (``synth_xilinx``/``synth_ecp5 -abc9``) for ``synth`` and ``pnr``. The tool-free
    resource estimate and the programmable-MAC energy estimate of
    :mod:`aeforge.hls.estimate` are always added; ``energy`` also synthesizes a generic gate netlist
    and estimates this design's energy per inference at ``node_nm`` from it, with the bit activity
    measured on realistic events. A design whose tool-free LUT estimate exceeds ``max_luts`` is refused
    before anything is generated, with the estimate and what to change. ``RUN/rtl/card.json`` holds
    everything and is written last; a
    failure leaves no new ``RUN/rtl``: with ``force`` the old one is moved aside only after every option
    and tool was checked, and put back if the new one fails. Missing tools are reported before any work.
    """
    from aeforge.hls.rtl import generate_rtl, why_verilator_unavailable
    from aeforge.hls.rtl.da4ml_backend import bus_layout_doc
    from aeforge.hls.rtl.interface import valid_delay

    run_dir = Path(run_dir)
    rtl_dir = run_dir / RTL_DIR
    if pipeline_stages is not None and target_mhz is not None:
        raise ConfigError("give --pipeline-stages or --target-mhz, not both")
    if (synth or pnr) and language != "verilog":
        raise ConfigError("synthesis and place-and-route read the Verilog project; use --language verilog")
    if synth is not None or energy:
        from aeforge.hls.rtl.yosys import why_yosys_unavailable

        if why_yosys_unavailable():
            raise ToolUnavailableError(f"--{'synth' if synth else 'energy'}: {why_yosys_unavailable()}")
    if pnr:
        from aeforge.hls.rtl.pnr import why_nextpnr_unavailable

        if why_nextpnr_unavailable():
            raise ToolUnavailableError(f"--pnr: {why_nextpnr_unavailable()}")
        from aeforge.hls.rtl.pnr import _check_args

        _check_args(pnr_device, "CABGA381", pnr_speed_grade, target_mhz or 40.0, 1, pnr_router)
    if abc9 and synth == "generic":
        raise ConfigError("--abc9: the generic target has no ABC9 flow; use --synth xc7, ecp5 or ice40")
    if pipeline_stages is not None and (isinstance(pipeline_stages, bool) or pipeline_stages < 0):
        raise ConfigError(f"--pipeline-stages must be a non-negative integer, got {pipeline_stages!r}")
    if target_mhz is not None and not target_mhz > 0:
        raise ConfigError(f"--target-mhz must be positive, got {target_mhz!r}")
    if language not in ("verilog", "vhdl"):
        raise ConfigError(f"--language {language!r}: expected verilog or vhdl")
    if rtl_dir.exists():
        if not force:
            raise ArtifactError(f"{rtl_dir}: already exists; pass --force to replace it")
        from aeforge.hls.rtl.da4ml_backend import MANIFEST

        if not (rtl_dir / MANIFEST).is_file():
            raise ArtifactError(f"{rtl_dir}: exists and is not an aeforge RTL project; refusing to replace it")
    model = hardware_model(run_dir)
    _check_size(model, max_luts)
    latency_cutoff = None
    if target_mhz is not None:
        from aeforge.hls.rtl.pnr import cutoff_for_target_mhz

        latency_cutoff = cutoff_for_target_mhz(target_mhz)
    with replacing_directory(rtl_dir):  # every check passed: the old artifact is restored on failure
        project = generate_rtl(model.module, rtl_dir, pipeline_stages=pipeline_stages,
                               latency_cutoff=latency_cutoff, language=language,
                               clock_period_ns=1000.0 / target_mhz if target_mhz else 25.0)
        summary: dict[str, Any] = {
            "project": str(project.out_dir),
            "top": project.integration_top,
            "core": project.top,
            "language": project.language,
            "pipelined": project.pipelined,
            "pipeline_stages": project.latency_cycles,
            "latency_cycles": valid_delay(project),
            "latency_cycles_measured": False,
            "ii": 1,
            "ii_measured": False,
            "target_mhz": target_mhz,
            "ports": bus_layout_doc(project),
            "input_type": project.input.lane_type.ap_type(),
            "output_type": project.output.lane_type.ap_type(),
            "generation_s": round(project.generation_seconds, 2),
        }
        reason = why_verilator_unavailable() if language == "verilog" else "VHDL is not simulated here"
        if reason is None:
            summary.update(_check_interface(project, model, n_check))
        else:
            summary["simulation"] = f"not run: {reason}"
        if synth is not None:
            from aeforge.hls.rtl.yosys import synthesize

            report = synthesize(project, synth, abc9=abc9)
            summary.update({"lut": report.lut, "ff": report.ff, "dsp": report.dsp, "carry": report.carry,
                            "bram": report.bram, "logic_depth": report.logic_depth,
                            "synthesis": report.as_dict()})
        summary.update(_estimates(project, model, synth_report=summary.get("synthesis"), energy=energy,
                                  node_nm=node_nm, clock_mhz=target_mhz or 40.0))
        if pnr:
            from aeforge.hls.rtl.pnr import place_and_route

            routed = place_and_route(project, device=pnr_device, speed_grade=pnr_speed_grade,
                                     target_mhz=target_mhz or 40.0, route=pnr_route, timeout_s=pnr_timeout_s,
                                     abc9=abc9, router=pnr_router)
            summary.update({"fmax_mhz": routed.fmax_mhz, "pnr": routed.as_dict()})
        card = {"schema": 1, "kind": "rtl",
                "parent": {"run": "..", "card_sha256": sha256_file(run_dir / CARD_NAME)},
                "metrics": {**summary, "project": RTL_DIR}, "files": {}}  # relative to the run
        write_json_atomic(rtl_dir / CARD_NAME, card)
    return summary


def _check_size(model: HardwareModel, max_luts: int) -> None:
    """Refuse a design whose LUT estimate exceeds ``max_luts`` (fully parallel RTL of a large network)."""
    from aeforge.hls.estimate import estimate_resources

    if isinstance(max_luts, bool) or not isinstance(max_luts, int) or max_luts < 1:
        raise ConfigError(f"--max-luts must be a positive integer, got {max_luts!r}")
    estimate = estimate_resources(model.module)
    luts = estimate.calibrated_lut or estimate.lut or 0
    if luts > max_luts:
        raise ArtifactError(
            f"the fully parallel RTL of this model needs about {luts:,} LUTs (tool-free estimate from its "
            f"non-zero weight digits), over --max-luts {max_luts:,}; generating and simulating it would take "
            "hours and no FPGA holds it. Make it smaller (prune: train.sparsity in an autoencoder config; fewer "
            "weight bits; narrower layers), or build a folded design with `aeforge hls RUN --strategy resource "
            "--reuse-factor N`; pass a larger --max-luts to try anyway")


def _estimates(project: Any, model: HardwareModel, synth_report: dict[str, Any] | None, energy: bool,
               node_nm: float, clock_mhz: float) -> dict[str, Any]:
    """Tool-free resource estimate, MAC-model energy, and (``energy``) the netlist energy estimate."""
    from aeforge.hls.estimate import estimate_energy, estimate_mac_energy, estimate_resources, measure_activity

    stages = project.latency_cycles if project.pipelined else None
    out: dict[str, Any] = {
        "estimate": estimate_resources(model.module, stages).as_dict(),
        "energy_estimate": {"programmable_mac": estimate_mac_energy(model.module, node_nm=node_nm,
                                                                    clock_mhz=clock_mhz).as_dict()},
    }
    if energy:
        from aeforge.hls.rtl.yosys import synthesize

        if synth_report is not None and synth_report.get("target") == "generic":
            cells = synth_report["cells"]
        else:
            cells = synthesize(project, "generic").cells
        activity = measure_activity(model.module, model.verification_inputs(2000))
        netlist = estimate_energy(cells, node_nm=node_nm, clock_mhz=clock_mhz, activity=activity)
        out["energy_estimate"]["netlist"] = netlist.as_dict()
    return out


def _check_interface(project: Any, model: HardwareModel, n_vectors: int) -> dict[str, Any]:
    """Drive the valid-in/valid-out top back to back and with random gaps; results must be Brevitas'."""
    from aeforge.hls.rtl.testbench import simulate_interface
    from aeforge.verification import predict_brevitas

    inputs = model.verification_inputs(n_vectors)
    expected = predict_brevitas(model.module, inputs, model.input_type)
    gaps = np.random.default_rng(0).random(3 * n_vectors) < 0.5
    gaps[:2] = True  # at least one back-to-back pair, for the initiation interval
    latencies: set[int] = set()
    intervals: list[int] = []
    for pattern in (None, gaps):
        run = simulate_interface(project, inputs, pattern)
        mismatched = int(np.sum(np.any(run.outputs.reshape(len(inputs), -1) != expected.reshape(len(inputs), -1),
                                       axis=1)))
        if mismatched:
            raise ArtifactError(
                f"{project.out_dir}: the valid-in/valid-out top returned {mismatched} of {len(inputs)} results "
                "different from Brevitas"
            )
        latencies |= set(run.latencies_cycles.tolist())
        if run.initiation_interval is not None:
            intervals.append(run.initiation_interval)
    if len(latencies) != 1:
        raise ArtifactError(f"{project.out_dir}: latency varies between vectors: {sorted(latencies)} cycles")
    return {"latency_cycles": latencies.pop(), "latency_cycles_measured": True,
            "ii": min(intervals) if intervals else 1, "ii_measured": bool(intervals),
            "interface_vectors_checked": 2 * len(inputs)}


def rtl_project(run_dir: str | Path) -> Any:
    """The RTL project of a run, or None when ``aeforge rtl`` has not run."""
    from aeforge.hls.rtl import load_rtl_project

    path = Path(run_dir) / RTL_DIR
    return load_rtl_project(path) if path.is_dir() else None


