"""Pipeline stages on run directories: the public Python API behind the CLI verbs.

A trained (``train``/``demo``), imported (``import qkeras``, :func:`aeforge.import_module`) run
holds a model; the stages add artifacts beside it without touching what is there::

    RUN/card.json, model ...               the trained or imported run (never modified)
    RUN/qonnx/model.onnx + card.json       export_qonnx_stage    (aeforge export qonnx RUN)
    RUN/onnx/model_<fmt>.onnx + .json      export_onnx_stage     (aeforge export onnx RUN)
    RUN/hls/<project> + card.json          hls_stage             (aeforge hls RUN)
    RUN/rtl/... + card.json                rtl_stage             (aeforge rtl RUN)
                                           verify_stage, predict (aeforge verify / predict RUN)

Every stage reaches the model through the model boundary
(:func:`aeforge.quantize.models.boundary.hardware_model`): any registered family works.
"""

from aeforge.quantize.models.boundary import HardwareModel, hardware_model
from aeforge.stages.export import export_onnx_stage, export_qonnx_stage, load_qonnx
from aeforge.stages.hls import HlsOptions, hls_project_dir, hls_stage
from aeforge.stages.importing import import_qkeras_stage
from aeforge.stages.paths import (
    HLS_DIR,
    HLS_PROJECT,
    IMPORT_SPEC,
    IMPORT_WEIGHTS,
    ONNX_DIR,
    QONNX_DIR,
    QONNX_FILE,
    RTL_DIR,
    TARGETS,
)
from aeforge.stages.rtl import rtl_project, rtl_stage
from aeforge.stages.verify import format_verification, predict, to_channels_first, verification_inputs, verify_stage

__all__ = [
    "HLS_DIR", "HLS_PROJECT", "IMPORT_SPEC", "IMPORT_WEIGHTS", "ONNX_DIR", "QONNX_DIR", "QONNX_FILE", "RTL_DIR",
    "TARGETS", "HardwareModel", "HlsOptions", "export_onnx_stage", "export_qonnx_stage", "format_verification",
    "hardware_model", "hls_project_dir", "hls_stage", "import_qkeras_stage", "load_qonnx", "predict", "rtl_project",
    "rtl_stage", "to_channels_first", "verification_inputs", "verify_stage",
]
