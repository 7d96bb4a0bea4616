"""Heterogeneous (HGQ-style) fake quantization with learned fractional bits, in PyTorch.

A value ``x`` with ``f`` fractional bits is quantized to ``round(x * 2**f) / 2**f`` (round half to
even, as ``ap_fixed`` ``AP_RND_CONV``), saturated inside its container type. ``f`` is a learned float
per weight, per output channel or per activation layer, rounded to an integer in the forward pass
(straight-through). Gradients:

* to ``x``: straight through (1), zero above an activation's saturation limit;
* to ``f`` (surrogate): the rounding error ``delta = q - x`` shrinks like ``2**-f``, so
  ``d q / d f ~ -ln(2) * delta``; implemented as ``x + delta * 2**(f_int.detach() - f_int)``.

A weight whose grid cannot hold it (``f`` low enough that it rounds to 0) is pruned: it costs no
bits in :func:`weight_bits` and becomes a constant zero in the hardware (da4ml drops it).
"""

from __future__ import annotations

import torch
from torch import nn

from aeforge.fixedpoint import FixedPoint


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def clamp_ste(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Clamp in the forward pass, identity gradient (a bit width can come back from its limit)."""
    return x + (torch.clamp(x, low, high) - x).detach()


def fixed_fake_quant(x: torch.Tensor, spec: FixedPoint) -> torch.Tensor:
    """``ap_fixed`` quantization to ``spec`` (RND_CONV or TRN, saturating), straight-through gradient."""
    scale = 2.0 ** spec.frac_bits
    scaled = x * scale
    code = torch.floor(scaled) if spec.rounding == "TRN" else torch.round(scaled)
    code = torch.clamp(code, float(spec.min_code), float(spec.max_code))
    return x + (code / scale - x).detach()


def _with_surrogate(x: torch.Tensor, q: torch.Tensor, f_int: torch.Tensor) -> torch.Tensor:
    delta = (q - x).detach()
    return x + delta * torch.exp2(f_int.detach() - f_int)


def weight_fake_quant(w: torch.Tensor, f_int: torch.Tensor, int_bits: int) -> torch.Tensor:
    """Each weight on its own grid ``2**-f_int`` inside a signed container with ``int_bits`` integer bits.

    ``f_int`` (integer-valued, broadcastable to ``w``) carries the surrogate gradient. The code range
    on a weight's grid is ``[-2**e, 2**e - 1]`` with ``e = int_bits - 1 + f``; below ``e = 0`` only 0.
    """
    f = f_int.detach()
    scale = torch.exp2(f)
    limit = torch.floor(torch.exp2(int_bits - 1 + f))
    code = torch.minimum(torch.maximum(torch.round(w * scale), -limit), torch.clamp(limit - 1, min=0.0))
    return _with_surrogate(w, code / scale, f_int)


def weight_bits(q: torch.Tensor, f_int: torch.Tensor) -> torch.Tensor:
    """Magnitude bits of each quantized weight, ``floor(log2|q|) + 1 + f`` (0 for a pruned weight).

    Differentiable in ``f_int`` (gradient 1 where the weight is kept), the EBOPs surrogate.
    """
    q = q.detach()
    kept = q != 0
    magnitude = torch.floor(torch.log2(torch.where(kept, q.abs(), torch.ones_like(q))))
    return torch.where(kept, magnitude + 1 + f_int, torch.zeros_like(q))


def relu_fake_quant(x: torch.Tensor, f_int: torch.Tensor, int_bits: int) -> torch.Tensor:
    """ReLU, then ``ap_ufixed<int_bits + f, int_bits, AP_RND_CONV, AP_SAT>`` (``f`` learned)."""
    f = f_int.detach()
    scale = torch.exp2(f)
    top = (torch.exp2(int_bits + f) - 1) / scale
    clipped = torch.minimum(torch.relu(x), top)  # no gradient above the saturation limit
    code = torch.round(clipped * scale)
    return _with_surrogate(clipped, code / scale, f_int)


class FracBits(nn.Module):
    """Learned fractional bits of a tensor: ``f = lr_scale * theta``, rounded and limited in the forward pass.

    ``shape`` is the shape of ``f`` (broadcast against the quantized tensor); ``lr_scale`` makes the
    bit widths move that many times faster than the weights under the same optimizer.
    """

    def __init__(self, shape: tuple[int, ...], init: float, low: int, high: int, lr_scale: float) -> None:
        super().__init__()
        if low > high:
            raise ValueError(f"fractional bits range [{low}, {high}] is empty")
        self.low, self.high, self.lr_scale = int(low), int(high), float(lr_scale)
        self.theta = nn.Parameter(torch.full(shape, float(init) / self.lr_scale))

    def forward(self) -> torch.Tensor:
        """Integer-valued fractional bits (straight-through rounding and clamping)."""
        return round_ste(clamp_ste(self.theta * self.lr_scale, self.low, self.high))

    def integers(self) -> torch.Tensor:
        """The fractional bits as they are used, without gradient."""
        with torch.no_grad():
            return torch.clamp(torch.round(self.theta * self.lr_scale), self.low, self.high)


def weight_frac_range(container: FixedPoint) -> tuple[int, int]:
    """``(lowest, highest)`` learned fractional bits of a weight in ``container`` (lowest: every value is 0)."""
    return -container.int_bits, container.frac_bits


def activation_frac_range(container: FixedPoint) -> tuple[int, int]:
    """``(lowest, highest)`` learned fractional bits of an unsigned activation (at least 1 bit in total)."""
    return 1 - container.int_bits, container.frac_bits


def tight_weight_type(values: torch.Tensor, container: FixedPoint) -> FixedPoint:
    """The narrowest signed type (``container``'s modes) that holds every value of ``values`` exactly.

    ``values`` must lie on ``container``'s grid; the result has as many fractional bits as the
    finest weight needs and as many integer bits as the largest needs.
    """
    codes = torch.round(values.detach().double() * 2.0**container.frac_bits).long()
    nonzero = codes[codes != 0]
    if nonzero.numel() == 0:
        return FixedPoint(2, 2, signed=True, rounding=container.rounding, overflow=container.overflow)
    lowest_bit = int((nonzero & -nonzero).abs().min().item())  # 2**(trailing zeros) of the finest weight
    shift = max(min(lowest_bit.bit_length() - 1, container.frac_bits), 0)  # keep >= 0 fractional bits
    codes = codes >> shift if shift > 0 else codes
    frac = container.frac_bits - shift
    high, low = int(codes.max().item()), int(codes.min().item())
    bits = max(high.bit_length() + 1, (-low - 1).bit_length() + 1 if low < 0 else 1, 2)
    return FixedPoint(bits, bits - frac, signed=True, rounding=container.rounding, overflow=container.overflow)
