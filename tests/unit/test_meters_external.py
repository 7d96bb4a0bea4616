"""External power-trace parser (CSV / serial text) and the meter registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeforge.benchmarks.meters import (
    ExternalTraceMeter,
    UnavailableMeter,
    auto_meter,
    available_meters,
    get_meter,
    meter_from_spec,
    meter_status,
    parse_power_trace,
)
from aeforge.errors import ConfigError, DataError


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_header_timestamp_power(tmp_path: Path) -> None:
    trace = parse_power_trace(write(tmp_path, "# logger v1\ntimestamp_s,power_w\n100.0,2.0\n100.5,2.5\n\n101.0,3\n"))
    np.testing.assert_allclose(trace.times_s, [100.0, 100.5, 101.0])
    np.testing.assert_allclose(trace.power_w["power"], [2.0, 2.5, 3.0])
    assert trace.span_s == (100.0, 101.0)


def test_voltage_current_with_units_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "Time (ms),Voltage (V),Current (mA),note\n0,5.0,200,a\n1000,5.0,400,b\n")
    trace = parse_power_trace(path, offset_s=1.7e9)
    np.testing.assert_allclose(trace.times_s, [1.7e9, 1.7e9 + 1.0])
    np.testing.assert_allclose(trace.power_w["power"], [1.0, 2.0])
    assert trace.columns["power"] == "Voltage (V) x Current (mA)"


def test_several_power_columns_are_rails(tmp_path: Path) -> None:
    trace = parse_power_trace(write(tmp_path, "t;vdd_cpu_gpu_cv_mw;vdd_soc_mw\n0;5000;1000\n1;5200;1100\n"))
    assert set(trace.power_w) == {"vdd_cpu_gpu_cv", "vdd_soc"}
    np.testing.assert_allclose(trace.total_power_w, [6.0, 6.3])


def test_headerless_serial_stream(tmp_path: Path) -> None:
    trace = parse_power_trace(write(tmp_path, "1715000000.00 4.5\n1715000000.10 4.7\n", "serial.log"))
    np.testing.assert_allclose(trace.power_w["power"], [4.5, 4.7])
    trace = parse_power_trace(write(tmp_path, "0\t5.0\t1.0\n1\t5.0\t2.0\n", "vi.tsv"))
    np.testing.assert_allclose(trace.power_w["power"], [5.0, 10.0])


def test_iso_timestamps(tmp_path: Path) -> None:
    trace = parse_power_trace(write(tmp_path, "time,power_w\n2024-05-01T00:00:00Z,1\n2024-05-01T00:00:01.5Z,1\n"))
    assert trace.times_s[1] - trace.times_s[0] == pytest.approx(1.5)
    assert trace.times_s[0] == pytest.approx(1714521600.0)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("timestamp_s,power_w\n0,1\n1,abc\n", 3, "not a number"),
        ("timestamp_s,power_w\n0,1\n1\n", 3, "expected at least 2 fields"),
        ("timestamp_s,power_w\n0,1\n2,1\n1,1\n", 4, "goes backwards"),
        ("timestamp_s,power_w\n0,1\n1,nan\n", 3, "non-finite"),
        ("# c\nfoo,bar\n0,1\n", 2, "no time column"),
        ("time,temperature_c\n0,1\n", 1, "no power column"),
        ("0,1,2,3\n", 1, "no header"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        parse_power_trace(path)
    assert f"{path}:{line}:" in str(info.value)


def test_too_few_samples_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least 2 samples"):
        parse_power_trace(write(tmp_path, "timestamp_s,power_w\n0,1\n"))
    with pytest.raises(DataError, match="cannot read"):
        parse_power_trace(tmp_path / "absent.csv")


def test_external_meter(tmp_path: Path) -> None:
    meter = ExternalTraceMeter(tmp_path / "later.csv")
    assert "does not exist" in meter.unavailable_reason()
    path = write(tmp_path, "timestamp_s,power_w\n0,1\n1,1\n")
    meter = ExternalTraceMeter(path, offset_s=5.0)
    assert meter.is_available() and meter.kind == "trace"
    assert meter.load().span_s == (5.0, 6.0)
    assert meter.rails == ["power"]


def test_meter_from_spec(tmp_path: Path) -> None:
    meter = meter_from_spec(f"external:{tmp_path / 'a.csv'}")
    assert isinstance(meter, ExternalTraceMeter) and meter.offset_s == 0.0
    meter = meter_from_spec(f"external:{tmp_path / 'a.csv'}@-3.5")
    assert meter.offset_s == -3.5 and meter.path == tmp_path / "a.csv"
    assert meter_from_spec(f"external:{tmp_path / 'x@y.csv'}").path == tmp_path / "x@y.csv"
    assert isinstance(meter_from_spec("none"), UnavailableMeter)
    assert meter_from_spec("rapl").name == "rapl"
    with pytest.raises(ConfigError, match="unknown meter"):
        meter_from_spec("wattsup")
    with pytest.raises(ConfigError, match="external:FILE"):
        meter_from_spec("external")


def test_auto_meter_picks_the_first_available(tmp_path: Path) -> None:
    no_pi = {"run_command": lambda c: ""}
    nothing = auto_meter(rapl={"sysfs_root": tmp_path}, jetson={"sysfs_root": tmp_path}, rpi5=no_pi,
                         nvml={"nvml": object()})
    assert isinstance(nothing, UnavailableMeter)
    assert "rapl:" in nothing.unavailable_reason() and "jetson:" in nothing.unavailable_reason()

    zone = tmp_path / "class" / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1\n")
    meter = auto_meter(rapl={"sysfs_root": tmp_path}, jetson={"sysfs_root": tmp_path}, rpi5=no_pi)
    assert meter.name == "rapl"
    status = meter_status(rapl={"sysfs_root": tmp_path}, jetson={"sysfs_root": tmp_path}, rpi5=no_pi)
    assert status["rapl"] is None and status["jetson"] is not None
    assert "rapl" in available_meters(rapl={"sysfs_root": tmp_path}, rpi5=no_pi)
    with pytest.raises(ConfigError):
        get_meter("nope")
