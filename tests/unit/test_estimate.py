"""Analytical resource estimates and ASIC energy estimates (aeforge.hls.estimate), no tools needed."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aeforge.errors import ArtifactError, ConfigError
from aeforge.hls import estimate as est
from tests.small_models import small_mlp, spread_weights


def _tiny(final_quant: bool = True):
    """2 integer inputs 0..15 -> one output 3*x0 + 1*x1 (weights exact on ap_fixed<4,4>)."""
    from aeforge.quantize.models.sequential import build_sequential

    layers = [{"kind": "dense", "name": "fc", "units": 1, "weight": "ap_fixed<4,4,AP_RND_CONV,AP_SAT>"}]
    if final_quant:
        layers.append({"kind": "relu", "name": "act", "type": "ap_ufixed<4,4,AP_TRN,AP_SAT>"})
    model = build_sequential({"input": {"shape": [2], "type": "ap_ufixed<4,4,AP_TRN,AP_SAT>"}, "layers": layers})
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[3.0, 1.0]]))
    return model.eval()


def _mlp():
    return small_mlp()


def _conv():
    from aeforge.quantize.models.sequential import build_sequential

    spec = {
        "input": {"shape": [5, 5, 2], "type": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
        "layers": [
            {"kind": "conv2d", "name": "c1", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
             "weight": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>", "bias": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
            {"kind": "relu", "name": "r1", "type": "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"},
            {"kind": "flatten", "name": "f"},
            {"kind": "dense", "name": "d1", "units": 4, "weight": "ap_fixed<5,1,AP_RND_CONV,AP_SAT>"},
            {"kind": "quant", "name": "out", "type": "ap_fixed<10,4,AP_TRN,AP_SAT_SYM>"},
        ],
    }  # fmt: skip
    model = build_sequential(spec).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)
    return model


def _econt():
    from aeforge.config import ModelConfig, QuantConfig
    from aeforge.quantize.models.econt import build_autoencoder

    encoder = build_autoencoder(ModelConfig(), QuantConfig()).encoder.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)
    return encoder


U4 = "ap_ufixed<4,4,AP_TRN,AP_SAT>"
IN = "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"
W = "ap_fixed<5,2,AP_RND_CONV,AP_SAT>"
KIND_SPECS = {  # one small model per group of new kinds (the RTL twins are in tests/integration/test_rtl_layers.py)
    "pool1d": {"input": {"shape": [9, 1], "type": IN}, "layers": [
        {"kind": "conv1d", "name": "c", "filters": 2, "kernel_size": 3, "strides": 2, "padding": [[1, 2]],
         "weight": W, "bias": W},
        {"kind": "relu", "name": "r", "type": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
        {"kind": "maxpool", "name": "mp", "pool_size": 2},
        {"kind": "upsample", "name": "up", "size": 2},
        {"kind": "avgpool", "name": "ap", "pool_size": 2, "strides": 1},
        {"kind": "flatten", "name": "f"}]},
    "img": {"input": {"shape": [4, 4, 2], "type": IN}, "layers": [
        {"kind": "conv2d", "name": "c", "filters": 2, "kernel_size": 3, "padding": "same", "weight": W},
        {"kind": "quant", "name": "q", "type": IN},
        {"kind": "add", "name": "res", "source": "input"},
        {"kind": "maxpool", "name": "mp", "pool_size": [2, 1]},
        {"kind": "avgpool", "name": "ap", "pool_size": [1, 2]},
        {"kind": "flatten", "name": "f"},
        {"kind": "dense", "name": "d", "units": 3, "weight": W}]},
    "score": {"input": {"shape": [6], "type": IN}, "layers": [
        {"kind": "dense", "name": "enc", "units": 2, "weight": W, "bias": W},
        {"kind": "relu", "name": "r", "type": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
        {"kind": "dense", "name": "dec", "units": 6, "weight": W},
        {"kind": "quant", "name": "rec", "type": IN},
        {"kind": "sq_error", "name": "score", "source": "input"}]},
}  # fmt: skip


def _kind_model(name: str):
    from aeforge.quantize.models.sequential import build_sequential

    return spread_weights(build_sequential(KIND_SPECS[name]).eval(), 2)


def _two(layers: list[dict], shape: list[int] | None = None, in_type: str = U4):
    from aeforge.quantize.models.sequential import build_sequential

    return build_sequential({"input": {"shape": shape or [2, 1], "type": in_type}, "layers": layers}).eval()


# ------------------------------------------------------------------------------------ CSD
@pytest.mark.parametrize(
    ("code", "digits"),
    [(0, []), (1, [(0, 1)]), (-1, [(0, -1)]), (3, [(0, -1), (2, 1)]), (7, [(0, -1), (3, 1)]),
     (5, [(0, 1), (2, 1)]), (-6, [(1, 1), (3, -1)]), (11, [(0, -1), (2, -1), (4, 1)])],
)  # fmt: skip
def test_csd_digits_known(code, digits) -> None:
    assert est.csd_digits(code) == digits
    assert est.csd_nonzero(code) == len(digits)


def test_csd_is_canonical() -> None:
    for code in range(-600, 601):
        digits = est.csd_digits(code)
        assert sum(sign * 2**pos for pos, sign in digits) == code
        positions = [pos for pos, _ in digits]
        assert all(b - a >= 2 for a, b in itertools.pairwise(positions))  # no adjacent digits
        assert len(digits) <= bin(abs(code)).count("1")


# ------------------------------------------------------------------------------------ adders
def test_node_bits_and_adder_widths() -> None:
    assert est.node_bits((0.0, 15.0, 0)) == 4
    assert est.node_bits((-8.0, 7.0, 0)) == 4
    assert est.node_bits((-8.0, 7.875, -3)) == 7  # ap_fixed<7,4>
    assert est.node_bits((0.0, 0.0, 0)) == 0
    total, bits = est.adder_bits((0.0, 15.0, 0), (0.0, 15.0, 0))
    assert total == (0.0, 30.0, 0) and bits == 5
    total, bits = est.adder_bits((-8.0, 7.0, 0), (-8.0, 7.0, 0))
    assert total == (-16.0, 14.0, 0) and bits == 5
    _, bits = est.adder_bits((0.0, 15.0, 0), (0.0, 60.0, 2))  # x + (x << 2): bits 2..6 added, 0..1 pass
    assert bits == 5


def test_tiny_dense_is_hand_computable() -> None:
    # 3*x0 + x1 with CSD(3) = 4 - 1: terms x0<<2 (0..60), x1 (0..15), -x0 (-15..0)
    # level 1: x0<<2 + x1 -> 0..75, 5 adder bits (result 7 bits above LSB 2); level 2: + (-x0) -> -15..75, 8 bits
    estimate = est.estimate_resources(_tiny(), pipeline_stages=1)
    fc, act = estimate.layers
    assert (fc.macs, fc.nonzero_weights, fc.csd_digits, fc.adders) == (2, 2, 3, 2)
    assert (fc.adder_bits, fc.lut, fc.carry, fc.depth) == (13, 13, 4, 2)
    assert act.lut == 4  # -15..75 clamped to ap_ufixed<4,4>: one LUT per output bit, no rounding (same LSB)
    assert estimate.lut == 17 and estimate.carry == 4 and estimate.dsp == 0
    assert estimate.register_bits == estimate.ff == 2 * 4 + 4  # input rank + output rank
    assert estimate.latency_cycles == 1 and estimate.ii == 1
    assert estimate.calibrated_lut == round(17 * est.XC7_LUT_CALIBRATION)
    comb = est.estimate_resources(_tiny())
    assert comb.ff == 0 and comb.latency_cycles == 0
    assert set(estimate.as_dict()) >= {"lut", "ff", "carry", "dsp", "latency_cycles", "ii", "layers", "method"}


def test_models_estimate_and_pipeline_registers_grow() -> None:
    for model in (_mlp(), _conv(), _econt()):
        ffs = [est.estimate_resources(model, pipeline_stages=s).ff for s in (1, 2, 4)]
        assert ffs[0] > 0 and ffs[0] <= ffs[1] <= ffs[2]
        estimate = est.estimate_resources(model)
        assert estimate.lut > 0 and estimate.carry > 0 and estimate.gates > estimate.lut
        generic = est.estimate_resources(model, target="generic")
        assert generic.lut is None and generic.carry is None and generic.gates == estimate.gates
    conv = est.estimate_resources(_conv())
    # 5x5 'same' stride 2 -> 3x3 pixels; corner windows lose padded inputs: fewer than 9*2 MACs per output
    assert conv.layers[0].outputs == 3 * 3 * 3 and conv.layers[0].macs < 9 * 3 * 18


def test_econt_macs() -> None:
    estimate = est.estimate_resources(_econt())
    conv, _, dense, _ = estimate.layers
    assert dense.macs == 128 * 16
    assert conv.outputs == 128 and conv.macs < 128 * 9  # padding excluded
    assert estimate.macs == conv.macs + dense.macs


def test_new_kinds_are_hand_computable() -> None:
    # max of two ap_ufixed<4,4>: a 5-bit comparator (0..15 - 0..15) and a 4-bit mux
    (mp,) = est.estimate_resources(_two([{"kind": "maxpool", "name": "mp", "pool_size": 2}])).layers
    assert (mp.comparators, mp.adder_bits, mp.lut, mp.carry, mp.depth, mp.output_bits) == (1, 5, 9, 2, 1, 4)
    # mean of four: 3 adders (5, 5 and 6 bits); the 2**-2 is wiring (output 6 bits, 2 fractional)
    (ap,) = est.estimate_resources(_two([{"kind": "avgpool", "name": "ap", "pool_size": 4}], [4, 1])).layers
    assert (ap.adders, ap.adder_bits, ap.depth, ap.output_bits) == (3, 16, 2, 6)
    # residual add of two 0..15 vectors: one 5-bit adder per element
    add = est.estimate_resources(_two([{"kind": "quant", "name": "q", "type": U4},
                                       {"kind": "add", "name": "a", "source": "input"}], [2]))
    assert (add.layers[1].adders, add.layers[1].adder_bits, add.layers[1].carry) == (2, 10, 4)
    # sq_error on ap_fixed<3,3> (-4..3): 4-bit differences; 8-bit products stay in LUTs on xc7 ...
    small = [{"kind": "quant", "name": "q", "type": "ap_fixed<3,3,AP_TRN,AP_SAT>"},
             {"kind": "sq_error", "name": "s", "source": "input"}]
    sq = est.estimate_resources(_two(small, [2], "ap_fixed<3,3,AP_TRN,AP_SAT>")).layers[1]
    assert (sq.multipliers, sq.dsp, sq.outputs) == (2, 0, 1)
    assert sq.lut == sq.adder_bits + 2 * round(est.XC7_MULT_LUT_PER_BIT2 * 16)
    # ... ap_fixed<4,4> (-8..7): 5-bit differences, 10-bit products go to DSP48E1 (Yosys synth_xilinx)
    wide = [{"kind": "quant", "name": "q", "type": "ap_fixed<4,4,AP_TRN,AP_SAT>"},
            {"kind": "sq_error", "name": "s", "source": "input"}]
    model = _two(wide, [2], "ap_fixed<4,4,AP_TRN,AP_SAT>")
    assert est.estimate_resources(model).dsp == 2
    generic = est.estimate_resources(model, target="generic")
    assert generic.dsp == 0 and generic.layers[1].gates > 2 * 25  # the multipliers are gates there
    # upsample and flatten are wiring
    up = est.estimate_resources(_two([{"kind": "upsample", "name": "u", "size": 3}])).layers[0]
    assert (up.lut, up.adders, up.outputs) == (0, 0, 6)


def test_new_kinds_estimate_energy_and_registers() -> None:
    for name in KIND_SPECS:
        model = _kind_model(name)
        comb = est.estimate_resources(model)
        assert comb.lut > 0 and comb.ff == 0 and comb.gates > 0
        ffs = [est.estimate_resources(model, pipeline_stages=s).ff for s in (1, 2, 4)]
        assert 0 < ffs[0] <= ffs[1] <= ffs[2]
        energy = est.estimate_mac_energy(model, node_nm=45)
        assert energy.energy_j_per_inference > 0 and energy.breakdown_j["adders"] > 0
        t = model.input_type
        inputs = t.quantize(np.random.default_rng(3).uniform(t.min_value, t.max_value, (50, *model.input_shape)))
        assert 0.05 < est.measure_activity(model, inputs) < 0.7
    score = _kind_model("score")
    layers = {layer.kind: layer for layer in est.estimate_resources(score).layers}
    assert layers["sq_error"].multipliers == 6 and layers["sq_error"].adders == 6 + 5
    squares_pj = 6 * est.mult_energy_pj(7, 7)  # 6 squares of 7-bit differences (ap_fixed<6,2> - ap_fixed<6,2>)
    dense_pj = 12 * est.mult_energy_pj(6, 5) + 12 * est.mult_energy_pj(6, 5)
    mult_j = est.estimate_mac_energy(score, node_nm=45, weight_register_copies=0).breakdown_j["multipliers"]
    assert mult_j == pytest.approx((squares_pj + dense_pj) * 1e-12)
    # the input stays registered until sq_error reads it: more flip-flops than the same model without the score
    no_score = {**KIND_SPECS["score"], "layers": KIND_SPECS["score"]["layers"][:-1]}
    from aeforge.quantize.models.sequential import build_sequential

    plain = spread_weights(build_sequential(no_score).eval(), 2)
    assert est.estimate_resources(score, pipeline_stages=3).ff > est.estimate_resources(plain, pipeline_stages=3).ff


def test_estimate_from_rtl_uses_da4ml_cost() -> None:
    project = SimpleNamespace(
        estimated_luts=1000.0, register_bits=321, latency_cycles=2, extra={"combinational_delay": [3.0, 7.5]}
    )
    estimate = est.estimate_from_rtl(project)
    assert estimate.lut == round(1000 * est.DA4ML_TO_XC7_LUT) and estimate.ff == 321
    assert estimate.latency_cycles == 2 and estimate.combinational_depth == 8


def test_resource_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="target"):
        est.estimate_resources(_tiny(), target="xc9")
    with pytest.raises(ConfigError, match="pipeline_stages"):
        est.estimate_resources(_tiny(), pipeline_stages=0)
    with pytest.raises(ArtifactError, match="not quantized"):
        from aeforge.quantize.models.sequential import build_sequential

        est.estimate_resources(build_sequential(_mlp().spec, quantized=False))
    with pytest.raises(ArtifactError, match=r"as_sequential.*Linear"):
        est.estimate_resources(torch.nn.Linear(2, 2))
    from aeforge.config import ModelConfig, QuantConfig
    from aeforge.quantize.models.econt import build_autoencoder

    with pytest.raises(ArtifactError, match="encoder"):
        est.estimate_mac_energy(build_autoencoder(ModelConfig(), QuantConfig()))
    with pytest.raises(ArtifactError, match="not quantized"):
        est.measure_activity(build_autoencoder(ModelConfig(), None).encoder, np.zeros((4, 1, 8, 8)))


# ------------------------------------------------------------------------------------ numpy model
@pytest.mark.parametrize("make", [_mlp, _conv, _econt, *(lambda n=n: _kind_model(n) for n in KIND_SPECS)],
                         ids=["mlp", "conv", "econt", *KIND_SPECS])
def test_forward_values_match_the_torch_model(make) -> None:
    model = make()
    rng = np.random.default_rng(1)
    t = model.input_type
    inputs = t.quantize(rng.uniform(t.min_value, t.max_value, size=(64, *model.input_shape)))
    signals = est.forward_values(model, inputs)
    with torch.no_grad():
        reference = model(torch.tensor(inputs, dtype=torch.float32)).double().numpy().reshape(len(inputs), -1)
    np.testing.assert_array_equal(signals[-1][1], reference)
    for name, values, lsb, bits in signals:  # every word fits its width on its grid
        codes = np.ldexp(values, -lsb)
        assert np.all(codes == np.round(codes)), name
        assert np.all(np.abs(codes) < 2.0**bits), name


def test_measure_activity() -> None:
    model = _mlp()
    t = model.input_type
    same = np.full((10, *model.input_shape), t.lsb * 3)
    assert est.measure_activity(model, same) == 0.0
    rng = np.random.default_rng(0)
    random = t.quantize(rng.uniform(t.min_value, t.max_value, size=(500, *model.input_shape)))
    activity = est.measure_activity(model, random)
    assert 0.1 < activity < 0.6
    with pytest.raises(ConfigError, match="at least 2"):
        est.measure_activity(model, random[:1])
    with pytest.raises(ConfigError, match="shape"):
        est.measure_activity(model, random[:, :3])


# ------------------------------------------------------------------------------------ energy
def test_horowitz_table_is_reproduced() -> None:
    assert est.add_energy_pj(8) == pytest.approx(0.03)
    assert est.add_energy_pj(32) == pytest.approx(0.1)
    assert est.mult_energy_pj(8, 8) == pytest.approx(0.2)
    assert est.mult_energy_pj(32, 32) == pytest.approx(3.1)
    assert est.add_energy_pj(8) < est.add_energy_pj(16) < est.add_energy_pj(32)
    assert est.mult_energy_pj(4, 16) == pytest.approx(est.mult_energy_pj(8, 8))
    e45 = est.e_toggle_45nm_fj()
    assert 0.8 < e45 < 1.3
    for (op, bits), energy_pj in est.HOROWITZ_45NM_PJ.items():  # the gate model reproduces each entry within 25 %
        model_pj = est._gate_model_ge(op, bits) * est.RANDOM_TOGGLE * e45 / 1000
        assert model_pj == pytest.approx(energy_pj, rel=0.25), (op, bits)


def test_node_scaling_rules() -> None:
    assert est.node_scale(45) == pytest.approx(1.0)
    assert est.node_vdd_v(65) == pytest.approx(1.2)
    assert est.node_scale(65) == pytest.approx(65 / 45 * (1.2 / 0.9) ** 2)
    assert est.node_scale(90, vdd_v=0.9) == pytest.approx(2.0)  # C ~ feature size at fixed supply
    assert est.node_scale(45, vdd_v=1.8) == pytest.approx(4.0)  # ~ V^2
    nodes = np.geomspace(5, 250, 60)
    scales = [est.node_scale(float(n)) for n in nodes]
    assert all(b > a for a, b in itertools.pairwise(scales))  # monotone in the node
    assert est.e_toggle_fj(65) == pytest.approx(est.e_toggle_45nm_fj() * est.node_scale(65))


def test_energy_from_cells_known_numbers() -> None:
    e45 = est.e_toggle_45nm_fj()
    energy = est.estimate_energy({"$_AND_": 1000}, node_nm=45, clock_mhz=40, activity=0.5)
    assert energy.energy_j_per_inference == pytest.approx(1000 * 0.5 * e45 * 1e-15)
    assert energy.power_w == pytest.approx(energy.energy_j_per_inference * 40e6)
    assert energy.breakdown_j["clock"] == 0 and energy.vdd_v == pytest.approx(0.9)
    flops = est.estimate_energy({"$_DFF_P_": 10, "$_XOR_": 2}, node_nm=45, activity=0.1)
    assert flops.breakdown_j["clock"] == pytest.approx(10 * est.FF_CLOCK_GE * e45 * 1e-15)
    assert flops.breakdown_j["flip_flops"] == pytest.approx(10 * est.FF_DATA_GE * 0.1 * e45 * 1e-15)
    assert flops.breakdown_j["combinational"] == pytest.approx(2 * 1.5 * 0.1 * e45 * 1e-15)
    glitchy = est.estimate_energy({"$_AND_": 1000}, node_nm=45, activity=0.5, glitch_factor=2.0)
    assert glitchy.energy_j_per_inference == pytest.approx(2 * energy.energy_j_per_inference)
    assert est.estimate_energy({"$_AND_": 1000}, node_nm=90).energy_j_per_inference > est.estimate_energy(
        {"$_AND_": 1000}, node_nm=45
    ).energy_j_per_inference
    data = energy.as_dict()
    assert data["energy_nj"] == pytest.approx(energy.energy_nj) and "ratio_to_econt_2p4_nj" in data
    assert "leakage" in energy.limits


def test_energy_errors_name_the_field() -> None:
    cells = {"$_AND_": 10}
    for kwargs, field in [
        ({"node_nm": 3}, "node_nm"), ({"node_nm": 400}, "node_nm"), ({"node_nm": "65nm"}, "node_nm"),
        ({"activity": 0}, "activity"), ({"activity": 1.5}, "activity"), ({"clock_mhz": -1}, "clock_mhz"),
        ({"vdd_v": 12}, "vdd_v"), ({"glitch_factor": 0}, "glitch_factor"), ({"cycles_per_inference": 0}, "cycles"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            est.estimate_energy(cells, **kwargs)
    with pytest.raises(ConfigError, match="LUT6"):
        est.estimate_energy({"LUT6": 5})
    xc7 = SimpleNamespace(target="xc7", cells={"LUT6": 5})
    with pytest.raises(ConfigError, match="generic"):
        est.estimate_energy(xc7)
    with pytest.raises(ConfigError, match="node_nm"):
        est.estimate_mac_energy(_tiny(), node_nm=1)


def test_mac_energy_tiny_by_hand() -> None:
    energy = est.estimate_mac_energy(_tiny(), node_nm=45, weight_register_copies=0)
    acc_bits = 9  # accumulator_type(ap_ufixed<4,4>, ap_fixed<4,4>, None, 2): 2*15*8 = 240 -> 8 bits + sign
    expected_pj = 2 * (est.mult_energy_pj(4, 4) + est.add_energy_pj(acc_bits))
    assert energy.energy_j_per_inference == pytest.approx(expected_pj * 1e-12)
    assert energy.inputs["macs"] == 2 and energy.breakdown_j["weight_registers_clock"] == 0
    with_registers = est.estimate_mac_energy(_tiny(), node_nm=45, weight_register_copies=3)
    register_j = 3 * 2 * 4 * est.FF_CLOCK_GE * est.e_toggle_45nm_fj() * 1e-15
    assert with_registers.breakdown_j["weight_registers_clock"] == pytest.approx(register_j)


def test_econt_mac_energy_is_within_2x_of_published() -> None:
    energy = est.estimate_mac_energy(_econt(), node_nm=65, clock_mhz=40)
    assert 0.5 < energy.ratio_to_econt < 2.0
    assert energy.power_w == pytest.approx(energy.energy_j_per_inference * 40e6)
    assert math.isclose(energy.vdd_v, 1.2)
