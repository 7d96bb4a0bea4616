"""split.json of multi-task exports: the tasks section is checked field by field; a single-tail model refuses
an export without a classification tail by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aeforge.edge.split.codec import load_split_artifact
from aeforge.errors import ArtifactError, ConfigError

META = {
    "code": {"bits": 4, "signed": False, "scale": 0.125, "channels": 2, "shape": [2, 4, 4], "zero_point": 0},
    "input": {"name": "input", "shape": [1, 3, 16, 16], "dtype": "float32"},
    "tail_input_name": "code", "tail_output_name": "boxes", "tail_file": "tail_det.onnx", "legacy_task": None,
    "num_classes": 3,
    "tasks": [{"name": "det", "kind": "detection", "file": "tail_det.onnx", "sha256": "0" * 64,
               "outputs": {"boxes": {}}, "num_classes": 3},
              {"name": "seg", "kind": "segmentation", "file": "tail_seg.onnx", "sha256": "0" * 64,
               "outputs": {"mask_logits": {}}, "num_classes": 4}],
}


def _write(root: Path, meta: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "split.json").write_text(json.dumps(meta))
    return root


def test_tasks_are_read(tmp_path: Path) -> None:
    artifact = load_split_artifact(_write(tmp_path / "a", META))
    assert artifact.task_names == ("det", "seg") and artifact.legacy_task is None
    assert artifact.tail_path.name == "tail_det.onnx" and artifact.task("seg")["kind"] == "segmentation"
    with pytest.raises(ArtifactError, match="no task 'cls'; tasks: det, seg"):
        artifact.task("cls")
    with pytest.raises(ArtifactError, match=r"tail_seg.onnx: tail of task 'seg' not found"):
        artifact.verify_task("seg")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tasks": []}, "tasks must be a non-empty list"),
        ({"tasks": [{**META["tasks"][0], "kind": "depth"}]}, r"tasks\[0\].kind: unknown 'depth'"),
        ({"tasks": [{**META["tasks"][0], "file": "../x.onnx"}]}, r"tasks\[0\].file must be a file name"),
        ({"tasks": [META["tasks"][0], META["tasks"][0]]}, r"tasks\[1\].name: duplicate 'det'"),
        ({"tasks": [{k: v for k, v in META["tasks"][0].items() if k != "sha256"}]}, r"tasks\[0\].sha256 missing"),
        ({"tail_file": "sub/tail.onnx"}, "tail_file must be a file name"),
    ],
)
def test_bad_tasks_name_the_field(tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(ArtifactError, match=expected):
        load_split_artifact(_write(tmp_path / "bad", {**META, **change}))


def test_single_tail_model_refuses_an_export_without_classification(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from aeforge.edge.split.serve import TailModel

    artifact = load_split_artifact(_write(tmp_path / "a", META))
    with pytest.raises(ConfigError, match=r"tasks det, seg\) has no classification tail, .* --tasks"):
        TailModel(artifact)
