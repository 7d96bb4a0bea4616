"""The analytical estimates against real Yosys numbers (aeforge.hls.estimate), about half a minute.

Measured with Yosys 0.23 (Debian) on da4ml RTL, 2 pipeline stages (ECON-T: 3); ratio = Yosys / estimate:

=================================  ========  =========  =====  ======  ========  ===========
model                              est. LUT  Yosys LUT  ratio  est.FF  Yosys FF  gates ratio
=================================  ========  =========  =====  ======  ========  ===========
MLP 8-8-4 (this test)                 1,152        910   0.79     128       131         0.68
MLP 16-24-8 (test_rtl.py)            11,461      7,327   0.64     400       512         0.61
conv 6x6x2 3x3x4 valid, dense 6      31,813     20,667   0.65   1,148     1,617            -
ECON-T encoder (trained demo run)    50,959     31,622   0.62   3,088     3,652         0.62
seq1d (test_rtl_layers.py) [1]       1,341        952   0.71     135       183            -
img2d (test_rtl_layers.py)           3,686      3,132   0.85     360       385            -
res1d (test_rtl_layers.py) [1]         685        669   0.98     139       142            -
=================================  ========  =========  =====  ======  ========  ===========

[1] with sq_error: 8 multipliers, estimated and synthesized as 8 DSP48E1 each.

The estimate ignores da4ml's common-subexpression sharing, so it is an upper bound on LUTs;
``XC7_LUT_CALIBRATION`` is the typical ratio. The factors asserted below are wider than measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from aeforge.errors import ConfigError
from aeforge.hls.estimate import (
    XC7_LUT_CALIBRATION,
    estimate_energy,
    estimate_from_rtl,
    estimate_resources,
    measure_activity,
)
from aeforge.hls.rtl import da4ml_available
from aeforge.hls.rtl.yosys import synthesize, why_yosys_unavailable
from tests.small_models import small_mlp

DA4ML_MISSING = da4ml_available()
YOSYS_MISSING = why_yosys_unavailable()
pytestmark = pytest.mark.skipif(
    DA4ML_MISSING is not None or YOSYS_MISSING is not None, reason=str(DA4ML_MISSING or YOSYS_MISSING)
)
STAGES = 2


def _mlp():
    return small_mlp()


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    from aeforge.hls.rtl import generate_rtl

    model = _mlp()
    project = generate_rtl(model, tmp_path_factory.mktemp("estimate") / "rtl", pipeline_stages=STAGES)
    return {
        "model": model,
        "project": project,
        "xc7": synthesize(project, "xc7", timeout_s=300),
        "generic": synthesize(project, "generic", timeout_s=300),
    }


def test_resources_within_stated_factors(synthesized) -> None:
    estimate = estimate_resources(synthesized["model"], pipeline_stages=STAGES)
    xc7 = synthesized["xc7"]
    assert estimate.latency_cycles == synthesized["project"].latency_cycles
    assert 0.9 * xc7.lut <= estimate.lut <= 3.0 * xc7.lut  # an upper bound (no CSE), not wildly so
    assert xc7.lut / 2 <= estimate.calibrated_lut <= 2 * xc7.lut
    assert xc7.carry / 2 <= estimate.carry <= 3 * xc7.carry
    assert xc7.ff / 1.5 <= estimate.ff <= 1.5 * xc7.ff
    generic = synthesized["generic"]
    assert generic.gates / 2.5 <= estimate.gates <= 2.5 * generic.gates
    assert estimate.calibrated_lut == round(estimate.lut * XC7_LUT_CALIBRATION)
    from_rtl = estimate_from_rtl(synthesized["project"])
    assert xc7.lut / 1.5 <= from_rtl.lut <= 1.5 * xc7.lut
    assert from_rtl.ff == synthesized["project"].register_bits


def test_energy_accepts_the_real_report(synthesized) -> None:
    model = synthesized["model"]
    generic = synthesized["generic"]
    t = model.input_type
    inputs = t.quantize(np.random.default_rng(0).uniform(t.min_value, t.max_value, size=(200, *model.input_shape)))
    activity = measure_activity(model, inputs)
    energy = estimate_energy(generic, node_nm=65, clock_mhz=40, activity=activity)
    assert energy.energy_j_per_inference > 0
    assert energy.breakdown_j["clock"] > 0 and energy.breakdown_j["combinational"] > 0  # pipelined: registers
    assert energy.inputs["flip_flops"] == generic.ff
    assert energy.as_dict()["energy_nj"] == pytest.approx(energy.energy_j_per_inference * 1e9)
    with pytest.raises(ConfigError, match="generic"):
        estimate_energy(synthesized["xc7"])


def test_new_kinds_within_stated_factors(tmp_path) -> None:
    """conv1d, maxpool, upsample and sq_error (its multipliers on DSP48E1) against Yosys xc7."""
    from aeforge.hls.rtl import generate_rtl
    from tests.integration.test_rtl_layers import make_model

    model = make_model("seq1d")
    project = generate_rtl(model, tmp_path / "rtl", pipeline_stages=STAGES)
    xc7 = synthesize(project, "xc7", timeout_s=300)
    estimate = estimate_resources(model, pipeline_stages=STAGES)
    assert estimate.dsp == xc7.dsp == 8
    assert 0.9 * xc7.lut <= estimate.lut <= 3.0 * xc7.lut
    assert xc7.ff / 1.5 <= estimate.ff <= 1.5 * xc7.ff
