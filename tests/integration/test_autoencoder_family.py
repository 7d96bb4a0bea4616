"""A YAML autoencoder on the user's data: train, export, verify bit-exact, whole AE + score through RTL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("hls4ml")

from aeforge.cli import main
from aeforge.quantize.models.boundary import hardware_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DENSE_SCORE = """\
name: ad_small
data: {source: DATA, normalize: none}
model:
  family: autoencoder
  input_type: ap_fixed<8,3,AP_RND_CONV,AP_SAT>
  hardware: score
  encoder:
    - {kind: dense, units: 8}
    - {kind: relu}
    - {kind: dense, units: 3}
    - {kind: quant, name: latent}
  decoder:
    - {kind: dense, units: 8}
    - {kind: relu}
    - {kind: dense, units: 12}
    - {kind: quant, type: 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'}
quant:
  weight: ap_fixed<5,1,AP_RND_CONV,AP_SAT>
  bias: ap_fixed<6,2,AP_RND_CONV,AP_SAT>
  activation: ap_ufixed<6,2,AP_RND_CONV,AP_SAT>
  quant: ap_fixed<8,3,AP_RND_CONV,AP_SAT>
train: {float_epochs: 15, qat_epochs: 4, learning_rate: 0.01, batch_size: 64, progress: false}
"""


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's (N, 12) CSV file -> trained score autoencoder."""
    root = tmp_path_factory.mktemp("ae")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(1500, 3))
    samples = np.tanh(latent @ rng.normal(size=(3, 12))) + 0.05 * rng.normal(size=(1500, 12))
    header = ",".join(f"f{i}" for i in range(12))
    (root / "data.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in row) for row in samples))
    (root / "ae.yaml").write_text(DENSE_SCORE.replace("DATA", str(root / "data.csv")))
    assert main(["train", str(root / "ae.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_card_and_hardware_model(dense_run: Path) -> None:
    card = json.loads((dense_run / "card.json").read_text())
    assert card["family"] == "autoencoder" and card["kind"] == "train"
    data = np.loadtxt(dense_run.parent / "data.csv", delimiter=",", skiprows=1)
    assert card["metrics"]["mse"]["qat"] < 0.5 * float(np.mean(np.var(data, axis=0)))  # learns the 3-D structure
    assert card["hardware"]["artifact"] == "score"
    model = hardware_model(dense_run)
    assert model.family == "autoencoder" and model.input_shape == (12,)
    sample = np.load(dense_run / "verification_inputs.npy")
    drawn = model.verification_inputs(10)
    assert any(np.array_equal(drawn[0], row) for row in sample)  # verification uses the held-out rows


def test_whole_autoencoder_with_score_is_bit_exact_in_rtl_and_ort(dense_run: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # hls4ml C-sim of the same layer kinds (score included) is in tests/integration/test_hls_layers.py
    assert main(["rtl", str(dense_run)]) == 0
    capsys.readouterr()
    assert main(["verify", str(dense_run), "--n", "2000", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"rtl", "qonnx", "ort"} <= set(results["targets"])
    for name, target in results["targets"].items():
        assert target["exact"] == target["n"] == 2000, name
    # the score equals sum((x - x_hat)^2) of the autoencoder's own reconstruction
    x = np.load(dense_run / "verification_inputs.npy")[:50].astype(np.float64)
    np.save(dense_run.parent / "x.npy", x)
    assert main(["predict", str(dense_run), "--input", str(dense_run.parent / "x.npy"), "--output",
                 str(dense_run.parent / "y.npy"), "--target", "rtl"]) == 0
    score = np.load(dense_run.parent / "y.npy")
    assert score.shape == (50, 1) and np.all(score >= 0) and np.unique(score).size > 10


CONV_SMALL = """\
name: conv_small
data: {source: DATA}
model:
  family: autoencoder
  input_type: ap_fixed<8,2,AP_RND_CONV,AP_SAT>
  hardware: autoencoder
  encoder:
    - {kind: conv2d, filters: 2, kernel_size: 3, padding: same}
    - {kind: relu}
    - {kind: maxpool, pool_size: 2}
  decoder:
    - {kind: upsample, size: 2}
    - {kind: conv2d, filters: 1, kernel_size: 3, padding: same}
    - {kind: quant, type: 'ap_fixed<8,2,AP_RND_CONV,AP_SAT>'}
quant:
  weight: ap_fixed<5,1,AP_RND_CONV,AP_SAT>
  bias: ap_fixed<6,2,AP_RND_CONV,AP_SAT>
  activation: ap_ufixed<6,2,AP_RND_CONV,AP_SAT>
train: {float_epochs: 3, qat_epochs: 1, learning_rate: 0.01, batch_size: 64, progress: false}
"""


def test_conv_autoencoder_on_an_image_file_trains_and_verifies(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """(N, 1, 8, 8) images from the user's .npz: conv + pooling encoder, upsampling decoder, the whole AE in RTL.
    (The shipped conv_ae.yaml has the same kinds at 16x16; it is parsed in the unit tests and measured in
    benchmarks/byo_models.py.)"""
    from aeforge.data.arrays import generate

    images, _ = generate("shapes", 400, seed=2)
    np.savez(tmp_path / "images.npz", images=images[:, :, ::2, ::2])  # 8x8
    (tmp_path / "conv.yaml").write_text(CONV_SMALL.replace("DATA", str(tmp_path / "images.npz")))
    run = tmp_path / "conv"
    assert main(["train", str(tmp_path / "conv.yaml"), "--out", str(run), "--quiet"]) == 0
    assert main(["rtl", str(run)]) == 0
    capsys.readouterr()
    assert main(["verify", str(run), "--n", "300", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["targets"]["rtl"]["exact"] == 300 and results["targets"]["ort"]["exact"] == 300
    assert hardware_model(run).module.output_shape == (1, 8, 8)  # the whole autoencoder is the artifact


def test_pruned_autoencoder_keeps_its_zeros_through_qat_and_rtl(dense_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """train.sparsity prunes by magnitude after float training; the zeros survive QAT, the RTL gets
    smaller and stays bit-exact; --max-luts refuses an oversize design before writing anything."""
    import torch

    from aeforge.hls.estimate import estimate_resources

    run = tmp_path / "pruned"
    assert main(["train", str(dense_run.parent / "ae.yaml"), "--out", str(run), "--quiet",
                 "--set", "train.sparsity=0.5"]) == 0
    card = json.loads((run / "card.json").read_text())
    density = card["metrics"]["weight_density"]["qat"]
    assert 0.45 < density < 0.6, density
    module = hardware_model(run).module
    weights = [m.weight.detach() for m in module.modules() if isinstance(m, torch.nn.Linear)]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zero > 0.4  # pruned weights are exact zeros in the stored model
    unpruned = json.loads((dense_run / "card.json").read_text())["metrics"]
    assert card["metrics"]["mse"]["qat"] < 3 * unpruned["mse"]["qat"]
    dense_luts = estimate_resources(hardware_model(dense_run).module).lut
    assert estimate_resources(module).lut < 0.7 * dense_luts

    assert main(["rtl", str(run), "--max-luts", "10"]) == 1
    assert "--max-luts 10" in capsys.readouterr().err and not (run / "rtl").exists()
    assert main(["rtl", str(run)]) == 0
    capsys.readouterr()
    assert main(["verify", str(run), "--n", "1000", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["targets"]["rtl"]["exact"] == 1000 and results["targets"]["qonnx"]["exact"] == 1000
