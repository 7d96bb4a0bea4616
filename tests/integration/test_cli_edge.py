"""The edge path through the CLI: export onnx, check trt, verify's ort column, predict --target ort, deploy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aeforge.cli import main

pytest.importorskip("onnxruntime")
CONFIGS = Path(__file__).resolve().parents[2] / "aeforge" / "configs"
FAST = {"data": {"synthetic": {"n_events": 3000, "seed": 3}}, "train": {"float_epochs": 1, "qat_epochs": 1}}


def _train(root: Path, config: str) -> Path:
    spec = yaml.safe_load((CONFIGS / config).read_text())
    spec["data"]["synthetic"] = FAST["data"]["synthetic"]
    spec["train"].update(FAST["train"])
    (root / config).write_text(yaml.safe_dump(spec))
    run = root / config.removesuffix(".yaml")
    assert main(["train", str(root / config), "--out", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("edge"), "econt_int8.yaml")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("edge_default"), "econt.yaml")


def test_int8_qdq_export_is_tensorrt_clean(int8_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", "onnx", str(int8_run), "--format", "qdq", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["trt_violations"] == [] and record["input_shape"][0] == "batch"
    assert record["quantization"]["conv.weight"]["axis"] == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["sha256"] == record["sha256"] and sidecar["parent"]["run"] == str(int8_run.resolve())
    assert main(["check", "trt", str(out), "--lint"]) == 0
    assert "no violations" in capsys.readouterr().out
    import onnx

    model = onnx.load(str(out))
    q_types = {n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    assert q_types == {"QuantizeLinear", "DequantizeLinear"}
    assert not {i.name for i in model.graph.initializer} & {i.name for i in model.graph.input}


def test_default_econt_types_are_notes_for_the_checker(default_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The published 9-12-bit types run exactly in FP32 on TensorRT: notes (exit 0), errors with --int8-only."""
    out = tmp_path / "wide.onnx"
    assert main(["export", "onnx", str(default_run), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", "trt", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    flagged = {(v["node"], v["rule"]) for v in report["notes"]}
    assert ("input_quant/Round", "float-quant") in flagged and report["errors"] == [] and report["clean"]
    assert main(["check", "trt", str(out), "--int8-only"]) == 1
    assert "error: input_quant/Round (Round) [float-quant]" in capsys.readouterr().out


@pytest.mark.parametrize("run_name", ["int8_run", "default_run"])
def test_verify_has_an_exact_ort_column(run_name: str, request: pytest.FixtureRequest, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = request.getfixturevalue(run_name)
    capsys.readouterr()
    assert main(["verify", str(run), "--n", "1000", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["targets"]["ort"]["exact"] == 1000 and results["targets"]["ort"]["max_lsb"] == 0.0
    x = np.random.default_rng(3).exponential(0.1, size=(24, 8, 8, 1))
    np.save(tmp_path / "x.npy", x)
    for target in ("brevitas", "ort"):
        assert main(["predict", str(run), "--input", str(tmp_path / "x.npy"), "--output",
                     str(tmp_path / f"{target}.npy"), "--target", target]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "ort.npy"), np.load(tmp_path / "brevitas.npy"))


def test_bad_export_options_leave_no_file(int8_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", str(int8_run), "--opset", "12", "--out", str(out)]) == 1
    assert "opset" in capsys.readouterr().err and not out.exists()
    assert main(["export", "onnx", str(int8_run), "--batch", "zero", "--out", str(out)]) == 1
    assert "--batch" in capsys.readouterr().err and not out.exists()
    assert main(["export", "onnx", str(int8_run), "--out", str(tmp_path / "m.txt")]) == 1
    assert main(["export", "onnx", str(int8_run), "--format", "fp16", "--batch", "4", "--out", str(out)]) == 0
    assert main(["export", "onnx", str(int8_run), "--out", str(out)]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    assert main(["check", "trt", str(tmp_path / "junk.onnx")]) == 1
    assert "junk.onnx" in capsys.readouterr().err


def test_deploy_rpi_bundle_self_checks(int8_run: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(int8_run), "--device", "rpi", "--out", str(bundle)]) == 0
    done = subprocess.run([sys.executable, "-I", str(bundle / "run.py"), "--self-check"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["deploy", str(int8_run), "--device", "rpi", "--out", str(bundle)]) == 1  # exists
