"""``aeforge export triton``: the split tail as a Triton Inference Server model repository.

::

    OUT/<model_name>/config.pbtxt        platform "onnxruntime_onnx", I/O names, types and dims from
                                         tail.onnx, dynamic batching, graph optimizations off
    OUT/<model_name>/1/model.onnx        tail.onnx (sha256 checked against split.json)

A multi-task export (split.json ``tasks``) gets ``OUT/<model_name>_<task>/`` per task tail as above, and
``OUT/<model_name>/config.pbtxt``, an ensemble that feeds the FP32 code to every tail and outputs
``<task>_<output>`` (raw tail outputs: detection candidates before NMS, mask logits; NMS and the mask argmax
are the aeforge server's).

A stock Triton serves it with the FP32 dequantized code as input (the packed-code input is an
aeforge server extension, see :mod:`aeforge.edge.split.serve`). When the tail's batch dimension is
fixed the config uses ``max_batch_size: 0`` and full dims, without dynamic batching. The model name
must be a plain directory name (:func:`check_model_name`); tensor names are escaped as protobuf text
strings; ``config.pbtxt`` and ``model.onnx`` are written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aeforge.edge.split.codec import SplitArtifact, load_split_artifact
from aeforge.errors import ArtifactError, ConfigError

ONNX_TO_TRITON = {
    1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
    7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32",
    13: "TYPE_UINT64", 16: "TYPE_BF16",
}
"""ONNX ``TensorProto`` element types -> Triton ``DataType`` names."""


def check_model_name(name: Any) -> str:
    """A Triton model name: ASCII letters, digits, ``_``, ``-``, ``.``; no leading ``.`` and no ``..``.

    It names a directory of the model repository, so path separators and ``..`` are refused (ConfigError).
    """
    if (not isinstance(name, str) or not name or name.startswith(".") or ".." in name
            or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in name)):
        raise ConfigError(f"model_name: {name!r} must be ASCII letters, digits, '_', '-' or '.', not start with "
                          "'.' and not contain '..' or a path separator (it names a model repository directory)")
    return name


def pbtxt_string(text: str) -> str:
    """``text`` as a double-quoted protobuf text-format string (quotes, backslashes, control bytes escaped)."""
    out = []
    for byte in text.encode():
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _tensors(artifact: SplitArtifact, task: str | None = None) -> tuple[list[tuple[str, str, list[int]]],
                                                                       list[tuple[str, str, list[int]]]]:
    """(name, Triton type, dims with -1 for dynamic) of the tail's (or task ``task``'s tail's) inputs and outputs."""
    import onnx

    path = artifact.verify_task(task) if task is not None else artifact.verify("tail")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError / ValueError variants
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from None
    initializers = {i.name for i in graph.initializer}

    def describe(value: Any) -> tuple[str, str, list[int]]:
        tensor = value.type.tensor_type
        if tensor.elem_type not in ONNX_TO_TRITON:
            raise ArtifactError(f"{path}: tensor {value.name!r} has ONNX type {tensor.elem_type} without a Triton type")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]
        return value.name, ONNX_TO_TRITON[tensor.elem_type], dims

    inputs = [describe(v) for v in graph.input if v.name not in initializers]
    outputs = [describe(v) for v in graph.output]
    return inputs, outputs


def config_pbtxt(
    artifact: SplitArtifact, model_name: str = "aeforge_tail", max_batch_size: int = 64, instances: int = 1,
    max_queue_delay_us: int = 100, exact: bool = True, task: str | None = None,
) -> str:
    """The text-format ``ModelConfig`` of the tail, or of task ``task``'s tail (see the module docstring)."""
    check_model_name(model_name)
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ConfigError(f"max_batch_size: must be an integer >= 0, got {max_batch_size!r}")
    if instances < 1:
        raise ConfigError(f"instances: must be >= 1, got {instances}")
    inputs, outputs = _tensors(artifact, task)
    batched = max_batch_size > 0 and all(dims and dims[0] == -1 for _, _, dims in inputs + outputs)
    lines = [f"name: {pbtxt_string(model_name)}", 'platform: "onnxruntime_onnx"',
             f"max_batch_size: {max_batch_size if batched else 0}"]

    def block(key: str, tensors: list[tuple[str, str, list[int]]]) -> None:
        lines.append(f"{key} [")
        for index, (name, data_type, dims) in enumerate(tensors):
            shown = dims[1:] if batched else dims
            lines.extend(["  {", f"    name: {pbtxt_string(name)}", f"    data_type: {data_type}",
                      f"    dims: [ {', '.join(map(str, shown))} ]", "  }" + ("," if index < len(tensors) - 1 else "")])
        lines.append("]")

    block("input", inputs)
    block("output", outputs)
    if batched:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}", "}"]
    lines += ["instance_group [", "  {", f"    count: {instances}", "    kind: KIND_AUTO", "  }", "]",
              "version_policy: { latest: { num_versions: 1 } }"]
    if exact:  # Triton's onnxruntime backend: level -1 = ORT_DISABLE_ALL (no QDQ refusion, as aeforge's ORT runs)
        lines += ["optimization { graph { level: -1 } }"]
    return "\n".join(lines) + "\n"


def model_config_proto(artifact: SplitArtifact, model_name: str = "aeforge_tail", max_batch_size: int = 64) -> Any:
    """The config as tritonclient's ``model_config_pb2.ModelConfig`` (None when tritonclient is absent)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    return text_format.Parse(config_pbtxt(artifact, model_name, max_batch_size), model_config_pb2.ModelConfig())


def write_triton_repository(
    artifact_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], model_name: str = "aeforge_tail",
    max_batch_size: int = 64, instances: int = 1, max_queue_delay_us: int = 100,
) -> Path:
    """Write ``out_dir/<model_name>/{config.pbtxt, 1/model.onnx}``; returns the model directory.

    The pbtxt is parsed back into tritonclient's ``ModelConfig`` when tritonclient is installed.
    """
    check_model_name(model_name)
    artifact = load_split_artifact(artifact_dir)
    if artifact.tasks:  # multi-task: a model per tail and an ensemble fanning the code out to all of them
        for task in artifact.task_names:
            text = config_pbtxt(artifact, f"{model_name}_{task}", max_batch_size, instances, max_queue_delay_us,
                                task=task)
            _write_model(Path(out_dir) / f"{model_name}_{task}", text, artifact.verify_task(task))
        return _write_ensemble(artifact, Path(out_dir), model_name, max_batch_size)
    text = config_pbtxt(artifact, model_name, max_batch_size, instances, max_queue_delay_us)
    model_dir = Path(out_dir) / model_name
    _write_model(model_dir, text, artifact.tail_path)
    return model_dir


def _parse_check(text: str) -> None:
    """Parse ``text`` into tritonclient's ``ModelConfig`` when tritonclient is installed (raises if malformed)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return
    text_format.Parse(text, model_config_pb2.ModelConfig())


def _write_model(model_dir: Path, text: str, onnx_path: Path | None) -> None:
    """``model_dir/config.pbtxt`` and (unless None) ``model_dir/1/model.onnx``, each written atomically."""
    _parse_check(text)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    if onnx_path is not None:
        handle, temporary = tempfile.mkstemp(prefix=".model.onnx.", suffix=".tmp", dir=model_dir / "1")
        os.close(handle)
        try:
            shutil.copyfile(onnx_path, temporary)
            os.replace(temporary, model_dir / "1" / "model.onnx")
        finally:
            Path(temporary).unlink(missing_ok=True)
    _write_atomic(model_dir / "config.pbtxt", text.encode())


def ensemble_pbtxt(artifact: SplitArtifact, model_name: str = "aeforge_tail", max_batch_size: int = 64) -> str:
    """A Triton ensemble: input the FP32 code, one step per task tail ``<model_name>_<task>``, outputs
    ``<task>_<tail output>`` (the raw tail outputs: detection candidates before NMS, mask logits)."""
    check_model_name(model_name)
    inputs, outputs, steps = None, [], []
    for task in artifact.task_names:
        task_inputs, task_outputs = _tensors(artifact, task)
        inputs = inputs or task_inputs
        mapping = [f"      output_map {{ key: {pbtxt_string(name)} value: {pbtxt_string(f'{task}_{name}')} }}"
                   for name, _, _ in task_outputs]
        outputs += [(f"{task}_{name}", data_type, dims) for name, data_type, dims in task_outputs]
        steps += ["    {", f"      model_name: {pbtxt_string(f'{model_name}_{task}')}", "      model_version: -1",
                  f"      input_map {{ key: {pbtxt_string(task_inputs[0][0])} value: {pbtxt_string(inputs[0][0])} }}",
                  *mapping, "    }"]
    assert inputs is not None
    batched = max_batch_size > 0 and all(dims and dims[0] == -1 for _, _, dims in inputs + outputs)
    lines = [f"name: {pbtxt_string(model_name)}", 'platform: "ensemble"',
             f"max_batch_size: {max_batch_size if batched else 0}"]
    for key, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{key} [")
        lines.append(",\n".join(f"  {{ name: {pbtxt_string(name)} data_type: {data_type} dims: [ "
                                f"{', '.join(map(str, dims[1:] if batched else dims))} ] }}"
                                for name, data_type, dims in tensors))
        lines.append("]")
    lines += ["ensemble_scheduling {", "  step ["]
    step_text = "\n".join(steps).replace("    }\n    {", "    },\n    {")
    lines += [step_text, "  ]", "}"]
    return "\n".join(lines) + "\n"


def _write_ensemble(artifact: SplitArtifact, out_dir: Path, model_name: str, max_batch_size: int) -> Path:
    model_dir = out_dir / model_name
    _write_model(model_dir, ensemble_pbtxt(artifact, model_name, max_batch_size), None)
    return model_dir
