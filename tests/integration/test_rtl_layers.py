"""da4ml RTL of every layer kind beyond conv2d/dense/relu/quant, bit-exact against Brevitas in Verilator.

Verilator builds dominate the runtime (about 20-40 s each on 2 cores), so the kinds share three
tiny models, each built once (module-scoped fixtures):

* ``seq1d`` (combinational): conv1d (explicit padding, stride 2) -> relu -> maxpool 1-D ->
  upsample 1-D -> conv1d (same) -> quant -> sq_error against the input (multipliers);
* ``img2d`` (combinational): conv2d (same) -> relu -> maxpool 2x2 -> upsample 2x2 -> add (residual
  with the relu output) -> avgpool 2x2 -> flatten (every pooled element is an output);
* ``res1d`` (pipelined, 2 stages): quant -> conv1d (same) -> quant -> add (residual with the quantized
  input) -> avgpool 1-D -> upsample -> quant -> sq_error.
"""

from __future__ import annotations

import numpy as np
import pytest

from aeforge.hls.rtl import da4ml_available, why_verilator_unavailable
from aeforge.verification import compare, predict_brevitas
from tests.small_models import spread_weights

DA4ML_MISSING = da4ml_available()
VERILATOR_MISSING = why_verilator_unavailable()
needs_da4ml = pytest.mark.skipif(DA4ML_MISSING is not None, reason=str(DA4ML_MISSING))
needs_sim = pytest.mark.skipif(
    DA4ML_MISSING is not None or VERILATOR_MISSING is not None, reason=str(DA4ML_MISSING or VERILATOR_MISSING)
)
N_VECTORS = 1000
IN = "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"
WEIGHT = "ap_fixed<5,2,AP_RND_CONV,AP_SAT>"
BIAS = "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"
ACT = "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"


def _conv(kind: str, name: str, filters: int, kernel: int, **kw) -> dict:
    return {"kind": kind, "name": name, "filters": filters, "kernel_size": kernel, "weight": WEIGHT, "bias": BIAS, **kw}


SPECS = {
    "seq1d": {"input": {"shape": [8, 1], "type": IN}, "layers": [
        _conv("conv1d", "c1", 2, 3, strides=2, padding=[[2, 1]]),  # (8 + 3 - 3) // 2 + 1 = 5 positions
        {"kind": "relu", "name": "r1", "type": ACT},
        {"kind": "maxpool", "name": "pool", "pool_size": 3, "strides": 2},  # 5 -> 2
        {"kind": "upsample", "name": "up", "size": 4},  # 2 -> 8
        _conv("conv1d", "c2", 1, 3, padding="same"),
        {"kind": "quant", "name": "rec", "type": IN},
        {"kind": "sq_error", "name": "score", "source": "input"},
    ]},
    "img2d": {"input": {"shape": [4, 4, 1], "type": IN}, "layers": [
        _conv("conv2d", "c1", 2, 3, padding="same"),
        {"kind": "relu", "name": "r1", "type": ACT},
        {"kind": "maxpool", "name": "pool", "pool_size": 2},  # 4x4 -> 2x2
        {"kind": "upsample", "name": "up", "size": 2},  # -> 4x4
        {"kind": "add", "name": "res", "source": "r1"},
        {"kind": "avgpool", "name": "avg", "pool_size": [2, 2]},  # -> 2x2, 2 more fractional bits
        {"kind": "flatten", "name": "flat"},
    ]},
    "res1d": {"input": {"shape": [8, 1], "type": IN}, "layers": [
        {"kind": "quant", "name": "x", "type": "ap_fixed<5,2,AP_RND_CONV,AP_SAT>"},
        _conv("conv1d", "c1", 1, 3, padding="same"),
        {"kind": "quant", "name": "q1", "type": "ap_fixed<5,2,AP_RND_CONV,AP_SAT>"},
        {"kind": "add", "name": "res", "source": "x"},
        {"kind": "avgpool", "name": "avg", "pool_size": 2},  # 8 -> 4
        {"kind": "upsample", "name": "up", "size": 2},  # -> 8
        {"kind": "quant", "name": "rec", "type": IN},
        {"kind": "sq_error", "name": "score", "source": "input"},
    ]},
}  # fmt: skip
STAGES = {"seq1d": None, "img2d": None, "res1d": 2}
KINDS = {  # kind -> the models that cover it
    "conv1d": ("seq1d", "res1d"), "maxpool": ("seq1d", "img2d"), "avgpool": ("img2d", "res1d"),
    "upsample": ("seq1d", "img2d", "res1d"), "add": ("img2d", "res1d"), "sq_error": ("seq1d", "res1d"),
}  # fmt: skip


def make_model(name: str, seed: int = 4):
    from aeforge.quantize.models.sequential import build_sequential

    return spread_weights(build_sequential(SPECS[name]).eval(), seed)


def grid_inputs(model, n: int = N_VECTORS, seed: int = 5) -> np.ndarray:
    t = model.input_type
    return t.quantize(np.random.default_rng(seed).uniform(t.min_value, t.max_value, size=(n, *model.input_shape)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (model, project, inputs, Brevitas reference); each project generated and verilated once."""
    from aeforge.hls.rtl import generate_rtl

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model = make_model(name)
            inputs = grid_inputs(model)
            project = generate_rtl(model, tmp_path_factory.mktemp(name) / "rtl", pipeline_stages=STAGES[name])
            cache[name] = (model, project, inputs, predict_brevitas(model, inputs, model.input_type))
        return cache[name]

    return get


def test_every_new_kind_is_covered() -> None:
    from aeforge.quantize.models.spec import SequentialSpec

    for kind, names in KINDS.items():
        for name in names:
            assert kind in {layer.kind for layer in SequentialSpec.from_dict(SPECS[name]).layers}, (kind, name)


@needs_sim
@pytest.mark.parametrize("name", list(SPECS))
def test_rtl_bit_exact(built, name) -> None:
    from aeforge.hls.rtl import measure_latency, rtl_predict

    model, project, inputs, reference = built(name)
    assert project.pipelined == (STAGES[name] is not None)
    flat = reference.reshape(len(reference), -1)
    assert np.count_nonzero(flat) > len(flat) // 2 and len(np.unique(flat)) > 50  # not a trivial comparison
    got = rtl_predict(project, inputs)
    fidelity = compare(reference, got, model.output_type, "rtl")
    assert fidelity.bit_exact, str(fidelity)
    assert fidelity.n == N_VECTORS
    if STAGES[name] is not None:
        latency = measure_latency(project, inputs[:64])
        assert latency == project.latency_cycles and 1 <= latency <= STAGES[name]


@needs_da4ml
def test_output_ports_carry_the_exact_types(built) -> None:
    """The reconstruction score is unsigned with twice the input's fractional bits; the average has 2 more."""
    from aeforge.hls.rtl import trace_model

    model = make_model("seq1d")
    comb = trace_model(model)
    assert len(comb.out_qint) == 1
    assert model.output_type.frac_bits == 2 * model.input_type.frac_bits and not model.output_type.signed
    img = make_model("img2d")
    assert img.output_type.frac_bits == img.spec.input.type.frac_bits + 2
    assert len(trace_model(img).out_qint) == 2 * 2 * 2


@needs_da4ml
def test_estimates_see_the_new_kinds(built) -> None:
    """The analytical estimate counts comparators, adders and multipliers where the RTL has them."""
    from aeforge.hls.estimate import estimate_resources

    for name in SPECS:
        model, project, _, _ = built(name)
        estimate = estimate_resources(model, pipeline_stages=STAGES[name])
        kinds = {layer.kind: layer for layer in estimate.layers}
        if "maxpool" in kinds:
            assert kinds["maxpool"].comparators > 0 and kinds["maxpool"].lut > 0
        if "sq_error" in kinds:
            assert kinds["sq_error"].multipliers == 8
        if "add" in kinds:
            assert kinds["add"].adders == kinds["add"].outputs
        assert 0.3 * project.estimated_luts <= estimate.lut + 10 * estimate.dsp <= 5 * project.estimated_luts
