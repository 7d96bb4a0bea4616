"""The eager PyTorch reference runner (float or Brevitas fake-quant modules)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aeforge.edge.runners.base import Runner, TensorMeta
from aeforge.errors import ConfigError, ToolUnavailableError

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


class TorchRunner(Runner):
    """Eager ``module(x)`` under ``torch.inference_mode`` on the CPU.

    ``input_shape`` is one sample's shape (channels-first); the batch dimension is dynamic unless
    ``batch`` fixes it. ``dtype="float64"`` runs a float64 copy of the module (the Brevitas
    reference of :func:`aeforge.verification.predict_brevitas`); ``threads`` sets torch's intra-op
    threads while active (restored on deactivate). The module is never modified.
    """

    def __init__(
        self, module: Any, input_shape: Sequence[int], input_name: str = "input",
        output_names: Sequence[str] = ("output",), batch: int | None = None, dtype: str = "float32",
        threads: int | None = None, name: str | None = None,
    ) -> None:
        super().__init__(name, prefix="torch")
        if dtype not in _DTYPES:
            raise ConfigError(f"{self.name}: dtype {dtype!r}: expected float32 or float64")
        if threads is not None and threads < 1:
            raise ConfigError(f"{self.name}: threads must be at least 1, got {threads}")
        self.module = module
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_name = input_name
        self.output_names = tuple(output_names)
        self.batch = batch
        self.dtype = _DTYPES[dtype]
        self.threads = threads
        self._torch: Any = None
        self._model: Any = None
        self._saved_threads: int | None = None

    def _activate(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ToolUnavailableError(f"{self.name}: torch is not installed ({exc}); pip install torch") from None
        self._torch = torch
        model = self.module
        if self.dtype == np.float64:
            import copy

            model = copy.deepcopy(model).double()
        self._model = model.eval()
        if self.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def _deactivate(self) -> None:
        if self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)
        self._model = None
        self._saved_threads = None

    def _input_metadata(self) -> Mapping[str, TensorMeta]:
        return {self.input_name: TensorMeta(self.dtype, (self.batch, *self.input_shape))}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name]))
            start = time.perf_counter()
            result = self._model(x)
            self.last_inference_time_s = time.perf_counter() - start
        results = result if isinstance(result, (tuple, list)) else (result,)
        if len(results) != len(self.output_names):
            raise ConfigError(f"{self.name}: the module returned {len(results)} outputs, "
                              f"expected {len(self.output_names)} ({', '.join(self.output_names)})")
        return {name: _to_numpy(value) for name, value in zip(self.output_names, results, strict=True)}


def _to_numpy(value: Any) -> np.ndarray:
    """A tensor (or a Brevitas QuantTensor, via ``.value``) as a numpy array."""
    tensor = getattr(value, "value", value)
    return tensor.detach().cpu().numpy()
