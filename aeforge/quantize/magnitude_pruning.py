"""Unstructured magnitude pruning with fixed masks, for hardware that skips zero weights.

A fully parallel RTL multiplier block (da4ml) costs adders per non-zero digit of each constant weight,
so a weight that is exactly zero costs nothing. :func:`magnitude_masks` keeps the largest ``1 - sparsity``
fraction of each layer's weights (by absolute value); :class:`WeightMasks` holds them at zero while a
model trains (a forward pre-hook re-applies the mask before every forward pass, so the optimizer's
updates of pruned weights never reach an output) and :meth:`WeightMasks.apply` bakes them in. A zero
weight is on every fixed-point grid, so the pruned model exports and verifies like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from aeforge.errors import ConfigError

MIN_KEPT_PER_OUTPUT = 1
"""Every output unit keeps at least this many inputs, so no unit is cut off from its inputs entirely."""


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules with a multiplying ``weight`` (linear and convolution layers), by qualified name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.weight is not None}


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per-layer boolean keep-masks that zero the ``sparsity`` fraction of smallest-magnitude weights.

    Each layer is pruned to the same fraction (a global threshold would empty the narrow latent
    layers first); each output unit keeps at least :data:`MIN_KEPT_PER_OUTPUT` weight.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"train.sparsity: must be in [0, 1), got {sparsity!r}")
    masks: dict[str, torch.Tensor] = {}
    for name, module in prunable_layers(model).items():
        weight = module.weight.detach().abs()
        keep = max(round(weight.numel() * (1.0 - sparsity)), weight.shape[0] * MIN_KEPT_PER_OUTPUT)
        threshold_index = weight.numel() - keep
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        order = torch.argsort(weight.flatten(), stable=True)
        mask[order[threshold_index:]] = True
        mask = mask.view_as(weight)
        per_output = weight.flatten(1)
        best = per_output.argmax(dim=1)  # each output keeps its largest weight
        flat = mask.view(weight.shape[0], -1)
        flat[torch.arange(weight.shape[0]), best] = True
        masks[name] = mask
    return masks


class WeightMasks:
    """Fixed keep-masks for the named layers of one model (see :func:`magnitude_masks`)."""

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks

    def _layers(self, model: nn.Module) -> dict[str, nn.Module]:
        layers = prunable_layers(model)
        missing = sorted(set(self.masks) - set(layers))
        if missing:
            raise ConfigError(f"pruning masks name layers the model lacks: {', '.join(missing)}")
        for name, mask in self.masks.items():
            if tuple(layers[name].weight.shape) != tuple(mask.shape):
                raise ConfigError(f"pruning mask of {name}: shape {tuple(mask.shape)} does not match the weight "
                                  f"{tuple(layers[name].weight.shape)}")
        return layers

    def apply(self, model: nn.Module) -> None:
        """Set the pruned weights of ``model`` to exactly zero."""
        layers = self._layers(model)
        with torch.no_grad():
            for name, mask in self.masks.items():
                layers[name].weight.mul_(mask.to(layers[name].weight.dtype))

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:
        """Keep the pruned weights of ``model`` at zero in every forward pass while inside the block."""
        layers = self._layers(model)
        handles = []
        for name, mask in self.masks.items():
            def _hook(module: nn.Module, _inputs: Any, keep: torch.Tensor = mask) -> None:
                with torch.no_grad():
                    module.weight.mul_(keep.to(module.weight.dtype))
            handles.append(layers[name].register_forward_pre_hook(_hook))
        try:
            self.apply(model)
            yield model
        finally:
            for handle in handles:
                handle.remove()
            self.apply(model)

    def density(self) -> float:
        """Fraction of the masked weights that are kept."""
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        total = sum(mask.numel() for mask in self.masks.values())
        return kept / total if total else 1.0


def weight_density(model: nn.Module) -> float:
    """Fraction of non-zero weights over the linear and convolution layers of ``model``."""
    layers = prunable_layers(model)
    nonzero = sum(int(torch.count_nonzero(m.weight.detach())) for m in layers.values())
    total = sum(m.weight.numel() for m in layers.values())
    return nonzero / total if total else 1.0
