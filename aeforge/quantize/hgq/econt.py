"""Heterogeneous-quantization training of the ECON-T encoder, and its frozen hardware twin.

:class:`HgqEncoder` has the parameters of :class:`~aeforge.quantize.models.econt.EcontEncoder`
(``conv.weight``, ``dense.weight``, ... : a float checkpoint initialises it) plus learned
fractional bits: per conv/dense weight (or per output channel) inside the container ``quant.weight``,
and one for the conv activation inside ``quant.conv_activation``. The input, the biases and the
latent keep their configured types (the input and latent are the chip's ports).

:meth:`HgqEncoder.freeze` returns a plain ``EcontEncoder`` whose weights already sit on their own
grids and whose layer types are the narrowest that hold them (``layer_types``): QONNX, hls4ml,
da4ml and onnxruntime see an ordinary fixed-point model, so the same verification applies, and it
equals this encoder's eval output bit for bit. :meth:`HgqEncoder.ebops` is the differentiable
resource estimate (HGQ's EBOPs with the learned widths; see :mod:`aeforge.quantize.hgq.ebops`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch.nn import functional as F

from aeforge.config import HgqConfig, ModelConfig, QuantConfig
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.hgq.ebops import beta_at, layer_ebops, tap_counts
from aeforge.quantize.hgq.quantizers import (
    FracBits,
    activation_frac_range,
    fixed_fake_quant,
    relu_fake_quant,
    tight_weight_type,
    weight_bits,
    weight_fake_quant,
    weight_frac_range,
)
from aeforge.quantize.models.econt import IMAGE_SIZE, EcontAutoencoder, EcontEncoder
from aeforge.quantize.models.spec import SequentialSpec, same_padding


def _init_bits(value: float | None, default: int, low: int, high: int, where: str) -> float:
    from aeforge.errors import ConfigError

    init = float(default if value is None else value)
    if not low <= init <= high:
        raise ConfigError(f"{where}: must be in [{low}, {high}] (the container type's range), got {init}")
    return init


class HgqEncoder(EcontEncoder):
    """The ECON-T encoder with learned per-weight / per-layer fractional bits (train it, then :meth:`freeze`)."""

    def __init__(self, model: ModelConfig, quant: QuantConfig, hgq: HgqConfig | None = None) -> None:
        super().__init__(model, quant)
        self.hgq = hgq or model.hgq
        self.weight_container = quant.weight
        self.act_container = quant.conv_activation
        w_low, w_high = weight_frac_range(quant.weight)
        a_low, a_high = activation_frac_range(quant.conv_activation)
        w_init = _init_bits(self.hgq.init_weight_frac_bits, w_high, w_low, w_high, "model.hgq.init_weight_frac_bits")
        a_init = _init_bits(self.hgq.init_activation_frac_bits, a_high, a_low, a_high,
                            "model.hgq.init_activation_frac_bits")
        scale = self.hgq.bits_lr_scale
        per_channel = self.hgq.weight_granularity == "channel"

        def bits_shape(weight: torch.Tensor) -> tuple[int, ...]:
            return (weight.shape[0],) + (1,) * (weight.dim() - 1) if per_channel else tuple(weight.shape)

        self.conv_bits = FracBits(bits_shape(self.conv.weight), w_init, w_low, w_high, scale)
        self.dense_bits = FracBits(bits_shape(self.dense.weight), w_init, w_low, w_high, scale)
        self.act_bits = FracBits((), a_init, a_low, a_high, scale)
        pads = same_padding(IMAGE_SIZE, model.kernel_size, model.stride)
        counts = tap_counts((IMAGE_SIZE, IMAGE_SIZE), (model.kernel_size,) * 2, (model.stride,) * 2, (pads, pads))
        self.register_buffer("conv_taps", torch.as_tensor(counts, dtype=torch.float32), persistent=False)

    # ---------------------------------------------------------------------------- forward
    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantized conv weight and bias, dense weight and bias (differentiable)."""
        int_bits = self.weight_container.int_bits
        types = self.layer_types
        return (weight_fake_quant(self.conv.weight, self.conv_bits(), int_bits),
                fixed_fake_quant(self.conv.bias, types["conv.bias"]),
                weight_fake_quant(self.dense.weight, self.dense_bits(), int_bits),
                fixed_fake_quant(self.dense.bias, types["dense.bias"]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        conv_w, conv_b, dense_w, dense_b = self._weights()
        x = self.input_quant(images)
        x = F.conv2d(self.pad(x), conv_w, conv_b, stride=self.model_config.stride)
        x = relu_fake_quant(x, self.act_bits(), self.act_container.int_bits)
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels-last flatten, as Keras/hls4ml
        return self.latent_act(F.linear(x, dense_w, dense_b))

    # ---------------------------------------------------------------------------- resources
    def ebops(self) -> torch.Tensor:
        """Differentiable EBOPs with the current widths (conv: input type bits x weight bits per real tap)."""
        conv_w, _, dense_w, _ = self._weights()
        conv_bits = weight_bits(conv_w, self.conv_bits().expand_as(conv_w))
        dense_bits = weight_bits(dense_w, self.dense_bits().expand_as(dense_w))
        act_bits = self.act_container.int_bits + self.act_bits()
        conv = layer_ebops(conv_bits, float(self.layer_types["input_quant"].bits), self.conv_taps)
        return conv + layer_ebops(dense_bits, act_bits)

    # ---------------------------------------------------------------------------- hardware twin
    def frozen_types(self) -> dict[str, FixedPoint]:
        """Per-layer types of the frozen encoder: tight weight containers and the learned activation width."""
        with torch.no_grad():
            conv_w, _, dense_w, _ = self._weights()
        act_frac = int(self.act_bits.integers().item())
        act_int = self.act_container.int_bits
        return {
            "conv.weight": tight_weight_type(conv_w, self.weight_container),
            "dense.weight": tight_weight_type(dense_w, self.weight_container),
            "conv_act": dataclasses.replace(self.act_container, bits=act_int + act_frac, int_bits=act_int),
        }

    def freeze(self) -> EcontEncoder:
        """The plain :class:`EcontEncoder` that computes exactly what this encoder computes in eval mode."""
        with torch.no_grad():
            conv_w, conv_b, dense_w, dense_b = self._weights()
        encoder = EcontEncoder(self.model_config, self.quant_config, layer_types=self.frozen_types())
        with torch.no_grad():
            for target, value in ((encoder.conv.weight, conv_w), (encoder.conv.bias, conv_b),
                                  (encoder.dense.weight, dense_w), (encoder.dense.bias, dense_b)):
                target.copy_(value)
        return encoder.train(self.training)

    def sequential_spec(self) -> SequentialSpec:
        return self.freeze().sequential_spec()

    def as_sequential(self) -> Any:
        return self.freeze().as_sequential()

    def fixed_point_types(self) -> dict[str, str]:
        return self.freeze().fixed_point_types()

    def bit_summary(self) -> dict[str, Any]:
        """Learned widths for the card: kept weights, mean bits of kept weights, activation type."""
        with torch.no_grad():
            conv_w, _, dense_w, _ = self._weights()
            out: dict[str, Any] = {}
            for name, w, bits in (("conv", conv_w, self.conv_bits), ("dense", dense_w, self.dense_bits)):
                b = weight_bits(w, bits.integers().expand_as(w))
                kept = int((w != 0).sum().item())
                out[name] = {"weights": w.numel(), "kept": kept,
                             "mean_bits_kept": round(float(b.sum().item()) / max(kept, 1), 3)}
            out["conv_act"] = self.frozen_types()["conv_act"].ap_type()
        return out


class HgqAutoencoder(EcontAutoencoder):
    """ECON-T autoencoder whose encoder is an :class:`HgqEncoder`; the decoder is unchanged.

    The training loop finds :meth:`resource_penalty` (``beta(epoch) * EBOPs``, added to the loss) and
    :meth:`selection_penalty` (``beta * EBOPs`` at the final beta, added to the validation score so
    that the restored best epoch trades quality against resources the way the loss does).
    """

    def __init__(self, model: ModelConfig, quant: QuantConfig) -> None:
        super().__init__(model, quant)
        self.encoder = HgqEncoder(model, quant, model.hgq)

    @property
    def cost_ramp_epochs(self) -> int:
        """QAT epochs before beta reaches its final value (the training loop picks its best epoch after)."""
        h = self.encoder.hgq
        return h.beta_warmup_epochs + max(h.beta_ramp_epochs - 1, 0)

    def beta(self, epoch: int) -> float:
        h = self.encoder.hgq
        return beta_at(epoch, h.beta, h.beta_warmup_epochs, h.beta_ramp_epochs, h.beta_start)

    def resource_penalty(self, epoch: int) -> torch.Tensor | float:
        """``beta(epoch) * EBOPs`` (differentiable; 0 while the cost is off)."""
        beta = self.beta(epoch)
        return beta * self.encoder.ebops() if beta > 0 else 0.0

    @torch.no_grad()
    def selection_penalty(self) -> float:
        """``beta * EBOPs`` with the final beta (a number, for choosing the best epoch)."""
        return float(self.encoder.hgq.beta * self.encoder.ebops())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Missing bit-width parameters (a float or uniform checkpoint) keep their initial values."""
        merged = {**self.state_dict(), **state_dict}
        return super().load_state_dict(merged, strict=strict, assign=assign)

    def freeze(self) -> EcontAutoencoder:
        """The plain autoencoder: the frozen encoder and this decoder (weights copied)."""
        model = EcontAutoencoder(self.encoder.model_config, self.encoder.quant_config)
        model.encoder = self.encoder.freeze()
        model.decoder.load_state_dict(self.decoder.state_dict())
        return model.train(self.training)

