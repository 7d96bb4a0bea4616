"""The CMS HGCAL ECON-T autoencoder in Brevitas.

Encoder (on detector, what goes into the ASIC/FPGA)::

    input quantizer -> zero pad (TensorFlow SAME: bottom/right only) -> Conv2D(filters, k, stride)
    -> quantized ReLU -> flatten channels-last (as QKeras/hls4ml) -> Dense(latent_dim)
    -> quantized ReLU (the latent code)

Every quantizer is built from a :class:`~aeforge.fixedpoint.FixedPoint` in
:class:`~aeforge.config.QuantConfig` (defaults: input ``ap_fixed<11,4>``, weights and biases
``ap_fixed<6,2>``, conv output ``ap_ufixed<12,3>``, latent ``ap_ufixed<9,1>``). With
``quant=None`` the same layers run unquantized (the float reference), with identical parameter
names so a float checkpoint initialises QAT.

The decoder (off detector) mirrors the encoder: Dense -> ConvTranspose2D (stride 2) -> Conv2D to
one channel, float by default or with quantized weights.

Tensors: the encoder takes channels-first images ``(N, 1, 8, 8)``; the autoencoder takes and
returns ``(N, 48)`` charges in calQ order (the 8x8 arrangement and its mask are applied inside).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from aeforge.config import ModelConfig, QuantConfig
from aeforge.data.hgcal.geometry import arrange_8x8, mask_8x8, remap_8x8
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.sequential import SequentialQuantModel
from aeforge.quantize.models.spec import (
    Conv2DSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    ReLUSpec,
    SequentialSpec,
    same_padding,
)
from aeforge.quantize.quantizers import brevitas_quant

IMAGE_SIZE = 8


def _weight_kwargs(quant: QuantConfig | None, where: str, types: Mapping[str, FixedPoint] | None = None) -> dict:
    if quant is None:
        return {"weight_quant": None, "bias_quant": None}
    types = types or {}
    weight = types.get(f"{where}.weight", quant.weight)
    bias = types.get(f"{where}.bias", quant.bias)
    return {
        "weight_quant": brevitas_quant(weight, "weight", where=f"{where}.weight"),
        "bias_quant": brevitas_quant(bias, "bias", where=f"{where}.bias"),
    }


ENCODER_TYPE_KEYS = ("input_quant", "conv.weight", "conv.bias", "conv_act", "dense.weight", "dense.bias", "latent_act")


def encoder_types(quant: QuantConfig, overrides: Mapping[str, FixedPoint] | None = None) -> dict[str, FixedPoint]:
    """Quantizer name -> type: ``quant``'s types with per-layer ``overrides`` (e.g. a frozen HGQ encoder's)."""
    types = {"input_quant": quant.input, "conv.weight": quant.weight, "conv.bias": quant.bias,
             "conv_act": quant.conv_activation, "dense.weight": quant.weight, "dense.bias": quant.bias,
             "latent_act": quant.latent}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ValueError(f"unknown encoder quantizer {key!r}; expected one of {', '.join(ENCODER_TYPE_KEYS)}")
        types[key] = value
    return types


def _relu(spec: FixedPoint | None, where: str) -> QuantReLU:
    act_quant = None if spec is None else brevitas_quant(spec, "act", where=where)
    return QuantReLU(act_quant=act_quant, return_quant_tensor=False)


class EcontEncoder(nn.Module):
    """The on-detector encoder; ``quant=None`` builds the float reference.

    ``layer_types`` overrides single quantizers (keys of :data:`ENCODER_TYPE_KEYS`), e.g. the
    per-layer types of a frozen heterogeneous-quantized encoder (:mod:`aeforge.quantize.hgq`).
    """

    def __init__(self, model: ModelConfig, quant: QuantConfig | None,
                 layer_types: Mapping[str, FixedPoint] | None = None) -> None:
        super().__init__()
        self.model_config = model
        self.quant_config = quant
        self.layer_types = None if quant is None else encoder_types(quant, layer_types)
        types = self.layer_types or {}
        input_quant = None if quant is None else brevitas_quant(types["input_quant"], "act", where="input_quant")
        self.input_quant = QuantIdentity(act_quant=input_quant, return_quant_tensor=False)
        before, after = same_padding(IMAGE_SIZE, model.kernel_size, model.stride)
        self.pad = nn.ZeroPad2d((before, after, before, after))
        self.conv = QuantConv2d(
            1, model.filters, model.kernel_size, stride=model.stride, padding=0, bias=True,
            **_weight_kwargs(quant, "conv", types),
        )
        self.conv_act = _relu(types.get("conv_act"), "conv_act")
        self.conv_out_size = math.ceil(IMAGE_SIZE / model.stride)
        self.dense = QuantLinear(
            model.filters * self.conv_out_size**2, model.latent_dim, bias=True,
            **_weight_kwargs(quant, "dense", types),
        )
        self.latent_act = _relu(types.get("latent_act"), "latent_act")

    @property
    def quantized(self) -> bool:
        return self.quant_config is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, channels-first: ``(1, 8, 8)``."""
        return (1, IMAGE_SIZE, IMAGE_SIZE)

    @property
    def input_type(self) -> FixedPoint | None:
        """Fixed-point type of the input port (None for the float model)."""
        return None if self.layer_types is None else self.layer_types["input_quant"]

    @property
    def output_type(self) -> FixedPoint | None:
        """Fixed-point type of the output port, the latent code (None for the float model)."""
        return None if self.layer_types is None else self.layer_types["latent_act"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(images)
        x = self.conv_act(self.conv(self.pad(x)))
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels-last flatten, as Keras/hls4ml
        return self.latent_act(self.dense(x))

    def sequential_spec(self) -> SequentialSpec:
        """The encoder as a :class:`SequentialSpec` (the form every hardware generator reads)."""
        t = self.layer_types
        if t is None:
            raise ValueError("the float encoder has no fixed-point spec")
        m = self.model_config
        return SequentialSpec(input=InputSpec(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), type=t["input_quant"]), layers=(
            Conv2DSpec(name="conv", filters=m.filters, kernel_size=m.kernel_size, strides=m.stride,
                       padding="same", weight=t["conv.weight"], bias=t["conv.bias"]),
            ReLUSpec(name="conv_act", type=t["conv_act"]),
            FlattenSpec(name="flatten"),
            DenseSpec(name="dense", units=m.latent_dim, weight=t["dense.weight"], bias=t["dense.bias"]),
            ReLUSpec(name="latent_act", type=t["latent_act"]),
        ))

    def as_sequential(self) -> SequentialQuantModel:
        """An equal :class:`SequentialQuantModel` (same weights; bit-exact on every input)."""
        model = SequentialQuantModel(self.sequential_spec())
        state = {"layers.0.weight": self.conv.weight, "layers.0.bias": self.conv.bias,
                 "layers.3.weight": self.dense.weight, "layers.3.bias": self.dense.bias}
        with torch.no_grad():
            for name, tensor in model.named_parameters():
                if name in state:
                    tensor.copy_(state[name])
        return model.train(self.training)

    def fixed_point_types(self) -> dict[str, str]:
        """Layer -> hardware type string, for cards and exporters (empty for the float model)."""
        if self.layer_types is None:
            return {}
        return {key: self.layer_types[key].ap_type() for key in ENCODER_TYPE_KEYS}


class EcontDecoder(nn.Module):
    """Off-detector decoder: latent ``(N, latent_dim)`` -> image ``(N, 1, 8, 8)``."""

    def __init__(self, model: ModelConfig, quant: QuantConfig | None) -> None:
        super().__init__()
        quant = quant if model.decoder == "quantized" else None
        self.spatial = math.ceil(IMAGE_SIZE / model.stride)
        self.filters = model.filters
        self.dense = QuantLinear(
            model.latent_dim, model.filters * self.spatial**2, bias=True, **_weight_kwargs(quant, "decoder.dense")
        )
        self.dense_act = _relu(None if quant is None else quant.conv_activation, "decoder.dense_act")
        self.deconv = QuantConvTranspose2d(
            model.filters, model.decoder_filters, model.kernel_size, stride=model.stride,
            padding=model.kernel_size // 2, output_padding=model.stride - 1, bias=True,
            **_weight_kwargs(quant, "decoder.deconv"),
        )
        self.deconv_act = _relu(None if quant is None else quant.conv_activation, "decoder.deconv_act")
        self.out = QuantConv2d(
            model.decoder_filters, 1, model.kernel_size, padding=model.kernel_size // 2, bias=True,
            **_weight_kwargs(quant, "decoder.out"),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.dense_act(self.dense(latent))
        x = x.view(-1, self.spatial, self.spatial, self.filters).permute(0, 3, 1, 2)
        x = self.deconv_act(self.deconv(x))
        return self.out(x)


class EcontAutoencoder(nn.Module):
    """Encoder + decoder on calQ-ordered charges ``(N, 48)``."""

    def __init__(self, model: ModelConfig, quant: QuantConfig | None) -> None:
        super().__init__()
        self.encoder = EcontEncoder(model, quant)
        self.decoder = EcontDecoder(model, quant)
        mask = torch.as_tensor(mask_8x8(), dtype=torch.float32)
        self.register_buffer("arrange", torch.as_tensor(arrange_8x8(), dtype=torch.long), persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("remap", torch.as_tensor(remap_8x8(), dtype=torch.long), persistent=False)

    def to_images(self, calq: torch.Tensor) -> torch.Tensor:
        """``(N, 48)`` calQ charges -> ``(N, 1, 8, 8)`` encoder input with masked duplicates zeroed."""
        return (calq[:, self.arrange] * self.mask).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)

    def from_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 8, 8)`` -> ``(N, 48)`` calQ order (the masked positions are dropped)."""
        return images.reshape(images.shape[0], -1)[:, self.remap]

    def encode(self, calq: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.to_images(calq))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.from_images(self.decoder(latent))

    def forward(self, calq: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(calq))


def build_autoencoder(model: ModelConfig, quant: QuantConfig | None) -> EcontAutoencoder:
    """The ECON-T autoencoder; ``quant=None`` gives the float model with the same parameter names.

    With ``model.quantization: hgq`` the quantized model is the heterogeneous-quantization trainer
    (:class:`aeforge.quantize.hgq.econt.HgqAutoencoder`; ``freeze()`` gives the hardware twin).
    """
    if quant is not None and model.quantization == "hgq":
        from aeforge.quantize.hgq.econt import HgqAutoencoder

        return HgqAutoencoder(model, quant)
    return EcontAutoencoder(model, quant)


def reconstruct(model: EcontAutoencoder, events: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Autoencoder reconstruction of ``(N, 48)`` normalised events, clipped at zero."""
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(events), batch_size):
            batch = torch.as_tensor(events[start : start + batch_size], dtype=torch.float32)
            parts.append(torch.relu(model(batch)).double().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, events.shape[1]))
