"""QKeras import (Keras JSON + HDF5, no TensorFlow) against an independent numpy QKeras forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aeforge.errors import ConfigError, DataError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.sequential import Conv2DSpec, QuantSpec, ReLUSpec
from aeforge.quantize.qkeras_import import load_qkeras, read_keras_weights

h5py = pytest.importorskip("h5py", reason="h5py is needed to write and read Keras HDF5 files")

from tests.unit.qkeras_files import QKerasModel, qbits, qrelu, write_weights  # noqa: E402 (needs h5py)


def econt_model(**conv_options) -> QKerasModel:
    """The ECON-T encoder as QKeras builds it (8x8x1 -> conv 3x3/2 same -> relu -> flatten -> dense 16)."""
    options = {"padding": "same", "strides": 2, **conv_options}
    return (
        QKerasModel(input_shape=(8, 8, 1), input_name="input_1")
        .qactivation("input_qa", "quantized_bits(bits=8, integer=3, alpha=1)")
        .qconv2d("conv2d_0_m", 8, 3, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1), **options)
        .qactivation("act_0", "quantized_relu(8,3)")
        .flatten("flatten")
        .qdense("encoded_vector", 16, 128, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1))
        .qactivation("latent_qa", "quantized_relu(9,1)")
    )


def _inputs(shape: tuple[int, ...], n: int = 300, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    """Random float inputs off the grid, plus exact ties (half an LSB of 2**-4) for half-to-even."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (n, *shape))
    ties = (rng.integers(-200, 200, (n // 4, *shape)) + 0.5) / 16
    return np.concatenate([x, ties])


def _torch_forward(model: torch.nn.Module, x_channels_last: np.ndarray) -> np.ndarray:
    x = x_channels_last.transpose(0, 3, 1, 2) if x_channels_last.ndim == 4 else x_channels_last
    with torch.no_grad():
        return model.double().eval()(torch.as_tensor(np.ascontiguousarray(x))).numpy()


# ---------------------------------------------------------------------------------- bit-exact imports
def test_econt_model_is_bit_exact_and_maps_to_the_econt_encoder(tmp_path) -> None:
    keras = econt_model()
    imported = load_qkeras(*keras.write(tmp_path))
    x = _inputs((8, 8, 1), scale=4.0)
    expected = keras.forward(x)
    assert expected.shape == (len(x), 16) and np.count_nonzero(expected) > len(x)

    model = imported.build()
    np.testing.assert_array_equal(_torch_forward(model, x), expected)
    assert model.input_type == FixedPoint(8, 4) and model.output_type == FixedPoint(9, 1, signed=False)
    assert imported.source_names["input_quant"] == "input_qa"
    assert [layer.name for layer in imported.spec.layers] == ["conv2d_0_m", "act_0", "flatten", "encoded_vector",
                                                               "latent_qa"]

    assert imported.econt is not None and imported.econt_mismatch is None
    quant = imported.econt.quant
    assert (quant.input, quant.weight, quant.bias) == (FixedPoint(8, 4), FixedPoint(6, 2), FixedPoint(6, 2))
    assert (quant.conv_activation, quant.latent) == (FixedPoint(8, 3, signed=False), FixedPoint(9, 1, signed=False))
    model_config = imported.econt.model
    assert (model_config.filters, model_config.kernel_size, model_config.stride, model_config.latent_dim) == (
        8, 3, 2, 16)
    encoder = imported.econt.build_encoder()
    np.testing.assert_array_equal(_torch_forward(encoder, x), expected)


def test_imported_weights_are_quantized_like_qkeras(tmp_path) -> None:
    keras = econt_model()
    imported = load_qkeras(*keras.write(tmp_path))
    stored = dict(keras.weights["conv2d_0_m"])["conv2d_0_m/kernel:0"].astype(np.float64)
    m = 2.0**5  # quantized_bits(6, 1): 5 magnitude bits, 1 integer bit
    expected = 2.0 * np.clip(np.round(stored * m / 2.0), -m, m - 1) / m
    got = imported.state_dict["layers.0.weight"].numpy()
    np.testing.assert_array_equal(got, expected.transpose(3, 2, 0, 1))
    assert got.min() == -2.0 and got.max() == 2.0 - 2.0**-4  # the spread weights saturate
    assert imported.state_dict["layers.0.weight"].dtype == torch.float32


def test_econt_shaped_model_other_than_econt_is_still_imported(tmp_path) -> None:
    keras = _edit(econt_model(), "encoded_vector", bias_quantizer=qbits(8, 2))
    imported = load_qkeras(*keras.write(tmp_path))
    assert imported.econt is None and imported.econt_mismatch == "conv and dense bias types differ"
    x = _inputs((8, 8, 1), seed=5)
    np.testing.assert_array_equal(_torch_forward(imported.build(), x), keras.forward(x))


def test_mlp_functional_model(tmp_path) -> None:
    keras = (
        QKerasModel(input_shape=(16,), input_name="features")
        .qactivation("in_q", qbits(10, 3))
        .qdense("fc1", 32, 16, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(8, 2),
                activation="quantized_relu(9, 4)")
        .dropout("drop")
        .qdense("fc2", 12, 32, kernel_quantizer=qbits(5, 0, symmetric=1), bias_quantizer=qbits(8, 1))
        .qactivation("requant", "quantized_bits(7,2)")
        .activation("relu", "relu")
        .qactivation("relu_q", qbits(6, 2, keep_negative=False))
        .qdense("out", 8, 12, kernel_quantizer=qbits(6, 1), use_bias=False)
        .activation("lin", "linear")
    )
    model_json, weights = keras.write(tmp_path, functional=True)
    imported = load_qkeras(model_json, weights)
    kinds = [(layer.kind, layer.name) for layer in imported.spec.layers]
    assert kinds == [("dense", "fc1"), ("relu", "fc1_activation"), ("dense", "fc2"), ("quant", "requant"),
                     ("relu", "relu_q"), ("dense", "out"), ("quant", "out_output")]
    assert imported.source_names["relu_q"] == "relu+relu_q"
    assert set(imported.ignored) == {"drop", "lin"}
    assert imported.spec.layers[2].weight == FixedPoint(5, 1, overflow="SAT_SYM")
    assert imported.econt is None

    x = _inputs((16,), seed=1)
    expected = keras.forward(x)
    assert np.count_nonzero(expected) > len(x)
    np.testing.assert_array_equal(_torch_forward(imported.build(), x), expected)


def test_conv_model_from_a_full_model_save(tmp_path) -> None:
    keras = (
        QKerasModel(input_shape=(8, 8, 2))
        .qactivation("in_q", qbits(8, 2))
        .qconv2d("conv_a", 4, 3, padding="same", kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1),
                 in_channels=2, activation="relu")
        .qactivation("conv_a_q", "quantized_relu(10,4)")
        .qconv2d("conv_b", 3, (2, 3), strides=(2, 1), padding="valid", kernel_quantizer=qbits(4, 0),
                 bias_quantizer=qbits(9, 3), in_channels=4)
        .qactivation("conv_b_q", qbits(8, 3))
        .flatten("flatten")
        .qdense("dense", 10, 4 * 6 * 3, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1))
    )
    _, weights = keras.write(tmp_path, full_model=True)
    with h5py.File(weights) as handle:
        assert "model_weights" in handle and "model_config" in handle.attrs
    imported = load_qkeras(None, weights)
    assert [layer.kind for layer in imported.spec.layers] == [
        "conv2d", "relu", "conv2d", "quant", "flatten", "dense", "quant"]
    assert imported.source_names["conv_a_q"] == "conv_a+conv_a_q"
    x = _inputs((8, 8, 2), seed=2, scale=2.0)
    expected = keras.forward(x)
    np.testing.assert_array_equal(_torch_forward(imported.build(), x), expected)


def test_model_without_input_quantizer_defaults_to_hls4ml_input_type(tmp_path) -> None:
    keras = QKerasModel(input_shape=(6,)).qdense("fc", 3, 6, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1))
    paths = keras.write(tmp_path)
    defaulted = load_qkeras(*paths)
    assert defaulted.spec.input.type == FixedPoint(16, 6) and defaulted.input_defaulted
    assert defaulted.card()["input_type"] == {"type": "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "source": "default",
                                              "defaulted": True, "layer": None}
    in_type = FixedPoint(8, 3)
    imported = load_qkeras(*paths, input_type="ap_fixed<8,3,AP_RND_CONV,AP_SAT>")
    assert imported.spec.input.type == in_type and imported.input_type_source == "given"
    short = load_qkeras(*paths, input_type="ap_fixed<8,3>")  # no modes: QKeras's (half to even, saturate)
    assert short.spec.input.type == in_type
    x = in_type.quantize(_inputs((6,), seed=3))  # QKeras sees the raw input: data on the grid matches
    np.testing.assert_array_equal(_torch_forward(imported.build(), x), keras.forward(x))


def test_input_type_differing_from_the_input_quantizer_keeps_it_as_a_layer(tmp_path) -> None:
    paths = econt_model().write(tmp_path)
    same = load_qkeras(*paths, input_type=FixedPoint(8, 4))
    assert same.spec.input.type == FixedPoint(8, 4) and same.econt is not None
    other = load_qkeras(*paths, input_type=FixedPoint(12, 5))
    assert isinstance(other.spec.layers[0], QuantSpec) and other.spec.layers[0].name == "input_qa"
    assert other.econt is None


def test_read_keras_weights_layout(tmp_path) -> None:
    _, weights = econt_model().write(tmp_path)
    stored = read_keras_weights(weights)
    assert list(stored) == ["input_qa", "conv2d_0_m", "act_0", "flatten", "encoded_vector", "latent_qa"]
    assert [name for name, _ in stored["conv2d_0_m"]] == ["conv2d_0_m/kernel:0", "conv2d_0_m/bias:0"]
    assert stored["conv2d_0_m"][0][1].shape == (3, 3, 1, 8) and stored["flatten"] == []


def test_chunked_layer_names_attribute(tmp_path) -> None:
    """Keras splits long attributes into ``layer_names0``, ``layer_names1``, ..."""
    keras = econt_model()
    model_json, weights = keras.write(tmp_path)
    with h5py.File(weights, "a") as handle:
        names = list(handle.attrs["layer_names"])
        del handle.attrs["layer_names"]
        handle.attrs["layer_names0"] = np.array(names[:3])
        handle.attrs["layer_names1"] = np.array(names[3:])
    imported = load_qkeras(model_json, weights)
    assert imported.econt is not None


# ---------------------------------------------------------------------------------- refusals (JSON)
def _edit(keras: QKerasModel, layer: str, **config) -> QKerasModel:
    for entry in keras.layers:
        if entry["config"]["name"] == layer:
            entry["config"].update(config)
    return keras


def _insert(keras: QKerasModel, after: str, class_name: str, name: str, **config) -> QKerasModel:
    index = next(i for i, e in enumerate(keras.layers) if e["config"]["name"] == after)
    keras.layers.insert(index + 1, {"class_name": class_name, "config": {"name": name, **config}})
    return keras


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda k: _insert(k, "act_0", "BatchNormalization", "bn", axis=-1),
         r"'bn' \(BatchNormalization\): batch normalization after relu layer 'act_0' cannot be folded"),
        (lambda k: _insert(_edit(k, "conv2d_0_m", activation="relu"), "conv2d_0_m", "BatchNormalization", "bn"),
         r"'bn' \(BatchNormalization\): cannot be folded into 'conv2d_0_m'.*activation 'relu'"),
        (lambda k: _insert(k, "conv2d_0_m", "QBatchNormalization", "qbn"), "'qbn' .QBatchNormalization.: "),
        (lambda k: _insert(k, "act_0", "Activation", "soft", activation="softmax"),
         "'flatten'.*follows the softmax 'soft'"),
        (lambda k: _insert(k, "act_0", "MaxPooling2D", "pool", pool_size=[2, 2], padding="same"),
         "'pool' .MaxPooling2D.: padding='same'"),
        (lambda k: _edit(k, "act_0", activation="quantized_relu_po2(4)"), "'act_0'.*quantized_relu_po2.*powers of two"),
        (lambda k: _edit(k, "act_0", activation="binary"), "'act_0'.*binary.*not supported as an activation"),
        (lambda k: _edit(k, "encoded_vector", kernel_quantizer=qbits(6, 1, alpha=None)),
         "'encoded_vector'.*without alpha on a kernel.*auto_po2"),
        (lambda k: _edit(k, "conv2d_0_m", kernel_quantizer={"class_name": "quantized_po2", "config": {
            "bits": 4, "log2_rounding": "floor"}}), "'conv2d_0_m'.*log2_rounding='floor'"),
        (lambda k: _insert(k, "flatten", "Reshape", "reshape", target_shape=[128]), "'reshape'.*unsupported layer"),
        (lambda k: _insert(k, "flatten", "Dense", "plain", units=3), "'plain'.*unquantized Dense"),
        (lambda k: _edit(k, "conv2d_0_m", kernel_quantizer=qbits(6, 1, alpha="auto_po2")),
         "'conv2d_0_m'.*alpha='auto_po2'"),
        (lambda k: _edit(k, "encoded_vector", kernel_quantizer=qbits(6, 1, alpha=0.75)),
         "'encoded_vector'.*alpha=0.75 is not a power of two"),
        (lambda k: _edit(k, "act_0", activation=qbits(8, 3, alpha=0.5)), "'act_0'.*alpha=0.5.*activation"),
        (lambda k: _edit(k, "conv2d_0_m", bias_quantizer=qbits(6, 1, use_stochastic_rounding=True)),
         "'conv2d_0_m'.*stochastic"),
        (lambda k: _edit(k, "act_0", activation="quantized_relu(8,3,use_stochastic_rounding=True)"),
         "'act_0'.*stochastic"),
        (lambda k: _edit(k, "act_0", activation=qrelu(8, 3, negative_slope=0.25)), "'act_0'.*negative_slope"),
        (lambda k: _edit(k, "act_0", activation="quantized_tanh(8)"), "'act_0'.*quantized_tanh"),
        (lambda k: _edit(k, "act_0", activation=qbits(8, 3, qnoise_factor=0.5)), "'act_0'.*qnoise_factor"),
        (lambda k: _edit(k, "act_0", activation=qbits(8, 3, mystery=1)), "'act_0'.*unknown.*mystery"),
        (lambda k: _edit(k, "conv2d_0_m", data_format="channels_first"), "'conv2d_0_m'.*channels_first"),
        (lambda k: _edit(k, "flatten", data_format="channels_first"), "'flatten'.*channels_first"),
        (lambda k: _edit(k, "conv2d_0_m", dilation_rate=[2, 2]), "'conv2d_0_m'.*dilation"),
        (lambda k: _edit(k, "conv2d_0_m", groups=2), "'conv2d_0_m'.*groups"),
        (lambda k: _edit(k, "conv2d_0_m", kernel_quantizer=None), "'conv2d_0_m'.*kernel_quantizer"),
        (lambda k: _edit(k, "encoded_vector", bias_quantizer=None), "'encoded_vector'.*bias_quantizer"),
        (lambda k: _edit(k, "encoded_vector", kernel_quantizer=qrelu(6, 1)), "'encoded_vector'.*quantized_relu"),
        (lambda k: _edit(k, "act_0", activation="tanh"), "'act_0'.*unsupported activation 'tanh'"),
        (lambda k: _edit(k, "conv2d_0_m", padding="causal"), "'conv2d_0_m'.*padding"),
    ],
)
def test_refusals_name_the_layer(tmp_path, mutate, message: str) -> None:
    keras = mutate(econt_model())
    with pytest.raises(ConfigError, match=message):
        load_qkeras(*keras.write(tmp_path))


def test_functional_branches_are_refused(tmp_path) -> None:
    model_json, weights = econt_model().write(tmp_path, functional=True)
    config = json.loads(model_json.read_text())
    layers = config["config"]["layers"]
    # a second consumer of act_0: act_0 feeds two layers
    layers.append({"class_name": "Flatten", "name": "side", "config": {"name": "side"},
                   "inbound_nodes": [[["act_0", 0, 0, {}]]]})
    model_json.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"'act_0' feeds 2 layers.*branches"):
        load_qkeras(model_json, weights)
    # a merge: a layer with two inputs
    layers[-1] = {"class_name": "Add", "name": "add", "config": {"name": "add"},
                  "inbound_nodes": [[["latent_qa", 0, 0, {}], ["input_qa", 0, 0, {}]]]}
    model_json.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"'add'.*2 inputs"):
        load_qkeras(model_json, weights)


def test_keras3_inbound_nodes_are_understood(tmp_path) -> None:
    keras = econt_model()
    model_json, weights = keras.write(tmp_path, functional=True)
    config = json.loads(model_json.read_text())
    for entry in config["config"]["layers"]:
        if entry["inbound_nodes"]:
            parent = entry["inbound_nodes"][0][0][0]
            history = {"class_name": "__keras_tensor__", "config": {"shape": None, "keras_history": [parent, 0, 0]}}
            entry["inbound_nodes"] = [{"args": [history], "kwargs": {}}]
        if entry["class_name"] == "InputLayer":
            entry["config"]["batch_shape"] = entry["config"].pop("batch_input_shape")
    config["config"]["output_layers"] = config["config"]["output_layers"][0]  # a flat list for one output
    model_json.write_text(json.dumps(config))
    assert load_qkeras(model_json, weights).econt is not None


def test_bad_json_files(tmp_path) -> None:
    _, weights = econt_model().write(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"class_name": "Sequential",\n "config": [}')
    with pytest.raises(ConfigError, match=r"broken.json:2:.*invalid JSON"):
        load_qkeras(broken, weights)
    with pytest.raises(ConfigError, match=r"nothing.json: model JSON not found"):
        load_qkeras(tmp_path / "nothing.json", weights)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"class_name": "Transformer", "config": {}}))
    with pytest.raises(ConfigError, match=r"unsupported Keras model class 'Transformer'"):
        load_qkeras(other, weights)
    with pytest.raises(ConfigError, match=r"no 'model_config'.*give the model JSON"):
        load_qkeras(None, weights)


# ---------------------------------------------------------------------------------- refusals (HDF5)
def test_missing_weights_are_named(tmp_path) -> None:
    keras = econt_model()
    keras.weights["encoded_vector"] = []
    with pytest.raises(DataError, match=r"'encoded_vector': weights missing"):
        load_qkeras(*keras.write(tmp_path))


def test_missing_bias_is_named(tmp_path) -> None:
    keras = econt_model()
    keras.weights["conv2d_0_m"] = keras.weights["conv2d_0_m"][:1]
    with pytest.raises(DataError, match=r"'conv2d_0_m': stores \['kernel'\], the model needs \['bias', 'kernel'\]"):
        load_qkeras(*keras.write(tmp_path))


def test_misshaped_weights_are_named(tmp_path) -> None:
    keras = econt_model()
    kernel_name, _ = keras.weights["conv2d_0_m"][0]
    keras.weights["conv2d_0_m"][0] = (kernel_name, np.zeros((3, 3, 2, 8), dtype=np.float32))
    with pytest.raises(DataError, match=r"'conv2d_0_m': kernel has shape \(3, 3, 2, 8\).*\(3, 3, 1, 8\)"):
        load_qkeras(*keras.write(tmp_path))


def test_extra_weight_layers_are_named(tmp_path) -> None:
    keras = econt_model()
    model_json, weights = keras.write(tmp_path)
    extra = dict(read_keras_weights(weights))
    extra["ghost_dense"] = [("ghost_dense/kernel:0", np.zeros((2, 2), dtype=np.float32))]
    extra["act_0"] = [("act_0/alpha:0", np.zeros(1, dtype=np.float32))]
    write_weights(weights, extra)
    with pytest.raises(DataError, match=r"\['act_0', 'ghost_dense'\]"):
        load_qkeras(model_json, weights)


def test_unexpected_weight_in_a_layer_is_named(tmp_path) -> None:
    keras = econt_model()
    keras.weights["encoded_vector"].append(("encoded_vector/kernel_mask:0", np.ones((128, 16), dtype=np.float32)))
    with pytest.raises(DataError, match=r"'encoded_vector': unexpected weight 'encoded_vector/kernel_mask:0'"):
        load_qkeras(*keras.write(tmp_path))


def test_non_finite_weights_are_refused(tmp_path) -> None:
    keras = econt_model()
    _, kernel = keras.weights["encoded_vector"][0]
    kernel[0, 0] = np.nan
    with pytest.raises(DataError, match=r"'encoded_vector': cannot quantize"):
        load_qkeras(*keras.write(tmp_path))


def test_other_hdf5_layouts_are_refused(tmp_path) -> None:
    model_json, _ = econt_model().write(tmp_path)
    keras3 = tmp_path / "model.weights.h5"
    with h5py.File(keras3, "w") as handle:
        handle.create_group("layers/q_dense/vars").create_dataset("0", data=np.zeros(3))
    with pytest.raises(DataError, match=r"no 'layer_names'.*Keras 3"):
        load_qkeras(model_json, keras3)
    not_h5 = tmp_path / "weights.h5"
    not_h5.write_text("hello")
    with pytest.raises(DataError, match=r"weights.h5: not a readable HDF5 file"):
        load_qkeras(model_json, not_h5)
    with pytest.raises(DataError, match=r"absent.h5: weights file not found"):
        load_qkeras(model_json, tmp_path / "absent.h5")


def test_spec_types_follow_qkeras_integer_convention(tmp_path) -> None:
    """Signed QKeras ``integer`` excludes the sign bit: quantized_bits(6, 1) is ap_fixed<6, 2>."""
    imported = load_qkeras(*econt_model().write(tmp_path))
    conv = imported.spec.layers[0]
    assert isinstance(conv, Conv2DSpec) and conv.weight == FixedPoint(6, 2)
    relu = imported.spec.layers[1]
    assert isinstance(relu, ReLUSpec) and relu.type == FixedPoint(8, 3, signed=False)


def test_old_sequential_json_and_relu_layer(tmp_path) -> None:
    """Sequential JSON without an InputLayer entry (shape on the first layer); a ``ReLU`` layer folds."""
    keras = econt_model()
    _edit(keras, "act_0", activation="quantized_bits(8,3,keep_negative=False)")
    _insert(keras, "conv2d_0_m", "ReLU", "re_lu", max_value=None, negative_slope=0.0, threshold=0.0)
    model_json, weights = keras.write(tmp_path)
    config = json.loads(model_json.read_text())
    input_entry = config["config"]["layers"].pop(0)
    config["config"]["layers"][0]["config"]["batch_input_shape"] = input_entry["config"]["batch_input_shape"]
    model_json.write_text(json.dumps(config))
    imported = load_qkeras(model_json, weights)
    assert imported.spec.input.shape == (8, 8, 1)
    assert imported.source_names["act_0"] == "re_lu+act_0"
    assert imported.econt is not None  # relu + unsigned quantized_bits is the same quantized ReLU
    x = _inputs((8, 8, 1), seed=7)
    expected = econt_model().forward(x)  # quantized_relu(8,3) == relu + quantized_bits(8,3,keep_negative=False)
    np.testing.assert_array_equal(_torch_forward(imported.build(), x), expected)
