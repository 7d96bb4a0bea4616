"""Card metrics of an ECON-T training run: EMD on the test split, EBOPs and (HGQ) the learned widths."""

from __future__ import annotations

from typing import Any

import numpy as np

CARD_EMD_EVENTS = 20_000
"""Test events the card's EMD averages over (the whole test split when smaller)."""


def training_card_metrics(result: Any, max_events: int = CARD_EMD_EVENTS) -> dict[str, Any]:
    """``emd`` (mean per model: ``float``, ``qat``), ``ebops`` of the hardware encoder, ``hgq`` widths."""
    from aeforge.quantize import metrics
    from aeforge.quantize.hgq.ebops import model_ebops
    from aeforge.quantize.models.econt import reconstruct

    events = result.splits.test[:max_events]
    out: dict[str, Any] = {"emd": {}, "emd_events": len(events)}
    for name in ("float", "qat"):
        model = getattr(result, f"{name}_model")
        if model is not None and len(events):
            values = metrics.emd(events, reconstruct(model, events))
            finite = values[np.isfinite(values)]
            out["emd"][name] = float(finite.mean()) if finite.size else float("nan")
    qat = result.qat_model
    if qat is not None:
        hardware = qat.freeze() if callable(getattr(qat, "freeze", None)) else qat
        out["ebops"] = model_ebops(hardware.encoder)
        if hardware is not qat:
            out["hgq"] = qat.encoder.bit_summary()
    return out
