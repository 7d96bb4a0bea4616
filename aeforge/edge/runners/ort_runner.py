"""The onnxruntime runner (CPU execution provider, optionally XNNPACK).

With ``exact=True`` (default) the session runs the graph as written: no graph optimizations, so
a QDQ model computes ``DequantizeLinear -> float op -> QuantizeLinear`` in float32 and matches the
Brevitas model bit for bit while accumulators fit in float32's 24-bit mantissa. ``exact=False``
lets onnxruntime fuse QDQ groups into integer kernels (faster, not guaranteed bit-exact).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.runners.base import Runner, TensorMeta, normalize_shape
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError

PROVIDERS = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider"}
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ToolUnavailableError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from None
    return onnxruntime


def provider_unavailable_reason(provider: str) -> str | None:
    """Why ``provider`` ("cpu" or "xnnpack") cannot run here, or None when it can."""
    if provider not in PROVIDERS:
        return f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}"
    try:
        ort = _import_ort()
    except ToolUnavailableError as exc:
        return str(exc)
    if PROVIDERS[provider] not in ort.get_available_providers():
        return (f"this onnxruntime {ort.__version__} build has no {PROVIDERS[provider]} "
                f"(available: {', '.join(ort.get_available_providers())}); XNNPACK ships in the Android/iOS "
                "packages or a source build with --use_xnnpack")
    return None


def default_session_options(threads: int | None = None, exact: bool = True) -> Any:
    """Session options: ``aeforge.edge.onnx_export.exact_session_options`` when ``exact``, else ORT's defaults."""
    ort = _import_ort()
    if exact:
        try:
            from aeforge.edge.onnx_export import exact_session_options
        except ImportError:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        else:
            options = exact_session_options(threads)
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


class OrtRunner(Runner):
    """An onnxruntime ``InferenceSession`` on a model file (or serialized bytes)."""

    def __init__(
        self, model: str | os.PathLike[str] | bytes, threads: int | None = None, provider: str = "cpu",
        exact: bool = True, name: str | None = None,
    ) -> None:
        super().__init__(name, prefix=f"ort-{provider}")
        if provider not in PROVIDERS:
            raise ConfigError(f"{self.name}: provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
        if threads is not None and threads < 1:
            raise ConfigError(f"{self.name}: threads must be at least 1, got {threads}")
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise ArtifactError(f"{model}: ONNX model not found")
        self.model = model if isinstance(model, bytes) else Path(model)
        self.threads = threads
        self.provider = provider
        self.exact = exact
        self.session: Any = None
        self._output_names: list[str] = []

    def _activate(self) -> None:
        ort = _import_ort()
        reason = provider_unavailable_reason(self.provider)
        if reason is not None:
            raise ToolUnavailableError(f"{self.name}: {reason}")
        options = default_session_options(self.threads, self.exact)
        providers: list[Any] = [PROVIDERS[self.provider]]
        if self.provider == "xnnpack":
            threads = self.threads or 1
            providers = [(PROVIDERS["xnnpack"], {"intra_op_num_threads": str(threads)}), PROVIDERS["cpu"]]
        source = self.model if isinstance(self.model, bytes) else str(self.model)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            where = "ONNX model bytes" if isinstance(self.model, bytes) else str(self.model)
            raise ArtifactError(f"{where}: onnxruntime cannot load the model: {exc}") from None
        self._output_names = [o.name for o in self.session.get_outputs()]

    def _deactivate(self) -> None:
        self.session = None
        self._output_names = []

    def _input_metadata(self) -> Mapping[str, TensorMeta]:
        meta = {}
        for node in self.session.get_inputs():
            if node.type not in _ORT_TYPES:
                raise ArtifactError(f"{self.name}: input {node.name!r} has unsupported type {node.type}")
            meta[node.name] = TensorMeta(np.dtype(_ORT_TYPES[node.type]), normalize_shape(node.shape))
        return meta

    def output_names(self) -> list[str]:
        """The model's output names, in graph order."""
        self._require_active("output_names()")
        return list(self._output_names)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self.session.run(self._output_names, feed)
        self.last_inference_time_s = time.perf_counter() - start
        return dict(zip(self._output_names, outputs, strict=True))


def ort_predict(
    model: str | os.PathLike[str] | bytes, inputs: np.ndarray, threads: int | None = None, batch_size: int = 4096
) -> np.ndarray:
    """Outputs ``(N, -1)`` float64 of a single-input model under the exact session options, in batches."""
    with OrtRunner(model, threads=threads, exact=True) as runner:
        (name, meta), *others = runner.input_metadata().items()
        if others:
            raise ArtifactError(f"{runner.name}: ort_predict takes single-input models; this one has "
                                f"{1 + len(others)} inputs")
        inputs = np.asarray(inputs)
        outputs = [
            next(iter(runner.infer({name: inputs[i : i + batch_size].astype(meta.dtype)}).values()))
            for i in range(0, len(inputs), batch_size)
        ]
    if not outputs:
        raise ArtifactError("ort_predict: no input vectors")
    return np.concatenate(outputs).astype(np.float64).reshape(len(inputs), -1)
