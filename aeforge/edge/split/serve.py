"""The split tail behind the KServe v2 inference protocol over gRPC (Triton's ``inference.GRPCInferenceService``).

::

    with TailServer("RUN/split", port=0) as server:
        client = tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{server.port}")
        client.infer("aeforge_tail", [inp])            # inp: FP32 "<tail input>" or UINT8/BYTES "code_packed"

The servicer implements ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
ModelConfig and ModelInfer (the others answer UNIMPLEMENTED). ModelInfer takes exactly one input:

* the dequantized code, FP32 ``[N, C, H, W]`` named as the tail's ONNX input (KServe-standard: a
  stock tritonclient can call it), or
* the packed code ``code_packed``: UINT8 ``[L]`` holding one codec blob, or BYTES ``[k]`` holding k
  blobs (concatenated along the batch); each blob's bits / signedness / scale / shape must match
  split.json. Decoding errors name the blob field.

It answers ``logits`` FP32 ``[N, num_classes]`` (raw_output_contents). A multi-task export (split.json
``tasks``) hosts every task's tail and answers the ``<task>_<output>`` outputs a request names
(:mod:`~.multitask_serve`). Errors map to gRPC codes:
INVALID_ARGUMENT (input name, datatype, shape, batch, blob), NOT_FOUND (model or version),
UNAUTHENTICATED (token), RESOURCE_EXHAUSTED (message over ``max_frame_bytes``; too many concurrent
calls), INTERNAL (the model failed), FAILED_PRECONDITION (model fingerprint mismatch). With a ``token``
every call needs the metadata ``authorization: Bearer <token>``. With ``tls`` the server speaks TLS
(client certificates required when ``tls.client_ca_file`` is set); off loopback TLS is required unless
``insecure``, and a token unless client certificates are (see :func:`~.security.check_bind`).

Entropic exports (``model.bottleneck: entropic``): ``code_packed`` carries range-coded blobs
(:mod:`~.entropy_coder`); a request may carry ``aeforge_coder`` and ``aeforge_cdf_sha256`` (the client's
coder and CDF tables), and a difference is refused (FAILED_PRECONDITION) naming the parameter and both values;
a blob coded with other tables is refused naming ``cdf_sha256``.

Model identity: a request may carry the parameter ``aeforge_fingerprint`` (the export's fingerprint,
:attr:`~.codec.SplitArtifact.fingerprint`); a different one is refused (FAILED_PRECONDITION) naming
both. Every response carries the server's in the same parameter. Blobs are checked against the code
spec (bits, signedness, scale, dims, batch) before decompression or unpacking.
"""

from __future__ import annotations

import hmac
import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.split.codec import CodecError, SplitArtifact, decode_request, load_split_artifact
from aeforge.edge.split.security import (  # noqa: F401  (check_bind, is_loopback: re-exported)
    ServerTLS,
    bare_host,
    check_bind,
    host_port,
    is_loopback,
)
from aeforge.edge.split.triton_repo import check_model_name
from aeforge.errors import AeforgeError, ArtifactError, ConfigError, DataError, ToolUnavailableError

try:  # the gRPC stack is optional (extra "split"); TailModel and the fast path work without it
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    _ServicerBase: Any = service_pb2_grpc.GRPCInferenceServiceServicer
except ImportError:  # pragma: no cover - exercised only without the extra
    grpc = None
    service_pb2 = service_pb2_grpc = None
    _ServicerBase = object

LOG = logging.getLogger(__name__)
MODEL_NAME = "aeforge_tail"
MODEL_VERSION = "1"
PACKED_INPUT = "code_packed"
OUTPUT_NAME = "logits"
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
BACKENDS = ("ort", "trt")
FINGERPRINT_PARAMETER = "aeforge_fingerprint"
CODER_PARAMETER = "aeforge_coder"
CDF_PARAMETER = "aeforge_cdf_sha256"


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    return value


# ------------------------------------------------------------------------------------ the model
class TailModel:
    """The tail network (dequantized code -> logits) on onnxruntime or TensorRT; thread-safe ``infer``.

    ``backend``: ``ort`` (exact session options, CPU) or ``trt`` (TensorRT FP32 engine through
    :class:`~aeforge.edge.runners.trt_runner.TrtRunner`; ToolUnavailableError without TensorRT / GPU).
    """

    def __init__(
        self, artifact: SplitArtifact, backend: str = "ort", ort_threads: int | None = 1,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend: unknown {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.artifact = artifact
        self.max_batch = _positive("max_batch", max_batch)
        self.backend = backend
        if getattr(artifact, "tasks", ()) and getattr(artifact, "legacy_task", None) is None:
            raise ConfigError(f"transport: this multi-task export (tasks {', '.join(artifact.task_names)}) has no "
                              "classification tail, so it has no single-task logits: ask for its tasks by name "
                              "(split run --tasks ...)")
        path = artifact.verify("tail")
        import onnxruntime as ort

        from aeforge.edge.onnx_export import exact_session_options
        from aeforge.edge.runners.base import normalize_shape

        self._session = ort.InferenceSession(str(path), exact_session_options(ort_threads),
                                             providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != artifact.tail_input_name:
            names = [i.name for i in inputs]
            raise ArtifactError(f"{path}: expected one input {artifact.tail_input_name!r} (split.json "
                                f"tail_input_name), found {names}")
        shape = normalize_shape(inputs[0].shape)
        if tuple(shape[1:]) != artifact.code.shape:
            raise ArtifactError(f"{path}: input shape {shape} does not match split.json code.shape "
                                f"{artifact.code.shape}")
        if artifact.tail_output_name not in [o.name for o in self._session.get_outputs()]:
            raise ArtifactError(f"{path}: no output {artifact.tail_output_name!r} (split.json tail_output_name)")
        self.fixed_batch = shape[0]
        self._trt: Any = None
        self._lock = threading.Lock()
        if backend == "trt":
            from aeforge.edge.runners.trt_runner import TrtRunner

            profile = (1, 1, 1) if self.fixed_batch is not None else (1, min(8, self.max_batch), self.max_batch)
            self._trt = TrtRunner(path, precision="fp32", batch_profile=profile)
            self._trt.activate()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (C, H, W)."""
        return self.artifact.code.shape

    def infer(self, values: np.ndarray) -> np.ndarray:
        """Logits float32 ``(N, num_classes)`` of a dequantized code batch ``(N, C, H, W)``; DataError if malformed."""
        if values.dtype != np.float32 or values.shape[1:] != self.input_shape:
            raise DataError(f"tail input: expected float32 (N, {', '.join(map(str, self.input_shape))}), "
                            f"got {values.dtype} {values.shape}")
        batch = values.shape[0]
        if not 1 <= batch <= self.max_batch:
            raise DataError(f"batch: {batch} samples, the server accepts 1..{self.max_batch}")
        if self.fixed_batch is not None and batch != self.fixed_batch:
            if self.fixed_batch != 1:
                raise DataError(f"batch: the tail model has a fixed batch of {self.fixed_batch}, got {batch}")
            return np.concatenate([self._run(values[i:i + 1]) for i in range(batch)])
        return self._run(values)

    def _run(self, values: np.ndarray) -> np.ndarray:
        name = self.artifact.tail_input_name
        if self._trt is not None:
            with self._lock:
                out = self._trt.infer({name: values})[self.artifact.tail_output_name]
        else:
            out = self._session.run([self.artifact.tail_output_name], {name: values})[0]
        return np.ascontiguousarray(out, dtype=np.float32).reshape(values.shape[0], -1)

    def close(self) -> None:
        """Release the TensorRT engine (the ORT session is freed with the object)."""
        if self._trt is not None:
            self._trt.deactivate()
            self._trt = None


# ------------------------------------------------------------------------------------ servicer
class _RequestError(Exception):
    """A request the servicer refuses: the gRPC status code name and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _invalid(message: str) -> _RequestError:
    return _RequestError("INVALID_ARGUMENT", message)


class KServeTailServicer(_ServicerBase):
    """KServe v2 ``GRPCInferenceService`` for one model: the split tail."""

    def __init__(self, model: TailModel, model_name: str = MODEL_NAME, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 config: Any = None) -> None:
        self.model = model
        self.model_name = model_name
        self.max_frame_bytes = max_frame_bytes
        self.config = config
        spec = model.artifact.code
        self._input_elements = int(np.prod(spec.shape))

    # -------------------------------------------------------------- plumbing
    def _call(self, context: Any, handler: Any, *args: Any) -> Any:
        try:
            return handler(*args)
        except _RequestError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except AeforgeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:  # the model itself failed: log it, tell the client without internals
            LOG.exception("ModelInfer failed")
            context.abort(grpc.StatusCode.INTERNAL, "the tail model failed on this request (see the server log)")

    def _check_model(self, name: str, version: str) -> None:
        if name != self.model_name:
            raise _RequestError("NOT_FOUND", f"model_name: unknown model {name!r}; this server hosts "
                                             f"{self.model_name!r}")
        if version not in ("", MODEL_VERSION):
            raise _RequestError("NOT_FOUND", f"model_version: {self.model_name!r} has only version {MODEL_VERSION}")

    # -------------------------------------------------------------- health and metadata
    def ServerLive(self, request: Any, context: Any) -> Any:
        """Always live while serving."""
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        """Ready: the model is loaded before the server starts."""
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: Any) -> Any:
        """Ready for the hosted model; NOT_FOUND for any other."""
        return self._call(context, self._model_ready, request)

    def _model_ready(self, request: Any) -> Any:
        self._check_model(request.name, request.version)
        return service_pb2.ModelReadyResponse(ready=True)

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        """Server name and version (no protocol extensions)."""
        from aeforge import __version__

        return service_pb2.ServerMetadataResponse(name="aeforge-tail", version=str(__version__))

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        """Inputs (FP32 dequantized code; packed code, exactly one per request) and the logits output."""
        return self._call(context, self._model_metadata, request)

    def _model_metadata(self, request: Any) -> Any:
        self._check_model(request.name, request.version)
        artifact = self.model.artifact
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=self.model_name, versions=[MODEL_VERSION], platform="onnxruntime_onnx",
            inputs=[tensor(name=artifact.tail_input_name, datatype="FP32", shape=[-1, *artifact.code.shape]),
                    tensor(name=PACKED_INPUT, datatype="BYTES", shape=[-1])],
            outputs=[tensor(name=OUTPUT_NAME, datatype="FP32", shape=[-1, artifact.num_classes])],
        )

    def ModelConfig(self, request: Any, context: Any) -> Any:
        """The Triton model configuration :func:`~aeforge.edge.split.triton_repo.write_triton_repository` writes."""
        return self._call(context, self._model_config, request)

    def _model_config(self, request: Any) -> Any:
        self._check_model(request.name, request.version)
        if self.config is None:
            raise _RequestError("UNIMPLEMENTED", "ModelConfig needs tritonclient's model_config_pb2")
        return service_pb2.ModelConfigResponse(config=self.config)

    # -------------------------------------------------------------- inference
    def ModelInfer(self, request: Any, context: Any) -> Any:
        """Logits of one request (dequantized FP32 tensor or packed code)."""
        return self._call(context, self._infer, request)

    def _infer(self, request: Any) -> Any:
        values = self._request_values(request)
        for output in request.outputs:
            if output.name != OUTPUT_NAME:
                raise _invalid(f"outputs: unknown output {output.name!r}; the model has {OUTPUT_NAME!r}")
        return self._response(request, [(OUTPUT_NAME, "FP32", self.model.infer(values))])

    def _request_values(self, request: Any) -> np.ndarray:
        """The dequantized code batch of a ModelInfer request (model, fingerprint, coder and input checked)."""
        self._check_model(request.model_name, request.model_version)
        artifact = self.model.artifact
        fingerprint = getattr(artifact, "fingerprint", "")
        check_entropy_parameters(artifact, request.parameters)
        if FINGERPRINT_PARAMETER in request.parameters:
            given = request.parameters[FINGERPRINT_PARAMETER].string_param
            if fingerprint and given != fingerprint:
                raise _RequestError("FAILED_PRECONDITION", f"{FINGERPRINT_PARAMETER}: the client's export is "
                                                           f"{given[:16]}..., this server serves {fingerprint[:16]}... "
                                                           "(different split.json or code)")
        if len(request.inputs) != 1:
            raise _invalid(f"inputs: expected exactly one input, {artifact.tail_input_name!r} (FP32) or "
                           f"{PACKED_INPUT!r} (UINT8/BYTES), got {len(request.inputs)}")
        if len(request.raw_input_contents) > 1:
            raise _invalid(f"raw_input_contents: {len(request.raw_input_contents)} buffers for one input")
        tensor = request.inputs[0]
        raw = request.raw_input_contents[0] if request.raw_input_contents else None
        if tensor.name == artifact.tail_input_name:
            return self._fp32_input(tensor, raw)
        if tensor.name == PACKED_INPUT:
            return self._packed_input(tensor, raw)
        raise _invalid(f"inputs[0].name: unknown input {tensor.name!r}; expected {artifact.tail_input_name!r} "
                       f"(FP32) or {PACKED_INPUT!r} (UINT8/BYTES)")

    def _response(self, request: Any, outputs: list[tuple[str, str, np.ndarray]]) -> Any:
        """A ModelInferResponse carrying ``(name, KServe datatype, array)`` outputs as raw contents."""
        response = service_pb2.ModelInferResponse(model_name=self.model_name, model_version=MODEL_VERSION,
                                                  id=request.id)
        fingerprint = getattr(self.model.artifact, "fingerprint", "")
        if fingerprint:
            response.parameters[FINGERPRINT_PARAMETER].string_param = fingerprint
        for name, datatype, array in outputs:
            out = response.outputs.add()
            out.name = name
            out.datatype = datatype
            out.shape.extend(array.shape)
            dtype = "<f4" if datatype == "FP32" else "<i4"
            response.raw_output_contents.append(np.ascontiguousarray(array, dtype=dtype).tobytes())
        return response

    def _fp32_input(self, tensor: Any, raw: bytes | None) -> np.ndarray:
        shape = tuple(tensor.shape)
        expected = self.model.input_shape
        if tensor.datatype != "FP32":
            raise _invalid(f"inputs[0].datatype: {tensor.name!r} must be FP32, got {tensor.datatype!r}")
        if len(shape) != 1 + len(expected) or shape[1:] != expected:
            raise _invalid(f"inputs[0].shape: {tensor.name!r} must be [N, {', '.join(map(str, expected))}], "
                           f"got {list(shape)}")
        if not 1 <= shape[0] <= self.model.max_batch:
            raise _invalid(f"inputs[0].shape: batch {shape[0]} outside 1..{self.model.max_batch}")
        count = shape[0] * self._input_elements
        if raw is not None:
            if len(raw) != 4 * count:
                raise _invalid(f"raw_input_contents: {len(raw)} bytes for FP32 {list(shape)} (needs {4 * count})")
            values = np.frombuffer(raw, dtype="<f4")
        else:
            if len(tensor.contents.fp32_contents) != count:
                raise _invalid(f"inputs[0].contents.fp32_contents: {len(tensor.contents.fp32_contents)} values for "
                               f"{list(shape)} (needs {count})")
            values = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        return values.astype(np.float32, copy=False).reshape(shape)

    def _packed_input(self, tensor: Any, raw: bytes | None) -> np.ndarray:
        shape = list(tensor.shape)
        if tensor.datatype == "UINT8":
            if len(shape) != 1 and not (len(shape) == 2 and shape[0] == 1):
                raise _invalid(f"inputs[0].shape: UINT8 {PACKED_INPUT!r} must be [L] (one blob), got {shape}")
            blob = raw if raw is not None else _uint8_bytes(tensor.contents.uint_contents)
            if len(blob) != shape[-1]:
                raise _invalid(f"raw_input_contents: {len(blob)} bytes for UINT8 {shape}")
            blobs = [blob]
        elif tensor.datatype == "BYTES":
            if len(shape) != 1 or not 1 <= shape[0] <= self.model.max_batch:
                raise _invalid(f"inputs[0].shape: BYTES {PACKED_INPUT!r} must be [k], k in 1..{self.model.max_batch}, "
                               f"got {shape}")
            blobs = _split_bytes(raw) if raw is not None else list(tensor.contents.bytes_contents)
            if len(blobs) != shape[0]:
                raise _invalid(f"raw_input_contents: {len(blobs)} BYTES elements for shape {shape}")
        else:
            raise _invalid(f"inputs[0].datatype: {PACKED_INPUT!r} must be UINT8 or BYTES, got {tensor.datatype!r}")
        spec = self.model.artifact.code
        batches = []
        total = 0
        for blob in blobs:
            left = self.model.max_batch - total
            if left < 1:
                raise _invalid(f"batch: more than {self.model.max_batch} samples in {PACKED_INPUT!r}")
            codes = decode_request(self.model.artifact, blob, self.max_frame_bytes, left)
            total += codes.shape[0]
            if total > self.model.max_batch:
                raise _invalid(f"batch: more than {self.model.max_batch} samples in {PACKED_INPUT!r}")
            batches.append(codes)
        codes = batches[0] if len(batches) == 1 else np.concatenate(batches)
        return codes.astype(np.float32) * np.float32(spec.scale)


def entropy_identity(artifact: Any) -> dict[str, str]:
    """The coder and CDF tables of an export as request parameters (empty strings: packed, uncoded codes)."""
    entropy = getattr(artifact, "entropy", None)
    if entropy is None:
        return {CODER_PARAMETER: "", CDF_PARAMETER: ""}
    return {CODER_PARAMETER: f"{entropy.coder} {entropy.library_version}", CDF_PARAMETER: entropy.cdf_sha256}


def check_entropy_parameters(artifact: Any, parameters: Any) -> None:
    """FAILED_PRECONDITION naming the coder or CDF tables when a request's differ from the served export's."""
    mine = entropy_identity(artifact)
    for name, served in mine.items():
        if name in parameters and parameters[name].string_param != served:
            given = parameters[name].string_param
            what = "coder" if name == CODER_PARAMETER else "CDF tables (entropy_cdf.npy sha256)"
            raise _RequestError("FAILED_PRECONDITION", f"{name}: {what} differ: the client's export has "
                                                       f"{given[:24] or 'none (packed code)'!s}, this server's has "
                                                       f"{served[:24] or 'none (packed code)'!s}")


def _uint8_bytes(values: Any) -> bytes:
    """``uint_contents`` as bytes; INVALID_ARGUMENT naming the first value over 255."""
    array = np.asarray(values, dtype=np.uint32)
    if array.size and int(array.max()) > 255:
        index = int(np.argmax(array > 255))
        raise _invalid(f"inputs[0].contents.uint_contents: value {int(array[index])} at index {index} does not fit "
                       "UINT8 (0..255)")
    return array.astype(np.uint8).tobytes()


def _split_bytes(raw: bytes) -> list[bytes]:
    """The elements of a KServe BYTES raw buffer (each a 4-byte little-endian length, then the bytes)."""
    out = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise CodecError("raw_input_contents", "BYTES buffer ends inside an element length")
        length = int.from_bytes(raw[offset:offset + 4], "little")
        offset += 4
        if offset + length > len(raw):
            raise CodecError("raw_input_contents", f"BYTES element of {length} bytes runs past the buffer end")
        out.append(raw[offset:offset + length])
        offset += length
    return out


class _TokenInterceptor(grpc.ServerInterceptor if grpc is not None else object):  # type: ignore[misc]
    """Refuses (UNAUTHENTICATED) every call without ``authorization: Bearer <token>`` metadata."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request: Any, context: Any) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong 'authorization: Bearer <token>' metadata")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Continue only when the bearer token matches (constant-time comparison)."""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                if hmac.compare_digest(given, self._expected):
                    return continuation(handler_call_details)
        return self._deny


# ------------------------------------------------------------------------------------ server
class TailServer:
    """A gRPC KServe v2 server hosting the split tail of ``artifact_dir`` (a context manager).

    ``port=0`` picks a free port (read :attr:`port` after start). ``threads``: gRPC worker threads;
    ``max_concurrent_rpcs``: calls beyond it get RESOURCE_EXHAUSTED (bounded queue); ``max_frame_bytes``:
    the largest request / response message; ``max_batch``: samples per request. ``model`` replaces the
    ONNX tail (an object with TailModel's ``artifact``, ``max_batch``, ``input_shape`` and ``infer``).
    ``tls``: certificate, key and optional client CA; ``handshake_timeout_s``: a connection must finish
    its (TLS and HTTP/2) handshake within it (gRPC's ``server_handshake_timeout_ms``).
    """

    def __init__(
        self, artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, threads: int = 4, max_batch: int = DEFAULT_MAX_BATCH,
        max_concurrent_rpcs: int = 64, model_name: str = MODEL_NAME, backend: str = "ort",
        ort_threads: int | None = 1, model: TailModel | None = None, tls: ServerTLS | None = None,
        insecure: bool = False, handshake_timeout_s: float = 5.0,
    ) -> None:
        check_bind(host, port, token, secure=tls is not None, insecure=insecure,
                   client_auth=tls is not None and tls.client_ca_file is not None)
        check_model_name(model_name)
        if not isinstance(handshake_timeout_s, (int, float)) or not handshake_timeout_s > 0:
            raise ConfigError(f"handshake_timeout_s: must be > 0 seconds, got {handshake_timeout_s!r}")
        if grpc is None:
            raise ToolUnavailableError("the gRPC tail server needs grpcio and tritonclient[grpc] "
                                       "(pip install 'aeforge[split]')")
        self.host = bare_host(host)
        self.token = token
        self.tls = tls
        self._credentials = tls.grpc_credentials() if tls is not None else None
        self.handshake_timeout_s = float(handshake_timeout_s)
        self.max_frame_bytes = _positive("max_frame_bytes", max_frame_bytes)
        if self.max_frame_bytes < 1024:
            raise ConfigError(f"max_frame_bytes: must be >= 1024, got {max_frame_bytes}")
        self.threads = _positive("threads", threads)
        self.max_concurrent_rpcs = _positive("max_concurrent_rpcs", max_concurrent_rpcs)
        self.model_name = model_name
        self.artifact = load_split_artifact(artifact_dir) if model is None else model.artifact
        if model is None and self.artifact.tasks:  # a multi-task export: every task's tail (multitask_serve)
            from aeforge.edge.split.multitask_serve import MultiTaskTailModel

            if backend != "ort":
                raise ConfigError(f"backend: a multi-task export is served on ort only, got {backend!r}")
            model = MultiTaskTailModel(self.artifact, ort_threads, max_batch)
        self.model = model if model is not None else TailModel(self.artifact, backend, ort_threads, max_batch)
        self._requested_port = port
        self.port = 0
        self._server: Any = None

    @property
    def fingerprint(self) -> str:
        """The served export's fingerprint (hex)."""
        return getattr(self.artifact, "fingerprint", "")

    def start(self) -> TailServer:
        """Bind and start serving (non-blocking)."""
        from aeforge.edge.split.triton_repo import model_config_proto

        if hasattr(self.model, "infer_tasks"):  # multi-task: outputs <task>_<output> (multitask_serve)
            from aeforge.edge.split.multitask_serve import MultiTaskServicer

            servicer: Any = MultiTaskServicer(self.model, self.model_name, self.max_frame_bytes, None)
        else:
            config = model_config_proto(self.artifact, self.model_name, self.model.max_batch)
            servicer = KServeTailServicer(self.model, self.model_name, self.max_frame_bytes, config)
        options = [("grpc.max_receive_message_length", self.max_frame_bytes),
                   ("grpc.max_send_message_length", self.max_frame_bytes),
                   ("grpc.so_reuseport", 0),
                   ("grpc.server_handshake_timeout_ms", int(self.handshake_timeout_s * 1000))]
        interceptors = [_TokenInterceptor(self.token)] if self.token else []
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="aeforge-tail"),
                             interceptors=interceptors, options=options,
                             maximum_concurrent_rpcs=self.max_concurrent_rpcs)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        address = host_port(self.host, self._requested_port)
        try:
            if self._credentials is not None:
                port = server.add_secure_port(address, self._credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"port: cannot bind {address} ({exc})") from None
        if not port:
            raise ConfigError(f"port: cannot bind {address}")
        server.start()
        self._server = server
        self.port = port
        return self

    def stop(self, grace_s: float | None = 0.5) -> None:
        """Stop serving (in-flight calls get ``grace_s`` seconds)."""
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the CLI)."""
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> TailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
