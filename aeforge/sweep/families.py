"""Per-family sweep adapters: what ``aeforge sweep`` needs to know about a model family, and nothing more.

A sweep's base experiment names its family (``model.family``; ``econt`` when absent). The adapter of that family
says which config dataclass the dotted sweep keys are checked against, how a plain trial config is validated,
trained and saved as a run directory, and which quality metrics a trial reports (with their direction). The
hardware cost (export, RTL, verification) is the same for every family: it goes through the run directory
(:func:`aeforge.quantize.models.boundary.hardware_model` and :mod:`aeforge.stages`).

This module imports only the config modules; torch and the trainers load inside :meth:`SweepFamily.train`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aeforge.config import ExperimentConfig, build_dataclass, load_config, to_dict
from aeforge.errors import ConfigError, DataError


@dataclass(frozen=True)
class Objective:
    """A metric a sweep can optimise: ``direction`` is ``"min"`` or ``"max"``."""

    name: str
    description: str
    direction: str = "min"


#: Hardware objectives every family reports (the cost stage is family-independent).
HARDWARE_OBJECTIVES: tuple[Objective, ...] = (
    Objective("lut", "LUTs (Yosys when synthesized, else the tool-free estimate)"),
    Objective("ff", "flip-flops (Yosys when synthesized, else the tool-free estimate)"),
    Objective("energy_j", "estimated energy per inference in J (netlist or programmable-MAC model)"),
    Objective("bytes", "latent bytes per sample (elements of the latent code x its type's bits / 8)"),
    Objective("latency_cycles", "clock cycles valid_in -> valid_out"),
    Objective("ebops", "EBOPs of the exported model: sum over constant multiplications of input bits x weight bits "
                       "(zero weights cost nothing; aeforge.quantize.hgq.ebops)"),
)


@dataclass
class Trained:
    """What a family's :meth:`SweepFamily.train` hands to its :meth:`SweepFamily.quality`."""

    result: Any
    metrics: dict[str, Any]


class SweepFamily:
    """The sweep's view of one model family (subclass per family; register with :func:`register`)."""

    name: ClassVar[str]
    quality: ClassVar[tuple[Objective, ...]]  # quality objectives of this family (then HARDWARE_OBJECTIVES)
    default_objectives: ClassVar[tuple[str, ...]]
    quality_note: ClassVar[str]  # one sentence on how the quality metrics are measured

    @property
    def config_class(self) -> type:
        """The root config dataclass whose fields the dotted sweep keys name."""
        raise NotImplementedError

    @property
    def objectives(self) -> dict[str, Objective]:
        """Every objective a sweep of this family may name, by name."""
        return {o.name: o for o in (*self.quality, *HARDWARE_OBJECTIVES)}

    def default_raw(self) -> dict[str, Any]:
        """The plain config a sweep without ``base`` starts from."""
        raise ConfigError(f"the {self.name} family has no default experiment; name one in 'base'")

    def load_base(self, path: Path) -> dict[str, Any]:
        """The plain (JSON-ready) config of a base experiment file; errors name the file and line."""
        raise NotImplementedError

    def build(self, raw: dict[str, Any], source: str = "<trial>") -> Any:
        """The validated config of a plain trial config (``source`` prefixes error messages)."""
        raise NotImplementedError

    def check_objectives(self, raw: dict[str, Any], objectives: tuple[str, ...]) -> tuple[str, str] | None:
        """``(objective, why)`` when an objective cannot be measured with this config, else None."""
        return None

    def for_trial(self, config: Any, threads: int) -> Any:
        """The config with ``threads`` torch threads (unless it names its own) and no progress bars."""
        return dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                     threads=config.train.threads or threads))

    def train(self, config: Any, run_dir: Path) -> Trained:
        """Train, save the run in ``run_dir`` (a run directory every stage takes); metrics incl. ``bytes``."""
        raise NotImplementedError

    def quality_metrics(self, trained: Trained, max_events: int) -> dict[str, Any]:
        """Quality metrics of the trained model (``max_events``: samples to average over, where it applies)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------ ECON-T
class EcontSweep(SweepFamily):
    """The ECON-T encoder (:class:`~aeforge.config.ExperimentConfig`): quality is the EMD on held-out events."""

    name = "econt"
    quality = (
        Objective("emd", "mean Earth Mover's Distance on held-out events (quality; lower is better)"),
        Objective("val_loss", "best validation loss of the QAT model"),
    )
    default_objectives = ("emd", "lut", "energy_j", "bytes")
    quality_note = "mean EMD on held-out synthetic events of each trial (lower is better)"

    @property
    def config_class(self) -> type:
        return ExperimentConfig

    def default_raw(self) -> dict[str, Any]:
        return to_dict(ExperimentConfig())

    def load_base(self, path: Path) -> dict[str, Any]:
        return to_dict(load_config(path))

    def build(self, raw: dict[str, Any], source: str = "<trial>") -> ExperimentConfig:
        return build_dataclass(ExperimentConfig, raw, "", {}, source)

    def train(self, config: ExperimentConfig, run_dir: Path) -> Trained:
        from aeforge.quantize.train import save_training_run, train_experiment

        trained = train_experiment(config, progress=False)
        save_training_run(trained, run_dir)
        best = trained.best_val_loss
        latent = config.quant.latent
        return Trained(trained, {
            "val_loss": best.get("qat", best.get("float")),
            "bytes": latent.bits * config.model.latent_dim / 8,
            "latent_type": latent.ap_type(), "weight_type": config.quant.weight.ap_type(),
            "train_wall_s": round(trained.wall_time_s, 3),
        })

    def quality_metrics(self, trained: Trained, max_events: int) -> dict[str, Any]:
        from aeforge.quantize import metrics as qmetrics
        from aeforge.quantize.models.econt import reconstruct

        result = trained.result
        model = result.qat_model or result.float_model
        events = result.splits.test[:max_events]
        summary = qmetrics.emd_summary(qmetrics.emd(events, reconstruct(model, events)))
        return {"emd": summary.mean, "emd_median": summary.median, "emd_events": len(events)}


# ------------------------------------------------------------------------------------ autoencoder
class AutoencoderSweep(SweepFamily):
    """``model.family: autoencoder`` (:mod:`aeforge.quantize.autoencoder`): reconstruction MSE, and the anomaly
    AUC where the test split is labelled."""

    name = "autoencoder"
    quality = (
        Objective("mse", "reconstruction MSE of the QAT autoencoder on the held-out test split (lower is better)"),
        Objective("auc", "ROC AUC of the reconstruction error as anomaly score on the labelled test split "
                         "(higher is better)", direction="max"),
        Objective("val_loss", "best validation loss of the QAT model"),
    )
    default_objectives = ("mse", "lut", "energy_j", "bytes")
    quality_note = ("reconstruction MSE (and anomaly AUC, where labelled) of the QAT autoencoder on its held-out "
                    "test split")

    @property
    def config_class(self) -> type:
        from aeforge.quantize.autoencoder import AutoencoderConfig

        return AutoencoderConfig

    def load_base(self, path: Path) -> dict[str, Any]:
        from aeforge.quantize.autoencoder import load_autoencoder_config

        return to_dict(load_autoencoder_config(path))

    def build(self, raw: dict[str, Any], source: str = "<trial>") -> Any:
        from aeforge.quantize import autoencoder

        config = build_dataclass(autoencoder.AutoencoderConfig, raw, "", {}, source)
        try:
            autoencoder.validate_layers(config)  # the layer lists with the default types filled in
            shape = _generated_shape(config.data)
            if shape is not None:  # shapes and the score's types, where the sample shape is known without data
                autoencoder.autoencoder_specs(config, shape)
        except (ConfigError, DataError) as error:
            message = str(error).removeprefix("<config>: ")
            raise ConfigError(f"{source}: {message}" if source else message) from None
        return config

    def check_objectives(self, raw: dict[str, Any], objectives: tuple[str, ...]) -> tuple[str, str] | None:
        data = raw.get("data") or {}
        labelled = (data.get("source") == "generated" and data.get("generator") == "machine_sound"
                    and (data.get("anomaly_fraction") or 0) > 0)
        if "auc" in objectives and not labelled:
            return "auc", ("needs a labelled test split: data.source: generated, data.generator: machine_sound and "
                           "data.anomaly_fraction > 0 (a user's data file has no anomaly labels)")
        return None

    def for_trial(self, config: Any, threads: int) -> Any:
        config = super().for_trial(config, threads)
        return dataclasses.replace(config, train=dataclasses.replace(config.train, progress=False))

    def train(self, config: Any, run_dir: Path) -> Trained:
        from aeforge.quantize.autoencoder import save_autoencoder_run, train_autoencoder

        result = train_autoencoder(config, progress=False)
        save_autoencoder_run(result, run_dir, overwrite=True)
        qat = [r["val_loss"] for r in result.history if r.get("phase") == "qat"]
        shape, latent = latent_of(result)
        elements = 1
        for size in shape:
            elements *= size
        return Trained(result, {
            "val_loss": min(qat) if qat else None,
            "bytes": elements * latent.bits / 8,
            "latent_type": latent.ap_type(), "latent_shape": list(shape),
            "weight_type": config.quant.weight.ap_type(), "hardware": config.model.hardware,
            "train_wall_s": round(result.wall_time_s, 3),
        })

    def quality_metrics(self, trained: Trained, max_events: int) -> dict[str, Any]:
        metrics = trained.result.metrics
        out: dict[str, Any] = {"mse": metrics["mse"]["qat"], "mse_float": metrics["mse"]["float"],
                               "test_samples": len(trained.result.data.test)}
        if "auc" in metrics:
            out.update(auc=metrics["auc"]["qat"], auc_float=metrics["auc"]["float"])
        return out


def latent_of(result: Any) -> tuple[tuple[int, ...], Any]:
    """Channels-last shape and fixed-point type of the encoder's output (the latent code) of a trained autoencoder."""
    n_encoder = len(result.config.model.encoder)
    return result.full_spec.output_shapes()[n_encoder - 1], result.full_spec.output_types()[n_encoder - 1]


def _generated_shape(data: Any) -> tuple[int, ...] | None:
    """One sample's channels-first shape when the data are generated in code (None for a data file)."""
    if data.source != "generated":
        return None
    from aeforge.data.arrays import generate

    return tuple(generate(data.generator, 1, seed=0)[0].shape[1:])


# ------------------------------------------------------------------------------------ registry
FAMILIES: dict[str, SweepFamily] = {}


def register(family: SweepFamily) -> SweepFamily:
    """Make ``family`` sweepable under its name."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> SweepFamily:
    """The adapter of family ``name``; ConfigError naming the sweepable ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family {name!r} cannot be swept; sweepable families: "
                          f"{', '.join(FAMILIES)}") from None


def family_of(raw: dict[str, Any]) -> str:
    """``model.family`` of a plain config (``econt`` when absent)."""
    model = raw.get("model") if isinstance(raw, dict) else None
    family = model.get("family", "econt") if isinstance(model, dict) else "econt"
    return str(family)


register(EcontSweep())
register(AutoencoderSweep())
