"""Multi-task payloads of the fast path (TCP and ZeroMQ share them): the tasks a request names, each task's outputs.

INFER_TASKS payload (a request; frame type 3 of :mod:`.protocol`)::

    uint8  T                      number of tasks named, 1..MAX_TASKS
    T x    uint8 L, L bytes       a task name of split.json ``tasks`` (UTF-8, 1..MAX_TASK_NAME_BYTES)
    ...                           one codec blob, exactly as an INFER payload

RESULT_TASKS payload (the reply; frame type 0x83)::

    uint32 N                      samples in the request
    uint8  R                      tensors that follow, 1..MAX_TENSORS
    R x    uint8 L, task name; uint8 L, output name; uint8 dtype (1 float32, 2 int32, 3 uint8);
           uint8 ndim (0..MAX_NDIM); ndim x uint32 dims; the data (little-endian, C order)

Per task the tensors are its served outputs (:mod:`.multitask_serve`): classification ``logits`` ``(N, K)``;
segmentation ``masks`` ``(N, H, W)``; detection is variable-length: ``counts`` ``(N,)`` (kept detections per
image) and ``boxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``labels`` ``(K,)`` of all images one after the other,
K = sum(counts) (no padding on the wire). Integer tensors whose values all lie in 0..255 travel as uint8.
:func:`restore_task_outputs` turns a reply back into the arrays a KServe v2 request gets: detections padded to
``detections`` per image with score 0 and label -1, integers as int32.

Every length is checked before it is used; malformed payloads raise :class:`~aeforge.errors.DataError` naming
the field, so a server answers an ERROR frame and a client refuses the reply.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np

from aeforge.errors import DataError

MAX_TASKS = 16
MAX_TASK_NAME_BYTES = 64
MAX_TASK_LIST_BYTES = 1 + MAX_TASKS * (1 + MAX_TASK_NAME_BYTES)
"""The most bytes an INFER_TASKS payload adds to its codec blob."""
MAX_TENSORS = 4 * MAX_TASKS
MAX_NDIM = 4
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<i4"), 3: np.dtype("u1")}
DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}
RESULT_HEAD = struct.Struct("<IB")
DETECTION_OUTPUTS = ("boxes", "scores", "labels")


# ------------------------------------------------------------------------------------ requests
def pack_task_request(names: Sequence[str], blob: bytes) -> bytes:
    """INFER_TASKS payload: the task names, then the codec blob; DataError for a list the wire cannot carry."""
    if not 1 <= len(names) <= MAX_TASKS:
        raise DataError(f"tasks: 1..{MAX_TASKS} tasks per request, got {len(names)}")
    out = bytearray([len(names)])
    for name in names:
        raw = name.encode()
        if not 1 <= len(raw) <= MAX_TASK_NAME_BYTES:
            raise DataError(f"tasks: name {name!r} must be 1..{MAX_TASK_NAME_BYTES} bytes of UTF-8")
        out += bytes([len(raw)]) + raw
    return bytes(out) + blob


def parse_task_request(payload: bytes, served: Sequence[str]) -> tuple[list[str], bytes]:
    """(task names, codec blob) of an INFER_TASKS payload; DataError naming the field, unknown tasks by name."""
    if not served:
        raise DataError("tasks: this server's export is single-task (split.json has no tasks); send INFER")
    if not payload:
        raise DataError("tasks: empty INFER_TASKS payload (expected a task count, names and a codec blob)")
    count, offset = payload[0], 1
    if not 1 <= count <= MAX_TASKS:
        raise DataError(f"tasks: count {count}, expected 1..{MAX_TASKS}")
    names: list[str] = []
    for index in range(count):
        if offset >= len(payload):
            raise DataError(f"tasks[{index}]: payload ends before the name's length byte")
        length = payload[offset]
        if not 1 <= length <= MAX_TASK_NAME_BYTES or offset + 1 + length > len(payload):
            raise DataError(f"tasks[{index}]: name length {length}, expected 1..{MAX_TASK_NAME_BYTES} bytes "
                            f"within the payload")
        try:
            name = payload[offset + 1:offset + 1 + length].decode()
        except UnicodeDecodeError:
            raise DataError(f"tasks[{index}]: name is not UTF-8") from None
        if name not in served:
            raise DataError(f"tasks[{index}]: unknown task {name[:MAX_TASK_NAME_BYTES]!r}; this server has "
                            f"{', '.join(served)}")
        if name in names:
            raise DataError(f"tasks[{index}]: task {name!r} named twice")
        names.append(name)
        offset += 1 + length
    return names, payload[offset:]


# ------------------------------------------------------------------------------------ replies
def _wire_array(array: np.ndarray) -> np.ndarray:
    """The array as it travels: float32, int32, or uint8 for integers in 0..255."""
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype="<f4")
    if array.dtype.kind not in "iu":
        raise DataError(f"outputs: cannot send dtype {array.dtype}")
    if array.size == 0 or (int(array.min()) >= 0 and int(array.max()) <= 255):
        return np.ascontiguousarray(array, dtype="u1")
    return np.ascontiguousarray(array, dtype="<i4")


def _tensor(task: str, output: str, array: np.ndarray) -> bytes:
    wire = _wire_array(array)
    if wire.ndim > MAX_NDIM:
        raise DataError(f"{task}.{output}: {wire.ndim} dimensions, the wire carries at most {MAX_NDIM}")
    names = b"".join(bytes([len(raw)]) + raw for raw in (task.encode(), output.encode()))
    head = struct.pack(f"<BB{wire.ndim}I", DTYPE_CODES[wire.dtype], wire.ndim, *wire.shape)
    return names + head + wire.tobytes()


def pack_task_outputs(results: Mapping[str, Mapping[str, np.ndarray]], kinds: Mapping[str, str],
                      batch: int) -> bytes:
    """RESULT_TASKS payload of ``{task: {output: array}}`` (served outputs; detections padded, label -1)."""
    parts = []
    for task, outputs in results.items():
        if kinds[task] == "detection":
            boxes, scores, labels = (np.asarray(outputs[key]) for key in DETECTION_OUTPUTS)
            kept = labels >= 0
            counts = kept.sum(axis=1)
            if not np.array_equal(kept, np.arange(labels.shape[1]) < counts[:, None]):
                raise ValueError(f"{task}: kept detections are not a prefix of each image's list")
            outputs = {"counts": counts, "boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}
        parts += [_tensor(task, output, np.asarray(array)) for output, array in outputs.items()]
    if not 1 <= len(parts) <= MAX_TENSORS:
        raise DataError(f"outputs: {len(parts)} tensors, the wire carries 1..{MAX_TENSORS}")
    return RESULT_HEAD.pack(batch, len(parts)) + b"".join(parts)


class _Cursor:
    """Bounded reads from a payload; DataError naming the field when it ends early."""

    def __init__(self, payload: bytes) -> None:
        self.view = memoryview(payload)
        self.offset = 0

    def take(self, count: int, field: str) -> memoryview:
        if count > len(self.view) - self.offset:
            raise DataError(f"RESULT_TASKS: payload ends inside {field} ({count} bytes needed at offset "
                            f"{self.offset}, {len(self.view) - self.offset} left)")
        out = self.view[self.offset:self.offset + count]
        self.offset += count
        return out

    def name(self, field: str) -> str:
        raw = self.take(self.take(1, field)[0], field)
        try:
            return bytes(raw).decode()
        except UnicodeDecodeError:
            raise DataError(f"RESULT_TASKS: {field} is not UTF-8") from None


def unpack_task_outputs(payload: bytes) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
    """(N, ``{task: {output: array}}`` as on the wire) of a RESULT_TASKS payload; DataError if malformed."""
    cursor = _Cursor(payload)
    batch, count = RESULT_HEAD.unpack(cursor.take(RESULT_HEAD.size, "the header"))
    if not 1 <= count <= MAX_TENSORS:
        raise DataError(f"RESULT_TASKS: {count} tensors, expected 1..{MAX_TENSORS}")
    found: dict[str, dict[str, np.ndarray]] = {}
    for index in range(count):
        where = f"tensors[{index}]"
        task, output = cursor.name(f"{where}.task"), cursor.name(f"{where}.output")
        code, ndim = cursor.take(2, f"{where}.dtype")
        if code not in DTYPES or ndim > MAX_NDIM:
            raise DataError(f"RESULT_TASKS: {where} ({task}.{output}): dtype code {code}, ndim {ndim}")
        shape = struct.unpack(f"<{ndim}I", cursor.take(4 * ndim, f"{where}.dims"))
        size = int(np.prod(shape, dtype=object)) * DTYPES[code].itemsize
        data = cursor.take(size, f"{where}.data ({task}.{output} {list(shape)})")
        if output in found.get(task, {}):
            raise DataError(f"RESULT_TASKS: {task}.{output} sent twice")
        found.setdefault(task, {})[output] = np.frombuffer(data, dtype=DTYPES[code]).reshape(shape).copy()
    if cursor.offset != len(payload):
        raise DataError(f"RESULT_TASKS: {len(payload) - cursor.offset} bytes after the last tensor")
    return batch, found


def restore_task_outputs(raw: Mapping[str, Mapping[str, np.ndarray]], batch: int,
                         expected: Mapping[str, tuple[str, Mapping[str, tuple[tuple[int, ...], str]]]],
                         ) -> dict[str, dict[str, np.ndarray]]:
    """The served arrays of a reply, checked against ``expected`` = ``{task: (kind, {output: (per-sample shape,
    dtype)})}``: every task and output present, shapes ``(batch, *shape)``; detections re-padded (score 0,
    label -1). DataError naming the task and output otherwise."""
    if set(raw) != set(expected):
        raise DataError(f"tasks: asked for {sorted(expected)}, the reply has {sorted(raw)}")
    restored: dict[str, dict[str, np.ndarray]] = {}
    for task, (kind, outputs) in expected.items():
        got = raw[task]
        wanted = {"counts", *DETECTION_OUTPUTS} if kind == "detection" else set(outputs)
        if set(got) != wanted:
            raise DataError(f"{task}: outputs {sorted(got)}, expected {sorted(wanted)}")
        if kind == "detection":
            got = _pad_detections(task, got, batch, outputs["boxes"][0][0])
        restored[task] = {}
        for output, (shape, dtype) in outputs.items():
            array = got[output]
            if array.shape != (batch, *shape):
                raise DataError(f"{task}_{output}: expected shape {(batch, *shape)}, got {array.shape}")
            kinds = "f" if np.dtype(dtype).kind == "f" else "iu"
            if array.dtype.kind not in kinds:
                raise DataError(f"{task}_{output}: expected {dtype}, got {array.dtype}")
            restored[task][output] = array.astype(dtype, copy=False)
    return restored


def _pad_detections(task: str, got: Mapping[str, np.ndarray], batch: int, detections: int) -> dict[str, np.ndarray]:
    counts = got["counts"]
    in_range = counts.size == 0 or (int(counts.min()) >= 0 and int(counts.max()) <= detections)
    if counts.shape != (batch,) or counts.dtype.kind not in "iu" or not in_range:
        raise DataError(f"{task}.counts: expected {batch} counts in 0..{detections}, got {counts.tolist()[:8]}")
    total = int(counts.sum())
    boxes, scores, labels = (got[key] for key in DETECTION_OUTPUTS)
    if boxes.shape != (total, 4) or scores.shape != (total,) or labels.shape != (total,):
        raise DataError(f"{task}: {total} detections counted, got boxes {boxes.shape}, scores {scores.shape}, "
                        f"labels {labels.shape}")
    if boxes.dtype.kind != "f" or scores.dtype.kind != "f" or labels.dtype.kind not in "iu":
        raise DataError(f"{task}: boxes and scores must be float32 and labels integers, got {boxes.dtype}, "
                        f"{scores.dtype}, {labels.dtype}")
    keep = np.arange(detections) < counts[:, None]
    out_boxes = np.zeros((batch, detections, 4), dtype=np.float32)
    out_scores = np.zeros((batch, detections), dtype=np.float32)
    out_labels = np.full((batch, detections), -1, dtype=np.int32)
    out_boxes[keep], out_scores[keep], out_labels[keep] = boxes, scores, labels
    return {"boxes": out_boxes, "scores": out_scores, "labels": out_labels}
