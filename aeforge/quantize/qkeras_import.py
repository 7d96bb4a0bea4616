"""Import a QKeras model (Keras model JSON + HDF5 weights) into aeforge, without TensorFlow.

The implementation lives in :mod:`aeforge.quantize.qkeras` (files, quantizers, translation,
ECON-T matching); this module keeps the original import path.
"""

from aeforge.quantize.qkeras import (
    DEFAULT_INPUT_TYPE,
    IGNORED_LAYERS,
    EcontImport,
    ImportedModel,
    apply_postprocess,
    load_qkeras,
    match_econt,
    read_keras_weights,
)

__all__ = [
    "DEFAULT_INPUT_TYPE",
    "IGNORED_LAYERS",
    "EcontImport",
    "ImportedModel",
    "apply_postprocess",
    "load_qkeras",
    "match_econt",
    "read_keras_weights",
]
