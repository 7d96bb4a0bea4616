"""Soak and fuzz of the split servers (loopback only), the servers in a subprocess of their own.

For ``SOAK_S`` seconds (env ``AEFORGE_SPLIT_SOAK_S``, default 30) 16 clients hammer four servers at
once, plaintext and TLS (certificates made by the test): 12 on the TCP fast path (half over TLS), 4 on
KServe gRPC (half over TLS; one of each mixing in corrupted blobs). Meanwhile two fuzzers send
``FUZZ_FRAMES`` (env ``AEFORGE_SPLIT_FUZZ_FRAMES``, default 10 000) hostile frames to the plaintext fast
path, each on its own connection: random bytes, truncated valid frames (the client vanishes
mid-request), oversized length headers, 1-3 bit flips of valid frames, blobs with a valid CRC and
wrong dims, and zlib bombs with a valid CRC; two more fuzz the TLS fast path until the deadline; slow-drip
connections stall mid-frame on both. Pass criteria: the server process never dies; every valid
request's logits equal the reference bit for bit (the same ORT tail with the same session options, run
here); every hostile connection gets a reply (never silence) whose last frame is a well-formed ERROR
(or, where a flip spared the blob, the right RESULT), with BAD_CODE for the wrong-dims and bomb blobs;
the counts of fuzz errors and of timed-out slow clients are what the modes imply; and the server's
resident memory grows by less than ``RSS_GROWTH_BOUND_BYTES`` (64 MiB) between the warm-up and the end.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from aeforge.edge.split.codec import encode_code
from tests.integration.test_split_secure import make_pki
from tests.integration.test_split_serve import make_split_artifact, random_codes
from tests.unit.test_split_wire_bounds import crc_valid_blob

triton = pytest.importorskip("tritonclient.grpc")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_S = float(os.environ.get("AEFORGE_SPLIT_SOAK_S", "30"))  # 30 s: ~70k TCP and ~7k gRPC requests, the 10k
# plaintext fuzz frames take about as long; set it higher for a longer soak
FUZZ_FRAMES = int(os.environ.get("AEFORGE_SPLIT_FUZZ_FRAMES", "10000"))
TCP_CLIENTS, GRPC_CLIENTS = 12, 4
TLS_FUZZERS = 2
RSS_GROWTH_BOUND_BYTES = 64 * 1024 * 1024
WARMUP_S = 3.0
TOKEN = "soak-token-0123456789"
MODES = 7  # see _fuzz_frame
ALWAYS_ERROR_MODES = {0, 1, 2, 3, 5, 6}

SERVER = """
import json, sys
from aeforge.edge.split.fastpath import FastPathServer
from aeforge.edge.split.security import ServerTLS
from aeforge.edge.split.serve import TailServer
artifact, token, cert, key = sys.argv[1:5]
tls = ServerTLS(cert, key)
options = dict(token=token, max_frame_bytes=65536, max_clients=64, idle_timeout_s=30, frame_timeout_s=1.0)
tcp = FastPathServer(artifact, **options).start()
tcp_tls = FastPathServer(artifact, tls=tls, **options).start()
kserve = TailServer(artifact, token=token, threads=4, max_frame_bytes=256 * 1024).start()
kserve_tls = TailServer(artifact, token=token, threads=4, max_frame_bytes=256 * 1024, tls=tls).start()
print(json.dumps({"tcp": tcp.port, "tcp_tls": tcp_tls.port, "grpc": kserve.port, "grpc_tls": kserve_tls.port}),
      flush=True)
sys.stdin.read()
print(json.dumps({"tcp": tcp.stats, "tcp_tls": tcp_tls.stats}), flush=True)
for server in (tcp, tcp_tls, kserve, kserve_tls):
    server.stop()
"""


class Counts(dict):
    """Thread-safe event counters."""

    def __init__(self, *names: str) -> None:
        super().__init__((name, 0) for name in names)
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self[name] += 1


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def soak_setup(tmp_path_factory: pytest.TempPathFactory):
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc for the memory bound")
    import onnxruntime as ort

    from aeforge.edge.onnx_export import exact_session_options

    artifact = make_split_artifact(tmp_path_factory.mktemp("soak") / "split")
    pki = make_pki(tmp_path_factory.mktemp("soak_pki"))
    tail = ort.InferenceSession(str(artifact / "tail.onnx"), exact_session_options(1),
                                providers=["CPUExecutionProvider"])
    pool = []
    for seed in range(32):
        codes = random_codes(artifact, 1 + seed % 4, seed=seed)
        values = codes.astype(np.float32) * np.float32(0.125)
        pool.append((encode_code(codes, 4, 0.125, False, "zlib" if seed % 3 == 0 else "none"), values,
                     tail.run(None, {"code": values})[0]))
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(artifact), TOKEN, pki["server_cert"],
                                pki["server_key"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    ports = json.loads(process.stdout.readline())
    yield artifact, pool, ports, process, pki
    if process.poll() is None:
        process.kill()
        process.wait()


def _tcp_worker(port: int, pool: list, deadline: float, seed: int, counts: Counts, failures: list,
                ca: str | None) -> None:
    from aeforge.edge.split.fastpath import FastPathClient
    from aeforge.edge.split.security import ClientTLS

    rng = random.Random(seed)
    try:
        with FastPathClient("127.0.0.1", port, token=TOKEN, tls=ClientTLS(ca) if ca else None) as client:
            while time.monotonic() < deadline:
                blob, _, expected = rng.choice(pool)
                got = client.infer(blob)
                if not np.array_equal(got, expected):
                    failures.append(f"tcp client {seed}: wrong logits (max diff {np.abs(got - expected).max()})")
                    return
                counts.add("tcp")
    except Exception as exc:
        failures.append(f"tcp client {seed}: {type(exc).__name__}: {exc}")


def _grpc_worker(
    port: int, pool: list, deadline: float, seed: int, counts: Counts, failures: list, corrupt: bool, ca: str | None,
) -> None:
    rng = random.Random(seed)
    tls = {"ssl": True, "root_certificates": ca} if ca else {}
    client = triton.InferenceServerClient(f"127.0.0.1:{port}", **tls)
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        while time.monotonic() < deadline:
            blob, values, expected = rng.choice(pool)
            if corrupt and rng.random() < 0.3:
                flipped = bytearray(blob)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                tensor = triton.InferInput("code_packed", [len(flipped)], "UINT8")
                tensor.set_data_from_numpy(np.frombuffer(bytes(flipped), dtype=np.uint8))
                try:
                    got = client.infer("aeforge_tail", [tensor], headers=headers).as_numpy("logits")
                except triton.InferenceServerException as exc:
                    if exc.status() != "StatusCode.INVALID_ARGUMENT":
                        failures.append(f"grpc fuzz: unexpected status {exc.status()}: {exc.message()}")
                        return
                    counts.add("grpc_rejected")
                    continue
                if not np.array_equal(got, expected):
                    failures.append("grpc fuzz: a corrupted blob was accepted with other logits")
                    return
                continue
            if rng.random() < 0.5:
                tensor = triton.InferInput("code", list(values.shape), "FP32")
                tensor.set_data_from_numpy(values)
            else:
                tensor = triton.InferInput("code_packed", [len(blob)], "UINT8")
                tensor.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
            got = client.infer("aeforge_tail", [tensor], headers=headers).as_numpy("logits")
            if not np.array_equal(got, expected):
                failures.append(f"grpc client {seed}: wrong logits (max diff {np.abs(got - expected).max()})")
                return
            counts.add("grpc")
    except Exception as exc:
        failures.append(f"grpc client {seed}: {type(exc).__name__}: {exc}")
    finally:
        client.close()


def _fuzz_frame(rng: random.Random, pool: list) -> tuple[int, bytes, np.ndarray | None]:
    """(mode, a hostile byte string for a fresh connection, the logits a RESULT may carry: None for no RESULT)."""
    from aeforge.edge.split.fastpath import HELLO, INFER, hello_payload, pack_frame

    hello = pack_frame(HELLO, 1, hello_payload(None, TOKEN))
    blob, _, expected = rng.choice(pool)
    frame = pack_frame(INFER, 2, blob)
    mode = rng.randrange(MODES)
    return mode, *_fuzz_bytes(mode, rng, hello, frame, expected)


def _fuzz_bytes(mode: int, rng: random.Random, hello: bytes, frame: bytes,
                expected: np.ndarray) -> tuple[bytes, np.ndarray | None]:
    from aeforge.edge.split.fastpath import INFER, pack_frame

    if mode == 5:  # a valid CRC, wrong dims (and a payload that matches them)
        dims = (1, 4, 8, rng.choice([7, 9, 64]))
        return hello + pack_frame(INFER, 2, crc_valid_blob(4, dims, bytes(dims[-1] * 16), 0)), None
    if mode == 6:  # a zlib bomb with a valid CRC: right dims, a stream that expands far past them
        bomb = crc_valid_blob(4, (1, 4, 8, 8), zlib.compress(bytes(rng.choice([1, 4]) << 20), 9), 1)
        return hello + pack_frame(INFER, 2, bomb), None
    if mode == 0:  # random bytes, no handshake
        return rng.randbytes(rng.randrange(1, 300)), None
    if mode == 1:  # random bytes after a valid handshake
        return hello + rng.randbytes(rng.randrange(1, 300)), None
    if mode == 2:  # the client vanishes mid-frame
        return hello + frame[: rng.randrange(1, len(frame))], None
    if mode == 3:  # an oversized length header (and a little of the promised payload)
        return hello + frame[:16] + rng.randrange(65537, 2**32).to_bytes(4, "little") + rng.randbytes(64), None
    flipped = bytearray(hello + frame)  # 1-3 bit flips anywhere, handshake included
    for _ in range(rng.randrange(1, 4)):
        position = rng.randrange(len(flipped) * 8)
        flipped[position // 8] ^= 1 << (position % 8)
    return bytes(flipped), expected


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _fuzz_worker(port: int, pool: list, frames: int, seed: int, counts: Counts, failures: list,
                 ca: str | None = None, deadline: float | None = None) -> None:
    """Hostile connections to the fast path: ``frames`` of them, or (TLS) as many as fit before ``deadline``."""
    from aeforge.edge.split.fastpath import ERROR, ERRORS, HEADER, HELLO_OK, MAGIC, RESULT, parse_reply

    rng = random.Random(seed)
    context = None
    if ca is not None:
        context = ssl.create_default_context(cafile=ca)
    try:
        for _ in range(frames):
            if deadline is not None and time.monotonic() > deadline:
                return
            mode, data, expected = _fuzz_frame(rng, pool)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
                try:
                    sock.sendall(data)
                    if context is None:
                        sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server may close first (e.g. after a bad magic)
                try:
                    reply = _read_all(sock) if context is None else _read_until_final(sock)
                except ConnectionResetError:
                    reply = b""
            if not reply:
                failures.append(f"fuzz mode {mode}: no reply (silence) to {data[:48]!r}")
                return
            last = None
            while reply:
                if len(reply) < HEADER.size:
                    failures.append(f"fuzz: truncated reply {reply!r}")
                    return
                magic, _, kind, status, request_id, length = HEADER.unpack_from(reply)
                payload = reply[HEADER.size:HEADER.size + length]
                if magic != MAGIC or len(payload) != length or kind not in (HELLO_OK, RESULT, ERROR):
                    failures.append(f"fuzz: malformed reply {reply[:40]!r}")
                    return
                last = kind
                if kind == ERROR:
                    if status not in ERRORS or status == 8:  # INTERNAL would mean the server broke
                        failures.append(f"fuzz: error status {status}: {payload[:200]!r}")
                        return
                    if mode in (5, 6) and ERRORS[status] != "BAD_CODE":
                        failures.append(f"fuzz mode {mode}: expected BAD_CODE, got {ERRORS[status]}: {payload[:200]!r}")
                        return
                    counts.add("fuzz_errors")
                    counts.add(f"fuzz_errors_mode{mode}")
                elif kind == RESULT:
                    got = parse_reply(reply[:HEADER.size], payload, request_id)
                    if expected is None or not np.array_equal(got, expected):
                        failures.append("fuzz: a RESULT for a corrupted frame carries other logits")
                        return
                    counts.add("fuzz_results")
                reply = reply[HEADER.size + length:]
            if last not in (ERROR, RESULT):
                failures.append(f"fuzz mode {mode}: the last reply is type {last}, not ERROR or RESULT")
                return
            counts.add("fuzz_frames" if context is None else "tls_fuzz_frames")
            counts.add(f"fuzz_mode{mode}")
    except Exception as exc:
        failures.append(f"fuzz: {type(exc).__name__}: {exc}")


def _read_until_final(sock: socket.socket) -> bytes:
    """Reply frames until an ERROR or RESULT frame (a TLS client cannot half-close to signal the end)."""
    from aeforge.edge.split.fastpath import ERROR, HEADER, RESULT

    data = b""
    offset = 0
    while True:
        while len(data) - offset >= HEADER.size:
            kind, length = HEADER.unpack_from(data, offset)[2], HEADER.unpack_from(data, offset)[5]
            if len(data) - offset < HEADER.size + length:
                break
            offset += HEADER.size + length
            if kind in (ERROR, RESULT):
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _slow_worker(port: int, pool: list, deadline: float, counts: Counts, failures: list,
                 ca: str | None = None) -> None:
    """Slow-drip clients: half a frame, then silence past frame_timeout_s=1; expects a TIMEOUT error."""
    from aeforge.edge.split.fastpath import ERRORS, HEADER, HELLO, INFER, hello_payload, pack_frame

    context = ssl.create_default_context(cafile=ca) if ca else None
    while time.monotonic() < deadline - 3:
        frame = pack_frame(HELLO, 1, hello_payload(None, TOKEN)) + pack_frame(INFER, 2, pool[0][0])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
                sock.sendall(frame[: len(frame) - 10])
                reply = _read_all(sock)
        except Exception as exc:
            failures.append(f"slow client: {type(exc).__name__}: {exc}")
            return
        statuses = []
        while len(reply) >= HEADER.size:
            length = HEADER.unpack_from(reply)[5]
            statuses.append(ERRORS.get(HEADER.unpack_from(reply)[3]))
            reply = reply[HEADER.size + length:]
        if not statuses or statuses[-1] != "TIMEOUT":
            failures.append(f"slow client: expected a TIMEOUT error last, got {statuses}")
            return
        counts.add("slow" if context is None else "tls_slow")
        time.sleep(1.0)


def test_soak_and_fuzz(soak_setup) -> None:
    _, pool, ports, process, pki = soak_setup
    counts = Counts("tcp", "grpc", "grpc_rejected", "fuzz_frames", "tls_fuzz_frames", "fuzz_errors", "fuzz_results",
                    "slow", "tls_slow", *(f"fuzz_mode{m}" for m in range(MODES)),
                    *(f"fuzz_errors_mode{m}" for m in range(MODES)))
    failures: list[str] = []
    start = time.monotonic()
    deadline = start + SOAK_S
    ca = pki["ca"]
    threads = [threading.Thread(target=_tcp_worker, args=(ports["tcp_tls" if i % 2 else "tcp"], pool, deadline, i,
                                                          counts, failures, ca if i % 2 else None))
               for i in range(TCP_CLIENTS)]
    threads += [threading.Thread(target=_grpc_worker, args=(ports["grpc_tls" if i % 2 else "grpc"], pool, deadline,
                                                            100 + i, counts, failures, i < 2, ca if i % 2 else None))
                for i in range(GRPC_CLIENTS)]
    threads += [threading.Thread(target=_fuzz_worker, args=(ports["tcp"], pool, FUZZ_FRAMES // 2, 200 + i, counts,
                                                           failures)) for i in range(2)]
    threads += [threading.Thread(target=_fuzz_worker, args=(ports["tcp_tls"], pool, FUZZ_FRAMES, 300 + i, counts,
                                                           failures, ca, deadline - 2)) for i in range(TLS_FUZZERS)]
    threads += [threading.Thread(target=_slow_worker, args=(ports["tcp"], pool, deadline, counts, failures)),
                threading.Thread(target=_slow_worker, args=(ports["tcp_tls"], pool, deadline, counts, failures, ca))]
    for thread in threads:
        thread.start()
    time.sleep(min(WARMUP_S, SOAK_S / 4))
    rss_warm = _rss_bytes(process.pid)
    rss_peak = rss_warm
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 60:
        time.sleep(0.5)
        assert process.poll() is None, "the server process died"
        rss_peak = max(rss_peak, _rss_bytes(process.pid))
    rss_end = _rss_bytes(process.pid)
    for thread in threads:
        thread.join(timeout=10)
    elapsed_s = time.monotonic() - start
    process.stdin.close()
    stats = json.loads(process.stdout.readline())
    process.wait(timeout=20)
    print(f"\nsoak {elapsed_s:.1f} s: {dict(counts)}; server stats {stats}; RSS warm {rss_warm / 2**20:.1f} MiB, "
          f"peak {rss_peak / 2**20:.1f} MiB, end {rss_end / 2**20:.1f} MiB")
    assert not failures, failures[:5]
    assert process.returncode == 0
    assert counts["fuzz_frames"] == FUZZ_FRAMES // 2 * 2
    assert counts["tls_fuzz_frames"] >= TLS_FUZZERS
    assert counts["tcp"] > 0 and counts["grpc"] > 0 and counts["grpc_rejected"] > 0
    for mode in ALWAYS_ERROR_MODES:  # every connection of these modes ended in an ERROR frame
        assert counts[f"fuzz_errors_mode{mode}"] >= counts[f"fuzz_mode{mode}"] > 0, mode
    frames = counts["fuzz_frames"] + counts["tls_fuzz_frames"]
    assert counts["fuzz_errors"] + counts["fuzz_results"] >= frames  # never silence
    assert counts["fuzz_errors"] >= sum(counts[f"fuzz_mode{m}"] for m in ALWAYS_ERROR_MODES)
    slow_min = max(1, int((SOAK_S - 3) / 5))  # one slow connection takes ~1 s (frame_timeout_s) + 1 s pause
    assert counts["slow"] >= slow_min and counts["tls_slow"] >= slow_min, (counts["slow"], counts["tls_slow"])
    server_errors = stats["tcp"]["errors"] + stats["tcp_tls"]["errors"]
    assert server_errors >= sum(counts[f"fuzz_mode{m}"] for m in ALWAYS_ERROR_MODES)  # the server counted them too
    assert rss_peak - rss_warm < RSS_GROWTH_BOUND_BYTES, f"server RSS grew {(rss_peak - rss_warm) / 2**20:.1f} MiB"
