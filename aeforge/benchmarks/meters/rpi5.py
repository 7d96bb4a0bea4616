"""Raspberry Pi 5 PMIC rails from ``vcgencmd pmic_read_adc`` (sampling meter).

The command prints one line per ADC channel, currents and voltages separately::

     3V7_WL_SW_A current(0)=0.00390372A
     3V7_WL_SW_V volt(8)=3.74023200V

Rails are paired by name (the ``_A``/``_V`` suffix removed) and power is V x I summed over the paired rails.
Unpaired channels (``EXT5V_V``, ``BATT_V``: voltage only) are not counted. The figure is the PMIC *output*
side: it excludes the 5 V input regulator losses and USB/peripheral power (a USB-C power meter sees more).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from aeforge.benchmarks.meters.base import MeterError, SamplingMeter

COMMAND = ("vcgencmd", "pmic_read_adc")
_LINE_RE = re.compile(r"^\s*(\S+)_([AV])\s+(current|volt)\((\d+)\)=([-+0-9.eE]+)([AV])\s*$")

RunCommand = Callable[[Sequence[str]], str]


def _run_vcgencmd(command: Sequence[str]) -> str:
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(f"{command[0]} not found on PATH (Raspberry Pi OS package raspi-utils)")
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=5.0, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise MeterError(f"`{' '.join(command)}` exited {result.returncode}: {output}")
    return result.stdout


def parse_pmic_read_adc(text: str) -> dict[str, dict[str, float]]:
    """``{rail: {"current_a": ..., "voltage_v": ...}}`` from ``vcgencmd pmic_read_adc`` output (unpaired kept)."""
    rails: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _LINE_RE.match(line)
        if match is None:
            continue
        rail, suffix, quantity, _channel, value, unit = match.groups()
        if (suffix, unit) not in (("A", "A"), ("V", "V")) or (quantity == "current") != (suffix == "A"):
            continue
        rails.setdefault(rail, {})["current_a" if suffix == "A" else "voltage_v"] = float(value)
    return rails


def rail_powers_w(rails: dict[str, dict[str, float]]) -> dict[str, float]:
    """Power per rail (V x I) for the rails that have both a current and a voltage reading."""
    return {rail: r["voltage_v"] * r["current_a"] for rail, r in rails.items()
            if {"voltage_v", "current_a"} <= r.keys()}


class Rpi5Meter(SamplingMeter):
    """Raspberry Pi 5 PMIC power (sum of V x I over the paired rails); ``run_command`` is injectable for tests."""

    name: ClassVar[str] = "rpi5"
    default_interval_s: float = 0.1

    def __init__(self, run_command: RunCommand | None = None, rails: list[str] | None = None) -> None:
        self.run_command = run_command or _run_vcgencmd
        self.selected = rails
        self._rails: list[str] = []
        self._reason = self._probe()

    def _read(self) -> dict[str, float]:
        try:
            text = self.run_command(COMMAND)
        except MeterError:
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            raise MeterError(f"`{' '.join(COMMAND)}` failed: {exc}") from exc
        return rail_powers_w(parse_pmic_read_adc(text))

    def _probe(self) -> str | None:
        try:
            powers = self._read()
        except MeterError as exc:
            return str(exc)
        if not powers:
            return f"`{' '.join(COMMAND)}` printed no current/voltage pairs (not a Raspberry Pi 5, or old firmware)"
        if self.selected is not None:
            unknown = [r for r in self.selected if r not in powers]
            if unknown:
                return f"unknown Raspberry Pi 5 rail(s) {unknown}; the PMIC reports {sorted(powers)}"
            self._rails = list(self.selected)
        else:
            self._rails = sorted(powers)
        return None

    @property
    def rails(self) -> list[str]:
        return list(self._rails)

    def unavailable_reason(self) -> str | None:
        return self._reason

    def sample_power_w(self) -> dict[str, float]:
        powers = self._read()
        missing = [r for r in self._rails if r not in powers]
        if missing:
            raise MeterError(f"Raspberry Pi 5 rail(s) {missing} vanished from `{' '.join(COMMAND)}` output")
        return {r: powers[r] for r in self._rails}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["note"] = "PMIC output rails; excludes 5 V input conversion losses and USB peripherals"
        return info
