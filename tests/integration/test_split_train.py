"""A tiny split experiment end to end: stages 0, a, b -> run directory -> reload -> export -> ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")

from aeforge.artifact import load_run  # noqa: E402
from aeforge.edge.onnx_export import exact_session_options  # noqa: E402
from aeforge.edge.split.config import parse_split_config  # noqa: E402
from aeforge.edge.split.export import export_split  # noqa: E402
from aeforge.edge.split.train import load_split_model, save_split_run, train_split_experiment  # noqa: E402
from aeforge.errors import ArtifactError  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
name: tiny
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 3, encoder_channels: 8}
data: {source: SOURCE, image_size: 32, max_samples: 96, fake_size: 96, fake_classes: 4}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 3}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = "digits"
    try:
        import sklearn  # noqa: F401
    except ImportError:
        source = "fake"
    config = parse_split_config(CONFIG.replace("SOURCE", source), source="tiny.yaml")
    result = train_split_experiment(config)
    again = train_split_experiment(config)
    assert result.metrics["student_accuracy"] == again.metrics["student_accuracy"]  # deterministic given seeds
    out = tmp_path_factory.mktemp("split") / "run"
    save_split_run(result, out)
    return out


def test_run_is_complete(run_dir: Path) -> None:
    card = load_run(run_dir)
    assert card.kind == "split"
    for name in ("teacher.pt", "student.pt", "history.json", "metrics.json", "checkpoints/after_head_distillation.pt"):
        assert name in card.files, name
    history = json.loads((run_dir / "history.json").read_text())
    assert [len(history[k]) for k in ("teacher", "head_distillation", "finetune")] == [1, 1, 1]
    metrics = card.metrics
    for key in ("teacher_accuracy", "student_accuracy", "feature_float32_bytes_per_sample", "code_bits_per_sample"):
        assert key in metrics, key
    assert metrics["feature_float32_bytes_per_sample"] == 64 * 8 * 8 * 4
    assert metrics["code_bits_per_sample"] == 2 * 8 * 8 * 3
    assert card.data["split"]["split_after"] == "layer1"


def test_reload_and_export_match_in_onnxruntime(run_dir: Path) -> None:
    model = load_split_model(run_dir)
    result = export_split(run_dir)
    split = run_dir / "split"
    meta = json.loads((split / "split.json").read_text())
    assert meta["code"] == {"bits": 3, "signed": False, "scale": model.code_spec.lsb, "channels": 2,
                            "shape": [2, 8, 8], "zero_point": 0, "type": model.code_spec.ap_type()}
    assert result["check"]["codes_exact"] and result["check"]["code_mismatches_vs_torch"] == 0
    assert "split/head.onnx" in load_run(run_dir).files

    options = exact_session_options()
    head, tail, full = (ort.InferenceSession(str(split / f"{n}.onnx"), options, providers=["CPUExecutionProvider"])
                        for n in ("head", "tail", "full"))
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(5)).numpy()
    values = head.run(None, {meta["input"]["name"]: images})[0]
    codes = np.round(values / meta["code"]["scale"])
    assert np.array_equal(values, codes * np.float32(meta["code"]["scale"]))
    assert codes.min() >= 0 and codes.max() <= 7
    logits = tail.run(None, {meta["tail_input_name"]: (codes * meta["code"]["scale"]).astype(np.float32)})[0]
    reference = full.run(None, {"input": images})[0]
    assert np.max(np.abs(logits - reference)) <= 1e-6
    with torch.no_grad():
        assert np.max(np.abs(logits - model(torch.from_numpy(images)).numpy())) <= 1e-5 * max(1, np.abs(logits).max())

    with pytest.raises(ArtifactError, match="already exists"):
        export_split(run_dir)


def test_not_a_split_run(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="run directory not found"):
        load_split_model(tmp_path / "missing")
