"""Brevitas quantizers built from :class:`aeforge.fixedpoint.FixedPoint` types.

Every quantizer here has a constant power-of-two scale equal to the type's LSB, zero point 0,
and the type's exact integer range, so that Brevitas, QONNX and ``ap_fixed`` arithmetic agree bit
for bit. Brevitas scales a signed ``b``-bit integer by ``threshold / 2**(b-1)`` and an unsigned
one by ``threshold / 2**b`` (``PowerOfTwoIntScaling``); the threshold is set so that the
resulting scale is ``2**-(bits - int_bits)``.

Only the modes Brevitas (and QONNX's ``Quant`` node) can express are accepted: rounding
``RND_CONV`` (``torch.round``, half to even), ``TRN`` (floor) and ``TRN_ZERO``; overflow ``SAT`` and
``SAT_SYM`` (narrow range). Anything else raises :class:`~aeforge.errors.QuantizationError`.
"""

from __future__ import annotations

from typing import Literal

from brevitas.core.restrict_val import PowerOfTwoRestrictValue
from brevitas.core.scaling import PowerOfTwoIntScaling
from brevitas.inject.enum import FloatToIntImplType, RestrictValueType, ScalingImplType
from brevitas.quant.base import IntQuant
from brevitas.quant.solver.act import ActQuantSolver
from brevitas.quant.solver.bias import BiasQuantSolver
from brevitas.quant.solver.weight import WeightQuantSolver

from aeforge.errors import QuantizationError
from aeforge.fixedpoint import FixedPoint

Role = Literal["weight", "bias", "act"]

_ROUNDING_TO_BREVITAS = {
    "RND_CONV": FloatToIntImplType.ROUND,
    "TRN": FloatToIntImplType.FLOOR,
    "TRN_ZERO": FloatToIntImplType.ROUND_TO_ZERO,
}
_SOLVERS = {"weight": WeightQuantSolver, "bias": BiasQuantSolver, "act": ActQuantSolver}


def check_brevitas_compatible(spec: FixedPoint, where: str = "quantizer") -> None:
    """Raise if ``spec`` uses a rounding or overflow mode that Brevitas cannot reproduce."""
    if spec.rounding not in _ROUNDING_TO_BREVITAS:
        raise QuantizationError(
            f"{where}: rounding AP_{spec.rounding} has no Brevitas/QONNX equivalent; use one of "
            f"{', '.join('AP_' + r for r in _ROUNDING_TO_BREVITAS)}"
        )
    if spec.overflow not in ("SAT", "SAT_SYM"):
        raise QuantizationError(
            f"{where}: overflow AP_{spec.overflow} has no Brevitas/QONNX equivalent; use AP_SAT or AP_SAT_SYM"
        )


def brevitas_threshold(spec: FixedPoint) -> float:
    """The constant ``scaling_const`` that gives Brevitas the scale ``spec.lsb``."""
    exponent = spec.bits - 1 if spec.signed else spec.bits
    return spec.lsb * float(2**exponent)


def brevitas_quant(spec: FixedPoint, role: Role, where: str = "quantizer") -> type:
    """A Brevitas quantizer class (an injector) implementing ``spec`` for a weight, bias or activation.

    Pass the result as ``weight_quant=``, ``bias_quant=``, ``act_quant=``/``input_quant=`` of a
    ``brevitas.nn`` layer. ``where`` names the layer in error messages.
    """
    if role not in _SOLVERS:
        raise QuantizationError(f"{where}: unknown quantizer role {role!r}")
    check_brevitas_compatible(spec, where)
    if role == "weight" and not spec.signed:
        raise QuantizationError(f"{where}: weight types must be signed, got {spec.ap_type()}")
    attributes = {
        "bit_width": spec.bits,
        "signed": spec.signed,
        "narrow_range": spec.narrow_range,
        "float_to_int_impl_type": _ROUNDING_TO_BREVITAS[spec.rounding],
        "scaling_impl_type": ScalingImplType.CONST,
        "scaling_const": brevitas_threshold(spec),
        "restrict_scaling_type": RestrictValueType.POWER_OF_TWO,
        "restrict_scaling_impl": PowerOfTwoRestrictValue,
        "int_scaling_impl": PowerOfTwoIntScaling,
        "scaling_per_output_channel": False,
        "fixed_point_type": spec,
    }
    if role == "bias":
        attributes["requires_input_scale"] = False
        attributes["requires_input_bit_width"] = False
    if role == "act":  # activation solvers initialise the constant scale from min_val/max_val
        attributes["max_val"] = attributes["scaling_const"]
        attributes["min_val"] = -attributes["scaling_const"] if spec.signed else 0.0
    name = f"FixedPoint{role.capitalize()}Quant_{spec.bits}_{spec.int_bits}_{'s' if spec.signed else 'u'}"
    return type(name, (IntQuant, _SOLVERS[role]), attributes)
