"""Why a TensorRT device test cannot run here (``None`` where tensorrt and a CUDA GPU are present)."""

from __future__ import annotations


def why_no_trt_device() -> str | None:
    """The reason to skip: tensorrt missing, torch missing, or no CUDA GPU visible to torch."""
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"tensorrt not available ({exc})"
    try:
        import torch
    except ImportError:
        return "torch not installed (the TensorRT runner uses torch.cuda for device memory)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None
