"""Jetson INA3221 meter against hwmon/iio sysfs trees in tmp_path, and the tegrastats parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeforge.benchmarks.meters import MeterError
from aeforge.benchmarks.meters.jetson import JetsonMeter, parse_tegrastats, tegrastats_total_w
from aeforge.errors import ConfigError


def hwmon_tree(root: Path, channels: dict[int, tuple[str, int, int]], device: str = "1-0040") -> Path:
    """JetPack 5/6 layout: ``{N: (label, mV, mA)}``."""
    d = root / "bus" / "i2c" / "drivers" / "ina3221" / device / "hwmon" / "hwmon3"
    d.mkdir(parents=True)
    for n, (label, mv, ma) in channels.items():
        (d / f"in{n}_label").write_text(label + "\n")
        (d / f"in{n}_input").write_text(f"{mv}\n")
        (d / f"curr{n}_input").write_text(f"{ma}\n")
    return root


def iio_tree(root: Path, channels: dict[int, tuple[str, int]]) -> Path:
    """JetPack <= 4 layout: ``{N: (rail, mW)}``."""
    d = root / "bus" / "i2c" / "drivers" / "ina3221x" / "6-0040" / "iio:device0"
    d.mkdir(parents=True)
    for n, (rail, mw) in channels.items():
        (d / f"rail_name_{n}").write_text(rail + "\n")
        (d / f"in_power{n}_input").write_text(f"{mw}\n")
    return root


def test_orin_nano_counts_vdd_in_only(tmp_path: Path) -> None:
    hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000), 2: ("VDD_CPU_GPU_CV", 5000, 200), 3: ("VDD_SOC", 5000, 300)})
    meter = JetsonMeter(tmp_path)
    assert meter.is_available(), meter.unavailable_reason()
    assert meter.rails == ["VDD_IN"]
    assert meter.sample_power_w() == {"VDD_IN": pytest.approx(5.0)}
    assert set(meter.describe()["rails_skipped"]) == {"VDD_CPU_GPU_CV", "VDD_SOC"}


def test_agx_orin_sums_connected_rails_and_skips_nc(tmp_path: Path) -> None:
    hwmon_tree(tmp_path, {1: ("VDD_GPU_SOC", 5000, 800), 2: ("VDD_CPU_CV", 5000, 400), 3: ("VIN_SYS_5V0", 5000, 600)})
    hwmon_tree(tmp_path, {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 100), 3: ("NC", 0, 0)}, device="1-0041")
    meter = JetsonMeter(tmp_path)
    assert sorted(meter.rails) == ["VDDQ_VDD2_1V8AO", "VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]
    assert sum(meter.sample_power_w().values()) == pytest.approx(9.5)


def test_chosen_rails(tmp_path: Path) -> None:
    hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000), 2: ("VDD_SOC", 5000, 300)})
    assert JetsonMeter(tmp_path, rails=["VDD_SOC"]).sample_power_w() == {"VDD_SOC": pytest.approx(1.5)}
    with pytest.raises(ConfigError, match="unknown rail"):
        JetsonMeter(tmp_path, rails=["VDD_GPU"])


def test_jetpack4_iio_layout(tmp_path: Path) -> None:
    iio_tree(tmp_path, {0: ("POM_5V_IN", 3000), 1: ("POM_5V_GPU", 500), 2: ("POM_5V_CPU", 800)})
    meter = JetsonMeter(tmp_path)
    assert meter.rails == ["POM_5V_IN"]
    assert meter.sample_power_w() == {"POM_5V_IN": pytest.approx(3.0)}


def test_not_a_jetson_and_vanishing_rail(tmp_path: Path) -> None:
    assert "not a Jetson" in JetsonMeter(tmp_path / "none").unavailable_reason()
    hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000)})
    meter = JetsonMeter(tmp_path)
    next(tmp_path.rglob("curr1_input")).unlink()
    with pytest.raises(MeterError, match="VDD_IN"):
        meter.sample_power_w()


@pytest.mark.parametrize(
    ("line", "expected", "total_w"),
    [
        ("RAM 2448/7620MB (lfb 1013x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,2%@729] EMC_FREQ 0% "
         "GR3D_FREQ 0% cpu@47.5C VDD_IN 5432mW/5100mW VDD_CPU_GPU_CV 1234mW/1200mW VDD_SOC 1500mW/1490mW",
         {"VDD_IN": 5.432, "VDD_CPU_GPU_CV": 1.234, "VDD_SOC": 1.5}, 5.432),
        ("RAM 1500/3956MB (lfb 4x2MB) IRAM 0/252kB(lfb 252kB) CPU [5%@102,off,off,3%@102] EMC_FREQ 0%@1600 "
         "GR3D_FREQ 0%@76 APE 25 PLL@27C POM_5V_IN 3000/3100 POM_5V_GPU 0/0 POM_5V_CPU 400/410",
         {"POM_5V_IN": 3.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.4}, 3.0),
        ("RAM 3000/15692MB CPU [1%@1190] GR3D_FREQ 0% GPU 0/0 CPU 621/621 SOC 1862/1862 CV 0/0 VDDRQ 465/465 "
         "SYS5V 1703/1703", {"GPU": 0.0, "CPU": 0.621, "SOC": 1.862, "CV": 0.0, "VDDRQ": 0.465, "SYS5V": 1.703},
         4.651),
    ],
)
def test_parse_tegrastats(line: str, expected: dict[str, float], total_w: float) -> None:
    rails = parse_tegrastats(line)
    assert rails == pytest.approx(expected)
    assert tegrastats_total_w(rails) == pytest.approx(total_w)


def test_parse_tegrastats_average() -> None:
    assert parse_tegrastats("VDD_IN 5432mW/5100mW", average=True) == {"VDD_IN": pytest.approx(5.1)}
    assert parse_tegrastats("RAM 2448/7620MB SWAP 0/3810MB") == {}
