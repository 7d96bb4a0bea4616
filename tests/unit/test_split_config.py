"""Split experiment configs: the shipped example loads; errors name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeforge.edge.split.config import config_family, load_split_config, parse_split_config
from aeforge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "aeforge" / "configs" / "split_resnet18_digits.yaml"


def test_example_config_loads() -> None:
    config = load_split_config(EXAMPLE)
    assert (config.model.backbone, config.model.split_after, config.model.channels) == ("resnet18", "layer1", 4)
    assert config.data.source == "digits"
    assert config_family(EXAMPLE) == "split"


def test_overrides_apply() -> None:
    config = load_split_config(EXAMPLE, overrides={"model.bits": 2, "train.head_epochs": 1})
    assert config.model.bits == 2 and config.train.head_epochs == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  family: split\n  split_after: layer9\n", "s.yaml:3: model.split_after: 'layer9' is not a stage"),
        ("model:\n  backbone: vgg16\n", "s.yaml:2: model.backbone: unknown backbone 'vgg16'"),
        ("model:\n  family: econt\n", "s.yaml:2: model.family: expected 'split'"),
        ("train:\n  seed: 0\n  alpah: 0.3\n", "s.yaml:3: train.alpah: unknown key (did you mean 'alpha'?)"),
        ("model:\n  channels: four\n", "s.yaml:2: model.channels: expected an integer"),
        ("data:\n  source: cifar10\n", "s.yaml:2: data.source: expected one of digits, fake"),
        ("train:\n\n  alpha: 1.5\n", "s.yaml:3: train.alpha: must be in [0, 1]"),
        ("model:\n  bits: 0\n", "s.yaml:2: model.bits: must be in 2..16"),
        ("model: [1, 2]\n", "s.yaml:1: model: expected a mapping"),
        ("model:\n  bits: [\n", "s.yaml:3: invalid YAML"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_split_config(text, source="s.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_split_point_error_lists_valid_stages() -> None:
    with pytest.raises(ConfigError, match=r"valid: features\.0, features\.1"):
        parse_split_config("model:\n  backbone: mobilenet_v2\n  split_after: layer1\n", source="s.yaml")


def test_untrained_teacher_refused() -> None:
    with pytest.raises(ConfigError, match=r"teacher_epochs: must be >= 1 when model\.weights is not given"):
        parse_split_config("train:\n  teacher_epochs: 0\n", source="s.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_split_config(tmp_path / "nope.yaml")
