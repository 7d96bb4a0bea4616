"""model.family: converter: config validation (errors name the field), easy targets, augmentation, specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from aeforge.converter.config import CvEasyConfig, converter_specs, load_converter_config
from aeforge.converter.data import easy_targets, stratified_split
from aeforge.converter.models import copy_layers, forward_tap, macs, pipeline_part
from aeforge.converter.train import RandomShift
from aeforge.errors import ConfigError, DataError
from aeforge.quantize.models.sequential import SequentialQuantModel

CONFIGS = Path(__file__).resolve().parents[2] / "aeforge" / "configs"

SMALL = """\
name: small
data: {image_size: 8}
model:
  family: converter
  exit_after: pool
  heavy:
    - {kind: conv2d, filters: 4, kernel_size: 3, padding: same}
    - {kind: relu}
    - {kind: maxpool, pool_size: 2, name: pool}
    - {kind: flatten}
    - {kind: dense, units: 10}
  converter:
    - {kind: conv2d, filters: 2, kernel_size: 3, padding: same}
    - {kind: relu}
    - {kind: conv2d, filters: 1, kernel_size: 3, padding: same}
    - {kind: quant, type: 'ap_ufixed<7,1,AP_RND_CONV,AP_SAT>'}
  light:
    - {kind: maxpool, pool_size: 2}
    - {kind: flatten}
    - {kind: dense, units: 10}
"""


def _load(tmp_path: Path, text: str, **overrides: object) -> object:
    path = tmp_path / "cv.yaml"
    path.write_text(text)
    return load_converter_config(path, overrides=overrides or None)


def test_shipped_config_builds_one_pipeline_of_converter_and_light() -> None:
    config = load_converter_config(CONFIGS / "converter_digits.yaml")
    specs = converter_specs(config)
    assert specs.pipeline.layers[: specs.converter_layers] == specs.converter.layers
    assert [layer.kind for layer in specs.pipeline.layers[specs.converter_layers:]] == \
        [layer.kind for layer in specs.light.layers]
    assert specs.heavy.layers[specs.exit_index].name == "pool1"
    assert specs.pipeline.output_shape == (10,) and specs.converter.output_shape == (16, 16, 1)
    assert macs(specs.heavy) > 5 * macs(specs.pipeline)  # the point of the exercise


@pytest.mark.parametrize(("override", "field"), [
    ({"easy.method": "entropy"}, "easy.method"),
    ({"easy.threshold": 1.5}, "easy.threshold"),
    ({"easy.target": "centroid"}, "easy.target"),
    ({"data.source": "mnist"}, "data.source"),
    ({"data.image_size": 4}, "data.image_size"),
    ({"train.shift_px": 9}, "train.shift_px"),
    ({"train.ce_weight": -1}, "train.ce_weight"),
    ({"train.qat_epochs": 0}, "train.qat_epochs"),
    ({"model.exit_after": "nowhere"}, "model.exit_after"),
    ({"model.family": "autoencoder"}, "model.family"),
    ({"train.heavy_epoch": 3}, "train.heavy_epoch"),
])
def test_bad_values_name_the_field(tmp_path: Path, override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _load(tmp_path, SMALL, **override)


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match=r"cv\.yaml:\d+: train\.heavy_epoch: unknown key \(did you mean 'heavy_epochs'"):
        _load(tmp_path, SMALL + "train: {heavy_epoch: 3}\n")


def test_converter_must_end_on_the_input_type(tmp_path: Path) -> None:
    text = SMALL.replace("    - {kind: quant, type: 'ap_ufixed<7,1,AP_RND_CONV,AP_SAT>'}\n", "")
    with pytest.raises(ConfigError, match=r"cv\.yaml:\d+: model\.converter: .*must end on the input type"):
        _load(tmp_path, text)
    text = SMALL.replace("{kind: conv2d, filters: 1,", "{kind: conv2d, filters: 2,")
    with pytest.raises(ConfigError, match=r"model\.converter: must output an image of the input's shape"):
        _load(tmp_path, text)


def test_classifiers_must_end_on_ten_logits(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.light: must end on 10 class logits"):
        _load(tmp_path, SMALL[: SMALL.rindex("units: 10")] + "units: 3}\n")


def test_bad_layer_names_its_list_index_and_line(tmp_path: Path) -> None:
    text = SMALL.replace("{kind: maxpool, pool_size: 2}\n    - {kind: flatten}\n    - {kind: dense, units: 10}\n",
                         "{kind: maxpool, pool_size: 2}\n    - {kind: flaten}\n    - {kind: dense, units: 10}\n")
    with pytest.raises(ConfigError, match=r"cv\.yaml:\d+: model\.light\[1\]: unknown layer kind 'flaten'"):
        _load(tmp_path, text)


def test_names_must_be_unique_across_converter_and_light(tmp_path: Path) -> None:
    text = SMALL.replace("    - {kind: quant, type:", "    - {kind: quant, name: same, type:").replace(
        "  light:\n    - {kind: maxpool, pool_size: 2}", "  light:\n    - {kind: maxpool, pool_size: 2, name: same}")
    with pytest.raises(ConfigError, match=r"model\.light: converter and light layers are one model"):
        _load(tmp_path, text)


def test_early_exit_needs_exit_after_but_confidence_does_not(tmp_path: Path) -> None:
    text = SMALL.replace("  exit_after: pool\n", "")
    with pytest.raises(ConfigError, match=r"model\.exit_after: easy\.method early_exit needs"):
        _load(tmp_path, text)
    assert converter_specs(_load(tmp_path, text + "easy: {method: confidence}\n")).exit_index is None


def test_accumulators_wider_than_float32_are_refused(tmp_path: Path) -> None:
    text = SMALL.replace("{kind: conv2d, filters: 4, kernel_size: 3, padding: same}\n    - {kind: relu}",
                         "{kind: conv2d, filters: 4, kernel_size: 3, padding: same}\n    - {kind: relu}\n"
                         "    - {kind: conv2d, filters: 4, kernel_size: 3, padding: same, "
                         "weight: 'ap_fixed<16,2,AP_RND_CONV,AP_SAT>'}\n    - {kind: relu}")
    with pytest.raises(ConfigError, match=r"model\.heavy\[2\] \(conv2d 'conv2d_2'\): its exact accumulator"):
        _load(tmp_path, text)


def test_nearest_easy_target_is_the_image_itself_for_easy_images() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((12, 1, 4, 4)).astype(np.float32)
    labels = np.array([0, 1] * 6)
    easy = np.zeros(12, dtype=bool)
    easy[[0, 1, 4]] = True
    targets = easy_targets(images, labels, images[easy], labels[easy], CvEasyConfig(), seed=0)
    assert np.array_equal(targets[easy], images[easy])
    ones = np.flatnonzero(labels == 1)
    assert all(np.array_equal(targets[i], images[1]) for i in ones)  # the only easy image of class 1
    for i in np.flatnonzero((labels == 0) & ~easy):  # nearest of the class-0 easy images 0 and 4
        distances = [np.sum((images[i] - images[j]) ** 2) for j in (0, 4)]
        assert np.array_equal(targets[i], images[(0, 4)[int(np.argmin(distances))]])
    random_targets = easy_targets(images, labels, images[easy], labels[easy], CvEasyConfig(target="random"), 0)
    assert all(any(np.array_equal(random_targets[i], images[j]) for j in (0, 4)) for i in np.flatnonzero(labels == 0))


def test_a_class_without_easy_images_is_an_error_naming_the_threshold() -> None:
    images = np.zeros((4, 1, 2, 2), dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(DataError, match=r"easy\.threshold: no training image of class 1 is easy"):
        easy_targets(images, labels, images[:1], labels[:1], CvEasyConfig(), seed=0)


def test_stratified_split_is_disjoint_and_keeps_every_class() -> None:
    labels = np.repeat(np.arange(10), 20)
    train, val, test = stratified_split(labels, (0.1, 0.2), seed=1)
    assert len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(val, test)) == 0
    assert len(train) + len(val) + len(test) == 200
    assert all(np.sum(labels[test] == c) == 4 and np.sum(labels[val] == c) == 2 for c in range(10))


def test_random_shift_moves_image_and_target_together_with_zero_fill() -> None:
    image = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(50, 1, 1, 1)
    shifted, target = RandomShift(1, seed=0)(image, image.clone())
    assert torch.equal(shifted, target)
    assert any(not torch.equal(s, image[0]) for s in shifted)
    for sample in shifted:  # each is a translation by at most 1 pixel, zero-filled
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if torch.equal(sample[0], _translate(image[0, 0], dy, dx))]
        assert matches
    assert RandomShift(0, seed=0)(image)[0] is image


def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(x)
    h, w = x.shape
    source = x[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = source
    return out


def test_pipeline_parts_reproduce_the_pipeline(tmp_path: Path) -> None:
    specs = converter_specs(_load(tmp_path, SMALL))
    pipeline = SequentialQuantModel(specs.pipeline, quantized=True).eval()
    converter = pipeline_part(pipeline, specs.converter, 0, quantized=True)
    light = pipeline_part(pipeline, specs.light, specs.converter_layers, quantized=True)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        logits, converted = forward_tap(pipeline, x, specs.converter_layers - 1)
        assert torch.equal(converted, converter(x))
        assert torch.equal(logits, light(converted)) and torch.equal(logits, pipeline(x))
    fresh = SequentialQuantModel(specs.pipeline, quantized=True)
    copy_layers(converter, fresh)
    copy_layers(light, fresh, offset=specs.converter_layers)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), pipeline.state_dict().values(),
                                                 strict=True))


def test_macs_count_conv_and_dense(tmp_path: Path) -> None:
    specs = converter_specs(_load(tmp_path, SMALL))
    assert macs(specs.heavy) == 8 * 8 * 4 * 9 * 1 + 4 * 4 * 4 * 10
    assert macs(specs.light) == 16 * 10
