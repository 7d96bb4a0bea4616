"""Serving a multi-task split export: every task's tail behind one KServe v2 model, fed by one code.

:class:`MultiTaskTailModel` holds an ONNX Runtime session per ``tail_<task>.onnx``; :class:`MultiTaskServicer`
(used by :class:`~.serve.TailServer` for a split.json with ``tasks``) decodes the request's code once (same
inputs, checks and errors as the single-task server) and runs the tails of the tasks whose outputs the
request names. Outputs (:func:`served_outputs`), per task ``NAME``:

* classification: ``NAME_logits`` FP32 ``[N, K]``;
* detection: ``NAME_boxes`` FP32 ``[N, D, 4]`` (x1, y1, x2, y2 pixels), ``NAME_scores`` FP32 ``[N, D]`` and
  ``NAME_labels`` INT32 ``[N, D]``, after score threshold and per-class NMS (split.json ``postprocess``), D =
  ``detections`` a request, padded with score 0 and label -1;
* segmentation: ``NAME_masks`` INT32 ``[N, H, W]`` (per-pixel class, 0 background).

A request naming no output gets every task's. ``logits`` (the single-task output) is the classification
task's, so single-task clients keep working. The TCP and ZeroMQ fast paths host the same model
(:func:`fast_path_model`): an INFER frame gets the classification task's logits, an INFER_TASKS frame the
outputs of the tasks it names (:mod:`~.task_wire`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aeforge.edge.split.codec import SplitArtifact
from aeforge.edge.split.serve import (
    DEFAULT_MAX_BATCH,
    OUTPUT_NAME,
    KServeTailServicer,
    TailModel,
    _invalid,
    _positive,
)
from aeforge.edge.split.task_outputs import mask_labels, postprocess_detections
from aeforge.errors import ArtifactError, ConfigError, DataError

TAIL_OUTPUTS: dict[str, tuple[str, ...]] = {
    "classification": ("logits",), "detection": ("boxes", "scores", "labels"), "segmentation": ("mask_logits",),
}
SERVED: dict[str, tuple[tuple[str, str], ...]] = {
    "classification": (("logits", "FP32"),),
    "detection": (("boxes", "FP32"), ("scores", "FP32"), ("labels", "INT32")),
    "segmentation": (("masks", "INT32"),),
}


def served_outputs(task: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(output name, KServe datatype)]`` the server answers for one split.json task entry."""
    return [(f"{task['name']}_{name}", datatype) for name, datatype in SERVED[task["kind"]]]


def output_shape(task: dict[str, Any], artifact: SplitArtifact) -> dict[str, list[int]]:
    """Per-sample shapes (after the batch) of a task's served outputs."""
    name, kind = task["name"], task["kind"]
    if kind == "classification":
        return {f"{name}_logits": [int(task["num_classes"])]}
    if kind == "detection":
        count = int(task.get("postprocess", {}).get("detections", 20))
        return {f"{name}_boxes": [count, 4], f"{name}_scores": [count], f"{name}_labels": [count]}
    return {f"{name}_masks": [int(d) for d in artifact.input_shape[2:]]}


class MultiTaskTailModel:
    """Every task tail of a multi-task export on ONNX Runtime (CPU); thread-safe ``infer_tasks``."""

    def __init__(self, artifact: SplitArtifact, ort_threads: int | None = 1,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        import onnxruntime as ort

        from aeforge.edge.onnx_export import exact_session_options

        if not artifact.tasks:
            raise ConfigError(f"{artifact.root}: not a multi-task export (split.json has no tasks)")
        self.artifact = artifact
        self.max_batch = _positive("max_batch", max_batch)
        self.fixed_batch = None
        self._sessions: dict[str, Any] = {}
        for task in artifact.tasks:
            path = artifact.verify_task(task["name"])
            session = ort.InferenceSession(str(path), exact_session_options(ort_threads),
                                           providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            if names != [artifact.tail_input_name]:
                raise ArtifactError(f"{path}: expected one input {artifact.tail_input_name!r}, found {names}")
            missing = set(TAIL_OUTPUTS[task["kind"]]) - {o.name for o in session.get_outputs()}
            if missing:
                raise ArtifactError(f"{path}: outputs {sorted(missing)} missing for a {task['kind']} tail")
            self._sessions[task["name"]] = session

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample code shape (C, H, W)."""
        return self.artifact.code.shape

    def _check(self, values: np.ndarray) -> None:
        if values.dtype != np.float32 or values.shape[1:] != self.input_shape:
            raise DataError(f"tail input: expected float32 (N, {', '.join(map(str, self.input_shape))}), "
                            f"got {values.dtype} {values.shape}")
        if not 1 <= values.shape[0] <= self.max_batch:
            raise DataError(f"batch: {values.shape[0]} samples, the server accepts 1..{self.max_batch}")

    def infer(self, values: np.ndarray) -> np.ndarray:
        """Logits of the classification task (the single-task output); DataError when there is none."""
        if self.artifact.legacy_task is None:
            raise DataError(f"outputs: {OUTPUT_NAME!r} is the classification task's, and this export has none "
                            f"(tasks {', '.join(self.artifact.task_names)})")
        return self.infer_tasks(values, [self.artifact.legacy_task])[self.artifact.legacy_task]["logits"]

    def infer_tasks(self, values: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """``{task: {output: array}}`` of the served outputs (see the module docstring) of tasks ``names``."""
        self._check(values)
        results: dict[str, dict[str, np.ndarray]] = {}
        for name in names:
            task = self.artifact.task(name)
            kind = task["kind"]
            outputs = self._sessions[name].run(list(TAIL_OUTPUTS[kind]), {self.artifact.tail_input_name: values})
            if kind == "classification":
                results[name] = {"logits": np.asarray(outputs[0], dtype=np.float32)}
            elif kind == "detection":
                post = task.get("postprocess", {})
                boxes, scores, labels = postprocess_detections(
                    outputs[0], outputs[1], outputs[2], float(post.get("score_threshold", 0.05)),
                    float(post.get("nms_iou", 0.5)), int(post.get("detections", 20)))
                results[name] = {"boxes": boxes, "scores": scores, "labels": labels}
            else:
                results[name] = {"masks": mask_labels(outputs[0])}
        return results

    def close(self) -> None:
        """Nothing to release (ORT sessions are freed with the object)."""


class MultiTaskServicer(KServeTailServicer):
    """KServe v2 for a multi-task export: outputs ``<task>_<output>`` (and ``logits``, the classification task's)."""

    def _outputs(self) -> dict[str, tuple[str, str]]:
        """Every output name -> (task, KServe datatype)."""
        found: dict[str, tuple[str, str]] = {}
        for task in self.model.artifact.tasks:
            for name, datatype in served_outputs(task):
                found[name] = (task["name"], datatype)
        if self.model.artifact.legacy_task is not None:
            found[OUTPUT_NAME] = (self.model.artifact.legacy_task, "FP32")
        return found

    def _model_metadata(self, request: Any) -> Any:
        from aeforge.edge.split.serve import MODEL_VERSION, PACKED_INPUT, service_pb2

        self._check_model(request.name, request.version)
        artifact = self.model.artifact
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        outputs = []
        for task in artifact.tasks:
            shapes = output_shape(task, artifact)
            outputs += [tensor(name=name, datatype=datatype, shape=[-1, *shapes[name]])
                        for name, datatype in served_outputs(task)]
        return service_pb2.ModelMetadataResponse(
            name=self.model_name, versions=[MODEL_VERSION], platform="onnxruntime_onnx",
            inputs=[tensor(name=artifact.tail_input_name, datatype="FP32", shape=[-1, *artifact.code.shape]),
                    tensor(name=PACKED_INPUT, datatype="BYTES", shape=[-1])],
            outputs=outputs,
        )

    def _model_config(self, request: Any) -> Any:
        from aeforge.edge.split.serve import _RequestError

        self._check_model(request.name, request.version)
        raise _RequestError("UNIMPLEMENTED", "ModelConfig: a multi-task export has no single Triton config "
                                             "(aeforge export triton writes one model per tail and an ensemble)")

    def _infer(self, request: Any) -> Any:
        values = self._request_values(request)
        known = self._outputs()
        requested = [output.name for output in request.outputs] or [name for name in known if name != OUTPUT_NAME]
        for name in requested:
            if name not in known:
                raise _invalid(f"outputs: unknown output {name!r}; this multi-task model has {', '.join(known)}")
        tasks = list(dict.fromkeys(known[name][0] for name in requested))  # each task's tail runs once
        results = self.model.infer_tasks(values, tasks)
        answers = []
        for name in requested:
            task, datatype = known[name]
            key = "logits" if name == OUTPUT_NAME else name[len(task) + 1:]
            answers.append((name, datatype, results[task][key]))
        return self._response(request, answers)


def fast_path_model(artifact: SplitArtifact, backend: str = "ort", ort_threads: int | None = 1,
                    max_batch: int = DEFAULT_MAX_BATCH) -> TailModel | MultiTaskTailModel:
    """The model a TCP / ZeroMQ fast-path server hosts: every task's tail for a multi-task export (ort only),
    else the single tail (:class:`~.serve.TailModel`)."""
    if not artifact.tasks:
        return TailModel(artifact, backend, ort_threads, max_batch)
    if backend != "ort":
        raise ConfigError(f"backend: a multi-task export is served on ort only, got {backend!r}")
    return MultiTaskTailModel(artifact, ort_threads, max_batch)
