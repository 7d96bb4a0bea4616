"""The fast path over ZeroMQ: a ROUTER server and a DEALER client, optionally with CurveZMQ.

Each request is a two-part message [HELLO frame, INFER or INFER_TASKS frame] (frames of :mod:`.protocol`;
the HELLO carries the fingerprint and token, there is no connection state); each reply is one frame, echoing
the request id. One thread owns the socket: it drains every waiting message, checks framing, token and
fingerprint and the declared blob size, and only then queues the work; it then runs one queued request.

Bounds that hold:

* work queued by aeforge, across all peers together: at most ``max_queue`` requests and
  ``max_queue_bytes`` bytes; a request beyond either gets ERROR BUSY at once;
* one message: at most ``HELLO + max_frame_bytes`` plus a task list (``ZMQ_MAXMSGSIZE``; a larger one makes libzmq drop
  the peer's connection, the client sees a timeout);
* inside libzmq, per connected peer, at most ``RCVHWM`` (4) messages are buffered before the server
  reads them; the server reads them at the rate of the cheap checks above, so this stays small but
  it is per peer: libzmq offers no limit on the number of peers (use a firewall or CURVE with
  ``clients_dir`` to limit who can connect);
* a peer must complete the ZMTP (and CURVE) handshake within ``handshake_timeout_s``
  (``ZMQ_HANDSHAKE_IVL``).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from aeforge.edge.split.codec import load_split_artifact
from aeforge.edge.split.multitask_serve import MultiTaskTailModel, fast_path_model
from aeforge.edge.split.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    HEADER_BYTES,
    HELLO,
    INFER,
    INFER_TASKS,
    MAX_HELLO_BYTES,
    Close,
    FastPathRequests,
    RequestHandler,
    TransportError,
    check_reply_header,
    check_request_header,
    error_frame,
    hello_payload,
    pack_frame,
)
from aeforge.edge.split.security import (
    CurveClientKeys,
    CurveServerKeys,
    bare_host,
    check_bind,
    check_connect,
    host_port,
)
from aeforge.edge.split.serve import DEFAULT_MAX_BATCH, TailModel, _positive
from aeforge.edge.split.task_wire import MAX_TASK_LIST_BYTES
from aeforge.errors import AeforgeError, ConfigError, ToolUnavailableError

RCVHWM = 4
_Answer = TypeVar("_Answer")


def _zmq() -> Any:
    try:
        import zmq
    except ImportError:
        raise ToolUnavailableError("the ZeroMQ transport needs pyzmq (pip install pyzmq)") from None
    return zmq


def _endpoint(host: str, port: int) -> str:
    return f"tcp://{host_port(host, port)}"


class ZmqFastPathServer:
    """The fast path over ZeroMQ (a context manager); ``curve``: CurveZMQ keys (required off loopback).

    ``max_queue`` / ``max_queue_bytes`` bound the queued work across all peers (see the module docstring).
    :meth:`wait` raises when the serving thread died.
    """

    def __init__(
        self, artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_batch: int = DEFAULT_MAX_BATCH, backend: str = "ort",
        ort_threads: int | None = 1, model: TailModel | MultiTaskTailModel | None = None,
        curve: CurveServerKeys | None = None, insecure: bool = False, max_queue: int = 64,
        max_queue_bytes: int = 4 * 1024 * 1024, handshake_timeout_s: float = 5.0,
    ) -> None:
        check_bind(host, port, token, secure=curve is not None, insecure=insecure)
        self._zmq = _zmq()
        self.host = bare_host(host)
        self._token = token.encode() if token else None
        self.max_frame_bytes = _positive("max_frame_bytes", max_frame_bytes)
        self.max_queue = _positive("max_queue", max_queue)
        self.max_queue_bytes = _positive("max_queue_bytes", max_queue_bytes)
        if not isinstance(handshake_timeout_s, (int, float)) or not handshake_timeout_s > 0:
            raise ConfigError(f"handshake_timeout_s: must be > 0 seconds, got {handshake_timeout_s!r}")
        self.handshake_timeout_s = float(handshake_timeout_s)
        self._curve = curve
        self._curve_keys = curve.keys() if curve is not None else None
        self.model = model if model is not None else fast_path_model(load_split_artifact(artifact_dir), backend,
                                                                     ort_threads, max_batch)
        self._handler = RequestHandler(self.model, self.max_frame_bytes, token)
        self._requested_port = port
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._queue: collections.deque[tuple[bytes, int, int, bytes]] = collections.deque()
        self._queued_bytes = 0
        self.stats = {"requests": 0, "errors": 0, "busy": 0, "unauthenticated": 0, "peak_queue_bytes": 0}

    @property
    def fingerprint(self) -> str:
        """The served export's fingerprint (hex)."""
        return self._handler.fingerprint

    # -------------------------------------------------------------- lifecycle
    def start(self) -> ZmqFastPathServer:
        """Bind and serve in a background thread (the socket lives in that thread)."""
        self._thread = threading.Thread(target=self._run, name="aeforge-zmq", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self) -> None:
        """Block until stopped; AeforgeError naming the cause when the serving thread died."""
        while not self._stop.is_set():
            if self._thread is None or not self._thread.is_alive():
                break
            self._thread.join(0.5)
        if not self._stop.is_set():
            cause = f"{type(self._error).__name__}: {self._error}" if self._error else "no error recorded"
            raise AeforgeError(f"the ZeroMQ serving thread died ({cause}); the server is not serving")

    def __enter__(self) -> ZmqFastPathServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- the serving thread
    def _socket(self, context: Any) -> Any:
        zmq = self._zmq
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.MAXMSGSIZE, self._handler.max_payload_bytes + MAX_TASK_LIST_BYTES + MAX_HELLO_BYTES
                        + 2 * HEADER_BYTES)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        sock.setsockopt(zmq.SNDHWM, 64)
        sock.setsockopt(zmq.HANDSHAKE_IVL, int(self.handshake_timeout_s * 1000))
        if ":" in self.host:
            sock.setsockopt(zmq.IPV6, 1)
        if self._curve_keys is not None:
            public, secret = self._curve_keys
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        return sock

    def _run(self) -> None:
        zmq = self._zmq
        context = zmq.Context()
        authenticator = None
        sock = None
        try:
            if self._curve is not None and self._curve.clients_dir is not None:
                from zmq.auth.thread import ThreadAuthenticator

                authenticator = ThreadAuthenticator(context)
                authenticator.start()
                authenticator.configure_curve(domain="*", location=self._curve.clients_dir)
            sock = self._socket(context)
            try:
                if self._requested_port:
                    sock.bind(_endpoint(self.host, self._requested_port))
                    self.port = self._requested_port
                else:
                    self.port = sock.bind_to_random_port(f"tcp://{host_port(self.host, 0).rsplit(':', 1)[0]}")
            except zmq.ZMQError as exc:
                raise ConfigError(f"port: cannot bind {host_port(self.host, self._requested_port)} ({exc})") from None
            self._ready.set()
            self._serve(sock)
        except BaseException as exc:  # recorded for start() / wait(): the CLI exits with this error
            self._error = exc
        finally:
            self._ready.set()
            if sock is not None:
                sock.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()

    def _serve(self, sock: Any) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not self._queue and not poller.poll(200):
                continue
            self._drain(sock)
            if self._queue:
                identity, frame_type, request_id, payload = self._queue.popleft()
                self._queued_bytes -= len(payload)
                reply = self._handler.handle(frame_type, request_id, payload)
                self.stats["requests"] += 1
                self.stats["errors"] += reply[5] == 0xFF
                sock.send_multipart([identity, reply])

    def _drain(self, sock: Any) -> None:
        """Read every waiting message; checked requests are queued (within the bounds) or answered at once."""
        zmq = self._zmq
        for _ in range(4 * self.max_queue + 64):  # bounded per round so queued work still runs
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(parts) < 2:
                continue
            identity, body = parts[0], parts[1:]
            try:
                frame_type, request_id, payload = self._check(body)
            except Close as close:
                self.stats["errors"] += 1
                self.stats["unauthenticated"] += close.status == "UNAUTHENTICATED"
                sock.send_multipart([identity, error_frame(close.status or "BAD_TYPE", close.request_id,
                                                           str(close))])
                continue
            if len(self._queue) >= self.max_queue or self._queued_bytes + len(payload) > self.max_queue_bytes:
                self.stats["busy"] += 1
                sock.send_multipart([identity, error_frame(
                    "BUSY", request_id, f"queue full ({len(self._queue)} requests, {self._queued_bytes} bytes; "
                                        f"max_queue={self.max_queue}, max_queue_bytes={self.max_queue_bytes})")])
                continue
            self._queue.append((identity, frame_type, request_id, payload))
            self._queued_bytes += len(payload)
            self.stats["peak_queue_bytes"] = max(self.stats["peak_queue_bytes"], self._queued_bytes)

    def _check(self, body: list[bytes]) -> tuple[int, int, bytes]:
        """(type, request id, payload) of an INFER or INFER_TASKS message whose framing, token and fingerprint
        pass; Close otherwise."""
        request_id = 0
        try:
            if len(body) != 2:
                raise Close("BAD_TYPE", f"message: expected [HELLO frame, INFER frame], got {len(body)} parts")
            frames = []
            for part in body:
                if len(part) < HEADER_BYTES:
                    raise Close("BAD_TYPE", f"frame: {len(part)} bytes, shorter than the {HEADER_BYTES}-byte header")
                frame_type, request_id, length = check_request_header(part, self._handler.max_payload_bytes)
                if len(part) != HEADER_BYTES + length:
                    raise Close("TRUNCATED", f"payload_length: header says {length}, frame has "
                                             f"{len(part) - HEADER_BYTES}")
                frames.append((frame_type, part[HEADER_BYTES:]))
            (hello_type, hello), (infer_type, payload) = frames
            if hello_type != HELLO or infer_type not in (INFER, INFER_TASKS):
                raise Close("BAD_TYPE", "message: expected [HELLO frame, INFER or INFER_TASKS frame]")
            self._handler.check_hello(hello)  # token (constant time), then fingerprint: before queueing
        except Close as close:
            close.request_id = request_id
            raise
        return infer_type, request_id, payload


# ------------------------------------------------------------------------------------ client
class ZmqFastPathClient(FastPathRequests):
    """A DEALER client of :class:`ZmqFastPathServer` (one request in flight; a context manager).

    Replies are matched by request id (a late reply to an earlier, timed-out request is discarded);
    after a timeout or a malformed reply the socket is replaced by a fresh one, so the next call works.
    ``curve``: CurveZMQ with the server's public key (a wrong key shows as a timeout: CURVE gives no error).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, timeout_s: float = 10.0,
        curve: CurveClientKeys | None = None, fingerprint: str | None = None, insecure: bool = False,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        check_connect(host, curve is not None, insecure)
        self._zmq = _zmq()
        self.host = bare_host(host)
        self.port = port
        self.timeout_s = float(timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self._curve_keys = curve.keys() if curve is not None else None
        self._hello = pack_frame(HELLO, 0, hello_payload(fingerprint, token))
        self._ids = itertools.count(1)
        self._context = self._zmq.Context.instance()
        self._sock: Any = None
        self._open()

    def _open(self) -> None:
        zmq = self._zmq
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # a send blocks while no peer pipe is up (a CURVE handshake the server refused drops it): bound it too
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout_s * 1000)))
        if ":" in self.host:
            sock.setsockopt(zmq.IPV6, 1)
        if self._curve_keys is not None:
            server_public, public, secret = self._curve_keys
            sock.curve_serverkey = server_public
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(_endpoint(self.host, self.port))
        self._sock = sock

    def reset(self) -> None:
        """Replace the socket by a fresh one (drops anything queued or late)."""
        self.close()
        self._open()

    def _request(self, frame_type: int, payload: bytes, parse: Callable[[bytes, bytes, int], _Answer]) -> _Answer:
        zmq = self._zmq
        request_id = next(self._ids)
        deadline = time.monotonic() + self.timeout_s
        try:
            self._sock.send_multipart([self._hello, pack_frame(frame_type, request_id, payload)])
        except zmq.Again:
            self._timed_out("could not send to")
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self._sock.poll(left_ms, zmq.POLLIN):
                self._timed_out("no reply from")
            reply = self._sock.recv()
            try:
                if len(reply) < HEADER_BYTES:
                    raise TransportError("BAD_REPLY", f"reply of {len(reply)} bytes, shorter than the header")
                length = check_reply_header(reply, self.max_reply_bytes)
                if len(reply) != HEADER_BYTES + length:
                    raise TransportError("BAD_REPLY", f"reply header says {length} bytes, frame has "
                                                      f"{len(reply) - HEADER_BYTES}")
            except TransportError:
                self.reset()
                raise
            if HEADER.unpack_from(reply)[4] not in (request_id, 0):
                continue  # a late reply to an earlier request
            try:
                return parse(reply[:HEADER_BYTES], reply[HEADER_BYTES:], request_id)
            except TransportError as exc:
                if exc.status == "BAD_REPLY":
                    self.reset()
                raise

    def _timed_out(self, what: str) -> NoReturn:
        self.reset()
        hint = " (CURVE: is --curve-server-key the server's public key?)" if self._curve_keys else ""
        raise TransportError("TIMEOUT", f"{what} {_endpoint(self.host, self.port)} within "
                                        f"timeout_s={self.timeout_s:g}{hint}")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> ZmqFastPathClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
