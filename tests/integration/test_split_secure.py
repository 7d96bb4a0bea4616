"""Hardened split serving on loopback: real TLS handshakes (certificates made here with ``cryptography``),
CurveZMQ, token sources, handshake timeouts, model fingerprints, clients that recover, IPv6 hosts."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aeforge.edge.split.codec import encode_code, load_split_artifact
from aeforge.errors import AeforgeError, ConfigError
from tests.integration.test_split_serve import make_split_artifact, random_codes, reference_logits

pytest.importorskip("onnxruntime")
pytest.importorskip("cryptography")
triton = pytest.importorskip("tritonclient.grpc")

pytestmark = pytest.mark.integration

TOKEN = "secure-token-0123456789"


# ------------------------------------------------------------------------------------ certificates
def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: Any, issuer: tuple[str, Any] | None, ca: bool, sans: list[Any] | None = None) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                               ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(root: Path) -> dict[str, str]:
    """A CA, a server certificate for localhost / 127.0.0.1 / ::1, a client certificate, and an unrelated CA (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}

    def write(name: str, data: bytes) -> None:
        (root / name).write_bytes(data)
        out[name.split(".")[0]] = str(root / name)

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key, other_key = _key(), _key()
    ca = _cert("aeforge test CA", ca_key, None, ca=True)
    other = _cert("aeforge other CA", other_key, None, ca=True)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]
    server_key, client_key = _key(), _key()
    server = _cert("localhost", server_key, ("aeforge test CA", ca_key), ca=False, sans=sans)
    client = _cert("aeforge device", client_key, ("aeforge test CA", ca_key), ca=False,
                   sans=[x509.DNSName("device")])
    pem = serialization.Encoding.PEM
    write("ca.pem", ca.public_bytes(pem))
    write("other_ca.pem", other.public_bytes(pem))
    write("server_cert.pem", server.public_bytes(pem))
    write("server_key.pem", pem_key(server_key))
    write("client_cert.pem", client.public_bytes(pem))
    write("client_key.pem", pem_key(client_key))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_artifact(tmp_path_factory.mktemp("secure") / "split")


def _blob_and_expected(artifact: Path, batch: int = 2, seed: int = 1) -> tuple[bytes, np.ndarray]:
    codes = random_codes(artifact, batch, seed=seed)
    return encode_code(codes, 4, 0.125, False), reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))


# ------------------------------------------------------------------------------------ TLS: TCP fast path
def test_tcp_tls_handshake_and_refusals(artifact: Path, pki: dict[str, str]) -> None:
    from aeforge.edge.split.fastpath import FastPathClient, FastPathServer, TransportError
    from aeforge.edge.split.security import ClientTLS, ServerTLS

    blob, expected = _blob_and_expected(artifact)
    tls = ServerTLS(pki["server_cert"], pki["server_key"])
    with FastPathServer(artifact, token=TOKEN, tls=tls, handshake_timeout_s=1.0) as server:
        with FastPathClient("127.0.0.1", server.port, TOKEN, tls=ClientTLS(pki["ca"])) as client:
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
            assert client._sock is not None and client._sock.version() in ("TLSv1.2", "TLSv1.3")
        with FastPathClient("localhost", server.port, TOKEN, tls=ClientTLS(pki["ca"])) as client:
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
        with pytest.raises(TransportError, match="certificate was refused") as info:  # signed by another CA
            FastPathClient("127.0.0.1", server.port, TOKEN, tls=ClientTLS(pki["other_ca"])).connect()
        assert info.value.status == "TLS"
        with pytest.raises(TransportError, match="certificate was refused"):  # valid, but not for this name
            FastPathClient("127.0.0.1", server.port, TOKEN, tls=ClientTLS(pki["ca"], server_name="other.example"))\
                .connect()
        with pytest.raises(TransportError):  # plaintext to a TLS server: no HELLO_OK ever comes
            FastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=2.0).connect()
        deadline = time.monotonic() + 3.0  # the server counts in its connection threads: let them finish
        while server.stats["tls_failed"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats["tls_failed"] >= 3
    with pytest.raises(ConfigError, match="--tls-cert/--tls-key"):
        ServerTLS(pki["server_cert"], pki["client_key"]).ssl_context()  # key of another certificate


def test_tcp_mutual_tls(artifact: Path, pki: dict[str, str]) -> None:
    from aeforge.edge.split.fastpath import FastPathClient, FastPathServer, TransportError
    from aeforge.edge.split.security import ClientTLS, ServerTLS

    blob, expected = _blob_and_expected(artifact)
    tls = ServerTLS(pki["server_cert"], pki["server_key"], client_ca_file=pki["ca"])
    with FastPathServer(artifact, tls=tls) as server:  # client certificates instead of a token
        good = ClientTLS(pki["ca"], pki["client_cert"], pki["client_key"])
        with FastPathClient("127.0.0.1", server.port, tls=good) as client:
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
        with pytest.raises(TransportError):  # no client certificate: the server ends the handshake
            FastPathClient("127.0.0.1", server.port, tls=ClientTLS(pki["ca"]), timeout_s=2.0).infer(blob)


# ------------------------------------------------------------------------------------ TLS: gRPC
def test_grpc_tls_with_stock_tritonclient(artifact: Path, pki: dict[str, str]) -> None:
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.security import ClientTLS, ServerTLS
    from aeforge.edge.split.serve import TailServer

    values = random_codes(artifact, 2, seed=4).astype(np.float32) * np.float32(0.125)
    tls = ServerTLS(pki["server_cert"], pki["server_key"])
    with TailServer(artifact, token=TOKEN, tls=tls) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}", ssl=True, root_certificates=pki["ca"])
        tensor = triton.InferInput("code", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        headers = {"authorization": f"Bearer {TOKEN}"}
        got = client.infer("aeforge_tail", [tensor], headers=headers).as_numpy("logits")
        np.testing.assert_allclose(got, reference_logits(artifact, values), atol=1e-6)
        client.close()
        wrong = triton.InferenceServerClient(f"127.0.0.1:{server.port}", ssl=True,
                                             root_certificates=pki["other_ca"])
        with pytest.raises(triton.InferenceServerException) as info:
            wrong.infer("aeforge_tail", [tensor], headers=headers, client_timeout=5)
        assert "UNAVAILABLE" in str(info.value.status())
        wrong.close()
        plain = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        with pytest.raises(triton.InferenceServerException):
            plain.infer("aeforge_tail", [tensor], headers=headers, client_timeout=5)
        plain.close()
        images = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
        with SplitClient(artifact, "grpc", port=server.port, token=TOKEN, tls=ClientTLS(pki["ca"])) as split:
            assert split.infer(images).logits.shape == (2, 10)


# ------------------------------------------------------------------------------------ CurveZMQ
def test_zmq_curve(artifact: Path, tmp_path: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.fastpath import TransportError
    from aeforge.edge.split.security import CurveClientKeys, CurveServerKeys, write_curve_keypair
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    blob, expected = _blob_and_expected(artifact)
    server_public, server_secret = write_curve_keypair(tmp_path / "server", "server")
    _, client_secret = write_curve_keypair(tmp_path / "clients", "device")
    _, stranger_secret = write_curve_keypair(tmp_path / "strangers", "stranger")
    other_public, _ = write_curve_keypair(tmp_path / "other", "other")
    assert (server_secret.stat().st_mode & 0o077) == 0
    curve = CurveServerKeys(str(server_secret), clients_dir=str(tmp_path / "clients"))
    with ZmqFastPathServer(artifact, token=TOKEN, curve=curve) as server:
        keys = CurveClientKeys(str(server_public), str(client_secret))
        with ZmqFastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=5, curve=keys) as client:
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
        refused = [CurveClientKeys(str(other_public), str(client_secret)),  # a wrong server key
                   CurveClientKeys(str(server_public), str(stranger_secret)),  # a client not in clients_dir
                   None]  # plaintext
        for keys in refused:
            with ZmqFastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=0.5, curve=keys) as client, \
                    pytest.raises(TransportError) as info:
                client.infer(blob)
            assert info.value.status == "TIMEOUT"
        assert server.stats["requests"] == 1
    with pytest.raises(ConfigError, match="no secret key"):
        CurveServerKeys(str(server_public)).keys()


def test_zmq_refused_client_times_out_on_send_too(artifact: Path, tmp_path: Path) -> None:
    """A client the CURVE allow-list refuses gets TIMEOUT on every request, never a blocked send: once the
    server drops the handshake the client has no peer pipe, and a DEALER send then waits for one."""
    pytest.importorskip("zmq")
    from aeforge.edge.split.fastpath import TransportError
    from aeforge.edge.split.security import CurveClientKeys, CurveServerKeys, write_curve_keypair
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    blob, _ = _blob_and_expected(artifact)
    server_public, server_secret = write_curve_keypair(tmp_path / "server", "server")
    write_curve_keypair(tmp_path / "clients", "device")
    _, stranger_secret = write_curve_keypair(tmp_path / "strangers", "stranger")
    curve = CurveServerKeys(str(server_secret), clients_dir=str(tmp_path / "clients"))
    timeout_s = 0.3
    with ZmqFastPathServer(artifact, token=TOKEN, curve=curve) as server, ZmqFastPathClient(
            "127.0.0.1", server.port, TOKEN, timeout_s=timeout_s,
            curve=CurveClientKeys(str(server_public), str(stranger_secret))) as client:
        for _ in range(20):
            started = time.monotonic()
            with pytest.raises(TransportError) as info:
                client.infer(blob)
            assert info.value.status == "TIMEOUT"
            assert time.monotonic() - started < timeout_s + 5.0
            time.sleep(0.05)  # let the refused handshake drop the pipe before the next send
        assert server.stats["requests"] == 0


# ------------------------------------------------------------------------------------ tokens, handshake, identity
def test_handshake_timeout_frees_slots_and_no_payload_before_login(artifact: Path, pki: dict[str, str]) -> None:
    from aeforge.edge.split.fastpath import ERRORS, HEADER, INFER, FastPathClient, FastPathServer, TransportError
    from aeforge.edge.split.security import ClientTLS, ServerTLS

    blob, expected = _blob_and_expected(artifact)
    for tls in (None, ServerTLS(pki["server_cert"], pki["server_key"])):
        client_tls = ClientTLS(pki["ca"]) if tls else None
        with FastPathServer(artifact, token=TOKEN, max_clients=2, handshake_timeout_s=0.4, idle_timeout_s=30,
                            frame_timeout_s=30, tls=tls) as server:
            idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
            time.sleep(0.1)
            with pytest.raises(TransportError) as info:  # both slots held by silent sockets
                FastPathClient("127.0.0.1", server.port, TOKEN, tls=client_tls).connect()
            assert info.value.status in ("BUSY", "TLS", "CONNECTION")
            start = time.monotonic()
            for sock in idle:
                assert sock.recv(4096) is not None  # the server closes them (with an ERROR when plaintext)
                sock.close()
            assert time.monotonic() - start < 2.0
            time.sleep(0.1)
            with FastPathClient("127.0.0.1", server.port, TOKEN, tls=client_tls) as client:
                np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
            assert server.stats["handshake_timeouts"] + server.stats["tls_failed"] >= 2
        if tls is None:  # an INFER header before HELLO is refused at once; its payload is never awaited
            with FastPathServer(artifact, token=TOKEN, frame_timeout_s=30) as server, \
                    socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                start = time.monotonic()
                sock.sendall(HEADER.pack(b"AEFP", 2, INFER, 0, 1, 4000))  # a valid size, never sent
                reply = sock.recv(4096)
                assert ERRORS[HEADER.unpack_from(reply)[3]] == "UNAUTHENTICATED"
                assert time.monotonic() - start < 1.0


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aeforge.edge.split.security import read_token

    (tmp_path / "token").write_text(TOKEN + "\n")
    assert read_token(token_file=tmp_path / "token") == TOKEN
    monkeypatch.setenv("AEFORGE_TEST_TOKEN", TOKEN)
    assert read_token(token_env="AEFORGE_TEST_TOKEN") == TOKEN
    assert read_token() is None
    with pytest.raises(ConfigError, match="only one of --token, --token-file"):
        read_token(TOKEN, token_file=tmp_path / "token")
    with pytest.raises(ConfigError, match="'AEFORGE_NOT_SET_ANYWHERE' is not set"):
        read_token(token_env="AEFORGE_NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(token_file=tmp_path / "missing")


def test_fingerprint_mismatch_is_refused_by_name(artifact: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.fastpath import FastPathClient, FastPathServer, TransportError
    from aeforge.edge.split.serve import TailServer
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    blob, expected = _blob_and_expected(artifact)
    mine = load_split_artifact(artifact).fingerprint
    other = "ab" * 32
    assert len(mine) == 64 and mine != other
    with FastPathServer(artifact, token=TOKEN) as server:
        assert server.fingerprint == mine
        with FastPathClient("127.0.0.1", server.port, TOKEN, fingerprint=mine) as client:
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)
        with pytest.raises(TransportError, match=f"client's export is {other[:16]}.*serves {mine[:16]}") as info:
            FastPathClient("127.0.0.1", server.port, TOKEN, fingerprint=other).connect()
        assert info.value.status == "MODEL_MISMATCH"
        with pytest.raises(TransportError, match="UNAUTHENTICATED"):  # the token is checked first
            FastPathClient("127.0.0.1", server.port, "x" * 20, fingerprint=other).connect()
    with ZmqFastPathServer(artifact, token=TOKEN) as server, \
            ZmqFastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=5, fingerprint=other) as client, \
            pytest.raises(TransportError, match="MODEL_MISMATCH"):
        client.infer(blob)
    with TailServer(artifact) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        tensor = triton.InferInput("code_packed", [len(blob)], "UINT8")
        tensor.set_data_from_numpy(np.frombuffer(blob, dtype=np.uint8))
        result = client.infer("aeforge_tail", [tensor], parameters={"aeforge_fingerprint": mine})
        assert result.get_response().parameters["aeforge_fingerprint"].string_param == mine
        with pytest.raises(triton.InferenceServerException, match="aeforge_fingerprint") as info:
            client.infer("aeforge_tail", [tensor], parameters={"aeforge_fingerprint": other})
        assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
        client.close()


class _WrongClasses:
    """A real tail model whose logits lose their last column (a server serving another head)."""

    def __init__(self, artifact: Path) -> None:
        from aeforge.edge.split.serve import TailModel

        self._model = TailModel(load_split_artifact(artifact))
        self.artifact, self.max_batch, self.input_shape = self._model.artifact, self._model.max_batch, \
            self._model.input_shape

    def infer(self, values: np.ndarray) -> np.ndarray:
        return self._model.infer(values)[:, :-1]


def test_client_checks_rows_and_classes(artifact: Path) -> None:
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import FastPathServer, TransportError

    with FastPathServer(artifact, model=_WrongClasses(artifact)) as server, \
            SplitClient(artifact, "tcp", port=server.port) as client, \
            pytest.raises(TransportError, match=r"num_classes.*\(2, 9\)") as info:
        client.infer(np.zeros((2, 3, 16, 16), np.float32))
    assert info.value.status == "BAD_REPLY"


class _SlowOnce:
    """A real tail model whose first call takes ``delay_s``."""

    def __init__(self, artifact: Path, delay_s: float) -> None:
        from aeforge.edge.split.serve import TailModel

        self._model = TailModel(load_split_artifact(artifact))
        self.artifact, self.max_batch, self.input_shape = self._model.artifact, self._model.max_batch, \
            self._model.input_shape
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, values: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.delay_s)
        return self._model.infer(values)


def test_clients_recover_after_a_timeout(artifact: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.fastpath import FastPathClient, FastPathServer, TransportError
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    slow_blob, _ = _blob_and_expected(artifact, 1, seed=11)
    blob, expected = _blob_and_expected(artifact, 2, seed=12)
    for server_cls, client_cls in ((FastPathServer, FastPathClient), (ZmqFastPathServer, ZmqFastPathClient)):
        with server_cls(artifact, model=_SlowOnce(artifact, 0.8)) as server, \
                client_cls("127.0.0.1", server.port, timeout_s=0.3) as client:
            with pytest.raises(TransportError) as info:
                client.infer(slow_blob)
            assert info.value.status == "TIMEOUT"
            time.sleep(0.7)  # the late reply to the first request is on its way (and must be ignored)
            client.timeout_s = 5.0
            np.testing.assert_allclose(client.infer(blob), expected, atol=1e-6)


def test_tcp_client_resets_after_a_malformed_reply() -> None:
    from aeforge.edge.split.fastpath import HELLO_OK, TransportError, pack_frame
    from aeforge.edge.split.protocol import HEADER, RESULT, result_payload

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    served: list[int] = []

    def fake_server() -> None:  # 1st connection: a garbage reply; 2nd: a valid one
        for attempt in range(2):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(pack_frame(HELLO_OK, 1, bytes(32)))
                request_id = HEADER.unpack_from(conn.recv(4096))[4]
                conn.sendall(b"GARBAGE-REPLY-" + bytes(30) if attempt == 0 else
                             pack_frame(RESULT, request_id, result_payload(np.ones((1, 3), np.float32))))
                served.append(attempt)
                conn.recv(4096)

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    from aeforge.edge.split.fastpath import FastPathClient

    client = FastPathClient("127.0.0.1", listener.getsockname()[1], timeout_s=5)
    with pytest.raises(TransportError) as info:
        client.infer(b"x")
    assert info.value.status == "BAD_REPLY" and client._sock is None
    np.testing.assert_array_equal(client.infer(b"x"), np.ones((1, 3), np.float32))
    client.close()
    thread.join(5)
    listener.close()
    assert served == [0, 1]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_loopback_in_brackets(artifact: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import FastPathServer
    from aeforge.edge.split.serve import TailServer
    from aeforge.edge.split.zmqpath import ZmqFastPathServer

    images = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    for transport, server_cls in (("grpc", TailServer), ("tcp", FastPathServer), ("zmq", ZmqFastPathServer)):
        with server_cls(artifact, host="[::1]") as server, \
                SplitClient(artifact, transport, host="[::1]", port=server.port, timeout_s=5) as client:
            assert client.infer(images).logits.shape == (1, 10)


def test_uint_contents_over_255_is_invalid_argument(artifact: Path, caplog: pytest.LogCaptureFixture) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from aeforge.edge.split.serve import TailServer

    request = service_pb2.ModelInferRequest(model_name="aeforge_tail")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "code_packed", "UINT8"
    tensor.shape.append(4)
    tensor.contents.uint_contents.extend([65, 69, 300, 84])
    with TailServer(artifact) as server, grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, \
            caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as info:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "value 300 at index 2 does not fit UINT8" in info.value.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_zmq_thread_death_is_reported(artifact: Path) -> None:
    pytest.importorskip("zmq")
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    class Fatal(BaseException):
        """Not an Exception: escapes the request handler, as a crash in the serving thread would."""

    class Dying(_SlowOnce):
        def infer(self, values: np.ndarray) -> np.ndarray:
            raise Fatal("simulated crash")

    blob, _ = _blob_and_expected(artifact)
    server = ZmqFastPathServer(artifact, model=Dying(artifact, 0)).start()
    with ZmqFastPathClient("127.0.0.1", server.port, timeout_s=0.5) as client, pytest.raises(AeforgeError):
        client.infer(blob)
    with pytest.raises(AeforgeError, match=r"ZeroMQ serving thread died.*simulated crash"):
        server.wait()
    server.stop()


def test_triton_repository_names(artifact: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from aeforge.edge.split.triton_repo import pbtxt_string, write_triton_repository

    for bad in ("..", "../up", "a/b", "a\\b", ".hidden", "x..y", ""):
        with pytest.raises(ConfigError, match="model_name"):
            write_triton_repository(artifact, tmp_path / "repo", model_name=bad)
    assert not (tmp_path / "repo").exists() and not (tmp_path / "up").exists()
    for name in ('in"put', "back\\slash", "new\nline", "ünï"):
        parsed = text_format.Parse(f"name: {pbtxt_string(name)}", model_config_pb2.ModelInput())
        assert parsed.name == name
    model_dir = write_triton_repository(artifact, tmp_path / "repo", model_name="tail.v2")
    assert sorted(p.name for p in model_dir.rglob("*")) == ["1", "config.pbtxt", "model.onnx"]  # no temporaries
