"""``model.bottleneck`` and ``model.beta`` in split configs, and the shipped entropic example."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeforge.edge.split.config import DEFAULT_BETA, load_split_config, parse_split_config
from aeforge.errors import ConfigError

BASE = "model: {{family: split, {model}}}\ntrain: {{teacher_epochs: 1}}\n"
CONFIGS = Path(__file__).resolve().parents[2] / "aeforge" / "configs"


def parse(model: str):
    return parse_split_config(BASE.format(model=model), source="t.yaml")


def test_default_is_the_quantized_code_and_entropic_gets_a_beta() -> None:
    assert parse("channels: 2").model.bottleneck == "quantized" and parse("channels: 2").model.beta is None
    entropic = parse("bottleneck: entropic, bits: 8").model
    assert entropic.beta == DEFAULT_BETA and entropic.code_signed is True
    assert parse("bottleneck: entropic, beta: 0.05").model.beta == 0.05


@pytest.mark.parametrize("model, message", [
    ("bottleneck: huffman", r"model\.bottleneck: expected one of quantized, entropic, got 'huffman'"),
    ("beta: 0.1", r"model\.beta: only for model\.bottleneck: entropic"),
    ("bottleneck: entropic, beta: -1", r"model\.beta: must be a finite number >= 0"),
    ("bottleneck: entropic, bits: 13", r"model\.bits: the entropic code's symbol range must be 2\.\.12 bits"),
])
def test_bad_values_are_refused_by_field(model: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(model)


def test_beta_is_a_set_override_and_the_example_config_loads() -> None:
    path = CONFIGS / "split_entropic_digits.yaml"
    config = load_split_config(path, overrides={"model.beta": 0.1})
    assert config.model.bottleneck == "entropic" and config.model.beta == 0.1
    assert load_split_config(path).model.beta == 0.003
