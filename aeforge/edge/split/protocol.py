"""The framed fast-path protocol of split inference (shared by the TCP and ZeroMQ transports).

Every message, both directions, is one frame: a 20-byte little-endian header and a payload::

    offset  size  field
    0       4     magic b"AEFP"
    4       1     version (2)
    5       1     type: 1 HELLO, 2 INFER, 3 INFER_TASKS (requests); 0x81 HELLO_OK, 0x82 RESULT,
                  0x83 RESULT_TASKS, 0xFF ERROR (replies)
    6       2     status: 0, or the error code of an ERROR frame (see ERRORS)
    8       8     request id (uint64, echoed in the reply)
    16      4     payload length (uint32)
    20      ...   payload: HELLO the model fingerprint (32 bytes, sha256 of split.json and the code spec;
                  all zero: not checked) then the token (UTF-8, empty when the server has none);
                  HELLO_OK the server's 32-byte fingerprint; INFER one codec blob
                  (:mod:`aeforge.edge.split.codec`; for an entropic export a range-coded blob of
                  :mod:`aeforge.edge.split.entropy_coder`, its length bounded by the coder's worst case);
                  RESULT uint32 N, uint32 classes, then N x classes float32 logits; ERROR a UTF-8 message;
                  INFER_TASKS / RESULT_TASKS (multi-task exports): the tasks asked for and one codec blob /
                  each task's outputs, laid out in :mod:`aeforge.edge.split.task_wire`

Limits checked from the header alone, before any payload byte is read: a HELLO payload is at most
32 + 1024 bytes; an INFER payload at most the largest blob the served model accepts
(:meth:`~aeforge.edge.split.codec.CodeSpec.max_blob_bytes` at ``max_batch``) and ``max_frame_bytes``; an
INFER_TASKS payload that plus its task list (at most ``MAX_TASK_LIST_BYTES``). A task list naming a task
the server does not host, twice, or malformed, gets ERROR BAD_REQUEST naming it (the connection stays usable).
A blob's bits, signedness, scale and dims are checked against the code spec before its CRC,
decompression or unpacking.
"""

from __future__ import annotations

import hmac
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from aeforge.edge.split.codec import decode_request, request_limit_bytes
from aeforge.edge.split.security import MAX_TOKEN_BYTES
from aeforge.edge.split.task_wire import (
    MAX_TASK_LIST_BYTES,
    pack_task_outputs,
    pack_task_request,
    parse_task_request,
    unpack_task_outputs,
)
from aeforge.errors import AeforgeError, DataError

LOG = logging.getLogger(__name__)
_Answer = TypeVar("_Answer")
MAGIC = b"AEFP"
VERSION = 2
HEADER = struct.Struct("<4sBBHQI")
HEADER_BYTES = HEADER.size
HELLO, INFER, INFER_TASKS = 1, 2, 3
HELLO_OK, RESULT, RESULT_TASKS, ERROR = 0x81, 0x82, 0x83, 0xFF
REPLY_NAMES = {HELLO_OK: "HELLO_OK", RESULT: "RESULT", RESULT_TASKS: "RESULT_TASKS", ERROR: "ERROR"}
ERRORS = {
    1: "BAD_MAGIC", 2: "BAD_VERSION", 3: "TOO_LARGE", 4: "BAD_TYPE", 5: "UNAUTHENTICATED", 6: "BAD_CODE",
    7: "BAD_REQUEST", 8: "INTERNAL", 9: "BUSY", 10: "TIMEOUT", 11: "MODEL_MISMATCH", 12: "TRUNCATED",
}
CODES = {name: code for code, name in ERRORS.items()}
FINGERPRINT_BYTES = 32
NO_FINGERPRINT = bytes(FINGERPRINT_BYTES)
MAX_HELLO_BYTES = FINGERPRINT_BYTES + MAX_TOKEN_BYTES
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
RESULT_HEAD = struct.Struct("<II")
KEEPS_CONNECTION = frozenset({"BAD_CODE", "BAD_REQUEST", "INTERNAL"})
"""Statuses after which a TCP connection stays usable (the others close it)."""


class TransportError(AeforgeError):
    """A split server refused a request or the connection failed; ``status`` names the error."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Close(Exception):
    """Close this connection (after replying ``status`` / ``message`` when ``status`` is given)."""

    def __init__(self, status: str | None = None, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.request_id = 0


def pack_frame(frame_type: int, request_id: int, payload: bytes = b"", status: int = 0) -> bytes:
    """One frame: header + payload."""
    return HEADER.pack(MAGIC, VERSION, frame_type, status, request_id, len(payload)) + payload


def error_frame(status: str, request_id: int, message: str) -> bytes:
    """An ERROR frame with a (truncated to 4 KiB) UTF-8 message."""
    return pack_frame(ERROR, request_id, message.encode()[:4096], CODES[status])


def hello_payload(fingerprint: str | None, token: str | None) -> bytes:
    """HELLO payload: the 32-byte fingerprint (zeros when None) and the token."""
    return fingerprint_bytes(fingerprint) + (token or "").encode()


def fingerprint_bytes(fingerprint: str | None) -> bytes:
    """The 32 raw bytes of a hex sha256 fingerprint (zeros for None); TransportError if malformed."""
    if fingerprint is None:
        return NO_FINGERPRINT
    try:
        raw = bytes.fromhex(fingerprint)
    except ValueError:
        raw = b""
    if len(raw) != FINGERPRINT_BYTES:
        raise TransportError("BAD_REQUEST", f"fingerprint: expected 64 hex digits, got {fingerprint!r}")
    return raw


def result_payload(logits: np.ndarray) -> bytes:
    """RESULT payload of float32 logits ``(N, classes)``."""
    return RESULT_HEAD.pack(*logits.shape) + logits.astype("<f4", copy=False).tobytes()


def check_reply_header(header: bytes | memoryview, max_reply_bytes: int) -> int:
    """Payload length of a reply header; TransportError BAD_REPLY for foreign or oversized replies."""
    magic, version, _, _, _, length = HEADER.unpack_from(header)
    if magic != MAGIC or version != VERSION:
        raise TransportError("BAD_REPLY", f"reply has magic {magic!r} version {version}; expected an aeforge fast "
                                          f"path version {VERSION}")
    if length > max_reply_bytes:
        raise TransportError("BAD_REPLY", f"reply of {length} bytes exceeds max_reply_bytes={max_reply_bytes}")
    return length


def _reply_payload(header: bytes, payload: bytes, request_id: int, expected_type: int) -> bytes:
    """The payload of a reply of ``expected_type``; TransportError for ERROR frames and foreign replies."""
    magic, version, frame_type, status, reply_id, _ = HEADER.unpack(header)
    if magic != MAGIC or version != VERSION:
        raise TransportError("BAD_REPLY", f"reply has magic {magic!r} version {version}; not an aeforge fast path")
    if frame_type == ERROR:
        raise TransportError(ERRORS.get(status, f"ERROR_{status}"), payload.decode(errors="replace"))
    if frame_type != expected_type or reply_id != request_id:
        raise TransportError("BAD_REPLY", f"expected {REPLY_NAMES[expected_type]} for request {request_id}, got "
                                          f"{REPLY_NAMES.get(frame_type, f'type {frame_type:#x}')} id {reply_id}")
    return payload


def parse_reply(header: bytes, payload: bytes, request_id: int) -> np.ndarray:
    """Logits of a RESULT reply; TransportError for ERROR frames and malformed replies."""
    payload = _reply_payload(header, payload, request_id, RESULT)
    if len(payload) < RESULT_HEAD.size:
        raise TransportError("BAD_REPLY", "RESULT payload shorter than its shape")
    rows, cols = RESULT_HEAD.unpack_from(payload)
    if len(payload) != RESULT_HEAD.size + 4 * rows * cols:
        raise TransportError("BAD_REPLY", f"RESULT payload of {len(payload)} bytes for {rows}x{cols} logits")
    return np.frombuffer(payload, dtype="<f4", offset=RESULT_HEAD.size).reshape(rows, cols).astype(np.float32)


def parse_task_reply(header: bytes, payload: bytes, request_id: int) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
    """(N, ``{task: {output: array}}`` as on the wire) of a RESULT_TASKS reply (see :mod:`.task_wire`)."""
    payload = _reply_payload(header, payload, request_id, RESULT_TASKS)
    try:
        return unpack_task_outputs(payload)
    except DataError as exc:
        raise TransportError("BAD_REPLY", str(exc)) from None


def check_request_header(header: bytes | memoryview, max_frame_bytes: int) -> tuple[int, int, int]:
    """(type, request id, payload length) of a request header; Close on framing errors.

    ``max_frame_bytes`` bounds an INFER payload; INFER_TASKS may add its task list (``MAX_TASK_LIST_BYTES``).
    """
    magic, version, frame_type, status, request_id, length = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise Close("BAD_MAGIC", f"magic: expected {MAGIC!r}, got {bytes(magic)!r}")
    if version != VERSION:
        raise Close("BAD_VERSION", f"version: this server speaks {VERSION}, got {version}")
    if frame_type not in (HELLO, INFER, INFER_TASKS):
        raise Close("BAD_TYPE", f"type: expected HELLO (1), INFER (2) or INFER_TASKS (3), got {frame_type}")
    if status != 0:
        raise Close("BAD_TYPE", f"status: must be 0 in a request, got {status}")
    limit = {HELLO: MAX_HELLO_BYTES, INFER: max_frame_bytes}.get(frame_type, max_frame_bytes + MAX_TASK_LIST_BYTES)
    if length > limit:
        what = {HELLO: "HELLO", INFER: "INFER"}.get(frame_type, "INFER_TASKS")
        raise Close("TOO_LARGE", f"payload_length: {what} of {length} bytes exceeds {limit} bytes")
    return frame_type, request_id, length


class RequestHandler:
    """Checks HELLO payloads and turns INFER / INFER_TASKS payloads into RESULT / RESULT_TASKS or ERROR frames
    (TCP and ZeroMQ servers).

    ``max_payload_bytes``: the largest INFER payload accepted, ``min(max_frame_bytes, the largest blob of
    max_batch samples)``, checked from the frame header before the payload is read. INFER_TASKS needs a
    model with ``infer_tasks`` (:class:`~.multitask_serve.MultiTaskTailModel`); ``task_names``: the tasks it hosts.
    """

    def __init__(self, model: Any, max_frame_bytes: int, token: str | None) -> None:
        self.model = model
        self.spec = model.artifact.code
        self.max_payload_bytes = min(max_frame_bytes, request_limit_bytes(model.artifact, model.max_batch))
        entropy = getattr(model.artifact, "entropy", None)
        self._identity = f"; this server: {entropy.describe()}" if entropy is not None else ""
        self.fingerprint = getattr(model.artifact, "fingerprint", "") or ""
        self._fingerprint = fingerprint_bytes(self.fingerprint) if self.fingerprint else NO_FINGERPRINT
        self._token = token.encode() if token else None
        tasks = getattr(model.artifact, "tasks", ()) if hasattr(model, "infer_tasks") else ()
        self.task_names = tuple(str(task["name"]) for task in tasks)
        self._kinds = {str(task["name"]): str(task["kind"]) for task in tasks}

    def check_hello(self, payload: bytes) -> None:
        """Accept a HELLO payload or raise Close (UNAUTHENTICATED first, then MODEL_MISMATCH)."""
        if len(payload) < FINGERPRINT_BYTES:
            raise Close("BAD_REQUEST", f"HELLO: the payload must start with the {FINGERPRINT_BYTES}-byte model "
                                       f"fingerprint, got {len(payload)} bytes (protocol version {VERSION})")
        given, token = payload[:FINGERPRINT_BYTES], payload[FINGERPRINT_BYTES:]
        if self._token is not None and not hmac.compare_digest(token, self._token):
            raise Close("UNAUTHENTICATED", "token: missing or wrong")
        if given != NO_FINGERPRINT and self._fingerprint != NO_FINGERPRINT and given != self._fingerprint:
            raise Close("MODEL_MISMATCH", f"fingerprint: the client's export is {given.hex()[:16]}..., this server "
                                          f"serves {self._fingerprint.hex()[:16]}... (different split.json or code"
                                          f"{self._identity})")

    def hello_ok(self, request_id: int) -> bytes:
        """The HELLO_OK frame carrying this server's fingerprint."""
        return pack_frame(HELLO_OK, request_id, self._fingerprint)

    def handle(self, frame_type: int, request_id: int, payload: bytes) -> bytes:
        """The reply frame of one checked INFER or INFER_TASKS frame."""
        if frame_type == INFER_TASKS:
            return self.infer_tasks(request_id, payload)
        return self.infer(request_id, payload)

    def _codes(self, blob: bytes) -> np.ndarray:
        codes = decode_request(self.model.artifact, blob, self.max_payload_bytes, self.model.max_batch)
        return codes.astype(np.float32) * np.float32(self.spec.scale)

    def infer(self, request_id: int, payload: bytes) -> bytes:
        """RESULT or ERROR frame of one INFER payload."""
        try:
            logits = self.model.infer(self._codes(payload))
        except AeforgeError as exc:
            return error_frame("BAD_CODE", request_id, str(exc))
        except Exception:
            LOG.exception("fast path inference failed")
            return error_frame("INTERNAL", request_id, "the tail model failed on this request (see the server log)")
        return pack_frame(RESULT, request_id, result_payload(logits))

    def infer_tasks(self, request_id: int, payload: bytes) -> bytes:
        """RESULT_TASKS or ERROR frame of one INFER_TASKS payload (task list checked before the blob is decoded)."""
        try:
            names, blob = parse_task_request(payload, self.task_names)
        except DataError as exc:
            return error_frame("BAD_REQUEST", request_id, str(exc))
        try:
            values = self._codes(blob)
            results = self.model.infer_tasks(values, names)
        except AeforgeError as exc:
            return error_frame("BAD_CODE", request_id, str(exc))
        except Exception:
            LOG.exception("fast path multi-task inference failed")
            return error_frame("INTERNAL", request_id, "the task tails failed on this request (see the server log)")
        try:
            body = pack_task_outputs(results, self._kinds, int(values.shape[0]))
        except Exception:
            LOG.exception("fast path multi-task reply could not be encoded")
            return error_frame("INTERNAL", request_id, "the task outputs could not be encoded (see the server log)")
        return pack_frame(RESULT_TASKS, request_id, body)


class FastPathRequests:
    """The requests of a fast-path client (TCP or ZeroMQ) over its transport's ``_request``."""

    def _request(self, frame_type: int, payload: bytes, parse: Callable[[bytes, bytes, int], _Answer]) -> _Answer:
        raise NotImplementedError

    def infer(self, code_blob: bytes) -> np.ndarray:
        """Logits float32 ``(N, classes)`` of one codec blob; TransportError with the server's reason."""
        return self._request(INFER, code_blob, parse_reply)

    def infer_tasks(self, code_blob: bytes, tasks: Sequence[str]) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
        """(N, ``{task: {output: array}}`` as on the wire, :mod:`.task_wire`) of one codec blob and the named
        tasks of a multi-task export; TransportError with the server's reason (unknown tasks by name)."""
        try:
            payload = pack_task_request(tasks, code_blob)
        except DataError as exc:
            raise TransportError("BAD_REQUEST", str(exc)) from None
        return self._request(INFER_TASKS, payload, parse_task_reply)
