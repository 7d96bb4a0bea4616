"""Power meters, one vendor a module, and a small registry.

``get_meter(name, **kw)`` builds one (it may be unavailable: ask ``unavailable_reason()``), ``auto_meter()``
picks the first available one for this machine, ``meter_from_spec("external:trace.csv")`` parses the CLI's
``--meter`` value, ``meter_status()`` says for every meter why it can or cannot be used (for ``doctor``).
"""

from __future__ import annotations

from typing import Any

from aeforge.benchmarks.meters.base import (
    CounterMeter,
    MeterError,
    PowerMeter,
    SamplingMeter,
    UnavailableMeter,
)
from aeforge.benchmarks.meters.external import ExternalTraceMeter, PowerTrace, parse_power_trace
from aeforge.benchmarks.meters.jetson import JetsonMeter, parse_tegrastats
from aeforge.benchmarks.meters.nvml import NvmlMeter
from aeforge.benchmarks.meters.rapl import RaplMeter
from aeforge.benchmarks.meters.rpi5 import Rpi5Meter
from aeforge.errors import ConfigError

METERS: dict[str, type[PowerMeter]] = {
    "rapl": RaplMeter,
    "nvml": NvmlMeter,
    "jetson": JetsonMeter,
    "rpi5": Rpi5Meter,
    "external": ExternalTraceMeter,
}
#: ``auto`` order: board-level monitors first (they see the whole device), then CPU, then GPU
AUTO_ORDER = ("jetson", "rpi5", "rapl", "nvml")
#: runners whose work happens on an NVIDIA GPU: ``auto`` prefers NVML for them
GPU_RUNNERS = frozenset({"trt", "tensorrt", "torch-cuda", "cuda", "ort-cuda"})

__all__ = [
    "METERS", "CounterMeter", "ExternalTraceMeter", "JetsonMeter", "MeterError", "NvmlMeter", "PowerMeter",
    "PowerTrace", "RaplMeter", "Rpi5Meter", "SamplingMeter", "UnavailableMeter", "auto_meter", "available_meters",
    "get_meter", "meter_from_spec", "meter_status", "parse_power_trace", "parse_tegrastats",
]


def get_meter(name: str, **kwargs: Any) -> PowerMeter:
    """Build the meter called ``name`` (see :data:`METERS`); unknown names raise ConfigError."""
    try:
        cls = METERS[name]
    except KeyError:
        choices = ", ".join(n for n in METERS if n != "external")
        raise ConfigError(f"--meter: unknown meter {name!r}; choose auto, none, {choices} or external:FILE") from None
    return cls(**kwargs)


def _build_quietly(name: str, kwargs: dict[str, Any]) -> PowerMeter:
    try:
        return get_meter(name, **kwargs.get(name, {}))
    except Exception as exc:  # a probe must never take the benchmark down
        return UnavailableMeter(f"{name}: {type(exc).__name__}: {exc}")


def meter_status(**kwargs: dict[str, Any]) -> dict[str, str | None]:
    """For each built-in live meter: None when usable here, else the reason (kwargs: per-meter arguments)."""
    return {name: _build_quietly(name, kwargs).unavailable_reason() for name in AUTO_ORDER}


def available_meters(**kwargs: dict[str, Any]) -> list[str]:
    """Names of the live meters usable on this machine, in ``auto`` order."""
    return [name for name, reason in meter_status(**kwargs).items() if reason is None]


def auto_meter(runner: str | None = None, **kwargs: dict[str, Any]) -> PowerMeter:
    """First available meter (NVML first for GPU runners); an :class:`UnavailableMeter` saying why otherwise.

    ``kwargs`` are per-meter arguments, e.g. ``auto_meter(rapl={"sysfs_root": tmp})``.
    """
    order = list(AUTO_ORDER)
    if runner is not None and runner.lower() in GPU_RUNNERS:
        order.remove("nvml")
        order.insert(0, "nvml")
    reasons = []
    for name in order:
        meter = _build_quietly(name, kwargs)
        reason = meter.unavailable_reason()
        if reason is None:
            return meter
        reasons.append(f"{name}: {reason}")
        meter.close()
    return UnavailableMeter("no power meter available (" + "; ".join(reasons) + ")")


def meter_from_spec(spec: str, *, runner: str | None = None) -> PowerMeter:
    """Parse a ``--meter`` value: ``auto``, ``none``, ``rapl``, ``nvml``, ``jetson``, ``rpi5``, ``external:FILE``.

    ``external:FILE@OFFSET`` adds ``OFFSET`` seconds to the file's timestamps (see
    :mod:`aeforge.benchmarks.meters.external`).
    """
    spec = spec.strip()
    if spec == "auto":
        return auto_meter(runner)
    if spec in ("none", ""):
        return UnavailableMeter("no power meter requested (--meter none)")
    if spec.startswith("external:"):
        target = spec[len("external:"):]
        offset_s = 0.0
        if "@" in target:
            head, _, tail = target.rpartition("@")
            try:
                offset_s = float(tail)
            except ValueError:
                pass  # an '@' that is part of the file name
            else:
                target = head
        if not target:
            raise ConfigError("--meter external:FILE needs a file name")
        return ExternalTraceMeter(target, offset_s=offset_s)
    if spec == "external":
        raise ConfigError("--meter external needs a file: external:FILE")
    return get_meter(spec)
