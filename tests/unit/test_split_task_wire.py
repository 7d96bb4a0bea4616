"""The multi-task payloads of the fast path (task_wire): round trips with ragged detections, and every
malformed request or reply refused with a DataError naming the field (never another exception)."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from aeforge.edge.split.task_outputs import postprocess_detections
from aeforge.edge.split.task_wire import (
    MAX_TASK_LIST_BYTES,
    MAX_TASKS,
    pack_task_outputs,
    pack_task_request,
    parse_task_request,
    restore_task_outputs,
    unpack_task_outputs,
)
from aeforge.errors import DataError

SERVED = ("cls", "det", "seg")
KINDS = {"cls": "classification", "det": "detection", "seg": "segmentation"}
EXPECTED = {
    "cls": ("classification", {"logits": ((3,), "float32")}),
    "det": ("detection", {"boxes": ((5, 4), "float32"), "scores": ((5,), "float32"), "labels": ((5,), "int32")}),
    "seg": ("segmentation", {"masks": ((6, 7), "int32")}),
}


def _results(batch: int = 3, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Served outputs as MultiTaskTailModel makes them (detections through the real NMS, so padded)."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 20, (batch, 12, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(1, 8, (batch, 12, 2)).astype(np.float32)], axis=2)
    scores = rng.uniform(0, 1, (batch, 12)).astype(np.float32)
    scores[1] = 0.01  # an image with no detection above the threshold
    labels = rng.integers(0, 3, (batch, 12))
    det_boxes, det_scores, det_labels = postprocess_detections(boxes, scores, labels, 0.3, 0.5, 5)
    return {"cls": {"logits": rng.normal(size=(batch, 3)).astype(np.float32)},
            "det": {"boxes": det_boxes, "scores": det_scores, "labels": det_labels},
            "seg": {"masks": rng.integers(0, 4, (batch, 6, 7)).astype(np.int32)}}


def test_request_round_trip_and_bounds() -> None:
    blob = bytes(range(40))
    payload = pack_task_request(["seg", "cls"], blob)
    assert parse_task_request(payload, SERVED) == (["seg", "cls"], blob)
    assert len(pack_task_request(["x" * 64] * MAX_TASKS, b"")) == MAX_TASK_LIST_BYTES
    with pytest.raises(DataError, match=r"1\.\.16 tasks"):
        pack_task_request([], blob)
    with pytest.raises(DataError, match=r"must be 1\.\.64 bytes"):
        pack_task_request(["x" * 65], blob)


@pytest.mark.parametrize(("payload", "needle"), [
    (b"", "empty INFER_TASKS payload"),
    (b"\x00", "count 0, expected 1..16"),
    (b"\x11" + b"\x01a" * 17, "count 17"),
    (b"\x02\x03cls", r"tasks\[1\]: payload ends before the name's length byte"),
    (b"\x01\x00", r"tasks\[0\]: name length 0"),
    (b"\x01\x05cls", r"tasks\[0\]: name length 5, expected 1..64 bytes within the payload"),
    (b"\x01\x02\xff\xfe", r"tasks\[0\]: name is not UTF-8"),
    (b"\x01\x05depth" + bytes(30), r"tasks\[0\]: unknown task 'depth'; this server has cls, det, seg"),
    (b"\x02\x03cls\x03cls", r"tasks\[1\]: task 'cls' named twice"),
])
def test_malformed_requests_are_refused_by_field(payload: bytes, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        parse_task_request(payload, SERVED)


def test_single_task_server_refuses_task_requests() -> None:
    with pytest.raises(DataError, match="single-task"):
        parse_task_request(pack_task_request(["cls"], b"blob"), ())


def test_reply_round_trip_equals_the_served_arrays() -> None:
    results = _results()
    payload = pack_task_outputs(results, KINDS, 3)
    batch, raw = unpack_task_outputs(payload)
    assert batch == 3 and set(raw) == set(SERVED)
    counts = raw["det"]["counts"]
    assert counts.tolist() == (results["det"]["labels"] >= 0).sum(axis=1).tolist() and counts[1] == 0
    assert raw["det"]["boxes"].shape == (int(counts.sum()), 4)  # ragged: no padding on the wire
    assert raw["seg"]["masks"].dtype == np.uint8  # class indices travel as bytes
    restored = restore_task_outputs(raw, batch, EXPECTED)
    for task, outputs in results.items():
        for key, value in outputs.items():
            assert restored[task][key].dtype == value.dtype, (task, key)
            np.testing.assert_array_equal(restored[task][key], value)
    padded = 3 * (5 * 16 + 5 * 4 + 5 * 4)
    assert len(payload) < padded + 3 * 3 * 4 + 3 * 42 + 200  # smaller than the padded detections alone


def test_wide_integers_stay_int32() -> None:
    masks = np.full((1, 6, 7), 300, dtype=np.int32)
    batch, raw = unpack_task_outputs(pack_task_outputs({"seg": {"masks": masks}}, KINDS, 1))
    assert raw["seg"]["masks"].dtype == np.dtype("<i4")
    np.testing.assert_array_equal(restore_task_outputs(raw, batch, {"seg": EXPECTED["seg"]})["seg"]["masks"], masks)


def test_every_truncation_and_random_bytes_raise_data_error() -> None:
    payload = pack_task_outputs(_results(), KINDS, 3)
    for cut in range(len(payload)):
        with pytest.raises(DataError):
            unpack_task_outputs(payload[:cut])
    with pytest.raises(DataError, match="bytes after the last tensor"):
        unpack_task_outputs(payload + b"\0")
    rng = random.Random(1)
    for _ in range(500):
        junk = bytearray(payload)
        for _ in range(rng.randrange(1, 4)):
            junk[rng.randrange(len(junk))] = rng.randrange(256)
        try:
            batch, raw = unpack_task_outputs(bytes(junk))
            restore_task_outputs(raw, batch, EXPECTED)
        except DataError:
            pass  # refused by name; any other exception fails the test


def test_huge_declared_dims_are_refused_before_allocation() -> None:
    tensor = b"\x03cls\x06logits" + struct.pack("<BB2I", 1, 2, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match=r"payload ends inside tensors\[0\].data"):
        unpack_task_outputs(struct.pack("<IB", 1, 1) + tensor)
    with pytest.raises(DataError, match="dtype code 9"):
        unpack_task_outputs(struct.pack("<IB", 1, 1) + b"\x03cls\x06logits\x09\x01" + bytes(8))


def test_restore_checks_tasks_shapes_and_counts() -> None:
    results = _results()
    batch, raw = unpack_task_outputs(pack_task_outputs(results, KINDS, 3))
    with pytest.raises(DataError, match=r"asked for \['cls'\], the reply has"):
        restore_task_outputs(raw, batch, {"cls": EXPECTED["cls"]})
    with pytest.raises(DataError, match=r"cls_logits: expected shape \(2, 3\)"):
        restore_task_outputs(raw, 2, EXPECTED)
    bad = {task: dict(outputs) for task, outputs in raw.items()}
    bad["det"]["counts"] = np.array([6, 0, 0], dtype=np.uint8)  # more than `detections` per image
    with pytest.raises(DataError, match=r"det.counts: expected 3 counts in 0..5"):
        restore_task_outputs(bad, batch, EXPECTED)
    assert int(raw["det"]["counts"].sum()) > 0
    bad["det"]["counts"] = np.zeros(3, dtype=np.uint8)  # fewer counted than sent
    with pytest.raises(DataError, match="detections counted, got boxes"):
        restore_task_outputs(bad, batch, EXPECTED)
    bad = {task: dict(outputs) for task, outputs in raw.items()}
    bad["cls"]["logits"] = bad["cls"]["logits"].astype(np.int32)
    with pytest.raises(DataError, match="cls_logits: expected float32, got int32"):
        restore_task_outputs(bad, batch, EXPECTED)
