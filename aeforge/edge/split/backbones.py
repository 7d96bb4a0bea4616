"""Torchvision backbones cut into stages, and their fixed-point (Brevitas) conversion for the head.

:func:`split_backbone` views a torchvision ResNet-18/50, MobileNetV2 or DenseNet-121 as ``front``
(stages up to and including ``split_after``) and ``back`` (the remaining stages, pooling and the
classifier), sharing the model's modules. :func:`quantize_front` converts the front to fixed point:
every convolution with its BatchNorm folded becomes a :class:`~aeforge.edge.split.bottleneck.QConv`,
a BatchNorm without a preceding convolution (DenseNet's pre-activations) a depthwise 1x1 ``QConv``,
and every convolution, activation, residual sum and average pool is followed by a calibrated
:class:`~aeforge.edge.split.bottleneck.QPoint` (unsigned after ReLU/ReLU6, signed otherwise). Unsigned
points get ``bits - 1`` bits, the non-negative half of a signed ``bits``-bit integer, so that an 8-bit
head maps to TensorRT INT8 exactly.
Max pooling, ReLU, ReLU6, concatenation and sums keep values on their grids.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aeforge.edge.split.config import SPLIT_POINTS, check_split_point
from aeforge.edge.split.fixed import QConv, QPoint, bn_as_conv, fold_conv_bn
from aeforge.errors import ArtifactError, ConfigError


def build_backbone(name: str, num_classes: int) -> nn.Module:
    """A randomly initialised torchvision ``name`` with ``num_classes`` outputs (uses torch's global RNG)."""
    import torchvision.models as tvm

    constructors = {
        "resnet18": tvm.resnet18, "resnet50": tvm.resnet50, "mobilenet_v2": tvm.mobilenet_v2,
        "densenet121": tvm.densenet121,
    }
    if name not in constructors:
        raise ConfigError(f"backbone: unknown backbone {name!r}; available: {', '.join(constructors)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes: must be >= 2, got {num_classes}")
    return constructors[name](weights=None, num_classes=num_classes)


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
"""DenseNet keys of torchvision's published files (``norm.1``) that its models now call ``norm1`` (as in
``torchvision.models.densenet._load_state_dict``)."""


def classifier_name(model: nn.Module) -> str:
    """Dotted name of ``model``'s classifier: its last ``nn.Linear`` (``fc``, ``classifier.1``, ``classifier``)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ConfigError(f"model.new_head: {type(model).__name__} has no nn.Linear classifier")
    return names[-1]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A local state dict (plain, or under ``state_dict``/``model``), loaded with ``weights_only``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights: file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ArtifactError(f"model.weights: {path}: not a readable PyTorch state dict: "
                            f"{type(error).__name__}: {error}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    elif isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ArtifactError(f"model.weights: {path}: expected a state dict (parameter name -> tensor)")
    return dict(loaded)


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
    return f"{label}: {shown}"


def load_backbone_weights(model: nn.Module, path: str | Path, *, new_head: bool = False) -> dict[str, Any]:
    """Load a local torchvision checkpoint into ``model``, checked key by key; returns what was done.

    Every key of the model must be in the file with the same shape (BatchNorm ``num_batches_tracked``
    may be absent, as in torchvision's older files; DenseNet's old ``norm.1`` names are renamed).
    With ``new_head`` the classifier (the last ``nn.Linear``) keeps its fresh initialisation, whatever
    the file's class count; its input width must still match. Raises :class:`ConfigError` for a missing
    file and :class:`ArtifactError` naming the missing, unexpected and mis-shaped keys.
    The returned record (for the run card) names the file, its sha256 and class count, and the keys
    loaded and re-initialised.
    """
    from aeforge.artifact import sha256_file

    path = Path(path).expanduser()
    loaded = read_state_dict(path)
    expected = model.state_dict()
    renamed = 0
    for key in list(loaded):
        match = _DENSENET_OLD_KEY.match(key)
        if match and key not in expected and match.group(1) + match.group(2) in expected:
            loaded[match.group(1) + match.group(2)] = loaded.pop(key)
            renamed += 1
    head = classifier_name(model)
    head_keys = {f"{head}.weight", f"{head}.bias"}
    file_classes = int(loaded[f"{head}.weight"].shape[0]) if f"{head}.weight" in loaded else None
    optional = {k for k in expected if k.endswith("num_batches_tracked")} | (head_keys if new_head else set())
    missing = sorted(set(expected) - set(loaded) - optional)
    unexpected = sorted(set(loaded) - set(expected))
    shapes, head_mismatch = [], False
    for key in sorted(set(loaded) & set(expected)):
        file_shape, model_shape = list(loaded[key].shape), list(expected[key].shape)
        if file_shape == model_shape or (new_head and key in head_keys and file_shape[1:] == model_shape[1:]):
            continue
        shapes.append(f"{key} (file {file_shape} vs model {model_shape})")
        head_mismatch |= key in head_keys and file_shape[1:] == model_shape[1:]
    if missing or unexpected or shapes:
        parts = [_listing(label, keys) for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]
        hint = ""
        if head_mismatch and not new_head:
            hint = (f". The file's classifier has {file_classes} classes and the model "
                    f"{expected[f'{head}.weight'].shape[0]}: set model.new_head: true to load the backbone and "
                    f"train a new classifier, or model.num_classes to the file's class count")
        raise ArtifactError(f"model.weights: {path}: does not match {type(model).__name__}: "
                            f"{'; '.join(parts)}{hint}")
    reinitialised = sorted(head_keys) if new_head else []
    state = {k: v for k, v in loaded.items() if k not in reinitialised}
    loaded_count = len(state)
    for key in optional | set(reinitialised):  # the model's own values: a fresh head, num_batches_tracked
        state.setdefault(key, expected[key])
    model.load_state_dict(state, strict=True)
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "file_classes": file_classes,
        "model_classes": int(expected[f"{head}.weight"].shape[0]),
        "loaded_tensors": loaded_count,
        "reinitialised": reinitialised,
        "renamed_keys": renamed,
    }


class SplitBackbone(nn.Module):
    """A backbone viewed as ``front`` (up to the split) and ``back`` (rest + classifier); modules are shared."""

    def __init__(self, front: nn.Sequential, back: nn.Sequential, nonnegative: bool) -> None:
        super().__init__()
        self.front = front
        self.back = back
        self.nonnegative = nonnegative  # the features at the split are >= 0 (they end in a ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x))


def backbone_stages(model: nn.Module, name: str) -> tuple[list[tuple[str, nn.Module, bool]], list[nn.Module]]:
    """``[(stage name, module, output >= 0)]`` of torchvision ``model`` and the head after the last stage."""
    if name.startswith("resnet"):
        stem = nn.Sequential(OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu, maxpool=model.maxpool))
        stages = [("stem", stem, True)] + [(f"layer{i}", getattr(model, f"layer{i}"), True) for i in range(1, 5)]
        return stages, [model.avgpool, nn.Flatten(1), model.fc]
    if name == "mobilenet_v2":
        last = len(model.features) - 1
        stages = [(f"features.{i}", block, i in (0, last)) for i, block in enumerate(model.features)]
        return stages, [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier]
    if name == "densenet121":
        f = model.features
        stem = nn.Sequential(OrderedDict(conv0=f.conv0, norm0=f.norm0, relu0=f.relu0, pool0=f.pool0))
        stages = [("stem", stem, True)] + [(n, m, False) for n, m in f.named_children() if n not in stem._modules]
        return stages, [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier]
    raise ConfigError(f"backbone: unknown backbone {name!r}; available: {', '.join(SPLIT_POINTS)}")


def split_backbone(model: nn.Module, name: str, split_after: str) -> SplitBackbone:
    """View torchvision ``model`` (backbone ``name``) split after stage ``split_after``."""
    check_split_point(name, split_after, "split_after")
    stages, classifier = backbone_stages(model, name)
    names = [stage for stage, _, _ in stages]
    cut = names.index(split_after) + 1
    front = nn.Sequential(OrderedDict((n.replace(".", "_"), m) for n, m, _ in stages[:cut]))
    rest = [(n.replace(".", "_"), m) for n, m, _ in stages[cut:]]
    rest += [(f"classifier_{i}", m) for i, m in enumerate(classifier)]
    return SplitBackbone(front, nn.Sequential(OrderedDict(rest)), nonnegative=stages[cut - 1][2])


# ------------------------------------------------------------------------------------ fixed-point conversion
class QResidual(nn.Module):
    """``post(body(x) + shortcut(x))``: a residual block on fixed-point values."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, post: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.post = post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.body(x) + self.shortcut(x))


class QDenseBlock(nn.Module):
    """A DenseNet block: each layer reads the concatenation of the input and all earlier layers' outputs."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def _flatten(modules: list[nn.Module]) -> list[nn.Module]:
    flat: list[nn.Module] = []
    for module in modules:
        if type(module) is nn.Sequential or type(module).__name__ in ("Conv2dNormActivation", "_Transition"):
            flat.extend(_flatten(list(module.children())))
        else:
            flat.append(module)
    return flat


def _convert_sequence(modules: list[nn.Module], bits: int, where: str) -> nn.Sequential:
    """Fixed-point version of a chain of Conv/BN/ReLU/pool layers (see the module docstring)."""
    flat = _flatten(modules)
    out: list[nn.Module] = []
    i = 0
    while i < len(flat):
        module = flat[i]
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            if isinstance(module, nn.Conv2d):
                bn = flat[i + 1] if i + 1 < len(flat) and isinstance(flat[i + 1], nn.BatchNorm2d) else None
                out.append(QConv(fold_conv_bn(module, bn), bits))
                i += 2 if bn is not None else 1
            else:
                out.append(QConv(bn_as_conv(module), bits))
                i += 1
            if i < len(flat) and isinstance(flat[i], (nn.ReLU, nn.ReLU6)):
                out.extend([copy.deepcopy(flat[i]), QPoint(bits - 1, signed=False)])
                i += 1
            else:
                out.append(QPoint(bits, signed=True))
        elif isinstance(module, (nn.ReLU, nn.ReLU6)):
            out.extend([copy.deepcopy(module), QPoint(bits - 1, signed=False)])
            i += 1
        elif isinstance(module, nn.MaxPool2d):
            out.append(copy.deepcopy(module))
            i += 1
        elif isinstance(module, nn.AvgPool2d):
            out.extend([copy.deepcopy(module), QPoint(bits, signed=True)])
            i += 1
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            i += 1
        else:
            raise ConfigError(f"{where}: layer {type(module).__name__} has no fixed-point conversion for the head")
    for layer in out:  # ReLU(inplace) would modify a QPoint's (shared) output
        if hasattr(layer, "inplace"):
            layer.inplace = False
    return nn.Sequential(*out)


def _convert_stage(module: nn.Module, bits: int, where: str) -> nn.Module:
    kind = type(module).__name__
    if kind == "BasicBlock":
        body = _convert_sequence([module.conv1, module.bn1, nn.ReLU(), module.conv2, module.bn2], bits, where)
    elif kind == "Bottleneck":
        body = _convert_sequence([module.conv1, module.bn1, nn.ReLU(), module.conv2, module.bn2, nn.ReLU(),
                                  module.conv3, module.bn3], bits, where)
    elif kind == "InvertedResidual":
        body = _convert_sequence(list(module.conv.children()), bits, where)
        if not module.use_res_connect:
            return body
        return QResidual(body, nn.Identity(), QPoint(bits, signed=True))
    elif kind == "_DenseBlock":
        layers = [_convert_sequence([layer.norm1, layer.relu1, layer.conv1, layer.norm2, layer.relu2, layer.conv2],
                                    bits, f"{where}.{name}") for name, layer in module.items()]
        return QDenseBlock(layers)
    elif isinstance(module, nn.BatchNorm2d):
        return _convert_sequence([module], bits, where)
    else:
        return _convert_sequence(list(module.children()) if isinstance(module, nn.Sequential) else [module],
                                 bits, where)
    shortcut: nn.Module = nn.Identity()
    if module.downsample is not None:
        shortcut = _convert_sequence(list(module.downsample.children()), bits, f"{where}.downsample")
    return QResidual(body, shortcut, nn.Sequential(nn.ReLU(), QPoint(bits - 1, signed=False)))


def quantize_front(view: SplitBackbone, bits: int) -> nn.Sequential:
    """Fixed-point copy of ``view.front`` (weights ``bits``-bit; activation points to be calibrated)."""
    stages: list[tuple[str, nn.Module]] = []
    for name, stage in view.front.named_children():
        blocks = stage.named_children() if type(stage).__name__ == "Sequential" and name.startswith("layer") else None
        if blocks is not None:  # a ResNet layer: a sequence of residual blocks
            converted: nn.Module = nn.Sequential(OrderedDict((n, _convert_stage(b, bits, f"{name}.{n}"))
                                                             for n, b in blocks))
        else:
            converted = _convert_stage(stage, bits, name)
        stages.append((name, converted))
    return nn.Sequential(OrderedDict(stages))


def describe(view: SplitBackbone) -> dict[str, Any]:
    """Parameter counts of the front and back (for cards)."""
    return {"front_params": sum(p.numel() for p in view.front.parameters()),
            "back_params": sum(p.numel() for p in view.back.parameters())}
