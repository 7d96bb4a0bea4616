"""``aeforge export qonnx`` and ``aeforge export onnx``: the hardware model as QONNX / edge ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aeforge.artifact import CARD_NAME, RunWriter, load_run, sha256_file, write_json_atomic
from aeforge.errors import ArtifactError
from aeforge.quantize.models.boundary import HardwareModel, hardware_model
from aeforge.stages.paths import ONNX_DIR, QONNX_DIR, QONNX_FILE


def export_qonnx_stage(run_dir: str | Path, force: bool = False) -> Path:
    """``aeforge export qonnx``: write ``RUN/qonnx/model.onnx`` (cleaned, channels-last) with its card."""
    from aeforge.quantize.export import export_qonnx

    run_dir = Path(run_dir)
    model = hardware_model(run_dir)
    with RunWriter(run_dir / QONNX_DIR, kind="qonnx", overwrite=force) as run:
        export_qonnx(model.module, model.input_shape, model.input_type, run.path(QONNX_FILE))
        run.extra["parent"] = {"run": "..", "card_sha256": sha256_file(run_dir / CARD_NAME)}
        run.extra["input_type"] = model.input_type.ap_type()
        run.extra["output_type"] = model.output_type.ap_type()
        run.extra["input_shape_nhwc"] = [*model.input_shape[1:], model.input_shape[0]]
        run.metrics["family"] = model.family
    return run_dir / QONNX_DIR / QONNX_FILE


def load_qonnx(run_dir: str | Path) -> Any:
    """The exported QONNX model of a run (``aeforge export qonnx`` must have run)."""
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(run_dir) / QONNX_DIR
    load_run(path)  # checks the card and the file hash
    return ModelWrapper(str(path / QONNX_FILE))


def export_onnx_stage(run_dir: str | Path, out: str | Path | None = None, fmt: str = "qdq", opset: int = 17,
                      batch: int | None = None, force: bool = False) -> dict[str, Any]:
    """``aeforge export onnx``: the hardware model as ONNX for TensorRT / onnxruntime (default
    ``RUN/onnx/model_<fmt>.onnx``), with a ``.json`` sidecar describing it and, for every format,
    the TensorRT explicit-quantization check (violations are reported, not fatal: ``check trt`` is).
    """
    from aeforge.edge.onnx_export import export_edge_onnx

    run_dir = Path(run_dir)
    model = hardware_model(run_dir)
    path = Path(out) if out is not None else run_dir / ONNX_DIR / f"model_{fmt}.onnx"
    if path.suffix != ".onnx":
        raise ArtifactError(f"{path}: the output file must end in .onnx")
    if path.exists() and not force:
        raise ArtifactError(f"{path}: already exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    exported = export_edge_onnx(model.module, model.input_shape, path, fmt=fmt, opset=opset, batch=batch)
    record = exported.as_dict()
    record["parent"] = {"run": str(run_dir.resolve()), "card_sha256": sha256_file(run_dir / CARD_NAME)}
    write_json_atomic(path.with_suffix(".json"), record)
    return record


def _temporary_qonnx(model: HardwareModel) -> Any:
    from aeforge.quantize.export import export_qonnx

    return export_qonnx(model.module, model.input_shape, model.input_type)


