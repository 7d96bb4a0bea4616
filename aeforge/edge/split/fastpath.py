"""The split tail behind the framed TCP fast path (:mod:`.protocol`), optionally over TLS.

A connection starts with HELLO (fingerprint and token, compared in constant time) and then carries any
number of INFER frames (logits back) or, for a multi-task export, INFER_TASKS frames (the outputs of the
tasks named, :mod:`.task_wire`), each answered in order. Errors in a well-framed request (bad blob, wrong
shape, batch too large, unknown or malformed task list) get an ERROR reply and the connection stays usable;
framing errors (magic, version, type, oversized length), a bad token, a fingerprint mismatch, a frame cut
short, a slow frame (``frame_timeout_s``) or an idle connection (``idle_timeout_s``) get an ERROR reply when
possible and the connection is closed.

Bounds that hold: at most ``max_clients`` connections (more get ERROR BUSY); a connection must finish
its TLS handshake and HELLO within ``handshake_timeout_s`` of being accepted, and no INFER payload is
read before the HELLO has passed; one frame in memory per connection, of at most
``min(max_frame_bytes, the largest blob of max_batch samples)`` (plus a task list of at most
``MAX_TASK_LIST_BYTES``); a blob is checked against the code spec
before decompression, so its decoded size is bounded by ``max_batch`` samples of the model's code.

The ZeroMQ variant lives in :mod:`.zmqpath` (re-exported here).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aeforge.edge.split.codec import load_split_artifact
from aeforge.edge.split.multitask_serve import MultiTaskTailModel, fast_path_model
from aeforge.edge.split.protocol import (  # noqa: F401  (re-exported: the public names of the fast path)
    CODES,
    DEFAULT_MAX_FRAME_BYTES,
    ERROR,
    ERRORS,
    HEADER,
    HEADER_BYTES,
    HELLO,
    HELLO_OK,
    INFER,
    INFER_TASKS,
    KEEPS_CONNECTION,
    MAGIC,
    RESULT,
    RESULT_TASKS,
    VERSION,
    Close,
    FastPathRequests,
    RequestHandler,
    TransportError,
    check_reply_header,
    check_request_header,
    error_frame,
    fingerprint_bytes,
    hello_payload,
    pack_frame,
    parse_reply,
    parse_task_reply,
)
from aeforge.edge.split.security import ClientTLS, ServerTLS, bare_host, check_bind, check_connect, host_port
from aeforge.edge.split.serve import DEFAULT_MAX_BATCH, TailModel, _positive
from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer  # noqa: F401
from aeforge.errors import ConfigError

_Answer = TypeVar("_Answer")


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}: must be > 0 seconds, got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------ TCP server
class FastPathServer:
    """The split tail behind the framed TCP protocol; one thread per connection (a context manager).

    ``port=0`` picks a free port (:attr:`port`). ``model`` replaces the ONNX tail (see TailServer).
    ``tls``: serve TLS with this certificate (required off loopback unless ``insecure``).
    """

    def __init__(
        self, artifact_dir: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_clients: int = 64, idle_timeout_s: float = 60.0,
        frame_timeout_s: float = 10.0, max_batch: int = DEFAULT_MAX_BATCH, backend: str = "ort",
        ort_threads: int | None = 1, model: TailModel | MultiTaskTailModel | None = None, tls: ServerTLS | None = None,
        insecure: bool = False, handshake_timeout_s: float = 5.0,
    ) -> None:
        check_bind(host, port, token, secure=tls is not None, insecure=insecure,
                   client_auth=tls is not None and tls.client_ca_file is not None)
        self.host = bare_host(host)
        self.max_frame_bytes = _positive("max_frame_bytes", max_frame_bytes)
        self.max_clients = _positive("max_clients", max_clients)
        self.idle_timeout_s = _seconds("idle_timeout_s", idle_timeout_s)
        self.frame_timeout_s = _seconds("frame_timeout_s", frame_timeout_s)
        self.handshake_timeout_s = _seconds("handshake_timeout_s", handshake_timeout_s)
        self._ssl = tls.ssl_context() if tls is not None else None
        self.model = model if model is not None else fast_path_model(load_split_artifact(artifact_dir), backend,
                                                                     ort_threads, max_batch)
        self._handler = RequestHandler(self.model, self.max_frame_bytes, token)
        self._requested_port = port
        self.port = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.stats = {"connections": 0, "requests": 0, "errors": 0, "refused": 0, "tls_failed": 0,
                      "handshake_timeouts": 0}

    @property
    def fingerprint(self) -> str:
        """The served export's fingerprint (hex)."""
        return self._handler.fingerprint

    # -------------------------------------------------------------- lifecycle
    def start(self) -> FastPathServer:
        """Bind, listen and accept in a background thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            listener = socket.create_server((self.host, self._requested_port), family=family,
                                            backlog=self.max_clients)
        except OSError as exc:
            raise ConfigError(f"port: cannot bind {host_port(self.host, self._requested_port)} ({exc})") from None
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

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[key] += amount

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
            if busy:  # plaintext on purpose: a TLS handshake per refused connection would be work before trust
                _send_quietly(conn, error_frame("BUSY", 0, f"max_clients={self.max_clients} connections are open"))
                _shutdown(conn)
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn, time.monotonic()), name="aeforge-fastpath-conn",
                                      daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    # -------------------------------------------------------------- one connection
    def _wrap(self, conn: socket.socket, accepted: float) -> socket.socket | None:
        """The TLS socket after a handshake bounded by handshake_timeout_s (None when it failed)."""
        assert self._ssl is not None
        conn.settimeout(max(0.01, accepted + self.handshake_timeout_s - time.monotonic()))
        try:
            wrapped = self._ssl.wrap_socket(conn, server_side=True)
        except (OSError, ValueError):  # ssl.SSLError, a timeout, a reset
            self._count("tls_failed")
            with self._lock:
                self._connections.discard(conn)
            conn.close()
            return None
        with self._lock:
            self._connections.discard(conn)
            self._connections.add(wrapped)
        return wrapped

    def _serve(self, conn: socket.socket, accepted: float) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tick_s = min(0.25, self.idle_timeout_s, self.frame_timeout_s, self.handshake_timeout_s)
        if self._ssl is not None:
            wrapped = self._wrap(conn, accepted)
            if wrapped is None:
                return
            conn = wrapped
            conn.settimeout(tick_s)  # SSL sockets need Python-level timeouts (no SO_RCVTIMEO under OpenSSL)
        else:
            _kernel_timeouts(conn, tick_s, max(1.0, self.frame_timeout_s))
        reader = _Reader(conn, tick_s, self._stop)
        request_id = 0
        handler = self._handler
        try:
            authenticated = False
            while not self._stop.is_set():
                if not authenticated:
                    left_s = accepted + self.handshake_timeout_s - time.monotonic()
                    header = reader.read(HEADER_BYTES, left_s, left_s, idle_message="handshake: no HELLO within "
                                         f"handshake_timeout_s={self.handshake_timeout_s:g}")
                else:
                    header = reader.read(HEADER_BYTES, self.idle_timeout_s, self.frame_timeout_s)
                if header is None:
                    return  # clean close between frames
                frame_type, request_id, length = check_request_header(header, handler.max_payload_bytes)
                if not authenticated:
                    if frame_type != HELLO:  # the INFER payload is never read
                        raise Close("UNAUTHENTICATED", "type: the first frame of a connection must be HELLO")
                    left_s = accepted + self.handshake_timeout_s - time.monotonic()
                    payload = reader.read(length, left_s, left_s, started=True) or b""
                    handler.check_hello(payload)
                    authenticated = True
                    self._send(conn, handler.hello_ok(request_id))
                    continue
                if frame_type == HELLO:
                    raise Close("BAD_TYPE", "type: HELLO sent twice on one connection")
                payload = reader.read(length, self.frame_timeout_s, self.frame_timeout_s, started=True) or b""
                reply = handler.handle(frame_type, request_id, payload)
                with self._lock:
                    self.stats["requests"] += 1
                    self.stats["errors"] += reply[5] == ERROR
                self._send(conn, reply)
        except Close as close:
            self._count("errors")
            if close.status == "TIMEOUT" and not authenticated:
                self._count("handshake_timeouts")
            if close.status is not None:
                _send_quietly(conn, error_frame(close.status, request_id, str(close)))
                _drain_quietly(conn)
        except OSError:
            pass  # the client vanished mid-request, or a send failed: drop this connection only
        finally:
            with self._lock:
                self._connections.discard(conn)
            _shutdown(conn)
            conn.close()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if self._ssl is None:
            conn.sendall(data)  # bounded by SO_SNDTIMEO
            return
        conn.settimeout(self.frame_timeout_s)
        try:
            conn.sendall(data)
        finally:
            conn.settimeout(min(0.25, self.idle_timeout_s, self.frame_timeout_s, self.handshake_timeout_s))


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

    def read(self, count: int, first_timeout_s: float, frame_timeout_s: float, started: bool = False,
             idle_message: str = "idle connection closed") -> bytes | None:
        """Exactly ``count`` bytes; None on EOF before any byte of a frame; Close on EOF mid-frame or a timeout.

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
            self._fill(memoryview(target), have, count, first_timeout_s, frame_timeout_s, started or have > 0,
                       idle_message)
            return bytes(target)
        if self.start:  # compact: keep the unread bytes at the front
            have = self.end - self.start
            self.buf[:have] = self.view[self.start:self.end]
            self.start, self.end = 0, have
        if not self._fill(self.view, self.end, count, first_timeout_s, frame_timeout_s, started or self.end > 0,
                          idle_message):
            return None
        out = bytes(self.view[:count])
        self.start = count
        return out

    def _fill(self, view: memoryview, filled: int, need: int, first_timeout_s: float, frame_timeout_s: float,
              started: bool, idle_message: str) -> bool:
        deadline = time.monotonic() + (frame_timeout_s if started else first_timeout_s)
        while filled < need:
            if time.monotonic() >= deadline:
                raise Close("TIMEOUT", f"frame not complete within frame_timeout_s={frame_timeout_s:g}" if started
                            else idle_message)
            try:
                received = self.conn.recv_into(view[filled:])
            except (BlockingIOError, TimeoutError):
                if self.stop.is_set():
                    raise Close(None, "server stopping") from None
                continue
            if received == 0:
                if not started:
                    return False
                raise Close("TRUNCATED", f"connection closed mid-frame ({filled} of {need} bytes)")
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
    except (OSError, ValueError):
        pass


def _drain_quietly(conn: socket.socket, max_bytes: int = 256 * 1024, max_s: float = 0.2) -> None:
    """Read (and drop) what the client still sends, briefly, so closing does not reset the error reply away."""
    with contextlib.suppress(OSError, ValueError):
        if not isinstance(conn, ssl.SSLSocket):
            conn.shutdown(socket.SHUT_WR)
        conn.settimeout(max_s)
        deadline = time.monotonic() + max_s
        dropped = 0
        while dropped < max_bytes and time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                return
            dropped += len(chunk)


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        conn.shutdown(socket.SHUT_RDWR)


# ------------------------------------------------------------------------------------ TCP client
class FastPathClient(FastPathRequests):
    """A blocking client of :class:`FastPathServer`; one connection, requests in order (a context manager).

    ``tls``: connect over TLS and verify the server's certificate. ``fingerprint``: the export this
    client encodes for (hex; checked by the server at HELLO, and the server's checked here); None sends
    zeros (not checked). After a timeout, a broken connection or a malformed reply the socket is
    closed and the next call reconnects. ``max_reply_bytes`` bounds the reply this client accepts.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, timeout_s: float = 10.0,
                 max_reply_bytes: int = 64 * 1024 * 1024, tls: ClientTLS | None = None,
                 fingerprint: str | None = None, insecure: bool = False) -> None:
        check_connect(host, tls is not None, insecure)
        self.host = bare_host(host)
        self.port = port
        self.token = token
        self.timeout_s = _seconds("timeout_s", timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self.fingerprint = fingerprint
        self._hello = hello_payload(fingerprint, token)
        self._ssl = tls.ssl_context() if tls is not None else None
        self._server_name = (tls.server_name if tls is not None else None) or self.host
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._buf = bytearray(64 * 1024)
        self._view = memoryview(self._buf)

    def connect(self) -> FastPathClient:
        """Open the connection and authenticate (HELLO); TransportError if refused or unreachable."""
        if self._sock is not None:
            return self
        where = host_port(self.host, self.port)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise TransportError("UNREACHABLE", f"cannot connect to {where} ({exc})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._server_name)
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise TransportError("TLS", f"{where}: the server's certificate was refused ({exc.verify_message}; "
                                            f"expected a certificate for {self._server_name!r} signed by the "
                                            "--tls-ca)") from None
            except (OSError, ValueError) as exc:
                sock.close()
                raise TransportError("TLS", f"{where}: TLS handshake failed ({exc})") from None
        else:
            _kernel_timeouts(sock, self.timeout_s, self.timeout_s)
        self._sock = sock
        request_id = next(self._ids)
        try:
            header, payload = self._exchange(pack_frame(HELLO, request_id, self._hello))
            if header[5] != HELLO_OK:
                parse_reply(header, payload, request_id)  # raises the server's error
                raise TransportError("BAD_REPLY", f"expected HELLO_OK, got frame type {header[5]}")
            if self.fingerprint is not None and payload not in (fingerprint_bytes(self.fingerprint), bytes(32)):
                raise TransportError("MODEL_MISMATCH", f"fingerprint: this client's export is "
                                                       f"{self.fingerprint[:16]}..., the server serves "
                                                       f"{payload.hex()[:16]}...")
        except TransportError:
            self.close()
            raise
        return self

    def _request(self, frame_type: int, payload: bytes, parse: Callable[[bytes, bytes, int], _Answer]) -> _Answer:
        self.connect()
        request_id = next(self._ids)
        try:
            header, reply = self._exchange(pack_frame(frame_type, request_id, payload))
            return parse(header, reply, request_id)
        except TransportError as exc:
            if exc.status not in KEEPS_CONNECTION:
                self.close()  # the stream may be out of step (late or foreign reply): start afresh
            raise

    def _exchange(self, frame: bytes) -> tuple[bytes, bytes]:
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(frame)
            filled = sock.recv_into(self._view)  # usually the whole reply in one syscall
            if filled == 0:
                raise EOFError("server closed the connection")
            while filled < HEADER_BYTES:
                filled += _recv_some(sock, self._view[filled:])
            length = check_reply_header(self._view[:HEADER_BYTES], self.max_reply_bytes)
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
        except (BlockingIOError, TimeoutError):
            self.close()
            raise TransportError("TIMEOUT", f"no reply from {host_port(self.host, self.port)} within "
                                            f"timeout_s={self.timeout_s:g}") from None
        except (OSError, EOFError) as exc:
            self.close()
            raise TransportError("CONNECTION", f"connection to {host_port(self.host, self.port)} failed "
                                               f"({exc})") from None
        return bytes(self._view[:HEADER_BYTES]), bytes(payload)

    def close(self) -> None:
        """Close the connection (the next call reconnects)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
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
