"""``model.family: converter`` experiment files: frozen dataclasses, loading and layer checks.

A converter experiment has the sections ``data`` (scikit-learn's digits, upscaled), ``model``
(three layer lists in the layer-spec form of :mod:`aeforge.quantize.models.spec`: ``heavy``,
``converter``, ``light``; ``exit_after`` names the heavy layer the early exit taps), ``easy``
(how the heavy classifier labels images easy/hard and which easy image is each image's target),
``quant`` (default types of layers that name none) and ``train``. Errors name ``file:line: field``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeforge.config import build_dataclass, compose_sections, read_yaml_text
from aeforge.errors import ConfigError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.autoencoder import fill_layer_defaults
from aeforge.quantize.models.spec import (
    WEIGHT_LAYERS,
    InputSpec,
    LayerSpec,
    QuantSpec,
    SequentialSpec,
    layer_from_dict,
)

SOURCES = ("digits",)
EASY_METHODS = ("early_exit", "confidence")
EASY_TARGETS = ("nearest", "random")
PARTS = ("heavy", "converter", "light")
ORT_EXACT_BITS = 24  # float32 mantissa: a conv accumulator wider than this is not exact in onnxruntime


@dataclass(frozen=True)
class CvDataConfig:
    """The images: scikit-learn's bundled digits (8x8, 17 grey levels), upscaled bilinearly to ``image_size``."""

    source: str = "digits"
    image_size: int = 16
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"data.source: expected one of {', '.join(SOURCES)}, got {self.source!r}")
        if not 8 <= self.image_size <= 64:
            raise ConfigError(f"data.image_size: must be in 8..64 (digits are 8x8), got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ConfigError(f"data.{name}: must be in (0, 0.5), got {getattr(self, name)}")


@dataclass(frozen=True)
class CvModelConfig:
    """Heavy classifier (with an early exit), converting autoencoder and light classifier, as layer lists."""

    family: str = "converter"
    input_type: FixedPoint = FixedPoint(7, 1, signed=False)
    heavy: list = field(default_factory=list)
    exit_after: str | None = None  # heavy layer name the early-exit head taps (easy.method: early_exit)
    converter: list = field(default_factory=list)
    light: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.family != "converter":
            raise ConfigError(f"model.family: expected 'converter', got {self.family!r}")
        for part in PARTS:
            value = getattr(self, part)
            if not value or not isinstance(value, list):
                raise ConfigError(f"model.{part}: a non-empty list of layers is required")


@dataclass(frozen=True)
class CvEasyConfig:
    """Easy/hard labelling of the training images and the converter's targets.

    ``early_exit``: an image is easy when the heavy classifier's early exit (a dense head on the
    output of ``model.exit_after``, trained BranchyNet-style with the main exit) classifies it
    correctly with a softmax confidence >= ``threshold`` (CBNet's criterion); ``confidence``: the
    same test on the heavy classifier's final output. ``target``: each image maps to the
    ``nearest`` (pixel L2) easy image of its class, so easy images map to themselves, or to a
    ``random`` easy image of its class (drawn once, seeded).
    """

    method: str = "early_exit"
    threshold: float = 0.9
    target: str = "nearest"

    def __post_init__(self) -> None:
        if self.method not in EASY_METHODS:
            raise ConfigError(f"easy.method: expected one of {', '.join(EASY_METHODS)}, got {self.method!r}")
        if self.target not in EASY_TARGETS:
            raise ConfigError(f"easy.target: expected one of {', '.join(EASY_TARGETS)}, got {self.target!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"easy.threshold: must be in (0, 1), got {self.threshold}")


@dataclass(frozen=True)
class CvQuantConfig:
    """Default types of layers that name none; the defaults fit TensorRT INT8 (signed <= 8 bits,
    unsigned <= 7 bits) and keep conv accumulators within float32's 24 bits (exact in onnxruntime)."""

    weight: FixedPoint = FixedPoint(7, 1)
    bias: FixedPoint = FixedPoint(8, 2)
    activation: FixedPoint = FixedPoint(7, 3, signed=False)
    quant: FixedPoint = FixedPoint(8, 3)


@dataclass(frozen=True)
class CvTrainConfig:
    """Epochs of each phase (Adam, early stopping on the validation loss) and the converter's loss.

    Phases: heavy (float, with its early exit) then heavy QAT; light alone (float) then QAT;
    converter (float, reconstruction of the easy targets); joint float and QAT fine-tuning of
    converter + light with ``reconstruction MSE + ce_weight * cross-entropy``. ``ce_weight: 0``
    and ``finetune_light: false`` give CBNet's recipe (the converter learns the easy targets only,
    the light classifier is the one trained alone). ``shift_px`` > 0 translates each training image
    (and its target alike) by a random offset of up to that many pixels, every phase.
    """

    seed: int = 0
    batch_size: int = 64
    heavy_epochs: int = 30
    light_epochs: int = 30
    converter_epochs: int = 20
    joint_epochs: int = 20
    qat_epochs: int = 8
    learning_rate: float = 3e-3
    qat_learning_rate: float = 5e-4
    exit_weight: float = 0.5
    ce_weight: float = 0.05
    finetune_light: bool = True
    shift_px: int = 0  # augmentation: random translations of up to this many pixels (zero fill)
    patience: int = 8
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size: must be >= 1, got {self.batch_size}")
        for name in ("heavy_epochs", "light_epochs", "qat_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("converter_epochs", "joint_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.shift_px <= 4:
            raise ConfigError(f"train.shift_px: must be in 0..4, got {self.shift_px}")
        if self.patience < 1:
            raise ConfigError(f"train.patience: must be >= 1, got {self.patience}")
        for name in ("learning_rate", "qat_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{name}: must be a positive number, got {value}")
        for name in ("exit_weight", "ce_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"train.{name}: must be a number >= 0, got {value}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads: must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class ConverterConfig:
    """A whole ``model.family: converter`` experiment file."""

    name: str = "converter"
    data: CvDataConfig = field(default_factory=CvDataConfig)
    model: CvModelConfig = field(default_factory=CvModelConfig)
    easy: CvEasyConfig = field(default_factory=CvEasyConfig)
    quant: CvQuantConfig = field(default_factory=CvQuantConfig)
    train: CvTrainConfig = field(default_factory=CvTrainConfig)


@dataclass(frozen=True)
class ConverterSpecs:
    """The layer specs of one experiment: each classifier, the converter and the deployed pipeline."""

    heavy: SequentialSpec
    light: SequentialSpec
    converter: SequentialSpec
    pipeline: SequentialSpec  # converter layers then light layers: the one model that is deployed
    exit_index: int | None  # heavy layer index the early exit taps

    @property
    def converter_layers(self) -> int:
        return len(self.converter.layers)


def load_converter_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ConverterConfig:
    """Read a converter experiment file and check its layers; errors name ``file:line: field``."""
    path = Path(path)
    raw, lines = compose_sections(read_yaml_text(path), str(path), overrides)
    config = build_dataclass(ConverterConfig, raw, "", lines, str(path))
    converter_specs(config, str(path), lines)
    return config


# ------------------------------------------------------------------------------------ specs
def _layers(config: ConverterConfig, part: str, located: Any) -> tuple[LayerSpec, ...]:
    out = []
    for index, raw in enumerate(getattr(config.model, part)):
        where = f"model.{part}[{index}]"
        with located(where):
            out.append(layer_from_dict(fill_layer_defaults(raw, config.quant, where), where))
    return tuple(out)


def converter_specs(config: ConverterConfig, source: str = "<config>",
                    lines: dict[str, int] | None = None) -> ConverterSpecs:
    """Check the three layer lists against each other and build their specs (ConfigError naming the field)."""
    import contextlib

    lines = lines or {}

    @contextlib.contextmanager
    def located(where: str) -> Any:
        try:
            yield
        except ConfigError as error:
            line = lines.get(where) or lines.get(where.split("[")[0])
            raise ConfigError(f"{source}:{line}: {error}" if line else f"{source}: {error}") from None

    size = config.data.image_size
    image = InputSpec(shape=(size, size, 1), type=config.model.input_type)
    parts = {part: _layers(config, part, located) for part in PARTS}
    specs = {}
    for part in PARTS:
        with located(f"model.{part}"):
            try:
                specs[part] = SequentialSpec(input=image, layers=parts[part])
            except ConfigError as error:
                raise ConfigError(f"model.{part}: {error}") from None
            _check_accumulators(specs[part], part)
    for part in ("heavy", "light"):
        with located(f"model.{part}"):
            if specs[part].output_shape != (10,):
                raise ConfigError(f"model.{part}: must end on 10 class logits (a dense layer of 10 units), "
                                  f"ends on shape {specs[part].output_shape}")
    with located("model.converter"):
        converter = specs["converter"]
        if converter.output_shape != image.shape:
            raise ConfigError(f"model.converter: must output an image of the input's shape {image.shape} "
                              f"(channels-last), outputs {converter.output_shape}")
        if not isinstance(converter.layers[-1], QuantSpec) or converter.output_type != config.model.input_type:
            raise ConfigError(f"model.converter: the converted image feeds the light classifier, so the converter "
                              f"must end on the input type: add {{kind: quant, type: "
                              f"'{config.model.input_type.ap_type()}'}} as its last layer")
    with located("model.light"):
        try:
            pipeline = SequentialSpec(input=image, layers=(*parts["converter"], *parts["light"]))
        except ConfigError as error:
            raise ConfigError(f"model.light: converter and light layers are one model, so layer names must be "
                              f"unique across both: {error}") from None
    exit_index = None
    with located("model.exit_after"):
        names = [layer.name for layer in specs["heavy"].layers]
        if config.model.exit_after is not None:
            if config.model.exit_after not in names[:-1]:
                raise ConfigError(f"model.exit_after: {config.model.exit_after!r} is not a heavy layer before the "
                                  f"last; heavy layers: {', '.join(names)}")
            exit_index = names.index(config.model.exit_after)
        elif config.easy.method == "early_exit":
            raise ConfigError("model.exit_after: easy.method early_exit needs the heavy layer the early exit taps "
                              f"(one of {', '.join(names[:-1])})")
    return ConverterSpecs(specs["heavy"], specs["light"], specs["converter"], pipeline, exit_index)


def _check_accumulators(spec: SequentialSpec, part: str) -> None:
    """Refuse conv layers whose exact accumulator is wider than float32 holds (onnxruntime would round)."""
    for index, (layer, out_type) in enumerate(zip(spec.layers, spec.output_types(), strict=True)):
        if isinstance(layer, WEIGHT_LAYERS) and layer.kind != "dense" and out_type.bits > ORT_EXACT_BITS:
            raise ConfigError(f"model.{part}[{index}] ({layer.kind} {layer.name!r}): its exact accumulator "
                              f"{out_type.ap_type()} needs {out_type.bits} bits; onnxruntime's float32 Conv is exact "
                              f"only up to {ORT_EXACT_BITS}: use fewer filters in the layer before, or narrower "
                              "weights or activations")
