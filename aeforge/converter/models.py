"""Modules of a converter experiment, all built from :class:`~aeforge.quantize.models.spec.SequentialSpec`.

The heavy classifier, the light classifier and the converter + light pipeline are
:class:`~aeforge.quantize.models.sequential.SequentialQuantModel` s (Brevitas, or their float twins),
so each exports, deploys and benchmarks like any other aeforge model. The pipeline is one model:
its first ``converter_layers`` layers are the converting autoencoder, the rest the light classifier;
:func:`forward_tap` returns its logits and the converted image. The heavy classifier's early exit
(:class:`ExitHead`) is a float dense head used only to label training images easy or hard.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from aeforge.quantize.models.sequential import INPUT_SOURCE, ResidualAdd, SequentialQuantModel, SquaredErrorSum
from aeforge.quantize.models.spec import Conv1DSpec, Conv2DSpec, DenseSpec, SequentialSpec


class ExitHead(nn.Module):
    """BranchyNet-style early exit: flatten the tapped activation, one dense layer to the class logits."""

    def __init__(self, features: int, classes: int = 10) -> None:
        super().__init__()
        self.dense = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x.flatten(1))


def forward_tap(model: SequentialQuantModel, x: torch.Tensor, tap: int | None) -> tuple[torch.Tensor, Any]:
    """``model(x)`` and the output of layer ``tap`` (None: no tap), as :meth:`SequentialQuantModel.forward`."""
    x = model.input_quant(x)
    kept: dict[str, torch.Tensor] = {INPUT_SOURCE: x}
    tapped = None
    for index, (layer, module) in enumerate(zip(model.spec.layers, model.layers, strict=True)):
        x = module(x, kept[module.source]) if isinstance(module, (ResidualAdd, SquaredErrorSum)) else module(x)
        kept[layer.name] = x
        if index == tap:
            tapped = x
    return x, tapped


def copy_layers(source: nn.Module, target: nn.Module, offset: int = 0, start: int = 0,
                stop: int | None = None) -> None:
    """Copy parameters ``layers.<i>.*`` of ``source`` (``start <= i < stop``) to ``layers.<i + offset>.*``."""
    state = target.state_dict()
    for key, value in source.state_dict().items():
        parts = key.split(".")
        if parts[0] != "layers":
            continue
        index = int(parts[1])
        if index < start or (stop is not None and index >= stop):
            continue
        state[".".join(["layers", str(index + offset), *parts[2:]])] = value.clone()
    target.load_state_dict(state)


def pipeline_part(pipeline: SequentialQuantModel, spec: SequentialSpec, start: int,
                  quantized: bool) -> SequentialQuantModel:
    """Layers ``start..start+len(spec.layers)`` of ``pipeline`` as a standalone model of ``spec``."""
    model = SequentialQuantModel(spec, quantized=quantized)
    copy_layers(pipeline, model, offset=-start, start=start, stop=start + len(spec.layers))
    return model.eval()


def macs(spec: SequentialSpec) -> int:
    """Multiply-accumulates of one inference (conv and dense layers)."""
    total = 0
    for layer, in_shape, out_shape in zip(spec.layers, spec.input_shapes(), spec.output_shapes(), strict=True):
        if isinstance(layer, (Conv1DSpec, Conv2DSpec)):
            kernel = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,)
            total += math.prod(out_shape) * math.prod(kernel) * in_shape[-1]
        elif isinstance(layer, DenseSpec):
            total += in_shape[0] * layer.units
    return total


def parameter_count(spec: SequentialSpec) -> int:
    """Weights and biases of the model of ``spec``."""
    return sum(p.numel() for p in SequentialQuantModel(spec, quantized=False).parameters())
