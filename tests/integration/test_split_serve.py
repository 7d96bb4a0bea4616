"""Split serving on loopback: KServe v2 gRPC (a real tritonclient), the framed TCP fast path, ZeroMQ,
the device-side SplitClient and the Triton repository export, on a toy split artifact built here."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from aeforge.edge.split.codec import decode_code, encode_code, load_split_artifact
from aeforge.errors import ConfigError

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
triton = pytest.importorskip("tritonclient.grpc")

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789"
SECRET = "s3cret-0123456789abcdef"


# ------------------------------------------------------------------------------------ toy artifact
def make_split_artifact(
    root: Path, channels: int = 4, code_hw: int = 8, bits: int = 4, signed: bool = False, exponent: int = -3,
    classes: int = 10, image_hw: int = 16, fixed_batch: bool = False, seed: int = 0,
) -> Path:
    """A split artifact dir (head.onnx, tail.onnx, split.json) of a tiny conv net; codes on the 2**exponent grid."""
    torch.manual_seed(seed)
    scale = 2.0**exponent
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, channels, 3, stride=image_hw // code_hw, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x) if signed else torch.relu(self.conv(x))
            return torch.clamp(torch.round(y / scale), low, high) * scale

    tail = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, classes),
    )
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(Head().eval(), tail.eval(), root, channels, code_hw, image_hw, fixed_batch)
    meta = {
        "code": {"bits": bits, "signed": signed, "scale": scale, "channels": channels,
                 "shape": [channels, code_hw, code_hw], "zero_point": 0},
        "input": {"name": "image", "shape": [1, 3, image_hw, image_hw], "dtype": "float32"},
        "tail_input_name": "code", "tail_output_name": "logits", "num_classes": classes,
        "head_sha256": hashlib.sha256((root / "head.onnx").read_bytes()).hexdigest(),
        "tail_sha256": hashlib.sha256((root / "tail.onnx").read_bytes()).hexdigest(),
    }
    (root / "split.json").write_text(json.dumps(meta, indent=1))
    return root


def _export(head, tail, root: Path, channels: int, code_hw: int, image_hw: int, fixed_batch: bool) -> None:
    dynamic = None if fixed_batch else {"image": {0: "batch"}, "code_values": {0: "batch"}}
    torch.onnx.export(head, (torch.zeros(1, 3, image_hw, image_hw),), str(root / "head.onnx"),
                      input_names=["image"], output_names=["code_values"], dynamic_axes=dynamic, opset_version=17,
                      dynamo=False)
    dynamic = None if fixed_batch else {"code": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(tail, (torch.zeros(1, channels, code_hw, code_hw),), str(root / "tail.onnx"),
                      input_names=["code"], output_names=["logits"], dynamic_axes=dynamic, opset_version=17,
                      dynamo=False)


def reference_logits(artifact_dir: Path, dequantized: np.ndarray) -> np.ndarray:
    """The tail run directly on onnxruntime (default session options)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact_dir / "tail.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"code": dequantized})[0]


def random_codes(artifact_dir: Path, batch: int, seed: int = 0) -> np.ndarray:
    spec = load_split_artifact(artifact_dir).code
    low, high = (-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed else (0, (1 << spec.bits) - 1)
    return np.random.default_rng(seed).integers(low, high + 1, size=(batch, *spec.shape)).astype(np.int32)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_artifact(tmp_path_factory.mktemp("split") / "split")


@pytest.fixture(scope="module")
def grpc_server(artifact: Path):
    from aeforge.edge.split.serve import TailServer

    with TailServer(artifact, threads=4, max_frame_bytes=256 * 1024) as server:
        yield server


def _client(port: int):
    return triton.InferenceServerClient(f"127.0.0.1:{port}")


def _packed_input(blob: bytes):
    tensor = triton.InferInput("code_packed", [len(blob)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
    return tensor


# ------------------------------------------------------------------------------------ gRPC
def test_grpc_health_and_metadata(grpc_server, artifact: Path) -> None:
    client = _client(grpc_server.port)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("aeforge_tail")
    assert client.get_server_metadata().name == "aeforge-tail"
    meta = client.get_model_metadata("aeforge_tail")
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        ("code", "FP32", [-1, 4, 8, 8]), ("code_packed", "BYTES", [-1])]
    assert [(o.name, list(o.shape)) for o in meta.outputs] == [("logits", [-1, 10])]
    config = client.get_model_config("aeforge_tail").config
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert list(config.input[0].dims) == [4, 8, 8]
    with pytest.raises(triton.InferenceServerException) as info:
        client.get_model_metadata("other")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert not _try(lambda: client.is_model_ready("other"))


def _try(call) -> bool:
    try:
        return bool(call())
    except triton.InferenceServerException:
        return False


def test_grpc_fp32_and_packed_match_ort(grpc_server, artifact: Path) -> None:
    client = _client(grpc_server.port)
    codes = random_codes(artifact, 3)
    values = codes.astype(np.float32) * np.float32(0.125)
    expected = reference_logits(artifact, values)
    fp32 = triton.InferInput("code", list(values.shape), "FP32")
    fp32.set_data_from_numpy(values)
    got = client.infer("aeforge_tail", [fp32]).as_numpy("logits")
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    blob = encode_code(codes, 4, 0.125, False)
    got = client.infer("aeforge_tail", [_packed_input(blob)], outputs=[triton.InferRequestedOutput("logits")])
    np.testing.assert_allclose(got.as_numpy("logits"), expected, rtol=0, atol=1e-6)
    blobs = np.array([encode_code(codes[:1], 4, 0.125, False, "zlib"), encode_code(codes[1:], 4, 0.125, False)],
                     dtype=np.object_)
    as_bytes = triton.InferInput("code_packed", [2], "BYTES")
    as_bytes.set_data_from_numpy(blobs)
    np.testing.assert_allclose(client.infer("aeforge_tail", [as_bytes]).as_numpy("logits"), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: _fp32("code", np.zeros((1, 4, 8, 9), np.float32)), "inputs[0].shape"),
    (lambda: _fp32("code", np.zeros((65, 4, 8, 8), np.float32)), "batch 65"),
    (lambda: _fp32("image", np.zeros((1, 4, 8, 8), np.float32)), "unknown input 'image'"),
    (lambda: _typed("code", np.zeros((1, 4, 8, 8), np.float64), "FP64"), "must be FP32"),
    (lambda: _packed_input(b"AECT" + bytes(40)), "code blob field"),
    (lambda: _packed_input(encode_code(np.zeros((1, 4, 8, 8), int), 5, 0.125, False)), "'bits'"),
    (lambda: _packed_input(encode_code(np.zeros((1, 4, 4, 4), int), 4, 0.125, False)), "'dims'"),
])
def test_grpc_bad_requests_are_invalid_argument(grpc_server, artifact: Path, make, needle: str) -> None:
    client = _client(grpc_server.port)
    with pytest.raises(triton.InferenceServerException) as info:
        client.infer("aeforge_tail", [make()])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert needle in info.value.message()
    values = np.zeros((1, 4, 8, 8), np.float32)  # the server keeps serving
    np.testing.assert_allclose(client.infer("aeforge_tail", [_fp32("code", values)]).as_numpy("logits"),
                               reference_logits(artifact, values), atol=1e-6)


def _fp32(name: str, values: np.ndarray):
    return _typed(name, values, "FP32")


def _typed(name: str, values: np.ndarray, datatype: str):
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    return tensor


def test_grpc_unknown_model_and_oversized(grpc_server) -> None:
    client = _client(grpc_server.port)
    with pytest.raises(triton.InferenceServerException) as info:
        client.infer("nope", [_fp32("code", np.zeros((1, 4, 8, 8), np.float32))])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(triton.InferenceServerException) as info:  # 64 x 4 x 8 x 8 x 4 bytes = 64 KiB: fine;
        client.infer("aeforge_tail", [_packed_input(bytes(300 * 1024))])  # 300 KiB > max_frame_bytes
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live()


def test_grpc_token(artifact: Path) -> None:
    from aeforge.edge.split.serve import TailServer

    with TailServer(artifact, token=SECRET) as server:
        client = _client(server.port)
        values = np.zeros((1, 4, 8, 8), np.float32)
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": SECRET}):
            with pytest.raises(triton.InferenceServerException) as info:
                client.infer("aeforge_tail", [_fp32("code", values)], headers=headers)
            assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(triton.InferenceServerException):
            client.is_server_live()
        good = {"authorization": f"Bearer {SECRET}"}
        assert client.is_server_live(headers=good)
        assert client.infer("aeforge_tail", [_fp32("code", values)], headers=good).as_numpy("logits").shape == (1, 10)


def test_token_required_off_loopback(artifact: Path) -> None:
    from aeforge.edge.split.fastpath import FastPathServer
    from aeforge.edge.split.serve import TailServer, check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.1.2.3", "example.org"))
    for host in ("0.0.0.0", "::", "192.168.1.5"):
        with pytest.raises(ConfigError, match="tls: refusing to serve plaintext"):
            check_bind(host, 0, TOKEN)
        with pytest.raises(ConfigError, match="needs a token"):
            check_bind(host, 0, None, secure=True)
        check_bind(host, 0, TOKEN, secure=True)  # allowed with TLS and a token (nothing is bound here)
        check_bind(host, 0, TOKEN, insecure=True)  # plaintext only when asked for explicitly
        check_bind(host, 0, None, secure=True, client_auth=True)  # client certificates instead of a token
        for cls in (TailServer, FastPathServer):  # refused before loading or binding anything
            with pytest.raises(ConfigError, match="--insecure"):
                cls(artifact, host=host, token=TOKEN)
            with pytest.raises(ConfigError, match="needs a token"):
                cls(artifact, host=host, insecure=True)
    with pytest.raises(ConfigError, match="port"):
        check_bind("127.0.0.1", 70000, None)
    with pytest.raises(ConfigError, match="token"):
        check_bind("127.0.0.1", 0, "has space 0123456789")
    with pytest.raises(ConfigError, match="15 bytes is too short"):
        check_bind("127.0.0.1", 0, "x" * 15)


# ------------------------------------------------------------------------------------ fast path
@pytest.fixture(scope="module")
def fast_server(artifact: Path):
    from aeforge.edge.split.fastpath import FastPathServer

    with FastPathServer(artifact, token=TOKEN, max_frame_bytes=64 * 1024, max_clients=8, idle_timeout_s=2.0,
                        frame_timeout_s=1.0) as server:
        yield server


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def _read_frames(sock: socket.socket) -> list[tuple[int, int, bytes]]:
    """Every reply frame until the server closes: (type, status, payload)."""
    from aeforge.edge.split.fastpath import HEADER

    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames = []
    while data:
        _, _, kind, status, _, length = HEADER.unpack_from(data)
        frames.append((kind, status, data[20:20 + length]))
        data = data[20 + length:]
    return frames


def test_fast_path_round_trip(fast_server, artifact: Path) -> None:
    from aeforge.edge.split.fastpath import FastPathClient

    codes = random_codes(artifact, 5, seed=2)
    expected = reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))
    with FastPathClient("127.0.0.1", fast_server.port, token=TOKEN) as client:
        for compression in ("none", "zlib"):
            got = client.infer(encode_code(codes, 4, 0.125, False, compression))
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(client.infer(encode_code(codes[0], 4, 0.125, False)), expected[:1], atol=1e-6)


def test_fast_path_rejects_bad_frames_and_keeps_serving(fast_server, artifact: Path) -> None:
    from aeforge.edge.split.fastpath import (
        ERROR,
        HELLO,
        HELLO_OK,
        INFER,
        FastPathClient,
        TransportError,
        hello_payload,
        pack_frame,
    )

    codes = random_codes(artifact, 1, seed=3)
    blob = encode_code(codes, 4, 0.125, False)
    expected = reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))
    survivor = FastPathClient("127.0.0.1", fast_server.port, token=TOKEN).connect()

    def check_survivor() -> None:
        np.testing.assert_allclose(survivor.infer(blob), expected, atol=1e-6)

    # well-framed but bad requests: an ERROR reply naming the problem, the connection stays usable
    with FastPathClient("127.0.0.1", fast_server.port, token=TOKEN) as client:
        for bad, needle in [(blob[:-1], "payload_length"), (b"junk", "header"),
                            (encode_code(np.zeros((1, 4, 4, 4), int), 4, 0.125, False), "dims"),
                            (encode_code(np.zeros((1, 4, 8, 8), np.int32), 8, 0.125, False), "bits"),
                            (encode_code(np.zeros((65, 4, 8, 8), np.int32), 4, 0.125, False), "batch")]:
            with pytest.raises(TransportError, match=needle) as info:
                client.infer(bad)
            assert info.value.status == "BAD_CODE" or info.value.status == "BAD_REQUEST"
        with pytest.raises(TransportError, match=r"single-task .* send INFER") as info:  # INFER_TASKS, one task here
            client.infer_tasks(blob, ["cls"])
        assert info.value.status == "BAD_REQUEST"
        np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
    check_survivor()
    # framing errors and bad tokens: ERROR reply, then the server closes that connection
    hello = pack_frame(HELLO, 1, hello_payload(None, TOKEN))
    cases = [
        (b"XXXX" + bytes(16), "BAD_MAGIC"),
        (hello + struct.pack("<4sBBHQI", b"AEFP", 9, INFER, 0, 2, 0), "BAD_VERSION"),
        (hello + struct.pack("<4sBBHQI", b"AEFP", 2, 7, 0, 2, 0), "BAD_TYPE"),
        (hello + struct.pack("<4sBBHQI", b"AEFP", 2, INFER, 0, 2, 1 << 30), "TOO_LARGE"),
        (pack_frame(HELLO, 1, hello_payload(None, "wrong-token-0123456789")), "UNAUTHENTICATED"),
        (pack_frame(INFER, 1, blob), "UNAUTHENTICATED"),  # no HELLO first
    ]
    from aeforge.edge.split.fastpath import ERRORS

    for data, status in cases:
        with _raw(fast_server.port) as sock:
            sock.sendall(data)
            frames = _read_frames(sock)
        assert frames[-1][0] == ERROR and ERRORS[frames[-1][1]] == status, (status, frames)
        assert all(kind in (HELLO_OK, ERROR) for kind, _, _ in frames)
    check_survivor()
    # a client that vanishes mid-frame, and one that stalls mid-frame (frame_timeout_s=1)
    with _raw(fast_server.port) as sock:
        sock.sendall(hello + pack_frame(INFER, 2, blob)[:30])
    with _raw(fast_server.port) as sock:
        sock.sendall(hello + pack_frame(INFER, 2, blob)[:30])
        start = time.monotonic()
        frames = _read_frames(sock)
        assert ERRORS[frames[-1][1]] == "TIMEOUT" and time.monotonic() - start < 3
    check_survivor()
    survivor.close()


def test_fast_path_max_clients_and_idle(artifact: Path) -> None:
    from aeforge.edge.split.fastpath import ERRORS, FastPathClient, FastPathServer, TransportError

    with FastPathServer(artifact, max_clients=2, idle_timeout_s=0.5, handshake_timeout_s=0.5) as server:
        first = FastPathClient("127.0.0.1", server.port).connect()
        second = FastPathClient("127.0.0.1", server.port).connect()
        with pytest.raises(TransportError) as info:
            FastPathClient("127.0.0.1", server.port).connect()
        assert info.value.status == "BUSY"
        second.close()
        time.sleep(0.2)
        third = FastPathClient("127.0.0.1", server.port).connect()  # a slot is free again
        time.sleep(0.8)  # idle past idle_timeout_s: the server closed both
        with _raw(server.port) as sock:  # a connection that never sends HELLO gets a TIMEOUT error
            frames = _read_frames(sock)
            assert ERRORS[frames[-1][1]] == "TIMEOUT" and b"handshake" in frames[-1][2]
        codes = random_codes(artifact, 1)
        with pytest.raises(TransportError):
            first.infer(encode_code(codes, 4, 0.125, False))
        first.close()
        third.close()
        assert server.stats["refused"] == 1


def test_zmq_round_trip(artifact: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.fastpath import TransportError, ZmqFastPathClient, ZmqFastPathServer

    codes = random_codes(artifact, 2, seed=5)
    expected = reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))
    with ZmqFastPathServer(artifact, token=TOKEN) as server:
        with ZmqFastPathClient("127.0.0.1", server.port, token=TOKEN, timeout_s=5) as client:
            np.testing.assert_allclose(client.infer(encode_code(codes, 4, 0.125, False)), expected, atol=1e-6)
            with pytest.raises(TransportError, match=r"field .version."):
                client.infer(b"AECT" + bytes(40))
        with ZmqFastPathClient("127.0.0.1", server.port, token="bad-token-0123456789", timeout_s=5) as client:
            with pytest.raises(TransportError) as info:
                client.infer(encode_code(codes, 4, 0.125, False))
            assert info.value.status == "UNAUTHENTICATED"


# ------------------------------------------------------------------------------------ device client
@pytest.mark.parametrize("transport", ["grpc", "tcp", "zmq"])
def test_split_client_end_to_end(artifact: Path, transport: str) -> None:
    import onnxruntime as ort

    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import FastPathServer, ZmqFastPathServer
    from aeforge.edge.split.serve import TailServer

    if transport == "zmq":
        pytest.importorskip("zmq")
    server_cls = {"grpc": TailServer, "tcp": FastPathServer, "zmq": ZmqFastPathServer}[transport]
    images = np.random.default_rng(7).standard_normal((3, 3, 16, 16)).astype(np.float32)
    head = ort.InferenceSession(str(artifact / "head.onnx"), providers=["CPUExecutionProvider"])
    values = head.run(None, {"image": images})[0]
    expected = reference_logits(artifact, values)
    with server_cls(artifact, token=TOKEN) as server, \
            SplitClient(artifact, transport, port=server.port, token=TOKEN, compression="zlib") as client:
        result = client.infer(images)
    np.testing.assert_allclose(result.logits, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.codes.astype(np.float32) * np.float32(0.125), values)
    assert result.head_s > 0 and result.roundtrip_s > 0 and result.request_bytes > 24
    assert result.as_dict()["batch"] == 3


def test_split_client_transport_errors(artifact: Path) -> None:
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import TransportError
    from aeforge.edge.split.serve import TailServer

    with TailServer(artifact, token=TOKEN) as server, \
            SplitClient(artifact, "grpc", port=server.port, token="wrong-token-0123456789") as client, \
            pytest.raises(TransportError, match="UNAUTHENTICATED"):
        client.infer(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ConfigError, match="transport"):
        SplitClient(artifact, "http")


# ------------------------------------------------------------------------------------ Triton repository
def test_triton_repository(artifact: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from aeforge.edge.split.triton_repo import write_triton_repository

    model_dir = write_triton_repository(artifact, tmp_path / "repo", max_batch_size=32)
    assert (model_dir / "1" / "model.onnx").read_bytes() == (artifact / "tail.onnx").read_bytes()
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("aeforge_tail", "onnxruntime_onnx", 32)
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("code", "TYPE_FP32", [4, 8, 8])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [10])]
    assert config.HasField("dynamic_batching") and config.optimization.graph.level == -1

    fixed = make_split_artifact(tmp_path / "fixed", fixed_batch=True)
    config = text_format.Parse((write_triton_repository(fixed, tmp_path / "repo2") / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 4, 8, 8]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(ConfigError, match="model_name"):
        write_triton_repository(artifact, tmp_path / "repo3", model_name="bad name")


def test_fixed_batch_tail_loops_and_decodes(tmp_path: Path) -> None:
    from aeforge.edge.split.fastpath import FastPathClient, FastPathServer

    fixed = make_split_artifact(tmp_path / "fixed", fixed_batch=True, bits=6, signed=True, exponent=-4)
    codes = random_codes(fixed, 3, seed=9)
    assert codes.min() < 0
    expected = np.concatenate([reference_logits(fixed, c[None].astype(np.float32) / 16) for c in codes])
    with FastPathServer(fixed) as server, FastPathClient("127.0.0.1", server.port) as client:
        np.testing.assert_allclose(client.infer(encode_code(codes, 6, 1 / 16, True)), expected, atol=1e-6)
    assert decode_code(encode_code(codes, 6, 1 / 16, True)).signed


def test_trt_backend_is_guarded(artifact: Path) -> None:
    from aeforge.edge.split.serve import TailModel
    from aeforge.errors import ToolUnavailableError

    try:
        import tensorrt  # noqa: F401
        import torch as _torch

        if _torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: the guard is not what runs here")
    except (ImportError, OSError):
        pass
    with pytest.raises(ToolUnavailableError):
        TailModel(load_split_artifact(artifact), backend="trt")
    with pytest.raises(ConfigError, match="backend"):
        TailModel(load_split_artifact(artifact), backend="tvm")
