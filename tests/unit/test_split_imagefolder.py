"""Split computing on ImageFolder trees and local torchvision checkpoints: config keys, data, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeforge.edge.split.config import load_split_config, parse_split_config
from aeforge.errors import ArtifactError, ConfigError, DataError

IMAGEFOLDER = "data:\n  source: imagefolder\n  train_dir: TRAIN\n"


def write_tree(root: Path, classes: tuple[str, ...] = ("a", "b", "c"), per_class: int = 4, size: int = 10) -> Path:
    """``root/CLASS/i.png``: RGB images whose colour depends on the class (seeded)."""
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size + 2, 3)) + 60 * label
            image_module.fromarray(pixels.astype(np.uint8), "RGB").save(root / name / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------ config
def test_imagefolder_keys_parse() -> None:
    text = IMAGEFOLDER + ("  val_dir: VAL\n  image_size: 224\n  resize: 256\n  train_crop: random\n  workers: 4\n"
                          "  eval_batch_size: 1\n  mean: [0, 0, 0]\n  std: [1, 1, 1]\n"
                          "model:\n  weights: r18.pth\n  new_head: true\n  num_classes: 10\n")
    config = parse_split_config(text, source="s.yaml")
    data = config.data
    assert (data.source, data.train_dir, data.val_dir, data.resize, data.train_crop) == (
        "imagefolder", "TRAIN", "VAL", 256, "random")
    assert data.mean == [0.0, 0.0, 0.0] and data.workers == 4 and data.eval_batch_size == 1
    assert (config.model.weights, config.model.new_head, config.model.num_classes) == ("r18.pth", True, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:\n  source: imagefolder\n", "s.yaml:1: data.train_dir: required for data.source imagefolder"),
        ("data:\n  train_dir: x\n", "s.yaml:2: data.train_dir: only for data.source imagefolder"),
        (IMAGEFOLDER + "  train_crop: corner\n", "s.yaml:4: data.train_crop: expected one of random_resized"),
        (IMAGEFOLDER + "  std: [1, 0, 1]\n", "s.yaml:4: data.std: must be positive"),
        (IMAGEFOLDER + "  mean: 0.5\n", "s.yaml:4: data.mean: expected a list of 3 numbers"),
        (IMAGEFOLDER + "  image_size: 64\n  resize: 32\n", "s.yaml:5: data.resize: must be in 64..2048"),
        (IMAGEFOLDER + "  workers: -1\n", "s.yaml:4: data.workers: must be >= 0"),
        ("model:\n  new_head: true\n", "s.yaml:2: model.new_head: needs model.weights"),
        ("model:\n  num_classes: 1\n", "s.yaml:2: model.num_classes: must be >= 2"),
        ("model:\n  weights: w.pt\n  new_head: true\ntrain:\n  teacher_epochs: 0\n",
         "s.yaml:5: train.teacher_epochs: must be >= 1 with model.new_head"),
    ],
)
def test_config_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_split_config(text, source="s.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_weight_enum_names_the_file_to_fetch() -> None:
    pytest.importorskip("torchvision")
    with pytest.raises(ConfigError) as info:
        parse_split_config("model:\n  backbone: resnet18\n  weights: ResNet18_Weights.IMAGENET1K_V1\n",
                           source="s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml:3: model.weights: 'ResNet18_Weights.IMAGENET1K_V1' is a torchvision weight")
    assert "resnet18-f37072fd.pth" in message and "set model.weights to that path" in message
    with pytest.raises(ConfigError, match=r"mobilenet_v2-7ebf99e0\.pth.*for mobilenet_v2, but model.backbone is "
                                          r"resnet18"):
        parse_split_config("model:\n  weights: MobileNet_V2_Weights.IMAGENET1K_V2\n", source="s.yaml")
    with pytest.raises(ConfigError, match=r"densenet121-a639ec97\.pth"):  # a bare member: the backbone's enum
        parse_split_config("model:\n  backbone: densenet121\n  split_after: stem\n  weights: DEFAULT\n",
                           source="s.yaml")


def test_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "aeforge" / "configs" / "split_resnet18_imagefolder.yaml"
    config = load_split_config(example, check_paths=False)
    assert (config.data.source, config.data.image_size, config.data.resize) == ("imagefolder", 224, 256)
    assert config.model.new_head and config.model.weights.endswith("resnet18-f37072fd.pth")


def test_load_split_config_checks_paths(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"model:\n  weights: {tmp_path / 'absent.pt'}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:2: model\.weights: file not found: .*absent\.pt"):
        load_split_config(path)
    path.write_text(f"data:\n  source: imagefolder\n  train_dir: {tmp_path}\n  val_dir: {tmp_path / 'nope'}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:4: data\.val_dir: not a directory: .*nope"):
        load_split_config(path)
    assert load_split_config(path, check_paths=False).data.val_dir == str(tmp_path / "nope")


# ------------------------------------------------------------------------------------ data
def test_imagefolder_data_with_val_dir(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from aeforge.edge.split.data import LazyImages, load_split_data

    train, val = write_tree(tmp_path / "train"), write_tree(tmp_path / "val", per_class=2)
    config = parse_split_config(f"data:\n  source: imagefolder\n  train_dir: {train}\n  val_dir: {val}\n"
                                "  image_size: 8\n  resize: 9\n", source="s.yaml").data
    data = load_split_data(config)
    assert data.classes == ["a", "b", "c"] and data.num_classes == 3
    assert isinstance(data.x_train, LazyImages) and data.x_train.shape == (12, 3, 8, 8)
    assert data.image_shape == (3, 8, 8) and len(data.x_test) == 6
    assert data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    first = data.x_test[:2]
    assert first.shape == (2, 3, 8, 8) and first.dtype == torch.float32
    assert torch.equal(data.x_test[torch.tensor([1])], first[1:2])  # evaluation transform is deterministic
    batches = list(data.test_batches(4))
    assert [len(y) for _, y in batches] == [4, 2] and torch.equal(batches[0][0][:2], first)
    seen = torch.cat([y for _, y in data.train_batches(5, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == sorted(data.y_train.tolist())
    assert data.calibration_images(3).shape == (3, 3, 8, 8)


def test_dataloader_workers_are_seeded(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from aeforge.edge.split.data import load_split_data

    train = write_tree(tmp_path / "train", per_class=3)
    text = f"data:\n  source: imagefolder\n  train_dir: {train}\n  image_size: 8\n  test_fraction: 0.34\n"
    serial = load_split_data(parse_split_config(text, source="s.yaml").data)
    parallel = load_split_data(parse_split_config(text + "  workers: 1\n", source="s.yaml").data)
    assert parallel.workers == 1
    assert torch.equal(torch.cat([x for x, _ in parallel.test_batches(2)]), serial.x_test[:])
    epochs = [list(parallel.train_batches(4, torch.Generator().manual_seed(1))) for _ in range(2)]
    for (x1, y1), (x2, y2) in zip(*epochs, strict=True):  # random crops and flips repeat given the seed
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_imagefolder_split_without_val_dir_and_max_samples(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    from aeforge.edge.split.data import load_split_data

    train = write_tree(tmp_path / "train", per_class=8)
    config = parse_split_config(f"data:\n  source: imagefolder\n  train_dir: {train}\n  image_size: 8\n"
                                "  test_fraction: 0.25\n  max_samples: 20\n", source="s.yaml").data
    data = load_split_data(config)
    assert len(data.x_train) + len(data.x_test) == 20 and len(data.x_test) == 5
    assert len(set(data.x_train.indices) & set(data.x_test.indices)) == 0
    assert set(data.y_test.tolist()) == {0, 1, 2}


def test_imagefolder_class_mismatch_and_bad_tree(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    from aeforge.edge.split.data import load_split_data

    train = write_tree(tmp_path / "train")
    val = write_tree(tmp_path / "val", classes=("a", "b", "d"), per_class=1)
    config = parse_split_config(f"data:\n  source: imagefolder\n  train_dir: {train}\n  val_dir: {val}\n",
                                source="s.yaml").data
    with pytest.raises(DataError, match=r"data\.val_dir: .*only in train_dir: \['c'\]; only in val_dir: \['d'\]"):
        load_split_data(config)
    (tmp_path / "empty" / "x").mkdir(parents=True)
    config = parse_split_config(f"data:\n  source: imagefolder\n  train_dir: {tmp_path / 'empty'}\n",
                                source="s.yaml").data
    with pytest.raises(DataError, match=r"data\.train_dir: .*not an ImageFolder tree"):
        load_split_data(config)


# ------------------------------------------------------------------------------------ weights
@pytest.fixture(scope="module")
def imagenet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1000-class resnet18 state dict with random weights, without ``num_batches_tracked`` (as torchvision's)."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(7)
    state = {k: v for k, v in models.resnet18(weights=None, num_classes=1000).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(state, path)
    return path


def test_new_head_loads_backbone_and_reinitialises_classifier(imagenet_checkpoint: Path) -> None:
    torch = pytest.importorskip("torch")
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights

    state = torch.load(imagenet_checkpoint, weights_only=True)
    model = build_backbone("resnet18", 10)
    fresh_fc = model.fc.weight.detach().clone()
    record = load_backbone_weights(model, imagenet_checkpoint, new_head=True)
    assert record["file_classes"] == 1000 and record["model_classes"] == 10
    assert record["reinitialised"] == ["fc.bias", "fc.weight"] and record["loaded_tensors"] == len(state) - 2
    assert len(record["sha256"]) == 64
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(model.fc.weight, fresh_fc)


def test_class_count_mismatch_suggests_new_head(imagenet_checkpoint: Path) -> None:
    pytest.importorskip("torch")
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights

    with pytest.raises(ArtifactError) as info:
        load_backbone_weights(build_backbone("resnet18", 10), imagenet_checkpoint)
    message = str(info.value)
    assert message.startswith(f"model.weights: {imagenet_checkpoint}: does not match ResNet")
    assert "fc.weight (file [1000, 512] vs model [10, 512])" in message and "model.new_head: true" in message
    record = load_backbone_weights(build_backbone("resnet18", 1000), imagenet_checkpoint)  # 1000 classes as is
    assert record["reinitialised"] == [] and record["file_classes"] == 1000


def test_wrong_backbone_names_missing_and_unexpected_keys(imagenet_checkpoint: Path) -> None:
    pytest.importorskip("torch")
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights

    with pytest.raises(ArtifactError) as info:
        load_backbone_weights(build_backbone("mobilenet_v2", 10), imagenet_checkpoint, new_head=True)
    message = str(info.value)
    assert "missing keys: classifier.1.bias" not in message  # the replaced head may be absent
    assert "missing keys: features.0.0.weight" in message and "unexpected keys: bn1.bias" in message


def test_densenet_old_key_names_are_renamed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights

    source = build_backbone("densenet121", 3)
    old = {k.replace("denselayer1.norm1.", "denselayer1.norm.1."): v for k, v in source.state_dict().items()}
    assert any(".norm.1." in k for k in old)
    path = tmp_path / "densenet.pth"
    torch.save(old, path)
    target = build_backbone("densenet121", 3)
    record = load_backbone_weights(target, path)
    assert record["renamed_keys"] > 0
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
