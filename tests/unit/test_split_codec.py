"""The split code wire format: exact round trips (hypothesis), canonical-only decoding, fuzzing."""

from __future__ import annotations

import json
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeforge.edge.split import codec
from aeforge.edge.split.codec import (
    HEADER_BYTES,
    CodecError,
    CodeSpec,
    bytes_per_sample,
    code_range,
    decode_code,
    encode_code,
    load_split_artifact,
    quantize_to_codes,
)
from aeforge.errors import ArtifactError, DataError

COMPRESSIONS = ["none", "zlib"] + (["zstd"] if codec._zstd() is not None else [])


@st.composite
def code_tensors(draw: st.DrawFn) -> tuple[np.ndarray, int, bool]:
    """A random code tensor of 1..4 dims with values anywhere in its bit width's range."""
    bits = draw(st.integers(1, 16))
    signed = draw(st.booleans())
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=4)))
    low, high = code_range(bits, signed)
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(low, high + 1, size=shape, dtype=np.int64)
    extremes = draw(st.booleans())
    if extremes:  # force the range ends into the tensor
        flat = codes.reshape(-1)
        flat[0] = low
        flat[-1] = high
    return codes, bits, signed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_tensors(), st.sampled_from(COMPRESSIONS), st.integers(-20, 4))
def test_round_trip_all_widths_and_shapes(case: tuple[np.ndarray, int, bool], compression: str, exponent: int) -> None:
    codes, bits, signed = case
    scale = 2.0**exponent
    blob = encode_code(codes, bits, scale, signed, compression)
    tensor = decode_code(blob)
    assert tensor.codes.dtype == np.int32
    np.testing.assert_array_equal(tensor.codes, codes)
    assert (tensor.bits, tensor.signed, tensor.scale, tensor.shape) == (bits, signed, scale, codes.shape)
    np.testing.assert_array_equal(tensor.dequantize(), (codes * scale).astype(np.float32))
    if compression == "none":
        assert len(blob) == HEADER_BYTES + 4 * codes.ndim + (codes.size * bits + 7) // 8


@settings(max_examples=100, deadline=None)
@given(code_tensors(), st.integers(-20, 4))
def test_quantize_is_exact_on_grid(case: tuple[np.ndarray, int, bool], exponent: int) -> None:
    codes, bits, signed = case
    scale = 2.0**exponent
    values = (codes * scale).astype(np.float32)
    np.testing.assert_array_equal(quantize_to_codes(values, scale, bits, signed), codes)


def test_non_power_of_two_scale_is_float32() -> None:
    blob = encode_code(np.arange(6).reshape(2, 3), 4, 0.1, False)
    tensor = decode_code(blob)
    assert tensor.scale == float(np.float32(0.1))
    assert not (blob[5] & 0x02)


def test_bytes_per_sample() -> None:
    assert bytes_per_sample((8, 16, 16), 8) == len(encode_code(np.zeros((1, 8, 16, 16), np.int8), 8, 0.5, True))
    assert bytes_per_sample((3, 5), 3) == HEADER_BYTES + 12 + 6
    assert CodeSpec(4, False, 0.125, (4, 8, 8)).bytes_per_sample() == HEADER_BYTES + 16 + 128


@pytest.mark.parametrize(("values", "match"), [
    (np.array([0.1]), "not on the grid"),
    (np.array([2.0]), "outside"),  # 16 > 15 at 4 bits unsigned
    (np.array([-0.125]), "outside"),
    (np.array([np.nan]), "non-finite"),
])
def test_quantize_refuses(values: np.ndarray, match: str) -> None:
    with pytest.raises(CodecError, match=match) as info:
        quantize_to_codes(values, 0.125, 4, False)
    assert info.value.field == "values"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"bits": 0}, "bits"), ({"bits": 17}, "bits"), ({"scale": 0.0}, "scale"), ({"scale": float("inf")}, "scale"),
    ({"compression": "lz4"}, "compression"), ({"codes": np.array([1.0])}, "codes"),
    ({"codes": np.array([16])}, "codes"), ({"codes": np.zeros((1,) * 9, int)}, "ndim"),
])
def test_encode_refuses(kwargs: dict, field: str) -> None:
    args = {"codes": np.array([1, 2]), "bits": 4, "scale": 0.5, "signed": False, **kwargs}
    with pytest.raises(CodecError) as info:
        encode_code(**args)
    assert info.value.field == field
    assert isinstance(info.value, DataError)


def _reseal(blob: bytearray) -> bytes:
    """Recompute the CRC after a deliberate header edit (so the edited field itself is what fails)."""
    crc = zlib.crc32(bytes(blob[HEADER_BYTES:]), zlib.crc32(bytes(blob[:20])))
    blob[20:24] = struct.pack("<I", crc)
    return bytes(blob)


def _valid() -> bytearray:
    return bytearray(encode_code(np.arange(-4, 4).reshape(2, 4), 3, 0.25, True))


def _edit(offset: int, value: bytes) -> bytes:
    blob = _valid()
    blob[offset:offset + len(value)] = value
    return _reseal(blob)


@pytest.mark.parametrize(("blob", "field"), [
    (b"", "header"), (bytes(_valid()[:10]), "header"),
    (_edit(0, b"XXXX"), "magic"), (_edit(4, b"\x02"), "version"), (_edit(5, b"\x81"), "flags"),
    (_edit(6, b"\x00"), "bits"), (_edit(6, b"\x11"), "bits"), (_edit(7, b"\x09"), "compression"),
    (_edit(8, b"\x00"), "ndim"), (_edit(8, b"\x09"), "ndim"), (_edit(9, b"\x01"), "reserved"),
    (_edit(8, b"\x08"), "dims"),  # dims run past the blob end
    (_edit(16, struct.pack("<I", 99)), "payload_length"),
    (bytes(_valid()[:-1]), "payload_length"), (bytes(_valid()) + b"\0", "payload_length"),
    (_edit(24, struct.pack("<I", 0)), "dims"),
    (_edit(24, struct.pack("<I", 3)), "payload"),  # 3x4 values need 5 bytes, payload has 3
    (_edit(24, struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)), "dims"),  # shape overflow
    (_edit(12, struct.pack("<i", 5000)), "scale"),
])
def test_decode_names_the_field(blob: bytes, field: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_code(blob)
    assert info.value.field == field, str(info.value)


def test_decode_crc_and_limits() -> None:
    blob = _valid()
    blob[-1] ^= 0x01
    with pytest.raises(CodecError, match="crc32"):
        decode_code(bytes(blob))
    with pytest.raises(CodecError) as info:
        decode_code(bytes(_valid()), max_bytes=10)
    assert info.value.field == "length"
    odd = bytearray(encode_code(np.arange(7), 3, 1.0, False))
    odd[-1] |= 0x80  # 7 values x 3 bits = 21 bits: the top 3 bits of the last byte are padding
    with pytest.raises(CodecError, match="padding"):
        decode_code(_reseal(odd))


def test_decompression_bomb_is_cut_short() -> None:
    big = zlib.compress(bytes(10_000_000))
    blob = bytearray(encode_code(np.zeros(8, np.int64), 8, 1.0, False, "zlib"))
    blob = blob[:HEADER_BYTES + 4] + big
    blob[16:20] = struct.pack("<I", len(big))
    with pytest.raises(CodecError) as info:
        decode_code(_reseal(blob))
    assert info.value.field == "payload"
    if "zstd" in COMPRESSIONS:
        import zstandard

        bomb = zstandard.ZstdCompressor().compress(bytes(10_000_000))
        blob = bytearray(encode_code(np.zeros(8, np.int64), 8, 1.0, False, "zstd"))[:HEADER_BYTES + 4] + bomb
        blob[16:20] = struct.pack("<I", len(bomb))
        with pytest.raises(CodecError, match="expands past"):
            decode_code(_reseal(blob))


def test_fuzz_only_codec_errors() -> None:
    """Random bytes, truncations and bit flips of valid blobs raise CodecError or decode; nothing else."""
    rng = random.Random(1234)
    seeds = [bytes(encode_code(np.arange(24).reshape(2, 3, 4) % 8 - 4, 3, 0.5, True, c)) for c in COMPRESSIONS]
    seeds.append(bytes(encode_code(np.arange(64).reshape(1, 4, 4, 4), 16, 1.0, False)))
    decoded = 0
    for i in range(6000):
        mode = i % 4
        base = rng.choice(seeds)
        if mode == 0:
            blob = rng.randbytes(rng.randrange(0, 200))
        elif mode == 1:
            blob = base[: rng.randrange(0, len(base))]
        elif mode == 2:
            flipped = bytearray(base)
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(len(flipped) * 8)
                flipped[position // 8] ^= 1 << (position % 8)
            blob = bytes(flipped)
        else:  # header edits re-sealed with a valid CRC: exercises the field checks behind the CRC
            edited = bytearray(base)
            edited[rng.randrange(4, 24 + 4 * edited[8] if edited[8] < 9 else 24)] = rng.randrange(256)
            blob = _reseal(edited) if len(edited) >= HEADER_BYTES else bytes(edited)
        try:
            decode_code(blob, max_bytes=4096)
            decoded += 1
        except CodecError:
            pass
    assert decoded < 3000  # almost all mutations are caught


def _write_split_json(tmp_path, **changes) -> None:
    meta = {"code": {"bits": 4, "signed": False, "scale": 0.125, "channels": 4, "shape": [4, 8, 8], "zero_point": 0},
            "input": {"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32"},
            "tail_input_name": "code", "tail_output_name": "logits", "num_classes": 10}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            meta[section][name] = value
        else:
            meta[section] = value
    (tmp_path / "split.json").write_text(json.dumps(meta))


def test_load_split_artifact(tmp_path) -> None:
    _write_split_json(tmp_path)
    artifact = load_split_artifact(tmp_path)
    assert artifact.code == CodeSpec(4, False, 0.125, (4, 8, 8))
    with pytest.raises(ArtifactError, match="tail model not found"):
        artifact.verify("tail")
    _write_split_json(tmp_path, code__channels=3)
    with pytest.raises(ArtifactError, match=r"code\.channels"):
        load_split_artifact(tmp_path)
    _write_split_json(tmp_path, code__bits=40)
    with pytest.raises(ArtifactError, match=r"code\.bits"):
        load_split_artifact(tmp_path)
    _write_split_json(tmp_path, num_classes=0)
    with pytest.raises(ArtifactError, match="num_classes"):
        load_split_artifact(tmp_path)


def test_spec_check_names_mismatches() -> None:
    spec = CodeSpec(4, False, 0.125, (2, 2))
    good = decode_code(encode_code(np.zeros((3, 2, 2), int), 4, 0.125, False))
    assert spec.check(good).shape == (3, 2, 2)
    assert spec.check(decode_code(encode_code(np.zeros((2, 2), int), 4, 0.125, False))).shape == (1, 2, 2)
    for blob, field in [(encode_code(np.zeros((2, 2), int), 5, 0.125, False), "bits"),
                        (encode_code(np.zeros((2, 2), int), 4, 0.125, True), "flags"),
                        (encode_code(np.zeros((2, 2), int), 4, 0.25, False), "scale"),
                        (encode_code(np.zeros((1, 2, 3), int), 4, 0.125, False), "dims")]:
        with pytest.raises(CodecError) as info:
            spec.check(decode_code(blob))
        assert info.value.field == field
