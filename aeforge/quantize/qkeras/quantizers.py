"""QKeras quantizers, reproduced from QKeras 0.9's source (``qkeras/quantizers.py``) without TensorFlow.

* :func:`parse_quantizer` reads a quantizer in any form a Keras JSON holds: the dict
  (``{"class_name": ..., "config": {...}}``), the string form (``"quantized_relu(3,1)"``,
  ``"quantized_bits(6,0,alpha=1)"``, positional arguments in QKeras's constructor order) or a bare
  name (``"quantized_relu"``: the defaults).
* :func:`activation_type` maps an activation quantizer to the :class:`FixedPoint` that equals it:
  ``quantized_bits`` (``round_half_even(x * 2**f)``, saturate) and ``quantized_relu`` (ReLU, then
  the same on an unsigned grid; with QKeras's default ``is_quantized_clip`` the input is first
  clipped to the largest code, which is the same as saturating after rounding, and
  ``relu_upper_bound`` is ignored, as in QKeras). Everything else is refused with the reason.
* :func:`weight_quantizer` maps a kernel or bias quantizer to a :class:`WeightQuantizer`: the numpy
  function QKeras applies to the stored float32 weights at inference, and the fixed-point type
  (container) that holds every value it can produce exactly, so the hardware weight quantizer is the
  identity on the imported values:

  - ``quantized_bits``: as for activations; a power-of-two ``alpha`` scales the grid;
  - ``quantized_po2(bits, max_value)``: ``sign(x) * 2**clip(round(log2|x|), min_exp, max_exp)``,
    rounded in the log domain (``|x| > 2**(k + 1/2)`` rounds up; QKeras computes ``log`` in float32
    and can differ within a float32 ulp of ``2**(k + 1/2)``), ``0 -> +2**min_exp`` (QKeras's
    ``sign(0) = +1`` and ``|x| < 1e-7 -> min_exp``), ``|x| >= max_value`` clipped to ``max_value``
    first. The container spans the representable exponents (those the weights use when that would
    be wider than 24 bits);
  - ``binary`` (``x >= 0 -> +alpha`` else ``-alpha``; ``use_01``: ``{0, alpha}``) and ``ternary``
    (``|x| >= threshold -> sign(x) * alpha`` else 0, ``threshold`` 0.33 by default), with ``alpha``
    a power of two.

  A kernel quantizer whose ``alpha`` is ``None`` is refused: QKeras's QDense/QConv layers turn it
  into ``"auto_po2"`` (per-channel scales computed from the weights), which is not reproduced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aeforge.errors import QuantizationError
from aeforge.fixedpoint import FixedPoint

Role = str  # "activation" | "kernel" | "bias"

SIGNATURES: dict[str, tuple[str, ...]] = {
    "quantized_bits": ("bits", "integer", "symmetric", "keep_negative", "alpha", "use_stochastic_rounding",
                       "scale_axis", "qnoise_factor", "var_name", "use_ste", "use_variables", "elements_per_scale",
                       "min_po2_exponent", "max_po2_exponent", "post_training_scale"),
    "quantized_relu": ("bits", "integer", "use_sigmoid", "negative_slope", "use_stochastic_rounding",
                       "relu_upper_bound", "is_quantized_clip", "qnoise_factor", "var_name", "use_ste",
                       "use_variables"),
    "quantized_po2": ("bits", "max_value", "use_stochastic_rounding", "quadratic_approximation", "log2_rounding",
                      "qnoise_factor", "var_name", "use_ste", "use_variables"),
    "quantized_relu_po2": ("bits", "max_value", "negative_slope", "use_stochastic_rounding",
                           "quadratic_approximation", "log2_rounding", "qnoise_factor", "var_name", "use_ste",
                           "use_variables"),
    "binary": ("use_01", "alpha", "use_stochastic_rounding"),
    "ternary": ("alpha", "threshold", "use_stochastic_rounding", "number_of_unrolls"),
}
"""Constructor arguments of the QKeras quantizers understood here, in positional order."""

_NOT_SUPPORTED = {
    "quantized_relu_po2": "its outputs are powers of two (not a uniform fixed-point grid), which no aeforge "
                          "layer kind computes exactly; use quantized_relu(bits, integer)",
    "quantized_po2": "as an activation its outputs are powers of two (not a uniform fixed-point grid); "
                     "use quantized_bits or quantized_relu (quantized_po2 is supported for weights)",
    "binary": "a binary (sign) activation is not a round-and-saturate quantizer; use quantized_bits/quantized_relu "
              "(binary is supported for weights)",
    "ternary": "a ternary activation (dead band) is not a round-and-saturate quantizer; use quantized_bits/"
               "quantized_relu (ternary is supported for weights)",
}
EPSILON = np.float32(1e-7)  # tf.keras.backend.epsilon()
MAX_CONTAINER_BITS = 24
_TRUE_FLAGS = (True, 1, 1.0)


@dataclass(frozen=True)
class Quantizer:
    """A parsed QKeras quantizer: class name and keyword configuration."""

    name: str
    config: dict[str, Any]

    def __str__(self) -> str:
        keys = ("bits", "integer", "alpha", "max_value")
        shown = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k in keys)
        return f"{self.name}({shown})"


def parse_quantizer(value: Any, where: str) -> Quantizer:
    """A QKeras quantizer from its dict, string (``"quantized_relu(3,1)"``) or bare-name form."""
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", text, flags=re.DOTALL)
        if match is None:
            raise QuantizationError(f"{where}: cannot parse QKeras quantizer {value!r}")
        name, arg_text = match.group(1), match.group(2) or ""
        config = _string_arguments(name, arg_text, value, where)
        return _checked(Quantizer(name, config), where)
    if isinstance(value, Mapping) and isinstance(value.get("class_name"), str):
        name = value["class_name"].rsplit(">", 1)[-1]
        config = value.get("config") or {}
        if not isinstance(config, Mapping):
            raise QuantizationError(f"{where}: quantizer {name!r} has a 'config' that is not a mapping")
        return _checked(Quantizer(name, dict(config)), where)
    raise QuantizationError(f"{where}: cannot read quantizer {value!r}")


def _string_arguments(name: str, arg_text: str, text: str, where: str) -> dict[str, Any]:
    signature = SIGNATURES.get(name)
    if signature is None:
        return {}  # refused by _checked with the name
    config: dict[str, Any] = {}
    args = [a.strip() for a in arg_text.split(",") if a.strip()]
    seen_keyword = False
    for index, arg in enumerate(args):
        key, eq, raw = arg.partition("=")
        if eq:
            seen_keyword = True
            key = key.strip()
        else:
            if seen_keyword:
                raise QuantizationError(f"{where}: positional argument after keyword arguments in {text!r}")
            if index >= len(signature):
                raise QuantizationError(f"{where}: too many arguments in {text!r}")
            key, raw = signature[index], arg
        config[key] = _literal(raw.strip())
    return config


def _literal(raw: str) -> Any:
    if raw in ("True", "False"):
        return raw == "True"
    if raw == "None":
        return None
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw.strip("'\"")


def _checked(quantizer: Quantizer, where: str) -> Quantizer:
    signature = SIGNATURES.get(quantizer.name)
    if signature is None:
        raise QuantizationError(
            f"{where}: QKeras quantizer {quantizer.name!r} is not supported (supported: {', '.join(SIGNATURES)})")
    unknown = sorted(set(quantizer.config) - set(signature))
    if unknown:
        raise QuantizationError(f"{where}: unknown {quantizer.name} option(s) {unknown}; cannot tell their effect")
    config = dict(quantizer.config)
    if config.get("use_stochastic_rounding") in _TRUE_FLAGS:
        raise QuantizationError(f"{where}: {quantizer.name} with stochastic rounding cannot be reproduced in hardware")
    if config.get("qnoise_factor", 1.0) not in (None, 1, 1.0):
        raise QuantizationError(f"{where}: qnoise_factor={config['qnoise_factor']!r} (partial quantization) "
                                "is not supported; use 1.0")
    if config.get("post_training_scale") is not None:
        raise QuantizationError(f"{where}: post_training_scale is not supported")
    for key in ("bits", "integer"):
        number = config.get(key)
        if isinstance(number, float) and number.is_integer():
            config[key] = int(number)
        elif number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise QuantizationError(f"{where}: {key}={number!r} must be an integer")
    return Quantizer(quantizer.name, config)


# ------------------------------------------------------------------------------- activations
def activation_type(quantizer: Quantizer, where: str) -> tuple[str, FixedPoint]:
    """``("relu" | "quant", type)`` for an activation quantizer; refuses what has no exact equivalent."""
    config = quantizer.config
    if quantizer.name in _NOT_SUPPORTED:
        raise QuantizationError(f"{where}: {quantizer.name} is not supported as an activation: "
                                f"{_NOT_SUPPORTED[quantizer.name]}")
    if quantizer.name == "quantized_bits":
        alpha = config.get("alpha")
        if alpha not in (None, 1, 1.0, "1"):
            raise QuantizationError(
                f"{where}: quantized_bits alpha={alpha!r} is not supported for an activation (only 1 or None: "
                "QKeras multiplies the quantized activation by alpha, which is not a fixed-point quantizer)")
        fixed = _bits_type(config, where)
        return "quant", fixed
    # quantized_relu
    for key in ("negative_slope", "use_sigmoid"):
        if config.get(key) not in (None, 0, 0.0, False):
            raise QuantizationError(f"{where}: quantized_relu {key}={config[key]!r} is not supported (only 0)")
    if config.get("is_quantized_clip") is False and config.get("relu_upper_bound") is not None:
        raise QuantizationError(f"{where}: quantized_relu relu_upper_bound with is_quantized_clip=False is not "
                                "supported")
    bits, integer = int(config.get("bits", 8)), int(config.get("integer", 0))
    try:
        return "relu", FixedPoint(bits, integer, signed=False)
    except QuantizationError as error:
        raise QuantizationError(f"{where}: {error}") from None


def _bits_type(config: Mapping[str, Any], where: str) -> FixedPoint:
    """The FixedPoint of ``quantized_bits(bits, integer, symmetric, keep_negative)`` (alpha 1)."""
    bits, integer = int(config.get("bits", 8)), int(config.get("integer", 0))
    keep_negative = bool(config.get("keep_negative", True))
    if bits - int(keep_negative) < 1:
        raise QuantizationError(f"{where}: quantized_bits with {bits} bit(s) and keep_negative={keep_negative} is "
                                "a sign function, not a fixed-point quantizer")
    overflow = "SAT_SYM" if config.get("symmetric") and keep_negative else "SAT"
    try:
        return FixedPoint(bits, integer + 1 if keep_negative else integer, signed=keep_negative, overflow=overflow)
    except QuantizationError as error:
        raise QuantizationError(f"{where}: {error}") from None


# ------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class WeightQuantizer:
    """What QKeras does to stored weights at inference, and a fixed-point type holding the results."""

    quantizer: Quantizer
    function: Callable[[np.ndarray], np.ndarray]
    fixed: FixedPoint | None = None  # the container when it does not depend on the values
    exponents: tuple[int, int] | None = None  # po2: representable exponent range

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return self.function(np.asarray(values, dtype=np.float32))

    def container(self, quantized: np.ndarray) -> FixedPoint:
        """The signed type holding every value this quantizer can produce (or at least ``quantized``)."""
        if self.fixed is not None:
            return self.fixed
        assert self.exponents is not None
        low, high = self.exponents
        if high - low + 2 > MAX_CONTAINER_BITS:
            used = np.abs(quantized[quantized != 0])
            if used.size:
                logs = np.log2(used)
                low, high = int(logs.min()), int(logs.max())
        return FixedPoint(high - low + 2, high + 2, signed=True)


def weight_quantizer(quantizer: Quantizer, role: Role, where: str) -> WeightQuantizer:
    """The numpy equivalent of a QKeras kernel (``role="kernel"``) or bias quantizer."""
    config = quantizer.config
    name = quantizer.name
    if name in ("quantized_relu", "quantized_relu_po2"):
        raise QuantizationError(f"{where}: {name} is not a weight quantizer (only quantized_bits, quantized_po2, "
                                "binary, ternary)")
    if name in ("quantized_bits", "binary", "ternary"):
        scale = _alpha_scale(quantizer, role, where)
        if name == "quantized_bits" and int(config.get("bits", 8)) - int(bool(config.get("keep_negative", True))) < 1:
            name = "binary_bits"
        if name == "quantized_bits":
            base = _bits_type(config, where)  # QKeras: alpha * (x on the base grid)
            return WeightQuantizer(quantizer, lambda x: scale * base.quantize(x.astype(np.float64)),
                                   _scaled(base, scale, where))
        if name == "binary_bits":
            keep_negative = bool(config.get("keep_negative", True))
            return WeightQuantizer(quantizer, lambda x: scale * _sign_one(x, use_01=not keep_negative),
                                   _scaled(FixedPoint(2, 2), scale, where))
        if name == "binary":
            use_01 = bool(config.get("use_01", False))
            return WeightQuantizer(quantizer, lambda x: scale * _sign_one(x, use_01),
                                   _scaled(FixedPoint(2, 2), scale, where))
        threshold = config.get("threshold")
        threshold = np.float32(0.33 if threshold is None else threshold)
        return WeightQuantizer(
            quantizer, lambda x: scale * np.where(np.abs(x) >= threshold, np.sign(x), 0.0).astype(np.float64),
            _scaled(FixedPoint(2, 2), scale, where))
    return _po2(quantizer, where)


def _alpha_scale(quantizer: Quantizer, role: Role, where: str) -> float:
    alpha = quantizer.config.get("alpha")
    if alpha is None:
        if role == "kernel":
            raise QuantizationError(
                f"{where}: {quantizer.name} without alpha on a kernel: QKeras's QDense/QConv layers make that "
                "alpha='auto_po2' (per-channel power-of-two scales computed from the weights), which is not "
                "reproduced; train with alpha=1")
        return 1.0
    if isinstance(alpha, str):
        if alpha.strip() in ("1", "1.0"):
            return 1.0
        raise QuantizationError(f"{where}: {quantizer.name} alpha={alpha!r} (per-channel scales computed from the "
                                "weights) is not supported; train with alpha=1")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0 or not math.isfinite(alpha):
        raise QuantizationError(f"{where}: {quantizer.name} alpha={alpha!r} is not supported")
    exponent = math.log2(alpha)
    if not exponent.is_integer():
        raise QuantizationError(f"{where}: {quantizer.name} alpha={alpha!r} is not a power of two, so the weights "
                                "are not on a fixed-point grid; use alpha=1 (or a power of two)")
    return float(alpha)


def _scaled(base: FixedPoint, scale: float, where: str) -> FixedPoint:
    shift = int(math.log2(scale))
    try:
        return FixedPoint(base.bits, base.int_bits + shift, signed=base.signed, overflow=base.overflow)
    except QuantizationError as error:
        raise QuantizationError(f"{where}: {error}") from None


def _sign_one(x: np.ndarray, use_01: bool) -> np.ndarray:
    """QKeras's ``sign(x)`` with 0 -> +1 (``{0, 1}`` with ``use_01``)."""
    signs = np.where(x < 0, -1.0, 1.0)
    return (signs + 1.0) / 2.0 if use_01 else signs


def _po2(quantizer: Quantizer, where: str) -> WeightQuantizer:
    config = quantizer.config
    if config.get("quadratic_approximation") in _TRUE_FLAGS:
        raise QuantizationError(f"{where}: quantized_po2 quadratic_approximation=True is not supported")
    if config.get("log2_rounding", "rnd") != "rnd":
        raise QuantizationError(f"{where}: quantized_po2 log2_rounding={config['log2_rounding']!r} is not supported "
                                "(only 'rnd': float32 log2 of an exact power of two may floor to the exponent below)")
    bits = int(config.get("bits", 8))
    max_value = config.get("max_value")
    if max_value is not None and (isinstance(max_value, bool) or not isinstance(max_value, (int, float))
                                  or max_value <= 0):
        raise QuantizationError(f"{where}: quantized_po2 max_value={max_value!r} must be a positive number or None")
    need_sign = 0 if max_value is not None and max_value <= 1 else 1
    effect = bits - 1 - need_sign
    if effect < 0:
        raise QuantizationError(f"{where}: quantized_po2 with {bits} bit(s) has no exponent bits")
    min_exp, max_exp = -(2**effect), 2**effect - 1
    limit = None if max_value is None else np.float32(max_value)
    high = max_exp
    if limit is not None:
        high = int(np.clip(_round_log2(np.array([limit], dtype=np.float32))[0], min_exp, max_exp))
    low = min(min_exp, high)

    def function(x: np.ndarray) -> np.ndarray:
        sign = np.where(x < 0, -1.0, 1.0)
        magnitude = np.abs(x)
        filtered = np.where(magnitude < EPSILON, EPSILON, magnitude)
        if limit is not None:
            filtered = np.where(filtered >= limit, limit, filtered)
        exponent = np.clip(_round_log2(filtered), min_exp, max_exp)
        exponent = np.where(magnitude < EPSILON, min_exp, exponent)
        return sign * np.exp2(exponent.astype(np.float64))

    return WeightQuantizer(quantizer, function, exponents=(low, high))


def _round_log2(values: np.ndarray) -> np.ndarray:
    """``round(log2(v))`` for positive float32 ``v``, exactly (the boundary is ``2**(k + 1/2)``, never a tie)."""
    mantissa, exponent = np.frexp(values.astype(np.float64))  # v = mantissa * 2**exponent, mantissa in [0.5, 1)
    doubled = 2.0 * mantissa  # in [1, 2); log2 v = exponent - 1 + log2(doubled)
    return (exponent - 1 + (doubled * doubled > 2.0)).astype(np.int64)
