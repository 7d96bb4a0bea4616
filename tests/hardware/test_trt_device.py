"""TensorRT on a real GPU / Jetson: engine build, cache reuse, outputs against Brevitas, the jetson bundle.

Skipped with a reason where tensorrt or a CUDA GPU is absent (never run in aeforge's CI so far).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.hardware.trt_device import why_no_trt_device

pytestmark = [pytest.mark.hardware, pytest.mark.slow]


REASON = why_no_trt_device()
if REASON is not None:
    pytest.skip(REASON, allow_module_level=True)

TINY = "name: tiny\ndata:\n  synthetic: {n_events: 3000, seed: 3}\ntrain:\n  float_epochs: 1\n  qat_epochs: 1\n"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aeforge.cli import main

    root = tmp_path_factory.mktemp("trt")
    (root / "exp.yaml").write_text(TINY)
    assert main(["train", str(root / "exp.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_int8_engine_matches_brevitas_within_one_lsb_and_is_cached(trained_run: Path, tmp_path: Path) -> None:
    from aeforge.edge.onnx_export import export_edge_onnx
    from aeforge.edge.runners import TrtRunner
    from aeforge.stages import hardware_model, verification_inputs
    from aeforge.verification import predict_brevitas

    model = hardware_model(trained_run)
    export = export_edge_onnx(model.module, model.input_shape, tmp_path / "model.onnx", fmt="qdq")
    inputs = verification_inputs(model, 64)
    reference = predict_brevitas(model.module, inputs, model.input_type)
    with TrtRunner(export.path, precision="int8", batch_profile=(1, 8, 64), cache_dir=tmp_path / "cache") as runner:
        assert runner.built
        got = runner.infer({export.input_name: inputs.astype(np.float32)})[export.output_name]
        assert runner.last_inference_time_s is not None
        assert runner.infer({export.input_name: inputs[:1].astype(np.float32)})[export.output_name].shape[0] == 1
    error_lsb = np.abs(got.astype(np.float64) - reference) / model.output_type.lsb
    assert error_lsb.max() <= 1.0, f"max error {error_lsb.max()} LSB"
    with TrtRunner(export.path, precision="int8", batch_profile=(1, 8, 64), cache_dir=tmp_path / "cache") as again:
        assert not again.built


def test_jetson_bundle_self_check_and_bench(trained_run: Path, tmp_path: Path) -> None:
    from aeforge.edge.deploy import build_bundle

    bundle = build_bundle(trained_run, "jetson", tmp_path / "jetson")
    check = subprocess.run([sys.executable, str(bundle / "run.py"), "--self-check"], capture_output=True,
                           text=True, timeout=600)
    if check.returncode == 2 and "CUDA Python bindings" in check.stderr:
        pytest.skip(check.stderr.strip())
    assert check.returncode == 0, check.stdout + check.stderr
    bench = subprocess.run([sys.executable, str(bundle / "run.py"), "--bench", "--seconds", "1", "--batch", "64"],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["latency_s"]["p50"] > 0
