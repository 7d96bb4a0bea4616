"""The ZeroMQ fast path under hostile input: raw DEALER peers send malformed messages, bad tokens, bombs,
oversized messages and floods; every checked message gets an ERROR reply, the queue stays bounded
across peers, and the server keeps serving honest clients."""

from __future__ import annotations

import random
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from aeforge.edge.split.codec import encode_code
from tests.integration.test_split_serve import make_split_artifact, random_codes, reference_logits
from tests.unit.test_split_wire_bounds import crc_valid_blob

zmq = pytest.importorskip("zmq")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.integration

TOKEN = "zmq-hostile-token-0123"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_artifact(tmp_path_factory.mktemp("zmq_hostile") / "split")


def _dealer(port: int) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def _reply(sock: zmq.Socket, timeout_ms: int = 3000) -> tuple[str, int, bytes] | None:
    """(status name or RESULT, request id, payload) of the next reply; None on timeout."""
    from aeforge.edge.split.protocol import ERROR, ERRORS, HEADER, RESULT

    if not sock.poll(timeout_ms):
        return None
    reply = sock.recv()
    _, _, kind, status, request_id, length = HEADER.unpack_from(reply)
    assert kind in (ERROR, RESULT) and len(reply) == HEADER.size + length
    return ("RESULT" if kind == RESULT else ERRORS[status]), request_id, reply[HEADER.size:]


def _hostile_messages(artifact: Path, rng: random.Random) -> list[tuple[list[bytes], str]]:
    from aeforge.edge.split.protocol import HELLO, INFER, INFER_TASKS, hello_payload, pack_frame
    from aeforge.edge.split.task_wire import pack_task_request

    hello = pack_frame(HELLO, 0, hello_payload(None, TOKEN))
    blob = encode_code(random_codes(artifact, 1), 4, 0.125, False)
    wrong_dims = crc_valid_blob(4, (1, 4, 8, 9), bytes(144), 0)
    bomb = crc_valid_blob(4, (1, 4, 8, 8), zlib.compress(bytes(1 << 20), 9), 1)
    return [
        ([pack_frame(INFER, 7, blob)], "BAD_TYPE"),  # one part
        ([hello, pack_frame(INFER, 7, blob), b"extra"], "BAD_TYPE"),  # three parts
        ([hello, b"short"], "BAD_TYPE"),
        ([hello, b"XXXX" + bytes(16)], "BAD_MAGIC"),
        ([hello, struct.pack("<4sBBHQI", b"AEFP", 1, INFER, 0, 7, 0)], "BAD_VERSION"),
        ([hello, pack_frame(INFER, 7, blob)[:-3]], "TRUNCATED"),
        ([hello, struct.pack("<4sBBHQI", b"AEFP", 2, INFER, 0, 7, 1 << 30)], "TOO_LARGE"),
        ([pack_frame(HELLO, 0, hello_payload(None, "not-the-token-0123456")), pack_frame(INFER, 7, blob)],
         "UNAUTHENTICATED"),
        ([pack_frame(HELLO, 0, hello_payload("ef" * 32, TOKEN)), pack_frame(INFER, 7, blob)], "MODEL_MISMATCH"),
        ([hello, pack_frame(INFER, 7, wrong_dims)], "BAD_CODE"),
        ([hello, pack_frame(INFER, 7, bomb)], "BAD_CODE"),
        ([hello, pack_frame(INFER, 7, rng.randbytes(200))], "BAD_CODE"),
        ([hello, pack_frame(INFER_TASKS, 7, pack_task_request(["cls"], blob))], "BAD_REQUEST"),  # single-task here
    ]


def test_hostile_messages_get_error_replies(artifact: Path) -> None:
    from aeforge.edge.split.protocol import HELLO, hello_payload, pack_frame
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    rng = random.Random(0)
    codes = random_codes(artifact, 2, seed=3)
    blob = encode_code(codes, 4, 0.125, False)
    expected = reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))
    with ZmqFastPathServer(artifact, token=TOKEN, max_frame_bytes=64 * 1024) as server, \
            ZmqFastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=5) as honest:
        peer = _dealer(server.port)
        for parts, status in _hostile_messages(artifact, rng):
            peer.send_multipart(parts)
            got = _reply(peer)
            assert got is not None and got[0] == status, (status, got)
            np.testing.assert_allclose(honest.infer(blob), expected, atol=1e-6)
        for _ in range(200):  # random multipart garbage: always an ERROR reply, never silence or a crash
            peer.send_multipart([rng.randbytes(rng.randrange(0, 80)) for _ in range(rng.randrange(1, 4))])
            got = _reply(peer)
            assert got is not None and got[0] != "RESULT" and got[0] != "INTERNAL"
        assert server.stats["unauthenticated"] == 1
        requests_before = server.stats["requests"]
        hello = pack_frame(HELLO, 0, hello_payload(None, TOKEN))
        peer.send_multipart([hello, hello])  # well-framed and authenticated, but no INFER part
        assert _reply(peer)[0] == "BAD_TYPE"
        assert server.stats["requests"] == requests_before  # refused before any work was queued
        # a message over ZMQ_MAXMSGSIZE: libzmq drops that peer's connection; others keep being served
        big = _dealer(server.port)
        big.send_multipart([b"x" * 32, b"y" * (256 * 1024)])
        assert _reply(big, 500) is None
        np.testing.assert_allclose(honest.infer(blob), expected, atol=1e-6)
        big.close()
        peer.close()


class _Slow:
    """A real tail model that takes ``delay_s`` per call (so the queue fills)."""

    def __init__(self, artifact: Path, delay_s: float) -> None:
        from aeforge.edge.split.codec import load_split_artifact
        from aeforge.edge.split.serve import TailModel

        self._model = TailModel(load_split_artifact(artifact))
        self.artifact, self.max_batch, self.input_shape = self._model.artifact, self._model.max_batch, \
            self._model.input_shape
        self.delay_s = delay_s

    def infer(self, values: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._model.infer(values)


def test_queue_is_bounded_across_peers(artifact: Path) -> None:
    from aeforge.edge.split.protocol import HELLO, INFER, hello_payload, pack_frame
    from aeforge.edge.split.zmqpath import ZmqFastPathServer

    codes = random_codes(artifact, 4, seed=8)
    blob = encode_code(codes, 4, 0.125, False)  # 24 + 16 + 512 bytes
    expected = reference_logits(artifact, codes.astype(np.float32) * np.float32(0.125))
    hello = pack_frame(HELLO, 0, hello_payload(None, TOKEN))
    max_queue_bytes = 3 * len(blob)
    with ZmqFastPathServer(artifact, token=TOKEN, model=_Slow(artifact, 0.05), max_queue=8,
                           max_queue_bytes=max_queue_bytes) as server:
        peers = [_dealer(server.port) for _ in range(6)]
        time.sleep(0.2)  # let every peer connect
        for index, peer in enumerate(peers):
            for request in range(4):
                peer.send_multipart([hello, pack_frame(INFER, 100 * index + request, blob)])
        statuses: list[str] = []
        for peer in peers:
            for _ in range(4):
                got = _reply(peer, 10_000)
                assert got is not None, "a request got no reply"
                statuses.append(got[0])
                if got[0] == "RESULT":
                    rows, cols = struct.unpack_from("<II", got[2])
                    np.testing.assert_allclose(np.frombuffer(got[2], "<f4", offset=8).reshape(rows, cols),
                                               expected, atol=1e-6)
        for peer in peers:
            peer.close()
        assert len(statuses) == 24 and set(statuses) <= {"RESULT", "BUSY"}
        assert statuses.count("BUSY") >= 6 and statuses.count("RESULT") >= 3
        assert server.stats["busy"] == statuses.count("BUSY")
        assert 0 < server.stats["peak_queue_bytes"] <= max_queue_bytes
