"""The QKeras import against real QKeras: files and ``model.predict`` outputs recorded by
``tests/fixtures/qkeras/make_fixtures.py`` (TensorFlow 2.15, QKeras 0.9; CI has no TensorFlow).

Bit for bit on the logits (before a trailing softmax); the softmax post-processing within float
tolerance of QKeras's float32 probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.qkeras_import import apply_postprocess, load_qkeras

pytest.importorskip("h5py", reason="h5py is needed to read Keras HDF5 files")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qkeras"
MODELS = ("jet_tagger", "mnist_dense_po2", "mnist_cnn", "conv1d_avgpool", "bn_fold", "bn_fold_folded")
KINDS = {
    "jet_tagger": ["dense", "relu", "dense", "relu", "dense", "quant"],
    "mnist_dense_po2": ["flatten", "dense", "relu", "dense", "relu", "dense", "quant"],
    "mnist_cnn": ["conv2d", "relu", "maxpool", "conv2d", "relu", "maxpool", "flatten", "dense", "quant"],
    "conv1d_avgpool": ["conv1d", "relu", "avgpool", "conv1d", "quant", "maxpool", "flatten", "dense", "quant"],
    "bn_fold": ["conv2d", "relu", "flatten", "dense", "quant"],
    "bn_fold_folded": ["conv2d", "relu", "flatten", "dense", "quant"],
}


def fixture(name: str) -> tuple[Path, Path]:
    return FIXTURES / f"{name}.json", FIXTURES / f"{name}.h5"


def recorded(name: str, what: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name.removesuffix('_folded')}_{what}.npy")


def brevitas_forward(model: torch.nn.Module, x_channels_last: np.ndarray) -> np.ndarray:
    """The Brevitas model (float64) on channels-last inputs, outputs flattened per sample."""
    x = np.asarray(x_channels_last, dtype=np.float64)
    if x.ndim > 2:
        x = np.moveaxis(x, -1, 1)
    with torch.no_grad():
        out = model.double().eval()(torch.as_tensor(np.ascontiguousarray(x))).numpy()
    return out.reshape(len(out), -1)


@pytest.mark.parametrize("name", MODELS)
def test_import_equals_qkeras_predict_bit_for_bit(name: str) -> None:
    imported = load_qkeras(*fixture(name))
    assert [layer.kind for layer in imported.spec.layers] == KINDS[name]
    x, logits = recorded(name, "x"), recorded(name, "logits").astype(np.float64)
    assert np.array_equal(imported.spec.input.type.quantize(x.astype(np.float64)), x), "inputs on the input grid"
    got = brevitas_forward(imported.build(), x)
    np.testing.assert_array_equal(got, logits.reshape(len(x), -1))
    assert len(np.unique(logits)) > 100  # not a degenerate (saturated or constant) model
    last = imported.spec.layers[-1]
    if last.name.endswith("_output"):  # no output quantizer: the identity quantizer to the exact type
        assert last.type == imported.spec.output_types()[-2]


@pytest.mark.parametrize("name", ["jet_tagger", "mnist_dense_po2", "mnist_cnn"])
def test_trailing_softmax_is_host_side_postprocessing(name: str) -> None:
    imported = load_qkeras(*fixture(name))
    assert imported.postprocess == {"op": "softmax", "axis": -1, "layer": "softmax", "where": "host"}
    assert imported.card()["postprocess"] == imported.postprocess
    logits = brevitas_forward(imported.build(), recorded(name, "x"))
    probs = imported.postprocess_outputs(logits)
    np.testing.assert_allclose(probs, recorded(name, "probs"), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(apply_postprocess(None, logits), logits)


def test_models_without_input_quantizer_get_hls4ml_default_input_type() -> None:
    for name in ("jet_tagger", "mnist_dense_po2", "mnist_cnn"):
        imported = load_qkeras(*fixture(name))
        assert imported.spec.input.type == FixedPoint(16, 6) and imported.input_defaulted
        card = imported.card()["input_type"]
        assert card["defaulted"] and card["source"] == "default" and card["type"].startswith("ap_fixed<16,6")
    with_quantizer = load_qkeras(*fixture("conv1d_avgpool"))
    assert with_quantizer.input_type_source == "quantizer" and with_quantizer.spec.input.type == FixedPoint(8, 3)
    assert with_quantizer.source_names["input_quant"] == "input_q"


def test_mnist_cnn_ignores_dropout_and_keeps_relu_exact() -> None:
    imported = load_qkeras(*fixture("mnist_cnn"))
    assert imported.ignored == ("dropout",) and imported.card()["ignored_layers"] == ["dropout"]
    conv_type, relu_type = imported.spec.output_types()[:2]
    assert relu_type == FixedPoint(conv_type.bits - 1, conv_type.int_bits - 1, signed=False)
    assert imported.source_names["conv1_activation"] == "conv1"


def test_po2_weights_are_powers_of_two_in_a_container_holding_them() -> None:
    imported = load_qkeras(*fixture("mnist_dense_po2"))
    dense1, dense2 = imported.spec.layers[1], imported.spec.layers[3]
    assert dense1.weight == FixedPoint(9, 5)  # quantized_po2(4): +-2**-4 .. +-2**3
    assert dense2.weight == FixedPoint(18, 2)  # quantized_po2(5, max_value=1): +-2**-16 .. +-1
    weights = imported.state_dict["layers.1.weight"].numpy().astype(np.float64)
    assert np.all(np.log2(np.abs(weights)) % 1 == 0) and np.all(weights != 0)
    assert np.array_equal(dense1.weight.quantize(weights), weights)
    assert np.all(weights[:2, :3] == 2.0**-4)  # stored zeros: QKeras's po2 gives +2**min_exp


def test_batchnorm_is_folded_like_qconv2d_batchnorm() -> None:
    imported = load_qkeras(*fixture("bn_fold"))
    assert imported.folded_batchnorm == ({"batchnorm": "bn_conv", "into": "conv"},
                                         {"batchnorm": "bn_dense", "into": "dense"})
    assert imported.source_names["conv"] == "conv+bn_conv"
    assert any("QConv2DBatchnorm" in note for note in imported.card()["notes"])
    folded = load_qkeras(*fixture("bn_fold_folded"))  # QKeras's own QConv2DBatchnorm layer, same parameters
    assert folded.folded_batchnorm[0] == {"batchnorm": "conv", "into": "conv"}
    for key, value in imported.state_dict.items():
        np.testing.assert_array_equal(folded.state_dict[key].numpy(), value.numpy())
    # what the import does NOT equal: QKeras's unfolded model (float batch normalization)
    got = brevitas_forward(imported.build(), recorded("bn_fold", "x"))
    assert not np.array_equal(got, recorded("bn_fold", "unfolded_logits"))


def test_binary_and_ternary_weights() -> None:
    imported = load_qkeras(*fixture("conv1d_avgpool"))
    conv2, out = imported.spec.layers[3], imported.spec.layers[7]
    assert conv2.weight == FixedPoint(2, 2) and out.weight == FixedPoint(2, 2)
    assert set(np.unique(imported.state_dict["layers.3.weight"].numpy())) == {-1.0, 1.0}
    assert set(np.unique(imported.state_dict["layers.7.weight"].numpy())) == {-1.0, 0.0, 1.0}
