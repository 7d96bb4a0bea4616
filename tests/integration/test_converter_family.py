"""model.family: converter end to end: a tiny train -> ONNX equal to Brevitas -> rpi bundle self-check -> bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

from aeforge.cli import main
from aeforge.converter.compare import baseline_runs, export_with_baselines
from aeforge.quantize.models.boundary import hardware_model

pytestmark = [pytest.mark.integration]

TINY = """\
name: tiny_converter
data: {image_size: 8, seed: 0}
model:
  family: converter
  exit_after: pool
  heavy:
    - {kind: conv2d, filters: 6, kernel_size: 3, padding: same}
    - {kind: relu}
    - {kind: maxpool, pool_size: 2, name: pool}
    - {kind: flatten}
    - {kind: dense, units: 10}
  converter:
    - {kind: conv2d, filters: 4, kernel_size: 3, padding: same}
    - {kind: relu}
    - {kind: conv2d, filters: 1, kernel_size: 3, padding: same}
    - {kind: quant, name: converted, type: 'ap_ufixed<7,1,AP_RND_CONV,AP_SAT>'}
  light:
    - {kind: maxpool, pool_size: 2}
    - {kind: flatten}
    - {kind: dense, units: 10}
easy: {threshold: 0.3}
train: {heavy_epochs: 4, light_epochs: 4, converter_epochs: 2, joint_epochs: 2, qat_epochs: 1, batch_size: 128,
        learning_rate: 0.01, ce_weight: 0.2, shift_px: 1}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("converter")
    (root / "cv.yaml").write_text(TINY)
    assert main(["train", str(root / "cv.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_run_holds_the_pipeline_and_its_baselines(run: Path) -> None:
    card = json.loads((run / "card.json").read_text())
    assert card["family"] == "converter" and card["baselines"] == {"heavy": "heavy", "light": "light"}
    assert card["converter"]["easy"]["method"] == "early_exit" and card["converter"]["converter_layers"] == 4
    accuracy = card["metrics"]["accuracy_qat"]
    assert set(accuracy) == {"heavy", "light", "converter_light"}
    assert all(value > 0.5 for value in accuracy.values()), accuracy  # far above chance (0.1): they learned
    assert 0.0 < card["metrics"]["easy_fraction"]["train"] <= 1.0
    model = hardware_model(run)
    assert model.family == "converter" and model.input_shape == (1, 8, 8)
    assert model.module.spec.layers[3].name == "converted" and model.module.spec.output_shape == (10,)
    for role, path in baseline_runs(run).items():
        baseline = hardware_model(path)
        assert baseline.family == "converter" and baseline.module.spec.output_shape == (10,)
        assert json.loads((path / "card.json").read_text())["metrics"]["accuracy"] == accuracy[role]


def test_qdq_onnx_of_pipeline_and_baselines_equals_brevitas(run: Path) -> None:
    exported = export_with_baselines(run)
    assert set(exported) == {"converter_light", "heavy", "light"}
    for role, record in exported.items():
        assert record["exact"] and record["max_abs_err"] == 0.0, (role, record)  # bit for bit on the test images
        assert record["accuracy_ort"] == pytest.approx(record["accuracy_card"]), role
        assert record["trt_errors"] == 0 and Path(record["onnx"]).is_file()


def test_rpi_bundle_self_check_passes(run: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(run), "--device", "rpi", "--out", str(bundle), "--check-vectors", "100"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["source"]["family"] == "converter" and manifest["outputs"][0]["shape"] == [None, 10]
    result = subprocess.run([sys.executable, "-I", str(bundle / "run.py"), "--self-check"], capture_output=True,
                            text=True, timeout=120, cwd=bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check passed" in result.stdout and "100/100" in result.stdout
    with np.load(bundle / "check.npz") as check:  # the recorded inputs are held-out digits, not noise
        images = check["input_codes"] * float(check["input_scale"])
    sample = {row.tobytes() for row in np.load(run / "verification_inputs.npy").astype(np.float64)}
    assert all(image.tobytes() in sample for image in images)


def test_bench_compares_converter_light_heavy_and_light_on_one_runner(run: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--runner", "ort", "--threads", "1", "--duration-s", "0.2", "--min-queries", "20"]
    assert main(["bench", str(run), *options, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["comparison"]
    assert set(rows) == {"converter_light", "heavy", "light"} and set(result["baselines"]) == {"heavy", "light"}
    for role, row in rows.items():
        assert row["valid"] and row["p50_s"] > 0 and row["p90_s"] >= row["p50_s"], role
        assert row["accuracy"] is not None
        if row["energy_j_per_inference"] is None:  # no power meter here: said so, with the reason
            assert row["energy_status"].split(":")[0] in ("unavailable", "not requested", "invalid")
            assert len(row["energy_status"]) > 20
    assert rows["heavy"]["speedup_vs_heavy_p50"] == pytest.approx(1.0)
    for baseline in result["baselines"].values():
        assert baseline["runner"] == "ort" and baseline["threads"] == 1 and baseline["batch_size"] == 1
    assert main(["bench", str(run), *options]) == 0
    text = capsys.readouterr().out
    assert "converter_light" in text and "heavy" in text and "energy/inference" in text
    assert main(["bench", str(run), *options, "--no-baselines", "--json"]) == 0
    assert "comparison" not in json.loads(capsys.readouterr().out)
