"""A split experiment trained from an ImageFolder tree on disk, starting from a 1000-class checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")
pytest.importorskip("brevitas")
pytest.importorskip("onnxruntime")
image_module = pytest.importorskip("PIL.Image")
datasets = pytest.importorskip("sklearn.datasets")

from aeforge.artifact import load_run  # noqa: E402
from aeforge.edge.split.config import load_split_config  # noqa: E402
from aeforge.edge.split.export import export_split  # noqa: E402
from aeforge.edge.split.train import load_split_model, save_split_run, train_split_experiment  # noqa: E402
from aeforge.errors import ConfigError  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES = 3


def digits_tree(root: Path) -> tuple[Path, Path]:
    """``root/{train,val}/digit_N/*.png``: the first 8 (train) and next 2 (val) digits of classes 0..2, RGB."""
    digits = datasets.load_digits()
    for label in range(CLASSES):
        images = digits.images[digits.target == label]
        for split, chosen in (("train", images[:8]), ("val", images[8:10])):
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True)
            for i, image in enumerate(chosen):
                grey = np.kron(image * 255.0 / 16.0, np.ones((2, 2))).astype(np.uint8)  # 16x16
                image_module.fromarray(grey, "L").convert("RGB").save(folder / f"{i}.png")
    return root / "train", root / "val"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    train_dir, val_dir = digits_tree(root)
    torch.manual_seed(0)
    weights = root / "resnet18-random-1000.pth"  # torchvision layout, 1000 classes, random weights
    torch.save(models.resnet18(weights=None, num_classes=1000).state_dict(), weights)
    config_path = root / "split.yaml"
    config_path.write_text(f"""
name: imagefolder
model: {{family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 3, encoder_channels: 8,
        weights: {weights}, new_head: true, num_classes: {CLASSES}}}
data: {{source: imagefolder, train_dir: {train_dir}, val_dir: {val_dir}, image_size: 16, resize: 18,
       train_crop: random, workers: 0, eval_batch_size: 3}}
train: {{batch_size: 24, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 3,
        checkpoints: false}}
""")
    config = load_split_config(config_path)
    result = train_split_experiment(config)
    out = root / "run"
    save_split_run(result, out)
    return out


def test_run_records_data_and_weights(run_dir: Path) -> None:
    card = load_run(run_dir)
    metrics = card.metrics
    assert metrics["test_samples"] == 2 * CLASSES and metrics["input_shape"] == [3, 16, 16]
    assert card.data["split"]["num_classes"] == CLASSES
    weights = card.data["weights"]
    assert weights["file_classes"] == 1000 and weights["model_classes"] == CLASSES
    assert weights["reinitialised"] == ["fc.bias", "fc.weight"] and weights["loaded_tensors"] == 120
    history = json.loads((run_dir / "history.json").read_text())
    assert [len(history[k]) for k in ("teacher", "head_distillation", "finetune")] == [1, 1, 1]


def test_bytes_per_sample_are_exact_at_batch_1(run_dir: Path) -> None:
    from aeforge.edge.split.codec import encode_code
    from aeforge.edge.split.data import load_split_data
    from aeforge.edge.split.train import load_run_config

    model = load_split_model(run_dir)
    data = load_split_data(load_run_config(run_dir).data)
    spec = model.code_spec
    sizes = {"none": [], "zlib": []}
    with torch.no_grad():
        for i in range(len(data.x_test)):  # one image a request, as batch-1 serving sends it
            codes = torch.round(model.head(data.x_test[i:i + 1]) / spec.lsb).to(torch.int64).numpy()
            for name, found in sizes.items():
                found.append(len(encode_code(codes, spec.bits, spec.lsb, spec.signed, compression=name)))
    metrics = load_run(run_dir).metrics
    for name, found in sizes.items():
        assert metrics[f"code_wire_bytes_per_sample_{name}"] == sum(found) / len(found)


def test_export_checks_on_the_val_images(run_dir: Path) -> None:
    result = export_split(run_dir, check_samples=4)
    assert result["check"]["inputs"] == "imagefolder test images" and result["check"]["samples"] == 4
    assert result["check"]["code_mismatches_vs_torch"] == 0 and result["num_classes"] == CLASSES


def test_num_classes_must_match_the_tree(run_dir: Path) -> None:
    from aeforge.edge.split.train import load_run_config

    config = load_run_config(run_dir)
    wrong = type(config)(config.name, type(config.model)(**{**config.model.__dict__, "num_classes": 10}),
                         config.data, config.train)
    with pytest.raises(ConfigError, match=r"model\.num_classes: 10, but data\.source imagefolder has 3 classes"):
        train_split_experiment(wrong)
