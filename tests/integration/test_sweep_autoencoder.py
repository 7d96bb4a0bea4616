"""``aeforge sweep`` on a ``model.family: autoencoder`` base experiment, end to end through the CLI.

A tiny dense autoencoder (12 inputs, 6-3-6 units, whole autoencoder + score as hardware) on a user's ``.npy`` file,
two trials over the default weight width in parallel; RTL generated, simulated and verified bit for bit, LUT/FF
from the tool-free estimate (Yosys LUT/FF is covered by the ECON-T sweep tests).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optuna")

from aeforge.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AE = """\
name: tiny_ae
data: {source: data.npy, normalize: none}
model:
  family: autoencoder
  input_type: ap_fixed<8,3,AP_RND_CONV,AP_SAT>
  hardware: score
  encoder:
    - {kind: dense, units: 6}
    - {kind: relu}
    - {kind: dense, units: 3}
    - {kind: quant, name: latent}
  decoder:
    - {kind: dense, units: 6}
    - {kind: relu}
    - {kind: dense, units: 12}
    - {kind: quant, type: 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'}
quant:
  weight: ap_fixed<6,1,AP_RND_CONV,AP_SAT>
  bias: ap_fixed<6,2,AP_RND_CONV,AP_SAT>
  activation: ap_ufixed<6,2,AP_RND_CONV,AP_SAT>
  quant: ap_fixed<8,3,AP_RND_CONV,AP_SAT>
train: {float_epochs: 30, qat_epochs: 10, learning_rate: 0.01, batch_size: 64}
"""

SWEEP = """\
name: tiny-ae
base: ae.yaml
set:
  train.float_epochs: 6
  train.qat_epochs: 2
  data.max_samples: 1000
  quant.quant.bits: 6
space:
  quant.weight.bits: [4, 6]
sampler: {name: grid, seed: 0}
objectives: [mse, lut, bytes]
cost: {synth: none, energy: mac, verify_n: 100}
resources: {num_cpus: 1, max_retries: 0}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's (N, 12) array file and the autoencoder experiment that trains on it."""
    root = tmp_path_factory.mktemp("ae_sweep")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(1200, 3))
    samples = np.tanh(latent @ rng.normal(size=(3, 12))) + 0.05 * rng.normal(size=(1200, 12))
    np.save(root / "data.npy", samples.astype(np.float32))
    (root / "ae.yaml").write_text(AE.replace("data.npy", str(root / "data.npy")), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def swept(root: Path) -> tuple[Path, int]:
    (root / "sweep.yaml").write_text(SWEEP, encoding="utf-8")
    out = root / "out"
    code = main(["sweep", str(root / "sweep.yaml"), "--out", str(out), "--workers", "2", "--quiet"])
    return out, code


def test_autoencoder_sweep_end_to_end(swept: tuple[Path, int]) -> None:
    out, code = swept
    assert code == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["family"] == "autoencoder"
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 0, summary["trials"]
    assert summary["objectives"] == ["mse", "lut", "bytes"] and summary["directions"] == ["min", "min", "min"]
    assert sorted(t["params"]["quant.weight.bits"] for t in summary["trials"]) == [4, 6]
    assert summary["sources"]["lut"] == "ESTIMATE (tool-free, no synthesis)"
    for trial in summary["trials"]:
        metrics = trial["metrics"]
        bits = trial["params"]["quant.weight.bits"]
        assert metrics["bit_exact"] is True and metrics["verified"]["rtl"] == "100/100"
        assert 0 < metrics["mse"] < 1 and metrics["mse_float"] > 0 and "auc" not in metrics  # unlabelled data
        assert metrics["bytes"] == 3 * 6 / 8  # 3 latents of the default quant type, 6 bits wide
        assert metrics["latent_type"] == "ap_fixed<6,3,AP_RND_CONV,AP_SAT>" and metrics["latent_shape"] == [3]
        assert metrics["weight_type"] == f"ap_fixed<{bits},1,AP_RND_CONV,AP_SAT>"
        assert metrics["lut"] > 0 and metrics["energy_j"] > 0 and metrics["hardware"] == "score"
        assert trial["values"] == [metrics[o] for o in summary["objectives"]]
        run = out / "trials" / f"{trial['trial']:04d}"
        card = json.loads((run / "card.json").read_text())
        assert card["family"] == "autoencoder" and card["kind"] == "train"
        assert card["config"]["quant"]["weight"] == metrics["weight_type"]
        assert card["config"]["train"]["float_epochs"] == 6 and card["config"]["data"]["max_samples"] == 1000
        assert card["metrics"]["sweep_trial"]["metrics"]["mse"] == metrics["mse"]
        assert (run / "qonnx" / "card.json").is_file() and (run / "rtl" / "card.json").is_file()
    done = {t["trial"]: t["values"] for t in summary["trials"]}
    expected = [i for i, p in done.items()
                if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in done.values())]
    assert summary["front"] == expected and expected
    assert "Pareto front" in (out / "report.html").read_text()


def test_cost_without_rtl_is_the_same_tool_free_estimate(swept: tuple[Path, int]) -> None:
    from aeforge.sweep.trial import estimate_metrics

    out, code = swept
    assert code == 0
    trial = json.loads((out / "sweep.json").read_text())["trials"][0]
    estimated = estimate_metrics(out / "trials" / f"{trial['trial']:04d}", {"node_nm": 65.0})
    assert estimated["lut"] == trial["metrics"]["lut_estimate"] == trial["metrics"]["lut"]
    assert estimated["energy_j"] == pytest.approx(trial["metrics"]["energy_mac_j"])
    assert estimated["lut_source"] == "ESTIMATE (tool-free, no RTL generated)"


@pytest.mark.parametrize(("edit", "line", "fragment"), [
    (("quant.weight.bits: [4, 6]", "quant.wieght.bits: [4, 6]"), 9,
     "space.quant.wieght.bits: unknown config key (did you mean 'weight'?)"),
    (("quant.weight.bits: [4, 6]", "model.filters: [4, 8]"), 9, "space.model.filters: unknown config key"),
    (("objectives: [mse, lut, bytes]", "objectives: [emd, lut]"), 11,
     "objectives[0]: unknown objective 'emd' for the autoencoder family; available: mse, auc, val_loss, lut"),
    (("objectives: [mse, lut, bytes]", "objectives: [lut, auc]"), 11,
     "objectives[1]: objective 'auc' needs a labelled test split"),
    (("quant.quant.bits: 6", "quant.quant.bits: 0"), 7, "set.quant.quant.bits: invalid value 0"),
])
def test_invalid_autoencoder_sweeps_fail_with_file_line_field(root: Path, edit: tuple[str, str], line: int,
                                                              fragment: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = root / "bad.yaml"
    path.write_text(textwrap.dedent(SWEEP).replace(*edit), encoding="utf-8")
    out = root / "bad-out"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aeforge sweep: error: "), err
    assert f"{path}:{line}: {fragment}" in err, err
    assert not out.exists()
