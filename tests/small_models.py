"""Small quantized models shared by the RTL, synthesis and estimate tests."""

from __future__ import annotations

from typing import Any

import torch

SMALL_MLP_SPEC: dict[str, Any] = {
    "input": {"shape": [8], "type": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"},
    "layers": [
        {"kind": "dense", "name": "fc1", "units": 8, "weight": "ap_fixed<4,1,AP_RND_CONV,AP_SAT>",
         "bias": "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"},
        {"kind": "relu", "name": "relu1", "type": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
        {"kind": "dense", "name": "fc2", "units": 4, "weight": "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"},
        {"kind": "quant", "name": "out", "type": "ap_fixed<8,3,AP_TRN,AP_SAT_SYM>"},
    ],
}  # fmt: skip


def spread_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights ~ N(0, 0.8) so that saturation and rounding of the quantizers are exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)
    return model


def small_mlp(seed: int = 3) -> torch.nn.Module:
    """An 8 -> 8 -> 4 quantized MLP (4-bit weights) with spread weights, in eval mode."""
    from aeforge.quantize.models.sequential import build_sequential

    return spread_weights(build_sequential(SMALL_MLP_SPEC).eval(), seed)
