"""The fixed-point contract: one type that every stage of aeforge agrees on.

A :class:`FixedPoint` is a binary fixed-point number format with ``bits`` total bits, of which
``int_bits`` are integer bits (including the sign bit when ``signed``), exactly as Vitis HLS
``ap_fixed<W, I, Q, O>`` / ``ap_ufixed<W, I, Q, O>`` define it. Its quantization step (LSB) is
the power of two ``2 ** -(bits - int_bits)``.

It converts to and from

* the hls4ml / Vitis type strings (:meth:`FixedPoint.ap_type`, :meth:`FixedPoint.parse`),
* QKeras ``quantized_bits`` / ``quantized_relu`` configurations (:meth:`FixedPoint.to_qkeras`,
  :meth:`FixedPoint.from_qkeras`; mind that a signed QKeras ``integer`` excludes the sign bit),
* Brevitas quantizers (:func:`aeforge.quantize.quantizers.brevitas_quant`),
* integer codes and RTL bit patterns (:meth:`FixedPoint.to_codes`, :meth:`FixedPoint.to_bits`).

:meth:`FixedPoint.quantize` is the numpy reference of the ``ap_fixed`` semantics (round first,
then handle overflow); property tests hold every other implementation to it.

This module depends on numpy only, so the CLI core runs on devices without torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from aeforge.errors import QuantizationError

ROUNDING_MODES = ("RND_CONV", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN", "TRN_ZERO")
"""Vitis quantization modes: ``RND_CONV`` rounds half to even, ``RND`` half up (towards +inf),
``RND_ZERO`` half towards zero, ``RND_INF`` half away from zero, ``RND_MIN_INF`` half down,
``TRN`` truncates (floor), ``TRN_ZERO`` truncates towards zero."""

OVERFLOW_MODES = ("SAT", "SAT_SYM", "SAT_ZERO", "WRAP")
"""Vitis overflow modes: ``SAT`` clamps to the range, ``SAT_SYM`` clamps to a symmetric range
(signed types lose their most negative code), ``SAT_ZERO`` sets overflowing values to zero,
``WRAP`` keeps the low ``bits`` bits (two's complement wrap-around)."""

MAX_BITS = 64
NUMERIC_MAX_BITS = 53
"""Widest type the numpy reference (:meth:`FixedPoint.quantize`, codes, bits) computes exactly."""
_TYPE_PATTERN = re.compile(
    r"^\s*(?P<prefix>ap_)?(?P<kind>fixed|ufixed)\s*<\s*(?P<args>[^<>]*)>\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class FixedPoint:
    """A power-of-two-scaled fixed-point type, ``ap_fixed<bits, int_bits, rounding, overflow>``.

    Defaults follow what hardware and QAT agree on most easily: round half to even (the rounding
    of ``torch.round``, Brevitas and QKeras) and saturation (the clamp of Brevitas and QKeras).
    """

    bits: int
    int_bits: int
    signed: bool = True
    rounding: str = "RND_CONV"
    overflow: str = "SAT"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise QuantizationError(f"fixed-point bits must be an integer, got {self.bits!r}")
        if isinstance(self.int_bits, bool) or not isinstance(self.int_bits, int):
            raise QuantizationError(f"fixed-point int_bits must be an integer, got {self.int_bits!r}")
        if not 1 <= self.bits <= MAX_BITS:
            raise QuantizationError(f"fixed-point bits must be in 1..{MAX_BITS}, got {self.bits}")
        if self.signed and self.bits < 2:
            raise QuantizationError("a signed fixed-point type needs at least 2 bits")
        if abs(self.int_bits) > 2 * MAX_BITS:
            raise QuantizationError(f"fixed-point int_bits out of range: {self.int_bits}")
        rounding = self.rounding.upper().removeprefix("AP_")
        overflow = self.overflow.upper().removeprefix("AP_")
        if rounding not in ROUNDING_MODES:
            raise QuantizationError(
                f"unknown rounding mode {self.rounding!r}; expected one of {', '.join(ROUNDING_MODES)}"
            )
        if overflow not in OVERFLOW_MODES:
            raise QuantizationError(
                f"unknown overflow mode {self.overflow!r}; expected one of {', '.join(OVERFLOW_MODES)}"
            )
        integer_flag = isinstance(self.signed, (int, np.integer)) and self.signed in (0, 1)
        if not (isinstance(self.signed, (bool, np.bool_)) or integer_flag):
            raise QuantizationError(f"fixed-point signed must be true or false, got {self.signed!r}")
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)
        object.__setattr__(self, "signed", bool(self.signed))

    # ------------------------------------------------------------------ derived properties
    @property
    def frac_bits(self) -> int:
        """Number of fractional bits (may be negative)."""
        return self.bits - self.int_bits

    @property
    def lsb(self) -> float:
        """The quantization step, a power of two."""
        return math.ldexp(1.0, -self.frac_bits)

    @property
    def min_code(self) -> int:
        """Smallest integer code the type can hold (after ``SAT_SYM`` narrowing)."""
        if not self.signed:
            return 0
        low = -(1 << (self.bits - 1))
        return low + 1 if self.overflow == "SAT_SYM" else low

    @property
    def max_code(self) -> int:
        """Largest integer code the type can hold."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def min_value(self) -> float:
        return self.min_code * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_code * self.lsb

    @property
    def narrow_range(self) -> bool:
        """True when the most negative code is excluded (``SAT_SYM`` on a signed type)."""
        return self.signed and self.overflow == "SAT_SYM"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parse(cls, text: str) -> FixedPoint:
        """Parse ``ap_fixed<W,I[,Q[,O[,N]]]>``, ``ap_ufixed<...>`` or hls4ml's ``fixed<...>``.

        Omitted modes take the Vitis defaults (``AP_TRN``, ``AP_WRAP``), so the string means what
        it means to the HLS compiler. The saturation-bit count ``N`` must be 0 if given.
        """
        if not isinstance(text, str):
            raise QuantizationError(f"expected a fixed-point type string, got {text!r}")
        match = _TYPE_PATTERN.match(text)
        if match is None:
            raise QuantizationError(
                f"cannot parse fixed-point type {text!r}; expected e.g. 'ap_fixed<6,2,AP_RND_CONV,AP_SAT>'"
            )
        args = [a.strip() for a in match["args"].split(",")]
        if len(args) < 2 or len(args) > 5:
            raise QuantizationError(f"fixed-point type {text!r} needs 2 to 5 template arguments")
        try:
            bits, int_bits = int(args[0]), int(args[1])
        except ValueError:
            raise QuantizationError(f"fixed-point type {text!r}: width and integer bits must be integers") from None
        rounding = args[2] if len(args) > 2 else "TRN"
        overflow = args[3] if len(args) > 3 else "WRAP"
        if len(args) > 4 and args[4] not in ("0", ""):
            raise QuantizationError(f"fixed-point type {text!r}: saturation bits N != 0 are not supported")
        try:
            return cls(bits, int_bits, signed=match["kind"].lower() == "fixed", rounding=rounding, overflow=overflow)
        except QuantizationError as error:
            raise QuantizationError(f"fixed-point type {text!r}: {error}") from None

    @classmethod
    def from_scale(
        cls, bits: int, scale: float, signed: bool = True, rounding: str = "RND_CONV", overflow: str = "SAT"
    ) -> FixedPoint:
        """Build the type of a uniform quantizer with step ``scale``; refuses non-power-of-two steps."""
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise QuantizationError(f"quantizer scale must be a positive finite number, got {scale!r}")
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise QuantizationError(f"quantizer scale must be a positive finite number, got {scale!r}")
        mantissa, exponent = math.frexp(scale)
        if mantissa != 0.5:
            raise QuantizationError(
                f"quantizer scale {scale!r} is not a power of two; hardware targets accept only "
                "power-of-two scales"
            )
        frac_bits = -(exponent - 1)
        return cls(bits, bits - frac_bits, signed=signed, rounding=rounding, overflow=overflow)

    @classmethod
    def from_config(cls, value: Any, where: str = "fixed-point type") -> FixedPoint:
        """Build from a type string or a mapping ``{bits, int_bits | scale, signed, rounding, overflow}``.

        ``where`` names the config field in error messages.
        """
        if isinstance(value, FixedPoint):
            return value
        try:
            if isinstance(value, str):
                return cls.parse(value)
            if isinstance(value, dict):
                known = {"bits", "int_bits", "scale", "signed", "rounding", "overflow"}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise QuantizationError(f"unknown key(s) {unknown}; expected some of {sorted(known)}")
                if "bits" not in value:
                    raise QuantizationError("missing 'bits'")
                options = {k: value[k] for k in ("signed", "rounding", "overflow") if k in value}
                if "scale" in value and "int_bits" in value:
                    raise QuantizationError("give either 'int_bits' or 'scale', not both")
                if "scale" in value:
                    return cls.from_scale(value["bits"], value["scale"], **options)
                if "int_bits" not in value:
                    raise QuantizationError("missing 'int_bits' (or 'scale')")
                return cls(value["bits"], value["int_bits"], **options)
        except QuantizationError as error:
            raise QuantizationError(f"{where}: {error}" if where else str(error)) from None
        prefix = f"{where}: " if where else ""
        raise QuantizationError(f"{prefix}expected a type string or a mapping, got {value!r}")

    # ------------------------------------------------------------------ type strings
    def ap_type(self) -> str:
        """The Vitis HLS type, with modes spelled out: ``ap_fixed<11,4,AP_RND_CONV,AP_SAT>``."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.bits},{self.int_bits},AP_{self.rounding},AP_{self.overflow}>"

    def hls4ml_type(self) -> str:
        """The hls4ml precision string: ``fixed<11,4,RND_CONV,SAT>`` / ``ufixed<...>``."""
        kind = "fixed" if self.signed else "ufixed"
        return f"{kind}<{self.bits},{self.int_bits},{self.rounding},{self.overflow}>"

    def __str__(self) -> str:
        return self.ap_type()

    # ------------------------------------------------------------------ QKeras
    def to_qkeras(self, relu: bool = False) -> dict[str, Any]:
        """QKeras quantizer config (``class_name`` and ``config``) with identical semantics.

        QKeras rounds half to even and saturates; other modes have no QKeras equivalent. A signed
        type maps to ``quantized_bits(bits, integer=int_bits-1, keep_negative=True)`` (QKeras does
        not count the sign bit in ``integer``); ``SAT_SYM`` maps to ``symmetric=True``. With
        ``relu`` an unsigned type maps to ``quantized_relu(bits, integer)``.
        """
        if self.rounding != "RND_CONV" or self.overflow not in ("SAT", "SAT_SYM"):
            raise QuantizationError(
                f"{self.ap_type()} has no QKeras equivalent (QKeras rounds half to even and saturates)"
            )
        if relu:
            if self.signed:
                raise QuantizationError(f"quantized_relu is unsigned; {self.ap_type()} is signed")
            return {"class_name": "quantized_relu", "config": {"bits": self.bits, "integer": self.int_bits}}
        config = {
            "bits": self.bits,
            "integer": self.int_bits - 1 if self.signed else self.int_bits,
            "keep_negative": self.signed,
            "symmetric": self.narrow_range,
            "alpha": 1,
        }
        return {"class_name": "quantized_bits", "config": config}

    @classmethod
    def from_qkeras(cls, quantizer: dict[str, Any] | str, where: str = "QKeras quantizer") -> FixedPoint:
        """Inverse of :meth:`to_qkeras`; accepts the dict form or a string like ``quantized_bits(6,1)``.

        Refuses what cannot be represented exactly: ``alpha`` other than 1 (or "po2" scales learned
        per channel), stochastic rounding, a non-zero relu slope or threshold.
        """
        if isinstance(quantizer, str):
            quantizer = _parse_qkeras_call(quantizer, where)
        name = quantizer.get("class_name")
        config = dict(quantizer.get("config", {}))
        if config.get("use_stochastic_rounding"):
            raise QuantizationError(f"{where}: stochastic rounding cannot be reproduced in hardware")
        if name == "quantized_bits":
            alpha = config.get("alpha", 1)
            if alpha not in (None, 1, 1.0, "1"):
                raise QuantizationError(f"{where}: quantized_bits alpha={alpha!r} is not supported (only 1)")
            bits = int(config.get("bits", 8))
            integer = int(config.get("integer", 0))
            keep_negative = bool(config.get("keep_negative", True))
            overflow = "SAT_SYM" if config.get("symmetric") and keep_negative else "SAT"
            int_bits = integer + 1 if keep_negative else integer
            return cls(bits, int_bits, signed=keep_negative, overflow=overflow)
        if name == "quantized_relu":
            for key in ("negative_slope", "relu_upper_bound", "use_sigmoid"):
                if config.get(key) not in (None, 0, 0.0, False):
                    raise QuantizationError(f"{where}: quantized_relu {key}={config[key]!r} is not supported")
            return cls(int(config.get("bits", 8)), int(config.get("integer", 0)), signed=False)
        raise QuantizationError(f"{where}: unsupported QKeras quantizer {name!r}")

    # ------------------------------------------------------------------ numeric semantics
    def _check_numeric(self) -> None:
        if self.bits > NUMERIC_MAX_BITS:
            raise QuantizationError(
                f"{self.ap_type()}: the numpy reference handles at most {NUMERIC_MAX_BITS} bits "
                "(codes must be exact in float64)"
            )

    def round_to_codes(self, values: np.ndarray) -> np.ndarray:
        """Apply the rounding mode to ``values / lsb``; returns unbounded float64 integers.

        Values too large for ``values / lsb`` to be a finite double come back as +-inf (they
        overflow any type); non-finite inputs are refused.
        """
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise QuantizationError(f"cannot quantize non-finite values to {self.ap_type()}")
        with np.errstate(over="ignore"):
            scaled = np.ldexp(values, self.frac_bits)
        floor = np.floor(scaled)
        if self.rounding == "TRN":
            # ldexp may underflow a tiny negative value to -0.0 when the LSB is above 1
            return np.where((floor == 0) & (values < 0), -1.0, floor)
        if self.rounding == "TRN_ZERO":
            return np.trunc(scaled)
        if self.rounding == "RND_CONV":
            return np.round(scaled)
        with np.errstate(invalid="ignore"):
            remainder = scaled - floor
        # scaled - floor is exact except on (-0.5, 0), where floor is -1 and the sum can round up to
        # 0.5 (e.g. -0.49999999999999996 + 1): those values are nearer 0 than -1 and never ties.
        small_negative = (scaled < 0) & (scaled > -0.5)
        tie = (remainder == 0.5) & ~small_negative
        nearest = np.where((remainder > 0.5) | small_negative, floor + 1, floor)
        tie_value = {
            "RND": floor + 1,
            "RND_MIN_INF": floor,
            "RND_ZERO": np.where(scaled > 0, floor, floor + 1),
            "RND_INF": np.where(scaled > 0, floor + 1, floor),
        }[self.rounding]
        return np.where(tie, tie_value, nearest)

    def handle_overflow(self, codes: np.ndarray) -> np.ndarray:
        """Apply the overflow mode to integer codes (float64; +-inf stands for huge values)."""
        self._check_numeric()
        codes = np.asarray(codes, dtype=np.float64)
        low, high = self.min_code, self.max_code
        if self.overflow in ("SAT", "SAT_SYM"):
            return np.clip(codes, low, high)
        if self.overflow == "SAT_ZERO":
            return np.where((codes < low) | (codes > high), 0.0, codes)
        # WRAP: keep the low `bits` bits. fmod of exact float integers by a power of two is exact;
        # a code too large for a double is a multiple of 2**bits (its low bits are all zero).
        span = float(1 << self.bits)
        with np.errstate(invalid="ignore"):
            wrapped = np.where(np.isinf(codes), 0.0, np.mod(codes, span))
        if self.signed:
            wrapped = np.where(wrapped >= span / 2, wrapped - span, wrapped)
        return wrapped + 0.0  # no negative zeros

    def to_codes(self, values: np.ndarray) -> np.ndarray:
        """Quantize ``values`` and return the integer codes (int64): ``value = code * lsb``."""
        return self.handle_overflow(self.round_to_codes(values)).astype(np.int64)

    def from_codes(self, codes: np.ndarray) -> np.ndarray:
        """Values (float64) of integer codes."""
        return np.ldexp(np.asarray(codes, dtype=np.float64), -self.frac_bits)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Reference ``ap_fixed`` quantization of float values (float64 result)."""
        return self.from_codes(self.handle_overflow(self.round_to_codes(values)))

    def is_representable(self, values: np.ndarray) -> np.ndarray:
        """Elementwise: does the value lie exactly on this type's grid and range?"""
        values = np.asarray(values, dtype=np.float64)
        scaled = np.ldexp(values, self.frac_bits)
        return (scaled == np.round(scaled)) & (scaled >= self.min_code) & (scaled <= self.max_code)

    def to_bits(self, values: np.ndarray) -> np.ndarray:
        """RTL bit patterns: codes as unsigned ``bits``-wide integers (two's complement if signed)."""
        codes = self.to_codes(values)
        return np.where(codes < 0, codes + (1 << self.bits), codes).astype(np.uint64)

    def from_bits(self, patterns: np.ndarray) -> np.ndarray:
        """Values of unsigned ``bits``-wide RTL bit patterns (inverse of :meth:`to_bits`)."""
        self._check_numeric()
        raw = np.asarray(patterns)
        if raw.dtype.kind == "f" and np.any(raw != np.round(raw)):
            raise QuantizationError("bit patterns must be integers")
        patterns = raw.astype(np.int64)
        if np.any((patterns < 0) | (patterns >= (1 << self.bits))):
            raise QuantizationError(f"bit pattern out of range for {self.bits}-bit {self.ap_type()}")
        if self.signed:
            patterns = np.where(patterns >= (1 << (self.bits - 1)), patterns - (1 << self.bits), patterns)
        return self.from_codes(patterns)

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for JSON cards; :meth:`from_config` reads it back."""
        return {
            "bits": self.bits,
            "int_bits": self.int_bits,
            "signed": self.signed,
            "rounding": self.rounding,
            "overflow": self.overflow,
        }


def _parse_qkeras_call(text: str, where: str) -> dict[str, Any]:
    """Parse QKeras' string form, e.g. ``quantized_bits(6, 1, alpha=1)`` or ``quantized_relu(8,3)``."""
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if match is None:
        raise QuantizationError(f"{where}: cannot parse QKeras quantizer {text!r}")
    name, arg_text = match.groups()
    positional = {"quantized_bits": ["bits", "integer", "symmetric", "keep_negative"],
                  "quantized_relu": ["bits", "integer", "use_sigmoid", "negative_slope"]}.get(name)
    if positional is None:
        raise QuantizationError(f"{where}: unsupported QKeras quantizer {name!r}")
    config: dict[str, Any] = {}
    args = [a.strip() for a in arg_text.split(",") if a.strip()]
    for index, arg in enumerate(args):
        key, _, raw = arg.rpartition("=")
        if not key:
            if index >= len(positional):
                raise QuantizationError(f"{where}: too many arguments in {text!r}")
            key = positional[index]
        config[key.strip()] = _literal(raw.strip(), where)
    return {"class_name": name, "config": config}


def _literal(raw: str, where: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw.strip("'\"")
