"""Inference runners with one interface (``with runner: runner.infer(feed)``): torch, onnxruntime, TensorRT.

Importing this package needs numpy only; each runner imports its backend on ``activate()`` and
raises :class:`~aeforge.errors.ToolUnavailableError` with the reason when it is missing.
"""

from aeforge.edge.runners.base import Runner, TensorMeta, check_feed
from aeforge.edge.runners.ort_runner import OrtRunner, ort_predict, provider_unavailable_reason
from aeforge.edge.runners.torch_runner import TorchRunner
from aeforge.edge.runners.trt_runner import TrtRunner

__all__ = ["OrtRunner", "Runner", "TensorMeta", "TorchRunner", "TrtRunner", "check_feed",
           "ort_predict", "provider_unavailable_reason"]
