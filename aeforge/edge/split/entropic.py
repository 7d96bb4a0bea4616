"""The Entropic Student bottleneck (Matsubara et al.): a learned factorized prior over an integer code.

``model.bottleneck: entropic`` builds an :class:`EntropicSplitModel`: the same fixed-point head as the
quantized bottleneck, but its encoder ends in a code point of ``B``-bit signed **integers** (scale 1, no
ReLU), and a CompressAI ``EntropyBottleneck`` (Ballé's factorized prior, one density per channel) models
those integers. Training (two stages, :mod:`aeforge.edge.split.train`):

a. head distillation: ``MSE(decoder(code), teacher features) + beta * rate``;
b. fine-tuning: ``KD loss + beta * rate``;

with ``rate = -sum(log2 p(y + u)) / N`` bits per sample, ``u ~ U(-1/2, 1/2)`` (additive noise for the
likelihood), while the decoder sees the rounded code (straight-through rounding of the code point), as
at inference. The prior's parameters learn :data:`PRIOR_LR_SCALE` times faster than the network
(:meth:`EntropicSplitModel.optimizer_groups`): the rate only pulls the code towards zero where the prior
is peaked, and a prior still near its wide initial density (CompressAI's ``init_scale`` 10) is flat over
the code, so with the network's learning rate the few hundred steps of a split training left the rate at
its starting ~3-4 bits per symbol whatever ``beta`` was.
After training, :meth:`EntropicSplitModel.finalize_tables` freezes the prior into integer
CDF tables (:mod:`aeforge.edge.split.entropy_coder`) kept in the state dict (buffer ``cdf``), so the
tables the run reports bytes with are the ones the export ships.

CompressAI is needed to train and to reload the model for export (``pip install --no-deps
compressai==1.2.8`` plus ``einops pytorch-msssim torch-geometric``: CompressAI 1.2.8 declares numpy<2 but
runs with numpy 2); serving and the device head need only numpy, onnxruntime and constriction.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from aeforge.edge.split.bottleneck import SplitHead, SplitModel, SplitSpec, SplitTail, build_split_model
from aeforge.edge.split.entropy_coder import HEADER_BYTES, EntropyCodec, EntropySpec, cdf_from_pmf, ideal_bits
from aeforge.edge.split.fixed import QPoint, calibrate
from aeforge.errors import ArtifactError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint

INITIAL_CODE_STD = 1.0
"""The encoder's last convolution is rescaled so that the code starts with this spread (in code steps)."""
PRIOR_LR_SCALE = 10.0
"""Learning rate of the prior's parameters, relative to the network's (see the module docstring)."""


def entropy_bottleneck(channels: int) -> nn.Module:
    """CompressAI's ``EntropyBottleneck`` (factorized prior) for ``channels``; ToolUnavailableError without it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compressai's import warns about torch.jit.script deprecation
            from compressai.entropy_models import EntropyBottleneck
    except ImportError as exc:
        raise ToolUnavailableError(
            "model.bottleneck: entropic needs CompressAI's EntropyBottleneck to train or reload the model: "
            "pip install --no-deps compressai==1.2.8 && pip install einops pytorch-msssim torch-geometric "
            f"(CompressAI 1.2.8 declares numpy<2 but works with numpy 2) [{exc}]") from None
    return EntropyBottleneck(channels)


class EntropicSplitModel(SplitModel):
    """A split model whose code is ``B``-bit signed integers under a learned factorized prior (``entropy``)."""

    def __init__(self, spec: SplitSpec, head: SplitHead, tail: SplitTail, teacher: nn.Module,
                 entropy: nn.Module) -> None:
        super().__init__(spec, head, tail, teacher)
        self.entropy = entropy
        self.register_buffer("cdf", torch.zeros(spec.channels, (1 << spec.bits) + 1, dtype=torch.int64))

    @property
    def min_symbol(self) -> int:
        """The smallest code (``-2**(B-1)``)."""
        return -(1 << (self.spec.bits - 1))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder output before the code point (float, in code steps)."""
        head = self.head
        return head.encoder[:-1](head.front(head.input_quant(x)))

    def rate_bits(self, latent: torch.Tensor) -> torch.Tensor:
        """``-sum(log2 p(latent + noise))`` per sample under the prior (the training rate term)."""
        _, likelihood = self.entropy(latent, training=True)
        return -torch.log2(likelihood).sum() / latent.shape[0]

    def optimizer_groups(self, params: Iterable[nn.Parameter], lr: float) -> list[dict[str, Any]]:
        """``params`` as optimizer groups: the prior's at ``PRIOR_LR_SCALE * lr``, the others at ``lr``.

        (The prior's ``quantiles`` get no gradient: the CDF tables are evaluated at every symbol, so the
        aux loss that fits them for CompressAI's own coder is not needed.)
        """
        prior = {id(parameter) for parameter in self.entropy.parameters()}
        params = list(params)
        groups = [{"params": [p for p in params if id(p) not in prior], "lr": lr},
                  {"params": [p for p in params if id(p) in prior], "lr": PRIOR_LR_SCALE * lr}]
        return [group for group in groups if group["params"]]

    def features_and_rate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded split features (from the rounded code) and the rate in bits per sample."""
        latent = self.latent(x)
        return self.tail.decoder(self.head.encoder[-1](latent)), self.rate_bits(latent)

    def logits_and_rate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (from the rounded code) and the rate in bits per sample."""
        latent = self.latent(x)
        return self.tail(self.head.encoder[-1](latent)), self.rate_bits(latent)

    @torch.no_grad()
    def finalize_tables(self) -> np.ndarray:
        """Freeze the prior into integer CDF tables (buffer ``cdf``) over every code; returns them."""
        symbols = torch.arange(self.min_symbol, -self.min_symbol, dtype=torch.float32)
        values = symbols.reshape(1, 1, -1).repeat(self.spec.channels, 1, 1)
        was_training = self.entropy.training
        self.entropy.eval()
        try:
            likelihood = self.entropy._likelihood(values)[0]
        finally:
            self.entropy.train(was_training)
        cdf = cdf_from_pmf(likelihood.reshape(self.spec.channels, -1).double().numpy())
        self.cdf.copy_(torch.from_numpy(cdf.astype(np.int64)))
        return cdf

    def entropy_spec(self) -> EntropySpec:
        """The frozen tables as an :class:`EntropySpec`; ArtifactError before :meth:`finalize_tables`."""
        cdf = self.cdf.numpy()
        if not cdf.any():
            raise ArtifactError("entropic model: CDF tables not finalized (call finalize_tables after training)")
        return EntropySpec.from_tables(cdf, self.min_symbol)

    def codec(self) -> EntropyCodec:
        """The range coder of this model's code."""
        return EntropyCodec(self.entropy_spec(), self.code_shape)

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> np.ndarray:
        """The integer codes (int32 ``(N, C, H, W)``) the head outputs for ``x`` (eval mode)."""
        was_training = self.head.training
        self.head.eval()
        try:
            return torch.round(self.head(x)).to(torch.int32).numpy()
        finally:
            self.head.train(was_training)


def _code_point(bits: int) -> QPoint:
    return QPoint(bits, signed=True, group="code", spec=FixedPoint(bits, bits, signed=True))


def build_entropic_model(
    backbone: str = "resnet18", split_after: str = "layer1", channels: int = 4, bits: int = 8,
    num_classes: int = 10, weights: str | None = None, input_size: int | Sequence[int] = 32, *,
    code_signed: bool = True, head_bits: int = 8, encoder_channels: int | None = None,
    teacher: nn.Module | None = None, calibration: torch.Tensor | None = None, rescale: bool = True,
) -> EntropicSplitModel:
    """:func:`~aeforge.edge.split.bottleneck.build_split_model` with an entropic code of ``bits``-bit integers.

    ``rescale``: scale the encoder's last convolution so that the code starts with a spread of
    :data:`INITIAL_CODE_STD` steps on ``calibration`` (integer rounding would erase a small code).
    """
    del code_signed  # always signed
    base = build_split_model(backbone, split_after, channels, bits, num_classes, weights, input_size,
                             code_signed=True, head_bits=head_bits, encoder_channels=encoder_channels,
                             teacher=teacher, calibration=calibration)
    spec = dataclasses.replace(base.spec, bottleneck="entropic")
    base.head.encoder[-1] = _code_point(bits)
    model = EntropicSplitModel(spec, base.head, base.tail, base.teacher, entropy_bottleneck(channels))
    if rescale and calibration is not None:
        with torch.no_grad():
            model.head.eval()
            spread = float(model.latent(calibration[:64]).std())
            last = model.head.encoder[-2]  # the QConv before the code point
            if spread > 0:
                last.conv.weight.mul_(INITIAL_CODE_STD / spread)
                last.conv.bias.mul_(INITIAL_CODE_STD / spread)
        calibrate(model.head, calibration, groups=("encoder",))
    return model


def load_entropic_state(spec: SplitSpec, state: dict[str, Any], teacher: nn.Module) -> EntropicSplitModel:
    """Rebuild a saved entropic student from its spec and state dict."""
    model = build_entropic_model(
        spec.backbone, spec.split_after, spec.channels, spec.bits, spec.num_classes, input_size=spec.input_shape,
        head_bits=spec.head_bits, encoder_channels=spec.encoder_channels, teacher=teacher,
        calibration=torch.zeros(1, *spec.input_shape), rescale=False,
    )
    model.load_state_dict(state)
    return model


def entropic_metrics(student: EntropicSplitModel, batches: Any) -> dict[str, float]:
    """Bytes per sample of the real range-coded blobs, one image a blob (as batch-1 serving sends them).

    ``batches`` yields ``(images, labels)``. Returns the mean blob bytes (header included), the mean
    payload bytes, the ideal information content under the tables and the prior's training rate.
    """
    codec = student.codec()
    cdf = student.cdf.numpy()
    sizes: list[int] = []
    bits: list[float] = []
    for x, _ in batches:
        for sample in student.codes(x):
            sizes.append(len(codec.encode(sample[None])))
            bits.append(ideal_bits(sample, cdf, student.min_symbol))
    count = max(1, len(sizes))
    mean = sum(sizes) / count
    return {"bytes_per_sample": mean, "coded_bytes_per_sample": mean,
            "coded_payload_bytes_per_sample": mean - HEADER_BYTES, "ideal_bits_per_sample": sum(bits) / count,
            "entropy_coder": codec.spec.coder, "cdf_sha256": codec.spec.cdf_sha256}
