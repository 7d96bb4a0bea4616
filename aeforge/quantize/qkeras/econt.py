"""Recognise the ECON-T encoder among imported QKeras models (so it maps to aeforge's EcontEncoder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from aeforge.config import ModelConfig, QuantConfig
from aeforge.errors import AeforgeError
from aeforge.quantize.models.econt import IMAGE_SIZE, EcontEncoder
from aeforge.quantize.models.sequential import Conv2DSpec, DenseSpec, ReLUSpec, SequentialSpec, load_state


@dataclass(frozen=True)
class EcontImport:
    """The aeforge ECON-T encoder equivalent of an imported model."""

    model: ModelConfig
    quant: QuantConfig
    encoder_state_dict: dict[str, torch.Tensor] = field(repr=False)

    def build_encoder(self) -> EcontEncoder:
        """An :class:`EcontEncoder` with the imported (quantized) weights loaded."""
        encoder = EcontEncoder(self.model, self.quant)
        load_state(encoder, self.encoder_state_dict, where="imported ECON-T encoder")
        return encoder


def match_econt(
    spec: SequentialSpec, state_dict: Mapping[str, torch.Tensor]
) -> tuple[EcontImport | None, str | None]:
    """The aeforge ECON-T encoder equivalent of ``spec``, or None and the reason it is not one.

    ECON-T is ``input (8, 8, 1) -> QConv2D(same, square kernel, equal strides) -> quantized_relu ->
    Flatten -> QDense -> quantized_relu``, with one weight type and one bias type for both layers.
    """
    kinds = [layer.kind for layer in spec.layers]
    if kinds != ["conv2d", "relu", "flatten", "dense", "relu"]:
        return None, f"layers are {kinds}, ECON-T is conv2d, relu, flatten, dense, relu"
    conv, conv_act, _, dense, latent = spec.layers
    assert isinstance(conv, Conv2DSpec) and isinstance(dense, DenseSpec)
    assert isinstance(conv_act, ReLUSpec) and isinstance(latent, ReLUSpec)
    checks = [
        (spec.input.shape == (IMAGE_SIZE, IMAGE_SIZE, 1), f"input shape {spec.input.shape} is not (8, 8, 1)"),
        (conv.kernel_size[0] == conv.kernel_size[1], f"kernel {conv.kernel_size} is not square"),
        (conv.strides[0] == conv.strides[1], f"strides {conv.strides} differ"),
        (conv.padding == "same", "conv padding is not 'same'"),
        (conv.bias is not None and dense.bias is not None, "a layer has no bias"),
        (conv.weight == dense.weight, "conv and dense weight types differ"),
        (conv.bias == dense.bias, "conv and dense bias types differ"),
    ]
    for ok, reason in checks:
        if not ok:
            return None, reason
    assert conv.bias is not None
    try:
        model = ModelConfig(
            filters=conv.filters, kernel_size=conv.kernel_size[0], stride=conv.strides[0], latent_dim=dense.units
        )
        quant = QuantConfig(
            input=spec.input.type, weight=conv.weight, bias=conv.bias,
            conv_activation=conv_act.type, latent=latent.type,
        )
    except AeforgeError as error:
        return None, str(error)
    encoder_state = {
        "conv.weight": state_dict["layers.0.weight"], "conv.bias": state_dict["layers.0.bias"],
        "dense.weight": state_dict["layers.3.weight"], "dense.bias": state_dict["layers.3.bias"],
    }
    return EcontImport(model, quant, encoder_state), None
