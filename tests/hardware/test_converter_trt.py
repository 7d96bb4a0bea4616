"""A converter run (converter + light as one QDQ ONNX) under TensorRT INT8 on a GPU / Jetson.

Skipped with the reason where tensorrt or a CUDA GPU is absent (as on the CPU-only machines here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.hardware.trt_device import why_no_trt_device

pytestmark = [pytest.mark.hardware, pytest.mark.slow]


REASON = why_no_trt_device()
if REASON is not None:
    pytest.skip(REASON, allow_module_level=True)

from tests.integration.test_converter_family import TINY  # noqa: E402  (only where TensorRT runs)


def test_converter_pipeline_int8_engine_matches_brevitas_within_one_lsb(tmp_path: Path) -> None:
    from aeforge.cli import main
    from aeforge.edge.runners import TrtRunner
    from aeforge.quantize.models.boundary import hardware_model
    from aeforge.stages import export_onnx_stage
    from aeforge.verification import predict_brevitas

    (tmp_path / "cv.yaml").write_text(TINY)
    assert main(["train", str(tmp_path / "cv.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    record = export_onnx_stage(tmp_path / "run", fmt="qdq")
    model = hardware_model(tmp_path / "run")
    images = np.load(tmp_path / "run" / "verification_inputs.npy")[:64].astype(np.float32)
    expected = predict_brevitas(model.module, images, model.input_type)
    with TrtRunner(record["path"], precision="int8", batch_profile=(1, 64, 64),
                   cache_dir=tmp_path / "engines") as runner:
        got = next(iter(runner.infer({record["input_name"]: images}).values()))
    assert np.max(np.abs(got.astype(np.float64) - expected)) <= model.output_type.lsb
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 0.98
