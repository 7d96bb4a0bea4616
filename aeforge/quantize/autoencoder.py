"""``model.family: autoencoder``: an autoencoder defined in YAML, trained on the user's array file.

An experiment file has the sections ``data`` (an ``.npy``/``.npz``/CSV/HDF5 file, or a dataset
generated in code), ``model`` (``input_type``, ``encoder:`` and ``decoder:`` layer lists in the
layer-spec form of :mod:`aeforge.quantize.models.spec`, and ``hardware``), ``quant`` (the default
types of layers that name none) and ``train``. Training is float pre-training then QAT
fine-tuning (as for ECON-T); the run holds the hardware model (``model.json`` + ``model.pt``, the
``autoencoder`` family of :mod:`aeforge.quantize.models.families`) and a verification sample of
held-out rows, so every stage (export, hls, rtl, verify, predict, bench, deploy) takes it.

``model.hardware``: ``encoder`` (default: the latent code is the output), ``autoencoder`` (the
reconstruction) or ``score`` (the reconstruction error ``sum((x - x_hat)**2)`` computed on chip, as
anomaly-detection triggers do; the decoder must end on the input type).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.config import build_dataclass, compose_sections, read_yaml_text
from aeforge.errors import ConfigError, DataError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.spec import InputSpec, SequentialSpec, SqErrorSpec, layer_from_dict

HARDWARE = ("encoder", "autoencoder", "score")
NORMALIZATIONS = ("none", "minmax", "standard")
AUTOENCODER_SPEC = "autoencoder.json"
CHECKPOINT_FLOAT = "autoencoder_float.pt"
CHECKPOINT_QAT = "autoencoder_qat.pt"
MAX_VERIFICATION_ROWS = 4096


@dataclass(frozen=True)
class AeDataConfig:
    """Where the samples come from and how they are split and scaled."""

    source: str = "generated"  # a .npy/.npz/.csv/.h5 path, or "generated"
    key: str | None = None  # .npz / HDF5 array name
    columns: str | None = None  # CSV columns: "start:stop" or "a,b,c"
    shape: list | None = None  # one sample's channels-first shape, to reshape flat rows
    generator: str = "machine_sound"  # source: generated -> machine_sound | shapes
    n_samples: int = 20000
    anomaly_fraction: float = 0.5  # of the generated test split (machine_sound)
    normalize: str = "none"  # none | minmax | standard (fitted on the training split)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"data.normalize: expected one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ConfigError(f"data.{name}: must be in (0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.anomaly_fraction < 1.0:
            raise ConfigError(f"data.anomaly_fraction: must be in [0, 1), got {self.anomaly_fraction}")
        if self.n_samples < 20:
            raise ConfigError(f"data.n_samples: must be >= 20, got {self.n_samples}")


@dataclass(frozen=True)
class AeModelConfig:
    """The layers (spec dicts; types may be left to ``quant``) and what becomes hardware."""

    family: str = "autoencoder"
    input_type: FixedPoint = FixedPoint(10, 4)
    encoder: list = field(default_factory=list)
    decoder: list = field(default_factory=list)
    hardware: str = "encoder"

    def __post_init__(self) -> None:
        if self.family != "autoencoder":
            raise ConfigError(f"model.family: expected 'autoencoder', got {self.family!r}")
        if self.hardware not in HARDWARE:
            raise ConfigError(f"model.hardware: expected one of {', '.join(HARDWARE)}, got {self.hardware!r}")
        if not self.encoder or not isinstance(self.encoder, list):
            raise ConfigError("model.encoder: a non-empty list of layers is required")
        if not self.decoder or not isinstance(self.decoder, list):
            raise ConfigError("model.decoder: a non-empty list of layers is required")


@dataclass(frozen=True)
class AeQuantConfig:
    """Default types of layers that name none (weights/biases of dense and conv, relu and quant outputs)."""

    weight: FixedPoint = FixedPoint(6, 2)
    bias: FixedPoint = FixedPoint(10, 4)
    activation: FixedPoint = FixedPoint(8, 3, signed=False)
    quant: FixedPoint = FixedPoint(10, 4)


@dataclass(frozen=True)
class AeTrainConfig:
    """Float pre-training then QAT fine-tuning, Adam with early stopping on the validation loss.

    ``sparsity`` > 0 prunes that fraction of each dense/conv layer's weights by magnitude after float
    training, fine-tunes the masked float model for ``prune_epochs``, and keeps the masks fixed through
    QAT, so the hardware (da4ml RTL) has no adders for the pruned weights.
    """

    seed: int = 0
    batch_size: int = 256
    float_epochs: int = 30
    qat_epochs: int = 10
    learning_rate: float = 1e-3
    qat_learning_rate: float = 3e-4
    loss: str = "mse"
    patience: int = 8
    min_delta: float = 0.0
    threads: int | None = None
    progress: bool = True
    sparsity: float = 0.0  # fraction of each dense/conv layer's weights pruned (by magnitude) before QAT
    prune_epochs: int = 10  # masked float fine-tuning after pruning (only with sparsity > 0)

    def __post_init__(self) -> None:
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise ConfigError(f"train.sparsity: must be a number in [0, 1), got {self.sparsity!r}")
        if isinstance(self.prune_epochs, bool) or not isinstance(self.prune_epochs, int) or self.prune_epochs < 0:
            raise ConfigError(f"train.prune_epochs: must be a non-negative integer, got {self.prune_epochs!r}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size: must be >= 1, got {self.batch_size}")
        if self.float_epochs < 0 or self.qat_epochs < 1:
            raise ConfigError("train: float_epochs must be >= 0 and qat_epochs >= 1")
        for name in ("learning_rate", "qat_learning_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"train.{name}: must be a positive number, got {getattr(self, name)}")


@dataclass(frozen=True)
class AutoencoderConfig:
    """A whole ``model.family: autoencoder`` experiment file."""

    name: str = "autoencoder"
    data: AeDataConfig = field(default_factory=AeDataConfig)
    model: AeModelConfig = field(default_factory=AeModelConfig)
    quant: AeQuantConfig = field(default_factory=AeQuantConfig)
    train: AeTrainConfig = field(default_factory=AeTrainConfig)


def load_autoencoder_config(path: str | Path, overrides: dict[str, Any] | None = None) -> AutoencoderConfig:
    """Read an autoencoder experiment file; errors name ``file:line: field``."""
    path = Path(path)
    raw, lines = compose_sections(read_yaml_text(path), str(path), overrides)
    config = build_dataclass(AutoencoderConfig, raw, "", lines, str(path))
    validate_layers(config, str(path), lines)  # validates the layer lists now, with their lines
    return config


# ------------------------------------------------------------------------------------ specs
def fill_layer_defaults(raw: Any, defaults: Any, where: str) -> dict[str, Any]:
    """A layer mapping with the ``quant:`` section's types filled in where the layer names none.

    ``defaults`` has ``weight``, ``bias``, ``activation`` and ``quant`` FixedPoint types (the ``quant``
    section of an autoencoder or converter config).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'kind', got {raw!r}")
    layer = dict(raw)
    kind = layer.get("kind")
    if kind in ("dense", "conv1d", "conv2d"):
        layer.setdefault("weight", defaults.weight.ap_type())
        if layer.get("bias", True) is True:
            layer["bias"] = defaults.bias.ap_type()
        elif layer.get("bias") is False:
            layer["bias"] = None
    elif kind == "relu":
        layer.setdefault("type", defaults.activation.ap_type())
    elif kind == "quant":
        layer.setdefault("type", defaults.quant.ap_type())
    return layer


def validate_layers(config: AutoencoderConfig, source: str = "<config>", lines: dict[str, int] | None = None) -> tuple:
    """The encoder and decoder layer specs, defaults filled in (ConfigError naming ``source:line`` and the layer)."""
    lines = lines or {}
    out = []
    for part in ("encoder", "decoder"):
        for index, raw in enumerate(getattr(config.model, part)):
            where = f"model.{part}[{index}]"
            line = lines.get(where)
            try:
                out.append(layer_from_dict(fill_layer_defaults(raw, config.quant, where), where))
            except ConfigError as error:
                raise ConfigError(f"{source}:{line}: {error}" if line else f"{source}: {error}") from None
    return tuple(out)


def autoencoder_specs(config: AutoencoderConfig, input_shape: tuple[int, ...]) -> tuple[SequentialSpec, SequentialSpec]:
    """(the whole autoencoder, the hardware artifact) for one channels-first sample shape."""
    layers = validate_layers(config)
    channels_last = (*input_shape[1:], input_shape[0]) if len(input_shape) > 1 else tuple(input_shape)
    inp = InputSpec(shape=channels_last, type=config.model.input_type)
    full = SequentialSpec(input=inp, layers=layers)
    if full.output_shape != channels_last:
        raise ConfigError(f"model.decoder: reconstructs shape {full.output_shape} (channels-last), the input is "
                          f"{channels_last}")
    if config.model.hardware == "encoder":
        return full, SequentialSpec(input=inp, layers=layers[: len(config.model.encoder)])
    if config.model.hardware == "autoencoder":
        return full, full
    if full.output_type != config.model.input_type:
        raise ConfigError(
            f"model.hardware: score compares the reconstruction with the input, so the decoder must end on the input "
            f"type: add {{kind: quant, type: '{config.model.input_type.ap_type()}'}} (it ends on "
            f"{full.output_type.ap_type()})"
        )
    return full, SequentialSpec(input=inp, layers=(*layers, SqErrorSpec(name="score", source="input")))


# ------------------------------------------------------------------------------------ data
@dataclass
class AeData:
    """Normalised samples per split (channels-first) and, when known, anomaly labels of the test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray | None
    normalization: dict[str, Any]
    source: str


def prepare_data(data: AeDataConfig) -> AeData:
    """Load or generate the samples, split them, and fit the normalisation on the training split."""
    from aeforge.data.arrays import generate, load_array
    from aeforge.data.hgcal.readouts import split_indices

    labels = None
    if data.source == "generated":
        samples, _ = generate(data.generator, data.n_samples, seed=data.seed)
        source = f"generated:{data.generator}"
    else:
        samples = load_array(data.source, key=data.key, columns=data.columns,
                             shape=tuple(data.shape) if data.shape else None)
        source = str(data.source)
    if data.max_samples is not None:
        samples = samples[: data.max_samples]
    if len(samples) < 20:
        raise DataError(f"{source}: {len(samples)} samples; at least 20 are needed to train and evaluate")
    fractions = [1 - data.val_fraction - data.test_fraction, data.val_fraction, data.test_fraction]
    train_index, val_index, test_index = split_indices(len(samples), fractions, seed=data.seed)
    train, val, test = samples[train_index], samples[val_index], samples[test_index]
    if data.source == "generated" and data.anomaly_fraction > 0 and data.generator == "machine_sound":
        from aeforge.data.arrays import generate

        test, labels = generate(data.generator, len(test), seed=data.seed + 1, anomaly_fraction=data.anomaly_fraction)
    normalization: dict[str, Any] = {"method": data.normalize}
    if data.normalize == "minmax":
        low, high = train.min(axis=0), train.max(axis=0)
        scale = np.where(high > low, high - low, 1.0)
        normalization.update(offset=low.tolist(), scale=scale.tolist())
        train, val, test = ((x - low) / scale for x in (train, val, test))
    elif data.normalize == "standard":
        mean, std = train.mean(axis=0), train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        normalization.update(offset=mean.tolist(), scale=std.tolist())
        train, val, test = ((x - mean) / std for x in (train, val, test))
    return AeData(train, val, test, labels, normalization, source)


# ------------------------------------------------------------------------------------ training
@dataclass
class AeResult:
    config: AutoencoderConfig
    full_spec: SequentialSpec
    hardware_spec: SequentialSpec
    float_model: Any
    qat_model: Any
    data: AeData
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    wall_time_s: float


def _loss(name: str) -> Any:
    from aeforge.quantize.losses import get_loss

    inner = get_loss(name)

    def loss(target: Any, output: Any, reduction: str = "mean") -> Any:
        return inner(target.flatten(1), output.flatten(1), reduction=reduction)
    return loss


def train_autoencoder(config: AutoencoderConfig, progress: bool = True) -> AeResult:
    """Float pre-training then QAT fine-tuning of the autoencoder on the configured data."""
    import torch

    from aeforge.quantize import losses
    from aeforge.quantize.magnitude_pruning import WeightMasks, magnitude_masks, weight_density
    from aeforge.quantize.models.sequential import SequentialQuantModel
    from aeforge.quantize.train import fit, seed_everything

    start = time.perf_counter()
    seed_everything(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = prepare_data(config.data)
    full_spec, hardware_spec = autoencoder_specs(config, tuple(data.train.shape[1:]))
    name = f"autoencoder_{config.train.loss}"
    losses.LOSSES[name] = _loss(config.train.loss)
    common = {"batch_size": config.train.batch_size, "loss_name": name, "patience": config.train.patience,
              "min_delta": config.train.min_delta, "seed": config.train.seed,
              "progress": progress and config.train.progress}
    float_model = SequentialQuantModel(full_spec, quantized=False)
    history = []
    if config.train.float_epochs:
        history += fit(float_model, data.train, data.val, phase="float", epochs=config.train.float_epochs,
                       learning_rate=config.train.learning_rate, **common)
    masks = WeightMasks(magnitude_masks(float_model, config.train.sparsity) if config.train.sparsity else {})
    if config.train.sparsity and config.train.prune_epochs:
        with masks.attached(float_model):
            history += fit(float_model, data.train, data.val, phase="prune", epochs=config.train.prune_epochs,
                           learning_rate=config.train.learning_rate, **common)
    qat_model = SequentialQuantModel(full_spec, quantized=True)
    missing = qat_model.load_state_dict(float_model.state_dict(), strict=False).missing_keys
    if any(key.endswith((".weight", ".bias")) for key in missing):
        raise ConfigError(f"internal: float and QAT models differ in parameters: {missing}")  # pragma: no cover
    with masks.attached(qat_model):  # pruned weights stay zero through QAT (no masks: nothing is pruned)
        history += fit(qat_model, data.train, data.val, phase="qat", epochs=config.train.qat_epochs,
                       learning_rate=config.train.qat_learning_rate, **common)
    del losses.LOSSES[name]
    metrics = {"mse": {"float": _mse(float_model, data.test), "qat": _mse(qat_model, data.test)},
               "weight_density": {"qat": round(weight_density(qat_model), 6)}}
    if data.test_labels is not None and 0 < data.test_labels.sum() < len(data.test_labels):
        metrics["auc"] = {which: _auc(_errors(model, data.test), data.test_labels)
                          for which, model in (("float", float_model), ("qat", qat_model))}
    records = [dataclasses.asdict(r) for r in history]
    return AeResult(config, full_spec, hardware_spec, float_model.eval(), qat_model.eval(), data, records, metrics,
                    time.perf_counter() - start)


def _errors(model: Any, samples: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(samples, dtype=torch.float32)
        return ((model(x) - x) ** 2).flatten(1).mean(dim=1).double().numpy()


def _mse(model: Any, samples: np.ndarray) -> float:
    return float(np.mean(_errors(model, samples)))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability that an anomaly scores above a normal sample; ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    positives = labels.astype(bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def hardware_module(result: AeResult) -> Any:
    """The hardware artifact with the trained QAT weights (a prefix of the autoencoder's layers)."""
    from aeforge.quantize.models.sequential import SequentialQuantModel

    model = SequentialQuantModel(result.hardware_spec)
    state = model.state_dict()
    trained = result.qat_model.state_dict()
    state.update({key: value for key, value in trained.items() if key in state})
    model.load_state_dict(state)
    return model.eval()


def save_autoencoder_run(result: AeResult, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run: hardware model, whole autoencoder, verification sample, history and card."""
    import torch

    from aeforge.artifact import RunWriter, write_json_atomic
    from aeforge.config import to_dict
    from aeforge.quantize.models.families import IMPORT_SPEC, IMPORT_WEIGHTS, VERIFICATION_SAMPLE
    from aeforge.quantize.models.sequential import save_sequential

    hardware = hardware_module(result)
    input_type = result.config.model.input_type
    rows = result.data.test[:MAX_VERIFICATION_ROWS]
    with RunWriter(out, kind="train", config=to_dict(result.config), overwrite=overwrite) as run:
        run.extra["family"] = "autoencoder"
        save_sequential(hardware, run.path(IMPORT_SPEC), run.path(IMPORT_WEIGHTS))
        write_json_atomic(run.path(AUTOENCODER_SPEC), result.full_spec.to_dict())
        torch.save(result.qat_model.state_dict(), run.path(CHECKPOINT_QAT))
        torch.save(result.float_model.state_dict(), run.path(CHECKPOINT_FLOAT))
        np.save(run.path(VERIFICATION_SAMPLE), input_type.quantize(rows).astype(np.float32))
        run.write_json("history.json", result.history)
        run.metrics.update(result.metrics)
        run.metrics["wall_time_s"] = round(result.wall_time_s, 2)
        run.extra["data"] = {"source": result.data.source, "normalization": result.data.normalization,
                             "samples": {"train": len(result.data.train), "val": len(result.data.val),
                                         "test": len(result.data.test)}}
        run.extra["hardware"] = {"artifact": result.config.model.hardware,
                                 "output_type": result.hardware_spec.output_type.ap_type(),
                                 "fixed_point_types": hardware.fixed_point_types()}
    return Path(out)

