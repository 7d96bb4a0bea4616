"""Multi-task split computing (Ladon-style): one quantized head and one code, a tail per task on the server.

:func:`train_multitask` runs, for ``model.tasks`` (see :mod:`~.tasks`):

0. **teachers**: one unsplit float network per task (ResNet front + task back), each trained with its task
   loss for ``train.teacher_epochs``;
a. **head distillation**: the shared head is the first task's teacher front converted to fixed point with the
   quantized encoder (:func:`~.bottleneck.build_split_model`); each task gets a decoder and a copy of its
   teacher's back. Only the encoder and the decoders train, on ``sum_t loss_weight_t * MSE(decoder_t(code),
   teacher_t.front(x))`` (every task's teacher distils into the one code); the encoder's types are
   re-calibrated after every epoch;
b. **joint fine-tuning**: everything trains on ``sum_t loss_weight_t * L_t``: classification ``(1 - alpha) CE +
   alpha T^2 KL`` to its teacher, detection its detector's loss (FCOS, RetinaNet or Faster R-CNN),
   segmentation per-pixel cross-entropy (mask pixels 255 ignored).

The run (card kind ``split``, ``extra.tasks``) holds ``teachers.pt`` (every teacher's state),
``student.pt`` (spec, tasks and state), ``history.json`` and ``metrics.json``: per task the metric of the
teacher and the student (``top1``, ``box_map50``, ``mask_miou``) and the code's bytes per sample.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeforge.artifact import RunWriter, load_run
from aeforge.edge.split.bottleneck import (
    SplitHead,
    SplitSpec,
    SplitTail,
    _decoder,
    build_split_model,
    calibrate,
)
from aeforge.edge.split.config import SplitExperimentConfig, TaskConfig, parse_tasks
from aeforge.edge.split.data import SplitData, load_split_data
from aeforge.edge.split.task_outputs import box_map50, confusion, mask_labels, mean_iou, postprocess_detections
from aeforge.edge.split.tasks import TaskNet, build_task_net, student_back, task_classes, task_loss
from aeforge.errors import ArtifactError, ConfigError

RUN_KIND = "split"
METRIC_NAMES = {"classification": "top1", "detection": "box_map50", "segmentation": "mask_miou"}
_CALIBRATION_IMAGES = 256


class MultiTaskSplitModel(nn.Module):
    """One :class:`~.bottleneck.SplitHead` and a :class:`~.bottleneck.SplitTail` per task (``tails[name]``).

    ``forward(x)`` returns ``{task name: tail output}`` from one code; teachers are kept unregistered.
    """

    def __init__(self, spec: SplitSpec, tasks: list[TaskConfig], head: SplitHead, tails: dict[str, SplitTail],
                 teachers: dict[str, TaskNet]) -> None:
        super().__init__()
        self.spec = spec
        self.tasks = list(tasks)
        self.head = head
        self.tails = nn.ModuleDict(tails)
        object.__setattr__(self, "_teachers", teachers)

    @property
    def teachers(self) -> dict[str, TaskNet]:
        """The frozen float teacher of every task."""
        return self._teachers

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        code = self.head(x)
        return {task.name: self.tails[task.name](code) for task in self.tasks}

    @property
    def code_spec(self) -> Any:
        """The code's fixed-point type."""
        if self.head.code.spec is None:
            raise ConfigError("the split model is not calibrated (call calibrate(model.head, images))")
        return self.head.code.spec

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the shared code."""
        _, height, width = self.spec.feature_shape
        return (self.spec.channels, height, width)


@dataclass
class MultiTaskResult:
    """What :func:`train_multitask` produced."""

    config: SplitExperimentConfig
    model: MultiTaskSplitModel
    history: dict[str, list[dict[str, float]]]
    metrics: dict[str, Any]
    classes: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ building
def _first_front_resnet(backbone: str, teacher: TaskNet, image_classes: int) -> nn.Module:
    """A torchvision ResNet whose front holds ``teacher``'s front weights (what build_split_model converts)."""
    from aeforge.edge.split.backbones import build_backbone, split_backbone

    resnet = build_backbone(backbone, image_classes)
    split_backbone(resnet, backbone, _split_after(teacher)).front.load_state_dict(teacher.front.state_dict())
    return resnet.eval()


def _split_after(teacher: TaskNet) -> str:
    return list(teacher.front._modules)[-1]


def build_multitask_student(config: SplitExperimentConfig, teachers: dict[str, TaskNet], classes: dict[str, int],
                            image_classes: int, input_shape: tuple[int, int, int],
                            calibration: torch.Tensor) -> MultiTaskSplitModel:
    """The student: the first task's teacher front as the quantized head, a decoder + back copy per task."""
    mcfg = config.model
    tasks = list(mcfg.tasks or [])
    resnet = _first_front_resnet(mcfg.backbone, teachers[tasks[0].name], image_classes)
    base = build_split_model(
        mcfg.backbone, mcfg.split_after, mcfg.channels, mcfg.bits, image_classes, input_size=input_shape,
        code_signed=mcfg.code_signed, head_bits=mcfg.head_bits, encoder_channels=mcfg.encoder_channels,
        teacher=resnet, calibration=calibration,
    )
    tails = {task.name: SplitTail(_decoder(base.spec), student_back(teachers[task.name])) for task in tasks}
    return MultiTaskSplitModel(base.spec, tasks, base.head, tails, teachers)


def build_teachers(config: SplitExperimentConfig, classes: dict[str, int], image_classes: int,
                   input_shape: tuple[int, int, int]) -> dict[str, TaskNet]:
    """Randomly initialised teachers of every task (torch's global RNG)."""
    mcfg = config.model
    return {task.name: build_task_net(task, mcfg.backbone, mcfg.split_after, input_shape, classes[task.name],
                                      image_classes) for task in mcfg.tasks or []}


# ------------------------------------------------------------------------------------ training
def _targets(data: SplitData, split: str, index: torch.Tensor) -> dict[str, Any]:
    if hasattr(data, "targets"):
        return data.targets(split, index)  # type: ignore[attr-defined]
    return {"labels": (data.y_train if split == "train" else data.y_test)[index]}


def _epochs(name: str, epochs: int, data: SplitData, batch_size: int, seed: int, show: bool,
            params: list[nn.Parameter], lr: float, weight_decay: float, step: Any, after_epoch: Any,
            run: Any = None) -> list[dict[str, float]]:
    """Adam with a cosine schedule over ``epochs``; ``step(x, targets)`` returns the batch loss.

    The single-task loop (:func:`~.train.run_epochs`): ``run`` (a :class:`~.distributed.StageRun`) places it
    in the torchrun world, samples each rank's share of the global batch and checkpoints every epoch."""
    from aeforge.edge.split.distributed import StageRun
    from aeforge.edge.split.train import run_epochs

    if epochs == 0 or not params:
        return []
    run = run if run is not None else StageRun(name)
    run.targets = lambda index: _targets(data, "train", index)
    return run_epochs(name, epochs, data, batch_size, seed, show, params, lr, weight_decay, step, after_epoch, run)


def _kd(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
        alpha: float) -> torch.Tensor:
    ce = F.cross_entropy(student, labels)
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temperature**2 * kl


def train_multitask(config: SplitExperimentConfig, progress: bool | None = None, data: SplitData | None = None,
                    teachers: dict[str, TaskNet] | None = None, dist: Any = None,
                    checkpointer: Any = None) -> MultiTaskResult:
    """Stages 0, a and b of a ``model.tasks`` config; deterministic given ``train.seed``.

    ``teachers`` (already trained, by task name) skip stage 0 for those tasks (copies are used). ``dist`` and
    ``checkpointer`` are those of :func:`~.train.train_split_experiment`: a place in a torchrun world (DDP,
    global batch, synchronised BatchNorm; only rank 0 computes ``metrics``) and per-epoch checkpoints to
    resume from (the stages are ``teacher_<task>`` in task order, ``head_distillation``, ``finetune``).
    """
    from aeforge.edge.split.distributed import (
        DistContext,
        StageRun,
        check_same_everywhere,
        config_fingerprint,
        convert_batchnorm,
        data_parallel,
        resumed_state,
        revert_batchnorm,
    )

    train, mcfg = config.train, config.model
    tasks = list(mcfg.tasks or [])
    if not tasks:
        raise ConfigError("model.tasks: no tasks (this is not a multi-task config)")
    show = train.progress if progress is None else progress
    if train.threads is not None:
        torch.set_num_threads(train.threads)
    if train.teacher_epochs < 1:
        raise ConfigError("train.teacher_epochs: must be >= 1 with model.tasks (every task's teacher is trained)")
    data = data if data is not None else load_split_data(config.data)
    classes = {task.name: task_classes(task, data) for task in tasks}
    shape = data.image_shape
    ctx = dist or DistContext()
    ctx.local_batch(train.batch_size)  # the global batch must split evenly
    check_same_everywhere(ctx, {"config": config_fingerprint(config), "train_samples": len(data.x_train),
                                "test_samples": len(data.x_test), "classes": classes})
    resumed = checkpointer.start(ctx, config_fingerprint(config)) if checkpointer is not None else None
    show = show and ctx.is_main
    history: dict[str, list[dict[str, float]]] = {}
    if resumed is not None:
        history.update({key: list(value) for key, value in resumed["history"].items()})
    stages = (*(f"teacher_{task.name}" for task in tasks), "head_distillation", "finetune")
    torch.manual_seed(train.seed)
    given = teachers or {}
    teachers = build_teachers(config, classes, data.num_classes, shape)
    saved: dict[str, nn.Module] = {f"teacher_{name}": teacher for name, teacher in teachers.items()}

    def stage_run(stage: str) -> StageRun:
        return StageRun(stage, ctx, checkpointer, saved, history, stages=stages)

    # stage 0: the unsplit teachers, each on its own task
    for number, task in enumerate(tasks):
        if task.name in given:
            teachers[task.name].load_state_dict(given[task.name].state_dict())
        elif resumed_state(checkpointer, f"teacher_{task.name}") is not None:
            teachers[task.name].load_state_dict(resumed_state(checkpointer, f"teacher_{task.name}"))
        teacher = teachers[task.name].to(ctx.device).train()
        if task.name in given:
            teacher.eval().requires_grad_(False)
            continue
        convert_batchnorm(teacher, ctx)
        with data_parallel(teacher, ctx) as teacher_net:

            def teacher_step(x: torch.Tensor, targets: dict[str, Any], task: TaskConfig = task,
                             teacher: TaskNet = teacher, teacher_net: Any = teacher_net) -> torch.Tensor:
                return task_loss(task, teacher.back, teacher_net(x), targets)

            history[f"teacher_{task.name}"] = _epochs(
                f"stage 0: teacher {task.name}", train.teacher_epochs, data, train.batch_size,
                train.seed + 10 + number, show, list(teacher.parameters()), train.teacher_learning_rate,
                train.weight_decay, teacher_step, lambda _: {}, stage_run(f"teacher_{task.name}"))
        revert_batchnorm(teacher).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)

    # the student: the first teacher's front as the quantized head, a decoder and back copy per task
    torch.manual_seed(train.seed + 1)
    calibration = data.calibration_images(_CALIBRATION_IMAGES)
    on_cpu = {name: teacher.cpu() for name, teacher in teachers.items()}  # the student is built on the CPU
    student = build_multitask_student(config, on_cpu, classes, data.num_classes, shape, calibration)
    if resumed_state(checkpointer, "student") is not None:
        student.load_state_dict(resumed_state(checkpointer, "student"))
    for teacher in teachers.values():
        teacher.to(ctx.device)
    convert_batchnorm(student.to(ctx.device), ctx)
    saved["student"] = student
    calibration_here = calibration.to(ctx.device)
    weights = {task.name: task.loss_weight for task in tasks}

    # stage a: head distillation from every task's teacher into the one code
    trainable = [*student.head.encoder.parameters()]
    for task in tasks:
        trainable += list(student.tails[task.name].decoder.parameters())
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    student.train()

    def decoded(model: MultiTaskSplitModel, x: torch.Tensor) -> list[torch.Tensor]:
        code = model.head(x)
        return [model.tails[task.name].decoder(code) for task in tasks]

    def recalibrate(_: int) -> dict[str, float]:
        calibrate(student.head, calibration_here, groups=("encoder",))
        return {}

    with data_parallel(student, ctx, decoded) as decoded_features:

        def head_step(x: torch.Tensor, _: dict[str, Any]) -> torch.Tensor:
            losses = []
            for task, features in zip(tasks, decoded_features(x), strict=True):
                with torch.no_grad():
                    target = teachers[task.name].front(x)
                losses.append(weights[task.name] * F.mse_loss(features, target))
            return sum(losses)  # type: ignore[return-value]

        history["head_distillation"] = _epochs(
            "stage a: head distillation", train.head_epochs, data, train.batch_size, train.seed + 2, show,
            trainable, train.head_learning_rate, train.weight_decay, head_step, recalibrate,
            stage_run("head_distillation"))

    # stage b: joint fine-tuning with per-task loss weights
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    student.train()

    with data_parallel(student, ctx) as student_net:

        def joint_step(x: torch.Tensor, targets: dict[str, Any]) -> torch.Tensor:
            outputs = student_net(x)
            losses = []
            for task in tasks:
                out = outputs[task.name]
                if task.kind == "classification":
                    with torch.no_grad():
                        teacher_logits = teachers[task.name](x)
                    loss = _kd(out, teacher_logits, targets["labels"], train.temperature, train.alpha)
                else:
                    loss = task_loss(task, student.tails[task.name].back, out, targets)
                losses.append(weights[task.name] * loss)
            return sum(losses)  # type: ignore[return-value]

        history["finetune"] = _epochs(
            "stage b: joint fine-tuning", train.finetune_epochs, data, train.batch_size, train.seed + 3, show,
            list(student.parameters()), train.finetune_learning_rate, train.weight_decay, joint_step, lambda _: {},
            stage_run("finetune"))
    revert_batchnorm(student).cpu().eval()
    for teacher in teachers.values():
        teacher.cpu()
    metrics = multitask_metrics(student, data) if ctx.is_main else {}
    return MultiTaskResult(config, student, history, metrics, classes)


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def task_predictions(task: TaskConfig, back: nn.Module, outputs: Any) -> Any:
    """NumPy predictions of one task from its (teacher or tail) outputs: logits, (boxes, scores, labels)
    after NMS, or mask classes."""
    if task.kind == "classification":
        return outputs.numpy()
    if task.kind == "detection":
        boxes, scores, labels = (t.numpy() for t in back.detect(outputs))  # type: ignore[operator]
        return postprocess_detections(boxes, scores, labels, task.score_threshold, task.nms_iou, task.detections)
    return mask_labels(outputs.numpy())


@torch.no_grad()
def evaluate_task(task: TaskConfig, run: Any, back: nn.Module, data: SplitData, num_classes: int) -> float:
    """The task's metric on the test set: top-1, box mAP@0.5, or mask mIoU. ``run(x)`` gives the outputs."""
    batch = data.eval_batch_size
    correct, detections, truths = 0, [], []
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for start in range(0, len(data.x_test), batch):
        index = torch.arange(start, min(start + batch, len(data.x_test)))
        predictions = task_predictions(task, back, run(data.x_test[index]))
        targets = _targets(data, "test", index)
        if task.kind == "classification":
            correct += int((predictions.argmax(1) == targets["labels"].numpy()).sum())
        elif task.kind == "detection":
            boxes, scores, labels = predictions
            detections.extend((boxes[i], scores[i], labels[i]) for i in range(len(index)))
            truths.extend((t["boxes"].numpy(), t["labels"].numpy()) for t in targets["detection"])
        else:
            matrix += confusion(predictions, targets["masks"].numpy(), num_classes)
    if task.kind == "classification":
        return correct / max(1, len(data.x_test))
    if task.kind == "detection":
        return box_map50(detections, truths, num_classes)
    return mean_iou(matrix)


def code_bytes_per_sample(model: MultiTaskSplitModel, images: torch.Tensor) -> float:
    """Mean wire bytes of one image's code blob (:mod:`~.codec`, uncompressed, header included)."""
    from aeforge.edge.split.codec import encode_code

    spec = model.code_spec
    with torch.no_grad():
        codes = torch.round(model.head(images) / spec.lsb).to(torch.int64).numpy()
    sizes = [len(encode_code(sample[None], spec.bits, spec.lsb, spec.signed)) for sample in codes]
    return float(np.mean(sizes))


def multitask_metrics(model: MultiTaskSplitModel, data: SplitData) -> dict[str, Any]:
    """Per task the teacher's and the student's metric; code shape, bits and bytes per sample."""
    model.eval()
    code = model.code_spec
    metrics: dict[str, Any] = {"tasks": {}}
    for task in model.tasks:
        classes = _task_outputs(task, model)
        teacher = model.teachers[task.name].eval()
        tail = model.tails[task.name]
        metric = METRIC_NAMES[task.kind]
        teacher_value = evaluate_task(task, teacher, teacher.back, data, classes)

        def run(x: torch.Tensor, tail: nn.Module = tail) -> Any:
            return tail(model.head(x))

        student_value = evaluate_task(task, run, tail.back, data, classes)
        metrics["tasks"][task.name] = {"kind": task.kind, "metric": metric, "teacher": teacher_value,
                                       "student": student_value, "loss_weight": task.loss_weight}
        metrics[f"{task.name}_{metric}_teacher"] = teacher_value
        metrics[f"{task.name}_{metric}"] = student_value
    feature_bytes = math.prod(model.spec.feature_shape) * 4
    metrics.update({
        "test_samples": len(data.x_test),
        "input_shape": list(model.spec.input_shape),
        "feature_float32_bytes_per_sample": feature_bytes,
        "code_shape": list(model.code_shape),
        "code_type": code.ap_type(),
        "code_bits_per_sample": math.prod(model.code_shape) * code.bits,
        "code_packed_bytes_per_sample": math.ceil(math.prod(model.code_shape) * code.bits / 8),
        "bytes_per_sample": code_bytes_per_sample(model, data.x_test[:64]),
        "head_params": sum(p.numel() for p in model.head.parameters()),
        "tail_params": {task.name: sum(p.numel() for p in model.tails[task.name].parameters())
                        for task in model.tasks},
    })
    return metrics


def _task_outputs(task: TaskConfig, model: MultiTaskSplitModel) -> int:
    back = model.tails[task.name].back
    if task.kind == "classification":
        return int(model.spec.num_classes)
    if task.kind == "detection":
        return int(back.num_classes)
    return int(back.head[-1].out_channels)


# ------------------------------------------------------------------------------------ runs
def is_multitask_run(run_dir: str | Path) -> bool:
    """Whether a split run was trained with ``model.tasks``."""
    return (Path(run_dir) / "teachers.pt").is_file()


def save_multitask_run(result: MultiTaskResult, out_dir: str | Path, overwrite: bool = False,
                       command: list[str] | None = None) -> Path:
    """Write ``result`` as an atomic run directory (card kind ``split``, ``extra.tasks``)."""
    model = result.model
    tasks = [dataclasses.asdict(task) for task in model.tasks]
    config = dataclasses.asdict(result.config)
    with RunWriter(out_dir, kind=RUN_KIND, config=config, overwrite=overwrite, command=command) as run:
        torch.save({"tasks": tasks, "classes": result.classes, "image_classes": model.spec.num_classes,
                    "state_dicts": {name: teacher.state_dict() for name, teacher in model.teachers.items()}},
                   run.path("teachers.pt"))
        torch.save({"spec": model.spec.as_dict(), "tasks": tasks, "classes": result.classes,
                    "state_dict": model.state_dict()}, run.path("student.pt"))
        run.write_json("history.json", result.history)
        run.write_json("metrics.json", result.metrics)
        run.metrics.update(result.metrics)
        run.extra["split"] = model.spec.as_dict()
        run.extra["tasks"] = tasks
    return Path(out_dir)


def _load(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ArtifactError(f"{path}: unreadable checkpoint: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or "tasks" not in payload:
        raise ArtifactError(f"{path}: not an aeforge multi-task split checkpoint (no tasks)")
    return payload


def load_multitask_model(run_dir: str | Path, verify: bool = True) -> MultiTaskSplitModel:
    """The trained multi-task student (eval mode, teachers attached) of a run directory."""
    from aeforge.edge.split.train import load_run_config

    run = Path(run_dir)
    card = load_run(run, verify=verify)
    if card.kind != RUN_KIND:
        raise ArtifactError(f"{run}: a {card.kind!r} run, not a split run")
    config = load_run_config(run)
    saved = _load(run / "teachers.pt")
    student = _load(run / "student.pt")
    try:
        spec = SplitSpec.from_dict(student["spec"])
        tasks = parse_tasks(student["tasks"], f"{run / 'student.pt'}: tasks")
        classes = {str(k): int(v) for k, v in student["classes"].items()}
        teachers = build_teachers(config, classes, int(saved["image_classes"]), spec.input_shape)
        for name, teacher in teachers.items():
            teacher.load_state_dict(saved["state_dicts"][name])
            teacher.eval()
        model = build_multitask_student(config, teachers, classes, int(saved["image_classes"]), spec.input_shape,
                                        torch.zeros(1, *spec.input_shape))
        model.load_state_dict(student["state_dict"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as error:
        raise ArtifactError(f"{run / 'student.pt'}: does not match its spec: {str(error).splitlines()[0]}") from None
    model.tasks = tasks
    return model.eval()
