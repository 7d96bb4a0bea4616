"""Bottleneck injection: shapes per backbone, a fixed-point head with codes on the grid, weights loading."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")

import brevitas.nn as qnn  # noqa: E402
from torch import nn  # noqa: E402

from aeforge.edge.split.backbones import build_backbone, split_backbone  # noqa: E402
from aeforge.edge.split.bottleneck import QPoint, build_split_model, load_split_state  # noqa: E402
from aeforge.errors import ArtifactError, ConfigError  # noqa: E402

CASES = [
    ("resnet18", "layer1", (64, 8, 8)),
    ("resnet50", "layer1", (256, 8, 8)),
    ("mobilenet_v2", "features.3", (24, 8, 8)),
    ("densenet121", "transition1", (128, 4, 4)),
]


@pytest.mark.parametrize(("backbone", "split_after", "feature_shape"), CASES)
def test_injection_keeps_shapes_and_quantizes_head(backbone: str, split_after: str, feature_shape: tuple) -> None:
    torch.manual_seed(0)
    model = build_split_model(backbone, split_after, channels=3, bits=3, num_classes=7, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        code = model.head(x)
        logits = model(x)
        teacher = model.teacher_features(x)
        decoded = model.decoded_features(x)
    assert model.spec.feature_shape == feature_shape
    assert tuple(teacher.shape) == (2, *feature_shape) == tuple(decoded.shape)
    assert tuple(code.shape) == (2, *model.code_shape) == (2, 3, *feature_shape[1:])
    assert tuple(logits.shape) == (2, 7)
    # the code: 3-bit unsigned, power-of-two scale, integer codes in range
    spec = model.code_spec
    assert spec.bits == 3 and not spec.signed and spec.lsb == 2.0 ** -spec.frac_bits
    codes = code / spec.lsb
    assert torch.equal(codes, codes.round())
    assert codes.min() >= spec.min_code and codes.max() <= spec.max_code
    # every convolution of the head is a Brevitas fixed-point one, every activation point calibrated
    convs = [m for m in model.head.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, qnn.QuantConv2d) for m in convs)
    points = [m for m in model.head.modules() if isinstance(m, QPoint)]
    assert points and all(p.spec is not None for p in points)
    # the teacher is not part of the student's state
    assert not any(k.startswith("_teacher") for k in model.state_dict())


def test_quantized_front_tracks_the_float_teacher() -> None:
    torch.manual_seed(0)
    model = build_split_model("resnet18", "layer2", channels=4, bits=4, num_classes=10, input_size=32).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        front = model.head.front(model.head.input_quant(x))
        reference = model.teacher_features(x)
    assert float((front - reference).norm() / reference.norm()) < 0.1


def test_signed_code_and_small_input() -> None:
    torch.manual_seed(0)
    model = build_split_model("resnet18", "stem", channels=2, bits=5, num_classes=3, input_size=16, code_signed=True)
    code = model.head(torch.randn(2, 3, 16, 16))
    assert model.code_spec.signed and tuple(code.shape) == (2, 2, 4, 4)
    assert code.min() < 0


def test_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="too small for densenet121"):
        build_split_model("densenet121", "transition3", input_size=8)


def test_unknown_split_point_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="valid: stem, layer1, layer2, layer3, layer4"):
        build_split_model("resnet18", "layer7")


def test_state_round_trip_keeps_types() -> None:
    torch.manual_seed(0)
    model = build_split_model("mobilenet_v2", "features.2", channels=2, bits=2, num_classes=4, input_size=32).eval()
    copy = load_split_state(model.spec, model.state_dict(), model.teacher).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(copy(x), model(x))
    assert copy.code_spec == model.code_spec


def test_weights_load_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_backbone("resnet18", 10)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = build_split_model("resnet18", "layer1", weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[key], value)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.weights: file not found: .*absent.pt"):
        build_split_model("resnet18", "layer1", weights=str(tmp_path / "absent.pt"))


def test_mismatched_weights_name_the_keys(tmp_path: Path) -> None:
    state = build_backbone("resnet18", 10).state_dict()
    state["fc.weight"] = torch.zeros(1000, 512)
    state["extra.weight"] = torch.zeros(1)
    del state["layer1.0.conv1.weight"]
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ArtifactError) as info:
        build_split_model("resnet18", "layer1", weights=str(path))
    message = str(info.value)
    assert "missing keys: layer1.0.conv1.weight" in message
    assert "unexpected keys: extra.weight" in message
    assert "fc.weight (file [1000, 512] vs model [10, 512])" in message


def test_split_backbone_views_share_modules() -> None:
    model = build_backbone("densenet121", 5).eval()
    view = split_backbone(model, "densenet121", "denseblock1")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(view(x), model(x), atol=1e-5)
    assert view.front.stem.conv0 is model.features.conv0
