"""RAPL meter against powercap sysfs trees written into tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aeforge.benchmarks.meters import MeterError
from aeforge.benchmarks.meters.rapl import RaplMeter, discover_zones
from aeforge.errors import ConfigError

MAX_UJ = 262143328850


def _zone(path: Path, name: str, energy_uj: int, max_uj: int | None = MAX_UJ) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    if max_uj is not None:
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def client_tree(root: Path, prefix: str = "intel-rapl") -> Path:
    """A laptop: package-0 with core/uncore subzones (nested and linked at top level), psys, and an mmio twin."""
    base = root / "class" / "powercap"
    pkg = _zone(base / f"{prefix}:0", "package-0", 1_000_000)
    core = _zone(pkg / f"{prefix}:0:0", "core", 400_000)
    _zone(pkg / f"{prefix}:0:1", "uncore", 100_000)
    (base / f"{prefix}:0:0").symlink_to(core)
    _zone(base / f"{prefix}:1", "psys", 5_000_000)
    _zone(base / "intel-rapl-mmio:0", "package-0", 999)
    (base / prefix).mkdir()  # the control-type directory itself
    return root


def server_tree(root: Path) -> Path:
    """Two sockets, each with a DRAM subzone (not inside the package figure)."""
    base = root / "class" / "powercap"
    for socket in (0, 1):
        pkg = _zone(base / f"intel-rapl:{socket}", f"package-{socket}", 10_000_000 * (socket + 1))
        _zone(pkg / f"intel-rapl:{socket}:0", "dram", 2_000_000, max_uj=65532610987)
    return root


def test_client_counts_package_only(tmp_path: Path) -> None:
    meter = RaplMeter(client_tree(tmp_path))
    assert meter.is_available(), meter.unavailable_reason()
    assert meter.rails == ["package-0"]
    assert meter.read_energy_j() == {"package-0": pytest.approx(1.0)}
    assert meter.energy_range_j() == {"package-0": pytest.approx(MAX_UJ * 1e-6)}
    skipped = meter.describe()["rails_skipped"]
    assert set(skipped) == {"package-0/core", "package-0/uncore", "psys"}
    assert "inside" in skipped["package-0/core"]


def test_zones_discovered_once_each(tmp_path: Path) -> None:
    zones = discover_zones(client_tree(tmp_path))
    assert [z.domain for z in zones] == ["package-0", "package-0/core", "package-0/uncore", "psys"]


def test_server_counts_packages_and_dram(tmp_path: Path) -> None:
    meter = RaplMeter(server_tree(tmp_path))
    assert meter.rails == ["package-0", "package-0/dram", "package-1", "package-1/dram"]
    energy = meter.read_energy_j()
    assert energy["package-1"] == pytest.approx(20.0)
    assert meter.energy_range_j()["package-0/dram"] == pytest.approx(65532.610987)


def test_amd_rapl_prefix(tmp_path: Path) -> None:
    meter = RaplMeter(client_tree(tmp_path, prefix="amd-rapl"))
    assert meter.rails == ["package-0"]


def test_psys_alone_is_used_and_explicit_domains(tmp_path: Path) -> None:
    base = tmp_path / "class" / "powercap"
    _zone(base / "intel-rapl:1", "psys", 7)
    assert RaplMeter(tmp_path).rails == ["psys"]
    meter = RaplMeter(client_tree(tmp_path / "c"), domains=["psys"])
    assert meter.rails == ["psys"]
    with pytest.raises(ConfigError, match="unknown domain"):
        RaplMeter(tmp_path / "c", domains=["gpu"])


def test_missing_powercap_is_a_reason(tmp_path: Path) -> None:
    meter = RaplMeter(tmp_path)
    assert not meter.is_available()
    assert "no RAPL zones" in meter.unavailable_reason()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_root_only_energy_uj_is_a_reason(tmp_path: Path) -> None:
    client_tree(tmp_path)
    energy = tmp_path / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    energy.chmod(0o200)
    try:
        reason = RaplMeter(tmp_path).unavailable_reason()
    finally:
        energy.chmod(0o644)
    assert reason is not None and "permission denied" in reason and "CVE-2020-8694" in reason


def test_unknown_max_range_and_read_failure(tmp_path: Path) -> None:
    base = tmp_path / "class" / "powercap"
    _zone(base / "intel-rapl:0", "package-0", 5, max_uj=None)
    meter = RaplMeter(tmp_path)
    assert meter.energy_range_j() == {"package-0": None}
    (base / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(MeterError, match="energy_uj"):
        meter.read_energy_j()


def test_permission_error_reason_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client_tree(tmp_path)
    original = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    reason = RaplMeter(tmp_path).unavailable_reason()
    assert reason is not None and "permission denied" in reason and "root" in reason
