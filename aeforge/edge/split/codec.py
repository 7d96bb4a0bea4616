"""The wire format of a split-computing code tensor, and the split artifact directory.

A code is an integer tensor ``q`` whose dequantized value is ``q * scale`` (zero point 0). On the
wire it is one self-describing blob: a 24-byte little-endian header, the shape, the payload::

    offset  size     field
    0       4        magic  b"AECT"
    4       1        version (1)
    5       1        flags: bit 0 signed (two's complement), bit 1 scale is a power-of-two exponent;
                     other bits 0
    6       1        bits per value B (1..16)
    7       1        compression id (0 none, 1 zlib, 2 zstd)
    8       1        ndim (1..8)
    9       3        reserved (0)
    12      4        scale: int32 exponent e (scale = 2**e) when flag bit 1, else float32
    16      4        payload length in bytes (uint32, as on the wire, i.e. after compression)
    20      4        CRC32 of bytes [0, 20) + dims + payload
    24      4*ndim   dims (uint32 each, >= 1)
    24+4n   payload  the codes as a little-endian bit stream: value i occupies stream bits
                     [i*B, (i+1)*B), least significant bit first (bit k of the stream is bit k % 8 of
                     byte k // 8); signed values as B-bit two's complement; padding bits 0; then the
                     optional lossless compression of that stream

:func:`decode_code` accepts only canonical blobs (every field checked, no trailing bytes, padding
bits zero) and raises :class:`CodecError` naming the field for anything else; decompression is
bounded by the size the shape implies, so a small blob cannot expand past ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.edge.split.task_outputs import task_entries
from aeforge.errors import ArtifactError, DataError

MAGIC = b"AECT"
VERSION = 1
HEADER_BYTES = 24
MAX_NDIM = 8
MAX_BITS = 16
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
COMPRESSIONS: dict[str, int] = {"none": 0, "zlib": 1, "zstd": 2}
_COMPRESSION_NAMES = {v: k for k, v in COMPRESSIONS.items()}
_FLAG_SIGNED = 0x01
_FLAG_POW2 = 0x02
_HEADER = struct.Struct("<4sBBBBB3s4sII")


class CodecError(DataError):
    """A code blob or code tensor is malformed; ``field`` names the offending header field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"code blob field {field!r}: {message}")
        self.field = field


@dataclass(frozen=True)
class CodeTensor:
    """A decoded code: integer ``codes`` (int32) with their bit width, signedness and scale."""

    codes: np.ndarray
    bits: int
    signed: bool
    scale: float
    compression: str = "none"

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor shape."""
        return tuple(self.codes.shape)

    def dequantize(self) -> np.ndarray:
        """``codes * scale`` as float32 (exact for power-of-two scales and |code| < 2**24)."""
        return self.codes.astype(np.float32) * np.float32(self.scale)


# ------------------------------------------------------------------------------------ helpers
def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest code of a ``bits``-bit signed (two's complement) or unsigned integer."""
    _check_bits(bits)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def payload_bytes(count: int, bits: int) -> int:
    """Bytes of ``count`` values packed to ``bits`` bits (uncompressed)."""
    return (int(count) * int(bits) + 7) // 8


def bytes_per_sample(shape: Sequence[int], bits: int, batch_dim: bool = True) -> int:
    """Uncompressed blob size of one sample of per-sample ``shape`` (e.g. ``(C, H, W)``), header included.

    ``batch_dim``: the blob carries a leading batch dimension (of 1), as :class:`SplitClient` sends.
    """
    _check_bits(bits)
    ndim = len(shape) + (1 if batch_dim else 0)
    return HEADER_BYTES + 4 * ndim + payload_bytes(math.prod(int(d) for d in shape), bits)


def is_power_of_two(scale: float) -> bool:
    """True when ``scale`` is a positive finite exact power of two."""
    return math.isfinite(scale) and scale > 0 and math.frexp(scale)[0] == 0.5


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise CodecError("bits", f"must be an integer in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


def _check_scale(scale: Any) -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise CodecError("scale", f"must be a number, got {scale!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise CodecError("scale", f"must be finite and > 0, got {scale!r}")
    return value


# ------------------------------------------------------------------------------------ quantize
def quantize_to_codes(values: np.ndarray, scale: float, bits: int, signed: bool) -> np.ndarray:
    """The int32 codes ``values / scale``; exact, so every value must lie on the grid and in range.

    Raises :class:`CodecError` (field ``values``) naming the first off-grid or out-of-range element.
    """
    scale = _check_scale(scale)
    low, high = code_range(_check_bits(bits), bool(signed))
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise CodecError("values", f"must be a numeric array, got dtype {array.dtype}")
    scaled = array.astype(np.float64) / scale
    bad = ~np.isfinite(scaled)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), array.shape)
        raise CodecError("values", f"non-finite value {array[index]!r} at index {tuple(map(int, index))}")
    rounded = np.rint(scaled)
    bad = rounded != scaled
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), array.shape)
        raise CodecError("values", f"value {float(array[index])!r} at index {tuple(map(int, index))} is not on the "
                                   f"grid of scale {scale!r} (value/scale = {float(scaled[index])!r})")
    bad = (rounded < low) | (rounded > high)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), array.shape)
        raise CodecError("values", f"code {int(rounded[index])} at index {tuple(map(int, index))} is outside "
                                   f"[{low}, {high}] of a {bits}-bit {'signed' if signed else 'unsigned'} code")
    return rounded.astype(np.int32)


# ------------------------------------------------------------------------------------ packing
def _pack(unsigned: np.ndarray, bits: int) -> bytes:
    """Pack uint32 values (already masked to ``bits``) into the little-endian bit stream."""
    if bits == 8:
        return unsigned.astype(np.uint8).tobytes()
    if bits == 16:
        return unsigned.astype("<u2").tobytes()
    if 8 % bits == 0:
        per = 8 // bits
        padded = np.zeros(-(-unsigned.size // per) * per, dtype=np.uint32)
        padded[: unsigned.size] = unsigned
        lanes = padded.reshape(-1, per) << (np.arange(per, dtype=np.uint32) * bits)
        return np.bitwise_or.reduce(lanes, axis=1).astype(np.uint8).tobytes()
    stream = ((unsigned[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(stream.reshape(-1), bitorder="little").tobytes()


def _unpack(payload: bytes, count: int, bits: int) -> np.ndarray:
    """The uint32 values of a packed stream (length already checked); padding bits must be 0."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    if bits == 8:
        return raw.astype(np.uint32)
    if bits == 16:
        return np.frombuffer(payload, dtype="<u2").astype(np.uint32)
    used = count * bits
    if used % 8 and int(raw[-1]) >> (used % 8):
        raise CodecError("payload", "padding bits after the last value are not zero")
    if 8 % bits == 0:
        per = 8 // bits
        lanes = (raw.astype(np.uint32)[:, None] >> (np.arange(per, dtype=np.uint32) * bits)) & ((1 << bits) - 1)
        return lanes.reshape(-1)[:count]
    stream = np.unpackbits(raw, count=used, bitorder="little").reshape(count, bits).astype(np.uint32)
    return (stream << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


# ------------------------------------------------------------------------------------ encode
def encode_code(
    codes: np.ndarray, bits: int, scale: float, signed: bool, compression: str = "none", level: int | None = None,
) -> bytes:
    """The wire blob of an integer code tensor (see the module docstring for the layout).

    ``codes`` must be an integer array within the ``bits``-bit range; ``compression`` is ``none``,
    ``zlib`` or ``zstd`` (needs the ``zstandard`` package); ``level`` the compressor's level.
    """
    bits = _check_bits(bits)
    scale = _check_scale(scale)
    signed = bool(signed)
    if compression not in COMPRESSIONS:
        raise CodecError("compression", f"unknown {compression!r}; expected one of {', '.join(COMPRESSIONS)}")
    array = np.asarray(codes)
    if not np.issubdtype(array.dtype, np.integer):
        raise CodecError("codes", f"must be an integer array, got dtype {array.dtype} (see quantize_to_codes)")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise CodecError("ndim", f"must be in 1..{MAX_NDIM}, got {array.ndim}")
    if any(d < 1 or d > 0xFFFFFFFF for d in array.shape):
        raise CodecError("dims", f"every dimension must be in 1..2**32-1, got {array.shape}")
    low, high = code_range(bits, signed)
    flat = array.reshape(-1).astype(np.int64)
    if flat.size and (int(flat.min()) < low or int(flat.max()) > high):
        raise CodecError("codes", f"values span [{int(flat.min())}, {int(flat.max())}], outside [{low}, {high}] of a "
                                  f"{bits}-bit {'signed' if signed else 'unsigned'} code")
    unsigned = (flat & ((1 << bits) - 1)).astype(np.uint32)
    payload = _pack(unsigned, bits)
    if compression == "zlib":
        payload = zlib.compress(payload, 6 if level is None else level)
    elif compression == "zstd":
        zstandard = _zstd()
        if zstandard is None:
            raise CodecError("compression", "zstd needs the zstandard package (pip install zstandard)")
        payload = zstandard.ZstdCompressor(level=3 if level is None else level).compress(payload)
    flags = _FLAG_SIGNED if signed else 0
    if is_power_of_two(scale) and -(2**31) <= math.frexp(scale)[1] - 1 < 2**31:
        flags |= _FLAG_POW2
        scale_field = struct.pack("<i", math.frexp(scale)[1] - 1)
    else:
        if not math.isfinite(float(np.float32(scale))) or float(np.float32(scale)) <= 0:
            raise CodecError("scale", f"{scale!r} is not representable as a positive float32")
        scale_field = struct.pack("<f", scale)
    head = _HEADER.pack(MAGIC, VERSION, flags, bits, COMPRESSIONS[compression], array.ndim, b"\0\0\0",
                        scale_field, len(payload), 0)[:20]
    dims = struct.pack(f"<{array.ndim}I", *array.shape)
    crc = zlib.crc32(payload, zlib.crc32(dims, zlib.crc32(head)))
    return b"".join((head, struct.pack("<I", crc), dims, payload))


# ------------------------------------------------------------------------------------ decode
def decode_code(
    blob: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_BYTES, spec: CodeSpec | None = None,
    max_batch: int | None = None,
) -> CodeTensor:
    """Parse and check a wire blob; any defect raises :class:`CodecError` naming the field.

    ``max_bytes`` bounds both the blob and its uncompressed payload. With ``spec`` (a server's code
    spec) the header's bits, signedness, scale and dims (batch at most ``max_batch``) are checked
    *before* the CRC, decompression or unpacking, so work and memory are bounded by what the served
    model accepts, not by what the blob claims.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CodecError("blob", f"must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) > max_bytes:
        raise CodecError("length", f"blob of {len(data)} bytes exceeds max_bytes={max_bytes}")
    if len(data) < HEADER_BYTES:
        raise CodecError("header", f"blob of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, flags, bits, compression_id, ndim, reserved, scale_field, length, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("magic", f"expected {MAGIC!r}, got {magic!r}")
    if version != VERSION:
        raise CodecError("version", f"unsupported version {version}; this decoder reads version {VERSION}")
    if flags & ~(_FLAG_SIGNED | _FLAG_POW2):
        raise CodecError("flags", f"unknown flag bits 0x{flags:02x}")
    if not 1 <= bits <= MAX_BITS:
        raise CodecError("bits", f"must be in 1..{MAX_BITS}, got {bits}")
    if compression_id not in _COMPRESSION_NAMES:
        raise CodecError("compression", f"unknown compression id {compression_id}")
    if not 1 <= ndim <= MAX_NDIM:
        raise CodecError("ndim", f"must be in 1..{MAX_NDIM}, got {ndim}")
    if reserved != b"\0\0\0":
        raise CodecError("reserved", "reserved bytes 9..11 must be zero")
    start = HEADER_BYTES + 4 * ndim
    if len(data) < start:
        raise CodecError("dims", f"blob of {len(data)} bytes is truncated inside the {ndim} dims")
    if len(data) - start != length:
        what = "truncated" if len(data) - start < length else "followed by trailing bytes"
        raise CodecError("payload_length", f"header says {length} payload bytes, blob has {len(data) - start} ({what})")
    dims = struct.unpack_from(f"<{ndim}I", data, HEADER_BYTES)
    if min(dims) < 1:
        raise CodecError("dims", f"every dimension must be >= 1, got {dims}")
    signed = bool(flags & _FLAG_SIGNED)
    if flags & _FLAG_POW2:
        exponent = struct.unpack("<i", scale_field)[0]
        if not -1074 <= exponent <= 1023:
            raise CodecError("scale", f"exponent {exponent} is outside the float64 range")
        scale = math.ldexp(1.0, exponent)
    else:
        scale = float(struct.unpack("<f", scale_field)[0])
        if not math.isfinite(scale) or scale <= 0:
            raise CodecError("scale", f"must be finite and > 0, got {scale!r}")
    if spec is not None:
        spec.check_header(bits, signed, scale, dims, max_batch)
    count = math.prod(dims)
    expected = payload_bytes(count, bits)
    if expected > max_bytes:
        raise CodecError("dims", f"shape {dims} at {bits} bits needs {expected} bytes, over max_bytes={max_bytes}")
    if compression_id == 0 and length != expected:
        raise CodecError("payload", f"shape {dims} at {bits} bits needs {expected} bytes, payload has {length}")
    if zlib.crc32(data[HEADER_BYTES:], zlib.crc32(data[:20])) != crc:
        raise CodecError("crc32", "checksum mismatch (corrupted blob)")
    payload = _decompress(data[start:], _COMPRESSION_NAMES[compression_id], expected)
    if len(payload) != expected:
        raise CodecError("payload", f"shape {dims} at {bits} bits needs {expected} bytes, payload has {len(payload)}")
    values = _unpack(payload, count, bits).astype(np.int32)
    if signed:
        values -= (values >= (1 << (bits - 1))).astype(np.int32) << bits
    return CodeTensor(values.reshape(dims), bits, signed, scale, _COMPRESSION_NAMES[compression_id])


def _decompress(payload: bytes, compression: str, expected: int) -> bytes:
    """The decompressed payload, never more than ``expected + 1`` bytes (so bombs are cut short)."""
    if compression == "none":
        return payload
    if compression == "zlib":
        try:
            inflater = zlib.decompressobj()
            out = inflater.decompress(payload, expected + 1)
        except zlib.error as exc:
            raise CodecError("payload", f"zlib stream is corrupt ({exc})") from None
        if not inflater.eof or inflater.unused_data:
            raise CodecError("payload", "zlib stream is incomplete, too long or followed by extra bytes")
        return out
    zstandard = _zstd()
    if zstandard is None:
        raise CodecError("compression", "zstd blob but the zstandard package is not installed here")
    chunks: list[bytes] = []
    size = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=True) as reader:
            while size <= expected:
                chunk = reader.read(expected + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except zstandard.ZstdError as exc:
        raise CodecError("payload", f"zstd stream is corrupt ({exc})") from None
    if size > expected:
        raise CodecError("payload", f"zstd stream expands past the {expected} bytes the shape implies")
    out = b"".join(chunks)
    return out


# ------------------------------------------------------------------------------------ artifact
@dataclass(frozen=True)
class CodeSpec:
    """The code a split model sends: ``bits``, ``signed``, ``scale`` and per-sample ``shape`` (C, H, W)."""

    bits: int
    signed: bool
    scale: float
    shape: tuple[int, ...]
    zero_point: int = 0

    @classmethod
    def from_dict(cls, data: Any, where: str = "split.json") -> CodeSpec:
        """Parse the ``code`` section of split.json; ArtifactError naming the field."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: 'code' must be an object")
        try:
            bits = _check_bits(data.get("bits"))
            scale = _check_scale(data.get("scale"))
        except CodecError as exc:
            raise ArtifactError(f"{where}: code.{exc.field}: {exc}") from None
        shape = data.get("shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ArtifactError(f"{where}: code.shape must be a non-empty list of positive ints, got {shape!r}")
        if data.get("zero_point", 0) != 0:
            raise ArtifactError(f"{where}: code.zero_point must be 0, got {data.get('zero_point')!r}")
        if not isinstance(data.get("signed"), bool):
            raise ArtifactError(f"{where}: code.signed must be true or false, got {data.get('signed')!r}")
        channels = data.get("channels", shape[0])
        if channels != shape[0]:
            raise ArtifactError(f"{where}: code.channels={channels!r} does not match code.shape[0]={shape[0]}")
        return cls(bits, data["signed"], scale, tuple(shape))

    def check(self, tensor: CodeTensor) -> np.ndarray:
        """The codes of ``tensor`` as a batch ``(N, *shape)``; CodecError naming a mismatched field."""
        if tensor.bits != self.bits:
            raise CodecError("bits", f"blob has {tensor.bits} bits, the model expects {self.bits}")
        if tensor.signed != self.signed:
            raise CodecError("flags", f"blob is {'signed' if tensor.signed else 'unsigned'}, the model expects "
                                      f"{'signed' if self.signed else 'unsigned'} codes")
        if tensor.scale != self.scale:
            raise CodecError("scale", f"blob has scale {tensor.scale!r}, the model expects {self.scale!r}")
        codes = tensor.codes
        if codes.shape == self.shape:
            codes = codes[None]
        if codes.shape[1:] != self.shape:
            expected = ", ".join(map(str, self.shape))
            raise CodecError("dims", f"blob shape {tensor.shape}, the model expects (N, {expected})")
        return codes

    def check_header(
        self, bits: int, signed: bool, scale: float, dims: Sequence[int], max_batch: int | None = None,
    ) -> None:
        """Check a blob's header fields against this spec before any payload work; CodecError naming the field."""
        if bits != self.bits:
            raise CodecError("bits", f"blob has {bits} bits, the model expects {self.bits}")
        if signed != self.signed:
            raise CodecError("flags", f"blob is {'signed' if signed else 'unsigned'}, the model expects "
                                      f"{'signed' if self.signed else 'unsigned'} codes")
        if scale != self.scale:
            raise CodecError("scale", f"blob has scale {scale!r}, the model expects {self.scale!r}")
        dims = tuple(int(d) for d in dims)
        if dims != self.shape and dims[1:] != self.shape:
            raise CodecError("dims", f"blob shape {dims}, the model expects (N, {', '.join(map(str, self.shape))})")
        batch = 1 if dims == self.shape else dims[0]
        if max_batch is not None and batch > max_batch:
            raise CodecError("batch", f"{batch} samples, the server accepts 1..{max_batch}")

    def max_blob_bytes(self, max_batch: int) -> int:
        """The largest well-formed blob of at most ``max_batch`` samples (compression overhead included)."""
        payload = payload_bytes(max_batch * math.prod(self.shape), self.bits)
        return HEADER_BYTES + 4 * (len(self.shape) + 1) + payload + payload // 64 + 128

    def bytes_per_sample(self) -> int:
        """Uncompressed blob bytes of one sample (header with batch dimension included)."""
        return bytes_per_sample(self.shape, self.bits)

    def canonical(self) -> str:
        """A canonical JSON text of the spec (part of the artifact fingerprint)."""
        return json.dumps({"bits": self.bits, "signed": self.signed, "scale": self.scale, "shape": list(self.shape),
                           "zero_point": self.zero_point}, sort_keys=True)


@dataclass(frozen=True)
class SplitArtifact:
    """A split artifact directory: ``head.onnx``, ``tail.onnx`` and ``split.json``."""

    root: Path
    code: CodeSpec
    input_name: str
    input_shape: tuple[Any, ...]
    input_dtype: str
    tail_input_name: str
    tail_output_name: str
    num_classes: int
    head_sha256: str | None
    tail_sha256: str | None
    fingerprint: str = ""
    """sha256 (hex) of split.json's bytes and the canonical code spec: the model identity on the wire."""
    entropy: Any = None
    """An entropic export's coder and CDF tables (:class:`~.entropy_coder.EntropySpec`); None: packed codes."""
    tail_file: str = "tail.onnx"
    """The single-task tail's file (multi-task exports: the classification task's ``tail_<task>.onnx``)."""
    tasks: tuple[dict[str, Any], ...] = ()
    """Multi-task exports: split.json's ``tasks`` entries (name, kind, file, sha256, outputs, ...); () otherwise."""
    legacy_task: str | None = None
    """Multi-task exports: the classification task the single-task fields describe (None: there is none)."""

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task names of a multi-task export (empty for a single-task export)."""
        return tuple(str(task["name"]) for task in self.tasks)

    def task(self, name: str) -> dict[str, Any]:
        """split.json's entry of task ``name``; ArtifactError listing the tasks when absent."""
        for task in self.tasks:
            if task["name"] == name:
                return task
        raise ArtifactError(f"{self.root / 'split.json'}: no task {name!r}; tasks: {', '.join(self.task_names)}")

    def verify_task(self, name: str) -> Path:
        """The path of task ``name``'s tail after checking it exists and matches its recorded sha256."""
        entry = self.task(name)
        path = self.root / str(entry["file"])
        if not path.is_file():
            raise ArtifactError(f"{path}: tail of task {name!r} not found")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry.get("sha256"):
            raise ArtifactError(f"{path}: sha256 {digest[:12]}... does not match split.json tasks[{name}].sha256 "
                                f"(artifact modified?)")
        return path

    @cached_property
    def entropy_codec(self) -> Any:
        """The range coder of an entropic export (built once), None for packed codes."""
        from aeforge.edge.split.entropy_coder import EntropyCodec

        return None if self.entropy is None else EntropyCodec(self.entropy, self.code.shape)

    @property
    def head_path(self) -> Path:
        """The device-side model (image -> code values)."""
        return self.root / "head.onnx"

    @property
    def tail_path(self) -> Path:
        """The server-side model (dequantized code -> logits)."""
        return self.root / self.tail_file

    def verify(self, which: str) -> Path:
        """The path of ``head`` or ``tail``, after checking it exists and matches its recorded sha256."""
        path = self.head_path if which == "head" else self.tail_path
        expected = self.head_sha256 if which == "head" else self.tail_sha256
        if not path.is_file():
            raise ArtifactError(f"{path}: {which} model not found")
        if expected:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != expected:
                raise ArtifactError(f"{path}: sha256 {digest[:12]}... does not match split.json {which}_sha256 "
                                    f"{expected[:12]}... (artifact modified?)")
        return path


def load_split_artifact(path: str | Path) -> SplitArtifact:
    """Read ``split.json`` of a split artifact dir (``RUN/split`` or the dir itself); ArtifactError naming the field."""
    root = Path(path)
    if not (root / "split.json").is_file() and (root / "split" / "split.json").is_file():
        root = root / "split"
    meta_path = root / "split.json"
    if not meta_path.is_file():
        raise ArtifactError(f"{root}: no split.json (a split artifact dir holds head.onnx, tail.onnx, split.json)")
    try:
        raw = meta_path.read_bytes()
        meta = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: must hold a JSON object")
    code = CodeSpec.from_dict(meta.get("code"), str(meta_path))
    model_input = meta.get("input")
    if not isinstance(model_input, dict) or not isinstance(model_input.get("name"), str):
        raise ArtifactError(f"{meta_path}: input.name missing")
    for key in ("tail_input_name", "tail_output_name"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ArtifactError(f"{meta_path}: {key} missing or not a string")
    classes = meta.get("num_classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ArtifactError(f"{meta_path}: num_classes must be a positive int, got {classes!r}")
    entropy = None
    if meta.get("entropy") is not None or meta.get("bottleneck") == "entropic":
        from aeforge.edge.split.entropy_coder import EntropySpec

        entropy = EntropySpec.from_dict(meta.get("entropy"), root, str(meta_path))
    tasks = task_entries(meta.get("tasks"), str(meta_path))
    tail = meta.get("tail_file", "tail.onnx")
    if not isinstance(tail, str) or "/" in tail or "\\" in tail or not tail.endswith(".onnx"):
        raise ArtifactError(f"{meta_path}: tail_file must be a file name ending in .onnx, got {tail!r}")
    legacy = meta.get("legacy_task")
    return SplitArtifact(
        root=root, code=code, entropy=entropy, input_name=model_input["name"],
        input_shape=tuple(model_input.get("shape") or ()),
        input_dtype=str(model_input.get("dtype", "float32")), tail_input_name=meta["tail_input_name"],
        tail_output_name=meta["tail_output_name"], num_classes=classes,
        head_sha256=meta.get("head_sha256"), tail_sha256=meta.get("tail_sha256"),
        fingerprint=artifact_fingerprint(raw, code), tail_file=tail, tasks=tasks,
        legacy_task=legacy if isinstance(legacy, str) else None,
    )



def request_limit_bytes(artifact: Any, max_batch: int) -> int:
    """The largest well-formed request blob of at most ``max_batch`` samples for ``artifact``'s code."""
    codec = getattr(artifact, "entropy_codec", None)
    return artifact.code.max_blob_bytes(max_batch) if codec is None else codec.max_blob_bytes(max_batch)


def decode_request(artifact: Any, blob: bytes, max_bytes: int, max_batch: int) -> np.ndarray:
    """The integer codes ``(N, *code.shape)`` of one request blob: a packed ``AECT`` blob, or for an entropic
    export a range-coded ``AECE`` blob; :class:`CodecError` naming the field (coder and CDF tables included)."""
    codec = getattr(artifact, "entropy_codec", None)
    if codec is None:
        spec = artifact.code
        return spec.check(decode_code(blob, max_bytes=max_bytes, spec=spec, max_batch=max_batch))
    return codec.decode(blob, max_batch=max_batch, max_bytes=max_bytes)


def artifact_fingerprint(split_json: bytes, code: CodeSpec) -> str:
    """The export's identity: sha256 (hex) of the ``split.json`` bytes, a NUL, and the canonical code spec."""
    return hashlib.sha256(split_json + b"\0" + code.canonical().encode()).hexdigest()
