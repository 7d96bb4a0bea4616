"""Heterogeneous quantization (issue 15): learned grids, pruning, EBOPs, the beta ramp, config errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from aeforge.config import ExperimentConfig, HgqConfig, ModelConfig, QuantConfig, parse_config
from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.hgq.ebops import beta_at, model_ebops, tap_counts, weight_span_bits
from aeforge.quantize.hgq.quantizers import relu_fake_quant, tight_weight_type, weight_bits, weight_fake_quant
from aeforge.quantize.models.econt import EcontAutoencoder, EcontEncoder, build_autoencoder
from aeforge.quantize.models.sequential import build_sequential

HGQ_MODEL = ModelConfig(quantization="hgq", hgq=HgqConfig(init_weight_frac_bits=4, init_activation_frac_bits=6))
CONTAINER = QuantConfig(weight=FixedPoint(8, 2))


def _hgq_autoencoder(seed: int = 0) -> EcontAutoencoder:
    torch.manual_seed(seed)
    model = build_autoencoder(HGQ_MODEL, CONTAINER)
    with torch.no_grad():  # trained-like: weights of all sizes, bit widths spread, some pruned
        for name in ("conv", "dense"):
            getattr(model.encoder, name).weight.normal_(0.0, 0.6)
            bits = getattr(model.encoder, f"{name}_bits")
            bits.theta.copy_(torch.randint(-3, 7, bits.theta.shape).float() / bits.lr_scale)
    return model.eval()


def test_weights_sit_on_their_own_grids_and_low_bits_prune() -> None:
    w = torch.tensor([0.3, -0.7, 1.9, -2.5, 0.01, 0.3])
    f = torch.tensor([2.0, 1.0, 0.0, 3.0, 2.0, -2.0])
    q = weight_fake_quant(w, f, int_bits=2)
    # 0.3 on quarters -> 0.25; -0.7 on halves -> -0.5; 1.9 on integers saturates at 1 (codes [-2, 1]);
    # -2.5 saturates at -2; 0.01 rounds to 0; f = -2 holds no value inside a 2-integer-bit container
    assert q.tolist() == [0.25, -0.5, 1.0, -2.0, 0.0, 0.0]
    assert weight_bits(q, f).tolist() == [1.0, 1.0, 1.0, 5.0, 0.0, 0.0]


def test_surrogate_gradients_reach_the_bit_widths() -> None:
    w = torch.tensor([0.3, -0.7], requires_grad=True)
    f = torch.tensor([2.0, 1.0], requires_grad=True)
    weight_fake_quant(w, f, 2).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]  # straight through
    delta = torch.tensor([0.25 - 0.3, -0.5 + 0.7])
    torch.testing.assert_close(f.grad, -np.log(2.0) * delta)  # d q / d f = -ln2 * rounding error
    x = torch.tensor([-1.0, 0.3, 9.0], requires_grad=True)
    a = torch.tensor(2.0, requires_grad=True)
    out = relu_fake_quant(x, a, int_bits=3)
    assert out.tolist() == [0.0, 0.25, 7.75]  # ap_ufixed<5,3>: saturates at 8 - 1/4
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0] and a.grad is not None


def test_ebops_of_a_hand_checkable_dense_layer() -> None:
    spec = {"input": {"shape": [2], "type": "ap_fixed<4,2,AP_RND_CONV,AP_SAT>"},
            "layers": [{"kind": "dense", "name": "fc", "units": 2, "weight": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"}]}
    model = build_sequential(spec)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[0.75, 0.5], [0.0, -1.25]]))
    # span bits: 0.75 = 0b0.11 -> 2, 0.5 -> 1, 0 -> 0 (pruned), -1.25 = 0b1.01 -> 3; x 4 input bits
    assert weight_span_bits(np.array([0.75, 0.5, 0.0, -1.25]), FixedPoint(6, 2)).tolist() == [2, 1, 0, 3]
    assert model_ebops(model) == {"fc": 4 * (2 + 1 + 0 + 3), "total": 24}


def test_conv_taps_on_the_padding_cost_nothing() -> None:
    # 8x8, 3x3 kernel, stride 2, TensorFlow SAME: pad (0 before, 1 after); output 4x4
    counts = tap_counts((8, 8), (3, 3), (2, 2), ((0, 1), (0, 1)))
    per_axis = np.array([4, 4, 3])  # the last tap of the last output reads the padding
    np.testing.assert_array_equal(counts, np.outer(per_axis, per_axis))


def test_frozen_encoder_is_bit_exact_and_pruned_weights_are_zero() -> None:
    model = _hgq_autoencoder()
    frozen = model.freeze().eval()
    x = torch.rand(2000, 48) * 3
    with torch.no_grad():
        assert torch.equal(model.encode(x), frozen.encode(x))
        assert torch.equal(model(x), frozen(x))
        q_dense = model.encoder._weights()[2]
    pruned = q_dense == 0
    assert 0 < int(pruned.sum()) < pruned.numel()
    assert torch.all(frozen.encoder.dense.weight[pruned] == 0)
    seq = frozen.encoder.as_sequential()
    dense_type = seq.spec.layers[3].weight
    # every weight is representable in its tight container: the Brevitas quantizer leaves it alone
    torch.testing.assert_close(torch.as_tensor(dense_type.quantize(q_dense.double().numpy())).float(), q_dense,
                               rtol=0, atol=0)
    # the differentiable EBOPs (f-based) bound the exact (span-based) ones of the exported model
    assert model_ebops(frozen.encoder)["total"] <= float(model.encoder.ebops().detach())
    assert frozen.encoder.fixed_point_types()["conv_act"] == "ap_ufixed<9,3,AP_RND_CONV,AP_SAT>"


def test_tight_weight_type_holds_every_value() -> None:
    values = torch.tensor([0.5, -0.25, 1.0, 0.0])
    assert tight_weight_type(values, FixedPoint(8, 2)).ap_type() == "ap_fixed<4,2,AP_RND_CONV,AP_SAT>"
    coarse = tight_weight_type(torch.tensor([1.0, -2.0]), FixedPoint(8, 2))
    assert coarse.ap_type() == "ap_fixed<2,2,AP_RND_CONV,AP_SAT>"
    assert tight_weight_type(torch.zeros(3), FixedPoint(8, 2)).bits == 2


def test_float_checkpoint_initialises_hgq_and_ebops_gradient_lowers_bits() -> None:
    float_model = build_autoencoder(ModelConfig(), None)
    model = build_autoencoder(HGQ_MODEL, CONTAINER)
    model.load_state_dict(float_model.state_dict())  # missing bit widths keep their initial values
    assert torch.equal(model.encoder.conv.weight, float_model.encoder.conv.weight)
    model.encoder.ebops().backward()
    assert float(model.encoder.act_bits.theta.grad) > 0
    assert float(model.encoder.dense_bits.theta.grad.sum()) > 0


def test_per_channel_bits_have_one_width_per_output_channel() -> None:
    hgq = dataclasses.replace(HGQ_MODEL.hgq, weight_granularity="channel")
    model = build_autoencoder(dataclasses.replace(HGQ_MODEL, hgq=hgq), CONTAINER)
    assert tuple(model.encoder.conv_bits.theta.shape) == (8, 1, 1, 1)
    assert tuple(model.encoder.dense_bits.theta.shape) == (16, 1)


def test_uniform_encoders_are_unchanged_and_take_per_layer_types() -> None:
    quant = QuantConfig()
    encoder = EcontEncoder(ModelConfig(), quant, layer_types={"dense.weight": FixedPoint(4, 1)})
    types = encoder.fixed_point_types()
    assert types["dense.weight"] == FixedPoint(4, 1).ap_type() and types["conv.weight"] == quant.weight.ap_type()
    assert encoder.sequential_spec().layers[3].weight == FixedPoint(4, 1)


@pytest.mark.parametrize(("epoch", "expected"), [(0, 0.0), (1, 0.0), (2, 1e-6), (3, 1e-5), (4, 1e-4), (9, 1e-4)])
def test_beta_ramp_is_geometric_after_the_warmup(epoch: int, expected: float) -> None:
    assert beta_at(epoch, 1e-4, warmup_epochs=2, ramp_epochs=3, beta_start=1e-6) == pytest.approx(expected)


def test_beta_ramp_linear_and_cost_ramp_epochs() -> None:
    assert [beta_at(e, 4.0, 1, 4) for e in range(6)] == [0.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    assert beta_at(0, 4.0, 0, 0) == 4.0
    model = build_autoencoder(HGQ_MODEL, CONTAINER)
    h = HGQ_MODEL.hgq
    assert model.cost_ramp_epochs == h.beta_warmup_epochs + h.beta_ramp_epochs - 1
    assert model.resource_penalty(0) == 0.0 and float(model.resource_penalty(50).detach()) > 0


@pytest.mark.parametrize(("yaml_text", "fragment"), [
    ("model:\n  quantization: hgqq\n", "model.quantization: expected 'uniform' or 'hgq'"),
    ("model:\n  hgq:\n    weight_granularity: layer\n", "model.hgq.weight_granularity: expected 'weight' or"),
    ("model:\n  hgq:\n    activation_granularity: channel\n", "model.hgq.activation_granularity: only 'layer'"),
    ("model:\n  hgq:\n    beta: -1\n", "model.hgq.beta: must be >= 0"),
    ("model:\n  hgq:\n    beta: 1.0e-6\n    beta_start: 1.0e-3\n", "model.hgq.beta_start: must be <="),
    ("model:\n  hgq:\n    beta_ramp_epochs: -2\n", "model.hgq.beta_ramp_epochs: must be >= 0"),
    ("model:\n  hgq:\n    bits_lr_scale: 0\n", "model.hgq.bits_lr_scale: must be > 0"),
    ("model:\n  hgq:\n    betta: 1\n", "model.hgq.betta: unknown key (did you mean 'beta'?)"),
])
def test_config_errors_name_the_field(yaml_text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"exp\.yaml:") as raised:
        parse_config(yaml_text, source="exp.yaml")
    assert fragment in str(raised.value)


def test_init_bits_outside_the_container_are_named() -> None:
    hgq = HgqConfig(init_weight_frac_bits=9)
    with pytest.raises(ConfigError, match=r"model.hgq.init_weight_frac_bits: must be in \[-2, 6\]"):
        build_autoencoder(ModelConfig(quantization="hgq", hgq=hgq), CONTAINER)


def test_shipped_config_loads_with_the_econt_set_keys() -> None:
    from aeforge.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "aeforge" / "configs" / "econt_hw_aware.yaml",
                         overrides={"data.synthetic.n_events": 500, "train.qat_epochs": 2})
    assert isinstance(config, ExperimentConfig) and config.model.quantization == "hgq"
    assert config.data.synthetic.n_events == 500 and config.train.qat_epochs == 2


def test_ebops_is_a_sweep_objective_of_every_family() -> None:
    from aeforge.sweep.families import get_family

    for name in ("econt", "autoencoder"):
        objective = get_family(name).objectives["ebops"]
        assert objective.direction == "min" and "EBOPs" in objective.description
