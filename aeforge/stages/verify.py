"""``aeforge predict`` and ``aeforge verify``: every target against the Brevitas model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, DataError, QuantizationError
from aeforge.quantize.models.boundary import HardwareModel, hardware_model
from aeforge.stages.export import _temporary_qonnx, load_qonnx
from aeforge.stages.hls import hls_project_dir
from aeforge.stages.paths import QONNX_DIR, TARGETS
from aeforge.stages.rtl import rtl_project


def verification_inputs(model: HardwareModel, n: int, seed: int = 0) -> np.ndarray:
    """``n`` realistic channels-first inputs on the input grid (the model family makes them)."""
    return model.verification_inputs(n, seed)


def to_channels_first(model: HardwareModel, inputs: np.ndarray, layout: str) -> np.ndarray:
    """User inputs (NHWC by default, NCHW, flat, or a family's own format) as channels-first on the grid."""
    return model.to_channels_first(inputs, layout)


def predict(
    run_dir: str | Path, inputs_nchw: np.ndarray, target: str, model: HardwareModel | None = None
) -> np.ndarray:
    """Outputs (float values of the output type, ``(N, outputs)``) of one target on channels-first inputs."""
    from aeforge.verification import nchw_to_nhwc, predict_brevitas, predict_hls_csim, predict_qonnx

    model = model or hardware_model(run_dir)
    if target == "brevitas":
        outputs = predict_brevitas(model.module, inputs_nchw, model.input_type)
    elif target == "qonnx":
        qonnx_model = load_qonnx(run_dir) if (Path(run_dir) / QONNX_DIR).is_dir() else _temporary_qonnx(model)
        from aeforge.verification import float32_exact

        outputs = _channels_first(model, predict_qonnx(qonnx_model, nchw_to_nhwc(inputs_nchw), model.input_type,
                                                       float64=not float32_exact(model.module)))
    elif target == "hls":
        project = hls_project_dir(run_dir)
        if project is None:
            raise ArtifactError(f"{run_dir}: no HLS project; run 'aeforge hls {run_dir}' first")
        outputs = _channels_first(model, predict_hls_csim(project, nchw_to_nhwc(inputs_nchw), model.input_type))
    elif target == "rtl":
        from aeforge.hls.rtl import rtl_predict

        rtl = rtl_project(run_dir)
        if rtl is None:
            raise ArtifactError(f"{run_dir}: no RTL project; run 'aeforge rtl {run_dir}' first")
        outputs = rtl_predict(rtl, inputs_nchw)
    elif target == "ort":
        outputs = _predict_ort(model, inputs_nchw)
    else:
        raise DataError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return np.asarray(outputs, dtype=np.float64).reshape(len(inputs_nchw), -1)


def _channels_first(model: HardwareModel, outputs: np.ndarray) -> np.ndarray:
    """Channels-last outputs of the QONNX graph / hls4ml (images, sequences) in the torch model's order."""
    shape = tuple(getattr(model.module, "output_shape", ()) or ())
    outputs = np.asarray(outputs)
    if len(shape) < 2:
        return outputs
    return np.moveaxis(outputs.reshape(len(outputs), *shape[1:], shape[0]), -1, 1)


def _predict_ort(model: HardwareModel, inputs_nchw: np.ndarray) -> np.ndarray:
    """onnxruntime (CPU, exact session options) on the edge QDQ export of the hardware model.

    Refused (:class:`QuantizationError`) when the export cannot be exact in onnxruntime
    (:func:`~aeforge.edge.onnx_export.ort_inexact_reason`).
    """
    import tempfile

    from aeforge.edge.onnx_export import export_edge_onnx, ort_inexact_reason
    from aeforge.edge.runners.ort_runner import ort_predict

    reason = ort_inexact_reason(model.module)
    if reason is not None:
        raise QuantizationError(f"ort: not bit-exact in onnxruntime: {reason}")

    with tempfile.TemporaryDirectory(prefix="aeforge_ort_") as scratch:
        exported = export_edge_onnx(model.module, model.input_shape, Path(scratch) / "model.onnx", fmt="qdq")
        return ort_predict(exported.path, model.input_type.quantize(np.asarray(inputs_nchw, dtype=np.float64)))


#: Targets that are the reference model itself or its export run by a reference executor; a
#: verification where only these ran says nothing about hardware or an edge runtime.
REFERENCE_TARGETS = ("brevitas", "qonnx")


def verify_stage(run_dir: str | Path, n: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """``aeforge verify``: every available target against Brevitas on the same ``n`` vectors.

    QONNX execution always runs (exporting in memory when ``RUN/qonnx`` is absent); HLS C-sim runs
    when ``aeforge hls`` has built a project, RTL simulation when ``aeforge rtl`` has; onnxruntime
    (``ort``) runs the edge QDQ export with exact session options whenever onnxruntime is installed.
    Brevitas is the reference, so it has no row of its own. Returns ``{"n", "reference": "brevitas",
    "targets": {name: Fidelity dict}, "skipped": {name: reason}, "bit_exact", "hardware_targets_run"}``
    where the last lists the targets that ran beyond the reference and its QONNX export.
    """
    from aeforge.verification import compare

    model = hardware_model(run_dir)
    inputs = model.verification_inputs(n, seed)
    reference = predict(run_dir, inputs, "brevitas", model)
    results: dict[str, Any] = {"n": int(n), "reference": "brevitas", "input_type": model.input_type.ap_type(),
                               "output_type": model.output_type.ap_type(), "targets": {}, "skipped": {}}
    results["targets"]["qonnx"] = compare(
        reference, predict(run_dir, inputs, "qonnx", model), model.output_type, "qonnx").as_dict()
    if hls_project_dir(run_dir) is None:
        results["skipped"]["hls"] = f"no HLS project (run 'aeforge hls {run_dir}')"
    else:
        results["targets"]["hls"] = compare(
            reference, predict(run_dir, inputs, "hls", model), model.output_type, "hls").as_dict()
    if rtl_project(run_dir) is None:
        results["skipped"]["rtl"] = f"no RTL project (run 'aeforge rtl {run_dir}')"
    else:
        results["targets"]["rtl"] = compare(
            reference, predict(run_dir, inputs, "rtl", model), model.output_type, "rtl").as_dict()
    from aeforge.edge.onnx_export import ort_inexact_reason
    from aeforge.edge.runners.ort_runner import provider_unavailable_reason

    reason = provider_unavailable_reason("cpu")
    if reason is None and ort_inexact_reason(model.module) is not None:
        reason = f"not bit-exact in onnxruntime: {ort_inexact_reason(model.module)}"
    if reason is not None:
        results["skipped"]["ort"] = reason
    else:
        results["targets"]["ort"] = compare(
            reference, predict(run_dir, inputs, "ort", model), model.output_type, "ort").as_dict()
    results["bit_exact"] = all(t["exact"] == t["n"] for t in results["targets"].values())
    results["hardware_targets_run"] = [name for name in results["targets"] if name not in REFERENCE_TARGETS]
    return results


def format_verification(results: dict[str, Any]) -> str:
    """The verification matrix as an aligned text table."""
    lines = [f"reference: {results.get('reference', 'brevitas')} ({results['n']} vectors)",
             f"{'target':<10} {'n':>7} {'exact':>7} {'max |err| LSB':>14}  first mismatch"]
    for name, t in results["targets"].items():
        first = "-" if t["first_mismatch"] is None else str(t["first_mismatch"])
        lines.append(f"{name:<10} {t['n']:>7} {t['exact']:>7} {t['max_lsb']:>14g}  {first}")
    for name, reason in results["skipped"].items():
        lines.append(f"{name:<10} {'skipped':>7}  {reason}")
    lines.append("bit-exact" if results["bit_exact"] else "NOT bit-exact")
    return "\n".join(lines)


def input_grid_report(model: HardwareModel, raw: np.ndarray) -> dict[str, Any]:
    """How :meth:`HardwareModel.to_channels_first` will coerce user inputs onto the input type.

    Counts the given values outside the type's range (saturated) and the others not on its grid
    (rounded). Layouts only move values (and pad with zeros, which are on the grid), so counting
    on the array as given equals comparing it with the quantized channels-first one.
    """
    given = np.asarray(raw)
    input_type = model.input_type
    if given.dtype.kind not in "iuf" or given.size == 0:
        return {"compared": False, "reason": f"inputs of dtype {given.dtype} and size {given.size}"}
    given = given.astype(np.float64).reshape(-1)
    low, high = float(input_type.min_value), float(input_type.max_value)
    finite = np.isfinite(given)
    saturated = finite & ((given < low) | (given > high))
    in_range = finite & ~saturated
    off_grid = np.zeros_like(in_range)
    off_grid[in_range] = ~np.asarray(input_type.is_representable(given[in_range]), dtype=bool)
    return {
        "compared": True, "n_values": int(given.size), "type": input_type.ap_type(), "range": [low, high],
        "off_grid": int(np.count_nonzero(off_grid)), "saturated": int(np.count_nonzero(saturated)),
        "non_finite": int(np.count_nonzero(~finite)),
        "given_min": float(np.min(given[finite])) if finite.any() else None,
        "given_max": float(np.max(given[finite])) if finite.any() else None,
    }


def input_grid_warnings(report: dict[str, Any]) -> list[str]:
    """Human warnings for :func:`input_grid_report` (empty when nothing was coerced)."""
    if not report.get("compared"):
        return []
    warnings = []
    low, high = report["range"]
    if report["off_grid"]:
        warnings.append(f"{report['off_grid']} of {report['n_values']} input values are off the {report['type']} "
                        "grid and were rounded to it")
    if report["saturated"]:
        warnings.append(f"{report['saturated']} of {report['n_values']} input values lie outside the "
                        f"{report['type']} range [{low:g}, {high:g}] (given min {report['given_min']:g}, max "
                        f"{report['given_max']:g}) and were saturated")
    if report["non_finite"]:
        warnings.append(f"{report['non_finite']} input values are NaN or infinite")
    return warnings
