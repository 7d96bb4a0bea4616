"""BottleFit-style training of a split model, run directories, and reloading.

Stages (each deterministic given ``train.seed``):

0. **teacher**: the unmodified backbone, optionally loaded from the local checkpoint ``model.weights``
   (with ``model.new_head`` its classifier is replaced by a new one of ``num_classes`` outputs), trained
   with cross-entropy (skipped when ``train.teacher_epochs`` is 0);
a. **head distillation**: only the encoder and decoder train, so that the decoded bottleneck
   matches the frozen teacher's features at the split (MSE); the encoder's weight and activation
   types are re-calibrated after every epoch;
b. **fine-tuning**: the whole student (quantization-aware head, float tail) trains with
   ``(1 - alpha) * CE + alpha * T**2 * KL(teacher || student at temperature T)``.

:func:`save_split_run` writes an atomic run directory (card kind ``split``): ``teacher.pt``,
``student.pt``, ``history.json``, ``metrics.json`` and (``train.checkpoints``) ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aeforge.artifact import RunWriter, load_run
from aeforge.edge.split.bottleneck import SplitModel, SplitSpec, build_split_model, calibrate, load_split_state
from aeforge.edge.split.config import SplitExperimentConfig, parse_split_config
from aeforge.edge.split.data import SplitData, load_split_data
from aeforge.edge.split.distributed import (
    Checkpointer,
    DistContext,
    StageRun,
    all_sum,
    batches_per_epoch,
    check_same_everywhere,
    config_fingerprint,
    convert_batchnorm,
    data_parallel,
    resumed_state,
    revert_batchnorm,
    sharded_accuracy,
)
from aeforge.errors import ArtifactError, ConfigError

RUN_KIND = "split"
_CALIBRATION_IMAGES = 256


@dataclass
class SplitResult:
    """What :func:`train_split_experiment` produced."""

    config: SplitExperimentConfig
    teacher: nn.Module
    student: SplitModel
    history: dict[str, list[dict[str, float]]]
    metrics: dict[str, Any]
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, Any] | None = None  # what load_backbone_weights loaded and re-initialised


# ------------------------------------------------------------------------------------ helpers
@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` (eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``images``."""
    return float((predict(model, images).argmax(1) == labels).float().mean())


@torch.no_grad()
def eval_accuracy(model: nn.Module, data: SplitData) -> float:
    """Top-1 accuracy of ``model`` on ``data``'s test set, streamed in ``data.eval_batch_size`` batches."""
    was_training = model.training
    model.eval()
    try:
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.test_batches())
    finally:
        model.train(was_training)
    return correct / max(1, len(data.y_test))


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass (``torch.utils.flop_counter``; convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter:  # (no_grad upsets its module tracker)
            module(torch.zeros(1, *input_shape))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, dynamic_ncols=True)


def run_epochs(
    name: str, epochs: int, data: SplitData, batch_size: int, seed: int, progress: bool,
    params: list[nn.Parameter] | list[dict[str, Any]], lr: float, weight_decay: float,
    step: Callable[[torch.Tensor, Any], torch.Tensor],
    after_epoch: Callable[[int], dict[str, float]], run: StageRun | None = None,
) -> list[dict[str, float]]:
    """A generic Adam loop; ``step(x, labels or targets)`` returns the batch loss, ``after_epoch`` extra
    per-epoch metrics.

    ``run`` places it in the world (``batch_size`` is global; :mod:`aeforge.edge.split.distributed`
    samples each rank's share) and checkpoints every epoch; resumed, it continues after the last one.
    """
    history: list[dict[str, float]] = []
    if epochs == 0:
        return history
    run = run or StageRun(name)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    start, history = run.restore(optimizer, schedule)  # resumed: epochs done, their history
    per_epoch = batches_per_epoch(len(data.x_train), batch_size, run.ctx)
    with _progress((epochs - start) * per_epoch, name, progress and run.ctx.is_main) as bar:
        for epoch in range(start, epochs):
            total, count = 0.0, 0
            for x, y in run.batches(data, batch_size, seed, epoch):
                loss = step(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(x)
                count += len(x)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4g}")
            total, count = all_sum(run.ctx, [total, count])  # the epoch's loss over every rank's samples
            schedule.step()
            history.append({"epoch": epoch + 1, "loss": total / count, **after_epoch(epoch)})
            run.end_epoch(epoch + 1, optimizer, schedule, history)
    return history


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * T**2 * KL(softmax(teacher/T) || softmax(student/T))``."""
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temperature**2 * kl


# ------------------------------------------------------------------------------------ training
def train_split_experiment(
    config: SplitExperimentConfig, progress: bool | None = None, teacher: nn.Module | None = None,
    data: SplitData | None = None, dist: DistContext | None = None, checkpointer: Checkpointer | None = None,
) -> SplitResult:
    """Run stages 0, a and b of ``config``; ``teacher`` (already trained) skips stage 0.

    ``progress`` overrides ``train.progress``; ``data`` overrides loading ``config.data``. ``dist`` is this
    process's place in a torchrun world (default: one process; the result does not depend on the world
    size, see :mod:`aeforge.edge.split.distributed`); ``checkpointer`` saves every epoch and resumes.
    Under several processes only rank 0 computes the final ``metrics`` (the others get ``{}``).
    """
    from aeforge.edge.split.backbones import build_backbone, load_backbone_weights

    train, mcfg = config.train, config.model
    show = train.progress if progress is None else progress
    if train.threads is not None:
        torch.set_num_threads(train.threads)
    data = data if data is not None else load_split_data(config.data)
    if mcfg.num_classes is not None and mcfg.num_classes != data.num_classes:
        where = f" in {config.data.train_dir}" if config.data.source == "imagefolder" else ""
        raise ConfigError(f"model.num_classes: {mcfg.num_classes}, but data.source {data.source} has "
                          f"{data.num_classes} classes{where}")
    ctx = dist or DistContext()
    ctx.local_batch(train.batch_size)  # the global batch must split evenly
    check_same_everywhere(ctx, {"config": config_fingerprint(config), "train_samples": len(data.x_train),
                                "test_samples": len(data.y_test), "classes": data.num_classes})
    resumed = checkpointer.start(ctx, config_fingerprint(config)) if checkpointer is not None else None
    show = show and ctx.is_main

    def evaluate(model: nn.Module) -> float:
        return sharded_accuracy(model, data, ctx)

    torch.manual_seed(train.seed)
    history: dict[str, list[dict[str, float]]] = {"teacher": [], "head_distillation": [], "finetune": []}
    if resumed is not None:
        history.update({key: list(value) for key, value in resumed["history"].items()})

    # stage 0: the teacher
    weights: dict[str, Any] | None = None
    if teacher is None:
        teacher = build_backbone(mcfg.backbone, data.num_classes)
        if mcfg.weights is not None:
            weights = load_backbone_weights(teacher, mcfg.weights, new_head=mcfg.new_head)
        if resumed_state(checkpointer, "teacher") is not None:
            teacher.load_state_dict(resumed_state(checkpointer, "teacher"))
        if train.teacher_epochs:
            teacher.to(ctx.device).train()
            convert_batchnorm(teacher, ctx)
            with data_parallel(teacher, ctx) as teacher_net:

                def teacher_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                    return F.cross_entropy(teacher_net(x), y)

                history["teacher"] = run_epochs(
                    "stage 0: teacher", train.teacher_epochs, data, train.batch_size, train.seed, show,
                    list(teacher.parameters()), train.teacher_learning_rate, train.weight_decay, teacher_step,
                    lambda _: {"test_accuracy": evaluate(teacher)},
                    StageRun("teacher", ctx, checkpointer, {"teacher": teacher}, history),
                )
            revert_batchnorm(teacher).cpu()
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    # the student, initialised from the teacher
    torch.manual_seed(train.seed + 1)
    calibration = data.calibration_images(_CALIBRATION_IMAGES)
    entropic = mcfg.bottleneck == "entropic"
    build_student = build_split_model
    if entropic:  # the Entropic Student: integer code under a learned prior (aeforge.edge.split.entropic)
        from aeforge.edge.split.entropic import build_entropic_model as build_student
    student = build_student(
        mcfg.backbone, mcfg.split_after, mcfg.channels, mcfg.bits, data.num_classes, input_size=data.image_shape,
        code_signed=mcfg.code_signed, head_bits=mcfg.head_bits, encoder_channels=mcfg.encoder_channels,
        teacher=teacher, calibration=calibration,
    )
    if resumed_state(checkpointer, "student") is not None:
        student.load_state_dict(resumed_state(checkpointer, "student"))
    teacher.to(ctx.device)
    convert_batchnorm(student.to(ctx.device), ctx)
    saved = {"teacher": teacher, "student": student}
    calibration_here = calibration.to(ctx.device)

    # stage a: head distillation (encoder + decoder only)
    trainable = [*student.head.encoder.parameters(), *student.tail.decoder.parameters()]
    if entropic:
        trainable += list(student.entropy.parameters())
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    student.train()

    def head_epoch_end(_: int) -> dict[str, float]:
        calibrate(student.head, calibration_here, groups=("encoder",))
        return {"test_accuracy": evaluate(student)}

    with data_parallel(student, ctx, "features_and_rate" if entropic else "decoded_features") as decoded_features:

        def head_step(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            if entropic:  # rate-distortion: distortion + beta * bits per sample
                features, rate_bits = decoded_features(x)
                return F.mse_loss(features, student.teacher_features(x)) + mcfg.beta * rate_bits
            return F.mse_loss(decoded_features(x), student.teacher_features(x))

        history["head_distillation"] = run_epochs(
            "stage a: head distillation", train.head_epochs, data, train.batch_size, train.seed + 2, show,
            student.optimizer_groups(trainable, train.head_learning_rate),
            train.head_learning_rate, train.weight_decay, head_step, head_epoch_end,
            StageRun("head_distillation", ctx, checkpointer, saved, history),
        )
    checkpoints: dict[str, dict[str, Any]] = {}
    if resumed is not None and resumed["stage"] == "finetune":
        checkpoints = dict(resumed["extra"])  # the student after stage a, saved before stage b began
    elif train.checkpoints:
        checkpoints["after_head_distillation"] = _student_payload(student)

    # stage b: fine-tuning with knowledge distillation
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    student.train()

    with data_parallel(student, ctx, "logits_and_rate" if entropic else "forward") as student_net:

        def finetune_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if entropic:  # KD + beta * bits per sample
                logits, rate_bits = student_net(x)
                loss = kd_loss(logits, student.teacher_logits(x), y, train.temperature, train.alpha)
                return loss + mcfg.beta * rate_bits
            return kd_loss(student_net(x), student.teacher_logits(x), y, train.temperature, train.alpha)

        history["finetune"] = run_epochs(
            "stage b: fine-tuning", train.finetune_epochs, data, train.batch_size, train.seed + 3, show,
            student.optimizer_groups(student.parameters(), train.finetune_learning_rate),
            train.finetune_learning_rate, train.weight_decay, finetune_step,
            lambda _: {"test_accuracy": evaluate(student)},
            StageRun("finetune", ctx, checkpointer, saved, history, checkpoints),
        )
    revert_batchnorm(student).cpu().eval()
    teacher.cpu()
    if entropic:
        student.finalize_tables()  # the prior frozen into the integer CDF tables the export ships
    metrics = split_metrics(student, data) if ctx.is_main else {}
    return SplitResult(config, teacher, student, history, metrics, checkpoints, weights)


def split_metrics(student: SplitModel, data: SplitData) -> dict[str, Any]:
    """Accuracies and rates: bytes per sample of the input, the float features at the split and the code."""
    spec, code = student.spec, student.code_spec
    teacher_acc = eval_accuracy(student.teacher, data)
    student_acc = eval_accuracy(student, data)
    code_values = math.prod(student.code_shape)
    code_bits = code_values * code.bits
    feature_bytes = math.prod(spec.feature_shape) * 4
    metrics: dict[str, Any] = {
        "teacher_accuracy": teacher_acc,
        "student_accuracy": student_acc,
        "accuracy_drop_points": 100.0 * (teacher_acc - student_acc),
        "test_samples": len(data.x_test),
        "input_shape": list(spec.input_shape),
        "input_float32_bytes_per_sample": math.prod(spec.input_shape) * 4,
        "feature_shape": list(spec.feature_shape),
        "feature_float32_bytes_per_sample": feature_bytes,
        "code_shape": list(student.code_shape),
        "code_type": code.ap_type(),
        "code_scale": code.lsb,
        "code_bits": code.bits,
        "code_bits_per_sample": code_bits,
        "code_packed_bytes_per_sample": math.ceil(code_bits / 8),
        "code_saving_vs_features": 1.0 - math.ceil(code_bits / 8) / feature_bytes,
        "head_params": sum(p.numel() for p in student.head.parameters()),
        "tail_params": sum(p.numel() for p in student.tail.parameters()),
        "head_flops": count_flops(student.head, spec.input_shape),
        "tail_flops": count_flops(student.tail, student.code_shape),
    }
    if spec.bottleneck == "entropic":  # real range-coded bytes, one image a blob
        from aeforge.edge.split.entropic import entropic_metrics

        metrics.update(entropic_metrics(student, data.test_batches()))  # type: ignore[arg-type]
        return metrics
    wire = wire_bytes(student, data.x_test if isinstance(data.x_test, torch.Tensor) else data)
    if wire is not None:
        metrics.update(wire)
        metrics["bytes_per_sample"] = wire["code_wire_bytes_per_sample_none"]
    return metrics


def wire_bytes(student: SplitModel, images: torch.Tensor | SplitData) -> dict[str, float] | None:
    """Mean bytes per sample of the code blobs of ``aeforge.edge.split.codec`` (None if absent).

    Every test image is encoded as its own blob, as batch-1 serving sends it, so the mean is exact
    (not an estimate from batched blobs). ``images`` is a tensor or a :class:`SplitData` (its test set).
    """
    try:
        from aeforge.edge.split.codec import encode_code
    except ImportError:
        return None
    spec = student.code_spec
    batches = images.test_batches() if isinstance(images, SplitData) else ((images, None),)
    sizes: dict[str, list[int]] = {"none": [], "zlib": []}
    for x, _ in batches:
        codes = torch.round(predict(student.head, x) / spec.lsb).to(torch.int64).numpy()
        for compression, found in sizes.items():
            found.extend(len(encode_code(sample[None], spec.bits, spec.lsb, spec.signed, compression=compression))
                         for sample in codes)
    return {f"code_wire_bytes_per_sample_{name}": sum(found) / max(1, len(found)) for name, found in sizes.items()}


# ------------------------------------------------------------------------------------ runs
def _student_payload(student: SplitModel) -> dict[str, Any]:
    return {"spec": student.spec.as_dict(), "state_dict": {k: v for k, v in student.state_dict().items()}}


def save_split_run(result: SplitResult, out_dir: str | Path, overwrite: bool = False,
                   command: list[str] | None = None) -> Path:
    """Write ``result`` as an atomic run directory (card kind ``split``); returns its path."""
    config = dataclasses.asdict(result.config)
    with RunWriter(out_dir, kind=RUN_KIND, config=config, overwrite=overwrite, command=command) as run:
        spec = result.student.spec
        torch.save({"backbone": spec.backbone, "num_classes": spec.num_classes,
                    "state_dict": result.teacher.state_dict()}, run.path("teacher.pt"))
        torch.save(_student_payload(result.student), run.path("student.pt"))
        for name, payload in result.checkpoints.items():
            torch.save(payload, run.path(f"checkpoints/{name}.pt"))
        run.write_json("history.json", result.history)
        run.write_json("metrics.json", result.metrics)
        run.metrics.update(result.metrics)
        run.extra["split"] = spec.as_dict()
        if result.weights is not None:
            run.extra["weights"] = result.weights  # the checkpoint loaded, and what was re-initialised
    return Path(out_dir)


def _load_payload(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ArtifactError(f"{path}: unreadable checkpoint: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ArtifactError(f"{path}: not an aeforge split checkpoint (no state_dict)")
    return payload


def load_split_teacher(run_dir: str | Path) -> nn.Module:
    """The trained teacher (torchvision model, eval mode) of a split run."""
    from aeforge.edge.split.backbones import build_backbone

    run = Path(run_dir)
    payload = _load_payload(run / "teacher.pt")
    teacher = build_backbone(str(payload["backbone"]), int(payload["num_classes"]))
    try:
        teacher.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise ArtifactError(f"{run / 'teacher.pt'}: {str(error).splitlines()[0]}") from None
    return teacher.eval()


def load_split_model(run_dir: str | Path, verify: bool = True) -> SplitModel:
    """The trained student (eval mode, teacher attached) of a split run directory."""
    card = load_run(run_dir, verify=verify)
    if card.kind != RUN_KIND:
        raise ArtifactError(f"{run_dir}: a {card.kind!r} run, not a split run")
    teacher = load_split_teacher(run_dir)
    payload = _load_payload(Path(run_dir) / "student.pt")
    try:
        spec = SplitSpec.from_dict(payload["spec"])
        model = load_split_state(spec, payload["state_dict"], teacher)
    except (KeyError, TypeError, RuntimeError) as error:
        raise ArtifactError(f"{Path(run_dir) / 'student.pt'}: does not match its spec: "
                            f"{str(error).splitlines()[0]}") from None
    return model.eval()


def load_run_config(run_dir: str | Path) -> SplitExperimentConfig:
    """The :class:`SplitExperimentConfig` recorded in a split run's card."""
    import yaml

    card = load_run(run_dir, verify=False)
    return parse_split_config(yaml.safe_dump(card.data.get("config", {})), source=f"{run_dir}/card.json")
