"""Vendor synthesis: report parsers on recorded report files, the backend registry, and build().

The reports below are written by the tests in the formats that Vitis HLS / Vivado HLS (``csynth.xml``),
Vivado (``report_utilization``, ``report_timing_summary``) and Catapult (``rtl.rpt``) produce, with the
numbers of an ECON-T-like design. Where hls4ml has a reader for the same file, the two must agree.
``build()`` is run end to end against fake tools (shell scripts standing in for ``vitis-run`` etc.).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from aeforge.errors import AeforgeError, ArtifactError, ConfigError, ToolUnavailableError
from aeforge.hls import vendor
from aeforge.hls.vendor import (
    CatapultBackend,
    SynthesisError,
    VitisBackend,
    VivadoBackend,
    find_reports,
    get_backend,
    parse_catapult_rpt,
    parse_vivado_csynth_xml,
    parse_vivado_timing_summary,
    parse_vivado_utilization,
)

HAS_HLS4ML = importlib.util.find_spec("hls4ml") is not None
needs_hls4ml = pytest.mark.skipif(not HAS_HLS4ML, reason="hls4ml not installed (pip install hls4ml)")
needs_posix = pytest.mark.skipif(sys.platform == "win32", reason="fake tools are POSIX shell scripts")

# --------------------------------------------------------------------------- recorded reports

VITIS_CSYNTH = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion>
    <Version>2023.2</Version>
  </ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <ProductFamily>virtexuplus</ProductFamily>
    <Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>econt</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod>
    <ClockUncertainty>1.35</ClockUncertainty>
    <FlowTarget>vivado</FlowTarget>
  </UserAssignments>
  <PerformanceEstimates>
    <PipelineType>dataflow</PipelineType>
    <SummaryOfTimingAnalysis>
      <unit>ns</unit>
      <EstimatedClockPeriod>4.370</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>103</Best-caseLatency>
      <Average-caseLatency>103</Average-caseLatency>
      <Worst-caseLatency>103</Worst-caseLatency>
      <Best-caseRealTimeLatency>0.515 us</Best-caseRealTimeLatency>
      <Average-caseRealTimeLatency>0.515 us</Average-caseRealTimeLatency>
      <Worst-caseRealTimeLatency>0.515 us</Worst-caseRealTimeLatency>
      <Interval-min>92</Interval-min>
      <Interval-max>92</Interval-max>
      <DataflowPipelineThroughput>92</DataflowPipelineThroughput>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>4</BRAM_18K>
      <DSP>132</DSP>
      <FF>34199</FF>
      <LUT>59895</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>5376</BRAM_18K>
      <DSP>12288</DSP>
      <FF>3456000</FF>
      <LUT>1728000</LUT>
      <URAM>1280</URAM>
    </AvailableResources>
  </AreaEstimates>
  <InterfaceSummary>
    <RtlPorts>
      <name>ap_clk</name>
      <Object>econt</Object>
      <ObjectType>return value</ObjectType>
      <Type>ap_ctrl_hs</Type>
      <IOProtocol>ap_ctrl_hs</IOProtocol>
      <Dir>in</Dir>
      <Bits>1</Bits>
    </RtlPorts>
  </InterfaceSummary>
</profile>
"""

# Vivado HLS 2019.2: DSP48E instead of DSP, and a latency it could not bound.
VIVADO_HLS_CSYNTH = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2019.2</Version></ReportVersion>
  <UserAssignments>
    <unit>ns</unit><ProductFamily>kintexu</ProductFamily><Part>xcku115-flvb2104-2-i</Part>
    <TopModelName>econt</TopModelName><TargetClockPeriod>5.00</TargetClockPeriod>
    <ClockUncertainty>0.62</ClockUncertainty>
  </UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.256</EstimatedClockPeriod></SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>96</Best-caseLatency><Average-caseLatency>undef</Average-caseLatency>
      <Worst-caseLatency>undef</Worst-caseLatency>
      <Interval-min>97</Interval-min><Interval-max>undef</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources><BRAM_18K>0</BRAM_18K><DSP48E>140</DSP48E><FF>30120</FF><LUT>61234</LUT><URAM>0</URAM></Resources>
    <AvailableResources>
      <BRAM_18K>4320</BRAM_18K><DSP48E>5520</DSP48E><FF>1326720</FF><LUT>663360</LUT><URAM>0</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
"""

_UTIL_HEADER = """Copyright 1986-2022 Xilinx, Inc. All Rights Reserved. Copyright 2022-2023 Advanced Micro Devices, Inc.
---------------------------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2023.2 (lin64) Build 4029153 Fri Oct 13 20:13:54 MDT 2023
| Date         : Tue Oct  1 10:00:00 2024
| Command      : report_utilization -file {file}
| Design       : econt
| Device       : xcvu13p-flga2577-2-e
| Speed File   : -2
| Design State : Synthesized
---------------------------------------------------------------------------------------------------------------

Utilization Design Information

Table of Contents
-----------------
1. CLB Logic
1.1 Summary of Registers by Type
2. BLOCKRAM
3. ARITHMETIC
4. I/O

"""

# UltraScale+ ("CLB ..."), Vivado 2023 table layout (with a Prohibited column).
VIVADO_SYNTH_RPT = _UTIL_HEADER.format(file="vivado_synth.rpt") + """1. CLB Logic
------------

+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| CLB LUTs*                  | 52117 |     0 |          0 |   1728000 |  3.02 |
|   LUT as Logic             | 52005 |     0 |          0 |   1728000 |  3.01 |
|   LUT as Memory            |   112 |     0 |          0 |    791040 |  0.01 |
| CLB Registers              | 31870 |     0 |          0 |   3456000 |  0.92 |
|   Register as Flip Flop    | 31870 |     0 |          0 |   3456000 |  0.92 |
|   Register as Latch        |     0 |     0 |          0 |   3456000 |  0.00 |
| CARRY8                     |  1843 |     0 |          0 |    216000 |  0.85 |
+----------------------------+-------+-------+------------+-----------+-------+
* Warning! LUT value is adjusted to account for LUT combining.

1.1 Summary of Registers by Type
--------------------------------

+-------+--------------+-------------+--------------+
| Total | Clock Enable | Synchronous | Asynchronous |
+-------+--------------+-------------+--------------+
| 31870 |          Yes |           - |        Reset |
+-------+--------------+-------------+--------------+


2. BLOCKRAM
-----------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  1.5 |     0 |          0 |      2688 |  0.06 |
|   RAMB36/FIFO*    |    1 |     0 |          0 |      2688 |  0.04 |
|     RAMB36E2 only |    1 |       |            |           |       |
|   RAMB18          |    1 |     0 |          0 |      5376 |  0.02 |
| URAM              |    0 |     0 |          0 |      1280 |  0.00 |
+-------------------+------+-------+------------+-----------+-------+


3. ARITHMETIC
-------------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |  128 |     0 |          0 |     12288 |  1.04 |
|   DSP48E2 only |  128 |       |            |           |       |
+----------------+------+-------+------------+-----------+-------+
"""

# 7-series ("Slice ..."), older layout without Prohibited.
SEVEN_SERIES_RPT = """| Design State : Synthesized

1. Slice Logic
--------------

+-------------------------+-------+-------+-----------+-------+
|        Site Type        |  Used | Fixed | Available | Util% |
+-------------------------+-------+-------+-----------+-------+
| Slice LUTs*             | 20480 |     0 |    203800 | 10.05 |
|   LUT as Logic          | 20480 |     0 |    203800 | 10.05 |
| Slice Registers         | 10240 |     0 |    407600 |  2.51 |
|   Register as Flip Flop | 10240 |     0 |    407600 |  2.51 |
+-------------------------+-------+-------+-----------+-------+

2. Memory
---------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| Block RAM Tile |    2 |     0 |       445 |  0.45 |
|   RAMB36/FIFO* |    2 |     0 |       445 |  0.45 |
|   RAMB18       |    0 |     0 |       890 |  0.00 |
+----------------+------+-------+-----------+-------+

3. DSP
------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |   64 |     0 |       840 |  7.62 |
|   DSP48E1 only |   64 |       |           |       |
+----------------+------+-------+-----------+-------+
"""

TIMING_SUMMARY_RPT = """Copyright 1986-2022 Xilinx, Inc. All Rights Reserved.
| Command      : report_timing_summary -file timing_summary_synth.rpt
| Design       : econt

Timing Summary Report

------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints
    -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------
      0.634        0.000                      0                41233        0.052        0.000                      0                41233        2.225        0.000                       0                 21437


All user specified timing constraints are met.


------------------------------------------------------------------------------------------------
| Clock Summary
| -------------
------------------------------------------------------------------------------------------------

Clock  Waveform(ns)       Period(ns)      Frequency(MHz)
-----  ------------       ----------      --------------
clk    {0.000 2.500}      5.000           200.000
"""  # noqa: E501 (a recorded report keeps its width)

CATAPULT_RTL_RPT = """# Catapult Ultra Synthesis: Report
# ------------------------------------------------------------------------------------
# Version:    2024.1/1091966 Production Release
# Build Date: Wed Feb 14 09:07:18 PST 2024

Solution Settings: econt.v1
  Current state: extract
  Project: econt_prj

Processes/Blocks in Design
  Process             Real Operation(s) count Latency Throughput Reset Length II Comments
  ------------------- ----------------------- ------- ---------- ------------ -- --------
  /econt/core                            4211      12          1            0  0
  Design Total:                          4211      12          1            0  0

Clock Information
  Clock Signal Edge   Period Sharing Alloc (%) Uncertainty Used by Processes/Blocks
  ------------ ------ ------ ----------------- ----------- ------------------------
  clk          rising  5.000             20.00    0.000000 /econt/core

I/O Data Ranges
  Port           Mode DeclType DeclWidth DeclRange ActType ActWidth ActRange
  -------------- ---- -------- --------- --------- ------- -------- --------
  clk            IN   Unsigned         1

Area Scores
                    Post-Scheduling   Post-DP & FSM Post-Assignment
  ----------------- --------------- --------------- ---------------
  Total Area Score:   201234.5        215678.9        209876.1
  Total Reg:           12345.6  (6%)   12345.6  (6%)   12345.6  (6%)
"""

# Catapult's Vivado run on UltraScale: RAMB36 = 0, so hls4ml's "RAMB18" row equals 2 x "Block RAM Tile".
CATAPULT_UTIL_RPT = VIVADO_SYNTH_RPT.replace("|  1.5 |", "|  0.5 |").replace(
    "|   RAMB36/FIFO*    |    1 |", "|   RAMB36/FIFO*    |    0 |"
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _hls4ml_project(root: Path, backend: str = "Vitis", name: str = "econt") -> Path:
    """The files of an hls4ml project that aeforge and hls4ml's report readers look at."""
    _write(root / "hls4ml_config.yml", f"Backend: {backend}\nClockPeriod: 5\nHLSConfig:\n  Model:\n"
           f"    Precision: fixed<16,6>\n    ReuseFactor: 1\nInputShapes:\n  x: !!python/tuple\n  - 48\n"
           f"OutputDir: {root}\nPart: xcvu13p-flga2577-2-e\nProjectDir: null\nProjectName: {name}\n")
    if backend == "Catapult":
        _write(root / "build_prj.tcl", f"  project new -name {name}_prj\nset design_top {name}\n")
    else:
        _write(root / "project.tcl", f'variable project_name\nset project_name "{name}"\n'
               f'variable backend\nset backend "{backend.lower()}"\nvariable part\nset part "xcvu13p-flga2577-2-e"\n')
        _write(root / f"{name}_prj" / "hls.app", '<project xmlns="com.autoesl.autopilot.project" name="econt_prj" '
               'top="econt">\n  <solutions>\n    <solution name="solution1" status="active"/>\n  </solutions>\n'
               "</project>\n")
    return root


def _csynth_path(root: Path, name: str = "econt") -> Path:
    return root / f"{name}_prj" / "solution1" / "syn" / "report" / f"{name}_csynth.xml"


# --------------------------------------------------------------------------- parsers


def test_vitis_csynth_xml(tmp_path: Path) -> None:
    rep = parse_vivado_csynth_xml(_write(tmp_path / "econt_csynth.xml", VITIS_CSYNTH))
    assert rep.tool == "vitis_hls"
    assert (rep.latency_cycles_min, rep.latency_cycles_max, rep.ii_min, rep.ii_max) == (103, 103, 92, 92)
    assert (rep.lut, rep.ff, rep.dsp, rep.bram_18k) == (59895, 34199, 132, 4)
    assert rep.clock_period_ns_estimated == pytest.approx(4.37)
    assert rep.clock_period_ns_target == pytest.approx(5.0)
    assert rep.fmax_mhz == pytest.approx(1000 / 4.37, abs=1e-3)
    assert rep.resources_from == "hls-estimate"
    assert rep.extra["available_lut"] == 1728000 and rep.extra["available_dsp"] == 12288 and rep.extra["uram"] == 0
    assert rep.source_files == [str(tmp_path / "econt_csynth.xml")]


def test_vivado_hls_csynth_xml_dsp48e_and_undef(tmp_path: Path) -> None:
    rep = parse_vivado_csynth_xml(_write(tmp_path / "econt_csynth.xml", VIVADO_HLS_CSYNTH))
    assert rep.tool == "vivado_hls"
    assert rep.dsp == 140 and rep.lut == 61234 and rep.ff == 30120 and rep.bram_18k == 0
    assert (rep.latency_cycles_min, rep.latency_cycles_max, rep.ii_min, rep.ii_max) == (96, None, 97, None)
    assert rep.extra["available_dsp"] == 5520


def test_as_dict_has_every_field_with_none_where_missing(tmp_path: Path) -> None:
    data = parse_catapult_rpt(_write(tmp_path / "rtl.rpt", CATAPULT_RTL_RPT)).as_dict()
    for key in ("tool", "latency_cycles_min", "latency_cycles_max", "ii_min", "ii_max", "lut", "ff", "dsp",
                "bram_18k", "clock_period_ns_estimated", "clock_period_ns_target", "fmax_mhz", "source_files"):
        assert key in data
    assert data["lut"] is None and data["fmax_mhz"] is None
    assert data["latency_cycles_min"] == 12 and data["ii_max"] == 1 and data["clock_period_ns_target"] == 5.0
    assert data["extra"] == {"area_score": 209876.1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VITIS_CSYNTH.replace("<LUT>59895</LUT>", ""), "AreaEstimates/Resources/LUT"),
        (VITIS_CSYNTH.replace("<DSP>132</DSP>", "<DSP>many</DSP>"), "AreaEstimates/Resources/DSP is not a number"),
        (VITIS_CSYNTH.replace("<Interval-max>92</Interval-max>", ""), "Interval-max"),
        (VITIS_CSYNTH.replace("<EstimatedClockPeriod>4.370</EstimatedClockPeriod>", ""), "EstimatedClockPeriod"),
        (VITIS_CSYNTH.split("<AreaEstimates>")[0] + "</profile>", "missing AreaEstimates/Resources"),
        (VITIS_CSYNTH[: len(VITIS_CSYNTH) // 2], "not valid XML"),
        ("<report><x/></report>", "expected <profile>"),
    ],
    ids=["no-lut", "bad-dsp", "no-interval-max", "no-clock", "no-area", "truncated", "wrong-root"],
)
def test_malformed_csynth_xml_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "econt_csynth.xml", text)
    with pytest.raises(ArtifactError, match=expected) as info:
        parse_vivado_csynth_xml(path)
    assert str(path) in str(info.value)


def test_missing_report_file(tmp_path: Path) -> None:
    for parser in (parse_vivado_csynth_xml, parse_vivado_utilization, parse_catapult_rpt):
        with pytest.raises(ArtifactError, match="report not found"):
            parser(tmp_path / "nope.rpt")


def test_vivado_utilization_ultrascale(tmp_path: Path) -> None:
    rep = parse_vivado_utilization(_write(tmp_path / "vivado_synth.rpt", VIVADO_SYNTH_RPT))
    assert (rep.lut, rep.ff, rep.dsp) == (52117, 31870, 128)
    assert rep.bram_18k == 3  # 1.5 36 Kb tiles
    assert rep.resources_from == "logic-synthesis"
    assert rep.extra == {"available_lut": 1728000, "available_ff": 3456000, "available_dsp": 12288,
                         "available_bram_18k": 5376, "uram": 0}
    assert rep.latency_cycles_min is None and rep.fmax_mhz is None


def test_vivado_utilization_seven_series(tmp_path: Path) -> None:
    rep = parse_vivado_utilization(_write(tmp_path / "vivado_synth.rpt", SEVEN_SERIES_RPT))
    assert (rep.lut, rep.ff, rep.dsp, rep.bram_18k) == (20480, 10240, 64, 4)
    assert rep.extra["available_lut"] == 203800 and "uram" not in rep.extra


def test_vivado_utilization_missing_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "vivado_synth.rpt", VIVADO_SYNTH_RPT.replace("| DSPs   ", "| Other  "))
    with pytest.raises(ArtifactError, match=r"vivado_synth.rpt: missing DSP row \('DSPs'\)"):
        parse_vivado_utilization(path)
    _write(path, VIVADO_SYNTH_RPT.replace("| 52117 |", "|  lots |"))
    with pytest.raises(ArtifactError, match='"CLB LUTs" is not a number'):
        parse_vivado_utilization(path)


def test_timing_summary(tmp_path: Path) -> None:
    rep = parse_vivado_timing_summary(_write(tmp_path / "timing_summary_synth.rpt", TIMING_SUMMARY_RPT))
    assert rep.clock_period_ns_target == 5.0
    assert rep.clock_period_ns_estimated == pytest.approx(4.366)
    assert rep.fmax_mhz == pytest.approx(1000 / 4.366, abs=1e-3)
    assert rep.extra == {"wns_ns": 0.634}
    _write(tmp_path / "t.rpt", TIMING_SUMMARY_RPT.split("Clock Summary")[0])
    with pytest.raises(ArtifactError, match="Clock Summary period"):
        parse_vivado_timing_summary(tmp_path / "t.rpt")
    _write(tmp_path / "t.rpt", "Timing Summary Report\n")
    with pytest.raises(ArtifactError, match="WNS"):
        parse_vivado_timing_summary(tmp_path / "t.rpt")


def test_catapult_rpt(tmp_path: Path) -> None:
    rep = parse_catapult_rpt(_write(tmp_path / "rtl.rpt", CATAPULT_RTL_RPT))
    assert rep.tool == "catapult"
    assert (rep.latency_cycles_min, rep.latency_cycles_max, rep.ii_min, rep.ii_max) == (12, 12, 1, 1)
    assert rep.clock_period_ns_target == 5.0 and rep.clock_period_ns_estimated is None
    undetermined = CATAPULT_RTL_RPT.replace("4211      12", "4211      -1")
    assert parse_catapult_rpt(_write(tmp_path / "cycle.rpt", undetermined)).latency_cycles_max is None
    _write(tmp_path / "bad.rpt", CATAPULT_RTL_RPT.replace("Design Total:", "Design Sum:"))
    with pytest.raises(ArtifactError, match=r"bad\.rpt: missing 'Design Total:'"):
        parse_catapult_rpt(tmp_path / "bad.rpt")


# --------------------------------------------------------------------------- project trees


def test_find_reports_vitis_merges_logic_synthesis(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "prj")
    _write(_csynth_path(root), VITIS_CSYNTH)
    hls_only = find_reports(root)
    assert hls_only.lut == 59895 and hls_only.resources_from == "hls-estimate"
    _write(root / "vivado_synth.rpt", VIVADO_SYNTH_RPT)
    rep = find_reports(root)
    assert rep.tool == "vitis_hls+vivado" and rep.resources_from == "logic-synthesis"
    assert (rep.lut, rep.ff, rep.dsp, rep.bram_18k) == (52117, 31870, 128, 3)
    assert (rep.extra["hls_lut"], rep.extra["hls_ff"], rep.extra["hls_dsp"]) == (59895, 34199, 132)
    assert (rep.latency_cycles_max, rep.ii_min, rep.clock_period_ns_estimated) == (103, 92, 4.37)
    assert rep.source_files == [str(_csynth_path(root)), str(root / "vivado_synth.rpt")]


def test_find_reports_ignores_logic_synthesis_older_than_hls(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "prj")
    old = _write(root / "vivado_synth.rpt", VIVADO_SYNTH_RPT)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    _write(_csynth_path(root), VITIS_CSYNTH)
    rep = find_reports(root)
    assert rep.lut == 59895 and rep.resources_from == "hls-estimate" and len(rep.source_files) == 1


def test_find_reports_catapult_layout(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "prj", backend="Catapult")
    _write(root / "econt_prj" / "econt.v1" / "rtl.rpt", CATAPULT_RTL_RPT.replace("      12  ", "      30  "))
    sln = root / "econt_prj" / "econt.v2"
    _write(sln / "rtl.rpt", CATAPULT_RTL_RPT)
    _write(sln / "vivado_concat_v" / "utilization_synth.rpt", CATAPULT_UTIL_RPT)
    _write(sln / "vivado_concat_v" / "timing_summary_synth.rpt", TIMING_SUMMARY_RPT)
    rep = find_reports(root)
    assert rep.tool == "catapult+vivado" and rep.latency_cycles_min == 12  # the latest solution, v2
    assert (rep.lut, rep.ff, rep.dsp, rep.bram_18k) == (52117, 31870, 128, 1)
    assert rep.fmax_mhz == pytest.approx(229.043, abs=1e-3) and rep.clock_period_ns_estimated == pytest.approx(4.366)
    assert rep.extra["wns_ns"] == 0.634 and rep.extra["area_score"] == 209876.1


def test_find_reports_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not an hls4ml project"):
        find_reports(tmp_path)
    root = _hls4ml_project(tmp_path / "prj")
    with pytest.raises(ArtifactError, match=r"no C-synthesis report \(econt_prj/solution1/syn/report/econt_csynth"):
        find_reports(root)
    _write(root / "hls4ml_config.yml", "Backend: oneAPI\nProjectName: econt\n")
    with pytest.raises(ConfigError, match="'oneAPI' has no vendor synthesis"):
        find_reports(root)
    _write(root / "hls4ml_config.yml", "Backend: Vitis\n")
    with pytest.raises(ArtifactError, match=r"hls4ml_config\.yml: missing ProjectName"):
        find_reports(root)


# --------------------------------------------------------------------------- cross-checks with hls4ml


@needs_hls4ml
def test_csynth_and_vivado_synth_agree_with_hls4ml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hls4ml.report import parse_vivado_report

    for xml in (VITIS_CSYNTH, VIVADO_HLS_CSYNTH):
        root = _hls4ml_project(tmp_path / f"prj{len(xml)}")
        _write(_csynth_path(root), xml)
        _write(root / "vivado_synth.rpt", VIVADO_SYNTH_RPT)
        theirs = parse_vivado_report(str(root))
        ours_hls, ours = parse_vivado_csynth_xml(_csynth_path(root)), find_reports(root)
        csynth = theirs["CSynthesisReport"]
        for key, field in (("LUT", "lut"), ("FF", "ff"), ("DSP", "dsp"), ("BRAM_18K", "bram_18k")):
            assert int(csynth[key]) == getattr(ours_hls, field)
            assert int(csynth[f"Available{key}"]) == ours_hls.extra[f"available_{field}"]
        for key, field in (("BestLatency", "latency_cycles_min"), ("WorstLatency", "latency_cycles_max"),
                           ("IntervalMin", "ii_min"), ("IntervalMax", "ii_max")):
            value = getattr(ours_hls, field)
            assert csynth[key] == ("undef" if value is None else str(value))
        assert float(csynth["EstimatedClockPeriod"]) == ours_hls.clock_period_ns_estimated
        assert float(csynth["TargetClockPeriod"]) == ours_hls.clock_period_ns_target
        vsynth = theirs["VivadoSynthReport"]
        assert (int(vsynth["LUT"]), int(vsynth["FF"]), int(vsynth["DSP48E"])) == (ours.lut, ours.ff, ours.dsp)
        assert float(vsynth["BRAM_18K"]) * 2 == ours.bram_18k  # hls4ml reports 36 Kb tiles under that name
    capsys.readouterr()


@needs_hls4ml
def test_catapult_reports_agree_with_hls4ml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hls4ml.report import parse_catapult_report

    root = _hls4ml_project(tmp_path / "prj", backend="Catapult")
    _write(root / "hls4ml_config.yml", "Backend: Catapult\nProjectDir: null\nProjectName: econt\n")
    sln = root / "econt_prj" / "econt.v1"
    _write(sln / "rtl.rpt", CATAPULT_RTL_RPT)
    _write(sln / "nnet_layer_results.txt", "layer2 1.0 12\n")
    _write(sln / "vivado_concat_v" / "utilization_synth.rpt", CATAPULT_UTIL_RPT)
    _write(sln / "vivado_concat_v" / "timing_summary_synth.rpt", TIMING_SUMMARY_RPT)
    theirs, ours = parse_catapult_report(str(root)), find_reports(root)
    util = theirs["UtilizationReport"]
    assert (int(util["LUT"]), int(util["FF"]), int(util["DSP48E"])) == (ours.lut, ours.ff, ours.dsp)
    assert int(util["BRAM_18K"]) == ours.bram_18k  # their RAMB18 row; RAMB36 = 0 here
    assert theirs["TimingReport"]["WNS"] == ours.extra["wns_ns"]
    capsys.readouterr()


# --------------------------------------------------------------------------- registry


def _which(found: dict[str, str]):
    return lambda exe: found.get(exe)


def test_registry_is_available_with_fake_which() -> None:
    assert set(vendor.BACKENDS) == {"vitis", "vivado", "catapult"}
    none = _which({})
    for name in vendor.BACKENDS:
        backend = get_backend(name, which=none, environ={})
        assert backend.name == name and not backend.is_available()
    assert "needs vitis-run on PATH" in get_backend("vitis", none, {}).why_unavailable()
    assert "needs catapult on PATH" in get_backend("catapult", none, {}).why_unavailable()
    vitis = VitisBackend(_which({"vitis-run": "/opt/Xilinx/Vitis/2024.2/bin/vitis-run"}), {})
    assert vitis.is_available() and vitis.why_unavailable() == ""
    legacy = VitisBackend(_which({"vitis_hls": "/opt/Xilinx/Vitis_HLS/2023.1/bin/vitis_hls"}), {})
    assert not legacy.is_available()
    assert "vitis-run" in legacy.why_unavailable() and "/opt/Xilinx/Vitis_HLS/2023.1/bin/vitis_hls" in (
        legacy.why_unavailable())
    assert VivadoBackend(_which({"vivado_hls": "/x/vivado_hls"}), {}).is_available()
    assert "\n" not in VivadoBackend(none, {}).why_unavailable()
    with pytest.raises(ConfigError, match="unknown vendor backend 'quartus'"):
        get_backend("quartus")
    assert get_backend("Vitis", none, {}).name == "vitis"


def test_catapult_found_through_mgc_home(tmp_path: Path) -> None:
    exe = _write(tmp_path / "mgc" / "bin" / "catapult", "#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    backend = CatapultBackend(_which({}), {"MGC_HOME": str(tmp_path / "mgc")})
    assert backend.is_available() and backend.tool_path() == str(exe)
    assert not CatapultBackend(_which({}), {"MGC_HOME": str(tmp_path / "nothing")}).is_available()


def test_build_refuses_when_tool_missing(tmp_path: Path) -> None:
    cases = [("Vitis", VitisBackend, "vitis-run"), ("Vivado", VivadoBackend, "vivado_hls"),
             ("Catapult", CatapultBackend, "catapult")]
    for hls4ml_name, cls, exe in cases:
        root = _hls4ml_project(tmp_path / hls4ml_name, backend=hls4ml_name)
        with pytest.raises(ToolUnavailableError, match=exe) as info:
            cls(_which({}), {}).build(root)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "Vitis" / vendor.BUILD_LOG).exists()  # nothing was started


def test_build_checks_vivado_for_vsynth_and_project_backend(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "prj")
    vitis = VitisBackend(_which({"vitis-run": "/x/vitis-run"}), {})
    with pytest.raises(ToolUnavailableError, match="needs vivado on PATH"):
        vitis.build(root, vsynth=True)
    with pytest.raises(ConfigError, match="hls4ml Vitis project cannot be built with Vivado HLS"):
        VivadoBackend(_which({"vivado_hls": "/x/vivado_hls"}), {}).build(root)
    with pytest.raises(ConfigError, match="nothing to build"):
        vitis.build(root, synth=False)
    assert vendor.backend_for_project(root, _which({}), {}).name == "vitis"


# --------------------------------------------------------------------------- build() against fake tools


def _fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    path = _write(bin_dir / name, "#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fake_env(bin_dir: Path) -> tuple:
    return (lambda exe: shutil.which(exe, path=str(bin_dir))), dict(os.environ)


@needs_hls4ml
@needs_posix
def test_vitis_build_runs_hls4ml_build_and_reads_the_report(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "prj")
    _write(root / "recorded_csynth.xml", VITIS_CSYNTH)
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "vitis-run", 'echo "fake vitis-run $*"\ncat build_opt.tcl\n'
               "mkdir -p econt_prj/solution1/syn/report\n"
               "cp recorded_csynth.xml econt_prj/solution1/syn/report/econt_csynth.xml\n")
    rep = VitisBackend(*_fake_env(bin_dir)).build(root, timeout_s=120)
    assert (rep.lut, rep.latency_cycles_max, rep.ii_max) == (59895, 103, 92)
    log = (root / vendor.BUILD_LOG).read_text()
    assert "fake vitis-run --tcl build_prj.tcl --mode hls" in log  # hls4ml's own command line
    opts = (root / "build_opt.tcl").read_text()  # written by hls4ml's VitisBackend.build
    assert "csim       0" in opts and "synth      1" in opts and "vsynth     0" in opts

    _write(root / "recorded_vivado_synth.rpt", VIVADO_SYNTH_RPT)
    _fake_tool(bin_dir, "vivado", "exit 0\n")
    with open(bin_dir / "vitis-run", "a") as script:  # like build_prj.tcl: vsynth runs vivado after csynth
        script.write('grep -q "vsynth     1" build_opt.tcl && cp recorded_vivado_synth.rpt vivado_synth.rpt\nexit 0\n')
    rep = VitisBackend(*_fake_env(bin_dir)).build(root, vsynth=True, timeout_s=120)
    assert rep.resources_from == "logic-synthesis" and (rep.lut, rep.dsp, rep.extra["hls_dsp"]) == (52117, 128, 132)


@needs_hls4ml
@needs_posix
def test_failing_tool_stale_report_and_timeout(tmp_path: Path) -> None:
    root = _hls4ml_project(tmp_path / "viv", backend="Vivado")
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "vivado_hls", 'echo "ERROR: [HLS 200-70] Compilation errors found"\nexit 1\n')
    with pytest.raises(SynthesisError, match=r"vivado_hls -f build_prj\.tcl .* exited with status 1 ") as info:
        VivadoBackend(*_fake_env(bin_dir)).build(root, timeout_s=120)
    assert isinstance(info.value, AeforgeError) and "\n" not in str(info.value)

    root = _hls4ml_project(tmp_path / "vitis")
    old = _write(_csynth_path(root), VITIS_CSYNTH)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    _fake_tool(bin_dir, "vitis-run", "echo did nothing\n")
    with pytest.raises(SynthesisError, match="left an old report"):
        VitisBackend(*_fake_env(bin_dir)).build(root, timeout_s=120)

    _fake_tool(bin_dir, "vitis-run", "echo $$ > tool.pid\nexec sleep 60\n")
    start = time.monotonic()
    with pytest.raises(SynthesisError, match="timed out after 4 s"):
        VitisBackend(*_fake_env(bin_dir)).build(root, timeout_s=4)
    assert time.monotonic() - start < 30
    pid = int((root / "tool.pid").read_text())
    stat_file = Path(f"/proc/{pid}/stat")
    for _ in range(50):  # the whole process group was killed (a zombie awaiting its reaper is dead too)
        if not stat_file.exists() or stat_file.read_text().split(") ")[1][0] in "ZX":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"fake tool {pid} survived the timeout")
