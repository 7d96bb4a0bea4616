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


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict (plain, or under ``state_dict``/``model``) into ``model``, strictly.

    Raises :class:`ConfigError` for a missing file and :class:`ArtifactError` naming the missing,
    unexpected and mis-shaped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.weights: file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ArtifactError(f"{path}: not a readable PyTorch state dict: {type(error).__name__}: {error}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    elif isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ArtifactError(f"{path}: expected a state dict (parameter name -> tensor)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    shapes = sorted(f"{k} (file {list(loaded[k].shape)} vs model {list(expected[k].shape)})"
                    for k in set(loaded) & set(expected) if loaded[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise ArtifactError(f"{path}: weights do not match {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(loaded)


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
