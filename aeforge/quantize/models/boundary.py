"""The model boundary: one protocol every model that becomes hardware implements.

A :class:`ModelFamily` knows how to load its quantized hardware module from a run directory, how
to make realistic verification inputs, and which extra input formats it accepts. The stages
(export, hls, rtl, verify, predict, bench, deploy) only ever see a :class:`HardwareModel`: the
quantized module, its channels-first input shape, its input/output
:class:`~aeforge.fixedpoint.FixedPoint` types and its family. They never branch on a family name.

Families are registered by name (:func:`register_family`); a run's card names its family
(``card["family"]``; older runs: ``train``/``demo`` runs are ``econt``, ``import`` runs
``imported``). Built-in families:

* ``econt``: the ECON-T autoencoder trained from YAML; hardware = the encoder; inputs = normalised
  synthetic HGCAL readouts; also takes ``(N, 48)`` calQ charges;
* ``imported``: a spec + state dict written by ``aeforge import qkeras`` or
  :func:`aeforge.import_module`; inputs = uniform over the input type;
* ``autoencoder``: a YAML autoencoder trained on the user's array file (``model.family:
  autoencoder``); hardware = the encoder or the whole autoencoder (plus its score); inputs = rows of
  the run's recorded verification sample;
* ``converter``: a CBNet-style converting autoencoder + light classifier (``model.family: converter``,
  :mod:`aeforge.converter`), one model; its heavy and light baselines are runs of their own inside the
  run; inputs = held-out test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, DataError
from aeforge.fixedpoint import FixedPoint


@dataclass
class HardwareModel:
    """The part of a run that becomes hardware, with its port types and its family."""

    module: Any  # a quantized torch.nn.Module in eval mode
    input_shape: tuple[int, ...]  # one sample, channels-first
    input_type: FixedPoint
    output_type: FixedPoint
    family: str  # the registered family's name (a ModelFamily is accepted too)
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        impl = self.family if isinstance(self.family, ModelFamily) else get_family(self.family)
        self.family = impl.name
        self._family = impl

    @property
    def model_family(self) -> ModelFamily:
        """The family object (how to load, feed and describe this model)."""
        return self._family

    def verification_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` realistic channels-first inputs on the input grid."""
        if n < 1:
            raise DataError(f"--n must be at least 1, got {n}")
        return self.input_type.quantize(np.asarray(self._family.make_inputs(self, n, seed), dtype=np.float64))

    def to_channels_first(self, inputs: np.ndarray, layout: str = "nhwc") -> np.ndarray:
        """Accept ``(N, H, W, C)`` / ``(N, L, C)`` (default), channels-first with ``layout="nchw"``,
        ``(N, F)``, and the family's own formats; returns channels-first values on the input grid."""
        inputs = np.asarray(inputs)
        if inputs.dtype.kind not in "iuf":
            raise DataError(f"input array has dtype {inputs.dtype}; expected numbers")
        inputs = inputs.astype(np.float64)
        if not np.all(np.isfinite(inputs)):
            raise DataError("input array contains NaN or infinite values")
        adapted = self._family.adapt_inputs(self, inputs)
        if adapted is not None:
            inputs, layout = adapted
        shape = self.input_shape
        if len(shape) == 1 or layout == "nchw":
            expected, candidate = shape, inputs.shape[1:]
        elif layout == "nhwc":
            expected, candidate = (*shape[1:], shape[0]), inputs.shape[1:]
        else:
            raise DataError(f"unknown layout {layout!r}; expected nhwc or nchw")
        if inputs.ndim < 2 or tuple(candidate) != tuple(expected):
            hint = f" or {self._family.input_hint}" if self._family.input_hint else ""
            wanted = ", ".join(map(str, expected))
            where = layout.upper() if len(shape) > 1 else "flat"
            raise DataError(f"input shape {inputs.shape} does not match the model: expected (N, {wanted}) "
                            f"{where}{hint}")
        if len(shape) > 1 and layout == "nhwc":
            inputs = np.moveaxis(inputs, -1, 1)
        return self.input_type.quantize(inputs)


class ModelFamily:
    """A kind of hardware model: how to load it from a run and how to feed it.

    Subclasses set :attr:`name`, implement :meth:`load`, and may override :meth:`make_inputs`
    (default: uniform values over the input type) and :meth:`adapt_inputs`.
    """

    name: str = ""
    input_hint: str = ""  # extra accepted input format, for error messages

    def load(self, run_dir: Path, card: Any) -> Any:
        """The quantized hardware module of the run (eval mode)."""
        raise NotImplementedError

    def make_inputs(self, model: HardwareModel, n: int, seed: int) -> np.ndarray:
        """``n`` channels-first verification inputs (quantized to the input type by the caller)."""
        rng = np.random.default_rng(seed)
        low, high = model.input_type.min_value, model.input_type.max_value
        return rng.uniform(low, high, size=(n, *model.input_shape))

    def adapt_inputs(self, model: HardwareModel, inputs: np.ndarray) -> tuple[np.ndarray, str] | None:
        """Convert a family-specific input format to ``(array, layout)``, or None to leave it."""
        return None


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add (or replace) a family under its name; returns it."""
    if not family.name:
        raise ValueError("a model family needs a name")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The registered family ``name`` (built-in families are registered on first use)."""
    from aeforge.quantize.models import families  # noqa: F401  (registers the built-in families)

    if name not in _FAMILIES:
        raise ArtifactError(f"unknown model family {name!r}; registered: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_names() -> list[str]:
    from aeforge.quantize.models import families  # noqa: F401

    return sorted(_FAMILIES)


def run_family(card: Any) -> str:
    """The family name a run card declares (older cards: by run kind)."""
    name = card.data.get("family")
    if isinstance(name, str) and name:
        return name
    if card.kind in ("train", "demo"):
        return "econt"
    if card.kind == "import":
        return "imported"
    raise ArtifactError(f"{card.path}: a {card.kind!r} run holds no trained model (use a train, demo or import run)")


def hardware_model(run_dir: str | Path) -> HardwareModel:
    """Load the quantized hardware model of a trained or imported run."""
    from aeforge.artifact import load_run

    run_dir = Path(run_dir)
    card = load_run(run_dir)
    family = get_family(run_family(card))
    module = family.load(run_dir, card)
    if getattr(module, "input_type", None) is None or getattr(module, "output_type", None) is None:
        raise ArtifactError(f"{run_dir}: the model is not quantized; hardware export needs the QAT model")
    return HardwareModel(module.eval(), tuple(module.input_shape), module.input_type, module.output_type, family,
                         run_dir)
