"""Export of a multi-task split run: ``head.onnx``, ``tail_<task>.onnx`` per task, ``split.json`` naming them.

* ``head.onnx``: the shared head, exported exactly as a single-task head (QDQ, integer codes times the scale);
* ``tail_<task>.onnx`` (float32, input ``code`` ``(batch, C, H', W')``, dynamic batch):
  classification ``logits`` ``(N, K)``; detection (any ``head``: ``fcos``, ``retinanet``, ``fasterrcnn``, see
  :mod:`~.detectors`; the whole tail, Faster R-CNN's RPN and RoI head included, is one graph) the top-k
  candidates (k = 100, fewer when the tail has fewer anchor-class pairs) ``boxes`` ``(N, k, 4)`` (pixels),
  ``scores`` ``(N, k)``, ``labels`` ``(N, k)`` int64 (NMS follows on the server, with split.json's
  ``postprocess`` settings); segmentation ``mask_logits`` ``(N, K, H, W)`` (the server returns the argmax);
* ``split.json``: the single-task fields (code, input, ``tail_input_name`` ...; ``tail_file`` and
  ``tail_sha256`` name the classification tail when there is one, so single-task clients, the fast paths
  and the Triton export keep working for it) plus ``tasks``: per task its name, kind, file, sha256,
  outputs and class count.

Before publishing, ORT's head codes must equal PyTorch's exactly and every ORT tail must match PyTorch on
those codes (relative error <= 1e-4 of the outputs' magnitude; detection: the sorted scores, and boxes and
labels wherever the ranking is unambiguous).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import write_json_atomic
from aeforge.edge.split.export import _publish, _session, check_inputs, head_meta, sha256, staging_dir
from aeforge.edge.split.tasks import OUTPUT_NAMES, ExportedTail
from aeforge.errors import ArtifactError

TAIL_TOLERANCE = 1e-4
TAIL_INPUT = "code"


def tail_file(name: str) -> str:
    """The file of task ``name``'s tail."""
    return f"tail_{name}.onnx"


def export_tail(task: Any, tail: torch.nn.Module, code_shape: tuple[int, ...], path: Path, opset: int) -> None:
    """One task tail to float32 ONNX with a dynamic batch (torch's TorchScript-based exporter)."""
    module = ExportedTail(task, tail).eval()
    outputs = OUTPUT_NAMES[task.kind]
    axes = {TAIL_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, *code_shape),), str(path), input_names=[TAIL_INPUT],
                          output_names=list(outputs), dynamic_axes=axes, opset_version=opset, dynamo=False)


def _relative(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(values - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def compare_task_outputs(kind: str, ort_out: list[np.ndarray], torch_out: list[np.ndarray]) -> dict[str, float]:
    """Relative error of ORT against PyTorch outputs of one tail (see the module docstring for detection)."""
    if kind != "detection":
        return {"max_rel": _relative(ort_out[0], torch_out[0])}
    (o_boxes, o_scores, o_labels), (t_boxes, t_scores, t_labels) = ort_out, torch_out
    score_error = _relative(np.sort(o_scores, 1), np.sort(t_scores, 1))
    gaps = np.abs(np.diff(t_scores, axis=1))
    clear = np.ones_like(t_scores, dtype=bool)  # a candidate whose score differs from its neighbours' by > 1e-4
    clear[:, :-1] &= gaps > 1e-4
    clear[:, 1:] &= gaps > 1e-4
    box_error = _relative(o_boxes[clear], t_boxes[clear]) if clear.any() else 0.0
    label_mismatches = int(np.count_nonzero(o_labels[clear] != t_labels[clear]))
    return {"max_rel": max(score_error, box_error), "score_rel": score_error, "box_rel": box_error,
            "label_mismatches": label_mismatches, "compared_boxes": int(clear.sum())}


def verify_multitask(root: Path, model: Any, images: np.ndarray) -> dict[str, Any]:
    """ORT head codes == PyTorch's; each ORT tail on them against PyTorch; raises ArtifactError on a mismatch."""
    spec = model.code_spec
    head = _session(root / "head.onnx")
    values = head.run(None, {head.get_inputs()[0].name: images})[0]
    codes = np.round(values / np.float32(spec.lsb))
    with torch.no_grad():
        torch_codes = np.round(model.head(torch.from_numpy(images)).numpy() / spec.lsb)
    mismatches = int(np.count_nonzero(codes != torch_codes))
    dequantized = (codes * spec.lsb).astype(np.float32)
    result: dict[str, Any] = {"samples": len(images), "code_mismatches_vs_torch": mismatches, "tasks": {}}
    problems = [f"{mismatches} ORT codes differ from PyTorch's"] if mismatches else []
    for task in model.tasks:
        session = _session(root / tail_file(task.name))
        ort_out = session.run(list(OUTPUT_NAMES[task.kind]), {TAIL_INPUT: dequantized})
        with torch.no_grad():
            out = ExportedTail(task, model.tails[task.name]).eval()(torch.from_numpy(dequantized))
        torch_out = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        found = compare_task_outputs(task.kind, ort_out, torch_out)
        result["tasks"][task.name] = found
        if found["max_rel"] > TAIL_TOLERANCE or found.get("label_mismatches", 0):
            problems.append(f"tail {task.name}: ORT differs from PyTorch ({found})")
    if problems:
        raise ArtifactError(f"multi-task split export check failed on {len(images)} images: {'; '.join(problems)}")
    return result


def _outputs_meta(task: Any, classes: int, tail: torch.nn.Module, image_shape: tuple[int, ...]) -> dict:
    if task.kind == "classification":
        return {"logits": {"dtype": "float32", "shape": [-1, classes]}}
    if task.kind == "detection":
        k = int(tail.back.candidates)
        return {"boxes": {"dtype": "float32", "shape": [-1, k, 4]}, "scores": {"dtype": "float32", "shape": [-1, k]},
                "labels": {"dtype": "int64", "shape": [-1, k]}}
    return {"mask_logits": {"dtype": "float32", "shape": [-1, classes, *image_shape[1:]]}}


def export_multitask(run_dir: str | Path, out_dir: str | Path | None = None, opset: int = 18, check_samples: int = 32,
                     overwrite: bool = False) -> dict[str, Any]:
    """Export multi-task split run ``run_dir`` into ``out_dir`` (default ``RUN/split``); split.json plus the check."""
    from aeforge.edge.onnx_export import export_edge_onnx
    from aeforge.edge.split.multitask import _task_outputs, load_multitask_model

    run_dir = Path(run_dir)
    model = load_multitask_model(run_dir)
    spec = model.spec
    out, inside, staging = staging_dir(run_dir, out_dir, overwrite)
    try:
        head = export_edge_onnx(model.head, spec.input_shape, staging / "head.onnx", fmt="qdq", opset=opset)
        tasks = []
        for task in model.tasks:
            path = staging / tail_file(task.name)
            export_tail(task, model.tails[task.name], model.code_shape, path, opset)
            classes = _task_outputs(task, model)
            entry = {"name": task.name, "kind": task.kind, "file": path.name, "sha256": sha256(path),
                     "input_name": TAIL_INPUT, "num_classes": classes, "loss_weight": task.loss_weight,
                     "outputs": _outputs_meta(task, classes, model.tails[task.name], spec.input_shape)}
            if task.kind == "detection":
                entry["detector"] = task.head
                entry["postprocess"] = {"score_threshold": task.score_threshold, "nms_iou": task.nms_iou,
                                        "detections": task.detections}
            tasks.append(entry)
        images, source = check_inputs(run_dir, check_samples, spec.input_shape)
        check = verify_multitask(staging, model, images)
        check["inputs"] = source
        legacy = next((t for t in tasks if t["kind"] == "classification"), None)
        first = legacy or tasks[0]
        meta = {
            **head_meta(model, head),
            "tail_input_name": TAIL_INPUT,
            "tail_output_name": next(iter(first["outputs"])),
            "tail_file": first["file"],
            "legacy_task": legacy["name"] if legacy else None,
            "num_classes": first["num_classes"],
            "head_sha256": head.sha256,
            "tail_sha256": first["sha256"],
            "backbone": spec.backbone,
            "split_after": spec.split_after,
            "opset": opset,
            "feature_shape": list(spec.feature_shape),
            "head_trt_violations": len(head.trt_violations),
            "bottleneck": spec.bottleneck,
            "tasks": tasks,
        }
        write_json_atomic(staging / "split.json", meta)
        names = ("head.onnx", *(t["file"] for t in tasks), "split.json")
        _publish(staging, out, run_dir, inside, check, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**meta, "check": check, "path": str(out)}
