"""Training of a converter experiment (CBNet-style) and its run directory.

Recipe (:func:`train_converter`):

1. **heavy** classifier, float, with its early exit (BranchyNet: ``CE(main) + exit_weight *
   CE(exit)``), then QAT fine-tuning of the main path;
2. **easy/hard** labels of the training images from the float heavy classifier (see
   :class:`~aeforge.converter.config.CvEasyConfig`) and each image's target, an easy image of its class;
3. **light** classifier alone (the baseline), float then QAT;
4. **converter**, float, trained to reproduce the targets (MSE);
5. **converter + light** as one model, initialised from 3 and 4, fine-tuned float then QAT on
   ``MSE(converted, target) + ce_weight * CE(logits)`` (light frozen unless ``finetune_light``).

The run (:func:`save_converter_run`) holds the pipeline as its hardware model (``model.json`` +
``model.pt``, family ``converter``), and the heavy and light classifiers as runs of their own in
``heavy/`` and ``light/`` (listed in the card's ``baselines``), so that ``aeforge bench``, ``deploy``
and ``export onnx`` take each of them alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from aeforge.converter.compare import TEST_LABELS
from aeforge.converter.config import ConverterConfig, ConverterSpecs, converter_specs
from aeforge.converter.data import ImageSplits, easy_targets, load_images
from aeforge.converter.models import ExitHead, copy_layers, forward_tap, macs, parameter_count, pipeline_part
from aeforge.errors import DataError
from aeforge.quantize.models.sequential import SequentialQuantModel

BASELINES = {"heavy": "heavy", "light": "light"}  # role -> sub-run directory
EASY_FILE = "easy.npz"
MAX_VERIFICATION_ROWS = 4096


@dataclass
class ConverterResult:
    """What :func:`train_converter` produced (models in eval mode)."""

    config: ConverterConfig
    specs: ConverterSpecs
    data: ImageSplits
    heavy: SequentialQuantModel
    light: SequentialQuantModel
    pipeline: SequentialQuantModel
    pipeline_float: SequentialQuantModel
    exit_head: ExitHead | None
    easy_train: np.ndarray  # bool mask of the training images
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    wall_time_s: float


# ------------------------------------------------------------------------------------ loops
def _fit(modules: Sequence[nn.Module], params: list[nn.Parameter], batch_loss: Callable[[torch.Tensor], torch.Tensor],
         val_loss: Callable[[], float], *, n_train: int, phase: str, epochs: int, learning_rate: float,
         batch_size: int, patience: int, seed: int, progress: bool) -> list[dict[str, Any]]:
    """Adam over ``params`` with early stopping on ``val_loss``; the best state of ``modules`` is restored."""
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    best, best_states, stale = float("inf"), [copy.deepcopy(m.state_dict()) for m in modules], 0
    history: list[dict[str, Any]] = []
    bar = tqdm(range(epochs), desc=phase, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        for module in modules:
            module.train()
        running = 0.0
        for index in torch.randperm(n_train, generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(index)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(index)
        for module in modules:
            module.eval()
        with torch.no_grad():
            loss_val = val_loss()
        history.append({"phase": phase, "epoch": epoch + 1, "train_loss": running / n_train, "val_loss": loss_val,
                        "seconds": round(time.perf_counter() - start, 3)})
        bar.set_postfix(train=f"{running / n_train:.4g}", val=f"{loss_val:.4g}")
        if not np.isfinite(loss_val):
            raise DataError(f"{phase}: validation loss became {loss_val} at epoch {epoch + 1}; lower the learning rate")
        if loss_val < best:
            best, best_states, stale = loss_val, [copy.deepcopy(m.state_dict()) for m in modules], 0
        else:
            stale += 1
            if stale >= patience:
                break
    bar.close()
    for module, state in zip(modules, best_states, strict=True):
        module.load_state_dict(state)
        module.eval()
    return history


class RandomShift:
    """Training augmentation: translate each sample by a random ``(dy, dx)`` in ``[-max_px, max_px]``
    (zero fill); the tensors given in one call (an image and its target) move together."""

    def __init__(self, max_px: int, seed: int) -> None:
        self.max_px = max_px
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def __call__(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.max_px
        if m == 0:
            return images
        offsets = torch.randint(-m, m + 1, (len(images[0]), 2), generator=self.generator)
        height, width = images[0].shape[-2:]
        padded = [nn.functional.pad(image, (m, m, m, m)) for image in images]
        out = [torch.empty_like(image) for image in images]
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                chosen = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
                for source, target in zip(padded, out, strict=True):
                    target[chosen] = source[chosen, :, m - dy:m - dy + height, m - dx:m - dx + width]
        return tuple(out)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``images`` (eval mode, in batches)."""
    model.eval()
    x = torch.as_tensor(images, dtype=torch.float32)
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (a fraction)."""
    return float((predict_logits(model, images).argmax(dim=1).numpy() == labels).mean())


# ------------------------------------------------------------------------------------ phases
def _train_classifier(spec: Any, data: ImageSplits, config: ConverterConfig, name: str, epochs: int,
                      tap: int | None = None) -> tuple[SequentialQuantModel, SequentialQuantModel,
                                                       ExitHead | None, list[dict[str, Any]]]:
    """Float training (with an early exit at ``tap``) then QAT; returns (float, QAT, exit head, history)."""
    train = config.train
    x_train, y_train = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    x_val, y_val = torch.as_tensor(data.x_val), torch.as_tensor(data.y_val)
    ce = nn.functional.cross_entropy
    shift = RandomShift(train.shift_px, train.seed)
    model = SequentialQuantModel(spec, quantized=False)
    head = None
    if tap is not None:
        features = int(np.prod(spec.output_shapes()[tap]))
        head = ExitHead(features)

    def loss_on(net: SequentialQuantModel, x: torch.Tensor, y: torch.Tensor, with_exit: bool) -> torch.Tensor:
        logits, tapped = forward_tap(net, x, tap if with_exit else None)
        loss = ce(logits, y)
        if with_exit and head is not None:
            loss = loss + train.exit_weight * ce(head(tapped), y)
        return loss

    common = {"n_train": len(x_train), "batch_size": train.batch_size, "patience": train.patience,
              "seed": train.seed, "progress": train.progress}
    modules = [model] + ([head] if head is not None else [])
    params = [p for m in modules for p in m.parameters()]
    history = _fit(modules, params, lambda i: loss_on(model, *shift(x_train[i]), y_train[i], True),
                   lambda: float(loss_on(model, x_val, y_val, True)), phase=f"{name} float", epochs=epochs,
                   learning_rate=train.learning_rate, **common)
    qat = SequentialQuantModel(spec, quantized=True)
    qat.load_state_dict(model.state_dict())
    history += _fit([qat], list(qat.parameters()), lambda i: loss_on(qat, *shift(x_train[i]), y_train[i], False),
                    lambda: float(loss_on(qat, x_val, y_val, False)), phase=f"{name} qat", epochs=train.qat_epochs,
                    learning_rate=train.qat_learning_rate, **common)
    return model.eval(), qat.eval(), head, history


@torch.no_grad()
def easy_mask(heavy: SequentialQuantModel, head: ExitHead | None, tap: int | None, images: np.ndarray,
              labels: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(easy mask, confidence): the early exit (or, without one, the final output) is right with softmax
    confidence >= ``threshold``."""
    logits, tapped = forward_tap(heavy.eval(), torch.as_tensor(images), tap)
    if head is not None:
        logits = head(tapped)
    probabilities = torch.softmax(logits, dim=1)
    confidence, predicted = probabilities.max(dim=1)
    easy = (predicted.numpy() == labels) & (confidence.numpy() >= threshold)
    return easy, confidence.double().numpy()


def _train_pipeline(specs: ConverterSpecs, light_float: SequentialQuantModel, data: ImageSplits,
                    targets: dict[str, np.ndarray], config: ConverterConfig) -> tuple[SequentialQuantModel,
                                                                                    SequentialQuantModel,
                                                                                    list[dict[str, Any]]]:
    """Converter alone (MSE to the targets), then converter + light jointly, float then QAT."""
    train = config.train
    n_conv = specs.converter_layers
    x_train, y_train = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    x_val, y_val = torch.as_tensor(data.x_val), torch.as_tensor(data.y_val)
    t_train, t_val = torch.as_tensor(targets["train"]), torch.as_tensor(targets["val"])
    common = {"n_train": len(x_train), "batch_size": train.batch_size, "patience": train.patience,
              "seed": train.seed, "progress": train.progress}
    mse, ce = nn.functional.mse_loss, nn.functional.cross_entropy
    shift = RandomShift(train.shift_px, train.seed + 1)

    converter = SequentialQuantModel(specs.converter, quantized=False)
    history = []
    if train.converter_epochs:
        history += _fit([converter], list(converter.parameters()),
                        lambda i: _reconstruction_loss(converter, *shift(x_train[i], t_train[i])),
                        lambda: float(mse(converter(x_val), t_val)), phase="converter float",
                        epochs=train.converter_epochs, learning_rate=train.learning_rate, **common)

    def joint(net: SequentialQuantModel, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, converted = forward_tap(net, x, n_conv - 1)
        return mse(converted, t) + train.ce_weight * ce(logits, y)

    def trainable(net: SequentialQuantModel) -> list[nn.Parameter]:
        layers = net.layers if train.finetune_light else net.layers[:n_conv]
        return [p for layer in layers for p in layer.parameters()]

    pipeline = SequentialQuantModel(specs.pipeline, quantized=False)
    copy_layers(converter, pipeline)
    copy_layers(light_float, pipeline, offset=n_conv)
    if train.joint_epochs:
        history += _fit([pipeline], trainable(pipeline),
                        lambda i: joint(pipeline, *shift(x_train[i], t_train[i]), y_train[i]),
                        lambda: float(joint(pipeline, x_val, t_val, y_val)), phase="converter+light float",
                        epochs=train.joint_epochs, learning_rate=train.learning_rate, **common)
    qat = SequentialQuantModel(specs.pipeline, quantized=True)
    qat.load_state_dict(pipeline.state_dict())
    history += _fit([qat], trainable(qat), lambda i: joint(qat, *shift(x_train[i], t_train[i]), y_train[i]),
                    lambda: float(joint(qat, x_val, t_val, y_val)), phase="converter+light qat",
                    epochs=train.qat_epochs, learning_rate=train.qat_learning_rate, **common)
    return pipeline.eval(), qat.eval(), history


def _reconstruction_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), target)


# ------------------------------------------------------------------------------------ recipe
def train_converter(config: ConverterConfig, progress: bool = True) -> ConverterResult:
    """The whole recipe (see the module docstring) on the configured data."""
    from aeforge.quantize.train import seed_everything

    start = time.perf_counter()
    seed_everything(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if not progress:
        config = _quiet(config)
    specs = converter_specs(config)
    data = load_images(config.data, config.model.input_type)
    tap = specs.exit_index if config.easy.method == "early_exit" else None
    heavy_float, heavy, head, history = _train_classifier(specs.heavy, data, config, "heavy",
                                                          config.train.heavy_epochs, tap)
    easy_train, _ = easy_mask(heavy_float, head, tap, data.x_train, data.y_train, config.easy.threshold)
    pool, pool_labels = data.x_train[easy_train], data.y_train[easy_train]
    targets = {split: easy_targets(getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), pool, pool_labels,
                                   config.easy, config.train.seed + k)
               for k, split in enumerate(("train", "val", "test"))}
    light_float, light, _, light_history = _train_classifier(specs.light, data, config, "light",
                                                             config.train.light_epochs)
    pipeline_float, pipeline, pipe_history = _train_pipeline(specs, light_float, data, targets, config)
    history += light_history + pipe_history
    metrics = _metrics(specs, data, targets, heavy_float, heavy, head, tap, light_float, light, pipeline_float,
                       pipeline, easy_train, config)
    return ConverterResult(config, specs, data, heavy, light, pipeline, pipeline_float, head, easy_train, history,
                           metrics, time.perf_counter() - start)


def _quiet(config: ConverterConfig) -> ConverterConfig:
    import dataclasses

    return dataclasses.replace(config, train=dataclasses.replace(config.train, progress=False))


def _metrics(specs: ConverterSpecs, data: ImageSplits, targets: dict[str, np.ndarray], heavy_float: Any,
             heavy: Any, head: Any, tap: int | None, light_float: Any, light: Any, pipeline_float: Any,
             pipeline: Any, easy_train: np.ndarray, config: ConverterConfig) -> dict[str, Any]:
    x, y = data.x_test, data.y_test
    easy_test, _ = easy_mask(heavy_float, head, tap, x, y, config.easy.threshold)
    n_conv = specs.converter_layers
    converter_q = pipeline_part(pipeline, specs.converter, 0, quantized=True)
    converted = predict_logits(converter_q, x).numpy()
    hard = ~easy_test

    def hard_accuracy(model: Any, images: np.ndarray = x) -> float | None:
        if not hard.any():
            return None
        return float((predict_logits(model, images[hard]).argmax(1).numpy() == y[hard]).mean())

    light_alone_on_converted = float((predict_logits(light, converted).argmax(1).numpy() == y).mean())
    metrics: dict[str, Any] = {
        "accuracy": {"heavy": {"float": accuracy(heavy_float, x, y), "qat": accuracy(heavy, x, y)},
                     "light": {"float": accuracy(light_float, x, y), "qat": accuracy(light, x, y)},
                     "converter_light": {"float": accuracy(pipeline_float, x, y), "qat": accuracy(pipeline, x, y)}},
        "accuracy_hard_test": {"heavy": hard_accuracy(heavy), "light": hard_accuracy(light),
                               "converter_light": hard_accuracy(pipeline)},
        "light_alone_on_converted_accuracy": light_alone_on_converted,
        "converter_mse_to_easy_target": float(np.mean((converted - targets["test"]) ** 2)),
        "easy_fraction": {"train": float(easy_train.mean()), "test": float(easy_test.mean())},
        "macs": {"heavy": macs(specs.heavy), "light": macs(specs.light), "converter_light": macs(specs.pipeline),
                 "converter": macs(specs.converter)},
        "parameters": {"heavy": parameter_count(specs.heavy), "light": parameter_count(specs.light),
                       "converter_light": parameter_count(specs.pipeline)},
        "test_samples": len(y),
        "converter_layers": n_conv,
    }
    return metrics


# ------------------------------------------------------------------------------------ run
def save_converter_run(result: ConverterResult, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run: pipeline (hardware model), heavy/ and light/ baseline runs, samples, history, card."""
    from aeforge.artifact import RunWriter
    from aeforge.config import to_dict

    config = result.config
    rows = result.data.x_test[:MAX_VERIFICATION_ROWS]
    labels = result.data.y_test[:MAX_VERIFICATION_ROWS]
    accuracy_qat = {role: values["qat"] for role, values in result.metrics["accuracy"].items()}
    with RunWriter(out, kind="train", config=to_dict(config), overwrite=overwrite) as run:
        _write_model(run, result.pipeline, rows, labels)
        torch.save(result.pipeline_float.state_dict(), run.path("pipeline_float.pt"))
        if result.exit_head is not None:
            torch.save(result.exit_head.state_dict(), run.path("exit_head.pt"))
        with open(run.path(EASY_FILE), "wb") as handle:
            np.savez_compressed(handle, easy_train=result.easy_train, y_train=result.data.y_train)
        run.write_json("history.json", result.history)
        for role, model in (("heavy", result.heavy), ("light", result.light)):
            with RunWriter(run.path(BASELINES[role]), kind="train", config=to_dict(config)) as sub:
                _write_model(sub, model, rows, labels)
                sub.extra["family"] = "converter"
                sub.extra["converter"] = {"role": f"{role} classifier (baseline of the converter run above)",
                                          "macs": result.metrics["macs"][role]}
                sub.metrics["accuracy"] = accuracy_qat[role]
                sub.metrics["test_samples"] = result.metrics["test_samples"]
        run.extra["family"] = "converter"
        run.extra["baselines"] = dict(BASELINES)
        run.extra["converter"] = {
            "role": "converter + light classifier (one model: the first converter_layers layers convert)",
            "converter_layers": result.specs.converter_layers,
            "easy": {"method": config.easy.method, "threshold": config.easy.threshold, "target": config.easy.target,
                     "exit_after": config.model.exit_after if config.easy.method == "early_exit" else None},
            "data": result.data.source,
            "accuracy_note": "test-split top-1 of the Brevitas QAT models (the QDQ ONNX export is bit-exact)",
        }
        run.metrics.update(result.metrics)
        run.metrics["accuracy_qat"] = accuracy_qat
        run.metrics["wall_time_s"] = round(result.wall_time_s, 2)
    return Path(out)


def _write_model(run: Any, model: SequentialQuantModel, rows: np.ndarray, labels: np.ndarray) -> None:
    from aeforge.quantize.models.families import IMPORT_SPEC, IMPORT_WEIGHTS, VERIFICATION_SAMPLE
    from aeforge.quantize.models.sequential import save_sequential

    save_sequential(model, run.path(IMPORT_SPEC), run.path(IMPORT_WEIGHTS))
    np.save(run.path(VERIFICATION_SAMPLE), rows.astype(np.float32))
    np.save(run.path(TEST_LABELS), labels.astype(np.int64))
    run.extra["hardware"] = {"output_type": model.output_type.ap_type(),
                             "fixed_point_types": model.fixed_point_types()}
