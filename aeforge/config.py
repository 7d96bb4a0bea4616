"""Experiment configuration: YAML files loaded into frozen dataclasses.

An experiment file has sections (``data``, ``model``, ``quant``, ``train``; later stages add
theirs). Every key is checked: an unknown key, a wrong type or a bad value raises
:class:`~aeforge.errors.ConfigError` naming the file, line and dotted field, e.g.
``econt.yaml:7: model.filtres: unknown key (did you mean 'filters'?)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aeforge.errors import ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint


@dataclass(frozen=True)
class SyntheticDataConfig:
    """Parameters of the embedded synthetic HGCAL generator (see ``aeforge.data.hgcal.synthetic``)."""

    n_events: int = 60_000
    seed: int = 1


@dataclass(frozen=True)
class DataConfig:
    """Where events come from and how they are split."""

    source: str = "synthetic"  # "synthetic" or a path to a CALQ CSV file
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    max_rows: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ConfigError(f"data.{name}: must be in (0, 0.5), got {value}")


@dataclass(frozen=True)
class HgqConfig:
    """Heterogeneous quantization (``model.quantization: hgq``, see :mod:`aeforge.quantize.hgq`).

    Learned fractional bits per weight (``weight_granularity: weight``) or per output channel
    (``channel``) inside the layer's container type (``quant.weight``), one learned activation width
    per layer inside ``quant.conv_activation``; ``beta`` weighs the EBOPs resource cost in the loss,
    0 for ``beta_warmup_epochs`` QAT epochs, then ramped over ``beta_ramp_epochs`` (linearly, or
    geometrically from ``beta_start`` when it is > 0).
    """

    weight_granularity: str = "weight"  # "weight" or "channel"
    activation_granularity: str = "layer"  # one type per layer: what hls4ml, QONNX and da4ml take
    init_weight_frac_bits: float | None = None  # default: the container's fractional bits
    init_activation_frac_bits: float | None = None
    bits_lr_scale: float = 8.0  # the bit widths move this much faster than the weights
    beta: float = 1e-5
    beta_start: float = 0.0
    beta_warmup_epochs: int = 2
    beta_ramp_epochs: int = 5

    def __post_init__(self) -> None:
        if self.weight_granularity not in ("weight", "channel"):
            raise ConfigError(f"model.hgq.weight_granularity: expected 'weight' or 'channel', got "
                              f"{self.weight_granularity!r}")
        if self.activation_granularity != "layer":
            raise ConfigError(f"model.hgq.activation_granularity: only 'layer' is supported (got "
                              f"{self.activation_granularity!r}): hls4ml, QONNX and the da4ml RTL take one "
                              "activation type per layer, so per-channel widths would not export bit-exactly")
        for name in ("beta", "beta_start"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.hgq.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("beta_warmup_epochs", "beta_ramp_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.hgq.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.bits_lr_scale > 0:
            raise ConfigError(f"model.hgq.bits_lr_scale: must be > 0, got {self.bits_lr_scale}")
        if self.beta_start > 0 and self.beta_start > self.beta:
            raise ConfigError(f"model.hgq.beta_start: must be <= model.hgq.beta ({self.beta}), got {self.beta_start}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the ECON-T autoencoder (encoder on detector, decoder off detector).

    ``quantization``: ``uniform`` (one type per role from ``quant``) or ``hgq`` (learned per-weight
    bit widths and a resource cost, configured by ``hgq``).
    """

    family: str = "econt"
    filters: int = 8
    kernel_size: int = 3
    stride: int = 2
    latent_dim: int = 16
    decoder: str = "float"  # "float" or "quantized"
    decoder_filters: int = 8
    quantization: str = "uniform"  # "uniform" or "hgq"
    hgq: HgqConfig = field(default_factory=HgqConfig)

    def __post_init__(self) -> None:
        if self.family != "econt":
            raise ConfigError(f"model.family: unknown model family {self.family!r}; available: 'econt'")
        if self.quantization not in ("uniform", "hgq"):
            raise ConfigError(f"model.quantization: expected 'uniform' or 'hgq', got {self.quantization!r}")
        if self.decoder not in ("float", "quantized"):
            raise ConfigError(f"model.decoder: expected 'float' or 'quantized', got {self.decoder!r}")
        for name in ("filters", "kernel_size", "stride", "latent_dim", "decoder_filters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class QuantConfig:
    """Fixed-point types of the encoder, defaults matching the published ECON-T design.

    Each field takes a type string (``ap_fixed<6,2,AP_RND_CONV,AP_SAT>``; omitted modes mean
    ``AP_TRN``/``AP_WRAP`` as in Vitis) or a mapping ``{bits, int_bits | scale, signed, rounding,
    overflow}``. ``latent_bits`` (3/5/7/9 for 2..5 e-links), when set, overrides the latent width.
    """

    input: FixedPoint = FixedPoint(11, 4)
    weight: FixedPoint = FixedPoint(6, 2)
    bias: FixedPoint = FixedPoint(6, 2)
    conv_activation: FixedPoint = FixedPoint(12, 3, signed=False)
    latent: FixedPoint = FixedPoint(9, 1, signed=False)
    latent_bits: int | None = None

    def __post_init__(self) -> None:
        if self.latent_bits is not None:
            if not 1 <= self.latent_bits <= 32:
                raise ConfigError(f"quant.latent_bits: must be in 1..32, got {self.latent_bits}")
            object.__setattr__(self, "latent", dataclasses.replace(self.latent, bits=self.latent_bits))
            object.__setattr__(self, "latent_bits", None)
        if self.latent.signed or self.conv_activation.signed:
            raise ConfigError("quant: ReLU output types (conv_activation, latent) must be unsigned")
        if not self.weight.signed or not self.bias.signed:
            raise ConfigError("quant: weight and bias types must be signed")


TRAIN_AUGMENTS = ("none", "rotations", "symmetries")
TRAIN_SCHEDULES = ("constant", "one_cycle")
TRAIN_MONITORS = ("val_loss", "emd")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: float pre-training, then quantization-aware fine-tuning.

    Recipe for small samples (defaults keep the plain recipe): ``augment`` moves every training
    event by a random module symmetry each epoch (``rotations``: the three 120° turns, ``symmetries``:
    also the reflections; see :mod:`aeforge.data.hgcal.geometry`); ``schedule: one_cycle`` ramps the
    learning rate from ``learning_rate/25`` to ``learning_rate`` over ``warmup_fraction`` of the
    steps and anneals it (cosine) to ``learning_rate/1e4``, per phase; ``monitor: emd`` early-stops
    on the mean EMD of up to ``emd_val_events`` validation events instead of the validation loss.
    With one_cycle, patience counts only after the warm-up.
    """

    seed: int = 0
    loss: str = "energy_mse"  # see aeforge.quantize.losses.LOSSES ("telescope" is the published one)
    batch_size: int = 256
    learning_rate: float = 3e-3
    float_epochs: int = 80
    qat_epochs: int = 20
    qat_learning_rate: float = 1e-3
    patience: int = 8
    min_delta: float = 0.0
    threads: int | None = None
    augment: str = "none"  # "none", "rotations" or "symmetries" (rotations + reflections)
    schedule: str = "constant"  # "constant" or "one_cycle"
    warmup_fraction: float = 0.3
    monitor: str = "val_loss"  # "val_loss" or "emd"
    emd_val_events: int = 2000

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size: must be >= 1, got {self.batch_size}")
        for name in ("learning_rate", "qat_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{name}: must be a positive number, got {value}")
        if self.float_epochs < 0 or self.qat_epochs < 0 or self.float_epochs + self.qat_epochs == 0:
            raise ConfigError("train: float_epochs and qat_epochs must be >= 0 and not both 0")
        if self.patience < 1:
            raise ConfigError(f"train.patience: must be >= 1, got {self.patience}")
        for name, allowed in (("augment", TRAIN_AUGMENTS), ("schedule", TRAIN_SCHEDULES),
                              ("monitor", TRAIN_MONITORS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 < self.warmup_fraction < 1.0:
            raise ConfigError(f"train.warmup_fraction: must be in (0, 1), got {self.warmup_fraction}")
        if self.emd_val_events < 10:
            raise ConfigError(f"train.emd_val_events: must be >= 10, got {self.emd_val_events}")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment file."""

    name: str = "econt"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(config: Any) -> Any:
    """Plain (JSON/YAML-ready) form of a config dataclass; fixed-point types become type strings."""
    if isinstance(config, FixedPoint):
        return config.ap_type()
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment YAML file; ``overrides`` maps dotted keys to values applied on top."""
    path = Path(path)
    return parse_config(read_yaml_text(path), source=str(path), overrides=overrides)


def read_yaml_text(path: Path, what: str = "config file") -> str:
    """The text of a YAML file, or a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read {what}: {error}") from None


def compose_located(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """YAML text as Python values plus the line of every mapping key and sequence item.

    ``lines`` maps dotted paths (``train.seed``, ``space.bits[1]``) to 1-based lines. An empty
    document is ``{}``. Invalid YAML and duplicate keys raise ConfigError with ``source:line``.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    lines: dict[str, int] = {}
    return ({} if node is None else _construct(node, "", lines, source)), lines


def compose_sections(
    text: str, source: str, overrides: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, int]]:
    """:func:`compose_located` of an experiment file (a mapping of sections) with dotted ``overrides`` applied."""
    raw, lines = compose_located(text, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}:1: the config must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return raw, lines


def parse_config(
    text: str, source: str = "<config>", overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Parse YAML text into an :class:`ExperimentConfig` (see :func:`load_config`)."""
    raw, lines = compose_sections(text, source, overrides)
    return build_dataclass(ExperimentConfig, raw, "", lines, source)


def _construct(node: yaml.Node, path: str, lines: dict[str, int], source: str) -> Any:
    """Turn a composed YAML node into Python values, recording the line of every mapping key."""
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            dotted = f"{path}.{key}" if path else str(key)
            if key in result:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {dotted}: duplicate key")
            lines[dotted] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, dotted, lines, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[f"{path}[{index}]"] = item.start_mark.line + 1
            items.append(_construct(item, f"{path}[{index}]", lines, source))
        return items
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = raw
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    target[parts[-1]] = value


def build_dataclass(cls: type, raw: Any, path: str, lines: dict[str, int], source: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types; errors name file:line field."""

    def where(dotted: str) -> str:
        line = lines.get(dotted) or lines.get(path)
        location = f"{source}:{line}" if line else source
        return f"{location}: {dotted or '(top level)'}"

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(path)}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{where(dotted)}: unknown key{hint}")
        values[key] = _convert(hints[key], value, dotted, lines, source, where)
    try:
        return cls(**values)
    except ConfigError as error:
        line = lines.get(path)
        prefix = f"{source}:{line}: " if line else f"{source}: "
        raise ConfigError(prefix + str(error)) from None


def _convert(hint: Any, value: Any, dotted: str, lines: dict[str, int], source: str, where: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        non_none = [o for o in options if o is not type(None)]
        return _convert(non_none[0], value, dotted, lines, source, where)
    if hint is FixedPoint:
        try:
            return FixedPoint.from_config(value, where="")
        except QuantizationError as error:
            raise ConfigError(f"{where(dotted)}: {error}") from None
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, dotted, lines, source)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where(dotted)}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where(dotted)}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where(dotted)}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where(dotted)}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where(dotted)}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as ``{dotted key: YAML value}``; a pair without ``=`` is an error."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.qat_epochs=5")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
