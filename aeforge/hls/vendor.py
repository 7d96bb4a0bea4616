"""Vendor HLS synthesis (Vitis, Vivado HLS, Catapult): run hls4ml's build, read the reports.

:class:`VendorBackend` subclasses form a small registry (:data:`BACKENDS`). ``build()`` runs
hls4ml's own ``Backend.build`` for the project's backend in a child Python process (its own
process group, with a timeout), so a crashing or hanging tool cannot take the caller down; the
reports are then read by the parsers here, which need no tool and are tested on recorded files:

* :func:`parse_vivado_csynth_xml`  ``<top>_csynth.xml`` of Vivado HLS / Vitis HLS (the ``<profile>`` XML);
* :func:`parse_vivado_utilization` ``report_utilization`` text (``vivado_synth.rpt``, Catapult's
  ``utilization_synth.rpt``); :func:`parse_vivado_timing_summary` ``report_timing_summary`` text;
* :func:`parse_catapult_rpt`       Catapult's ``rtl.rpt`` / ``cycle.rpt``.

:func:`find_reports` locates and merges them in an hls4ml project tree. BRAM is always counted in
18 Kb blocks: Vivado's "Block RAM Tile" (36 Kb) counts twice (hls4ml's ``VivadoSynthReport`` labels
the tile count itself ``BRAM_18K``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aeforge.artifact import confined_path
from aeforge.errors import AeforgeError, ArtifactError, ConfigError, ToolUnavailableError

__all__ = [
    "BACKENDS", "CatapultBackend", "SynthesisError", "SynthesisReport", "VendorBackend", "VitisBackend",
    "VivadoBackend", "backend_for_project", "find_reports", "get_backend", "parse_catapult_rpt",
    "parse_vivado_csynth_xml", "parse_vivado_timing_summary", "parse_vivado_utilization", "project_info",
]

Which = Callable[[str], "str | None"]
DEFAULT_TIMEOUT_S = 12 * 3600.0
BUILD_LOG = "aeforge_build.log"
_POST_SYNTH = ("vivado_synth.rpt", "utilization_synth.rpt")


class SynthesisError(AeforgeError):
    """A vendor build ran but failed, timed out, or left no fresh report."""


@dataclass
class SynthesisReport:
    """Numbers for the card; None where a report does not have them.

    ``resources_from`` says whether LUT/FF/DSP/BRAM are HLS estimates or logic-synthesis counts;
    ``extra`` holds the rest (``available_*``, ``uram``, ``area_score``, ``wns_ns``, ``hls_*`` estimates).
    """

    tool: str
    latency_cycles_min: int | None = None
    latency_cycles_max: int | None = None
    ii_min: int | None = None
    ii_max: int | None = None
    lut: int | None = None
    ff: int | None = None
    dsp: int | None = None
    bram_18k: int | None = None
    clock_period_ns_estimated: float | None = None
    clock_period_ns_target: float | None = None
    fmax_mhz: float | None = None
    source_files: list[str] = field(default_factory=list)
    resources_from: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- parsers


def _num(text: str | None, path: Path, name: str, kind: type = int, undef_ok: bool = False) -> Any:
    """``text`` as ``kind``; ArtifactError naming file and field when absent or not a number."""
    if text is None or not text.strip():
        raise ArtifactError(f"{path}: missing {name}")
    text = text.strip()
    if undef_ok and text.lower() in ("undef", "-", "?"):
        return None
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise ArtifactError(f"{path}: {name} is not a number: {text!r}") from None
    return round(value) if kind is int else value


def _fmax(period_ns: float | None) -> float | None:
    return round(1000.0 / period_ns, 3) if period_ns and period_ns > 0 else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: report not found") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable report: {exc}") from None


def parse_vivado_csynth_xml(path: str | Path) -> SynthesisReport:
    """Read a Vivado HLS / Vitis HLS ``<top>_csynth.xml`` (latency ``undef`` becomes None)."""
    path = Path(path)
    try:
        root = ET.fromstring(_read(path))
    except ET.ParseError as exc:
        raise ArtifactError(f"{path}: not valid XML ({exc})") from None
    if root.tag != "profile":
        raise ArtifactError(f"{path}: not a csynth report (root <{root.tag}>, expected <profile>)")

    def num(xpath: str, kind: type = int, undef_ok: bool = False) -> Any:
        node = root.find(xpath)
        return _num(None if node is None else node.text, path, xpath, kind, undef_ok)

    res, lat = "AreaEstimates/Resources/", "PerformanceEstimates/SummaryOfOverallLatency/"
    if root.find(res.rstrip("/")) is None:
        raise ArtifactError(f"{path}: missing AreaEstimates/Resources")
    legacy = root.find(res + "DSP48E") is not None  # Vivado HLS says DSP48E, Vitis HLS says DSP
    est = num("PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod", float)
    avail = "AreaEstimates/AvailableResources/"
    extra = {f"available_{'dsp' if c.tag == 'DSP48E' else c.tag.lower()}": num(avail + c.tag)
             for c in root.findall(avail + "*")}
    if root.find(res + "URAM") is not None:
        extra["uram"] = num(res + "URAM")
    return SynthesisReport(
        tool="vivado_hls" if legacy else "vitis_hls",
        latency_cycles_min=num(lat + "Best-caseLatency", undef_ok=True),
        latency_cycles_max=num(lat + "Worst-caseLatency", undef_ok=True),
        ii_min=num(lat + "Interval-min", undef_ok=True),
        ii_max=num(lat + "Interval-max", undef_ok=True),
        lut=num(res + "LUT"), ff=num(res + "FF"), dsp=num(res + ("DSP48E" if legacy else "DSP")),
        bram_18k=num(res + "BRAM_18K"),
        clock_period_ns_estimated=est,
        clock_period_ns_target=num("UserAssignments/TargetClockPeriod", float)
        if root.find("UserAssignments/TargetClockPeriod") is not None else None,
        fmax_mhz=_fmax(est), source_files=[str(path)], resources_from="hls-estimate", extra=extra,
    )


def _table_rows(text: str) -> dict[str, tuple[str, str | None]]:
    """First ``| label | used | ... | available |`` row per label of ``report_utilization`` tables."""
    rows: dict[str, tuple[str, str | None]] = {}
    available = 3
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        label = cells[0].rstrip("*").strip()
        if label == "Site Type":
            available = cells.index("Available") if "Available" in cells else 3
            continue
        rows.setdefault(label, (cells[1], cells[available] if len(cells) > available else None))
    return rows


def parse_vivado_utilization(path: str | Path) -> SynthesisReport:
    """Read Vivado ``report_utilization`` text (7-series "Slice ..." or UltraScale "CLB ..." rows)."""
    path = Path(path)
    rows = _table_rows(_read(path))

    def pick(name: str, *labels: str) -> tuple[float, str | None]:
        for label in labels:
            if label in rows:
                return _num(rows[label][0], path, f'"{label}"', float), rows[label][1]
        raise ArtifactError(f"{path}: missing {name} row ({' / '.join(repr(x) for x in labels)})")

    lut, lut_avail = pick("LUT", "CLB LUTs", "Slice LUTs")
    ff, ff_avail = pick("FF", "CLB Registers", "Slice Registers", "Register as Flip Flop")
    dsp, dsp_avail = pick("DSP", "DSPs")
    tiles, tiles_avail = pick("BRAM", "Block RAM Tile")
    extra: dict[str, float] = {}
    for key, avail, scale in (("lut", lut_avail, 1), ("ff", ff_avail, 1), ("dsp", dsp_avail, 1),
                              ("bram_18k", tiles_avail, 2)):
        if avail and re.fullmatch(r"[\d.]+", avail):
            extra[f"available_{key}"] = round(float(avail) * scale)
    if "URAM" in rows:
        extra["uram"] = _num(rows["URAM"][0], path, '"URAM"')
    return SynthesisReport(tool="vivado", lut=round(lut), ff=round(ff), dsp=round(dsp), bram_18k=round(tiles * 2),
                           source_files=[str(path)], resources_from="logic-synthesis", extra=extra)


def parse_vivado_timing_summary(path: str | Path) -> SynthesisReport:
    """Read Vivado ``report_timing_summary`` text: first clock's period and WNS give the achieved Fmax."""
    path = Path(path)
    lines = _read(path).splitlines()
    wns = period = None
    for i, line in enumerate(lines):
        if wns is None and "WNS(ns)" in line:
            values = next((v for v in lines[i + 2:] if v.strip()), "").split()
            wns = _num(values[0] if values else None, path, "WNS(ns)", float)
        match = re.match(r"^\s*\S+\s+\{[^}]*\}\s+([\d.]+)\s+[\d.]+\s*$", line)
        if period is None and match:
            period = _num(match.group(1), path, "Clock Summary Period(ns)", float)
    if wns is None:
        raise ArtifactError(f"{path}: missing WNS(ns) in the Design Timing Summary")
    if period is None:
        raise ArtifactError(f"{path}: missing the Clock Summary period")
    achieved = round(period - wns, 3)
    return SynthesisReport(tool="vivado", clock_period_ns_estimated=achieved, clock_period_ns_target=period,
                           fmax_mhz=_fmax(achieved), source_files=[str(path)], extra={"wns_ns": wns})


def parse_catapult_rpt(path: str | Path) -> SynthesisReport:
    """Read Catapult ``rtl.rpt`` / ``cycle.rpt``: ``Design Total`` latency and throughput (II), clock, area."""
    path = Path(path)
    text = _read(path)
    total = re.search(r"^\s*Design Total:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if not total:
        raise ArtifactError(f"{path}: missing 'Design Total:' row of 'Processes/Blocks in Design'")
    latency = _num(total.group(2), path, "Design Total latency")
    throughput = _num(total.group(3), path, "Design Total throughput")
    latency = None if latency is not None and latency < 0 else latency  # -1: not determined
    clock = re.search(r"^\s*\S+\s+(?:rising|falling)\s+([\d.]+)\s", text, re.M)
    area = re.search(r"Total Area Score:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text)
    return SynthesisReport(
        tool="catapult", latency_cycles_min=latency, latency_cycles_max=latency, ii_min=throughput,
        ii_max=throughput, clock_period_ns_target=_num(clock.group(1), path, "clock period", float) if clock else None,
        source_files=[str(path)], extra={"area_score": float(area.group(3))} if area else {},
    )


def _merge(hls: SynthesisReport, post: list[SynthesisReport]) -> SynthesisReport:
    """HLS numbers, with resources and timing from logic synthesis where it ran (estimates kept as ``hls_*``)."""
    out = SynthesisReport(**{**hls.as_dict(), "source_files": list(hls.source_files), "extra": dict(hls.extra)})
    for rep in post:
        out.source_files += rep.source_files
        out.tool = out.tool if "+" in out.tool else f"{out.tool}+vivado"
        if rep.lut is not None:
            for key in ("lut", "ff", "dsp", "bram_18k"):
                if getattr(out, key) is not None:
                    out.extra[f"hls_{key}"] = getattr(out, key)
                setattr(out, key, getattr(rep, key))
            out.resources_from = "logic-synthesis"
        if rep.fmax_mhz is not None:
            out.fmax_mhz = rep.fmax_mhz
            out.clock_period_ns_target = out.clock_period_ns_target or rep.clock_period_ns_target
            out.clock_period_ns_estimated = out.clock_period_ns_estimated or rep.clock_period_ns_estimated
        out.extra.update(rep.extra)
    return out


# --------------------------------------------------------------------------- project layout


class ProjectInfo(NamedTuple):
    backend: str  # registry key: vitis, vivado, catapult
    hls4ml_backend: str  # as hls4ml names it (Vitis, VivadoAccelerator, ...)
    name: str  # ProjectName, the top function
    prj_dir: str  # <name>_prj unless ProjectDir says otherwise


def _backend_key(hls4ml_name: str, where: Path) -> str:
    low = hls4ml_name.lower()
    for key in ("vitis", "vivado", "catapult"):
        if low.startswith(key):
            return key
    raise ConfigError(f"{where}: hls4ml backend {hls4ml_name!r} has no vendor synthesis (Vitis, Vivado, Catapult)")


def project_info(project_dir: str | Path) -> ProjectInfo:
    """Backend and names of an hls4ml project, from ``hls4ml_config.yml`` (top-level keys, read as text)."""
    project = Path(project_dir)
    config = project / "hls4ml_config.yml"
    if not config.is_file():
        raise ArtifactError(f"{project}: not an hls4ml project (hls4ml_config.yml missing)")
    keys = dict(re.findall(r"^(Backend|ProjectName|ProjectDir):[ \t]*['\"]?([^'\"\s]*)", _read(config), re.M))
    for key in ("Backend", "ProjectName"):
        if not keys.get(key):
            raise ArtifactError(f"{config}: missing {key}")
    name = keys["ProjectName"]
    prj = keys.get("ProjectDir") if keys.get("ProjectDir") not in (None, "", "null", "~") else f"{name}_prj"
    return ProjectInfo(_backend_key(keys["Backend"], config), keys["Backend"], name, prj)


def find_reports(project_dir: str | Path) -> SynthesisReport:
    """Locate and merge the reports of an hls4ml project (HLS report first in ``source_files``).

    Vitis/Vivado: ``<name>_prj/solution*/syn/report/<top>_csynth.xml`` and ``vivado_synth.rpt``;
    Catapult: ``<name>_prj/<name>.v*/rtl.rpt`` (else ``cycle.rpt``) and its ``vivado_concat_v/`` reports.
    """
    project = Path(project_dir)
    info = project_info(project)
    prj = confined_path(project, info.prj_dir, "ProjectDir of hls4ml_config.yml")
    post: list[SynthesisReport] = []
    if info.backend == "catapult":
        versions = sorted((p for p in prj.glob(f"{info.name}.v*") if p.is_dir()),
                          key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
        hls_file = next((f for v in reversed(versions) for f in (v / "rtl.rpt", v / "cycle.rpt") if f.is_file()), None)
        if hls_file is None:
            raise ArtifactError(f"{project}: no Catapult report ({info.prj_dir}/{info.name}.v*/rtl.rpt); build first")
        hls = parse_catapult_rpt(hls_file)
        util: Path = hls_file.parent / "vivado_concat_v" / "utilization_synth.rpt"
        timing: Path | None = hls_file.parent / "vivado_concat_v" / "timing_summary_synth.rpt"
    else:
        top = info.name + ("_axi" if "accelerator" in info.hls4ml_backend.lower() else "")
        found = list(prj.glob(f"solution1/syn/report/{top}_csynth.xml")) or list(
            prj.glob(f"*/syn/report/{top}_csynth.xml"))
        hls_file = max(found, key=lambda p: p.stat().st_mtime, default=None)
        if hls_file is None:
            raise ArtifactError(f"{project}: no C-synthesis report ({info.prj_dir}/solution1/syn/report/"
                                f"{top}_csynth.xml); build first")
        hls = parse_vivado_csynth_xml(hls_file)
        util, timing = project / "vivado_synth.rpt", None  # hls4ml's vivado_synth.tcl reports utilization only
    # Logic synthesis runs after HLS: an older report belongs to an earlier build and is ignored.
    built = hls_file.stat().st_mtime - 1.0
    if util.is_file() and util.stat().st_mtime >= built:
        post.append(parse_vivado_utilization(util))
    if timing is not None and timing.is_file() and timing.stat().st_mtime >= built:
        post.append(parse_vivado_timing_summary(timing))
    return _merge(hls, post)


# --------------------------------------------------------------------------- backends

# Runs in the child: hls4ml's own Backend.build on a stand-in model (it only asks the config for
# the output directory and project name). hls4ml's report readers are stubbed out: aeforge reads
# the reports itself, and hls4ml's readers crash on some projects (python/tuple tags in the YAML).
# Vivado and Catapult builds ignore os.system's status, so a failing tool command is recorded here.
_BUILD_SCRIPT = r"""
import json, os, sys, types
from hls4ml.backends import get_backend
backend, out_dir, name, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
for mod in [m for k, m in list(sys.modules.items()) if k.startswith("hls4ml.backends")]:
    for attr in ("parse_vivado_report", "parse_catapult_report"):
        if hasattr(mod, attr):
            setattr(mod, attr, lambda *a, **k: {})
failed, _system = [], os.system
def _checked(cmd):
    rc = _system(cmd)
    if rc and not cmd.lstrip().startswith("command -v"):
        failed.append(f"`{cmd}` exited with status {os.waitstatus_to_exitcode(rc)}")
    return rc
os.system = _checked
config = types.SimpleNamespace(get_output_dir=lambda: out_dir, get_project_name=lambda: name)
get_backend(backend).build(types.SimpleNamespace(config=config), **kwargs)
sys.exit("aeforge: " + failed[0] if failed else 0)
"""


def _last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        return next((x.strip()[:200] for x in reversed(log.read_text(errors="replace").splitlines()) if x.strip()), "")
    return ""


def _run_isolated(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout_s: float, label: str) -> int:
    """Run ``argv`` in its own process group, output to ``log``; the whole group is killed on timeout."""
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except BaseException as exc:
            if hasattr(os, "killpg"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise SynthesisError(f"{label} build timed out after {timeout_s:.0f} s (log: {log})") from None
            raise


class VendorBackend:
    """One vendor HLS tool driven through hls4ml; ``which``/``environ`` are injectable for tests."""

    name = ""  # registry key, as in ProjectInfo.backend
    label = ""
    executable = ""  # what hls4ml runs
    how = ""  # how to get it

    def __init__(self, which: Which = shutil.which, environ: Mapping[str, str] | None = None) -> None:
        self.which = which
        self.environ = dict(os.environ if environ is None else environ)

    def tool_path(self) -> str | None:
        return self.which(self.executable)

    def is_available(self) -> bool:
        return self.tool_path() is not None

    def why_unavailable(self) -> str:
        """One line naming the missing executable and how to get it ("" when available)."""
        return "" if self.is_available() else f"{self.label} needs {self.executable} on PATH ({self.how})"

    def build(self, project_dir: str | Path, csim: bool = False, synth: bool = True, cosim: bool = False,
              vsynth: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> SynthesisReport:
        """Run hls4ml's build for this backend in ``project_dir`` and return :func:`find_reports`."""
        project = Path(project_dir).resolve()
        info = project_info(project)
        if info.backend != self.name:
            raise ConfigError(f"{project}: an hls4ml {info.hls4ml_backend} project cannot be built with {self.label}")
        exe = self.tool_path()
        if exe is None:
            raise ToolUnavailableError(self.why_unavailable())
        if vsynth and self.which("vivado") is None:
            raise ToolUnavailableError("logic synthesis (vsynth) needs vivado on PATH "
                                       "(install AMD Vivado, source its settings64.sh)")
        if not (csim or synth or cosim or vsynth):
            raise ConfigError("nothing to build: enable at least one of csim, synth, cosim, vsynth")
        env = {**self.environ, "PATH": os.pathsep.join([str(Path(exe).parent), self.environ.get("PATH", "")])}
        kwargs = {"csim": csim, "synth": synth, "cosim": cosim, "vsynth": vsynth}
        log, start = project / BUILD_LOG, time.time() - 2.0  # slack for coarse file timestamps
        argv = [sys.executable, "-c", _BUILD_SCRIPT, info.hls4ml_backend, str(project), info.name, json.dumps(kwargs)]
        rc = _run_isolated(argv, project, env, log, timeout_s, self.label)
        if rc != 0:
            raise SynthesisError(f"{self.label} build failed (exit {rc}): {_last_line(log)} (log: {log})")
        report = find_reports(project)
        files = [Path(f) for f in report.source_files]
        wanted = [files[0]] if synth else []  # the HLS report comes first
        if vsynth:
            post = [f for f in files if f.name in _POST_SYNTH]
            if not post:
                raise SynthesisError(f"{self.label} build made no logic-synthesis report (log: {log})")
            wanted.append(post[0])
        stale = [str(f) for f in wanted if f.stat().st_mtime < start]
        if stale:
            raise SynthesisError(f"{self.label} build left an old report, {stale[0]} (log: {log})")
        return report


class VitisBackend(VendorBackend):
    name, label, executable = "vitis", "Vitis HLS", "vitis-run"
    how = "hls4ml's Vitis backend runs `vitis-run --mode hls`: install AMD Vitis >= 2023.2, source its settings64.sh"

    def why_unavailable(self) -> str:
        why = super().why_unavailable()
        legacy = self.which("vitis_hls") if why else None
        return f"{why}; found {legacy}, but hls4ml 1.3 drives vitis-run only" if legacy else why


class VivadoBackend(VendorBackend):
    name, label, executable = "vivado", "Vivado HLS", "vivado_hls"
    how = "legacy Vivado HLS <= 2020.1: source its settings64.sh; newer tools use the Vitis backend"


class CatapultBackend(VendorBackend):
    name, label, executable = "catapult", "Catapult HLS", "catapult"
    how = "Siemens Catapult HLS (licensed): put catapult on PATH or set MGC_HOME"

    def tool_path(self) -> str | None:
        found = self.which(self.executable)
        for var in ("MGC_HOME", "CATAPULT_HOME"):
            home = self.environ.get(var)
            candidate = Path(home, "bin", "catapult") if home else None
            if found is None and candidate is not None and os.access(candidate, os.X_OK):
                found = str(candidate)
        return found


BACKENDS: dict[str, type[VendorBackend]] = {"vitis": VitisBackend, "vivado": VivadoBackend, "catapult": CatapultBackend}


def get_backend(name: str, which: Which = shutil.which, environ: Mapping[str, str] | None = None) -> VendorBackend:
    """The registered backend called ``name`` (case-insensitive)."""
    try:
        return BACKENDS[name.lower()](which, environ)
    except KeyError:
        raise ConfigError(f"unknown vendor backend {name!r} (known: {', '.join(BACKENDS)})") from None


def backend_for_project(project_dir: str | Path, which: Which = shutil.which,
                        environ: Mapping[str, str] | None = None) -> VendorBackend:
    """The backend an hls4ml project was written for (its ``hls4ml_config.yml`` ``Backend``)."""
    return get_backend(project_info(project_dir).backend, which, environ)
