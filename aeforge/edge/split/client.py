"""The device side of split inference: head.onnx on onnxruntime -> integer codes -> blob -> server -> logits.

::

    with SplitClient("RUN/split", transport="tcp", port=8765) as client:
        result = client.infer(images)            # float32 (N, 3, H, W)
        result.logits, result.head_s, result.encode_s, result.roundtrip_s, result.request_bytes

For an entropic export (``model.bottleneck: entropic``) the codes are range-coded under the export's CDF
tables (:mod:`~aeforge.edge.split.entropy_coder`) instead of packed. Transports: ``grpc`` (KServe v2 through
tritonclient, the blob as a UINT8 ``code_packed`` input), ``tcp``
(:class:`~aeforge.edge.split.fastpath.FastPathClient`) and ``zmq``
(:class:`~aeforge.edge.split.zmqpath.ZmqFastPathClient`); multi-task exports (:meth:`SplitClient.infer_tasks`)
work over all three. ``tls`` (gRPC, TCP) or ``curve`` (ZeroMQ)
verify the server; a non-loopback host without them needs ``insecure``. Every request carries the
export's fingerprint (the server refuses another export by name) and every reply is checked: N rows
of ``num_classes`` logits, and on gRPC the server's fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.split.codec import COMPRESSIONS, encode_code, load_split_artifact, quantize_to_codes
from aeforge.edge.split.fastpath import FastPathClient, TransportError
from aeforge.edge.split.security import ClientTLS, CurveClientKeys, check_connect, host_port
from aeforge.edge.split.serve import FINGERPRINT_PARAMETER, MODEL_NAME, OUTPUT_NAME, PACKED_INPUT, entropy_identity
from aeforge.edge.split.zmqpath import ZmqFastPathClient
from aeforge.errors import ConfigError, DataError, ToolUnavailableError

TRANSPORTS = ("grpc", "tcp", "zmq")


@dataclass(frozen=True)
class SplitResult:
    """Logits of one request and where its time went (seconds) and how many bytes it sent."""

    logits: np.ndarray
    codes: np.ndarray
    head_s: float
    encode_s: float
    roundtrip_s: float
    request_bytes: int

    @property
    def total_s(self) -> float:
        """Head + encode + round trip."""
        return self.head_s + self.encode_s + self.roundtrip_s

    @property
    def bytes_per_sample(self) -> float:
        """Request bytes (the whole blob, header included) per image."""
        return self.request_bytes / max(1, int(self.logits.shape[0]))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready timings and sizes (no arrays)."""
        return {"batch": int(self.logits.shape[0]), "head_s": self.head_s, "encode_s": self.encode_s,
                "roundtrip_s": self.roundtrip_s, "total_s": self.total_s, "request_bytes": self.request_bytes,
                "bytes_per_sample": self.bytes_per_sample, "predictions": self.logits.argmax(axis=1).tolist()}


@dataclass(frozen=True)
class TasksResult:
    """Outputs of one multi-task request (``outputs[task][name]``), its timings (seconds) and request bytes."""

    outputs: dict[str, dict[str, np.ndarray]]
    codes: np.ndarray
    head_s: float
    encode_s: float
    roundtrip_s: float
    request_bytes: int

    @property
    def total_s(self) -> float:
        """Head + encode + round trip."""
        return self.head_s + self.encode_s + self.roundtrip_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready timings, sizes and a summary per task (predictions, detections, mask class counts)."""
        summary: dict[str, Any] = {}
        for name, outputs in self.outputs.items():
            if "logits" in outputs:
                summary[name] = {"predictions": outputs["logits"].argmax(axis=1).tolist()}
            elif "boxes" in outputs:
                keep = outputs["labels"] >= 0
                summary[name] = {"detections": [
                    [{"box": [round(float(v), 2) for v in box], "score": round(float(score), 4), "label": int(label)}
                     for box, score, label in zip(outputs["boxes"][n][keep[n]], outputs["scores"][n][keep[n]],
                                                  outputs["labels"][n][keep[n]], strict=True)]
                    for n in range(len(keep))]}
            else:
                masks = outputs["masks"]
                summary[name] = {"mask_shape": list(masks.shape[1:]),
                                 "pixels_per_class": [np.bincount(m.ravel()).tolist() for m in masks]}
        return {"batch": int(self.codes.shape[0]), "tasks": summary, "head_s": self.head_s,
                "encode_s": self.encode_s, "roundtrip_s": self.roundtrip_s, "total_s": self.total_s,
                "request_bytes": self.request_bytes}


class SplitClient:
    """Run the head locally and the tail on a split server (a context manager).

    ``compression``: the codec's lossless stage (``none``, ``zlib``, ``zstd``). ``tls``: TLS for
    ``grpc`` and ``tcp``; ``curve``: CurveZMQ for ``zmq``.
    """

    def __init__(
        self, artifact_dir: str | Path, transport: str = "grpc", host: str = "127.0.0.1", port: int = 8001,
        token: str | None = None, model_name: str = MODEL_NAME, compression: str = "none", timeout_s: float = 10.0,
        ort_threads: int | None = None, tls: ClientTLS | None = None, curve: CurveClientKeys | None = None,
        insecure: bool = False,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ConfigError(f"transport: unknown {transport!r}; expected one of {', '.join(TRANSPORTS)}")
        if tls is not None and transport == "zmq":
            raise ConfigError("tls: the zmq transport is secured with CURVE (--curve-server-key), not TLS")
        if curve is not None and transport != "zmq":
            raise ConfigError(f"curve: CURVE keys secure the zmq transport only, not {transport}")
        check_connect(host, tls is not None or curve is not None, insecure)
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression: unknown {compression!r}; expected one of {', '.join(COMPRESSIONS)}")
        import onnxruntime as ort

        from aeforge.edge.onnx_export import exact_session_options

        self.artifact = load_split_artifact(artifact_dir)
        if self.artifact.entropy is not None and compression != "none":
            raise ConfigError(f"compression: {compression!r} is for packed codes; this export's code is range-coded "
                              f"({self.artifact.entropy.coder}), use none")
        self.transport = transport
        self.model_name = model_name
        self.compression = compression
        self.token = token
        self._session = ort.InferenceSession(str(self.artifact.verify("head")), exact_session_options(ort_threads),
                                             providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        if self._input_name != self.artifact.input_name:
            raise ConfigError(f"input.name: split.json says {self.artifact.input_name!r}, head.onnx has "
                              f"{self._input_name!r}")
        fingerprint = self.artifact.fingerprint
        self._transport: Any
        if transport == "tcp":
            self._transport = FastPathClient(host, port, token, timeout_s, tls=tls, fingerprint=fingerprint,
                                             insecure=insecure)
        elif transport == "zmq":
            self._transport = ZmqFastPathClient(host, port, token, timeout_s, curve=curve, fingerprint=fingerprint,
                                                insecure=insecure)
        else:
            try:
                import tritonclient.grpc as triton
            except ImportError:
                raise ToolUnavailableError("the grpc transport needs tritonclient[grpc] "
                                           "(pip install 'aeforge[split]')") from None
            self._triton = triton
            self._transport = triton.InferenceServerClient(host_port(host, port),
                                                           **(tls.triton_options() if tls is not None else {}))
            self._timeout_s = timeout_s
            self._headers = {"authorization": f"Bearer {token}"} if token else None

    def head(self, images: np.ndarray) -> np.ndarray:
        """The integer codes (int32) of ``images`` (the head output quantized exactly to the code grid)."""
        array = np.asarray(images)
        if array.dtype != np.float32:
            raise DataError(f"input: images must be float32, got {array.dtype}")
        values = self._session.run(None, {self._input_name: array})[0]
        code = self.artifact.code
        return quantize_to_codes(values, code.scale, code.bits, code.signed)

    def _encode(self, codes: np.ndarray) -> bytes:
        """The request blob of integer codes: packed (codec), or range-coded for an entropic export."""
        if self.artifact.entropy_codec is not None:  # Entropic Student: range-coded under the export's tables
            return self.artifact.entropy_codec.encode(codes)
        code = self.artifact.code
        return encode_code(codes, code.bits, code.scale, code.signed, self.compression)

    def send(self, blob: bytes) -> np.ndarray:
        """Logits of one encoded blob over the transport; TransportError with the server's reason."""
        if self.transport != "grpc":
            try:
                return self._transport.infer(blob)
            except TransportError as exc:
                if exc.status == "MODEL_MISMATCH" and self.artifact.entropy is not None:
                    raise TransportError("MODEL_MISMATCH", f"{exc} [this client: "
                                                           f"{self.artifact.entropy.describe()}]") from None
                raise
        triton = self._triton
        tensor = triton.InferInput(PACKED_INPUT, [len(blob)], "UINT8")
        tensor.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
        fingerprint = self.artifact.fingerprint
        try:
            outputs = [triton.InferRequestedOutput(OUTPUT_NAME)]
            result = self._transport.infer(self.model_name, [tensor], outputs=outputs, headers=self._headers,
                                           client_timeout=self._timeout_s,
                                           parameters={FINGERPRINT_PARAMETER: fingerprint,
                                                       **entropy_identity(self.artifact)})
        except triton.InferenceServerException as exc:
            status = str(exc.status() or "GRPC").removeprefix("StatusCode.")
            raise TransportError(status, exc.message() or str(exc)) from None
        parameters = result.get_response().parameters
        if FINGERPRINT_PARAMETER in parameters and parameters[FINGERPRINT_PARAMETER].string_param != fingerprint:
            raise TransportError("MODEL_MISMATCH", f"fingerprint: this client's export is {fingerprint[:16]}..., the "
                                                   f"server answered for "
                                                   f"{parameters[FINGERPRINT_PARAMETER].string_param[:16]}...")
        logits = result.as_numpy(OUTPUT_NAME)
        if logits is None:
            raise TransportError("BAD_REPLY", f"the reply has no {OUTPUT_NAME!r} output")
        return logits

    def infer(self, images: np.ndarray) -> SplitResult:
        """Head, encode, send; logits with the time of each step."""
        start = time.perf_counter()
        codes = self.head(images)
        headed = time.perf_counter()
        blob = self._encode(codes)
        encoded = time.perf_counter()
        logits = self.send(blob)
        expected = (codes.shape[0], self.artifact.num_classes)
        if logits.shape != expected or logits.dtype != np.float32:
            raise TransportError("BAD_REPLY", f"logits: expected float32 {expected} (N rows of split.json "
                                              f"num_classes), the server sent {logits.dtype} {logits.shape}")
        done = time.perf_counter()
        return SplitResult(logits, codes, headed - start, encoded - headed, done - encoded, len(blob))

    def infer_tasks(self, images: np.ndarray, tasks: Sequence[str] | None = None) -> TasksResult:
        """Head once, one code, the outputs of ``tasks`` (default: all) of a multi-task export.

        One request asks for every named task's outputs: over ``grpc`` as KServe v2 outputs
        (:mod:`~.multitask_serve`), over ``tcp`` and ``zmq`` as an INFER_TASKS frame (:mod:`~.task_wire`).
        The arrays are the same on every transport (detections padded with score 0 and label -1).
        """
        names = list(tasks) if tasks else list(self.artifact.task_names)
        if not self.artifact.tasks:
            raise ConfigError(f"--tasks: {self.artifact.root} is a single-task export (no tasks in split.json)")
        for name in names:
            self.artifact.task(name)  # ArtifactError listing the tasks
        if len(set(names)) != len(names):
            raise ConfigError(f"--tasks: a task is named twice in {','.join(names)}")
        start = time.perf_counter()
        codes = self.head(images)
        headed = time.perf_counter()
        blob = self._encode(codes)
        encoded = time.perf_counter()
        if self.transport == "grpc":
            outputs = self._grpc_tasks(blob, names, codes.shape[0])
        else:
            outputs = self._fast_path_tasks(blob, names, codes.shape[0])
        done = time.perf_counter()
        return TasksResult(outputs, codes, headed - start, encoded - headed, done - encoded, len(blob))

    def _fast_path_tasks(self, blob: bytes, names: list[str], batch: int) -> dict[str, dict[str, np.ndarray]]:
        """The outputs of ``names`` over the tcp / zmq fast path, checked against split.json."""
        from aeforge.edge.split.multitask_serve import SERVED, output_shape
        from aeforge.edge.split.task_wire import restore_task_outputs

        answered, raw = self._transport.infer_tasks(blob, names)
        if answered != batch:
            raise TransportError("BAD_REPLY", f"the server answered for {answered} samples, the request has {batch}")
        expected = {}
        for name in names:
            task = self.artifact.task(name)
            shapes = output_shape(task, self.artifact)
            expected[name] = (task["kind"], {output: (tuple(shapes[f"{name}_{output}"]),
                                                      "float32" if datatype == "FP32" else "int32")
                                             for output, datatype in SERVED[task["kind"]]})
        try:
            return restore_task_outputs(raw, batch, expected)
        except DataError as exc:
            raise TransportError("BAD_REPLY", str(exc)) from None

    def _grpc_tasks(self, blob: bytes, names: list[str], batch: int) -> dict[str, dict[str, np.ndarray]]:
        """The outputs of ``names`` from one KServe v2 request, checked against split.json."""
        from aeforge.edge.split.multitask_serve import output_shape, served_outputs

        triton = self._triton
        tensor = triton.InferInput(PACKED_INPUT, [len(blob)], "UINT8")
        tensor.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
        wanted = [(self.artifact.task(name), output) for name in names
                  for output, _ in served_outputs(self.artifact.task(name))]
        try:
            result = self._transport.infer(self.model_name, [tensor],
                                           outputs=[triton.InferRequestedOutput(o) for _, o in wanted],
                                           headers=self._headers, client_timeout=self._timeout_s,
                                           parameters={FINGERPRINT_PARAMETER: self.artifact.fingerprint})
        except triton.InferenceServerException as exc:
            status = str(exc.status() or "GRPC").removeprefix("StatusCode.")
            raise TransportError(status, exc.message() or str(exc)) from None
        parameters = result.get_response().parameters
        fingerprint = self.artifact.fingerprint
        if FINGERPRINT_PARAMETER in parameters and parameters[FINGERPRINT_PARAMETER].string_param != fingerprint:
            raise TransportError("MODEL_MISMATCH", "fingerprint: the server answered for another export")
        outputs: dict[str, dict[str, np.ndarray]] = {}
        for task, output in wanted:
            array = result.as_numpy(output)
            expected = (batch, *output_shape(task, self.artifact)[output])
            if array is None or tuple(array.shape) != expected:
                got = None if array is None else array.shape
                raise TransportError("BAD_REPLY", f"{output}: expected shape {expected}, the server sent {got}")
            outputs.setdefault(task["name"], {})[output[len(task["name"]) + 1:]] = array
        return outputs

    def close(self) -> None:
        """Close the connection."""
        self._transport.close()

    def __enter__(self) -> SplitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
