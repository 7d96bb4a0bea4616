"""da4ml RTL generation + Verilator simulation, bit-exact against Brevitas (issue 4, items 1-2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeforge.config import ModelConfig, QuantConfig
from aeforge.errors import ArtifactError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.rtl import da4ml_available, why_verilator_unavailable
from aeforge.verification import compare, predict_brevitas
from tests.small_models import spread_weights

DA4ML_MISSING = da4ml_available()
VERILATOR_MISSING = why_verilator_unavailable()
needs_da4ml = pytest.mark.skipif(DA4ML_MISSING is not None, reason=str(DA4ML_MISSING))
needs_sim = pytest.mark.skipif(
    DA4ML_MISSING is not None or VERILATOR_MISSING is not None,
    reason=str(DA4ML_MISSING or VERILATOR_MISSING),
)
N_VECTORS = 1000


def _trained_like(model: torch.nn.Module, seed: int = 0) -> None:
    """Spread weights over the whole quantizer range so that saturation and rounding are exercised."""
    spread_weights(model, seed)


def _encoder(latent_bits: int | None):
    from aeforge.quantize.models.econt import build_autoencoder

    quant = QuantConfig() if latent_bits is None else QuantConfig(latent_bits=latent_bits)
    encoder = build_autoencoder(ModelConfig(), quant).encoder.eval()
    _trained_like(encoder)
    return encoder


def _events(encoder, n: int = N_VECTORS) -> np.ndarray:
    from aeforge.data.hgcal.geometry import to_8x8
    from aeforge.data.hgcal.readouts import normalize_econt
    from aeforge.data.hgcal.synthetic import generate_readouts

    events, _ = normalize_econt(generate_readouts(n, seed=1), encoder.input_type)
    return np.moveaxis(to_8x8(events), -1, 1)


def _mlp():
    from aeforge.quantize.models.sequential import build_sequential

    spec = {
        "input": {"shape": [16], "type": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
        "layers": [
            {
                "kind": "dense",
                "name": "fc1",
                "units": 24,
                "weight": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>",
                "bias": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>",
            },
            {"kind": "relu", "name": "relu1", "type": "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"},
            {"kind": "dense", "name": "fc2", "units": 8, "weight": "ap_fixed<5,1,AP_RND_CONV,AP_SAT>"},
            {"kind": "quant", "name": "out", "type": "ap_fixed<10,4,AP_TRN,AP_SAT_SYM>"},
        ],
    }
    model = build_sequential(spec).eval()
    _trained_like(model, seed=3)
    return model


def _uniform_inputs(model, n: int = N_VECTORS) -> np.ndarray:
    rng = np.random.default_rng(5)
    t = model.input_type
    return t.quantize(rng.uniform(t.min_value, t.max_value, size=(n, *model.input_shape)))


def _check(model, inputs, tmp_path, stages):
    from aeforge.hls.rtl import generate_rtl, measure_latency, rtl_predict

    project = generate_rtl(model, tmp_path / "rtl", pipeline_stages=stages)
    assert (project.out_dir / "aeforge_rtl.json").is_file()
    assert project.pipelined == (stages is not None)
    reference = predict_brevitas(model, inputs, model.input_type)
    assert np.count_nonzero(reference) > len(inputs)  # not a trivially all-zero comparison
    got = rtl_predict(project, inputs)
    fidelity = compare(reference, got, model.output_type, "rtl")
    assert fidelity.bit_exact, str(fidelity)
    latency = measure_latency(project, inputs[:64])
    assert latency == project.latency_cycles
    if stages is not None:
        assert 1 <= latency <= stages
    return project


@needs_sim
@pytest.mark.parametrize(("latent_bits", "stages"), [(None, None), (3, 2)], ids=["default-comb", "latent3-pipelined"])
def test_econt_encoder_rtl_bit_exact(tmp_path, latent_bits, stages) -> None:
    encoder = _encoder(latent_bits)
    _check(encoder, _events(encoder), tmp_path, stages)


@needs_sim
@pytest.mark.parametrize("stages", [None, 2], ids=["comb", "pipelined"])
def test_mlp_rtl_bit_exact(tmp_path, stages) -> None:
    model = _mlp()
    _check(model, _uniform_inputs(model), tmp_path, stages)


@needs_da4ml
def test_ports_describe_the_types(tmp_path) -> None:
    from aeforge.hls.rtl import generate_rtl, load_rtl_project

    encoder = _encoder(None)
    project = generate_rtl(encoder, tmp_path / "rtl")
    assert project.top == "aeforge_model_wrapper"
    assert project.input.elements == 64 and project.input.lane_type.bits == 11
    assert project.input.lane_type.frac_bits == encoder.input_type.frac_bits
    assert project.output.elements == 16
    assert project.output.lane_type.frac_bits == encoder.output_type.frac_bits
    assert project.output.lane_bits <= encoder.output_type.bits
    assert project.latency_cycles == 0
    assert load_rtl_project(project.out_dir) == project
    assert all((project.out_dir / f).is_file() for f in project.files)


@needs_da4ml
def test_existing_directory_is_refused_and_failure_leaves_nothing(tmp_path) -> None:
    from aeforge.hls.rtl import generate_rtl

    out = tmp_path / "rtl"
    out.mkdir()
    with pytest.raises(ArtifactError, match="already exists"):
        generate_rtl(_mlp(), out)
    bad = tmp_path / "bad"
    with pytest.raises(ArtifactError, match="not quantized"):
        from aeforge.quantize.models.sequential import build_sequential

        generate_rtl(build_sequential(_mlp().spec, quantized=False), bad)
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtl"]


@needs_da4ml
def test_unsupported_types_and_models_are_named(tmp_path) -> None:
    import dataclasses

    from aeforge.hls.rtl import trace_model
    from aeforge.quantize.models.econt import build_autoencoder

    with pytest.raises(ArtifactError, match="encoder"):
        trace_model(build_autoencoder(ModelConfig(), QuantConfig()))
    with pytest.raises(ArtifactError, match="accepts a SequentialQuantModel"):
        trace_model(torch.nn.Linear(2, 2))
    from aeforge.hls.rtl.trace import MAX_TYPE_BITS, check_type

    check_type(FixedPoint(64, 30), "widest")  # int64 lanes: up to 64 bits (FixedPoint's own limit)
    assert MAX_TYPE_BITS == 64
    trn_zero = dataclasses.replace(QuantConfig(), latent=FixedPoint(9, 1, signed=False, rounding="TRN_ZERO"))
    with pytest.raises(QuantizationError, match=r"latent_act.*TRN_ZERO"):
        trace_model(build_autoencoder(ModelConfig(), trn_zero).encoder)


@needs_da4ml
def test_constant_model_is_refused_by_name(tmp_path) -> None:
    """All weights quantized to zero: no input bit reaches an output, so there is no datapath to build."""
    from aeforge.hls.rtl import generate_rtl

    model = _mlp()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    with pytest.raises(ArtifactError, match=r"model_inp: no input bit reaches any output.*constant"):
        generate_rtl(model, tmp_path / "const")
    assert not (tmp_path / "const").exists()


@needs_sim
@pytest.mark.parametrize("stages", [None, 2], ids=["comb", "pipelined"])
def test_valid_in_valid_out_top(tmp_path, stages) -> None:
    """The integration top, driven by its own Verilog testbench back to back and with random gaps:
    one result per valid vector, Brevitas' values, constant latency = core stages + input register."""
    from aeforge.hls.rtl import generate_rtl
    from aeforge.hls.rtl.interface import valid_delay
    from aeforge.hls.rtl.testbench import simulate_interface

    model = _mlp()
    inputs = _uniform_inputs(model, 300)
    project = generate_rtl(model, tmp_path / "rtl", pipeline_stages=stages)
    assert project.interface_top == "aeforge_model_top" and project.integration_top == "aeforge_model_top"
    top_text = (project.out_dir / "src" / "aeforge_model_top.v").read_text()
    assert ("input clk" in top_text) == (stages is not None) and "valid_out" in top_text
    reference = predict_brevitas(model, inputs, model.input_type)
    rng = np.random.default_rng(2)
    for pattern in (None, rng.random(900) < 0.4):
        run = simulate_interface(project, inputs, pattern)
        np.testing.assert_array_equal(run.outputs, reference)
        assert set(run.latencies_cycles.tolist()) == {valid_delay(project)}
        assert run.initiation_interval == 1
    assert valid_delay(project) == (0 if stages is None else project.latency_cycles + 1)


@needs_da4ml
def test_vhdl_project_has_the_interface_top(tmp_path) -> None:
    from aeforge.hls.rtl import generate_rtl

    project = generate_rtl(_mlp(), tmp_path / "rtl", pipeline_stages=2, language="vhdl")
    text = (project.out_dir / "src" / "aeforge_model_top.vhd").read_text()
    assert "entity aeforge_model_top is port(" in text and "valid_out:out std_logic" in text
    assert "rising_edge(clk)" in text and "entity work.aeforge_model_wrapper" in text
    assert "src/aeforge_model_top.vhd" in project.files


def _wide_mlp():
    """A dense layer without an output quantizer: its exact accumulator is a ~40-bit output port lane."""
    from aeforge.quantize.models.sequential import build_sequential

    spec = {
        "input": {"shape": [16], "type": "ap_fixed<24,8,AP_RND_CONV,AP_SAT>"},
        "layers": [
            {"kind": "dense", "name": "fc", "units": 6, "weight": "ap_fixed<12,2,AP_RND_CONV,AP_SAT>",
             "bias": "ap_fixed<12,4,AP_RND_CONV,AP_SAT>"},
            {"kind": "quant", "name": "out", "type": "ap_fixed<48,18,AP_RND_CONV,AP_SAT>"},
        ],
    }
    model = build_sequential(spec).eval()
    _trained_like(model, seed=4)
    return model


@needs_sim
def test_port_lanes_wider_than_32_bits_are_simulated_exactly(tmp_path) -> None:
    """int64 lanes in aeforge's Verilator binder: a > 32-bit output lane, pipelined (probe and II path)."""
    model = _wide_mlp()
    inputs = _uniform_inputs(model, 300)
    project = _check(model, inputs, tmp_path, 2)
    assert 32 < project.output.lane_bits <= 64
    assert "aeforge_inference64" in (project.out_dir / "sim" / "aeforge_model_wrapper_binder.cc").read_text()
