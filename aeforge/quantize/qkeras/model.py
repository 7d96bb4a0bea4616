"""The import API: :func:`load_qkeras` and what it returns (:class:`ImportedModel`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.errors import ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.sequential import SequentialQuantModel, SequentialSpec, build_sequential, load_state
from aeforge.quantize.qkeras.econt import EcontImport, match_econt
from aeforge.quantize.qkeras.files import ordered_layers, read_keras_weights, read_model_config
from aeforge.quantize.qkeras.translate import Translation, Translator, Weights

FLOAT32_EXACT_BITS = 24
"""QKeras computes in float32: a tensor wider than this may be rounded there (aeforge is exact)."""


@dataclass(frozen=True)
class ImportedModel:
    """What :func:`load_qkeras` found.

    ``state_dict`` holds QKeras-quantized weights in torch layout, keyed ``layers.<i>.weight`` /
    ``layers.<i>.bias`` (float32 where that is exact, else float64). ``source_names`` maps
    ``input_quant`` and every spec layer name to the Keras layer(s) it came from; ``ignored``
    lists Keras layers that were skipped (Dropout, linear activations). ``input_type_source`` says
    where the input type came from: ``"quantizer"`` (the model's first ``QActivation``),
    ``"given"`` (``input_type``) or ``"default"`` (hls4ml's ``ap_fixed<16,6>``). ``postprocess``
    is the trailing softmax that runs on the host (hardware outputs the logits), ``folded_batchnorm``
    the BatchNormalization layers folded into the layer before them. ``econt`` is set when the
    model is the ECON-T encoder (otherwise ``econt_mismatch`` says why not).
    """

    spec: SequentialSpec
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source_names: dict[str, str]
    ignored: tuple[str, ...] = ()
    econt: EcontImport | None = None
    econt_mismatch: str | None = None
    input_type_source: str = "quantizer"
    postprocess: dict[str, Any] | None = None
    folded_batchnorm: tuple[dict[str, str], ...] = ()

    def build(self) -> SequentialQuantModel:
        """The Brevitas model with the imported weights loaded (float32; ``.double()`` as needed)."""
        model = build_sequential(self.spec)
        load_state(model, self.state_dict, where="imported QKeras weights")
        return model

    @property
    def input_defaulted(self) -> bool:
        return self.input_type_source == "default"

    def float32_inexact_layers(self) -> list[str]:
        """Layers whose exact output type is wider than float32's significand (QKeras may round there)."""
        return [layer.name for layer, spec in zip(self.spec.layers, self.spec.output_types(), strict=True)
                if spec.bits > FLOAT32_EXACT_BITS]

    def card(self) -> dict[str, Any]:
        """What the run card records about the import."""
        notes: list[str] = []
        if self.input_defaulted:
            notes.append(f"the model has no input quantizer: input type {self.spec.input.type.ap_type()} is hls4ml's "
                         "default (pass --input-type for another); QKeras feeds its input unquantized, so results "
                         "match for inputs on this grid")
        if self.postprocess is not None:
            notes.append(f"softmax {self.postprocess['layer']!r} runs on the host: hardware targets and predict "
                         "output the logits")
        if self.folded_batchnorm:
            notes.append("batch normalization folded as QKeras's QConv2DBatchnorm folds it (moving statistics, then "
                         "the layer's kernel/bias quantizers on the folded weights): the import equals QKeras's "
                         "folded layers, not the unfolded float batch normalization")
        inexact = self.float32_inexact_layers()
        if inexact:
            notes.append(f"layer(s) {inexact} are wider than {FLOAT32_EXACT_BITS} bits: QKeras's float32 predict may "
                         "round them where aeforge is exact")
        return {
            "input_type": {"type": self.spec.input.type.ap_type(), "source": self.input_type_source,
                           "defaulted": self.input_defaulted, "layer": self.source_names.get("input_quant")},
            "postprocess": self.postprocess,
            "ignored_layers": list(self.ignored),
            "folded_batchnorm": list(self.folded_batchnorm),
            "notes": notes,
        }

    def postprocess_outputs(self, logits: np.ndarray) -> np.ndarray:
        """The host-side post-processing (the trailing softmax) applied to hardware logits."""
        return apply_postprocess(self.postprocess, logits)


def apply_postprocess(postprocess: Mapping[str, Any] | None, logits: np.ndarray) -> np.ndarray:
    """Apply a recorded ``postprocess`` (``{"op": "softmax", "axis": -1}`` or None) to ``logits``."""
    values = np.asarray(logits, dtype=np.float64)
    if postprocess is None:
        return values
    if postprocess.get("op") != "softmax":
        raise ConfigError(f"unknown post-processing {postprocess.get('op')!r}")
    shifted = values - values.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def load_qkeras(
    model_json: str | Path | None,
    weights_h5: str | Path,
    input_type: FixedPoint | str | None = None,
) -> ImportedModel:
    """Import a QKeras model from its JSON architecture and HDF5 weights (no TensorFlow needed).

    ``model_json=None`` reads the architecture from the ``model_config`` attribute of a full-model
    ``.h5``. ``input_type`` is the type of the input port of a model whose first layer is not a
    ``QActivation(quantized_bits)`` (default: hls4ml's ``ap_fixed<16,6>``; a string without
    rounding and overflow modes, such as ``"ap_fixed<12,4>"``, rounds half to even and saturates,
    as QKeras does): QKeras then feeds its
    input unquantized, so the result matches only for data already on that grid. When the model
    does have an input quantizer, an equal ``input_type`` changes nothing and a different one
    keeps the quantizer as a layer.
    """
    weights_h5 = Path(weights_h5)
    model, source = read_model_config(Path(model_json) if model_json is not None else None, weights_h5)
    if input_type is not None and not isinstance(input_type, FixedPoint):
        try:
            parsed = FixedPoint.from_config(input_type, where="input_type")
        except QuantizationError as error:
            raise ConfigError(str(error)) from None
        if isinstance(input_type, str) and input_type.count(",") < 2:  # 'ap_fixed<12,4>': QKeras's modes
            parsed = dataclasses.replace(parsed, rounding="RND_CONV", overflow="SAT")
        input_type = parsed
    layers = ordered_layers(model, source)
    weights = read_keras_weights(weights_h5)
    translation = translate_model(layers, weights, source, str(weights_h5), input_type)
    econt, mismatch = match_econt(translation.spec, translation.state_dict)
    return ImportedModel(
        translation.spec, translation.state_dict, translation.source_names, translation.ignored, econt, mismatch,
        translation.input_type_source, translation.postprocess, tuple(translation.folded_batchnorm),
    )


def translate_model(layers: list, weights: Weights, source: str, weights_source: str,
                    input_type: FixedPoint | None) -> Translation:
    """Translate ordered Keras layers and their weights (see :class:`Translator`)."""
    return Translator(source, weights, weights_source, input_type).run(layers)
