"""Split-computing experiment configuration (``model.family: split``).

A split experiment file has the sections ``model`` (backbone, split point, bottleneck), ``data``
(``digits`` from scikit-learn or ``fake`` from torchvision) and ``train`` (the three stages: teacher
training, head distillation, fine-tuning with knowledge distillation). Keys and types are checked
with the helpers of :mod:`aeforge.config`, so errors name the file, line and dotted field, e.g.
``split.yaml:5: model.split_after: 'layer9' is not a stage of resnet18; valid: stem, layer1, ...``.

This module depends on PyYAML only (no torch), so the CLI can dispatch on ``model.family`` cheaply.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aeforge.config import build_dataclass, compose_sections, read_yaml_text
from aeforge.errors import ConfigError

SPLIT_POINTS: dict[str, tuple[str, ...]] = {
    "resnet18": ("stem", "layer1", "layer2", "layer3", "layer4"),
    "resnet50": ("stem", "layer1", "layer2", "layer3", "layer4"),
    "mobilenet_v2": tuple(f"features.{i}" for i in range(19)),
    "densenet121": (
        "stem", "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "transition3",
        "denseblock4", "norm5",
    ),
}
"""Valid ``split_after`` stages of each backbone, in order (the torchvision child names; ``stem`` is the
stem convolution, its normalization, activation and pooling)."""

DATA_SOURCES = ("digits", "fake")


def check_split_point(backbone: str, split_after: str, field_name: str = "model.split_after") -> None:
    """Raise :class:`ConfigError` unless ``backbone`` is known and ``split_after`` is one of its stages."""
    if backbone not in SPLIT_POINTS:
        raise ConfigError(f"model.backbone: unknown backbone {backbone!r}; available: {', '.join(SPLIT_POINTS)}")
    stages = SPLIT_POINTS[backbone]
    if split_after not in stages:
        raise ConfigError(f"{field_name}: {split_after!r} is not a stage of {backbone}; valid: {', '.join(stages)}")
    if split_after == stages[-1]:
        raise ConfigError(f"{field_name}: {split_after!r} is the last stage of {backbone}; split earlier")


@dataclass(frozen=True)
class SplitModelConfig:
    """Backbone, split point and bottleneck (the code sent over the link)."""

    family: str = "split"
    backbone: str = "resnet18"
    split_after: str = "layer1"
    channels: int = 4  # code channels C
    bits: int = 4  # code bits B per value
    code_signed: bool = False  # False: unsigned code after a ReLU; True: signed code
    head_bits: int = 8  # bits of the head's weights and activations (the backbone part on the device)
    encoder_channels: int | None = None  # hidden width of encoder/decoder; None: half the split's channels
    weights: str | None = None  # local state_dict of the backbone (torchvision layout, same num_classes)

    def __post_init__(self) -> None:
        if self.family != "split":
            raise ConfigError(f"model.family: expected 'split' in a split config, got {self.family!r}")
        check_split_point(self.backbone, self.split_after)
        if not 1 <= self.channels <= 4096:
            raise ConfigError(f"model.channels: must be in 1..4096, got {self.channels}")
        low = 2 if self.code_signed else 1
        if not low <= self.bits <= 16:
            kind = "a signed" if self.code_signed else "an unsigned"
            raise ConfigError(f"model.bits: must be in {low}..16 for {kind} code, got {self.bits}")
        if not 3 <= self.head_bits <= 8:
            raise ConfigError(f"model.head_bits: must be in 3..8 (exact in float32 ONNX), got {self.head_bits}")
        if self.encoder_channels is not None and self.encoder_channels < 1:
            raise ConfigError(f"model.encoder_channels: must be >= 1, got {self.encoder_channels}")


@dataclass(frozen=True)
class SplitDataConfig:
    """Images: ``digits`` (scikit-learn's 1797 8x8 handwritten digits, offline) or ``fake`` (random, smoke tests)."""

    source: str = "digits"
    image_size: int = 32  # digits are upsampled (bilinear) from 8x8 and repeated to 3 channels
    test_fraction: float = 0.25
    split_seed: int = 0
    max_samples: int | None = None  # stratified subset (tests)
    fake_size: int = 256  # fake: number of images
    fake_classes: int = 10

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source: expected one of {', '.join(DATA_SOURCES)}, got {self.source!r}")
        if not 8 <= self.image_size <= 512:
            raise ConfigError(f"data.image_size: must be in 8..512, got {self.image_size}")
        if not 0.0 < self.test_fraction < 0.9:
            raise ConfigError(f"data.test_fraction: must be in (0, 0.9), got {self.test_fraction}")
        if self.max_samples is not None and self.max_samples < 20:
            raise ConfigError(f"data.max_samples: must be >= 20, got {self.max_samples}")
        if self.fake_size < 20:
            raise ConfigError(f"data.fake_size: must be >= 20, got {self.fake_size}")
        if self.fake_classes < 2:
            raise ConfigError(f"data.fake_classes: must be >= 2, got {self.fake_classes}")


@dataclass(frozen=True)
class SplitTrainConfig:
    """The three stages: 0 teacher (cross-entropy), a head distillation (MSE at the split), b fine-tuning (CE + KD)."""

    seed: int = 0
    batch_size: int = 64
    teacher_epochs: int = 15
    teacher_learning_rate: float = 1e-3
    head_epochs: int = 8
    head_learning_rate: float = 2e-3
    finetune_epochs: int = 8
    finetune_learning_rate: float = 5e-4
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the KD term; (1 - alpha) weighs the cross-entropy
    weight_decay: float = 0.0
    progress: bool = True  # tqdm bars on stderr
    checkpoints: bool = True  # keep each stage's weights in the run (checkpoints/)
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size: must be >= 1, got {self.batch_size}")
        for name in ("teacher_epochs", "head_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("teacher_learning_rate", "head_learning_rate", "finetune_learning_rate", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{name}: must be a positive number, got {value}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"train.alpha: must be in [0, 1], got {self.alpha}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay: must be >= 0, got {self.weight_decay}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads: must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class SplitExperimentConfig:
    """A whole split experiment file."""

    name: str = "split"
    model: SplitModelConfig = field(default_factory=SplitModelConfig)
    data: SplitDataConfig = field(default_factory=SplitDataConfig)
    train: SplitTrainConfig = field(default_factory=SplitTrainConfig)

    def __post_init__(self) -> None:
        if self.model.weights is None and self.train.teacher_epochs == 0:
            raise ConfigError("train.teacher_epochs: must be >= 1 when model.weights is not given "
                              "(the teacher must be trained first)")


def config_family(path: str | Path) -> str:
    """``model.family`` of an experiment file ('econt' when absent), without validating the rest."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from None
    except yaml.YAMLError:
        return "econt"  # the full loader reports the YAML error with its line
    model = raw.get("model") if isinstance(raw, dict) else None
    family = model.get("family", "econt") if isinstance(model, dict) else "econt"
    return str(family)


def load_split_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SplitExperimentConfig:
    """Read a split experiment YAML file; ``overrides`` maps dotted keys to values applied on top."""
    path = Path(path)
    return parse_split_config(read_yaml_text(path), source=str(path), overrides=overrides)


def parse_split_config(
    text: str, source: str = "<config>", overrides: dict[str, Any] | None = None
) -> SplitExperimentConfig:
    """Parse YAML text into a :class:`SplitExperimentConfig` (errors name ``source:line: field``)."""
    raw, lines = compose_sections(text, source, overrides)
    try:
        return build_dataclass(SplitExperimentConfig, raw, "", lines, source)
    except ConfigError as error:
        raise ConfigError(_field_line(str(error), source, lines)) from None


def _field_line(message: str, source: str, lines: dict[str, int]) -> str:
    """Point a ``source:LINE: section.field: ...`` message at the field's own line when it is in the file."""
    match = re.match(rf"^{re.escape(source)}(?::\d+)?: ([A-Za-z_][\w.]*): (.*)$", message, flags=re.S)
    if match and match.group(1) in lines:
        return f"{source}:{lines[match.group(1)]}: {match.group(1)}: {match.group(2)}"
    return message
