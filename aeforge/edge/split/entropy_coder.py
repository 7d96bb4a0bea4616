"""The range-coded wire format of an Entropic Student code, and its CDF tables (numpy + constriction, no torch).

``aeforge deploy`` copies this file into a split head's bundle, where ``run.py`` codes without aeforge.

An entropic split model's head outputs integer symbols (``B``-bit signed, scale 1) that a learned
factorized prior models channel by channel. The prior is frozen after training into **integer CDF
tables**: ``cdf`` of shape ``(C, S + 1)`` (``S = 2**B`` symbols ``min_symbol .. min_symbol + S - 1``),
``cdf[c, 0] = 0``, strictly increasing, ``cdf[c, S] = 2**24``; every symbol has a probability of at least
``2**-24``, so any code the head can output is encodable. The tables travel in the export as
``entropy_cdf.npy`` (their sha256 in ``split.json``); both ends use only these integers.

Coder ``range-constriction``: constriction's queue ``RangeEncoder`` (32-bit words, 24-bit probabilities)
with one ``Categorical(perfect=False)`` model per channel built from ``weights - 1`` (``weights = diff(cdf)``);
constriction's fast quantization maps those floats back to exactly ``weights`` (all integer arithmetic
in float64), so encoder and decoder use the same integer model on any host. Symbols are coded sample by
sample, channel by channel, in ``(H, W)`` row-major order.

A blob (one request, ``N`` samples) is a 16-byte little-endian header and the coded words::

    offset  size  field
    0       4     magic b"AECE"
    4       1     version (1)
    5       1     coder id (1: range-constriction)
    6       2     batch N (uint16, >= 1)
    8       4     table id: the first 4 bytes of the CDF tables' sha256
    12      4     CRC32 of bytes [0, 12) and the payload
    16      4*k   payload: k uint32 words of the range coder

:meth:`EntropyCodec.decode` accepts only canonical blobs (the payload must be exactly the encoding of
the symbols it decodes to) and raises :class:`~aeforge.edge.split.codec.CodecError` naming the field.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from aeforge.edge.split.codec import CodecError
    from aeforge.errors import ArtifactError, ToolUnavailableError
except ImportError:  # pragma: no cover - a copy inside a deploy bundle (run.py), on a device without aeforge

    class ArtifactError(Exception):  # type: ignore[no-redef]
        """A bad export file (the bundle's stand-in for aeforge.errors.ArtifactError)."""

    class ToolUnavailableError(Exception):  # type: ignore[no-redef]
        """constriction is missing (the bundle's stand-in)."""

    class CodecError(ValueError):  # type: ignore[no-redef]
        """A malformed blob; ``field`` names the header field (the bundle's stand-in)."""

        def __init__(self, field: str, message: str) -> None:
            super().__init__(f"code blob field {field!r}: {message}")
            self.field = field

MAGIC = b"AECE"
VERSION = 1
HEADER = struct.Struct("<4sBBH4sI")
HEADER_BYTES = HEADER.size
PRECISION_BITS = 24
CODER = "range-constriction"
CODER_IDS = {CODER: 1}
CDF_FILE = "entropy_cdf.npy"
MAX_SYMBOLS = 1 << 16


def constriction_version() -> str:
    """``major.minor`` of the installed constriction (the coded format is tied to it); ToolUnavailableError if none."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return ".".join(version("constriction").split(".")[:2])
    except PackageNotFoundError:
        raise ToolUnavailableError("the entropic code needs constriction (pip install 'constriction>=0.5,<0.6', "
                                   "or 'aeforge[split]')") from None


# ------------------------------------------------------------------------------------ tables
def check_cdf(cdf: Any, where: str = "cdf") -> np.ndarray:
    """``cdf`` as a uint32 ``(C, S + 1)`` array after checking it is a valid table; CodecError naming ``where``."""
    array = np.asarray(cdf)
    if array.ndim != 2 or array.shape[0] < 1 or not 3 <= array.shape[1] <= MAX_SYMBOLS + 1:
        raise CodecError(where, f"expected a (channels, symbols + 1) table with 2..{MAX_SYMBOLS} symbols, "
                                f"got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise CodecError(where, f"expected integers, got dtype {array.dtype}")
    values = array.astype(np.int64)
    if np.any(values[:, 0] != 0) or np.any(values[:, -1] != 1 << PRECISION_BITS):
        raise CodecError(where, f"every row must start at 0 and end at 2**{PRECISION_BITS}")
    if np.any(np.diff(values, axis=1) < 1):
        row = int(np.argmax(np.any(np.diff(values, axis=1) < 1, axis=1)))
        raise CodecError(where, f"row {row} is not strictly increasing (every symbol needs probability > 0)")
    return values.astype(np.uint32)


def cdf_from_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer CDF tables ``(C, S + 1)`` of probability rows ``pmf`` ``(C, S)`` (any non-negative scale).

    Each symbol gets weight ``1 + floor(p * (2**24 - S))`` (p normalised per row); what is left of
    ``2**24`` goes to the row's most probable symbol.
    """
    probabilities = np.asarray(pmf, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2 or not np.all(np.isfinite(probabilities)):
        raise CodecError("pmf", f"expected finite (channels, symbols) probabilities, got {probabilities.shape}")
    probabilities = np.clip(probabilities, 0.0, None)
    totals = probabilities.sum(axis=1, keepdims=True)
    probabilities = np.where(totals > 0, probabilities / np.where(totals > 0, totals, 1.0), 1.0 / pmf.shape[1])
    symbols = probabilities.shape[1]
    weights = 1 + np.floor(probabilities * ((1 << PRECISION_BITS) - symbols)).astype(np.int64)
    rest = (1 << PRECISION_BITS) - weights.sum(axis=1)
    weights[np.arange(len(weights)), np.argmax(probabilities, axis=1)] += rest
    cdf = np.zeros((len(weights), symbols + 1), dtype=np.int64)
    np.cumsum(weights, axis=1, out=cdf[:, 1:])
    return check_cdf(cdf, "pmf")


def cdf_bytes(cdf: np.ndarray) -> bytes:
    """The ``.npy`` bytes of a table (the file written into the export; its sha256 is the table's identity)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(check_cdf(cdf), dtype="<u4"), allow_pickle=False)
    return buffer.getvalue()


def load_cdf(path: str | Path, expected_sha256: str | None = None) -> np.ndarray:
    """Read and check ``entropy_cdf.npy``; ArtifactError naming the file on a bad table or sha256 mismatch."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: CDF tables not readable ({exc})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ArtifactError(f"{path}: cdf_sha256 mismatch: the file has {digest[:16]}..., split.json says "
                            f"{expected_sha256[:16]}... (CDF tables modified or from another export)")
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
        return check_cdf(array, "cdf")
    except (ValueError, CodecError) as exc:
        raise ArtifactError(f"{path}: not valid CDF tables ({exc})") from None


# ------------------------------------------------------------------------------------ split.json section
@dataclass(frozen=True)
class EntropySpec:
    """The ``entropy`` section of an entropic export's split.json, with the loaded tables."""

    coder: str
    library_version: str
    precision_bits: int
    min_symbol: int
    cdf_file: str
    cdf_sha256: str
    cdf: np.ndarray

    @property
    def table_id(self) -> bytes:
        """The 4 bytes of the tables' sha256 that every blob carries."""
        return bytes.fromhex(self.cdf_sha256)[:4]

    def as_dict(self) -> dict[str, Any]:
        """The split.json section (without the table itself)."""
        return {"coder": self.coder, "library": "constriction", "library_version": self.library_version,
                "precision_bits": self.precision_bits, "min_symbol": self.min_symbol, "cdf_file": self.cdf_file,
                "cdf_sha256": self.cdf_sha256, "channels": int(self.cdf.shape[0]),
                "symbols": int(self.cdf.shape[1] - 1)}

    def describe(self) -> str:
        """``coder range-constriction 0.5, cdf_sha256 1a2b...``: what a mismatch message names."""
        return f"coder {self.coder} {self.library_version}, cdf_sha256 {self.cdf_sha256[:16]}..."

    @classmethod
    def from_tables(cls, cdf: np.ndarray, min_symbol: int) -> EntropySpec:
        """The spec of in-memory tables (what the export writes)."""
        table = check_cdf(cdf)
        return cls(CODER, constriction_version(), PRECISION_BITS, int(min_symbol), CDF_FILE,
                   hashlib.sha256(cdf_bytes(table)).hexdigest(), table)

    @classmethod
    def from_dict(cls, data: Any, root: Path, where: str = "split.json") -> EntropySpec:
        """Parse split.json's ``entropy`` section and load its tables; ArtifactError naming the field."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: 'entropy' must be an object")
        coder = data.get("coder")
        if coder not in CODER_IDS:
            raise ArtifactError(f"{where}: entropy.coder: unknown coder {coder!r}; this aeforge decodes "
                                f"{', '.join(CODER_IDS)}")
        here = constriction_version()
        if data.get("library_version") != here:
            raise ArtifactError(f"{where}: entropy.library_version: the export was coded with constriction "
                                f"{data.get('library_version')!r}, this host has {here!r} (the range-coded "
                                "format is tied to constriction's major.minor version)")
        if data.get("precision_bits") != PRECISION_BITS:
            raise ArtifactError(f"{where}: entropy.precision_bits: expected {PRECISION_BITS}, got "
                                f"{data.get('precision_bits')!r}")
        name, digest, low = data.get("cdf_file"), data.get("cdf_sha256"), data.get("min_symbol")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ArtifactError(f"{where}: entropy.cdf_file: a plain file name inside the export, got {name!r}")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ArtifactError(f"{where}: entropy.cdf_sha256: expected 64 lowercase hex digits, got {digest!r}")
        if isinstance(low, bool) or not isinstance(low, int):
            raise ArtifactError(f"{where}: entropy.min_symbol: expected an integer, got {low!r}")
        cdf = load_cdf(root / name, digest)
        return cls(coder, here, PRECISION_BITS, low, name, digest, cdf)


# ------------------------------------------------------------------------------------ the coder
class EntropyCodec:
    """Range coder of integer codes ``(N, C, H, W)`` under the CDF tables of ``spec``.

    ``shape`` is the per-sample code shape ``(C, H, W)``; ``C`` must match the tables' rows.
    """

    def __init__(self, spec: EntropySpec, shape: tuple[int, ...]) -> None:
        try:
            import constriction
        except ImportError:
            raise ToolUnavailableError("the entropic code needs constriction (pip install 'aeforge[split]')") from None
        self._constriction = constriction
        self.spec = spec
        self.shape = tuple(int(d) for d in shape)
        if len(self.shape) < 1 or self.shape[0] != spec.cdf.shape[0]:
            raise ArtifactError(f"entropy: code shape {self.shape} has {self.shape[0] if self.shape else 0} channels, "
                                f"the CDF tables have {spec.cdf.shape[0]} rows")
        self.symbols = int(spec.cdf.shape[1] - 1)
        self.min_symbol = spec.min_symbol
        self.max_symbol = spec.min_symbol + self.symbols - 1
        self.per_channel = math.prod(self.shape[1:])
        weights = np.diff(spec.cdf.astype(np.int64), axis=1)
        model = constriction.stream.model.Categorical
        self._models = [model((row - 1).astype(np.float64), perfect=False) for row in weights]
        self._max_bits = float(np.max(-np.log2(weights / float(1 << PRECISION_BITS))))

    def max_blob_bytes(self, max_batch: int) -> int:
        """The largest blob of at most ``max_batch`` samples: every symbol at its tables' worst cost, plus slack."""
        bits = max_batch * self.shape[0] * self.per_channel * self._max_bits
        return HEADER_BYTES + 4 * (math.ceil(bits / 32) + 4)

    def _payload(self, symbols: np.ndarray) -> bytes:
        encoder = self._constriction.stream.queue.RangeEncoder()
        for sample in symbols:
            for channel, values in enumerate(sample):
                encoder.encode(np.ascontiguousarray(values.reshape(-1), dtype=np.int32), self._models[channel])
        return encoder.get_compressed().astype("<u4", copy=False).tobytes()

    def encode(self, codes: np.ndarray) -> bytes:
        """The blob of integer codes ``(N, C, H, W)`` or one sample ``(C, H, W)``; CodecError if off the tables."""
        array = np.asarray(codes)
        if not np.issubdtype(array.dtype, np.integer):
            raise CodecError("codes", f"must be an integer array, got dtype {array.dtype}")
        if array.shape == self.shape:
            array = array[None]
        if array.shape[1:] != self.shape or not 1 <= array.shape[0] <= 0xFFFF:
            raise CodecError("dims", f"codes of shape {array.shape}, the tables code (N, "
                                     f"{', '.join(map(str, self.shape))}) with N in 1..65535")
        if array.size and (int(array.min()) < self.min_symbol or int(array.max()) > self.max_symbol):
            raise CodecError("codes", f"values span [{int(array.min())}, {int(array.max())}], outside the tables' "
                                      f"[{self.min_symbol}, {self.max_symbol}]")
        payload = self._payload(array.astype(np.int64) - self.min_symbol)
        head = HEADER.pack(MAGIC, VERSION, CODER_IDS[self.spec.coder], array.shape[0], self.spec.table_id, 0)[:12]
        return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload

    def decode(self, blob: bytes | bytearray | memoryview, max_batch: int = 64, max_bytes: int | None = None,
               ) -> np.ndarray:
        """The int32 codes ``(N, C, H, W)`` of a blob; CodecError naming the field for anything not canonical."""
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise CodecError("blob", f"must be bytes, got {type(blob).__name__}")
        data = bytes(blob)
        limit = self.max_blob_bytes(max_batch) if max_bytes is None else min(max_bytes, self.max_blob_bytes(max_batch))
        if len(data) > limit:
            raise CodecError("length", f"blob of {len(data)} bytes exceeds {limit} bytes (the largest coded "
                                       f"request of {max_batch} samples)")
        if len(data) < HEADER_BYTES:
            raise CodecError("header", f"blob of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
        magic, version, coder, batch, table_id, crc = HEADER.unpack_from(data)
        if magic != MAGIC:
            hint = " (a packed AECT code blob; this export expects range-coded AECE blobs)" if magic == b"AECT" else ""
            raise CodecError("magic", f"expected {MAGIC!r}, got {magic!r}{hint}")
        if version != VERSION:
            raise CodecError("version", f"unsupported version {version}; this decoder reads version {VERSION}")
        if coder != CODER_IDS[self.spec.coder]:
            raise CodecError("coder", f"blob coded with coder id {coder}, this end decodes {self.spec.coder} "
                                      f"(id {CODER_IDS[self.spec.coder]})")
        if table_id != self.spec.table_id:
            raise CodecError("cdf_sha256", f"blob coded with CDF tables {table_id.hex()}..., this end has "
                                           f"{self.spec.table_id.hex()}... ({self.spec.cdf_file} of another export)")
        if not 1 <= batch <= max_batch:
            raise CodecError("batch", f"{batch} samples, accepted 1..{max_batch}")
        payload = data[HEADER_BYTES:]
        if len(payload) % 4 or not payload:
            raise CodecError("payload", f"{len(payload)} bytes is not a positive whole number of 32-bit words")
        if zlib.crc32(payload, zlib.crc32(data[:12])) != crc:
            raise CodecError("crc32", "checksum mismatch (corrupted blob)")
        symbols = self._decode_symbols(payload, batch)
        if self._payload(symbols) != payload:
            raise CodecError("payload", "not the canonical range code of the symbols it decodes to (corrupt, "
                                        "truncated or trailing words)")
        return (symbols.astype(np.int64) + self.min_symbol).astype(np.int32)

    def _decode_symbols(self, payload: bytes, batch: int) -> np.ndarray:
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        out = np.empty((batch, self.shape[0], self.per_channel), dtype=np.int32)
        try:
            decoder = self._constriction.stream.queue.RangeDecoder(words)
            for sample in range(batch):
                for channel in range(self.shape[0]):
                    out[sample, channel] = decoder.decode(self._models[channel], self.per_channel)
        except BaseException as exc:  # constriction raises ValueError/AssertionError, or pyo3's PanicException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise CodecError("payload", f"range decoding failed ({type(exc).__name__}: {exc})") from None
        if out.size and (int(out.min()) < 0 or int(out.max()) >= self.symbols):
            raise CodecError("payload", "decoded symbols outside the tables")
        return out.reshape(batch, *self.shape)


def ideal_bits(codes: np.ndarray, cdf: np.ndarray, min_symbol: int) -> float:
    """``-sum(log2 p(code))`` under the integer tables: the information content the coder approaches."""
    weights = np.diff(np.asarray(cdf, dtype=np.int64), axis=1) / float(1 << PRECISION_BITS)
    array = np.asarray(codes)
    array = array[None] if array.ndim == 3 else array
    channels = np.arange(array.shape[1]).reshape(1, -1, *([1] * (array.ndim - 2)))
    return float(-np.log2(weights[channels, array - min_symbol]).sum())
