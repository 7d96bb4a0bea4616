"""Training: float pre-training, then quantization-aware fine-tuning, with early stopping.

:func:`train_experiment` is the whole recipe: load and normalise data, train the float model,
copy its weights into the Brevitas model and fine-tune it with the quantizers in the loop.
Optional (``train.augment``, ``train.schedule``, ``train.monitor``): module-symmetry augmentation,
one-cycle learning rates and early stopping on the validation EMD.
:func:`save_training_run` writes the run directory (checkpoints, history, card).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from aeforge.artifact import RunWriter, load_run
from aeforge.config import DataConfig, ExperimentConfig, TrainConfig, build_dataclass, to_dict
from aeforge.data.hgcal import geometry
from aeforge.data.hgcal.readouts import load_calq_csv, normalize_econt, split_indices
from aeforge.data.hgcal.synthetic import generate_readouts
from aeforge.errors import ArtifactError, DataError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.losses import get_loss
from aeforge.quantize.models.econt import EcontAutoencoder, build_autoencoder

CHECKPOINT_FLOAT = "model_float.pt"
CHECKPOINT_QAT = "model_qat.pt"


@dataclass(frozen=True)
class EventSplits:
    """Normalised events ``(N, 48)`` per split, plus the raw charges of the test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str


@dataclass
class EpochRecord:
    phase: str
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    val_emd: float | None = None
    learning_rate: float | None = None


@dataclass
class TrainingResult:
    """What :func:`train_experiment` produced."""

    config: ExperimentConfig
    splits: EventSplits
    float_model: EcontAutoencoder | None
    qat_model: EcontAutoencoder | None
    history: list[EpochRecord] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def best_val_loss(self) -> dict[str, float]:
        best: dict[str, float] = {}
        for record in self.history:
            best[record.phase] = min(best.get(record.phase, float("inf")), record.val_loss)
        return best


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def load_events(data: DataConfig) -> tuple[np.ndarray, str]:
    """Raw charges from the configured source; returns ``(charges, source description)``."""
    if data.source == "synthetic":
        charges = generate_readouts(data.synthetic.n_events, seed=data.synthetic.seed)
        if data.max_rows is not None:
            charges = charges[: data.max_rows]
        return charges, "synthetic"
    path = Path(data.source)
    if not path.is_file():
        raise DataError(f"data.source: {path}: file not found (use 'synthetic' for the embedded generator)")
    return load_calq_csv(path, max_rows=data.max_rows), str(path)


def prepare_splits(data: DataConfig, input_type: FixedPoint) -> EventSplits:
    """Load, normalise (ECON-T) and split events; all-zero events are left out (nothing to learn)."""
    charges, source = load_events(data)
    normalized, _ = normalize_econt(charges, input_type)
    normalized = normalized[normalized.sum(axis=1) > 0]
    if len(normalized) < 10:
        raise DataError(f"{source}: only {len(normalized)} non-empty events; need at least 10 to train")
    train_fraction = 1.0 - data.val_fraction - data.test_fraction
    train, val, test = split_indices(
        len(normalized), [train_fraction, data.val_fraction, data.test_fraction], seed=data.split_seed
    )
    return EventSplits(normalized[train], normalized[val], normalized[test], source)


def _batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, max_lr: float, total_steps: int, warmup_fraction: float = 0.3
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``None`` for ``constant``; for ``one_cycle`` torch's OneCycleLR stepped once per batch.

    Cosine ramp from ``max_lr/25`` to ``max_lr`` over ``warmup_fraction`` of ``total_steps``, then
    cosine annealing to ``max_lr/25e4`` (Adam's beta1 cycles 0.95 -> 0.85 -> 0.95 alongside).
    """
    if schedule == "constant":
        return None
    if schedule != "one_cycle":
        raise DataError(f"unknown learning-rate schedule {schedule!r}; expected 'constant' or 'one_cycle'")
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(total_steps, 2), pct_start=warmup_fraction,
        div_factor=25.0, final_div_factor=1e4,
    )


def augmentation_gathers(maps: np.ndarray | None) -> torch.Tensor | None:
    """(G, 48) cell maps -> gather indices: ``x.gather(1, g[k])`` moves an event by map ``k``."""
    if maps is None:
        return None
    return torch.as_tensor(np.stack([geometry.invert_map(m) for m in np.asarray(maps)]), dtype=torch.long)


def augment_batch(batch: torch.Tensor, gathers: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Move each event of ``batch`` (B, 48) by a symmetry drawn uniformly from ``gathers``."""
    choice = torch.as_tensor(rng.integers(len(gathers), size=len(batch)), dtype=torch.long)
    return torch.gather(batch, 1, gathers[choice])


def emd_monitor(events: np.ndarray) -> Callable[[torch.nn.Module], float]:
    """Early-stopping score: mean EMD of ``events`` reconstructed by the model (inf if undefined)."""
    from aeforge.quantize import metrics
    from aeforge.quantize.models.econt import reconstruct

    def score(model: torch.nn.Module) -> float:
        values = metrics.emd(events, reconstruct(model, events))
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else float("inf")

    return score


@torch.no_grad()
def mean_loss(model: torch.nn.Module, events: torch.Tensor, loss_fn: Callable, batch_size: int = 4096) -> float:
    model.eval()
    total = 0.0
    for index in _batches(len(events), batch_size, None):
        total += float(loss_fn(events[index], model(events[index]))) * len(index)
    return total / max(len(events), 1)


def fit(
    model: torch.nn.Module,
    train: np.ndarray,
    val: np.ndarray,
    *,
    phase: str,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    loss_name: str,
    patience: int,
    min_delta: float,
    seed: int,
    progress: bool = True,
    schedule: str = "constant",
    warmup_fraction: float = 0.3,
    augment_maps: np.ndarray | None = None,
    monitor: Callable[[torch.nn.Module], float] | None = None,
) -> list[EpochRecord]:
    """Adam with early stopping; the weights with the best score are restored at the end.

    The score is ``monitor(model)`` (e.g. :func:`emd_monitor`) after every epoch, or the
    validation loss. ``schedule``: see :func:`make_scheduler` (with ``one_cycle`` patience
    counts only after the warm-up). ``augment_maps`` (G, 48): cell maps (module symmetries);
    each training event is moved by a random one in every batch. A model with a resource cost
    (``model.quantization: hgq``, :class:`~aeforge.quantize.hgq.econt.HgqAutoencoder`) adds
    ``resource_penalty(epoch)`` to the loss; its best epoch is chosen once the cost's ramp is over
    (``cost_ramp_epochs``), scored on the validation loss plus ``selection_penalty()`` (or the monitor).
    """
    loss_fn = get_loss(loss_name)
    penalty = getattr(model, "resource_penalty", None)  # HGQ: beta(epoch) * EBOPs
    cost_ramp_epochs = int(getattr(model, "cost_ramp_epochs", 0))
    train_t = torch.as_tensor(train, dtype=torch.float32)
    val_t = torch.as_tensor(val, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps_per_epoch = -(-len(train_t) // batch_size)
    scheduler = make_scheduler(optimizer, schedule, learning_rate, epochs * steps_per_epoch, warmup_fraction)
    warmup_epochs = int(np.ceil(warmup_fraction * epochs)) if scheduler is not None else 0
    gathers = augmentation_gathers(augment_maps)
    rng = np.random.default_rng(seed)
    best_score, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    history: list[EpochRecord] = []
    bar = tqdm(range(epochs), desc=phase, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        running = 0.0
        lr = optimizer.param_groups[0]["lr"]
        for index in _batches(len(train_t), batch_size, rng):
            batch = train_t[index] if gathers is None else augment_batch(train_t[index], gathers, rng)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch, model(batch))
            if penalty is not None:
                loss = loss + penalty(epoch)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            running += float(loss.detach()) * len(index)
        val_loss = mean_loss(model, val_t, loss_fn)
        val_emd = monitor(model) if monitor is not None else None
        record = EpochRecord(phase, epoch + 1, running / len(train_t), val_loss, time.perf_counter() - start,
                             val_emd=val_emd, learning_rate=lr)
        history.append(record)
        bar.set_postfix(train=f"{record.train_loss:.4g}", val=f"{val_loss:.4g}",
                        **({} if val_emd is None else {"emd": f"{val_emd:.4g}"}))
        if not np.isfinite(val_loss):
            raise DataError(f"{phase}: validation loss became {val_loss} at epoch {epoch + 1}; lower the learning rate")
        score = val_loss if val_emd is None else val_emd
        if penalty is not None and val_emd is None:
            score += model.selection_penalty()
        if epoch < cost_ramp_epochs:  # the resource cost is still rising: not a candidate yet
            best_score, best_state = float("inf"), copy.deepcopy(model.state_dict())
        elif score < best_score - min_delta:
            best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        elif epoch + 1 > warmup_epochs:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    return history


def recipe_options(train_cfg: TrainConfig, splits: EventSplits) -> dict[str, Any]:
    """The small-sample recipe keys of ``train`` as :func:`fit` arguments."""
    maps = None
    if train_cfg.augment != "none":
        maps = geometry.symmetry_maps(reflections=train_cfg.augment == "symmetries")
    monitor = emd_monitor(splits.val[: train_cfg.emd_val_events]) if train_cfg.monitor == "emd" else None
    return {"schedule": train_cfg.schedule, "warmup_fraction": train_cfg.warmup_fraction,
            "augment_maps": maps, "monitor": monitor}


def train_experiment(
    config: ExperimentConfig, progress: bool = True, splits: EventSplits | None = None
) -> TrainingResult:
    """Float pre-training (``train.float_epochs``) then QAT fine-tuning (``train.qat_epochs``).

    ``splits`` replaces the data section of the config with events prepared by the caller.
    """
    start = time.perf_counter()
    train_cfg = config.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    seed_everything(train_cfg.seed)
    if splits is None:
        splits = prepare_splits(config.data, config.quant.input)
    common = dict(
        batch_size=train_cfg.batch_size, loss_name=train_cfg.loss, patience=train_cfg.patience,
        min_delta=train_cfg.min_delta, progress=progress, **recipe_options(train_cfg, splits),
    )
    history: list[EpochRecord] = []
    float_model = None
    if train_cfg.float_epochs > 0:
        float_model = build_autoencoder(config.model, None)
        history += fit(
            float_model, splits.train, splits.val, phase="float", epochs=train_cfg.float_epochs,
            learning_rate=train_cfg.learning_rate, seed=train_cfg.seed, **common,
        )
    qat_model = None
    if train_cfg.qat_epochs > 0:
        qat_model = build_autoencoder(config.model, config.quant)
        if float_model is not None:
            qat_model.load_state_dict(float_model.state_dict())
        history += fit(
            qat_model, splits.train, splits.val, phase="qat", epochs=train_cfg.qat_epochs,
            learning_rate=train_cfg.qat_learning_rate, seed=train_cfg.seed + 1, **common,
        )
    for model in (float_model, qat_model):
        if model is not None:
            model.eval()
    return TrainingResult(config, splits, float_model, qat_model, history, time.perf_counter() - start)


def save_checkpoints(result: TrainingResult, run: RunWriter) -> None:
    """Write the model checkpoints and the training history into a staged run."""
    if result.float_model is not None:
        torch.save(result.float_model.state_dict(), run.path(CHECKPOINT_FLOAT))
    if result.qat_model is not None:
        torch.save(result.qat_model.state_dict(), run.path(CHECKPOINT_QAT))
    run.write_json("history.json", [record.__dict__ for record in result.history])
    run.metrics["best_val_loss"] = result.best_val_loss
    run.metrics["epochs"] = {phase: sum(r.phase == phase for r in result.history) for phase in ("float", "qat")}
    run.metrics["train_wall_time_s"] = round(result.wall_time_s, 3)
    run.metrics["n_events"] = {
        "train": len(result.splits.train), "val": len(result.splits.val), "test": len(result.splits.test)
    }
    run.extra["data_source"] = result.splits.source
    encoder = (result.qat_model or result.float_model).encoder
    run.extra["fixed_point_types"] = encoder.fixed_point_types()
    from aeforge.quantize.hgq.card import training_card_metrics

    run.metrics.update(training_card_metrics(result))  # emd (test split), ebops, learned widths (hgq)


def save_training_run(result: TrainingResult, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out`` (checkpoints, history.json, config.yaml, card.json) atomically."""
    config_dict = to_dict(result.config)
    with RunWriter(out, kind="train", config=config_dict, overwrite=overwrite) as run:
        save_checkpoints(result, run)
        run.path("config.yaml").write_text(yaml.safe_dump(config_dict, sort_keys=False), encoding="utf-8")
    return Path(out)


def load_trained_model(run_dir: str | Path, which: str = "qat") -> EcontAutoencoder:
    """Rebuild a trained autoencoder from a run directory (``which``: "qat" or "float")."""
    if which not in ("qat", "float"):
        raise ArtifactError(f"unknown model {which!r}; expected 'qat' or 'float'")
    card = load_run(run_dir)
    checkpoint = Path(run_dir) / (CHECKPOINT_QAT if which == "qat" else CHECKPOINT_FLOAT)
    if not checkpoint.is_file():
        raise ArtifactError(f"{run_dir}: no trained {which} model ({checkpoint.name} missing)")
    config: ExperimentConfig = build_dataclass(ExperimentConfig, card.data["config"], "", {}, str(run_dir))
    model = build_autoencoder(config.model, config.quant if which == "qat" else None)
    state: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if callable(getattr(model, "freeze", None)):  # HGQ: the plain fixed-point twin is the trained model
        model = model.freeze()
    return model.eval()
