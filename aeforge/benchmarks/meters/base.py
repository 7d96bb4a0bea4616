"""Common interface of the power meters.

A meter is one of three kinds:

* ``"counter"`` -- monotonic cumulative energy per domain (RAPL ``energy_uj``, NVML total energy). The caller
  reads :meth:`CounterMeter.read_energy_j` at the window edges (and in between, to see wrap-arounds).
* ``"sampling"`` -- instantaneous power per rail (Jetson INA3221, Raspberry Pi 5 PMIC, NVML power). The caller
  samples :meth:`SamplingMeter.sample_power_w` from a background thread and integrates over time.
* ``"trace"`` -- an external recording read after the run (:mod:`aeforge.benchmarks.meters.external`).

Only the rails/domains in :attr:`PowerMeter.rails` are returned by the read methods, so summing what a meter
returns never double counts (e.g. RAPL ``core`` is inside ``package``; Jetson ``VDD_SOC`` is inside ``VDD_IN``).
Meters never raise from :meth:`PowerMeter.unavailable_reason`; reading a meter that has gone away raises
:class:`MeterError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

MeterKind = Literal["counter", "sampling", "trace", "none"]


class MeterError(RuntimeError):
    """A meter could not be read (it disappeared, permission changed, the device reset...)."""


class PowerMeter:
    """Base class: a named source of energy or power readings."""

    name: ClassVar[str] = "meter"
    kind: MeterKind = "none"

    def unavailable_reason(self) -> str | None:
        """Why this meter cannot be used here (None when it can)."""
        raise NotImplementedError

    def is_available(self) -> bool:
        """True when the meter can be read on this machine."""
        return self.unavailable_reason() is None

    @property
    def rails(self) -> list[str]:
        """The rails/domains that are counted (summed) by this meter."""
        return []

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description: name, kind, counted rails, availability."""
        return {"name": self.name, "kind": self.kind, "rails_counted": self.rails,
                "unavailable_reason": self.unavailable_reason()}

    def close(self) -> None:
        """Release resources (no-op by default)."""


class CounterMeter(PowerMeter):
    """A meter exposing monotonic cumulative energy counters."""

    kind: MeterKind = "counter"

    def read_energy_j(self) -> dict[str, float]:
        """Cumulative energy per counted domain in joules (raises :class:`MeterError`)."""
        raise NotImplementedError

    def energy_range_j(self) -> dict[str, float | None]:
        """Counter wrap-around range per domain in joules (None: unknown, a backwards step is an error)."""
        return dict.fromkeys(self.rails)


class SamplingMeter(PowerMeter):
    """A meter exposing instantaneous power per rail."""

    kind: MeterKind = "sampling"
    #: suggested interval between samples (the sensor's own update period, roughly)
    default_interval_s: float = 0.05

    def sample_power_w(self) -> dict[str, float]:
        """Instantaneous power per counted rail in watts (raises :class:`MeterError`)."""
        raise NotImplementedError


class UnavailableMeter(PowerMeter):
    """Placeholder when no meter is available; carries the reason so results can say why."""

    name: ClassVar[str] = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def unavailable_reason(self) -> str | None:
        return self.reason


def read_text(path: Path) -> str:
    """Read a small sysfs file, stripped (raises OSError)."""
    return path.read_text().strip()


def try_read_text(path: Path) -> str | None:
    """Read a small sysfs file or return None when it is absent/unreadable."""
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError):
        return None
