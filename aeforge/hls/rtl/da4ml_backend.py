"""RTL generation with da4ml (distributed arithmetic): aeforge quantized model -> Verilog/VHDL.

The model is traced layer by layer from its spec by :mod:`aeforge.hls.rtl.trace`
(:func:`~aeforge.hls.rtl.trace.trace_model`: every model goes through its
:class:`~aeforge.quantize.models.sequential.SequentialQuantModel`; the ECON-T encoder through
``as_sequential()``); this module turns the traced netlist into a project.

Ports (see :class:`RtlProject`): the top module is da4ml's IO wrapper ``<name>_wrapper`` with one
flat input bus ``model_inp`` and one flat output bus ``model_out``; element ``j`` of a bus occupies
bits ``[(j+1)*w-1 : j*w]`` (``w`` = the lane width) and holds the bit pattern of
``RtlPort.lane_type`` (two's complement if signed). Elements are in channels-last order (the
order of the QONNX/hls4ml graph: ``(H, W, C)`` flattened). A pipelined design also has ``clk`` and
takes one new input every clock (II = 1); a combinational one has no clock. The input quantizer
is the port type itself: inputs are expected on the input grid (what every aeforge target is fed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aeforge.errors import ArtifactError, ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.rtl.trace import (  # noqa: F401  (re-exported: the tracer lives in trace.py)
    MAX_TYPE_BITS,
    OVERFLOWS,
    ROUNDINGS,
    da4ml_available,
    to_sequential_model,
    trace_model,
)

MANIFEST = "aeforge_rtl.json"
LANGUAGES = ("verilog", "vhdl")
DEFAULT_NAME = "aeforge_model"


# ------------------------------------------------------------------------------------ dataclasses
@dataclass(frozen=True)
class RtlPort:
    """One flat bus of the top module: ``elements`` lanes of ``lane_bits`` bits each.

    ``lane_type`` is the fixed-point type of every lane (the bus carries ``lane_type.to_bits``);
    ``element_types`` are the exact (minimal) types da4ml derived per element, which the wrapper
    sign- or zero-extends into the lane.
    """

    name: str
    elements: int
    lane_bits: int
    lane_type: FixedPoint
    element_types: tuple[FixedPoint | None, ...]  # None: the element is constantly 0 (no bits)

    @property
    def bus_bits(self) -> int:
        return self.elements * self.lane_bits

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "elements": self.elements,
            "lane_bits": self.lane_bits,
            "bus_bits": self.bus_bits,
            "lane_type": self.lane_type.ap_type(),
            "element_types": [None if t is None else t.ap_type() for t in self.element_types],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RtlPort:
        return cls(
            name=data["name"],
            elements=int(data["elements"]),
            lane_bits=int(data["lane_bits"]),
            lane_type=FixedPoint.parse(data["lane_type"]),
            element_types=tuple(None if t is None else FixedPoint.parse(t) for t in data["element_types"]),
        )


@dataclass(frozen=True)
class RtlProject:
    """A generated RTL project (everything :func:`~aeforge.hls.rtl.simulate.rtl_predict` needs)."""

    out_dir: Path
    name: str  # da4ml project name; the core module
    top: str  # the top-level module (da4ml's IO wrapper)
    language: str
    input: RtlPort
    output: RtlPort
    input_shape: tuple[int, ...]  # one sample as the torch model takes it, channels-first
    output_shape: tuple[int, ...]  # one sample as the torch model returns it
    input_type: FixedPoint  # the model's input type (== input.lane_type)
    output_type: FixedPoint  # the model's declared output type
    pipelined: bool
    latency_cycles: int  # register stages (0 = combinational), as generated
    latency_cutoff: float | None  # da4ml delay units per stage (None = combinational)
    estimated_luts: float  # da4ml's own cost estimate
    register_bits: int
    files: tuple[str, ...]  # relative to out_dir
    generation_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    interface_top: str = ""  # the valid-in/valid-out top (aeforge.hls.rtl.interface); "" in old projects

    @property
    def integration_top(self) -> str:
        """The module a user integrates and synthesis reports on: the valid-in/valid-out top when present."""
        return self.interface_top or self.top

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["input"] = self.input.as_dict()
        data["output"] = self.output.as_dict()
        data["input_type"] = self.input_type.ap_type()
        data["output_type"] = self.output_type.ap_type()
        data["input_shape"] = list(self.input_shape)
        data["output_shape"] = list(self.output_shape)
        data["files"] = list(self.files)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], out_dir: Path) -> RtlProject:
        return cls(
            out_dir=Path(out_dir),
            name=data["name"],
            top=data["top"],
            language=data["language"],
            input=RtlPort.from_dict(data["input"]),
            output=RtlPort.from_dict(data["output"]),
            input_shape=tuple(data["input_shape"]),
            output_shape=tuple(data["output_shape"]),
            input_type=FixedPoint.parse(data["input_type"]),
            output_type=FixedPoint.parse(data["output_type"]),
            pipelined=bool(data["pipelined"]),
            latency_cycles=int(data["latency_cycles"]),
            latency_cutoff=data["latency_cutoff"],
            estimated_luts=float(data["estimated_luts"]),
            register_bits=int(data["register_bits"]),
            files=tuple(data["files"]),
            generation_seconds=float(data.get("generation_seconds", 0.0)),
            extra=dict(data.get("extra", {})),
            interface_top=str(data.get("interface_top", "")),
        )


def load_rtl_project(out_dir: str | os.PathLike[str]) -> RtlProject:
    """Read back a project written by :func:`generate_rtl` (its ``aeforge_rtl.json``)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{out_dir}: not an aeforge RTL project (no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RtlProject.from_dict(data, out_dir)
    except (OSError, ValueError, KeyError, QuantizationError) as error:
        raise ArtifactError(f"{path}: unreadable RTL manifest: {error}") from None


# ------------------------------------------------------------------------------------ ports
def _port(name: str, qints: Any) -> RtlPort:
    from da4ml.types import minimal_kif

    kifs = [tuple(int(v) for v in minimal_kif(q)) for q in qints]
    ks, is_, fs = zip(*kifs, strict=True)
    k_max, i_max, f_max = max(ks), max(is_), max(fs)
    lane_bits = k_max + i_max + f_max
    if lane_bits < 1:
        what = ("no input bit reaches any output" if name == "model_inp" else "every output is the constant 0")
        raise ArtifactError(f"{name}: {what} (all weights quantized to zero or the activations saturate): the "
                            "trained model is constant, so there is no datapath to build; retrain it or widen "
                            "its weight / activation types")
    if lane_bits > MAX_TYPE_BITS:
        raise QuantizationError(f"{name}: lane width {lane_bits} bits is outside 1..{MAX_TYPE_BITS} (the RTL "
                                "simulation moves each lane through an int64)")
    signed = bool(k_max)
    if signed and lane_bits < 2:
        lane_bits, i_max = 2, i_max + 1
    lane_type = FixedPoint(lane_bits, k_max + i_max, signed=signed, rounding="TRN", overflow="WRAP")
    element_types = []
    for k, i, f in kifs:
        bits = k + i + f
        if bits <= 0:
            element_types.append(None)
        elif k and bits < 2:
            element_types.append(FixedPoint(2, k + i + 1, signed=True, rounding="TRN", overflow="WRAP"))
        else:
            element_types.append(FixedPoint(bits, k + i, signed=bool(k), rounding="TRN", overflow="WRAP"))
    return RtlPort(name, len(kifs), lane_bits, lane_type, tuple(element_types))


def _pipeline(comb: Any, pipeline_stages: int | None, latency_cutoff: float | None) -> Any:
    """None (combinational) or a da4ml ``Pipeline`` with at most ``pipeline_stages`` stages."""
    from da4ml.trace import to_pipeline

    if pipeline_stages is None and latency_cutoff is None:
        return None
    if pipeline_stages is not None and latency_cutoff is not None:
        raise ConfigError("give either pipeline_stages or latency_cutoff, not both")
    if latency_cutoff is not None:
        if not (isinstance(latency_cutoff, (int, float)) and latency_cutoff > 0):
            raise ConfigError(f"latency_cutoff must be a positive number, got {latency_cutoff!r}")
        return to_pipeline(comb, float(latency_cutoff), verbose=False)
    if isinstance(pipeline_stages, bool) or not isinstance(pipeline_stages, int) or pipeline_stages < 1:
        raise ConfigError(f"pipeline_stages must be an integer >= 1, got {pipeline_stages!r}")
    total = float(max(comb.latency))
    cutoff = max(total / pipeline_stages, 1.0)
    for _ in range(64):
        pipe = to_pipeline(comb, cutoff, verbose=False)
        if len(pipe.solutions) <= pipeline_stages:
            return pipe
        cutoff *= 1.1
    return pipe


def _list_files(root: Path) -> tuple[str, ...]:
    return tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()))


def generate_rtl(
    model: Any,
    out_dir: str | os.PathLike[str],
    pipeline_stages: int | None = None,
    latency_cutoff: float | None = None,
    language: str = "verilog",
    name: str = DEFAULT_NAME,
    overwrite: bool = False,
    clock_period_ns: float = 25.0,
    part: str = "xc7z020clg400-1",
) -> RtlProject:
    """Trace ``model`` and write its da4ml RTL project to ``out_dir``; returns the :class:`RtlProject`.

    Combinational by default; ``pipeline_stages=N`` cuts it into at most N register stages (II=1),
    ``latency_cutoff`` gives da4ml's delay budget per stage directly. The project is written to a
    temporary sibling directory and renamed into place, so a failure leaves no ``out_dir``.
    ``clock_period_ns`` and ``part`` only go into da4ml's constraint and vendor build scripts.
    """
    start = time.perf_counter()
    if language not in LANGUAGES:
        raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    if not name.isidentifier():
        raise ConfigError(f"RTL module name must be an identifier, got {name!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not overwrite:
            raise ArtifactError(f"{out_dir}: already exists; pass overwrite=True (--force) to replace it")
        if not (out_dir / MANIFEST).is_file():
            raise ArtifactError(f"{out_dir}: exists and is not an aeforge RTL project; refusing to replace it")
    model = to_sequential_model(model)
    comb = trace_model(model)
    pipe = _pipeline(comb, pipeline_stages, latency_cutoff)
    from da4ml.codegen import VerilogModel, VHDLModel

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        cls = VerilogModel if language == "verilog" else VHDLModel
        rtl = cls(pipe if pipe is not None else comb, name, staging, clock_period=clock_period_ns, part_name=part)
        rtl.write()
        in_port = _port("model_inp", comb.inp_qint)
        out_port = _port("model_out", comb.out_qint)
        if in_port.lane_type.frac_bits != model.input_type.frac_bits or in_port.lane_bits > model.input_type.bits:
            raise QuantizationError(
                f"input port came out as {in_port.lane_type.ap_type()}, not the input type {model.input_type.ap_type()}"
            )
        project = RtlProject(
            out_dir=out_dir,
            name=name,
            top=f"{name}_wrapper",
            language=language,
            input=in_port,
            output=out_port,
            input_shape=tuple(model.input_shape),
            output_shape=tuple(model.output_shape),
            input_type=model.input_type,
            output_type=model.output_type,
            pipelined=pipe is not None,
            latency_cycles=0 if pipe is None else len(pipe.solutions),
            latency_cutoff=None if pipe is None else float(rtl._latency_cutoff),
            estimated_luts=float(comb.cost),
            register_bits=0 if pipe is None else int(pipe.reg_bits),
            files=(),
            generation_seconds=0.0,
            extra={"combinational_delay": [float(v) for v in comb.latency], "da4ml_cost": float(comb.cost)},
        )
        from aeforge.hls.rtl.interface import interface_top_name, write_interface_top, write_testbench

        interface_top = interface_top_name(name)
        project = RtlProject(**{**project.__dict__, "interface_top": interface_top})
        write_interface_top(project, staging, interface_top)
        if language == "verilog":
            _write_binder(staging, project)
            write_testbench(project, staging, interface_top)
        files = tuple(f for f in _list_files(staging) if f != MANIFEST)
        seconds = time.perf_counter() - start
        project = RtlProject(
            **{**project.__dict__, "files": (*files, MANIFEST), "generation_seconds": round(seconds, 3)}
        )
        (staging / MANIFEST).write_text(json.dumps(project.as_dict(), indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return project


BINDER_ABI = "int64"
"""Lane type of the C ABI of the emulator library aeforge writes (``aeforge_inference64``)."""

_BINDER = r"""
// ---- written by aeforge: int64 lanes (port lanes up to 64 bits), replacing da4ml's int32 harness
#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>
#include <verilated.h>
#ifdef _OPENMP
#include <omp.h>
constexpr bool _openmp = true;
#else
constexpr bool _openmp = false;
#endif

namespace aeforge {
using Words = std::vector<uint32_t>;

// bits [pos, pos + bw) of the bus <- the low bw bits of value (bw <= 64)
inline void put(Words &words, size_t pos, uint64_t value, size_t bw) {
    for (size_t done = 0; done < bw;) {
        size_t idx = (pos + done) / 32, off = (pos + done) % 32;
        size_t take = std::min<size_t>(32 - off, bw - done);
        uint64_t chunk = (value >> done) & ((uint64_t(1) << take) - 1);
        words[idx] |= uint32_t(chunk << off);
        done += take;
    }
}

inline uint64_t get(const Words &words, size_t pos, size_t bw) {
    uint64_t value = 0;
    for (size_t done = 0; done < bw;) {
        size_t idx = (pos + done) / 32, off = (pos + done) % 32;
        size_t take = std::min<size_t>(32 - off, bw - done);
        uint64_t chunk = (uint64_t(words[idx]) >> off) & ((uint64_t(1) << take) - 1);
        value |= chunk << done;
        done += take;
    }
    return value;
}

template <typename T> std::enable_if_t<std::is_integral_v<T>> store(T &bus, const Words &words) {
    uint64_t value = words[0];
    if (words.size() > 1) value |= uint64_t(words[1]) << 32;
    bus = static_cast<T>(value);
}

template <size_t N> void store(VlWide<N> &bus, const Words &words) {
    for (size_t i = 0; i < N; ++i) bus[i] = i < words.size() ? words[i] : 0;
}

template <typename T> std::enable_if_t<std::is_integral_v<T>> load(const T &bus, Words &words) {
    uint64_t value = static_cast<uint64_t>(bus);
    words[0] = uint32_t(value);
    if (words.size() > 1) words[1] = uint32_t(value >> 32);
}

template <size_t N> void load(const VlWide<N> &bus, Words &words) {
    for (size_t i = 0; i < words.size() && i < N; ++i) words[i] = bus[i];
}

template <size_t N, size_t BW, typename Bus> void write_lanes(Bus &bus, const int64_t *lanes) {
    static_assert(BW > 0 && BW <= 64, "lane width must be 1..64 bits");
    Words words((N * BW + 31) / 32, 0);
    for (size_t i = 0; i < N; ++i) put(words, i * BW, static_cast<uint64_t>(lanes[i]), BW);
    store(bus, words);
}

template <size_t N, size_t BW, typename Bus> void read_lanes(const Bus &bus, int64_t *lanes) {
    static_assert(BW > 0 && BW <= 64, "lane width must be 1..64 bits");
    Words words((N * BW + 31) / 32, 0);
    load(bus, words);
    for (size_t i = 0; i < N; ++i) lanes[i] = static_cast<int64_t>(get(words, i * BW, BW));
}

template <typename C> void run(const int64_t *inp, int64_t *out, size_t n) {
    auto dut = std::make_unique<typename C::dut_t>();
    if constexpr (C::II == 0) {
        for (size_t i = 0; i < n; ++i) {
            write_lanes<C::N_inp, C::max_inp_bw>(dut->model_inp, &inp[i * C::N_inp]);
            dut->eval();
            read_lanes<C::N_out, C::max_out_bw>(dut->model_out, &out[i * C::N_out]);
        }
    } else {
        size_t cycles = n * C::II + (C::latency - C::II) + 1;
        for (size_t t = 0; t < cycles; ++t) {
            if (t < n * C::II && t % C::II == 0)
                write_lanes<C::N_inp, C::max_inp_bw>(dut->model_inp, &inp[t / C::II * C::N_inp]);
            dut->clk = 0;
            dut->eval();
            dut->clk = 1;
            dut->eval();
            if (t >= C::latency && (t - C::latency) % C::II == 0)
                read_lanes<C::N_out, C::max_out_bw>(dut->model_out, &out[(t - C::latency) / C::II * C::N_out]);
        }
    }
    dut->final();
}

// input A before the first clock edge, then B on every cycle; the output bus after each edge
// (after each eval for combinational logic)
template <typename C> void probe(const int64_t *inp_a, const int64_t *inp_b, int64_t *trace, size_t n_cycles) {
    auto dut = std::make_unique<typename C::dut_t>();
    for (size_t t = 0; t < n_cycles; ++t) {
        write_lanes<C::N_inp, C::max_inp_bw>(dut->model_inp, t == 0 ? inp_a : inp_b);
        if constexpr (C::II != 0) {
            dut->clk = 0;
            dut->eval();
            dut->clk = 1;
        }
        dut->eval();
        read_lanes<C::N_out, C::max_out_bw>(dut->model_out, &trace[t * C::N_out]);
    }
    dut->final();
}

template <typename C> void batch(const int64_t *inp, int64_t *out, size_t n, size_t n_threads) {
#ifdef _OPENMP
    size_t threads = n_threads == 0 ? size_t(omp_get_max_threads()) : n_threads;
    threads = std::max<size_t>(1, std::min(threads, n));
    size_t per = (n + threads - 1) / threads;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < threads; ++i) {
        size_t start = std::min(n, i * per), end = std::min(n, start + per);
        if (end > start) run<C>(&inp[start * C::N_inp], &out[start * C::N_out], end - start);
    }
#else
    (void)n_threads;
    run<C>(inp, out, n);
#endif
}
}  // namespace aeforge

extern "C" {
bool openmp_enabled() { return _openmp; }

void aeforge_inference64(const int64_t *inp, int64_t *out, size_t n_samples, size_t n_threads) {
    if (n_samples) aeforge::batch<CONFIG>(inp, out, n_samples, n_threads);
}

// latency measurement (see aeforge::probe)
void aeforge_latency_probe64(const int64_t *inp_a, const int64_t *inp_b, int64_t *trace, size_t n_cycles) {
    aeforge::probe<CONFIG>(inp_a, inp_b, trace, n_cycles);
}
}
"""


def _write_binder(root: Path, project: RtlProject) -> None:
    """Replace da4ml's C++ binder (int32 lanes, at most 32 bits) with aeforge's int64-lane one.

    Keeps da4ml's ``<top>_config`` struct (bus sizes, lane widths, II, latency) and exports
    ``aeforge_inference64`` and ``aeforge_latency_probe64`` (for
    :func:`~aeforge.hls.rtl.simulate.rtl_predict` and :func:`~aeforge.hls.rtl.simulate.measure_latency`).
    """
    import re

    binder = root / "sim" / f"{project.top}_binder.cc"
    config = f"{project.top}_config"
    text = binder.read_text(encoding="utf-8")
    match = re.search(rf"struct {config} \{{.*?\n\}};", text, flags=re.DOTALL)
    if match is None:
        raise ArtifactError(f"{binder}: da4ml's binder has no {config} struct (unsupported da4ml version)")
    for key, value in (("max_inp_bw", project.input.lane_bits), ("max_out_bw", project.output.lane_bits)):
        found = re.search(rf"{key} = (\d+);", match.group(0))
        if found is None or int(found.group(1)) != value:
            raise ArtifactError(f"{binder}: da4ml's {key} is not the {value}-bit lane aeforge computed")
    header = f'#include "V{project.top}.h"\n\n{match.group(0)}\n#define CONFIG {config}\n'
    binder.write_text(_BINDER.replace("#include <verilated.h>", "#include <verilated.h>\n" + header, 1),
                      encoding="utf-8")


def bus_layout_doc(project: RtlProject) -> str:
    """A short human-readable description of the top-level ports (for cards and READMEs)."""
    lines = [f"module {project.top}("]
    if project.pipelined:
        lines.append("  input  clk,")
    lines.append(
        f"  input  [{project.input.bus_bits - 1}:0] model_inp,  // {project.input.elements} x "
        f"{project.input.lane_type.ap_type()}, element j at [{project.input.lane_bits}*j +: {project.input.lane_bits}]"
    )
    lines.append(
        f"  output [{project.output.bus_bits - 1}:0] model_out  // {project.output.elements} x "
        f"{project.output.lane_type.ap_type()}, "
        f"element j at [{project.output.lane_bits}*j +: {project.output.lane_bits}]"
    )
    lines.append(
        f");  // latency {project.latency_cycles} cycles, II=1" if project.pipelined else ");  // combinational"
    )
    return "\n".join(lines)
