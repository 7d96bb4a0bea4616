"""A lean framed TCP protocol for split inference (and a ZeroMQ variant of it).

Every message, both directions, is one frame: a 20-byte little-endian header and a payload::

    offset  size  field
    0       4     magic b"AEFP"
    4       1     version (1)
    5       1     type: 1 HELLO, 2 INFER (requests); 0x81 HELLO_OK, 0x82 RESULT, 0xFF ERROR (replies)
    6       2     status: 0, or the error code of an ERROR frame (see ERRORS)
    8       8     request id (uint64, echoed in the reply)
    16      4     payload length (uint32, <= the server's max_frame_bytes)
    20      ...   payload: HELLO the token (UTF-8, empty when the server has none); INFER one codec
                  blob (:mod:`aeforge.edge.split.codec`); RESULT uint32 N, uint32 classes, then N x
                  classes float32 logits; ERROR a UTF-8 message

A TCP connection starts with HELLO (the token, compared in constant time) and then carries any number
of INFER frames, each answered in order. Errors in a well-framed request (bad blob, wrong shape or
dtype, batch too large) get an ERROR reply and the connection stays usable; framing errors (magic,
version, type, oversized length), a bad token, a slow frame (``frame_timeout_s``) or an idle
connection (``idle_timeout_s``) get an ERROR reply when possible and the connection is closed. Memory is
bounded: one frame of at most ``max_frame_bytes`` per connection, at most ``max_clients`` connections
(more get ERROR BUSY). The ZeroMQ variant (ROUTER server, DEALER client) has no connection state: each
request is a two-part message [HELLO frame with the token, INFER frame], each reply one frame.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.split.codec import decode_code, load_split_artifact
from aeforge.edge.split.serve import DEFAULT_MAX_BATCH, TailModel, _positive, check_bind
from aeforge.errors import AeforgeError, ConfigError, ToolUnavailableError

LOG = logging.getLogger(__name__)
MAGIC = b"AEFP"
VERSION = 1
HEADER = struct.Struct("<4sBBHQI")
HEADER_BYTES = HEADER.size
HELLO, INFER = 1, 2
HELLO_OK, RESULT, ERROR = 0x81, 0x82, 0xFF
ERRORS = {
    1: "BAD_MAGIC", 2: "BAD_VERSION", 3: "TOO_LARGE", 4: "BAD_TYPE", 5: "UNAUTHENTICATED", 6: "BAD_CODE",
    7: "BAD_REQUEST", 8: "INTERNAL", 9: "BUSY", 10: "TIMEOUT",
}
_CODES = {name: code for code, name in ERRORS.items()}
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
MAX_TOKEN_BYTES = 1024
_RESULT_HEAD = struct.Struct("<II")


class TransportError(AeforgeError):
    """A split server refused a request or the connection failed; ``status`` names the error."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class _Close(Exception):
    """Close this connection (after replying ``status`` / ``message`` when given)."""

    def __init__(self, status: str | None = None, message: str = "") -> None:
        super().__init__(message)
        self.status = status


def pack_frame(frame_type: int, request_id: int, payload: bytes = b"", status: int = 0) -> bytes:
    """One frame: header + payload."""
    return HEADER.pack(MAGIC, VERSION, frame_type, status, request_id, len(payload)) + payload


def error_frame(status: str, request_id: int, message: str) -> bytes:
    """An ERROR frame with a (truncated to 4 KiB) UTF-8 message."""
    return pack_frame(ERROR, request_id, message.encode()[:4096], _CODES[status])


def result_payload(logits: np.ndarray) -> bytes:
    """RESULT payload of float32 logits ``(N, classes)``."""
    return _RESULT_HEAD.pack(*logits.shape) + logits.astype("<f4", copy=False).tobytes()


def parse_reply(header: bytes, payload: bytes, request_id: int) -> np.ndarray:
    """Logits of a RESULT reply; TransportError for ERROR frames and malformed replies."""
    magic, version, frame_type, status, reply_id, _ = HEADER.unpack(header)
    if magic != MAGIC or version != VERSION:
        raise TransportError("BAD_REPLY", f"reply has magic {magic!r} version {version}; not an aeforge fast path")
    if frame_type == ERROR:
        raise TransportError(ERRORS.get(status, f"ERROR_{status}"), payload.decode(errors="replace"))
    if frame_type != RESULT or reply_id != request_id:
        raise TransportError("BAD_REPLY", f"expected RESULT for request {request_id}, got type {frame_type} "
                                          f"id {reply_id}")
    if len(payload) < _RESULT_HEAD.size:
        raise TransportError("BAD_REPLY", "RESULT payload shorter than its shape")
    rows, cols = _RESULT_HEAD.unpack_from(payload)
    if len(payload) != _RESULT_HEAD.size + 4 * rows * cols:
        raise TransportError("BAD_REPLY", f"RESULT payload of {len(payload)} bytes for {rows}x{cols} logits")
    return np.frombuffer(payload, dtype="<f4", offset=_RESULT_HEAD.size).reshape(rows, cols).astype(np.float32)


# ------------------------------------------------------------------------------------ request handling
class _Handler:
    """Turns one INFER payload into a RESULT or ERROR frame (shared by the TCP and ZeroMQ servers)."""

    def __init__(self, model: TailModel, max_frame_bytes: int) -> None:
        self.model = model
        self.spec = model.artifact.code
        self.max_frame_bytes = max_frame_bytes

    def infer(self, request_id: int, payload: bytes) -> bytes:
        try:
            codes = self.spec.check(decode_code(payload, max_bytes=self.max_frame_bytes))
            if codes.shape[0] > self.model.max_batch:
                return error_frame("BAD_REQUEST", request_id, f"batch: {codes.shape[0]} samples, the server accepts "
                                                              f"1..{self.model.max_batch}")
            logits = self.model.infer(codes.astype(np.float32) * np.float32(self.spec.scale))
        except AeforgeError as exc:
            return error_frame("BAD_CODE", request_id, str(exc))
        except Exception:
            LOG.exception("fast path inference failed")
            return error_frame("INTERNAL", request_id, "the tail model failed on this request (see the server log)")
        return pack_frame(RESULT, request_id, result_payload(logits))


def _check_header(header: bytes, max_frame_bytes: int) -> tuple[int, int, int]:
    """(type, request id, payload length) of a request header; _Close on framing errors."""
    magic, version, frame_type, status, request_id, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise _Close("BAD_MAGIC", f"magic: expected {MAGIC!r}, got {magic!r}")
    if version != VERSION:
        raise _Close("BAD_VERSION", f"version: this server speaks {VERSION}, got {version}")
    if frame_type not in (HELLO, INFER):
        raise _Close("BAD_TYPE", f"type: expected HELLO (1) or INFER (2), got {frame_type}")
    if status != 0:
        raise _Close("BAD_TYPE", f"status: must be 0 in a request, got {status}")
    if length > max_frame_bytes:
        raise _Close("TOO_LARGE", f"payload_length: {length} bytes exceeds max_frame_bytes={max_frame_bytes}")
    return frame_type, request_id, length


# ------------------------------------------------------------------------------------ TCP server
class FastPathServer:
    """The split tail behind the framed TCP protocol; one thread per connection (a context manager).

    ``port=0`` picks a free port (:attr:`port`). ``model`` replaces the ONNX tail (see TailServer).
    """

    def __init__(
        self, artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_clients: int = 64, idle_timeout_s: float = 60.0,
        frame_timeout_s: float = 10.0, max_batch: int = DEFAULT_MAX_BATCH, backend: str = "ort",
        ort_threads: int | None = 1, model: TailModel | None = None,
    ) -> None:
        check_bind(host, port, token)
        self.host = host
        self._token = token.encode() if token else None
        self.max_frame_bytes = _positive("max_frame_bytes", max_frame_bytes)
        self.max_clients = _positive("max_clients", max_clients)
        for name, value in (("idle_timeout_s", idle_timeout_s), ("frame_timeout_s", frame_timeout_s)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name}: must be > 0 seconds, got {value!r}")
        self.idle_timeout_s = float(idle_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.model = model if model is not None else TailModel(load_split_artifact(artifact_dir), backend,
                                                               ort_threads, max_batch)
        self._handler = _Handler(self.model, self.max_frame_bytes)
        self._requested_port = port
        self.port = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.stats = {"connections": 0, "requests": 0, "errors": 0, "refused": 0}

    # -------------------------------------------------------------- lifecycle
    def start(self) -> FastPathServer:
        """Bind, listen and accept in a background thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            listener = socket.create_server((self.host.strip("[]"), self._requested_port), family=family,
                                            backlog=self.max_clients)
        except OSError as exc:
            raise ConfigError(f"port: cannot bind {self.host}:{self._requested_port} ({exc})") from None
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name="aeforge-fastpath-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and join the threads."""
        self._stop.set()
        with self._lock:
            for conn in list(self._connections):
                _shutdown(conn)
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def wait(self) -> None:
        """Block until stopped (Ctrl-C in the CLI)."""
        while not self._stop.wait(0.5):
            pass

    def __enter__(self) -> FastPathServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- accept
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)  # e.g. EMFILE: back off instead of spinning
                continue
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                busy = len(self._connections) >= self.max_clients
                if not busy:
                    self._connections.add(conn)
                    self.stats["connections"] += 1
                else:
                    self.stats["refused"] += 1
            if busy:
                _send_quietly(conn, error_frame("BUSY", 0, f"max_clients={self.max_clients} connections are open"))
                _shutdown(conn)
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="aeforge-fastpath-conn", daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    # -------------------------------------------------------------- one connection
    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tick_s = min(0.25, self.idle_timeout_s, self.frame_timeout_s)
        _kernel_timeouts(conn, tick_s, max(1.0, self.frame_timeout_s))
        reader = _Reader(conn, tick_s, self._stop)
        request_id = 0
        try:
            authenticated = False
            while not self._stop.is_set():
                header = reader.read(HEADER_BYTES, self.idle_timeout_s, self.frame_timeout_s)
                if header is None:
                    return  # clean close between frames
                frame_type, request_id, length = _check_header(header, self.max_frame_bytes)
                if frame_type == HELLO and length > MAX_TOKEN_BYTES:
                    raise _Close("TOO_LARGE", f"payload_length: HELLO of {length} bytes (max {MAX_TOKEN_BYTES})")
                payload = b""
                if length:
                    payload = reader.read(length, self.frame_timeout_s, self.frame_timeout_s, started=True) or b""
                if frame_type == HELLO:
                    if authenticated:
                        raise _Close("BAD_TYPE", "type: HELLO sent twice on one connection")
                    if self._token is not None and not hmac.compare_digest(payload, self._token):
                        raise _Close("UNAUTHENTICATED", "token: missing or wrong")
                    authenticated = True
                    conn.sendall(pack_frame(HELLO_OK, request_id))
                    continue
                if not authenticated:
                    raise _Close("UNAUTHENTICATED", "type: the first frame of a connection must be HELLO")
                reply = self._handler.infer(request_id, payload)
                with self._lock:
                    self.stats["requests"] += 1
                    self.stats["errors"] += reply[5] == ERROR
                conn.sendall(reply)
        except _Close as close:
            with self._lock:
                self.stats["errors"] += 1
            if close.status is not None:
                _send_quietly(conn, error_frame(close.status, request_id, str(close)))
        except OSError:
            pass  # the client vanished mid-request, or a send failed: drop this connection only
        finally:
            with self._lock:
                self._connections.discard(conn)
            _shutdown(conn)
            conn.close()


def _kernel_timeouts(sock: socket.socket, recv_s: float, send_s: float) -> None:
    """Blocking socket with SO_RCVTIMEO / SO_SNDTIMEO: one syscall per recv (no poll) and bounded waits.

    A receive timeout surfaces as BlockingIOError; a send timeout makes ``sendall`` fail (OSError).
    """
    sock.settimeout(None)
    for option, seconds in ((socket.SO_RCVTIMEO, recv_s), (socket.SO_SNDTIMEO, send_s)):
        whole = int(seconds)
        sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6)))


class _Reader:
    """Buffered exact reads from a socket with idle / frame deadlines; memory bounded by the frame size.

    Small frames come out of one ``recv`` into a 64 KiB buffer (header and payload together); a payload
    larger than the buffer is received straight into its own bytearray.
    """

    CHUNK_BYTES = 64 * 1024

    def __init__(self, conn: socket.socket, tick_s: float, stop: threading.Event) -> None:
        self.conn = conn
        self.tick_s = tick_s
        self.stop = stop
        self.buf = bytearray(self.CHUNK_BYTES)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def read(self, count: int, first_timeout_s: float, frame_timeout_s: float, started: bool = False) -> bytes | None:
        """Exactly ``count`` bytes; None on EOF before any byte of a frame; _Close on EOF mid-frame or a timeout.

        The first byte may take ``first_timeout_s`` (idle connections); once started, the whole rest
        must arrive within ``frame_timeout_s`` (slow-drip clients cannot hold a connection forever).
        """
        if self.end - self.start >= count:
            out = bytes(self.view[self.start:self.start + count])
            self.start += count
            return out
        if count > self.CHUNK_BYTES:
            target = bytearray(count)
            have = self.end - self.start
            target[:have] = self.view[self.start:self.end]
            self.start = self.end = 0
            self._fill(memoryview(target), have, count, first_timeout_s, frame_timeout_s, started or have > 0)
            return bytes(target)
        if self.start:  # compact: keep the unread bytes at the front
            have = self.end - self.start
            self.buf[:have] = self.view[self.start:self.end]
            self.start, self.end = 0, have
        if not self._fill(self.view, self.end, count, first_timeout_s, frame_timeout_s, started or self.end > 0):
            return None
        out = bytes(self.view[:count])
        self.start = count
        return out

    def _fill(self, view: memoryview, filled: int, need: int, first_timeout_s: float, frame_timeout_s: float,
              started: bool) -> bool:
        deadline = time.monotonic() + (frame_timeout_s if started else first_timeout_s)
        while filled < need:
            try:
                received = self.conn.recv_into(view[filled:])
            except (BlockingIOError, TimeoutError):
                if self.stop.is_set():
                    raise _Close(None, "server stopping") from None
                if time.monotonic() >= deadline:
                    raise _Close("TIMEOUT", f"frame not complete within frame_timeout_s={frame_timeout_s}" if started
                                 else "idle connection closed") from None
                continue
            if received == 0:
                if not started:
                    return False
                raise _Close(None, "connection closed mid-frame")
            if not started:
                deadline = time.monotonic() + frame_timeout_s
                started = True
            filled += received
            if view.obj is self.buf:
                self.end = filled
        return True


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    try:
        conn.settimeout(1.0)
        conn.sendall(data)
    except OSError:
        pass


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


# ------------------------------------------------------------------------------------ TCP client
class FastPathClient:
    """A blocking client of :class:`FastPathServer`; one connection, requests in order (a context manager).

    ``max_reply_bytes`` bounds the reply this client accepts.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, timeout_s: float = 10.0,
                 max_reply_bytes: int = 64 * 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout_s = timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._buf = bytearray(64 * 1024)
        self._view = memoryview(self._buf)

    def connect(self) -> FastPathClient:
        """Open the connection and authenticate (HELLO); TransportError if refused or unreachable."""
        if self._sock is not None:
            return self
        try:
            sock = socket.create_connection((self.host.strip("[]"), self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise TransportError("UNREACHABLE", f"cannot connect to {self.host}:{self.port} ({exc})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _kernel_timeouts(sock, self.timeout_s, self.timeout_s)
        self._sock = sock
        request_id = next(self._ids)
        try:
            header, payload = self._exchange(pack_frame(HELLO, request_id, (self.token or "").encode()))
        except TransportError:
            self.close()
            raise
        frame_type = header[5]
        if frame_type != HELLO_OK:
            self.close()
            parse_reply(header, payload, request_id)  # raises the server's error
            raise TransportError("BAD_REPLY", f"expected HELLO_OK, got frame type {frame_type}")
        return self

    def infer(self, code_blob: bytes) -> np.ndarray:
        """Logits float32 ``(N, classes)`` of one codec blob; TransportError with the server's reason."""
        self.connect()
        request_id = next(self._ids)
        header, payload = self._exchange(pack_frame(INFER, request_id, code_blob))
        return parse_reply(header, payload, request_id)

    def _exchange(self, frame: bytes) -> tuple[bytes, bytes]:
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(frame)
            filled = sock.recv_into(self._view)  # usually the whole reply in one syscall
            while filled < HEADER_BYTES:
                filled += _recv_some(sock, self._view[filled:])
            length = HEADER.unpack_from(self._buf)[5]
            if length > self.max_reply_bytes:
                raise TransportError("BAD_REPLY", f"reply of {length} bytes exceeds max_reply_bytes")
            total = HEADER_BYTES + length
            if total <= len(self._buf):
                while filled < total:
                    filled += _recv_some(sock, self._view[filled:total])
                return bytes(self._view[:HEADER_BYTES]), bytes(self._view[HEADER_BYTES:total])
            payload = bytearray(length)
            payload[:filled - HEADER_BYTES] = self._view[HEADER_BYTES:filled]
            view = memoryview(payload)
            got = filled - HEADER_BYTES
            while got < length:
                got += _recv_some(sock, view[got:])
        except (OSError, EOFError) as exc:
            self.close()
            reason = "timed out" if isinstance(exc, BlockingIOError) else str(exc)
            raise TransportError("CONNECTION", f"connection to {self.host}:{self.port} failed ({reason})") from None
        return bytes(self._view[:HEADER_BYTES]), bytes(payload)

    def close(self) -> None:
        """Close the connection (the next call reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> FastPathClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_some(sock: socket.socket, view: memoryview) -> int:
    received = sock.recv_into(view)
    if received == 0:
        raise EOFError("server closed the connection")
    return received


# ------------------------------------------------------------------------------------ ZeroMQ
def _zmq() -> Any:
    try:
        import zmq
    except ImportError:
        raise ToolUnavailableError("the ZeroMQ transport needs pyzmq (pip install pyzmq)") from None
    return zmq


class ZmqFastPathServer:
    """The fast path over ZeroMQ: a ROUTER socket, one serving thread; messages = [HELLO frame, INFER frame].

    Every message carries the token (no connection state); oversized messages are dropped by ZeroMQ
    (``ZMQ_MAXMSGSIZE``), malformed ones get an ERROR reply.
    """

    def __init__(
        self, artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_batch: int = DEFAULT_MAX_BATCH, backend: str = "ort",
        ort_threads: int | None = 1, model: TailModel | None = None,
    ) -> None:
        check_bind(host, port, token)
        self._zmq = _zmq()
        self.host = host
        self._token = token.encode() if token else None
        self.max_frame_bytes = _positive("max_frame_bytes", max_frame_bytes)
        self.model = model if model is not None else TailModel(load_split_artifact(artifact_dir), backend,
                                                               ort_threads, max_batch)
        self._handler = _Handler(self.model, self.max_frame_bytes)
        self._requested_port = port
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None

    def start(self) -> ZmqFastPathServer:
        """Bind and serve in a background thread (the socket lives in that thread)."""
        self._thread = threading.Thread(target=self._run, name="aeforge-zmq", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        zmq = self._zmq
        context = zmq.Context.instance()
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame_bytes + MAX_TOKEN_BYTES + 2 * HEADER_BYTES)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1024)
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        try:
            if ":" in self.host:
                sock.setsockopt(zmq.IPV6, 1)
            if self._requested_port:
                sock.bind(f"tcp://{host}:{self._requested_port}")
                self.port = self._requested_port
            else:
                self.port = sock.bind_to_random_port(f"tcp://{host}")
        except zmq.ZMQError as exc:
            self._error = ConfigError(f"port: cannot bind {self.host}:{self._requested_port} ({exc})")
            sock.close()
            self._ready.set()
            return
        self._ready.set()
        sock.setsockopt(zmq.RCVTIMEO, 200)  # wake up to notice stop()
        try:
            while not self._stop.is_set():
                try:
                    parts = sock.recv_multipart(copy=True)
                except zmq.Again:
                    continue
                if len(parts) < 2:
                    continue
                identity, body = parts[0], parts[1:]
                sock.send_multipart([identity, self._reply(body)])
        finally:
            sock.close()

    def _reply(self, body: list[bytes]) -> bytes:
        request_id = 0
        try:
            if len(body) != 2:
                raise _Close("BAD_TYPE", f"message: expected [HELLO frame, INFER frame], got {len(body)} parts")
            frames = []
            for part in body:
                if len(part) < HEADER_BYTES:
                    raise _Close("BAD_TYPE", f"frame: {len(part)} bytes, shorter than the header")
                frame_type, request_id, length = _check_header(part[:HEADER_BYTES], self.max_frame_bytes)
                if len(part) != HEADER_BYTES + length:
                    raise _Close("BAD_TYPE", f"payload_length: header says {length}, frame has "
                                             f"{len(part) - HEADER_BYTES}")
                frames.append((frame_type, part[HEADER_BYTES:]))
            (hello_type, token), (infer_type, payload) = frames
            if hello_type != HELLO or infer_type != INFER:
                raise _Close("BAD_TYPE", "message: expected [HELLO frame, INFER frame]")
            if self._token is not None and not hmac.compare_digest(token, self._token):
                raise _Close("UNAUTHENTICATED", "token: missing or wrong")
        except _Close as close:
            return error_frame(close.status or "BAD_TYPE", request_id, str(close))
        return self._handler.infer(request_id, payload)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ZmqFastPathServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ZmqFastPathClient:
    """A DEALER client of :class:`ZmqFastPathServer` (one request in flight)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, timeout_s: float = 10.0,
    ) -> None:
        zmq = _zmq()
        self._zmq = zmq
        self._sock = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        host = f"[{host.strip('[]')}]" if ":" in host else host
        if ":" in host:
            self._sock.setsockopt(zmq.IPV6, 1)
        self._sock.connect(f"tcp://{host}:{port}")
        self._hello = pack_frame(HELLO, 0, (token or "").encode())
        self._ids = itertools.count(1)

    def infer(self, code_blob: bytes) -> np.ndarray:
        """Logits float32 ``(N, classes)`` of one codec blob."""
        request_id = next(self._ids)
        self._sock.send_multipart([self._hello, pack_frame(INFER, request_id, code_blob)])
        try:
            reply = self._sock.recv()
        except self._zmq.Again:
            raise TransportError("TIMEOUT", "no reply from the ZeroMQ server") from None
        if len(reply) < HEADER_BYTES:
            raise TransportError("BAD_REPLY", f"reply of {len(reply)} bytes")
        return parse_reply(reply[:HEADER_BYTES], reply[HEADER_BYTES:], request_id)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> ZmqFastPathClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
