"""Detection tails (FCOS, RetinaNet, Faster R-CNN): torchvision's box decoding, fixed-shape candidates, a finite
loss with gradients, and an ONNX tail that matches PyTorch at another batch size than it was exported with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")

from aeforge.edge.split.config import SplitDataConfig, TaskConfig, parse_tasks  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.detectors import DET_CANDIDATES, DETECTORS, decode_boxes  # noqa: E402
from aeforge.edge.split.multitask_export import compare_task_outputs, export_tail  # noqa: E402
from aeforge.edge.split.tasks import OUTPUT_NAMES, build_task_net  # noqa: E402
from aeforge.errors import ConfigError  # noqa: E402


class _Tail(torch.nn.Module):
    """A tail without a decoder: the back alone (what ExportedTail calls ``tail.back``)."""

    def __init__(self, back: torch.nn.Module) -> None:
        super().__init__()
        self.back = back

    def forward(self, x: torch.Tensor) -> object:
        return self.back(x)


@pytest.fixture(scope="module")
def data() -> object:
    return load_split_data(SplitDataConfig(source="shapes", image_size=32, shapes_count=40, shapes_per_image=2))


def test_decode_matches_torchvision() -> None:
    from torchvision.models.detection._utils import BoxCoder

    generator = torch.Generator().manual_seed(0)
    anchors = torch.rand(50, 2, generator=generator) * 20
    anchors = torch.cat([anchors, anchors + 1 + torch.rand(50, 2, generator=generator) * 10], dim=1)
    deltas = torch.randn(50, 4, generator=generator)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        coder = BoxCoder(weights)
        expected = coder.decode_single(deltas, anchors)
        got = decode_boxes(deltas, anchors, weights, coder.bbox_xform_clip)
        torch.testing.assert_close(got, expected)
    big = torch.full((1, 4), 50.0)  # exp() clipped like torchvision's
    assert torch.isfinite(decode_boxes(big, anchors[:1], (1.0,) * 4, BoxCoder((1.0,) * 4).bbox_xform_clip)).all()


def test_config_names_the_detectors() -> None:
    tasks = parse_tasks([{"kind": "detection", "head": head, "name": f"d{i}"} for i, head in enumerate(DETECTORS)])
    assert [t.head for t in tasks] == ["fcos", "retinanet", "fasterrcnn"]
    with pytest.raises(ConfigError, match=r"model.tasks\[0\].head: a detection tail is one of fcos, retinanet, "
                                          r"fasterrcnn, got 'yolo'"):
        parse_tasks([{"kind": "detection", "head": "yolo"}])


@pytest.mark.parametrize("head", DETECTORS)
def test_loss_detect_and_onnx(head: str, data: object, tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    task = TaskConfig(kind="detection", head=head).check("t")
    net = build_task_net(task, "resnet18", "layer1", (3, 32, 32), 3, 3)
    index = torch.arange(8)
    targets = data.targets("train", index)["detection"]  # type: ignore[attr-defined]
    net.train()
    loss = net.back.loss(net(data.x_train[index]), targets)  # type: ignore[attr-defined]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.back.lateral.parameters())
    net.eval()
    features = net.front(data.x_test[:5]).detach()  # type: ignore[attr-defined]
    with torch.no_grad():
        boxes, scores, labels = net.back.detect(net.back(features))
    k = net.back.candidates
    assert k <= DET_CANDIDATES and boxes.shape == (5, k, 4) and scores.shape == (5, k) and labels.shape == (5, k)
    assert (scores[:, :-1] >= scores[:, 1:]).all() and ((scores >= 0) & (scores <= 1)).all()
    assert ((labels >= 0) & (labels < 3)).all()
    assert (boxes >= 0).all() and (boxes <= 32).all() and (boxes[..., 2:] >= boxes[..., :2]).all()
    path = tmp_path / "tail.onnx"
    export_tail(task, _Tail(net.back).eval(), tuple(features.shape[1:]), path, 18)  # exported at batch 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_out = session.run(list(OUTPUT_NAMES["detection"]), {"code": features.numpy()})
    found = compare_task_outputs("detection", ort_out, [boxes.numpy(), scores.numpy(), labels.numpy()])
    assert found["max_rel"] <= 1e-4 and found["label_mismatches"] == 0, found
    assert found["compared_boxes"] > 0 and ort_out[2].dtype == np.int64
