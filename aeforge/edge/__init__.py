"""Edge deployment: standard-ONNX export (QDQ / FP32 / FP16) and TensorRT rule checks.

Kept light: the submodules import torch, onnx and onnx-graphsurgeon only when used. The main
entry points are re-exported lazily: :func:`export_edge_onnx`, :class:`EdgeExport`,
:func:`exact_session_options` (from :mod:`aeforge.edge.onnx_export`) and :func:`check_trt`,
:class:`TrtViolation`, :func:`format_violations`, :func:`polygraphy_lint` (from
:mod:`aeforge.edge.trt_rules`).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_edge_onnx": "aeforge.edge.onnx_export",
    "EdgeExport": "aeforge.edge.onnx_export",
    "exact_session_options": "aeforge.edge.onnx_export",
    "trt_quant_config": "aeforge.edge.onnx_export",
    "check_trt": "aeforge.edge.trt_rules",
    "TrtViolation": "aeforge.edge.trt_rules",
    "format_violations": "aeforge.edge.trt_rules",
    "polygraphy_lint": "aeforge.edge.trt_rules",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aeforge.edge' has no attribute {name!r}")
