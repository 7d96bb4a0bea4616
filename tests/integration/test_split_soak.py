"""Soak and fuzz of the split servers (loopback only), the servers in a subprocess of their own.

For ``SOAK_S`` seconds (env ``AEFORGE_SPLIT_SOAK_S``, default 60) 16 clients hammer the servers at
once (12 on the TCP fast path, 4 on KServe gRPC, one of those mixing in corrupted blobs) while a
fuzzer sends ``FUZZ_FRAMES`` (env ``AEFORGE_SPLIT_FUZZ_FRAMES``, default 10 000) hostile frames to the
fast path, each on its own connection: random bytes, truncated valid frames (the client vanishes
mid-request), oversized length headers, and 1-3 bit flips of valid frames; a few slow-drip
connections stall mid-frame. Pass criteria: the server process never dies, every valid request's
logits equal the reference bit for bit (the same ORT tail with the same session options, run here),
every reply to a hostile frame is a well-formed ERROR (or, where the flip spared the blob, the right
RESULT), and the server's resident memory grows by less than ``RSS_GROWTH_BOUND_BYTES`` between the
warm-up and the end.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aeforge.edge.split.codec import encode_code
from tests.integration.test_split_serve import make_split_artifact, random_codes

triton = pytest.importorskip("tritonclient.grpc")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_S = float(os.environ.get("AEFORGE_SPLIT_SOAK_S", "60"))
FUZZ_FRAMES = int(os.environ.get("AEFORGE_SPLIT_FUZZ_FRAMES", "10000"))
TCP_CLIENTS, GRPC_CLIENTS = 12, 4
RSS_GROWTH_BOUND_BYTES = 64 * 1024 * 1024
WARMUP_S = 3.0
TOKEN = "soak-token"

SERVER = """
import json, sys
from aeforge.edge.split.fastpath import FastPathServer
from aeforge.edge.split.serve import TailServer
tcp = FastPathServer(sys.argv[1], token=sys.argv[2], max_frame_bytes=65536, max_clients=64, idle_timeout_s=30,
                     frame_timeout_s=1.0).start()
kserve = TailServer(sys.argv[1], token=sys.argv[2], threads=8, max_frame_bytes=256 * 1024).start()
print(json.dumps({"tcp": tcp.port, "grpc": kserve.port}), flush=True)
sys.stdin.read()
print(json.dumps(tcp.stats), flush=True)
tcp.stop()
kserve.stop()
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
    tail = ort.InferenceSession(str(artifact / "tail.onnx"), exact_session_options(1),
                                providers=["CPUExecutionProvider"])
    pool = []
    for seed in range(32):
        codes = random_codes(artifact, 1 + seed % 4, seed=seed)
        values = codes.astype(np.float32) * np.float32(0.125)
        pool.append((encode_code(codes, 4, 0.125, False, "zlib" if seed % 3 == 0 else "none"), values,
                     tail.run(None, {"code": values})[0]))
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(artifact), TOKEN], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    ports = json.loads(process.stdout.readline())
    yield artifact, pool, ports, process
    if process.poll() is None:
        process.kill()
        process.wait()


def _tcp_worker(port: int, pool: list, deadline: float, seed: int, counts: Counts, failures: list) -> None:
    from aeforge.edge.split.fastpath import FastPathClient

    rng = random.Random(seed)
    try:
        with FastPathClient("127.0.0.1", port, token=TOKEN) as client:
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
    port: int, pool: list, deadline: float, seed: int, counts: Counts, failures: list, corrupt: bool,
) -> None:
    rng = random.Random(seed)
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
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


def _fuzz_frame(rng: random.Random, pool: list) -> tuple[bytes, np.ndarray | None]:
    """A hostile byte string for a fresh connection, and the logits a RESULT may carry (None: no RESULT)."""
    from aeforge.edge.split.fastpath import HELLO, INFER, pack_frame

    hello = pack_frame(HELLO, 1, TOKEN.encode())
    blob, _, expected = rng.choice(pool)
    frame = pack_frame(INFER, 2, blob)
    mode = rng.randrange(5)
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


def _fuzz_worker(port: int, pool: list, frames: int, seed: int, counts: Counts, failures: list) -> None:
    from aeforge.edge.split.fastpath import ERROR, ERRORS, HEADER, HELLO_OK, MAGIC, RESULT, parse_reply

    rng = random.Random(seed)
    try:
        for _ in range(frames):
            data, expected = _fuzz_frame(rng, pool)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                try:
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server may close first (e.g. after a bad magic)
                try:
                    reply = _read_all(sock)
                except ConnectionResetError:
                    reply = b""  # the server closed with our bytes unread: a reset is a valid close
            while reply:
                if len(reply) < HEADER.size:
                    failures.append(f"fuzz: truncated reply {reply!r}")
                    return
                magic, _, kind, status, request_id, length = HEADER.unpack_from(reply)
                payload = reply[HEADER.size:HEADER.size + length]
                if magic != MAGIC or len(payload) != length or kind not in (HELLO_OK, RESULT, ERROR):
                    failures.append(f"fuzz: malformed reply {reply[:40]!r}")
                    return
                if kind == ERROR:
                    if status not in ERRORS or status == 8:  # INTERNAL would mean the server broke
                        failures.append(f"fuzz: error status {status}: {payload[:200]!r}")
                        return
                    counts.add("fuzz_errors")
                elif kind == RESULT:
                    got = parse_reply(reply[:HEADER.size], payload, request_id)
                    if expected is None or not np.array_equal(got, expected):
                        failures.append("fuzz: a RESULT for a corrupted frame carries other logits")
                        return
                    counts.add("fuzz_results")
                reply = reply[HEADER.size + length:]
            counts.add("fuzz_frames")
    except Exception as exc:
        failures.append(f"fuzz: {type(exc).__name__}: {exc}")


def _slow_worker(port: int, pool: list, deadline: float, counts: Counts, failures: list) -> None:
    """Slow-drip clients: half a frame, then silence past frame_timeout_s=1; expects a TIMEOUT error."""
    from aeforge.edge.split.fastpath import ERRORS, HEADER, HELLO, INFER, pack_frame

    while time.monotonic() < deadline - 3:
        frame = pack_frame(HELLO, 1, TOKEN.encode()) + pack_frame(INFER, 2, pool[0][0])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
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
        counts.add("slow")
        time.sleep(1.0)


def test_soak_and_fuzz(soak_setup) -> None:
    _, pool, ports, process = soak_setup
    counts = Counts("tcp", "grpc", "grpc_rejected", "fuzz_frames", "fuzz_errors", "fuzz_results", "slow")
    failures: list[str] = []
    start = time.monotonic()
    deadline = start + SOAK_S
    threads = [threading.Thread(target=_tcp_worker, args=(ports["tcp"], pool, deadline, i, counts, failures))
               for i in range(TCP_CLIENTS)]
    threads += [threading.Thread(target=_grpc_worker, args=(ports["grpc"], pool, deadline, 100 + i, counts, failures,
                                                            i == 0)) for i in range(GRPC_CLIENTS)]
    fuzzers = [threading.Thread(target=_fuzz_worker, args=(ports["tcp"], pool, FUZZ_FRAMES // 2, 200 + i, counts,
                                                          failures)) for i in range(2)]
    threads += [*fuzzers, threading.Thread(target=_slow_worker, args=(ports["tcp"], pool, deadline, counts, failures))]
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
    print(f"\nsoak {elapsed_s:.1f} s: {counts}; server stats {stats}; RSS warm {rss_warm / 2**20:.1f} MiB, "
          f"peak {rss_peak / 2**20:.1f} MiB, end {rss_end / 2**20:.1f} MiB")
    assert not failures, failures[:5]
    assert process.returncode == 0
    assert counts["fuzz_frames"] == FUZZ_FRAMES // 2 * 2
    assert counts["tcp"] > 0 and counts["grpc"] > 0 and counts["grpc_rejected"] > 0
    assert rss_peak - rss_warm < RSS_GROWTH_BOUND_BYTES, f"server RSS grew {(rss_peak - rss_warm) / 2**20:.1f} MiB"
