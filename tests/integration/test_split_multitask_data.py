"""Multi-task split computing on COCO- and VOC-layout trees with the RetinaNet and Faster R-CNN detection tails:
a COCO tree written from the shapes data -> ``aeforge train`` -> ``aeforge export split`` -> ONNX Runtime tails
and the served (NMS'd) detections against PyTorch; a VOC tree trains too; each detector learns (box mAP@0.5 on
images it was trained on), evaluated through the very ``detect`` that is exported."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")

from aeforge.artifact import load_run  # noqa: E402
from aeforge.edge.split.codec import load_split_artifact  # noqa: E402
from aeforge.edge.split.config import SplitDataConfig, TaskConfig, parse_split_config  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.multitask import evaluate_task, load_multitask_model, train_multitask  # noqa: E402
from aeforge.edge.split.multitask_export import compare_task_outputs  # noqa: E402
from aeforge.edge.split.shapes_data import write_coco_tree, write_voc_tree  # noqa: E402
from aeforge.edge.split.task_outputs import postprocess_detections  # noqa: E402
from aeforge.edge.split.tasks import OUTPUT_NAMES, ExportedTail, build_task_net  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
name: coco_multitask
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 4, encoder_channels: 8}
tasks:
  - {kind: classification}
  - {kind: detection, head: DETECTOR, score_threshold: 0.0}  # every candidate reaches NMS (a 1-epoch tail)
  - {kind: segmentation, head: fcn}
data: {source: coco, root: ROOT, val_split: val2017, image_size: 32, eval_batch_size: 32}
train: {batch_size: 16, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1,
        threads: 1}
"""


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco_tree(root, "train2017", 32, 32, 2, seed=3)
    write_coco_tree(root, "val2017", 8, 32, 2, seed=4)
    return root


def _config(detector: str, root: Path) -> str:
    return CONFIG.replace("DETECTOR", detector).replace("ROOT", str(root))


@pytest.fixture(scope="module", params=["retinanet", "fasterrcnn"])
def exported(request: pytest.FixtureRequest, coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from aeforge.cli import main

    detector = request.param
    work = tmp_path_factory.mktemp(detector)
    (work / "c.yaml").write_text(_config(detector, coco_root))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["train", str(work / "c.yaml"), "--out", str(work / "run"), "--quiet"]) == 0
    assert "det (detection): box_map50" in printed.getvalue()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", "split", str(work / "run"), "--json"]) == 0
    return detector, work / "run", json.loads(printed.getvalue())


def test_run_trains_every_task_from_the_coco_tree(exported: tuple) -> None:
    detector, run_dir, meta = exported
    card = load_run(run_dir)
    assert [t["head"] for t in card.data["tasks"]] == ["backbone", detector, "fcn"]
    metrics = card.metrics
    for key in ("cls_top1", "det_box_map50", "det_box_map50_teacher", "seg_mask_miou"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_samples"] == 8  # val2017
    det = next(t for t in meta["tasks"] if t["name"] == "det")
    assert det["detector"] == detector and det["num_classes"] == 3
    assert meta["check"]["inputs"] == "coco test images" and meta["check"]["code_mismatches_vs_torch"] == 0


def test_onnx_and_served_detections_equal_torch(exported: tuple, coco_root: Path) -> None:
    from aeforge.edge.split.multitask_serve import MultiTaskTailModel

    detector, run_dir, meta = exported
    root = Path(meta["path"])
    model = load_multitask_model(run_dir)
    config = parse_split_config(_config(detector, coco_root), source="c.yaml")
    images = load_split_data(config.data).x_test[:6]
    with torch.no_grad():
        codes = model.head(images)
    task = next(t for t in model.tasks if t.name == "det")
    with torch.no_grad():
        torch_out = [t.numpy() for t in ExportedTail(task, model.tails["det"]).eval()(codes)]
    session = ort.InferenceSession(str(root / "tail_det.onnx"), providers=["CPUExecutionProvider"])
    ort_out = session.run(list(OUTPUT_NAMES["detection"]), {"code": codes.numpy()})
    assert [o.shape for o in ort_out] == [t.shape for t in torch_out]
    assert list(ort_out[0].shape[1:]) == meta["tasks"][1]["outputs"]["boxes"]["shape"][1:]
    found = compare_task_outputs("detection", ort_out, torch_out)
    assert found["max_rel"] <= 1e-4 and found["label_mismatches"] == 0, found
    served = MultiTaskTailModel(load_split_artifact(root)).infer_tasks(codes.numpy(), ["det"])["det"]
    got = [served["boxes"], served["scores"], served["labels"]]
    assert (served["labels"] >= 0).all()  # score_threshold 0: every slot holds a detection after NMS
    expected = postprocess_detections(*torch_out, task.score_threshold, task.nms_iou, task.detections)
    found = compare_task_outputs("detection", got, list(expected))  # served (ORT + NumPy NMS) vs PyTorch + NMS
    assert found["max_rel"] <= 1e-4 and found["label_mismatches"] == 0 and found["compared_boxes"] > 0, found


def test_voc_tree_trains_detection_and_segmentation(tmp_path: Path) -> None:
    write_voc_tree(tmp_path, {"train": 24, "val": 8}, 32, 2, seed=5)
    config = parse_split_config(
        CONFIG.replace("DETECTOR", "fcos").replace("source: coco, root: ROOT, val_split: val2017",
                                                   f"source: voc, root: {tmp_path}, val_split: val"),
        source="v.yaml")
    result = train_multitask(config)
    assert result.classes == {"cls": 20, "det": 20, "seg": 21}  # VOC's 20 classes (+ background)
    assert result.metrics["test_samples"] == 8
    for name, metric in (("cls", "top1"), ("det", "box_map50"), ("seg", "mask_miou")):
        assert 0.0 <= result.metrics[f"{name}_{metric}"] <= 1.0


@pytest.mark.parametrize(("detector", "steps"), [("fcos", 30), ("retinanet", 60), ("fasterrcnn", 60)])
def test_each_detector_learns(detector: str, steps: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = load_split_data(SplitDataConfig(source="shapes", image_size=32, shapes_count=40, shapes_per_image=2,
                                           test_fraction=0.2))
    seen = dataclasses.replace(data, x_test=data.x_train[:16], y_test=data.y_train[:16],  # type: ignore[arg-type]
                               boxes_test=data.boxes_train[:16], box_labels_test=data.box_labels_train[:16],
                               masks_test=data.masks_train[:16])
    task = TaskConfig(kind="detection", head=detector).check("t")
    net = build_task_net(task, "resnet18", "layer1", (3, 32, 32), 3, 3)
    before = evaluate_task(task, net.eval(), net.back, seen, 3)
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    net.train()
    index = torch.arange(16)
    for _ in range(steps):
        loss = net.back.loss(net(seen.x_train[index]), seen.targets("train", index)["detection"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate_task(task, net.eval(), net.back, seen, 3)
    assert before < 0.1 and after > 0.6, (before, after)  # measured: fcos 0.92, retinanet 0.95, fasterrcnn 0.95
