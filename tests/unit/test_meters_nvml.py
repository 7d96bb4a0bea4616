"""NVML meter against a fake ``pynvml`` module (there is no GPU here: monkeypatching the module is the only way)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from aeforge.benchmarks.meters import MeterError, NvmlMeter, get_meter
from aeforge.errors import ConfigError


class NVMLError(Exception):
    pass


def fake_pynvml(*, n_gpus: int = 1, energy_supported: bool = True, init_fails: bool = False) -> SimpleNamespace:
    """A module-like object with the NVML calls the meter uses; energy in mJ, power in mW."""
    state = {"energy_mj": [100_000 * (i + 1) for i in range(n_gpus)], "power_mw": [75_000] * n_gpus, "alive": True}

    def init() -> None:
        if init_fails:
            raise NVMLError("NVML Shared Library Not Found")

    def energy(handle: int) -> int:
        if not energy_supported:
            raise NVMLError("Not Supported")
        if not state["alive"]:
            raise NVMLError("GPU is lost")
        return state["energy_mj"][handle]

    def power(handle: int) -> int:
        if not state["alive"]:
            raise NVMLError("GPU is lost")
        return state["power_mw"][handle]

    return SimpleNamespace(
        NVMLError=NVMLError, state=state, nvmlInit=init, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: n_gpus, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetTotalEnergyConsumption=energy, nvmlDeviceGetPowerUsage=power,
    )


def test_energy_counter_via_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(n_gpus=2)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = get_meter("nvml", device_indices=[0, 1])
    assert meter.is_available(), meter.unavailable_reason()
    assert meter.kind == "counter"
    assert meter.rails == ["gpu0", "gpu1"]
    assert meter.read_energy_j() == {"gpu0": pytest.approx(100.0), "gpu1": pytest.approx(200.0)}
    assert meter.energy_range_j() == {"gpu0": None, "gpu1": None}
    assert meter.sample_power_w() == {"gpu0": pytest.approx(75.0), "gpu1": pytest.approx(75.0)}
    assert meter.describe()["source"] == "nvmlDeviceGetTotalEnergyConsumption"
    fake.state["alive"] = False
    with pytest.raises(MeterError, match="GPU is lost"):
        meter.read_energy_j()
    meter.close()


def test_power_fallback_before_volta() -> None:
    meter = NvmlMeter(nvml=fake_pynvml(energy_supported=False))
    assert meter.is_available()
    assert meter.kind == "sampling"
    assert meter.sample_power_w() == {"gpu0": pytest.approx(75.0)}
    with pytest.raises(MeterError):
        meter.read_energy_j()
    assert "energy counter" not in (meter.unavailable_reason() or "")
    strict = NvmlMeter(mode="energy", nvml=fake_pynvml(energy_supported=False))
    assert "not supported" in strict.unavailable_reason()


def test_forced_power_mode() -> None:
    assert NvmlMeter(mode="power", nvml=fake_pynvml()).kind == "sampling"
    with pytest.raises(ConfigError):
        NvmlMeter(mode="joules", nvml=fake_pynvml())  # type: ignore[arg-type]


def test_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert "nvidia-ml-py" in NvmlMeter().unavailable_reason()
    assert "could not be initialised" in NvmlMeter(nvml=fake_pynvml(init_fails=True)).unavailable_reason()
    assert "not present" in NvmlMeter(device_indices=[3], nvml=fake_pynvml()).unavailable_reason()
