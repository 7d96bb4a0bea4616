"""The Brevitas ECON-T encoder against an integer-arithmetic reference of the hardware."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aeforge.config import ModelConfig, QuantConfig
from aeforge.data.hgcal.geometry import arrange_8x8, mask_8x8, remap_8x8
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.econt import build_autoencoder, same_padding


def _integer_encoder(model, images: np.ndarray, quant: QuantConfig) -> np.ndarray:
    """Encoder on integer codes (what an ASIC computes), images NHWC (N, 8, 8, 1) on the input grid."""
    enc = model.encoder
    in_codes = quant.input.to_codes(images[..., 0])  # (N, 8, 8)
    w_conv = quant.weight.to_codes(enc.conv.weight.detach().double().numpy())  # (F, 1, k, k)
    b_conv = quant.bias.to_codes(enc.conv.bias.detach().double().numpy())
    k, s = enc.conv.kernel_size[0], enc.conv.stride[0]
    before, after = same_padding(8, k, s)
    padded = np.pad(in_codes, ((0, 0), (before, after), (before, after)))
    out = enc.conv_out_size
    acc_shift = quant.input.frac_bits + quant.weight.frac_bits
    bias_shift = acc_shift - quant.bias.frac_bits
    assert bias_shift >= 0
    acc = np.zeros((len(images), out, out, w_conv.shape[0]), dtype=np.int64)  # NHWC
    for i in range(out):
        for j in range(out):
            window = padded[:, i * s : i * s + k, j * s : j * s + k].reshape(len(images), -1)
            acc[:, i, j, :] = window @ w_conv.reshape(w_conv.shape[0], -1).T + (b_conv << bias_shift)
    hidden = quant.conv_activation.quantize(np.maximum(np.ldexp(acc.astype(np.float64), -acc_shift), 0.0))
    flat = hidden.reshape(len(images), -1)  # channels-last flatten
    h_codes = quant.conv_activation.to_codes(flat)
    w_dense = quant.weight.to_codes(enc.dense.weight.detach().double().numpy())
    b_dense = quant.bias.to_codes(enc.dense.bias.detach().double().numpy())
    shift = quant.conv_activation.frac_bits + quant.weight.frac_bits
    dense_acc = h_codes @ w_dense.T + (b_dense << (shift - quant.bias.frac_bits))
    return quant.latent.quantize(np.maximum(np.ldexp(dense_acc.astype(np.float64), -shift), 0.0))


def _trained_like(model) -> None:
    """Spread weights over the whole quantizer range so that saturation and rounding are exercised."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)


@pytest.mark.parametrize("latent_bits", [3, 5, 7, 9])
def test_encoder_matches_integer_reference(latent_bits: int) -> None:
    quant = QuantConfig(latent_bits=latent_bits)
    model = build_autoencoder(ModelConfig(), quant).double().eval()
    _trained_like(model)
    rng = np.random.default_rng(latent_bits)
    calq = quant.input.quantize(rng.exponential(0.1, size=(500, 48)) * (rng.random((500, 48)) < 0.4))
    images_nhwc = (calq[:, arrange_8x8()] * mask_8x8()).reshape(-1, 8, 8, 1)
    expected = _integer_encoder(model, images_nhwc, quant)
    with torch.no_grad():
        got = model.encode(torch.as_tensor(calq)).numpy()
    assert expected.shape == (500, 16)
    assert np.count_nonzero(expected) > 500  # not a trivially all-zero comparison
    np.testing.assert_array_equal(got, expected)
    assert np.all(quant.latent.is_representable(got))


def test_float32_model_agrees_with_float64() -> None:
    model = build_autoencoder(ModelConfig(), QuantConfig()).eval()
    calq = torch.rand(256, 48)
    with torch.no_grad():
        single = model.encode(calq).double()
        double = model.double().encode(calq.double())
    assert torch.equal(single, double)


def test_same_padding_is_tensorflow_style() -> None:
    assert same_padding(8, 3, 2) == (0, 1)  # bottom/right only
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(8, 2, 2) == (0, 0)


def test_conv_sees_bottom_right_padding_only() -> None:
    """A single hot pixel in the top-left corner reaches output (0, 0) through kernel tap (0, 0)."""
    model = build_autoencoder(ModelConfig(filters=1), None).double().eval()
    with torch.no_grad():
        model.encoder.conv.weight.zero_()
        model.encoder.conv.weight[0, 0, 0, 0] = 1.0
        model.encoder.conv.bias.zero_()
        image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
        image[0, 0, 0, 0] = 1.0
        conv_out = model.encoder.conv(model.encoder.pad(image))
    assert conv_out.shape == (1, 1, 4, 4)
    assert conv_out[0, 0, 0, 0] == 1.0 and conv_out.sum() == 1.0


def test_flatten_is_channels_last() -> None:
    model = build_autoencoder(ModelConfig(filters=2, latent_dim=1), None).double().eval()
    with torch.no_grad():
        model.encoder.dense.weight.zero_()
        model.encoder.dense.weight[0, 1] = 1.0  # flat index 1 = pixel (0, 0), channel 1 in NHWC order
        model.encoder.dense.bias.zero_()
        features = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
        features[0, 1, 0, 0] = 3.0
        flat = features.permute(0, 2, 3, 1).flatten(1)
        assert model.encoder.dense(flat).item() == 3.0
        assert model.encoder.latent_act(model.encoder.dense(flat)).item() == 3.0


def test_float_and_quantized_models_share_parameter_names() -> None:
    float_model = build_autoencoder(ModelConfig(), None)
    quant_model = build_autoencoder(ModelConfig(), QuantConfig())
    assert float_model.state_dict().keys() == quant_model.state_dict().keys()
    quant_model.load_state_dict(float_model.state_dict())


def test_autoencoder_arrangement_round_trip() -> None:
    model = build_autoencoder(ModelConfig(), None)
    calq = torch.rand(3, 48)
    images = model.to_images(calq)
    assert images.shape == (3, 1, 8, 8)
    assert torch.equal(model.from_images(images), calq)
    np.testing.assert_array_equal(images.reshape(3, 64)[:, mask_8x8() == 0].numpy(), 0.0)
    assert len(set(remap_8x8().tolist())) == 48


def test_quantized_decoder_option() -> None:
    model = build_autoencoder(ModelConfig(decoder="quantized"), QuantConfig())
    out = model(torch.rand(4, 48))
    assert out.shape == (4, 48)
    weight = model.decoder.dense.quant_weight().value.detach().numpy()
    assert np.all(QuantConfig().weight.is_representable(weight))


def test_custom_types_change_the_quantizers() -> None:
    quant = dataclasses.replace(QuantConfig(), weight=FixedPoint(4, 1), latent=FixedPoint(5, 2, signed=False))
    model = build_autoencoder(ModelConfig(), quant)
    assert model.encoder.fixed_point_types()["conv.weight"] == "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"
    assert float(model.encoder.conv.quant_weight().scale) == 2.0**-3
    latent = model.encode(torch.rand(64, 48) * 4).detach().numpy()
    assert np.all(quant.latent.is_representable(latent))
