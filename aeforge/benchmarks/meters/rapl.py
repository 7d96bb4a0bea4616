"""Intel/AMD RAPL energy counters through the Linux powercap sysfs interface.

Zones live in ``/sys/class/powercap/intel-rapl:P`` (top level: ``package-P``, sometimes ``psys``) with subzones
``intel-rapl:P:S`` (``core``, ``uncore``, ``dram``); AMD CPUs use the same ``intel-rapl`` control type on recent
kernels and ``amd-rapl`` on some. Each zone has ``name``, ``energy_uj`` (cumulative microjoules, wraps to 0 after
``max_energy_range_uj``) and ``max_energy_range_uj``.

Counted by default: every top-level ``package-*`` zone plus ``dram`` subzones (DRAM is *not* inside the package
figure). ``core``/``uncore`` are inside their package and ``psys`` (whole SoC, client parts) contains the
package, so they are skipped unless asked for explicitly with ``domains=[...]`` (then the caller owns the
no-double-counting choice). ``intel-rapl-mmio`` zones duplicate the MSR package zone and are never read.

Since Linux 5.10 (CVE-2020-8694, "Platypus") ``energy_uj`` is readable by root only; that is reported by
:meth:`RaplMeter.unavailable_reason` with the fix (run as root, or a udev rule making ``energy_uj`` group
readable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aeforge.benchmarks.meters.base import CounterMeter, MeterError, try_read_text
from aeforge.errors import ConfigError

_ZONE_RE = re.compile(r"^(intel-rapl|amd-rapl):(\d+)(?::(\d+))?$")
#: subzone names that are already included in their parent package's energy
_INSIDE_PACKAGE = frozenset({"core", "uncore"})


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its directory, domain label and wrap range."""

    path: Path
    domain: str          # "package-0", "package-0/dram", "psys"
    zone_name: str       # the content of the ``name`` file
    top_level: bool
    max_range_uj: int | None


def discover_zones(sysfs_root: str | Path = "/sys") -> list[RaplZone]:
    """All RAPL zones under ``<sysfs_root>/class/powercap`` (sorted, deduplicated)."""
    base = Path(sysfs_root) / "class" / "powercap"
    if not base.is_dir():
        return []
    names: dict[str, str] = {}
    paths: dict[str, Path] = {}
    # top-level entries, and subzones both as top-level links and as nested directories
    candidates = [*base.iterdir(), *(p for d in base.iterdir() if d.is_dir() for p in d.iterdir())]
    for path in candidates:
        if not _ZONE_RE.match(path.name) or path.name in paths or not path.is_dir():
            continue
        name = try_read_text(path / "name")
        if name is None:
            continue
        names[path.name] = name
        paths[path.name] = path
    zones = []
    for key in sorted(paths, key=_zone_sort_key):
        match = _ZONE_RE.match(key)
        assert match is not None
        prefix, package, sub = match.groups()
        top = sub is None
        parent = names.get(f"{prefix}:{package}", f"package-{package}")
        domain = names[key] if top else f"{parent}/{names[key]}"
        max_text = try_read_text(paths[key] / "max_energy_range_uj")
        max_uj = int(max_text) if max_text and max_text.isdigit() and int(max_text) > 0 else None
        zones.append(RaplZone(paths[key], domain, names[key], top, max_uj))
    return zones


def _zone_sort_key(key: str) -> tuple[str, int, int]:
    match = _ZONE_RE.match(key)
    assert match is not None
    prefix, package, sub = match.groups()
    return prefix, int(package), -1 if sub is None else int(sub)


def default_domains(zones: list[RaplZone]) -> list[RaplZone]:
    """Packages and DRAM; ``psys`` only when there is no package zone; never ``core``/``uncore``."""
    chosen = [z for z in zones if (z.top_level and z.zone_name != "psys")
              or (not z.top_level and z.zone_name == "dram")]
    if not any(z.top_level for z in chosen):
        chosen += [z for z in zones if z.top_level and z.zone_name == "psys"]
    return chosen


class RaplMeter(CounterMeter):
    """RAPL package (+DRAM) energy counters; ``domains`` picks others by their label (e.g. ``"psys"``)."""

    name: ClassVar[str] = "rapl"

    def __init__(self, sysfs_root: str | Path = "/sys", domains: list[str] | None = None) -> None:
        self.sysfs_root = Path(sysfs_root)
        self.all_zones = discover_zones(self.sysfs_root)
        if domains is None:
            self.zones = default_domains(self.all_zones)
        else:
            by_domain = {z.domain: z for z in self.all_zones} | {z.zone_name: z for z in self.all_zones}
            unknown = [d for d in domains if d not in by_domain]
            if unknown and self.all_zones:
                raise ConfigError(f"meter rapl: unknown domain(s) {unknown}; this machine has "
                                  f"{[z.domain for z in self.all_zones]}")
            self.zones = [by_domain[d] for d in domains if d in by_domain]

    @property
    def rails(self) -> list[str]:
        return [z.domain for z in self.zones]

    def unavailable_reason(self) -> str | None:
        base = self.sysfs_root / "class" / "powercap"
        if not self.all_zones:
            return (f"no RAPL zones under {base} (not an Intel/AMD CPU, a virtual machine, or the intel_rapl_msr "
                    "kernel module is not loaded)")
        if not self.zones:
            return f"no RAPL domain selected among {[z.domain for z in self.all_zones]}"
        for zone in self.zones:
            path = zone.path / "energy_uj"
            try:
                int(path.read_text().strip())
            except PermissionError:
                return (f"permission denied reading {path} (root-only since Linux 5.10, CVE-2020-8694); run as "
                        "root or make energy_uj readable with a udev rule / `sudo chmod a+r`")
            except (OSError, ValueError) as exc:
                return f"cannot read {path}: {exc}"
        return None

    def read_energy_j(self) -> dict[str, float]:
        out = {}
        for zone in self.zones:
            path = zone.path / "energy_uj"
            try:
                out[zone.domain] = int(path.read_text().strip()) * 1e-6
            except (OSError, ValueError) as exc:
                raise MeterError(f"cannot read {path}: {exc}") from exc
        return out

    def energy_range_j(self) -> dict[str, float | None]:
        return {z.domain: None if z.max_range_uj is None else z.max_range_uj * 1e-6 for z in self.zones}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        counted = set(self.rails)
        info["rails_skipped"] = {
            z.domain: ("inside its package" if z.zone_name in _INSIDE_PACKAGE else
                       "contains the package (whole SoC)" if z.zone_name == "psys" else "not selected")
            for z in self.all_zones if z.domain not in counted
        }
        return info
