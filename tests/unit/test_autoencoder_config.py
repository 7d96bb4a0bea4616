"""model.family: autoencoder: config parsing, layer defaults, hardware artifacts, user data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeforge.data.arrays import generate, load_array
from aeforge.errors import ConfigError, DataError
from aeforge.quantize.autoencoder import autoencoder_specs, load_autoencoder_config, prepare_data

CONFIGS = Path(__file__).resolve().parents[2] / "aeforge" / "configs"

SMALL = """\
name: small
data: {source: generated, generator: machine_sound, n_samples: 400}
model:
  family: autoencoder
  input_type: ap_fixed<8,3,AP_RND_CONV,AP_SAT>
  hardware: HARDWARE
  encoder:
    - {kind: dense, units: 16}
    - {kind: relu}
    - {kind: dense, units: 4, bias: false}
    - {kind: quant, name: latent}
  decoder:
    - {kind: dense, units: 640}
    - {kind: quant, type: 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'}
quant:
  weight: ap_fixed<5,1,AP_RND_CONV,AP_SAT>
train: {float_epochs: 1, qat_epochs: 1}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ae.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("hardware, layers, output", [
    ("encoder", 4, "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"),
    ("autoencoder", 6, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
    ("score", 7, None),
])
def test_hardware_artifact_is_a_prefix_or_the_scored_autoencoder(tmp_path: Path, hardware: str, layers: int,
                                                                 output: str | None) -> None:
    config = load_autoencoder_config(_write(tmp_path, SMALL.replace("HARDWARE", hardware)))
    full, hw = autoencoder_specs(config, (640,))
    assert len(full.layers) == 6 and len(hw.layers) == layers
    assert hw.layers[0].weight.ap_type() == "ap_fixed<5,1,AP_RND_CONV,AP_SAT>"  # quant.weight default
    assert hw.layers[0].bias is not None and full.layers[2].bias is None  # bias: false
    if output:
        assert hw.output_type.ap_type() == output
    else:
        assert hw.layers[-1].kind == "sq_error" and hw.output_shape == (1,) and not hw.output_type.signed


def test_score_needs_the_decoder_to_end_on_the_input_type(tmp_path: Path) -> None:
    text = SMALL.replace("HARDWARE", "score").replace("{kind: quant, type: 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'}",
                                                       "{kind: quant, type: 'ap_fixed<9,3,AP_RND_CONV,AP_SAT>'}")
    config = load_autoencoder_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"decoder must end on the input type: add \{kind: quant"):
        autoencoder_specs(config, (640,))


def test_errors_name_file_line_and_layer(tmp_path: Path) -> None:
    text = SMALL.replace("HARDWARE", "encoder").replace("{kind: relu}", "{kind: relu, units: 3}")
    with pytest.raises(ConfigError, match=r"ae.yaml:9: model.encoder\[1\] \(relu\): unknown key 'units'"):
        load_autoencoder_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"model.hardware: expected one of encoder, autoencoder, score"):
        load_autoencoder_config(_write(tmp_path, SMALL.replace("HARDWARE", "chip")))
    config = load_autoencoder_config(_write(tmp_path, SMALL.replace("HARDWARE", "encoder")))
    with pytest.raises(ConfigError, match=r"reconstructs shape \(640,\).*input is \(64,\)"):
        autoencoder_specs(config, (64,))


def test_shipped_examples_parse() -> None:
    dense = load_autoencoder_config(CONFIGS / "ad_dense.yaml")
    full, hw = autoencoder_specs(dense, (640,))
    widths = [layer.units for layer in full.layers if layer.kind == "dense"]
    assert widths == [128, 128, 128, 128, 8, 128, 128, 128, 128, 640]  # the MLPerf Tiny AD layout
    assert hw.layers[-1].kind == "sq_error"
    conv = load_autoencoder_config(CONFIGS / "conv_ae.yaml")
    full, hw = autoencoder_specs(conv, (1, 16, 16))
    assert hw is full and "upsample" in [layer.kind for layer in full.layers]


# ------------------------------------------------------------------------------------ data
def test_every_file_format_loads_the_same_samples(tmp_path: Path) -> None:
    samples = np.random.default_rng(0).normal(size=(30, 6))
    np.save(tmp_path / "x.npy", samples)
    np.savez(tmp_path / "x.npz", features=samples, other=samples[:3])
    header = ",".join(["event"] + [f"f{i}" for i in range(6)])
    rows = "\n".join(",".join([str(i)] + [repr(float(v)) for v in row]) for i, row in enumerate(samples))
    (tmp_path / "x.csv").write_text(header + "\n" + rows + "\n")
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["group/features"] = samples
    np.testing.assert_array_equal(load_array(tmp_path / "x.npy"), samples)
    np.testing.assert_array_equal(load_array(tmp_path / "x.npz", key="features"), samples)
    np.testing.assert_array_equal(load_array(tmp_path / "x.csv", columns="1:"), samples)
    np.testing.assert_array_equal(load_array(tmp_path / "x.csv", columns="f0,f1,f2,f3,f4,f5"), samples)
    np.testing.assert_array_equal(load_array(tmp_path / "x.h5"), samples)
    assert load_array(tmp_path / "x.npy", shape=(1, 2, 3)).shape == (30, 1, 2, 3)


def test_bad_data_files_are_refused_by_name(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"two.npz: several arrays; set data.key to one of a, b"):
        load_array(tmp_path / "two.npz")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"bad.csv:3: column 'b': not a number: 'x'"):
        load_array(tmp_path / "bad.csv")
    nan = np.ones((4, 3))
    nan[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataError, match=r"nan.npy: sample 2 contains NaN"):
        load_array(tmp_path / "nan.npy")
    with pytest.raises(DataError, match=r"unknown data file type '.txt'"):
        (tmp_path / "x.txt").write_text("1")
        load_array(tmp_path / "x.txt")
    with pytest.raises(DataError, match="cannot be reshaped"):
        load_array(tmp_path / "nan.npy", shape=(2, 2))


def test_generated_data_and_normalisation(tmp_path: Path) -> None:
    sound, labels = generate("machine_sound", 200, seed=3, anomaly_fraction=0.5)
    assert sound.shape == (200, 640) and 60 < labels.sum() < 140
    images, _ = generate("shapes", 50)
    assert images.shape == (50, 1, 16, 16) and images.min() >= 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(5, 9, size=(100, 4)))
    text = SMALL.replace("HARDWARE", "encoder").replace(
        "{source: generated, generator: machine_sound, n_samples: 400}",
        f"{{source: '{tmp_path / 'x.npy'}', normalize: minmax}}")
    config = load_autoencoder_config(_write(tmp_path, text))
    data = prepare_data(config.data)
    assert data.train.min() == 0.0 and data.train.max() == 1.0 and data.test_labels is None
    assert len(data.train) + len(data.val) + len(data.test) == 100
