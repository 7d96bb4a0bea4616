"""Split-computing experiment configuration (``model.family: split``).

A split experiment file has the sections ``model`` (backbone, split point, bottleneck, optional local
weights), ``data`` (``imagefolder`` trees with the ImageNet transforms; ``digits`` from scikit-learn and
``fake`` from torchvision for CI) and ``train`` (the three stages: teacher
training, head distillation, fine-tuning with knowledge distillation). Keys and types are checked
with the helpers of :mod:`aeforge.config`, so errors name the file, line and dotted field, e.g.
``split.yaml:5: model.split_after: 'layer9' is not a stage of resnet18; valid: stem, layer1, ...``.

This module depends on PyYAML only (no torch), so the CLI can dispatch on ``model.family`` cheaply;
torchvision is imported only to name the file behind a weight enum in an error message.
"""

from __future__ import annotations

import dataclasses
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

DATA_SOURCES = ("digits", "fake", "imagefolder", "shapes", "coco", "voc")
DENSE_SOURCES = ("shapes", "coco", "voc")  # sources with boxes and masks (detection and segmentation tasks)
DEFAULT_TRAIN_SPLITS = {"coco": "train2017", "voc": "train"}
VOC_IMAGE_SETS = ("segmentation", "main")
TASK_KINDS: dict[str, str] = {"classification": "cls", "detection": "det", "segmentation": "seg"}
"""Task kinds of a multi-task split model (``model.tasks``) and their default task names."""
TASK_HEADS: dict[str, tuple[str, ...]] = {"classification": ("backbone",),
                                          "detection": ("fcos", "retinanet", "fasterrcnn"),
                                          "segmentation": ("fcn", "deeplabv3")}
"""The tail architectures of each task kind (the first is the default)."""
MULTITASK_BACKBONES = ("resnet18", "resnet50")
MULTITASK_SPLITS = ("stem", "layer1", "layer2")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
BOTTLENECKS = ("quantized", "entropic")
DEFAULT_BETA = 1e-3
TRAIN_CROPS = ("random_resized", "random", "center")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHT_ENUM = re.compile(
    r"^(?:(?P<enum>[A-Za-z0-9_]+_Weights)\.(?P<any>[A-Z0-9_]+)|(?P<member>IMAGENET1K_\w+|DEFAULT))$")


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
class TaskConfig:
    """One task tail of a multi-task split model (``model.tasks[i]``), fed by the shared code."""

    kind: str = "classification"  # classification | detection | segmentation
    name: str | None = None  # wire and file name (tail_NAME.onnx); default cls | det | seg
    loss_weight: float = 1.0  # weight of this task's loss in head distillation and joint fine-tuning
    head: str | None = None  # cls: backbone; detection: fcos | retinanet | fasterrcnn; segmentation: fcn | deeplabv3
    detections: int = 20  # detection: boxes kept per image after NMS
    score_threshold: float = 0.05  # detection: boxes below this score are dropped
    nms_iou: float = 0.5  # detection: IoU of per-class non-maximum suppression

    def check(self, where: str) -> TaskConfig:
        """Fill defaults; ConfigError naming ``where.field``."""
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        name = self.name if self.name is not None else TASK_KINDS[self.kind]
        if not isinstance(name, str) or not _TASK_NAME.match(name):
            raise ConfigError(f"{where}.name: expected 1-16 of a-z, 0-9, _ starting with a letter, got {name!r}")
        head = self.head if self.head is not None else TASK_HEADS[self.kind][0]
        if head not in TASK_HEADS[self.kind]:
            raise ConfigError(f"{where}.head: a {self.kind} tail is one of {', '.join(TASK_HEADS[self.kind])}, "
                              f"got {head!r}")
        weight = self.loss_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight)
                                                                                    and weight > 0):
            raise ConfigError(f"{where}.loss_weight: must be a positive number, got {weight!r}")
        if isinstance(self.detections, bool) or not isinstance(self.detections, int) or not 1 <= self.detections <= 100:
            raise ConfigError(f"{where}.detections: must be an integer in 1..100, got {self.detections!r}")
        for field_name in ("score_threshold", "nms_iou"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}.{field_name}: must be a number in [0, 1], got {value!r}")
        return TaskConfig(self.kind, name, float(weight), head, self.detections, float(self.score_threshold),
                          float(self.nms_iou))


def parse_tasks(raw: Any, where: str = "model.tasks") -> list[TaskConfig]:
    """``model.tasks`` (a list of mappings, or of kind names) as checked :class:`TaskConfig` objects."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of tasks (e.g. - kind: classification), got {raw!r}")
    known = [f.name for f in dataclasses.fields(TaskConfig)]
    tasks: list[TaskConfig] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if isinstance(item, TaskConfig):
            item = dataclasses.asdict(item)
        if isinstance(item, str):
            item = {"kind": item}
        if not isinstance(item, dict):
            raise ConfigError(f"{here}: expected a mapping with kind, name, loss_weight, ..., got {item!r}")
        for key in item:
            if key not in known:
                raise ConfigError(f"{here}.{key}: unknown key; known keys: {', '.join(known)}")
        tasks.append(TaskConfig(**item).check(here))
    names = [task.name for task in tasks]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(f"{where}[{index}].name: duplicate task name {name!r} (set name: to tell them apart)")
    return tasks


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
    weights: str | None = None  # local torchvision state_dict of the backbone (any class count; never downloaded)
    num_classes: int | None = None  # outputs of the model; None: the data's class count (checked when given)
    new_head: bool = False  # replace the checkpoint's classifier with a new one of num_classes outputs
    bottleneck: str = "quantized"  # quantized: C x B-bit packed code | entropic: Entropic Student, range-coded
    beta: float | None = None  # entropic: weight of the rate term (per bit per sample); default 1e-3
    tasks: list[TaskConfig] | None = None  # multi-task (Ladon-style): one head and code, a tail per task

    def __post_init__(self) -> None:
        if self.family != "split":
            raise ConfigError(f"model.family: expected 'split' in a split config, got {self.family!r}")
        check_split_point(self.backbone, self.split_after)
        if self.tasks is not None:
            object.__setattr__(self, "tasks", parse_tasks(self.tasks))
            if self.bottleneck != "quantized":
                raise ConfigError(f"model.bottleneck: model.tasks needs the quantized bottleneck, got "
                                  f"{self.bottleneck!r}")
            if self.backbone not in MULTITASK_BACKBONES:
                raise ConfigError(f"model.backbone: model.tasks supports {', '.join(MULTITASK_BACKBONES)}, got "
                                  f"{self.backbone!r}")
            if self.split_after not in MULTITASK_SPLITS:
                raise ConfigError(f"model.split_after: with model.tasks split after one of "
                                  f"{', '.join(MULTITASK_SPLITS)} (detection needs later stages), got "
                                  f"{self.split_after!r}")
            for name in ("weights", "num_classes"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"model.{name}: not supported with model.tasks (teachers train from scratch "
                                      "on the task data)")
        if self.bottleneck not in BOTTLENECKS:
            raise ConfigError(f"model.bottleneck: expected one of {', '.join(BOTTLENECKS)}, got {self.bottleneck!r}")
        if self.bottleneck == "entropic":
            if self.beta is None:
                object.__setattr__(self, "beta", DEFAULT_BETA)
            if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
                raise ConfigError(f"model.beta: must be a finite number >= 0, got {self.beta!r}")
            object.__setattr__(self, "beta", float(self.beta))
            object.__setattr__(self, "code_signed", True)  # the entropic code is signed integers (scale 1)
            if not 2 <= self.bits <= 12:
                raise ConfigError(f"model.bits: the entropic code's symbol range must be 2..12 bits, got {self.bits}")
        elif self.beta is not None:
            raise ConfigError("model.beta: only for model.bottleneck: entropic (the quantized code has no rate term)")
        if not 1 <= self.channels <= 4096:
            raise ConfigError(f"model.channels: must be in 1..4096, got {self.channels}")
        if not 2 <= self.bits <= 16:  # Brevitas exports a 1-bit quantizer as BipolarQuant (+-1), not a 0/1 code
            raise ConfigError(f"model.bits: must be in 2..16 (a 1-bit code exports as ONNX BipolarQuant, +-1, which "
                              f"is not a 0/1 code), got {self.bits}")
        if not 3 <= self.head_bits <= 8:
            raise ConfigError(f"model.head_bits: must be in 3..8 (exact in float32 ONNX), got {self.head_bits}")
        if self.encoder_channels is not None and self.encoder_channels < 1:
            raise ConfigError(f"model.encoder_channels: must be >= 1, got {self.encoder_channels}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"model.num_classes: must be >= 2, got {self.num_classes}")
        if self.weights is not None:
            if not self.weights.strip():
                raise ConfigError("model.weights: empty path")
            enum_error = weight_enum_message(self.weights, self.backbone)
            if enum_error:
                raise ConfigError(f"model.weights: {enum_error}")
        elif self.new_head:
            raise ConfigError("model.new_head: needs model.weights (a random model has no head to replace)")


def weight_enum_message(value: str, backbone: str) -> str | None:
    """What to do when ``model.weights`` names a torchvision weight enum (None when it looks like a path).

    The message names the file torchvision would download (from the enum's ``url``, without downloading)
    and tells the user to fetch it to any path and set ``model.weights`` to that path.
    """
    match = _WEIGHT_ENUM.match(value.strip())
    if match is None:
        return None
    url = None
    try:
        import torchvision.models as tvm

        weights = tvm.get_weight(value.strip()) if match.group("enum") else getattr(  # no download
            tvm.get_model_weights(backbone), match.group("member"))
        url = str(weights.url)
        enum_backbone = type(weights).__name__.removesuffix("_Weights").lower()
    except Exception:  # no torchvision, or an enum it does not know: name what we can
        enum_backbone = (match.group("enum") or f"{backbone}_Weights").removesuffix("_Weights").lower()
    parts = [f"{value!r} is a torchvision weight enum; aeforge never downloads weights at run time."]
    if url:
        name = url.rsplit("/", 1)[-1]
        parts.append(f"Fetch torchvision's file {name} ({url}) on a machine with network access, put it at any "
                     f"path (torchvision's own cache is ~/.cache/torch/hub/checkpoints/{name}) and set "
                     f"model.weights to that path.")
    else:
        parts.append("Download the .pth file this enum's `url` names, put it at any path and set model.weights "
                     "to that path.")
    if enum_backbone.replace("_", "") != backbone.replace("_", ""):
        parts.append(f"Note: these weights are for {enum_backbone}, but model.backbone is {backbone}.")
    return " ".join(parts)


@dataclass(frozen=True)
class SplitDataConfig:
    """Images: ``imagefolder`` (torchvision ImageFolder trees), ``digits`` (scikit-learn's 1797 8x8 digits,
    offline) or ``fake`` (random, smoke tests)."""

    source: str = "digits"
    image_size: int = 32  # network input (crop) size; digits are upsampled from 8x8 and repeated to 3 channels
    test_fraction: float = 0.25  # digits, fake, and imagefolder without val_dir
    split_seed: int = 0
    max_samples: int | None = None  # stratified subset (tests); imagefolder with val_dir: per split
    fake_size: int = 256  # fake: number of images
    fake_classes: int = 10
    train_dir: str | None = None  # imagefolder: ROOT/CLASS/IMAGE training tree
    val_dir: str | None = None  # imagefolder: evaluation tree with the same class folders; None: split train_dir
    resize: int | None = None  # imagefolder: shorter side before the centre crop; None: round(image_size / 0.875)
    train_crop: str = "random_resized"  # imagefolder training: random_resized | random | center
    hflip: bool = True  # imagefolder training: random horizontal flips
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # imagefolder normalisation (RGB)
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    workers: int = 0  # DataLoader worker processes (imagefolder)
    shapes_count: int = 400  # shapes: number of synthetic images (a few coloured squares, circles, triangles)
    shapes_per_image: int = 3  # shapes: at most this many shapes per image (at least 1)
    root: str | None = None  # coco: ROOT/annotations/instances_SPLIT.json + ROOT/SPLIT/; voc: the VOC2012 folder
    train_split: str | None = None  # coco, voc: training split (default train2017 | train)
    val_split: str | None = None  # coco, voc: evaluation split (e.g. val2017 | val); None: hold out test_fraction
    voc_image_set: str = "segmentation"  # voc: ImageSets/Segmentation (boxes and masks) | main (boxes only)
    eval_batch_size: int = 256  # evaluation batches; code bytes are always measured one image a blob

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source: expected one of {', '.join(DATA_SOURCES)}, got {self.source!r}")
        if not 8 <= self.image_size <= 512:
            raise ConfigError(f"data.image_size: must be in 8..512, got {self.image_size}")
        if self.source == "imagefolder":
            if not self.train_dir:
                raise ConfigError("data.train_dir: required for data.source imagefolder (a ROOT/CLASS/IMAGE tree)")
        else:
            for name in ("train_dir", "val_dir"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"data.{name}: only for data.source imagefolder (source is {self.source!r})")
        if self.resize is not None and not self.image_size <= self.resize <= 2048:
            raise ConfigError(f"data.resize: must be in {self.image_size}..2048 (>= image_size), got {self.resize}")
        if self.train_crop not in TRAIN_CROPS:
            raise ConfigError(f"data.train_crop: expected one of {', '.join(TRAIN_CROPS)}, got {self.train_crop!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (not isinstance(values, list) or len(values) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in values)):
                raise ConfigError(f"data.{name}: expected a list of 3 numbers (R, G, B), got {values!r}")
        for name in ("mean", "std"):
            object.__setattr__(self, name, [float(v) for v in getattr(self, name)])
        if not all(v > 0 for v in self.std):
            raise ConfigError(f"data.std: must be positive, got {self.std}")
        if self.workers < 0:
            raise ConfigError(f"data.workers: must be >= 0, got {self.workers}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"data.eval_batch_size: must be >= 1, got {self.eval_batch_size}")
        if not 0.0 < self.test_fraction < 0.9:
            raise ConfigError(f"data.test_fraction: must be in (0, 0.9), got {self.test_fraction}")
        if self.max_samples is not None and self.max_samples < 20:
            raise ConfigError(f"data.max_samples: must be >= 20, got {self.max_samples}")
        if self.fake_size < 20:
            raise ConfigError(f"data.fake_size: must be >= 20, got {self.fake_size}")
        if self.fake_classes < 2:
            raise ConfigError(f"data.fake_classes: must be >= 2, got {self.fake_classes}")
        if self.shapes_count < 20:
            raise ConfigError(f"data.shapes_count: must be >= 20, got {self.shapes_count}")
        if not 1 <= self.shapes_per_image <= 8:
            raise ConfigError(f"data.shapes_per_image: must be in 1..8, got {self.shapes_per_image}")
        if self.source == "shapes" and self.image_size < 32:
            raise ConfigError(f"data.image_size: shapes images must be >= 32 pixels, got {self.image_size}")
        if self.source in DEFAULT_TRAIN_SPLITS:
            if not self.root:
                raise ConfigError(f"data.root: required for data.source {self.source} (the data set's folder)")
            if self.train_split is None:
                object.__setattr__(self, "train_split", DEFAULT_TRAIN_SPLITS[self.source])
            for name in ("train_split", "val_split"):
                value = getattr(self, name)
                if value is not None and (not isinstance(value, str) or not re.match(r"^[\w.-]+$", value)):
                    raise ConfigError(f"data.{name}: expected a split name (letters, digits, _ . -), got {value!r}")
        else:
            for name in ("root", "train_split", "val_split"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"data.{name}: only for data.source coco or voc (source is {self.source!r})")
        if self.voc_image_set not in VOC_IMAGE_SETS:
            raise ConfigError(f"data.voc_image_set: expected one of {', '.join(VOC_IMAGE_SETS)}, "
                              f"got {self.voc_image_set!r}")


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
    tasks: list[TaskConfig] | None = None  # the same as model.tasks (either place, not both)

    def __post_init__(self) -> None:
        if self.tasks is not None:
            if self.model.tasks is not None:
                raise ConfigError("tasks: given both at the top level and as model.tasks; keep one")
            object.__setattr__(self, "model", dataclasses.replace(self.model, tasks=parse_tasks(self.tasks, "tasks")))
            object.__setattr__(self, "tasks", None)
        if self.model.tasks is not None:
            dense = [task.name for task in self.model.tasks if task.kind != "classification"]
            if dense and self.data.source not in DENSE_SOURCES:
                raise ConfigError(f"data.source: tasks {', '.join(dense)} need boxes and masks: use data.source "
                                  f"{' | '.join(DENSE_SOURCES)}, got {self.data.source!r}")
        if self.model.weights is None and self.train.teacher_epochs == 0:
            raise ConfigError("train.teacher_epochs: must be >= 1 when model.weights is not given "
                              "(the teacher must be trained first)")
        if self.model.new_head and self.train.teacher_epochs == 0:
            raise ConfigError("train.teacher_epochs: must be >= 1 with model.new_head (the new classifier "
                              "must be trained)")


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


def load_split_config(
    path: str | Path, overrides: dict[str, Any] | None = None, check_paths: bool = True
) -> SplitExperimentConfig:
    """Read a split experiment YAML file; ``overrides`` maps dotted keys to values applied on top.

    ``check_paths`` also checks that ``model.weights`` is a file and ``data.train_dir``/``val_dir`` are
    directories (relative paths are taken from the working directory), naming the file's line.
    """
    path = Path(path)
    text = read_yaml_text(path)
    config = parse_split_config(text, source=str(path), overrides=overrides)
    if check_paths:
        _, lines = compose_sections(text, str(path), overrides)
        check_config_paths(config, str(path), lines)
    return config


def check_config_paths(config: SplitExperimentConfig, source: str = "<config>",
                       lines: dict[str, int] | None = None) -> None:
    """Raise ``source:LINE: field: ...`` unless the configured weights file and image trees exist."""
    lines = lines or {}

    def fail(dotted: str, message: str) -> None:
        line = lines.get(dotted) or lines.get(dotted.split(".")[0])
        raise ConfigError(f"{source}:{line}: {dotted}: {message}" if line else f"{source}: {dotted}: {message}")

    if config.model.weights is not None and not Path(config.model.weights).expanduser().is_file():
        fail("model.weights", f"file not found: {config.model.weights} (from {Path.cwd()})")
    for name in ("train_dir", "val_dir"):
        value = getattr(config.data, name)
        if value is not None and not Path(value).expanduser().is_dir():
            fail(f"data.{name}", f"not a directory: {value} (from {Path.cwd()})")
    if config.data.root is not None and not Path(config.data.root).expanduser().is_dir():
        fail("data.root", f"not a directory: {config.data.root} (from {Path.cwd()})")


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
