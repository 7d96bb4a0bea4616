"""A heterogeneous-quantized ECON-T encoder (issue 15) through every target: bit-exact under ``aeforge verify``.

A small encoder (2 filters, 4 latents) trained for a few epochs with a strong EBOPs cost, so that
weights are pruned and the learned grids differ from weight to weight; then QONNX execution, the
hls4ml C-simulation, the da4ml RTL in Verilator and onnxruntime against Brevitas, as for any run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aeforge.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "aeforge" / "configs" / "econt_hw_aware.yaml"
pytestmark = [pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("hls4ml", reason="hls4ml is needed (pip install 'aeforge[hls]')")

SETTINGS = ("data.synthetic.n_events=2000", "train.float_epochs=2", "train.qat_epochs=4", "model.filters=2",
            "model.latent_dim=4", "model.hgq.beta=3.0e-4", "model.hgq.beta_start=0",
            "model.hgq.beta_warmup_epochs=1", "model.hgq.beta_ramp_epochs=2", "model.hgq.bits_lr_scale=40")


@pytest.fixture(scope="module")
def hgq_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("hgq") / "run"
    argv = ["train", str(CONFIG), "--out", str(run), "--quiet"]
    for setting in SETTINGS:
        argv += ["--set", setting]
    assert main(argv) == 0
    return run


def test_card_has_emd_ebops_and_learned_widths(hgq_run: Path) -> None:
    metrics = json.loads((hgq_run / "card.json").read_text())["metrics"]
    assert metrics["emd"]["qat"] > 0 and metrics["emd"]["float"] > 0
    assert 0 < metrics["ebops"]["total"] == metrics["ebops"]["conv"] + metrics["ebops"]["dense"]
    dense = metrics["hgq"]["dense"]
    assert dense["weights"] == 2 * 16 * 4 and dense["kept"] < dense["weights"]  # the cost pruned weights


def test_every_target_is_bit_exact(hgq_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.hls.rtl import da4ml_available, why_verilator_unavailable
    from aeforge.quantize.train import load_trained_model

    frozen = load_trained_model(hgq_run).encoder
    assert torch.any(frozen.dense.weight == 0)  # pruned weights are constant zeros in the hardware model
    assert main(["hls", str(hgq_run), "--backend", "vitis", "--io", "parallel"]) == 0
    rtl_reason = da4ml_available() or why_verilator_unavailable()
    if rtl_reason is None:
        assert main(["rtl", str(hgq_run), "--json"]) == 0
    capsys.readouterr()
    assert main(["verify", str(hgq_run), "--n", "500", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["bit_exact"]
    expected = {"qonnx", "hls", "ort"} | ({"rtl"} if rtl_reason is None else set())
    for target in expected:
        assert results["targets"][target]["exact"] == 500, (target, results["targets"][target])
