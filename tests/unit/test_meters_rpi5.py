"""Raspberry Pi 5 PMIC meter with recorded ``vcgencmd pmic_read_adc`` output."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aeforge.benchmarks.meters import MeterError, Rpi5Meter
from aeforge.benchmarks.meters.rpi5 import parse_pmic_read_adc, rail_powers_w

RECORDED = """\
     3V7_WL_SW_A current(0)=0.00390372A
       3V3_SYS_A current(1)=0.05904300A
      VDD_CORE_A current(7)=0.50000000A
        HDMI_A current(22)=0.02124900A
     3V7_WL_SW_V volt(8)=3.74023200V
       3V3_SYS_V volt(9)=3.31062600V
      VDD_CORE_V volt(15)=0.80000000V
        HDMI_V volt(23)=5.15606400V
       EXT5V_V volt(24)=5.12204000V
        BATT_V volt(25)=0.00000000V
"""


def expected_total_w() -> float:
    return 0.00390372 * 3.740232 + 0.059043 * 3.310626 + 0.5 * 0.8 + 0.021249 * 5.156064


def test_parse_pairs_current_and_voltage() -> None:
    rails = parse_pmic_read_adc(RECORDED)
    assert rails["3V7_WL_SW"] == {"current_a": pytest.approx(0.00390372), "voltage_v": pytest.approx(3.740232)}
    assert rails["EXT5V"] == {"voltage_v": pytest.approx(5.12204)}
    powers = rail_powers_w(rails)
    assert set(powers) == {"3V7_WL_SW", "3V3_SYS", "VDD_CORE", "HDMI"}  # voltage-only rails are not counted
    assert powers["VDD_CORE"] == pytest.approx(0.4)


def test_meter_sums_paired_rails() -> None:
    calls: list[Sequence[str]] = []

    def run(command: Sequence[str]) -> str:
        calls.append(command)
        return RECORDED

    meter = Rpi5Meter(run_command=run)
    assert meter.is_available(), meter.unavailable_reason()
    assert tuple(calls[0]) == ("vcgencmd", "pmic_read_adc")
    assert sum(meter.sample_power_w().values()) == pytest.approx(expected_total_w())
    assert Rpi5Meter(run_command=run, rails=["VDD_CORE"]).sample_power_w() == {"VDD_CORE": pytest.approx(0.4)}


def test_missing_vcgencmd_and_not_a_pi5() -> None:
    def missing(command: Sequence[str]) -> str:
        raise FileNotFoundError("vcgencmd not found on PATH")

    assert "vcgencmd not found" in Rpi5Meter(run_command=missing).unavailable_reason()
    old_firmware = Rpi5Meter(run_command=lambda c: 'error=2 error_msg="Command not registered"\n')
    assert "no current/voltage pairs" in old_firmware.unavailable_reason()
    unknown_rail = Rpi5Meter(run_command=lambda c: RECORDED, rails=["GPU"])
    assert "unknown Raspberry Pi 5 rail" in unknown_rail.unavailable_reason()


def test_default_runner_without_vcgencmd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "not found" in Rpi5Meter().unavailable_reason()


def test_rail_vanishing_mid_run() -> None:
    outputs = iter([RECORDED, RECORDED.replace("VDD_CORE_A", "XXX_A")])
    meter = Rpi5Meter(run_command=lambda c: next(outputs))
    with pytest.raises(MeterError, match="VDD_CORE"):
        meter.sample_power_w()
