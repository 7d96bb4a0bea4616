"""The Entropic Student's wire format: integer CDF tables, the constriction range coder (bit-exact round trips,
a recorded golden blob), and refusal of malformed, foreign and oversized blobs by field name."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("constriction")

from hypothesis import given, settings
from hypothesis import strategies as st

from aeforge.edge.split.codec import CodecError, CodeSpec, decode_request, request_limit_bytes
from aeforge.edge.split.entropy_coder import (
    CDF_FILE,
    HEADER_BYTES,
    PRECISION_BITS,
    EntropyCodec,
    EntropySpec,
    cdf_bytes,
    cdf_from_pmf,
    check_cdf,
    ideal_bits,
    load_cdf,
)
from aeforge.edge.split.protocol import RequestHandler
from aeforge.errors import ArtifactError

SHAPE = (2, 4, 4)
MIN_SYMBOL = -8


def laplace_tables(channels: int = 2, symbols: int = 16, spread: tuple[float, ...] = (1.0, 2.5)) -> np.ndarray:
    x = np.arange(symbols) + MIN_SYMBOL
    return cdf_from_pmf(np.stack([np.exp(-np.abs(x) / spread[c % len(spread)]) for c in range(channels)]))


def codec_for(cdf: np.ndarray, shape: tuple[int, ...] = SHAPE) -> EntropyCodec:
    return EntropyCodec(EntropySpec.from_tables(cdf, MIN_SYMBOL), shape)


CODEC = codec_for(laplace_tables())


def sample_codes(batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.laplace(0, 2.0, (batch, *SHAPE))), -8, 7).astype(np.int32)


# ------------------------------------------------------------------------------------ tables
def test_tables_from_a_pmf_are_exact_integers_with_every_symbol_codable() -> None:
    cdf = laplace_tables()
    weights = np.diff(cdf.astype(np.int64), axis=1)
    assert cdf.dtype == np.uint32 and cdf.shape == (2, 17)
    assert np.all(cdf[:, -1] == 1 << PRECISION_BITS) and np.all(weights >= 1)
    degenerate = cdf_from_pmf(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))  # zero rows, zero entries
    assert np.all(np.diff(degenerate.astype(np.int64), axis=1) >= 1)


def test_bad_tables_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(CodecError, match="start at 0 and end at 2"):
        check_cdf(np.array([[0, 5, 10]]))
    flat = laplace_tables().astype(np.int64)
    flat[1, 3] = flat[1, 2]
    with pytest.raises(CodecError, match="row 1 is not strictly increasing"):
        check_cdf(flat)
    path = tmp_path / CDF_FILE
    path.write_bytes(cdf_bytes(laplace_tables()))
    with pytest.raises(ArtifactError, match="cdf_sha256 mismatch"):
        load_cdf(path, "0" * 64)
    path.write_bytes(b"not an npy file")
    with pytest.raises(ArtifactError, match="not valid CDF tables"):
        load_cdf(path)


def test_split_json_section_is_checked_by_field(tmp_path: Path) -> None:
    spec = EntropySpec.from_tables(laplace_tables(), MIN_SYMBOL)
    (tmp_path / CDF_FILE).write_bytes(cdf_bytes(spec.cdf))
    section = spec.as_dict()
    assert EntropySpec.from_dict(section, tmp_path).cdf_sha256 == spec.cdf_sha256
    for field, value, message in [("coder", "arithmetic", "entropy.coder: unknown coder"),
                                  ("library_version", "0.3", "entropy.library_version"),
                                  ("cdf_file", "../x.npy", "entropy.cdf_file"),
                                  ("cdf_sha256", "ABC", "entropy.cdf_sha256"),
                                  ("min_symbol", 1.5, "entropy.min_symbol")]:
        with pytest.raises(ArtifactError, match=message):
            EntropySpec.from_dict({**section, field: value}, tmp_path)


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("batch", [1, 3])
def test_round_trip_is_bit_exact_and_close_to_the_information_content(batch: int) -> None:
    codes = sample_codes(batch)
    blob = CODEC.encode(codes)
    decoded = CODEC.decode(blob, max_batch=batch)
    assert decoded.dtype == np.int32 and np.array_equal(decoded, codes)
    payload_bits = 8 * (len(blob) - HEADER_BYTES)
    assert payload_bits <= ideal_bits(codes, CODEC.spec.cdf, MIN_SYMBOL) + 96  # range coder: a few words of overhead
    assert CODEC.encode(codes) == blob  # deterministic


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**32 - 1), st.sampled_from([0.3, 1.0, 4.0, 50.0]))
def test_random_codes_round_trip_exactly(batch: int, seed: int, spread: float) -> None:
    rng = np.random.default_rng(seed)
    codes = np.clip(np.rint(rng.laplace(0, spread, (batch, *SHAPE))), -8, 7).astype(np.int32)
    assert np.array_equal(CODEC.decode(CODEC.encode(codes), max_batch=4), codes)


def test_extreme_symbols_cost_the_table_precision_exactly() -> None:
    """Weights 1 survive constriction's quantization unchanged: a symbol of probability 2**-24 costs 24 bits."""
    weights = np.array([[1, (1 << PRECISION_BITS) - 2, 1]], dtype=np.int64)
    cdf = np.concatenate([[[0]], np.cumsum(weights, axis=1)], axis=1)
    codec = EntropyCodec(EntropySpec.from_tables(cdf, 0), (1, 16, 16))
    rare = np.zeros((1, 1, 16, 16), np.int32)  # 256 symbols of probability 2**-24: 6144 bits
    assert 8 * (len(codec.encode(rare)) - HEADER_BYTES) in range(6144, 6144 + 65)
    assert len(codec.encode(np.ones((1, 1, 16, 16), np.int32))) <= HEADER_BYTES + 8


def test_golden_blob_is_stable_across_hosts_and_versions() -> None:
    """A recorded blob: the coded bytes depend only on the integer tables and the codes."""
    weights = np.array([1, 3, 10, 40, 120, 300, 600, 0, 600, 300, 120, 40, 10, 3, 1, 1], dtype=np.int64) << 10
    weights[7] = (1 << PRECISION_BITS) - weights.sum()
    row = np.concatenate([[0], np.cumsum(weights)])
    codec = EntropyCodec(EntropySpec.from_tables(np.stack([row, row]), MIN_SYMBOL), SHAPE)  # integers only
    codes = ((np.arange(64, dtype=np.int32).reshape(2, *SHAPE) * 7919) % 13 - 6) // 2  # in [-3, 3]
    blob = codec.encode(codes)
    assert hashlib.sha256(blob).hexdigest() == GOLDEN_SHA256, (len(blob), blob.hex())
    assert np.array_equal(codec.decode(bytes.fromhex(blob.hex()), max_batch=2), codes)


GOLDEN_SHA256 = "1738209d3dabb0b95c8021032c000e13945a668b01a6e05f30a5d65d1fe7d9a5"  # constriction 0.5.0, x86-64


# ------------------------------------------------------------------------------------ hostile blobs
def _recrc(blob: bytes) -> bytes:
    payload = blob[HEADER_BYTES:]
    return blob[:12] + struct.pack("<I", zlib.crc32(payload, zlib.crc32(blob[:12]))) + payload


def test_malformed_blobs_are_refused_by_field() -> None:
    blob = CODEC.encode(sample_codes(1))
    cases = {
        "header": blob[:10],
        "magic": b"AECT" + blob[4:],
        "version": _recrc(blob[:4] + b"\x02" + blob[5:]),
        "coder": _recrc(blob[:5] + b"\x07" + blob[6:]),
        "batch": _recrc(blob[:6] + struct.pack("<H", 0) + blob[8:]),
        "crc32": blob[:-1] + bytes([blob[-1] ^ 1]),
        "payload": blob[:-2],
    }
    for field, bad in cases.items():
        with pytest.raises(CodecError, match=f"'{field}'"):
            CODEC.decode(bad, max_batch=4)
    with pytest.raises(CodecError, match=r"'payload'.*canonical"):
        CODEC.decode(_recrc(blob + bytes(4)), max_batch=4)  # a trailing word with a valid CRC
    with pytest.raises(CodecError, match="'payload'"):
        CODEC.decode(_recrc(blob[:HEADER_BYTES]), max_batch=4)  # no payload at all


def test_bit_flips_are_caught_or_decode_canonically() -> None:
    blob = CODEC.encode(sample_codes(2, seed=3))
    rng = np.random.default_rng(1)
    for _ in range(300):
        bad = bytearray(blob)
        bad[int(rng.integers(HEADER_BYTES, len(bad)))] ^= 1 << int(rng.integers(8))
        with pytest.raises(CodecError, match="'crc32'"):
            CODEC.decode(bytes(bad), max_batch=2)
        try:  # with a matching CRC only a canonical code of other symbols may pass
            decoded = CODEC.decode(_recrc(bytes(bad)), max_batch=2)
        except CodecError:
            continue
        assert CODEC.encode(decoded) == _recrc(bytes(bad))


def test_random_payloads_with_valid_crcs_never_crash() -> None:
    rng = np.random.default_rng(2)
    head = CODEC.encode(sample_codes(1))[:12]
    for _ in range(300):
        payload = rng.integers(0, 256, 4 * int(rng.integers(1, 12)), dtype=np.uint8).tobytes()
        blob = head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload
        try:
            decoded = CODEC.decode(blob, max_batch=1)
        except CodecError:
            continue
        assert CODEC.encode(decoded) == blob  # accepted only if canonical


def test_other_tables_batch_and_size_are_refused_before_decoding() -> None:
    other = codec_for(laplace_tables(spread=(3.0, 0.5)))
    blob = other.encode(sample_codes(1))
    with pytest.raises(CodecError, match=r"'cdf_sha256': blob coded with CDF tables [0-9a-f]{8}\.\.\., this end has"):
        CODEC.decode(blob, max_batch=4)
    with pytest.raises(CodecError, match=r"'batch': 3 samples, accepted 1\.\.2"):
        CODEC.decode(CODEC.encode(sample_codes(3)), max_batch=2)
    huge = CODEC.encode(sample_codes(1))[:12] + bytes(4) + bytes(CODEC.max_blob_bytes(1))
    with pytest.raises(CodecError, match="'length'"):
        CODEC.decode(huge, max_batch=1)
    with pytest.raises(CodecError, match=r"outside the tables' \[-8, 7\]"):
        CODEC.encode(np.full((1, *SHAPE), 9, np.int32))


# ------------------------------------------------------------------------------------ the servers' request path
class _Model:
    max_batch = 2

    def __init__(self, codec: EntropyCodec) -> None:
        self.artifact = SimpleNamespace(code=CodeSpec(bits=4, signed=True, scale=1.0, shape=SHAPE),
                                        entropy=codec.spec, entropy_codec=codec, fingerprint="ab" * 32)
        self.seen: list[np.ndarray] = []

    def infer(self, values: np.ndarray) -> np.ndarray:
        self.seen.append(values)
        return np.zeros((len(values), 3), np.float32)


def test_fast_path_handler_decodes_coded_blobs_and_names_a_cdf_mismatch() -> None:
    model = _Model(CODEC)
    handler = RequestHandler(model, 1 << 20, None)
    assert handler.max_payload_bytes == request_limit_bytes(model.artifact, 2) == CODEC.max_blob_bytes(2)
    codes = sample_codes(2)
    reply = handler.infer(1, CODEC.encode(codes))
    assert reply[5] == 0x82 and np.array_equal(model.seen[-1], codes.astype(np.float32))
    foreign = handler.infer(2, codec_for(laplace_tables(spread=(3.0, 0.5))).encode(codes))
    assert foreign[5] == 0xFF and b"cdf_sha256" in foreign and b"BAD" not in foreign[20:40]
    packed = handler.infer(3, b"AECT" + bytes(40))
    assert packed[5] == 0xFF and b"range-coded AECE" in packed
    assert np.array_equal(decode_request(model.artifact, CODEC.encode(codes), 1 << 20, 2), codes)


def test_describe_names_coder_and_tables() -> None:
    text = CODEC.spec.describe()
    assert "range-constriction" in text and CODEC.spec.cdf_sha256[:16] in text
    assert json.loads(json.dumps(CODEC.spec.as_dict()))["cdf_file"] == CDF_FILE
