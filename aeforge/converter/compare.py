"""Converter + light against its baselines (heavy, light alone): export, accuracy and benchmarks.

A converter run lists its baseline runs in ``card["baselines"]`` (role -> sub-directory). Each is an
ordinary run (family ``converter``), so the same export and the same ``aeforge bench`` runner apply
to all three; :func:`compare_with_baselines` benches the baselines with the settings of the run's
own benchmark and puts accuracy, latency and energy side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import confined_path, load_run
from aeforge.errors import ArtifactError

PIPELINE_ROLE = "converter_light"
TEST_LABELS = "verification_labels.npy"


def baseline_runs(run_dir: str | Path) -> dict[str, Path]:
    """Role -> baseline run directory of a run (empty for runs without baselines)."""
    run_dir = Path(run_dir)
    card = load_run(run_dir, verify=False)
    baselines = card.data.get("baselines") or {}
    if not isinstance(baselines, dict):
        raise ArtifactError(f"{run_dir}: card.json baselines must be a mapping of role to sub-directory")
    out = {}
    for role, relative in baselines.items():
        path = confined_path(run_dir, str(relative), "baseline run")
        if not (path / "card.json").is_file():
            raise ArtifactError(f"{path}: baseline run {role!r} listed in {run_dir / 'card.json'} is missing")
        out[str(role)] = path
    return out


def run_accuracy(run_dir: str | Path) -> float | None:
    """Test accuracy recorded in a converter run's card (pipeline) or a baseline's card."""
    metrics = load_run(run_dir, verify=False).metrics
    value = metrics.get("accuracy_qat", {}).get(PIPELINE_ROLE) if "accuracy_qat" in metrics else metrics.get(
        "accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def ort_accuracy(onnx_path: str | Path, run_dir: str | Path, threads: int | None = 1) -> dict[str, Any]:
    """Top-1 accuracy of an exported classifier under onnxruntime on the run's recorded test images."""
    from aeforge.edge.runners.ort_runner import ort_predict
    from aeforge.quantize.models.families import VERIFICATION_SAMPLE

    run_dir = Path(run_dir)
    images = np.load(run_dir / VERIFICATION_SAMPLE, allow_pickle=False)
    labels = np.load(run_dir / TEST_LABELS, allow_pickle=False)
    if len(images) != len(labels):
        raise ArtifactError(f"{run_dir}: {len(images)} test images but {len(labels)} labels")
    logits = ort_predict(onnx_path, images.astype(np.float32), threads=threads)
    return {"accuracy": float((logits.argmax(axis=1) == labels).mean()), "n": len(labels), "logits": logits}


def export_with_baselines(run_dir: str | Path, opset: int = 17, force: bool = False) -> dict[str, Any]:
    """QDQ ONNX of the pipeline and each baseline (``<run>/onnx/model_qdq.onnx``), checked against Brevitas.

    Per role: the ONNX path, TensorRT rule findings (errors/notes), onnxruntime accuracy on the test
    images, and whether onnxruntime equals the Brevitas model on them (``max_abs_err``, ``exact``).
    """
    from aeforge.edge.trt_rules import TrtViolation, split_severities
    from aeforge.quantize.models.boundary import hardware_model
    from aeforge.stages import export_onnx_stage
    from aeforge.verification import predict_brevitas

    run_dir = Path(run_dir)
    runs = {PIPELINE_ROLE: run_dir, **baseline_runs(run_dir)}
    out: dict[str, Any] = {}
    for role, path in runs.items():
        record = export_onnx_stage(path, fmt="qdq", opset=opset, force=force)
        onnx_path = Path(record["path"])
        measured = ort_accuracy(onnx_path, path)
        model = hardware_model(path)
        images = np.load(path / "verification_inputs.npy", allow_pickle=False)
        expected = predict_brevitas(model.module, images, model.input_type)
        error = float(np.max(np.abs(measured["logits"] - expected)))
        errors, notes = split_severities([TrtViolation(**v) for v in record["trt_violations"]], False)
        out[role] = {"onnx": str(onnx_path), "sha256": record["sha256"], "accuracy_ort": measured["accuracy"],
                     "accuracy_card": run_accuracy(path), "n": measured["n"], "max_abs_err": error,
                     "exact": error == 0.0, "trt_errors": len(errors), "trt_notes": len(notes)}
    return out


def compare_with_baselines(run_dir: str | Path, result: dict[str, Any], **bench_options: Any) -> dict[str, Any]:
    """Bench each baseline like ``result`` (same runner, scenario, batch, threads, meter) and compare.

    ``bench_options`` go to :func:`aeforge.benchmarks.bench.bench_stage` (durations, energy options).
    Returns ``{"baselines": {role: bench result}, "comparison": {role: row}}``; a row holds accuracy
    (test split, from the card), p50/p90/p99 latency, energy per inference (None unless measured,
    with the reason) and latency/accuracy relative to the heavy classifier.
    """
    from aeforge.benchmarks.bench import bench_stage

    run_dir = Path(run_dir)
    baselines = {}
    for role, path in baseline_runs(run_dir).items():
        baselines[role] = bench_stage(path, runner=result["runner"], scenario=result["scenario"],
                                      batch_size=result["batch_size"], meter=result["meter"], threads=result["threads"],
                                      **bench_options)
    rows = {PIPELINE_ROLE: _row(run_dir, result)}
    rows.update({role: _row(baseline_runs(run_dir)[role], bench) for role, bench in baselines.items()})
    heavy = rows.get("heavy")
    if heavy is not None:
        for row in rows.values():
            row["speedup_vs_heavy_p50"] = (heavy["p50_s"] / row["p50_s"] if heavy["p50_s"] and row["p50_s"]
                                           else None)
            row["accuracy_delta_vs_heavy_points"] = (
                round(100 * (row["accuracy"] - heavy["accuracy"]), 3)
                if row["accuracy"] is not None and heavy["accuracy"] is not None else None)
    return {"baselines": baselines, "comparison": rows}


def _row(run_dir: Path, bench: dict[str, Any]) -> dict[str, Any]:
    latency = bench.get("latency", {})
    energy = bench.get("energy_j_per_inference")
    return {"run": str(run_dir), "accuracy": run_accuracy(run_dir), "valid": bench["valid"],
            "p50_s": bench["p50_s"], "p90_s": latency.get("p90_s"), "p99_s": bench["p99_s"],
            "energy_j_per_inference": energy,
            "energy_status": "measured" if energy is not None else
            f"{bench['energy_status']}: " + "; ".join(bench.get("energy", {}).get("invalid_reasons", []))}


def format_comparison(comparison: dict[str, Any]) -> str:
    """A text table of :func:`compare_with_baselines`' rows."""
    lines = [f"{'model':<16} {'accuracy':>9} {'p50 us':>9} {'p90 us':>9} {'vs heavy':>9}  energy/inference"]
    for role, row in comparison.items():
        accuracy = f"{100 * row['accuracy']:.2f}%" if row["accuracy"] is not None else "n/a"
        p50 = f"{row['p50_s'] * 1e6:.1f}" if row["p50_s"] else "invalid"
        p90 = f"{row['p90_s'] * 1e6:.1f}" if row["p90_s"] else "-"
        speed = f"{row['speedup_vs_heavy_p50']:.2f}x" if row.get("speedup_vs_heavy_p50") else "-"
        energy = (f"{row['energy_j_per_inference']:.4g} J" if row["energy_j_per_inference"] is not None
                  else f"not measured ({row['energy_status']})")
        lines.append(f"{role:<16} {accuracy:>9} {p50:>9} {p90:>9} {speed:>9}  {energy}")
    return "\n".join(lines)
