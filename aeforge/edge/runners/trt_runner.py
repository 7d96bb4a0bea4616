"""The TensorRT runner: ONNX -> engine (cached) -> inference through an execution context.

Written against TensorRT's documented Python API of 8.6 and 10.x (name-based I/O tensors,
``execute_async_v3``). Device memory and the CUDA stream come from ``torch.cuda`` (one documented
path; no pycuda / cuda-python needed). This module imports without TensorRT: the runner raises
:class:`~aeforge.errors.ToolUnavailableError` with the reason on :meth:`TrtRunner.activate`.

Build (:func:`build_serialized_engine`): ``trt.Builder`` -> network (``STRONGLY_TYPED`` for
``precision="strongly_typed"``, TensorRT >= 9; ``EXPLICIT_BATCH`` before TensorRT 10) ->
``trt.OnnxParser`` -> builder config (``BuilderFlag.INT8`` for a QDQ graph, ``FP16``; ``TF32`` cleared so
that FP32 layers compute exactly what Brevitas does; workspace
pool limit; one optimization profile when the batch is dynamic; the timing cache loaded and
saved) -> ``build_serialized_network``. Engines go into :class:`~aeforge.edge.engine_cache.EngineCache`
keyed by TensorRT version, GPU, ONNX sha256 and build flags; a cached engine of another TensorRT
version or GPU is refused before deserialization.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.engine_cache import BuildFlags, CachedEngine, DeviceIdentity, EngineCache, sha256_path
from aeforge.edge.runners.base import Runner, TensorMeta, normalize_shape
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError

INSTALL_HINT = "install TensorRT (pip install tensorrt on an x86 CUDA machine; JetPack on a Jetson)"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or ToolUnavailableError saying why it cannot be imported."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ToolUnavailableError(f"tensorrt is not available ({exc}); {INSTALL_HINT}") from None
    except OSError as exc:  # the wheel is there but libnvinfer / CUDA is not
        raise ToolUnavailableError(f"tensorrt cannot load its libraries ({exc}); check the CUDA install") from None
    return tensorrt


def trt_major(trt: Any) -> int:
    """The major version of a tensorrt module (0 when unreadable)."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def _import_torch_cuda() -> Any:
    try:
        import torch
    except ImportError:
        raise ToolUnavailableError("the TensorRT runner needs torch.cuda for device memory; torch is missing") from None
    if not torch.cuda.is_available():
        raise ToolUnavailableError("no CUDA GPU visible to torch (torch.cuda.is_available() is False)")
    return torch


def current_identity(trt: Any) -> DeviceIdentity:
    """TensorRT version and the current CUDA device's name and compute capability."""
    torch = _import_torch_cuda()
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceIdentity(str(trt.__version__), torch.cuda.get_device_name(index), f"{major}.{minor}")


def _dynamic_batch_shapes(name: str, shape: Sequence[int], profile: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """min/opt/max shapes of an input whose only dynamic dimension is the first (the batch)."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape[1:]):
        raise ConfigError(f"input {name!r} has shape {shape}: only the batch (first) dimension may be dynamic")
    return [(batch, *shape[1:]) for batch in profile]


def build_serialized_engine(
    trt: Any, onnx_path: str | os.PathLike[str], flags: BuildFlags, timing_cache: bytes = b""
) -> tuple[bytes, bytes]:
    """Build an engine from an ONNX file; returns ``(engine bytes, updated timing cache bytes)``.

    Raises ArtifactError when the parser rejects the model (its errors listed) or the build fails,
    ConfigError for a precision this TensorRT lacks or a non-batch dynamic dimension.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if flags.precision == "strongly_typed":
        if not hasattr(creation, "STRONGLY_TYPED"):
            raise ConfigError(f"precision 'strongly_typed' needs TensorRT >= 9; this is TensorRT {trt.__version__}")
        network_flags |= 1 << int(creation.STRONGLY_TYPED)
    if trt_major(trt) < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        network_flags |= 1 << int(creation.EXPLICIT_BATCH)
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise ArtifactError(f"{onnx_path}: TensorRT's ONNX parser rejected the model: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, flags.workspace_bytes)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and hasattr(config, "clear_flag"):
        config.clear_flag(tf32)  # FP32 layers (types INT8 cannot hold) stay exact: TF32 keeps 10 mantissa bits
    if flags.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    elif flags.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = None
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = tuple(tensor.shape)
        if any(int(d) < 0 for d in shape):
            if profile is None:
                profile = builder.create_optimization_profile()
            profile.set_shape(tensor.name, *_dynamic_batch_shapes(tensor.name, shape, flags.batch_profile))
        elif flags.batch_profile[0] != flags.batch_profile[2] and shape and flags.batch_profile[2] != shape[0]:
            raise ConfigError(f"input {tensor.name!r} has the static shape {shape}; re-export with a dynamic batch "
                              f"for the batch profile {flags.batch_profile}")
    if profile is not None:
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"{onnx_path}: TensorRT failed to build an engine ({flags.as_dict()}); see its log above")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


class TrtRunner(Runner):
    """TensorRT inference on an ONNX model; engines built once per TensorRT version + GPU and cached.

    ``precision``: see :data:`aeforge.edge.engine_cache.PRECISIONS` (``int8`` for QDQ models).
    ``batch_profile``: ``(min, opt, max)`` batch of the optimization profile (dynamic-batch models).
    ``cache_dir``: engine cache root (default :func:`~aeforge.edge.engine_cache.default_cache_root`).
    After activation :attr:`engine_entry` is the cache entry used and :attr:`built` tells whether
    this activation built it. ``last_inference_time_s`` covers host-to-device copies, execution and
    the copy back (synchronized).
    """

    def __init__(
        self, onnx_path: str | os.PathLike[str], precision: str = "int8",
        batch_profile: tuple[int, int, int] = (1, 1, 1), workspace_bytes: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None, name: str | None = None,
    ) -> None:
        super().__init__(name, prefix=f"trt-{precision}")
        self.onnx_path = Path(onnx_path)
        options: dict[str, Any] = {"precision": precision, "batch_profile": tuple(batch_profile)}
        if workspace_bytes is not None:
            options["workspace_bytes"] = workspace_bytes
        self.flags = BuildFlags(**options)
        self.cache = EngineCache(cache_dir)
        self.engine_entry: CachedEngine | None = None
        self.built = False
        self._trt: Any = None
        self._torch: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    # -------------------------------------------------------------- engine
    def prepare_engine(self, trt: Any, identity: DeviceIdentity) -> bytes:
        """Engine bytes from the cache, building (and storing) on a miss; refuses foreign engines."""
        if not self.onnx_path.is_file():
            raise ArtifactError(f"{self.onnx_path}: ONNX model not found")
        onnx_sha256 = sha256_path(self.onnx_path)
        engine = self.cache.load(identity, onnx_sha256, self.flags)
        self.built = engine is None
        if engine is None:
            timing = self.cache.load_timing_cache(identity)
            engine, timing = build_serialized_engine(trt, self.onnx_path, self.flags, timing)
            self.cache.save_timing_cache(identity, timing)
            self.cache.store(identity, onnx_sha256, self.flags, engine)
        self.engine_entry = self.cache.lookup(identity, onnx_sha256, self.flags)
        return engine

    def _activate(self) -> None:
        trt = import_tensorrt()
        identity = current_identity(trt)
        torch = _import_torch_cuda()
        engine_bytes = self.prepare_engine(trt, identity)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise ArtifactError(f"{self.engine_entry.engine_path if self.engine_entry else self.onnx_path}: "
                                "TensorRT could not deserialize the engine; delete the cache entry to rebuild")
        context = engine.create_execution_context()
        if context is None:
            raise ArtifactError(f"{self.onnx_path}: TensorRT could not create an execution context")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._trt, self._torch, self._runtime, self._engine, self._context = trt, torch, runtime, engine, context

    def _deactivate(self) -> None:
        self._context = self._engine = self._runtime = None
        self._inputs, self._outputs = [], []

    def _numpy_dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _input_metadata(self) -> Mapping[str, TensorMeta]:
        return {n: TensorMeta(self._numpy_dtype(n), normalize_shape(self._engine.get_tensor_shape(n)))
                for n in self._inputs}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch, context = self._torch, self._context
        start = time.perf_counter()
        keep = []
        for name in self._inputs:
            array = np.ascontiguousarray(feed[name])
            device = torch.from_numpy(array).to("cuda")
            keep.append(device)
            if not context.set_input_shape(name, tuple(array.shape)):
                raise ArtifactError(f"{self.name}: input {name!r}: TensorRT refused shape {array.shape} "
                                    f"(batch profile {self.flags.batch_profile})")
            context.set_tensor_address(name, device.data_ptr())
        outputs = {}
        for name in self._outputs:
            dtype = torch.from_numpy(np.empty(0, self._numpy_dtype(name))).dtype
            outputs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise ArtifactError(f"{self.name}: TensorRT execution failed")
        results = {name: tensor.cpu().numpy() for name, tensor in outputs.items()}  # synchronizes
        self.last_inference_time_s = time.perf_counter() - start
        return results
