"""NVIDIA Jetson on-module INA3221 power monitors (sampling meter) and a ``tegrastats`` line parser.

JetPack 5/6 (hwmon driver ``ina3221``): ``/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon*/`` holds per
channel ``in{N}_label`` (rail name, ``NC`` for unconnected), ``in{N}_input`` (bus voltage, mV) and
``curr{N}_input`` (current, mA). JetPack 4 and older (iio driver ``ina3221x``):
``/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device*/`` holds ``rail_name_{N}`` and ``in_power{N}_input``
(mW).

Counting: when the board has a module-input rail (``VDD_IN`` on Orin NX/Nano, Xavier NX, TX2; ``POM_5V_IN`` on
Nano/TX1) it is the whole-module figure and the other rails are inside it, so only it is counted. Otherwise
(AGX Xavier, AGX Orin) all connected rails are summed. ``rails=[...]`` overrides the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aeforge.benchmarks.meters.base import MeterError, SamplingMeter, try_read_text
from aeforge.errors import ConfigError

#: rails that measure the whole module input (the others are sub-rails of it)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

_TEGRA_RE = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?!\S)")


@dataclass(frozen=True)
class InaChannel:
    """One connected INA3221 channel: either voltage+current files (hwmon) or a power file (iio)."""

    rail: str
    voltage_mv_path: Path | None = None
    current_ma_path: Path | None = None
    power_mw_path: Path | None = None

    def read_power_w(self) -> float:
        """Instantaneous power of this channel in watts (raises OSError/ValueError)."""
        if self.power_mw_path is not None:
            return int(self.power_mw_path.read_text().strip()) * 1e-3
        assert self.voltage_mv_path is not None and self.current_ma_path is not None
        voltage_mv = int(self.voltage_mv_path.read_text().strip())
        current_ma = int(self.current_ma_path.read_text().strip())
        return voltage_mv * current_ma * 1e-6


def discover_channels(sysfs_root: str | Path = "/sys") -> list[InaChannel]:
    """Connected INA3221 channels (hwmon layout first, then the JetPack <= 4 iio layout)."""
    drivers = Path(sysfs_root) / "bus" / "i2c" / "drivers"
    channels: list[InaChannel] = []
    for label_path in sorted(drivers.glob("ina3221/*/hwmon/hwmon*/in*_label")):
        match = re.fullmatch(r"in(\d+)_label", label_path.name)
        label = try_read_text(label_path)
        if match is None or not label or label.upper() == "NC":
            continue
        n = match.group(1)
        channels.append(InaChannel(label, voltage_mv_path=label_path.parent / f"in{n}_input",
                                   current_ma_path=label_path.parent / f"curr{n}_input"))
    for name_path in sorted(drivers.glob("ina3221x/*/iio:device*/rail_name_*")):
        match = re.fullmatch(r"rail_name_(\d+)", name_path.name)
        label = try_read_text(name_path)
        if match is None or not label or label.upper() == "NC":
            continue
        channels.append(InaChannel(label, power_mw_path=name_path.parent / f"in_power{match.group(1)}_input"))
    # two monitors can both label a channel the same way: keep names unique
    seen: dict[str, int] = {}
    unique = []
    for channel in channels:
        seen[channel.rail] = seen.get(channel.rail, 0) + 1
        rail = channel.rail if seen[channel.rail] == 1 else f"{channel.rail}#{seen[channel.rail]}"
        unique.append(InaChannel(rail, channel.voltage_mv_path, channel.current_ma_path, channel.power_mw_path))
    return unique


class JetsonMeter(SamplingMeter):
    """Jetson module power from the INA3221 monitors; see the module docstring for which rails count."""

    name: ClassVar[str] = "jetson"
    default_interval_s: float = 0.05

    def __init__(self, sysfs_root: str | Path = "/sys", rails: list[str] | None = None) -> None:
        self.sysfs_root = Path(sysfs_root)
        self.all_channels = discover_channels(self.sysfs_root)
        by_rail = {c.rail: c for c in self.all_channels}
        if rails is not None:
            unknown = [r for r in rails if r not in by_rail]
            if unknown and self.all_channels:
                raise ConfigError(f"meter jetson: unknown rail(s) {unknown}; this board has {sorted(by_rail)}")
            self.channels = [by_rail[r] for r in rails if r in by_rail]
        else:
            totals = [by_rail[r] for r in TOTAL_RAILS if r in by_rail]
            self.channels = totals[:1] if totals else list(self.all_channels)

    @property
    def rails(self) -> list[str]:
        return [c.rail for c in self.channels]

    def unavailable_reason(self) -> str | None:
        if not self.all_channels:
            return (f"no INA3221 power monitor under {self.sysfs_root / 'bus/i2c/drivers'} "
                    "(ina3221 hwmon or ina3221x iio); not a Jetson?")
        if not self.channels:
            return "no Jetson rail selected"
        try:
            self.sample_power_w()
        except MeterError as exc:
            return str(exc)
        return None

    def sample_power_w(self) -> dict[str, float]:
        out = {}
        for channel in self.channels:
            try:
                out[channel.rail] = channel.read_power_w()
            except (OSError, ValueError) as exc:
                raise MeterError(f"cannot read Jetson rail {channel.rail}: {exc}") from exc
        return out

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        counted = set(self.rails)
        info["rails_skipped"] = {c.rail: "inside the module input rail" for c in self.all_channels
                                 if c.rail not in counted}
        return info


def parse_tegrastats(line: str, *, average: bool = False) -> dict[str, float]:
    """Rail powers in watts from one ``tegrastats`` line (current value, or the running average).

    Handles ``VDD_IN 5432mW/5432mW`` (JetPack 5/6), ``POM_5V_IN 3000/3000`` (JetPack 4) and Xavier's
    ``GPU 0/0 CPU 621/621``; fields with other units (``RAM 2448/7620MB``) are ignored.
    """
    return {m.group(1): int(m.group(3) if average else m.group(2)) * 1e-3 for m in _TEGRA_RE.finditer(line)}


def tegrastats_total_w(rails_w: dict[str, float]) -> float:
    """Module power from a :func:`parse_tegrastats` dict (module-input rail if present, else the sum)."""
    for rail in TOTAL_RAILS:
        if rail in rails_w:
            return rails_w[rail]
    return sum(rails_w.values())
