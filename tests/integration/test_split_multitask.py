"""Multi-task (Ladon-style) split computing end to end on the synthetic shapes: train (teachers, head
distillation, joint fine-tuning) -> run -> export (head.onnx, tail_<task>.onnx, split.json) -> ONNX Runtime
against PyTorch -> KServe v2 gRPC server on loopback -> client asking for one or several tasks."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.grpc")

from aeforge.artifact import load_run  # noqa: E402
from aeforge.edge.split.codec import load_split_artifact  # noqa: E402
from aeforge.edge.split.config import parse_split_config  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.export import export_split  # noqa: E402
from aeforge.edge.split.multitask import load_multitask_model, save_multitask_run, train_multitask  # noqa: E402
from aeforge.edge.split.multitask_export import compare_task_outputs  # noqa: E402
from aeforge.edge.split.tasks import OUTPUT_NAMES, ExportedTail  # noqa: E402
from aeforge.errors import ArtifactError, ConfigError  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
name: tiny_multitask
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 4, encoder_channels: 8}
tasks:
  - {kind: classification}
  - {kind: detection, loss_weight: 0.5}
  - {kind: segmentation, head: fcn}
data: {source: shapes, image_size: 32, shapes_count: 64, shapes_per_image: 2, eval_batch_size: 32}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1,
        threads: 1}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aeforge.cli import main

    root = tmp_path_factory.mktemp("multitask")
    (root / "tiny.yaml").write_text(CONFIG)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["train", str(root / "tiny.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    assert "det (detection): box_map50" in printed.getvalue()
    return root / "run"


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> dict:
    from aeforge.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", "split", str(run_dir), "--json"]) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    config = parse_split_config(CONFIG, source="tiny.yaml")
    return load_split_data(config.data).x_test[:4].numpy()


def test_run_has_every_task(run_dir: Path) -> None:
    card = load_run(run_dir)
    assert card.kind == "split" and [t["name"] for t in card.data["tasks"]] == ["cls", "det", "seg"]
    for name in ("teachers.pt", "student.pt", "history.json", "metrics.json"):
        assert name in card.files, name
    history = json.loads((run_dir / "history.json").read_text())
    assert {"teacher_cls", "teacher_det", "teacher_seg", "head_distillation", "finetune"} <= set(history)
    metrics = card.metrics
    for key in ("cls_top1", "cls_top1_teacher", "det_box_map50", "det_box_map50_teacher", "seg_mask_miou",
                "seg_mask_miou_teacher", "bytes_per_sample"):
        assert key in metrics, key
        assert 0.0 <= metrics[key] <= (1.0 if key != "bytes_per_sample" else 1e6)
    assert metrics["code_shape"] == [2, 8, 8] and metrics["code_bits_per_sample"] == 2 * 8 * 8 * 4


def test_training_is_deterministic_and_api_saves_the_same_run(run_dir: Path, tmp_path: Path) -> None:
    config = parse_split_config(CONFIG, source="tiny.yaml")
    result = train_multitask(config)
    assert result.metrics["tasks"] == load_run(run_dir).metrics["tasks"]  # same seeds, same numbers as the CLI's
    save_multitask_run(result, tmp_path / "again")
    with pytest.raises(ArtifactError):
        save_multitask_run(result, tmp_path / "again")  # an existing run is not overwritten


def test_reloaded_model_equals_trained(run_dir: Path, images: np.ndarray) -> None:
    model = load_multitask_model(run_dir)
    again = load_multitask_model(run_dir)
    x = torch.from_numpy(images)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a["cls"], b["cls"]) and torch.equal(a["seg"], b["seg"])
    assert torch.equal(a["det"]["cls_logits"], b["det"]["cls_logits"])


def test_export_names_one_head_and_a_tail_per_task(run_dir: Path, exported: dict) -> None:
    root = Path(exported["path"])
    assert sorted(p.name for p in root.iterdir()) == ["head.onnx", "split.json", "tail_cls.onnx", "tail_det.onnx",
                                                      "tail_seg.onnx"]
    meta = json.loads((root / "split.json").read_text())
    assert [(t["name"], t["kind"], t["file"]) for t in meta["tasks"]] == [
        ("cls", "classification", "tail_cls.onnx"), ("det", "detection", "tail_det.onnx"),
        ("seg", "segmentation", "tail_seg.onnx")]
    assert meta["tail_file"] == "tail_cls.onnx" and meta["legacy_task"] == "cls"
    assert exported["check"]["code_mismatches_vs_torch"] == 0
    artifact = load_split_artifact(root)
    assert artifact.task_names == ("cls", "det", "seg") and artifact.verify("tail").name == "tail_cls.onnx"
    with pytest.raises(ArtifactError, match="already exists"):
        export_split(run_dir)


def test_each_onnx_tail_equals_torch(run_dir: Path, exported: dict, images: np.ndarray) -> None:
    from aeforge.edge.onnx_export import exact_session_options

    root = Path(exported["path"])
    model = load_multitask_model(run_dir)
    head = ort.InferenceSession(str(root / "head.onnx"), exact_session_options(), providers=["CPUExecutionProvider"])
    values = head.run(None, {head.get_inputs()[0].name: images})[0]
    with torch.no_grad():
        torch_values = model.head(torch.from_numpy(images)).numpy()
    assert np.array_equal(values, torch_values)  # the code is exact
    for task in model.tasks:
        session = ort.InferenceSession(str(root / f"tail_{task.name}.onnx"), providers=["CPUExecutionProvider"])
        ort_out = session.run(list(OUTPUT_NAMES[task.kind]), {"code": values})
        with torch.no_grad():
            out = ExportedTail(task, model.tails[task.name]).eval()(torch.from_numpy(values))
        torch_out = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        assert [o.shape for o in ort_out] == [t.shape for t in torch_out]
        found = compare_task_outputs(task.kind, ort_out, torch_out)
        assert found["max_rel"] <= 1e-4, (task.name, found)
        assert found.get("label_mismatches", 0) == 0


def test_grpc_round_trip_selected_tasks(exported: dict, images: np.ndarray, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.multitask_serve import MultiTaskTailModel
    from aeforge.edge.split.serve import TailServer

    root = Path(exported["path"])
    artifact = load_split_artifact(root)
    local = MultiTaskTailModel(artifact)
    with TailServer(root, port=0) as server:
        with SplitClient(root, transport="grpc", port=server.port) as client:
            every = client.infer_tasks(images)
            reference = local.infer_tasks(every.codes.astype(np.float32) * np.float32(artifact.code.scale),
                                          ["cls", "det", "seg"])
            assert set(every.outputs) == {"cls", "det", "seg"}
            assert every.outputs["cls"]["logits"].shape == (4, 3)
            assert every.outputs["det"]["boxes"].shape == (4, 20, 4)
            assert every.outputs["det"]["labels"].dtype == np.int32
            assert every.outputs["seg"]["masks"].shape == (4, 32, 32)
            for task, outputs in reference.items():
                for key, value in outputs.items():
                    np.testing.assert_array_equal(every.outputs[task][key], value)
            only_seg = client.infer_tasks(images, ["seg"])
            assert set(only_seg.outputs) == {"seg"} and only_seg.request_bytes == every.request_bytes
            legacy = client.infer(images)  # single-task clients get the classification task's logits
            np.testing.assert_array_equal(legacy.logits, every.outputs["cls"]["logits"])
            with pytest.raises(ArtifactError, match="no task 'depth'; tasks: cls, det, seg"):
                client.infer_tasks(images, ["depth"])
        import tritonclient.grpc as triton

        stock = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        outputs = [o.name for o in stock.get_model_metadata("aeforge_tail").outputs]
        assert outputs == ["cls_logits", "det_boxes", "det_scores", "det_labels", "seg_masks"]
        code = triton.InferInput("code", [1, *artifact.code.shape], "FP32")
        code.set_data_from_numpy(every.codes[:1].astype(np.float32) * np.float32(artifact.code.scale))
        answer = stock.infer("aeforge_tail", [code], outputs=[triton.InferRequestedOutput("seg_masks")])
        np.testing.assert_array_equal(answer.as_numpy("seg_masks"), every.outputs["seg"]["masks"][:1])
        with pytest.raises(triton.InferenceServerException, match="unknown output 'seg_logits'"):
            stock.infer("aeforge_tail", [code], outputs=[triton.InferRequestedOutput("seg_logits")])
        np.save(tmp_path / "x.npy", images)
        code = main(["split", "run", str(root), "--input", str(tmp_path / "x.npy"), "--port", str(server.port),
                     "--tasks", "cls,det", "--output", str(tmp_path / "out.npz")])
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert set(printed["tasks"]) == {"cls", "det"} and len(printed["tasks"]["det"]["detections"]) == 4
        saved = np.load(tmp_path / "out.npz")
        assert sorted(saved.files) == ["cls_logits", "det_boxes", "det_labels", "det_scores"]
        np.testing.assert_array_equal(saved["cls_logits"], every.outputs["cls"]["logits"])


def test_fast_path_serves_classification_and_refuses_other_tasks(exported: dict, images: np.ndarray) -> None:
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import FastPathServer

    root = Path(exported["path"])
    with FastPathServer(root, port=0) as server, SplitClient(root, transport="tcp", port=server.port) as client:
        result = client.infer_tasks(images, ["cls"])
        assert result.outputs["cls"]["logits"].shape == (4, 3)
        with pytest.raises(ConfigError, match=r"--tasks cls,det: the tcp fast path carries one task's logits .* "
                                              r"need --transport grpc"):
            client.infer_tasks(images, ["cls", "det"])


def test_triton_repository_has_a_model_per_tail_and_an_ensemble(exported: dict, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from aeforge.edge.split.triton_repo import write_triton_repository

    model_dir = write_triton_repository(exported["path"], tmp_path / "repo", model_name="shapes")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["shapes", "shapes_cls", "shapes_det",
                                                                      "shapes_seg"]
    for task in ("cls", "det", "seg"):
        assert (tmp_path / "repo" / f"shapes_{task}" / "1" / "model.onnx").read_bytes() == \
            (Path(exported["path"]) / f"tail_{task}.onnx").read_bytes()
    ensemble = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert ensemble.platform == "ensemble" and [i.name for i in ensemble.input] == ["code"]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["shapes_cls", "shapes_det", "shapes_seg"]
    assert [o.name for o in ensemble.output] == ["cls_logits", "det_boxes", "det_scores", "det_labels",
                                                 "seg_mask_logits"]
