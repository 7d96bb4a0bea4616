"""Bounded work before trust: blobs are checked against the served code spec before CRC, decompression
or unpacking; HELLO payloads are checked token first; fingerprints and bind policy."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from aeforge.edge.split.codec import HEADER_BYTES, CodecError, CodeSpec, decode_code, encode_code
from aeforge.edge.split.protocol import MAX_HELLO_BYTES, Close, RequestHandler, check_request_header, hello_payload
from aeforge.errors import ConfigError

SPEC = CodeSpec(bits=4, signed=False, scale=0.125, shape=(4, 8, 8))


def crc_valid_blob(bits: int, dims: tuple[int, ...], payload: bytes, compression_id: int, scale_exp: int = -3) -> bytes:
    """A blob with a correct CRC whatever it claims (the codec's own layout)."""
    head = struct.pack("<4sBBBBB3si", b"AECT", 1, 0x02, bits, compression_id, len(dims), b"\0\0\0", scale_exp)
    head += struct.pack("<I", len(payload))
    dim_bytes = struct.pack(f"<{len(dims)}I", *dims)
    crc = zlib.crc32(payload, zlib.crc32(dim_bytes, zlib.crc32(head)))
    return head + struct.pack("<I", crc) + dim_bytes + payload


def _peak_bytes(call) -> int:
    tracemalloc.start()
    with contextlib.suppress(CodecError):
        call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_a_small_zlib_bomb_is_refused_before_decompression() -> None:
    bomb = crc_valid_blob(1, (1, 2048, 1024), zlib.compress(bytes(256 * 1024), 9), 1)  # 2 Mi 1-bit values
    assert len(bomb) < 400
    with pytest.raises(CodecError, match="'bits'"):
        decode_code(bomb, max_bytes=256 * 1024, spec=SPEC, max_batch=64)
    same_bits = crc_valid_blob(4, (1, 2048, 256), zlib.compress(bytes(256 * 1024), 9), 1)
    with pytest.raises(CodecError, match="'dims'"):
        decode_code(same_bits, max_bytes=256 * 1024, spec=SPEC, max_batch=64)
    with_spec = _peak_bytes(lambda: decode_code(bomb, max_bytes=256 * 1024, spec=SPEC, max_batch=64))
    without = _peak_bytes(lambda: decode_code(bomb, max_bytes=256 * 1024))
    assert with_spec < 64 * 1024 < 4 * 1024 * 1024 < without, (with_spec, without)


def test_spec_checks_name_the_field_and_the_batch() -> None:
    ok = encode_code(np.zeros((2, 4, 8, 8), np.int32), 4, 0.125, False, "zlib")
    assert decode_code(ok, spec=SPEC, max_batch=2).shape == (2, 4, 8, 8)
    with pytest.raises(CodecError, match=r"'batch': 2 samples, the server accepts 1\.\.1"):
        decode_code(ok, spec=SPEC, max_batch=1)
    for blob, field in [(encode_code(np.zeros((1, 4, 8, 8), np.int32), 4, 0.25, False), "scale"),
                        (encode_code(np.zeros((1, 4, 8, 8), np.int32), 4, 0.125, True), "flags"),
                        (encode_code(np.zeros((1, 4, 8, 9), np.int32), 4, 0.125, False), "dims")]:
        with pytest.raises(CodecError, match=f"'{field}'"):
            decode_code(blob, spec=SPEC, max_batch=64)
    # right dims and a valid CRC, but the zlib stream expands past what the dims imply: cut short
    bomb = crc_valid_blob(4, (1, 4, 8, 8), zlib.compress(bytes(1024 * 1024), 9), 1)
    with pytest.raises(CodecError, match="'payload'"):
        decode_code(bomb, spec=SPEC, max_batch=64)
    short = crc_valid_blob(4, (1, 4, 8, 8), bytes(10), 0)  # uncompressed and the wrong length
    with pytest.raises(CodecError, match="'payload'"):
        decode_code(short, spec=SPEC, max_batch=64)


def test_largest_blob_bound_covers_real_blobs() -> None:
    rng = np.random.default_rng(0)
    for compression in ("none", "zlib"):
        blob = encode_code(rng.integers(0, 16, (64, 4, 8, 8)), 4, 0.125, False, compression)
        assert len(blob) <= SPEC.max_blob_bytes(64)
    assert SPEC.max_blob_bytes(64) < 16 * 1024 > HEADER_BYTES


class _Model:
    def __init__(self) -> None:
        from types import SimpleNamespace

        self.artifact = SimpleNamespace(code=SPEC, fingerprint="cd" * 32)
        self.max_batch = 8


def test_hello_checks_token_before_fingerprint() -> None:
    handler = RequestHandler(_Model(), 1024 * 1024, "token-0123456789abcdef")
    assert handler.max_payload_bytes == SPEC.max_blob_bytes(8)
    handler.check_hello(hello_payload("cd" * 32, "token-0123456789abcdef"))
    handler.check_hello(hello_payload(None, "token-0123456789abcdef"))  # zeros: not checked
    for payload, status in [(hello_payload("ab" * 32, "wrong-token-0123456789"), "UNAUTHENTICATED"),
                            (hello_payload("ab" * 32, "token-0123456789abcdef"), "MODEL_MISMATCH"),
                            (b"short", "BAD_REQUEST")]:
        with pytest.raises(Close) as info:
            handler.check_hello(payload)
        assert info.value.status == status
    header = struct.pack("<4sBBHQI", b"AEFP", 2, 1, 0, 1, MAX_HELLO_BYTES + 1)
    with pytest.raises(Close, match="HELLO of"):
        check_request_header(header, 1024)


def test_bind_policy_and_hosts() -> None:
    from aeforge.edge.split.security import check_bind, check_connect, host_port

    assert host_port("[::1]", 80) == "[::1]:80" == host_port("::1", 80)
    assert host_port("127.0.0.1", 80) == "127.0.0.1:80"
    check_bind("[::1]", 0, None)
    with pytest.raises(ConfigError, match="--insecure"):
        check_connect("10.0.0.1", secure=False, insecure=False)
    check_connect("10.0.0.1", secure=False, insecure=True)
    check_connect("[::1]", secure=False, insecure=False)
