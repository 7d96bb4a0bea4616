"""Experiment YAML files: defaults, types, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

import aeforge
from aeforge.config import ExperimentConfig, load_config, parse_config, to_dict
from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint

SHIPPED = Path(aeforge.__file__).parent / "configs" / "econt.yaml"


def test_shipped_config_is_the_default() -> None:
    assert load_config(SHIPPED) == ExperimentConfig()


def test_defaults_match_published_econt_types() -> None:
    quant = ExperimentConfig().quant
    assert quant.input.ap_type() == "ap_fixed<11,4,AP_RND_CONV,AP_SAT>"
    assert quant.weight == FixedPoint(6, 2) and quant.bias == FixedPoint(6, 2)
    assert quant.conv_activation == FixedPoint(12, 3, signed=False)
    assert quant.latent == FixedPoint(9, 1, signed=False)


def test_values_types_and_overrides() -> None:
    text = (
        "model:\n  filters: 4\n"
        "quant:\n  latent_bits: 5\n  weight: {bits: 5, scale: 0.125}\n"
        "train:\n  learning_rate: 1e-3\n"
    )
    config = parse_config(text, overrides={"train.qat_epochs": 3})
    assert config.model.filters == 4
    assert config.quant.latent == FixedPoint(5, 1, signed=False)
    assert config.quant.weight == FixedPoint(5, 2)
    assert config.train.learning_rate == 1e-3 and config.train.qat_epochs == 3
    round_trip = parse_config(__import__("yaml").safe_dump(to_dict(config)))
    assert round_trip == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  filtres: 3\n", "x.yaml:2: model.filtres: unknown key (did you mean 'filters'?)"),
        ("train:\n  batch_size: big\n", "x.yaml:2: train.batch_size: expected an integer"),
        (
            "quant:\n  weight: {bits: 6, scale: 0.3}\n",
            "x.yaml:2: quant.weight: quantizer scale 0.3 is not a power of two",
        ),
        ("quant:\n  weight: ap_fixd<6,2>\n", "x.yaml:2: quant.weight: cannot parse fixed-point type"),
        ("model:\n  decoder: conv\n", "model.decoder: expected 'float' or 'quantized'"),
        ("data:\n  val_fraction: .nan\n", "x.yaml:2: data.val_fraction: expected a finite number"),
        ("model: [1, 2\n", "x.yaml:2: invalid YAML"),
        ("model:\n  filters: 3\nmodel:\n  filters: 4\n", "x.yaml:3: model: duplicate key"),
        ("- 1\n", "the config must be a mapping"),
        ("quant:\n  latent: ap_fixed<9,1>\n", "must be unsigned"),
    ],
)
def test_errors_name_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="x.yaml")
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
