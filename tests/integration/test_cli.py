"""The CLI end to end: train, demo, doctor, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aeforge.artifact import load_run
from aeforge.cli import main
from aeforge.quantize.train import load_trained_model

TINY = """
name: tiny
data:
  synthetic: {n_events: 3000, seed: 3}
train:
  float_epochs: 2
  qat_epochs: 1
  batch_size: 512
"""


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_train_writes_a_complete_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet"]) == 0
    card = load_run(run)
    assert card.kind == "train"
    assert {"model_float.pt", "model_qat.pt", "history.json", "config.yaml"} <= set(card.files)
    assert card.metrics["epochs"] == {"float": 2, "qat": 1}
    assert card.data["fixed_point_types"]["latent_act"] == "ap_ufixed<9,1,AP_RND_CONV,AP_SAT>"
    assert card.data["config"]["data"]["synthetic"]["n_events"] == 3000
    model = load_trained_model(run, "qat")
    latent = model.encode(torch.rand(8, 48)).detach().numpy()
    assert latent.shape == (8, 16)
    assert np.all(np.ldexp(latent, 8) == np.round(np.ldexp(latent, 8)))  # on the 2^-8 grid
    assert "best validation loss" in capsys.readouterr().out


def test_train_is_deterministic(tmp_path: Path) -> None:
    config = _write(tmp_path, TINY)
    for name in ("a", "b"):
        assert main(["train", str(config), "--out", str(tmp_path / name), "--quiet"]) == 0
    a = json.loads((tmp_path / "a" / "history.json").read_text())
    b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_existing_run_is_kept_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main(["train", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet"]) == 1
    assert "not an aeforge run" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  filtres: 3\n", "exp.yaml:2: model.filtres: unknown key"),
        ("quant:\n  weight: {bits: 6, scale: 0.3}\n", "not a power of two"),
        ("data:\n  source: /nonexistent/calq.csv\n", "/nonexistent/calq.csv: file not found"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    run = tmp_path / "run"
    assert main(["train", str(_write(tmp_path, text)), "--out", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]


def test_bad_csv_is_refused_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "calq.csv"
    header = ",".join(f"CALQ_{i}" for i in range(48))
    rows = [",".join(["1"] * 48)] * 3 + [",".join(["1"] * 47 + ["x"])]
    csv.write_text("\n".join([header, *rows]) + "\n")
    config = _write(tmp_path, f"data:\n  source: {csv}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "calq.csv:5: column CALQ_47: non-numeric" in err
    assert not (tmp_path / "run").exists()


def test_demo_quick_writes_report_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "aeforge", "demo", "--quick", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["emd"]) == {"float", "qat", "pca16", "threshold", "stc", "best_choice"}
    assert all(np.isfinite(v) and v > 0 for v in summary["emd"].values())
    assert summary["eval_data"] == "synthetic" and summary["wall_time_s"] > 0
    assert [row["latent_bits"] for row in summary["latent_bit_table"]] == [3, 5, 7, 9]
    html = (out / "report.html").read_text()
    from PIL import Image

    for image in ("emd_hist.png", "emd_vs_occupancy.png", "emd_vs_bandwidth.png", "training.png"):
        assert image in html
        with Image.open(out / image) as png:
            assert png.size[0] > 100 and png.size[1] > 100
    assert load_run(out).kind == "demo"  # every file, the report included, matches the card
    verification = summary["verification"]
    assert verification["bit_exact"] and set(verification["targets"]) == {"qonnx", "hls", "ort"}
    assert all(t["exact"] == t["n"] == 1000 for t in verification["targets"].values())
    assert "bit-exact" in html and load_run(out / "qonnx").kind == "qonnx"


def test_demo_with_missing_data_fails_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "aeforge", "demo", "--quick", "--quiet", "--out", str(out),
         "--data", str(tmp_path / "missing.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "missing.csv" in result.stderr
    assert not out.exists()


def test_doctor_and_help_run_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from aeforge.cli import main; rc = main(['doctor', '--json']); "
        "assert 'torch' not in sys.modules, 'doctor imported torch'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert any(check["name"] == "numpy" and check["available"] for check in report["checks"])
    help_result = subprocess.run([sys.executable, "-m", "aeforge", "--help"], capture_output=True, text=True)
    assert help_result.returncode == 0 and "demo" in help_result.stdout


def test_demo_evaluates_on_real_readouts(tmp_path: Path, hgcal_csv: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "aeforge", "demo", "--quick", "--quiet", "--out", str(out), "--data", str(hgcal_csv)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_data"] == str(hgcal_csv)
    assert summary["n_eval_events"] == 6050
    assert set(summary["emd_synthetic"]) == set(summary["emd"])
    # best choice of 14 cells on the real sample is a published reference point (~0.27)
    assert 0.2 < summary["emd"]["best_choice"] < 0.35
    assert "Held-out synthetic events" in (out / "report.html").read_text()


def test_demo_never_replaces_a_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "precious.txt").write_text("not a demo")
    result = subprocess.run(
        [sys.executable, "-m", "aeforge", "demo", "--quick", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1 and "not an aeforge run" in result.stderr
    assert (out / "precious.txt").read_text() == "not a demo"
