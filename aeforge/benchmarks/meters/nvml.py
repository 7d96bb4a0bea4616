"""NVIDIA GPU energy through NVML (``pip install nvidia-ml-py``, imported as ``pynvml``).

Preferred: ``nvmlDeviceGetTotalEnergyConsumption`` -- millijoules since the driver was loaded, a 64-bit
monotonic counter (Volta and newer), so the meter is a counter meter. Fallback (older GPUs, or
``mode="power"``): ``nvmlDeviceGetPowerUsage`` in milliwatts, sampled. Note that on Ampere and newer the power
reading is a ~1 s running average, so sampled energy smears window edges; the counter does not.

``pynvml`` is imported lazily; tests (and exotic setups) pass a module-like object as ``nvml=`` or put a fake
``pynvml`` into ``sys.modules`` with ``monkeypatch.setitem`` -- there is no GPU on the CI machine.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, ClassVar, Literal

from aeforge.benchmarks.meters.base import CounterMeter, MeterError, MeterKind, SamplingMeter
from aeforge.errors import ConfigError

NvmlMode = Literal["auto", "energy", "power"]


def _load_nvml() -> tuple[Any | None, str | None]:
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:
        return None, f"pynvml not importable ({exc}); install it with `pip install nvidia-ml-py`"


class NvmlMeter(CounterMeter, SamplingMeter):
    """GPU energy of the devices ``device_indices`` (default GPU 0); rails are ``gpu0``, ``gpu1``..."""

    name: ClassVar[str] = "nvml"
    default_interval_s: float = 0.1

    def __init__(self, device_indices: list[int] | None = None, mode: NvmlMode = "auto",
                 nvml: ModuleType | Any | None = None) -> None:
        if mode not in ("auto", "energy", "power"):
            raise ConfigError(f"meter nvml: mode must be auto, energy or power, not {mode!r}")
        self.device_indices = [0] if device_indices is None else list(device_indices)
        self.mode = mode
        self._nvml, self._reason = (nvml, None) if nvml is not None else _load_nvml()
        self._handles: dict[str, Any] = {}
        self._energy_supported = False
        if self._reason is None:
            self._reason = self._init()

    def _init(self) -> str | None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return f"NVML could not be initialised: {exc} (no NVIDIA driver or GPU?)"
        missing = [i for i in self.device_indices if not 0 <= i < count]
        if missing:
            return f"GPU index {missing} not present (NVML sees {count} device(s))"
        try:
            self._handles = {f"gpu{i}": nvml.nvmlDeviceGetHandleByIndex(i) for i in self.device_indices}
        except Exception as exc:
            return f"NVML device handle failed: {exc}"
        if self.mode in ("auto", "energy"):
            try:
                for handle in self._handles.values():
                    nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self._energy_supported = True
            except Exception as exc:
                if self.mode == "energy":
                    return f"nvmlDeviceGetTotalEnergyConsumption not supported (pre-Volta GPU?): {exc}"
        if not self._energy_supported:
            try:
                for handle in self._handles.values():
                    nvml.nvmlDeviceGetPowerUsage(handle)
            except Exception as exc:
                return f"neither NVML energy counter nor power reading is supported: {exc}"
        return None

    @property
    def kind(self) -> MeterKind:  # type: ignore[override]
        return "counter" if self._energy_supported else "sampling"

    @property
    def rails(self) -> list[str]:
        return list(self._handles) if self._handles else [f"gpu{i}" for i in self.device_indices]

    def unavailable_reason(self) -> str | None:
        return self._reason

    def read_energy_j(self) -> dict[str, float]:
        if not self._energy_supported:
            raise MeterError("NVML energy counter not supported on this GPU; use power sampling")
        try:
            return {rail: int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) * 1e-3
                    for rail, h in self._handles.items()}
        except Exception as exc:
            raise MeterError(f"nvmlDeviceGetTotalEnergyConsumption failed: {exc}") from exc

    def energy_range_j(self) -> dict[str, float | None]:
        return dict.fromkeys(self._handles)  # 64-bit counter: never wraps in practice

    def sample_power_w(self) -> dict[str, float]:
        try:
            return {rail: int(self._nvml.nvmlDeviceGetPowerUsage(h)) * 1e-3 for rail, h in self._handles.items()}
        except Exception as exc:
            raise MeterError(f"nvmlDeviceGetPowerUsage failed: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["source"] = "nvmlDeviceGetTotalEnergyConsumption" if self._energy_supported else "nvmlDeviceGetPowerUsage"
        return info

    def close(self) -> None:
        if self._nvml is not None and self._reason is None:
            with contextlib.suppress(Exception):  # shutting down twice / after the driver went away is harmless
                self._nvml.nvmlShutdown()
