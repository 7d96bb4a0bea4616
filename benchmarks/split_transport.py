"""Split-computing transport latency on loopback: fast path (TCP, ZeroMQ) vs KServe v2 gRPC, a 2 KB code.

    python benchmarks/split_transport.py [--run RUN] [--calls 3000] [--out benchmarks/results]

The servers run in a subprocess (the client and server do not share a GIL); the client sends one
code blob per call and waits for the logits. The code is 8 x 16 x 16 values at 8 bits (2048 payload
bytes + 40 header bytes, uncompressed) unless ``--run`` names a split artifact. Two server models:

* ``null``: the tail replaced by a constant (transport + codec decode + framing only),
* ``ort``: the real ONNX tail on onnxruntime, one thread (what a user gets end to end),

and as a floor a raw TCP echo (length-prefixed request, 40-byte reply; no codec, no model). Per
transport and model: p50 / p99 / mean round trip over ``--calls`` calls after 200 warm-up calls.
Writes ``split_transport.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WARMUP_CALLS = 200
TOKEN = "bench-token-0123456789"


# ------------------------------------------------------------------------------------ server side
class NullModel:
    """A tail stand-in returning zero logits (isolates the transport)."""

    def __init__(self, artifact: Any, max_batch: int = 64) -> None:
        self.artifact = artifact
        self.max_batch = max_batch
        self.input_shape = artifact.code.shape

    def infer(self, values: np.ndarray) -> np.ndarray:
        return np.zeros((values.shape[0], self.artifact.num_classes), np.float32)


def _echo_server(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reply = bytes(40)
    head = bytearray(4)
    try:
        while True:
            view = memoryview(head)
            got = 0
            while got < 4:
                n = conn.recv_into(view[got:])
                if not n:
                    return
                got += n
            size = struct.unpack("<I", head)[0]
            body = bytearray(size)
            view = memoryview(body)
            got = 0
            while got < size:
                n = conn.recv_into(view[got:])
                if not n:
                    return
                got += n
            conn.sendall(reply)
    finally:
        conn.close()


def serve(artifact_dir: str, model_kind: str) -> None:
    """Subprocess mode: start every server, print their ports, serve until stdin closes."""
    from aeforge.edge.split.codec import load_split_artifact
    from aeforge.edge.split.fastpath import FastPathServer, ZmqFastPathServer
    from aeforge.edge.split.serve import TailModel, TailServer

    artifact = load_split_artifact(artifact_dir)
    model = NullModel(artifact) if model_kind == "null" else TailModel(artifact, ort_threads=1)
    servers = [FastPathServer(artifact_dir, token=TOKEN, model=model).start(),
               TailServer(artifact_dir, token=TOKEN, threads=4, model=model).start()]
    ports = {"tcp": servers[0].port, "grpc": servers[1].port}
    try:
        servers.append(ZmqFastPathServer(artifact_dir, token=TOKEN, model=model).start())
        ports["zmq"] = servers[-1].port
    except Exception:  # pyzmq missing: skip that transport
        pass
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_echo_server, args=(listener,), daemon=True).start()
    ports["raw_tcp_echo"] = listener.getsockname()[1]
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    for server in servers:
        server.stop()


# ------------------------------------------------------------------------------------ client side
def _stats(times_s: list[float]) -> dict[str, float]:
    array = np.asarray(times_s)
    return {"calls": len(times_s), "p50_us": round(float(np.percentile(array, 50)) * 1e6, 1),
            "p99_us": round(float(np.percentile(array, 99)) * 1e6, 1), "mean_us": round(float(array.mean()) * 1e6, 1),
            "min_us": round(float(array.min()) * 1e6, 1)}


def _time(call: Any, calls: int) -> dict[str, float]:
    for _ in range(WARMUP_CALLS):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return _stats(times)


def bench_transports(ports: dict[str, int], blob: bytes, calls: int) -> dict[str, dict[str, float]]:
    """Round-trip statistics of one blob per call on every transport the server offers."""
    import tritonclient.grpc as triton

    from aeforge.edge.split.fastpath import FastPathClient, ZmqFastPathClient

    results: dict[str, dict[str, float]] = {}
    with socket.create_connection(("127.0.0.1", ports["raw_tcp_echo"])) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = struct.pack("<I", len(blob)) + blob
        reply = bytearray(40)

        def echo() -> None:
            sock.sendall(frame)
            view = memoryview(reply)
            got = 0
            while got < 40:
                got += sock.recv_into(view[got:])

        results["raw_tcp_echo"] = _time(echo, calls)
    with FastPathClient("127.0.0.1", ports["tcp"], token=TOKEN) as client:
        results["fastpath_tcp"] = _time(lambda: client.infer(blob), calls)
    if "zmq" in ports:
        with ZmqFastPathClient("127.0.0.1", ports["zmq"], token=TOKEN) as client:
            results["fastpath_zmq"] = _time(lambda: client.infer(blob), calls)
    client = triton.InferenceServerClient(f"127.0.0.1:{ports['grpc']}")
    headers = {"authorization": f"Bearer {TOKEN}"}
    packed = triton.InferInput("code_packed", [len(blob)], "UINT8")
    packed.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
    results["kserve_grpc_packed"] = _time(lambda: client.infer("aeforge_tail", [packed], headers=headers), calls)
    from aeforge.edge.split.codec import decode_code

    values = decode_code(blob).dequantize()
    fp32 = triton.InferInput("code", list(values.shape), "FP32")
    fp32.set_data_from_numpy(values)
    results["kserve_grpc_fp32"] = _time(lambda: client.infer("aeforge_tail", [fp32], headers=headers), calls)
    results["kserve_grpc_fp32"]["request_payload_bytes"] = int(values.nbytes)
    client.close()
    return results


def _artifact(run: Path | None, scratch: Path) -> Path:
    if run is not None:
        return run
    sys.path.insert(0, str(REPO))
    from tests.integration.test_split_serve import make_split_artifact

    return make_split_artifact(scratch / "split", channels=8, code_hw=16, bits=8, image_hw=32, exponent=-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a split artifact dir (default: a toy 8x16x16 8-bit code)")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per transport and model")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--serve", nargs=2, metavar=("ARTIFACT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    from aeforge.artifact import tool_versions
    from aeforge.edge.split.codec import encode_code, load_split_artifact

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aeforge-bench-split-") as scratch:
        artifact_dir = _artifact(args.run, Path(scratch))
        spec = load_split_artifact(artifact_dir).code
        low = -(1 << (spec.bits - 1)) if spec.signed else 0
        high = (1 << (spec.bits - 1)) - 1 if spec.signed else (1 << spec.bits) - 1
        codes = np.random.default_rng(0).integers(low, high + 1, size=(1, *spec.shape))
        blob = encode_code(codes, spec.bits, spec.scale, spec.signed)
        models = {}
        for model_kind in ("null", "ort"):
            process = subprocess.Popen([sys.executable, __file__, "--serve", str(artifact_dir), model_kind],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
            try:
                ports = json.loads(process.stdout.readline())
                models[model_kind] = bench_transports(ports, blob, args.calls)
            finally:
                process.stdin.close()
                process.wait(timeout=30)
    report = {
        "benchmark": "split_transport",
        "loopback": True,
        "code": {"shape": [1, *spec.shape], "bits": spec.bits, "blob_bytes": len(blob)},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "tools": tool_versions(),
        "warmup_calls": WARMUP_CALLS,
        "models": models,
        "notes": "null = constant tail (transport, framing, codec decode); ort = the ONNX tail, one thread; "
                 "raw_tcp_echo = length-prefixed send + 40-byte reply, no codec or model (the floor). "
                 "kserve_grpc_* through tritonclient.grpc (the packed code as UINT8 'code_packed', or the "
                 "dequantized FP32 tensor, 4x the bytes).",
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split_transport.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"code blob {len(blob)} bytes; {args.calls} calls each")
    for model_kind, rows in models.items():
        for name, row in rows.items():
            print(f"{model_kind:4s} {name:20s} p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:8.1f} us")


if __name__ == "__main__":
    main()
