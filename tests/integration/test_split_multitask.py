"""Multi-task (Ladon-style) split computing end to end on the synthetic shapes: train (teachers, head
distillation, joint fine-tuning) -> run -> export (head.onnx, tail_<task>.onnx, split.json) -> ONNX Runtime
against PyTorch -> KServe v2 gRPC server on loopback -> client asking for one or several tasks; the same over
the TCP and ZeroMQ fast paths (equal to gRPC's answers), and hostile multi-task frames against both."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.grpc")

from aeforge.artifact import load_run  # noqa: E402
from aeforge.edge.split.codec import encode_code, load_split_artifact  # noqa: E402
from aeforge.edge.split.config import parse_split_config  # noqa: E402
from aeforge.edge.split.data import load_split_data  # noqa: E402
from aeforge.edge.split.export import export_split  # noqa: E402
from aeforge.edge.split.multitask import load_multitask_model, save_multitask_run, train_multitask  # noqa: E402
from aeforge.edge.split.multitask_export import compare_task_outputs  # noqa: E402
from aeforge.edge.split.tasks import OUTPUT_NAMES, ExportedTail  # noqa: E402
from aeforge.errors import ArtifactError  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
name: tiny_multitask
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 4, encoder_channels: 8}
tasks:
  - {kind: classification}
  - {kind: detection, loss_weight: 0.5}
  - {kind: segmentation, head: fcn}
data: {source: shapes, image_size: 32, shapes_count: 64, shapes_per_image: 2, eval_batch_size: 32}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1,
        threads: 1}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aeforge.cli import main

    root = tmp_path_factory.mktemp("multitask")
    (root / "tiny.yaml").write_text(CONFIG)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["train", str(root / "tiny.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    assert "det (detection): box_map50" in printed.getvalue()
    return root / "run"


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> dict:
    from aeforge.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", "split", str(run_dir), "--json"]) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    config = parse_split_config(CONFIG, source="tiny.yaml")
    return load_split_data(config.data).x_test[:4].numpy()


def test_run_has_every_task(run_dir: Path) -> None:
    card = load_run(run_dir)
    assert card.kind == "split" and [t["name"] for t in card.data["tasks"]] == ["cls", "det", "seg"]
    for name in ("teachers.pt", "student.pt", "history.json", "metrics.json"):
        assert name in card.files, name
    history = json.loads((run_dir / "history.json").read_text())
    assert {"teacher_cls", "teacher_det", "teacher_seg", "head_distillation", "finetune"} <= set(history)
    metrics = card.metrics
    for key in ("cls_top1", "cls_top1_teacher", "det_box_map50", "det_box_map50_teacher", "seg_mask_miou",
                "seg_mask_miou_teacher", "bytes_per_sample"):
        assert key in metrics, key
        assert 0.0 <= metrics[key] <= (1.0 if key != "bytes_per_sample" else 1e6)
    assert metrics["code_shape"] == [2, 8, 8] and metrics["code_bits_per_sample"] == 2 * 8 * 8 * 4


def test_training_is_deterministic_and_api_saves_the_same_run(run_dir: Path, tmp_path: Path) -> None:
    config = parse_split_config(CONFIG, source="tiny.yaml")
    result = train_multitask(config)
    assert result.metrics["tasks"] == load_run(run_dir).metrics["tasks"]  # same seeds, same numbers as the CLI's
    save_multitask_run(result, tmp_path / "again")
    with pytest.raises(ArtifactError):
        save_multitask_run(result, tmp_path / "again")  # an existing run is not overwritten


def test_reloaded_model_equals_trained(run_dir: Path, images: np.ndarray) -> None:
    model = load_multitask_model(run_dir)
    again = load_multitask_model(run_dir)
    x = torch.from_numpy(images)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a["cls"], b["cls"]) and torch.equal(a["seg"], b["seg"])
    assert torch.equal(a["det"]["cls_logits"], b["det"]["cls_logits"])


def test_export_names_one_head_and_a_tail_per_task(run_dir: Path, exported: dict) -> None:
    root = Path(exported["path"])
    assert sorted(p.name for p in root.iterdir()) == ["head.onnx", "split.json", "tail_cls.onnx", "tail_det.onnx",
                                                      "tail_seg.onnx"]
    meta = json.loads((root / "split.json").read_text())
    assert [(t["name"], t["kind"], t["file"]) for t in meta["tasks"]] == [
        ("cls", "classification", "tail_cls.onnx"), ("det", "detection", "tail_det.onnx"),
        ("seg", "segmentation", "tail_seg.onnx")]
    assert meta["tail_file"] == "tail_cls.onnx" and meta["legacy_task"] == "cls"
    assert exported["check"]["code_mismatches_vs_torch"] == 0
    artifact = load_split_artifact(root)
    assert artifact.task_names == ("cls", "det", "seg") and artifact.verify("tail").name == "tail_cls.onnx"
    with pytest.raises(ArtifactError, match="already exists"):
        export_split(run_dir)


def test_each_onnx_tail_equals_torch(run_dir: Path, exported: dict, images: np.ndarray) -> None:
    from aeforge.edge.onnx_export import exact_session_options

    root = Path(exported["path"])
    model = load_multitask_model(run_dir)
    head = ort.InferenceSession(str(root / "head.onnx"), exact_session_options(), providers=["CPUExecutionProvider"])
    values = head.run(None, {head.get_inputs()[0].name: images})[0]
    with torch.no_grad():
        torch_values = model.head(torch.from_numpy(images)).numpy()
    assert np.array_equal(values, torch_values)  # the code is exact
    for task in model.tasks:
        session = ort.InferenceSession(str(root / f"tail_{task.name}.onnx"), providers=["CPUExecutionProvider"])
        ort_out = session.run(list(OUTPUT_NAMES[task.kind]), {"code": values})
        with torch.no_grad():
            out = ExportedTail(task, model.tails[task.name]).eval()(torch.from_numpy(values))
        torch_out = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        assert [o.shape for o in ort_out] == [t.shape for t in torch_out]
        found = compare_task_outputs(task.kind, ort_out, torch_out)
        assert found["max_rel"] <= 1e-4, (task.name, found)
        assert found.get("label_mismatches", 0) == 0


def test_grpc_round_trip_selected_tasks(exported: dict, images: np.ndarray, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.multitask_serve import MultiTaskTailModel
    from aeforge.edge.split.serve import TailServer

    root = Path(exported["path"])
    artifact = load_split_artifact(root)
    local = MultiTaskTailModel(artifact)
    with TailServer(root, port=0) as server:
        with SplitClient(root, transport="grpc", port=server.port) as client:
            every = client.infer_tasks(images)
            reference = local.infer_tasks(every.codes.astype(np.float32) * np.float32(artifact.code.scale),
                                          ["cls", "det", "seg"])
            assert set(every.outputs) == {"cls", "det", "seg"}
            assert every.outputs["cls"]["logits"].shape == (4, 3)
            assert every.outputs["det"]["boxes"].shape == (4, 20, 4)
            assert every.outputs["det"]["labels"].dtype == np.int32
            assert every.outputs["seg"]["masks"].shape == (4, 32, 32)
            for task, outputs in reference.items():
                for key, value in outputs.items():
                    np.testing.assert_array_equal(every.outputs[task][key], value)
            only_seg = client.infer_tasks(images, ["seg"])
            assert set(only_seg.outputs) == {"seg"} and only_seg.request_bytes == every.request_bytes
            legacy = client.infer(images)  # single-task clients get the classification task's logits
            np.testing.assert_array_equal(legacy.logits, every.outputs["cls"]["logits"])
            with pytest.raises(ArtifactError, match="no task 'depth'; tasks: cls, det, seg"):
                client.infer_tasks(images, ["depth"])
        import tritonclient.grpc as triton

        stock = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        outputs = [o.name for o in stock.get_model_metadata("aeforge_tail").outputs]
        assert outputs == ["cls_logits", "det_boxes", "det_scores", "det_labels", "seg_masks"]
        code = triton.InferInput("code", [1, *artifact.code.shape], "FP32")
        code.set_data_from_numpy(every.codes[:1].astype(np.float32) * np.float32(artifact.code.scale))
        answer = stock.infer("aeforge_tail", [code], outputs=[triton.InferRequestedOutput("seg_masks")])
        np.testing.assert_array_equal(answer.as_numpy("seg_masks"), every.outputs["seg"]["masks"][:1])
        with pytest.raises(triton.InferenceServerException, match="unknown output 'seg_logits'"):
            stock.infer("aeforge_tail", [code], outputs=[triton.InferRequestedOutput("seg_logits")])
        np.save(tmp_path / "x.npy", images)
        code = main(["split", "run", str(root), "--input", str(tmp_path / "x.npy"), "--port", str(server.port),
                     "--tasks", "cls,det", "--output", str(tmp_path / "out.npz")])
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert set(printed["tasks"]) == {"cls", "det"} and len(printed["tasks"]["det"]["detections"]) == 4
        saved = np.load(tmp_path / "out.npz")
        assert sorted(saved.files) == ["cls_logits", "det_boxes", "det_labels", "det_scores"]
        np.testing.assert_array_equal(saved["cls_logits"], every.outputs["cls"]["logits"])


def test_triton_repository_has_a_model_per_tail_and_an_ensemble(exported: dict, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from aeforge.edge.split.triton_repo import write_triton_repository

    model_dir = write_triton_repository(exported["path"], tmp_path / "repo", model_name="shapes")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["shapes", "shapes_cls", "shapes_det",
                                                                      "shapes_seg"]
    for task in ("cls", "det", "seg"):
        assert (tmp_path / "repo" / f"shapes_{task}" / "1" / "model.onnx").read_bytes() == \
            (Path(exported["path"]) / f"tail_{task}.onnx").read_bytes()
    ensemble = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert ensemble.platform == "ensemble" and [i.name for i in ensemble.input] == ["code"]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["shapes_cls", "shapes_det", "shapes_seg"]
    assert [o.name for o in ensemble.output] == ["cls_logits", "det_boxes", "det_scores", "det_labels",
                                                 "seg_mask_logits"]


# ------------------------------------------------------------------------------------ fast paths (tcp, zmq)
TOKEN = "multitask-fast-token-0123"


@pytest.fixture(scope="module")
def sparse_export(exported: dict, images: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the export whose detection score threshold (split.json postprocess) is the median kept score of
    ``images``, so that images keep different numbers of detections (the 1-epoch tail fills all 20 at 0.05)."""
    import shutil

    from aeforge.edge.split.multitask_serve import MultiTaskTailModel

    root = Path(shutil.copytree(exported["path"], tmp_path_factory.mktemp("sparse") / "split"))
    artifact = load_split_artifact(root)
    with _head_only_client(root) as device:
        values = device.head(images).astype(np.float32) * np.float32(artifact.code.scale)
    scores = MultiTaskTailModel(artifact).infer_tasks(values, ["det"])["det"]["scores"]
    meta = json.loads((root / "split.json").read_text())
    meta["tasks"][1]["postprocess"]["score_threshold"] = float(np.median(scores[scores > 0]))
    (root / "split.json").write_text(json.dumps(meta, indent=2))
    return root


def _head_only_client(root: Path) -> object:
    """A SplitClient used for its head only (nothing is sent, so no server is needed)."""
    from aeforge.edge.split.client import SplitClient

    return SplitClient(root, transport="tcp", port=1)


@pytest.fixture(scope="module")
def grpc_answers(sparse_export: Path, images: np.ndarray) -> dict:
    """The reference: every task's outputs, a subset's and the single-task logits over KServe v2 gRPC."""
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.serve import TailServer

    root = sparse_export
    with TailServer(root, port=0) as server, SplitClient(root, transport="grpc", port=server.port) as client:
        every = client.infer_tasks(images)
        return {"every": every.outputs, "seg,det": client.infer_tasks(images, ["seg", "det"]).outputs,
                "logits": client.infer(images).logits, "codes": every.codes}


def _fast_server(transport: str, root: Path, **options: object) -> object:
    if transport == "zmq":
        pytest.importorskip("zmq")
        from aeforge.edge.split.zmqpath import ZmqFastPathServer

        return ZmqFastPathServer(root, **options)
    from aeforge.edge.split.fastpath import FastPathServer

    return FastPathServer(root, **options)


def _assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for task, outputs in expected.items():
        assert sorted(got[task]) == sorted(outputs), task
        for key, value in outputs.items():
            assert got[task][key].dtype == value.dtype and got[task][key].shape == value.shape, (task, key)
            np.testing.assert_array_equal(got[task][key], value, err_msg=f"{task}_{key}")


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_fast_paths_answer_every_task_like_grpc(sparse_export: Path, images: np.ndarray, grpc_answers: dict,
                                                transport: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main
    from aeforge.edge.split.client import SplitClient

    root = sparse_export
    detections = grpc_answers["every"]["det"]["labels"] >= 0
    assert detections.any() and not detections.all()  # variable-length detections on the wire, not all padding
    with _fast_server(transport, root, port=0, token=TOKEN) as server, \
            SplitClient(root, transport=transport, port=server.port, token=TOKEN) as client:
        every = client.infer_tasks(images)
        np.testing.assert_array_equal(every.codes, grpc_answers["codes"])
        _assert_same(every.outputs, grpc_answers["every"])
        subset = client.infer_tasks(images, ["seg", "det"])
        _assert_same(subset.outputs, grpc_answers["seg,det"])
        assert subset.request_bytes == every.request_bytes  # one code, whatever the tasks
        np.testing.assert_array_equal(client.infer(images).logits, grpc_answers["logits"])  # INFER: the cls task
        with pytest.raises(ArtifactError, match="no task 'depth'; tasks: cls, det, seg"):
            client.infer_tasks(images, ["depth"])
        np.save(tmp_path / "x.npy", images)
        (tmp_path / "token").write_text(TOKEN + "\n")
        code = main(["split", "run", str(root), "--input", str(tmp_path / "x.npy"), "--transport", transport,
                     "--port", str(server.port), "--token-file", str(tmp_path / "token"), "--tasks", "det,seg",
                     "--output", str(tmp_path / "out.npz")])
        assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed["tasks"]) == ["det", "seg"] and len(printed["tasks"]["det"]["detections"]) == 4
    assert [len(found) for found in printed["tasks"]["det"]["detections"]] == detections.sum(axis=1).tolist()
    saved = np.load(tmp_path / "out.npz")
    assert sorted(saved.files) == ["det_boxes", "det_labels", "det_scores", "seg_masks"]
    for name in saved.files:
        task, key = name.split("_", 1)
        np.testing.assert_array_equal(saved[name], grpc_answers["every"][task][key])


def _task_frame_cases(blob: bytes, wrong_dims: bytes) -> list[tuple[bytes, str, str]]:
    """(INFER_TASKS payload, expected status, words of the error) of well-framed but bad multi-task requests."""
    from aeforge.edge.split.task_wire import pack_task_request

    return [
        (b"", "BAD_REQUEST", "empty INFER_TASKS payload"),
        (b"\x00" + blob, "BAD_REQUEST", "count 0"),
        (b"\x11" + blob, "BAD_REQUEST", "count 17"),
        (b"\x01\x40cls", "BAD_REQUEST", "tasks[0]: name length 64"),
        (b"\x01\x02\xff\xfe" + blob, "BAD_REQUEST", "not UTF-8"),
        (b"\x01\x05depth" + blob, "BAD_REQUEST", "unknown task 'depth'; this server has cls, det, seg"),
        (b"\x02\x03det\x03det" + blob, "BAD_REQUEST", "task 'det' named twice"),
        (pack_task_request(["det"], b"junk"), "BAD_CODE", "header"),
        (pack_task_request(["seg"], blob[:-1]), "BAD_CODE", "payload_length"),
        (pack_task_request(["cls", "seg"], wrong_dims), "BAD_CODE", "dims"),
    ]


def _random_task_payload(rng: object) -> bytes:
    """A task list and blob of random bytes (half of them naming a real task)."""
    from aeforge.edge.split.task_wire import pack_task_request

    if rng.random() < 0.5:  # type: ignore[attr-defined]
        return pack_task_request(["det"], rng.randbytes(rng.randrange(0, 200)))  # type: ignore[attr-defined]
    return bytes([rng.randrange(1, 4)]) + rng.randbytes(rng.randrange(0, 60))  # type: ignore[attr-defined]


def _blobs(root: Path, images: np.ndarray) -> tuple[bytes, bytes]:
    """An honest blob of two images' codes, and one whose dims are wrong (right bits and scale)."""
    with _head_only_client(root) as device:
        codes = device.head(images[:2])
    spec = device.artifact.code
    wrong = np.zeros((1, spec.shape[0], spec.shape[1], spec.shape[2] + 1), np.int32)
    return (encode_code(codes, spec.bits, spec.scale, spec.signed),
            encode_code(wrong, spec.bits, spec.scale, spec.signed))


def _frames(data: bytes) -> list[tuple[int, str, int, bytes]]:
    """(type, status name, request id, payload) of every frame in ``data``."""
    from aeforge.edge.split.fastpath import ERRORS, HEADER

    frames = []
    while len(data) >= HEADER.size:
        _, _, kind, status, request_id, length = HEADER.unpack_from(data)
        frames.append((kind, ERRORS.get(status, "OK"), request_id, data[HEADER.size:HEADER.size + length]))
        data = data[HEADER.size + length:]
    return frames


def test_tcp_task_frames_hostile(sparse_export: Path, images: np.ndarray) -> None:
    import random
    import socket

    from aeforge.edge.split.fastpath import (
        ERROR,
        HEADER,
        HELLO,
        HELLO_OK,
        INFER_TASKS,
        RESULT_TASKS,
        FastPathClient,
        FastPathServer,
        hello_payload,
        pack_frame,
    )
    from aeforge.edge.split.task_wire import pack_task_request

    root = sparse_export
    blob, wrong_dims = _blobs(root, images)
    hello = pack_frame(HELLO, 1, hello_payload(None, TOKEN))
    with FastPathServer(root, token=TOKEN, frame_timeout_s=1.0) as server, \
            FastPathClient("127.0.0.1", server.port, token=TOKEN) as honest:
        _, reference = honest.infer_tasks(blob, ["det", "seg"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            reader = sock.makefile("rb")

            def exchange(frame: bytes) -> tuple[int, str, int, bytes]:
                sock.sendall(frame)
                header = reader.read(HEADER.size)
                return _frames(header + reader.read(HEADER.unpack(header)[5]))[0]

            assert exchange(hello)[0] == HELLO_OK
            # well-framed bad requests on one connection: an ERROR each naming the problem, the connection stays
            for number, (payload, status, needle) in enumerate(_task_frame_cases(blob, wrong_dims), start=2):
                kind, got, request_id, message = exchange(pack_frame(INFER_TASKS, number, payload))
                assert (kind, got, request_id) == (ERROR, status, number), message
                assert needle in message.decode(), (needle, message)
            rng = random.Random(0)  # random task lists and bytes: an ERROR naming a request problem, never INTERNAL
            for number in range(100):
                kind, got, _, message = exchange(pack_frame(INFER_TASKS, number, _random_task_payload(rng)))
                assert kind == ERROR and got in ("BAD_REQUEST", "BAD_CODE"), message
            kind, _, request_id, _ = exchange(pack_frame(INFER_TASKS, 99, pack_task_request(["det", "seg"], blob)))
            assert (kind, request_id) == (RESULT_TASKS, 99)
        # framing errors: an ERROR, then the server closes that connection
        oversized = struct.pack("<4sBBHQI", b"AEFP", 2, INFER_TASKS, 0, 2, 1 << 30)
        for data, status in [(pack_frame(INFER_TASKS, 1, pack_task_request(["det"], blob)), "UNAUTHENTICATED"),
                             (hello + oversized, "TOO_LARGE")]:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(data)
                reply = b"".join(iter(lambda: sock.recv(65536), b""))
            assert _frames(reply)[-1][:2] == (ERROR, status), reply[:80]
        _, again = honest.infer_tasks(blob, ["det", "seg"])  # the server kept serving, with the same answers
        for task in reference:
            for key, value in reference[task].items():
                np.testing.assert_array_equal(again[task][key], value)


def test_zmq_task_frames_hostile(sparse_export: Path, images: np.ndarray) -> None:
    import random

    zmq = pytest.importorskip("zmq")
    from aeforge.edge.split.protocol import ERROR, HELLO, INFER_TASKS, hello_payload, pack_frame
    from aeforge.edge.split.task_wire import pack_task_request
    from aeforge.edge.split.zmqpath import ZmqFastPathClient, ZmqFastPathServer

    root = sparse_export
    blob, wrong_dims = _blobs(root, images)
    hello = pack_frame(HELLO, 0, hello_payload(None, TOKEN))
    with ZmqFastPathServer(root, token=TOKEN) as server, \
            ZmqFastPathClient("127.0.0.1", server.port, TOKEN, timeout_s=5) as honest:
        _, reference = honest.infer_tasks(blob, ["seg", "cls"])
        peer = zmq.Context.instance().socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.connect(f"tcp://127.0.0.1:{server.port}")

        def exchange(parts: list[bytes]) -> tuple[int, str, int, bytes]:
            peer.send_multipart(parts)
            assert peer.poll(5000), "no reply"
            return _frames(peer.recv())[0]

        try:
            for number, (payload, status, needle) in enumerate(_task_frame_cases(blob, wrong_dims), start=2):
                kind, got, request_id, message = exchange([hello, pack_frame(INFER_TASKS, number, payload)])
                assert (kind, got, request_id) == (ERROR, status, number), message
                assert needle in message.decode(), (needle, message)
            rng = random.Random(1)
            for number in range(100):
                kind, got, _, message = exchange([hello, pack_frame(INFER_TASKS, number, _random_task_payload(rng))])
                assert kind == ERROR and got in ("BAD_REQUEST", "BAD_CODE"), message
            wrong_token = pack_frame(HELLO, 0, hello_payload(None, "not-the-token-0123456"))
            task_frame = pack_frame(INFER_TASKS, 5, pack_task_request(["det"], blob))
            assert exchange([wrong_token, task_frame])[:2] == (ERROR, "UNAUTHENTICATED")
            assert exchange([pack_frame(HELLO, 0, hello_payload("ef" * 32, TOKEN)), task_frame])[:2] == \
                (ERROR, "MODEL_MISMATCH")
            oversized = struct.pack("<4sBBHQI", b"AEFP", 2, INFER_TASKS, 0, 6, 1 << 30)
            assert exchange([hello, oversized])[:2] == (ERROR, "TOO_LARGE")
            assert exchange([task_frame])[:2] == (ERROR, "BAD_TYPE")  # no HELLO part
        finally:
            peer.close()
        assert server.stats["unauthenticated"] == 1
        _, again = honest.infer_tasks(blob, ["seg", "cls"])
        for task in reference:
            for key, value in reference[task].items():
                np.testing.assert_array_equal(again[task][key], value)


@pytest.mark.parametrize("transport", ["tcp", "zmq"])
def test_secured_fast_paths_answer_every_task(sparse_export: Path, images: np.ndarray, grpc_answers: dict,
                                              transport: str, tmp_path: Path) -> None:
    """TLS with client certificates (tcp) and CURVE with a client allow-list (zmq), plus a token."""
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.protocol import TransportError
    from aeforge.edge.split.security import ClientTLS, CurveClientKeys, CurveServerKeys, ServerTLS

    if transport == "tcp":
        pytest.importorskip("cryptography")
        from tests.integration.test_split_secure import make_pki

        pki = make_pki(tmp_path / "pki")
        server_security = {"tls": ServerTLS(pki["server_cert"], pki["server_key"], client_ca_file=pki["ca"])}
        client_security = {"tls": ClientTLS(pki["ca"], pki["client_cert"], pki["client_key"])}
        refused = {"tls": ClientTLS(pki["other_ca"], pki["client_cert"], pki["client_key"])}
    else:
        pytest.importorskip("zmq")
        from aeforge.edge.split.security import write_curve_keypair

        server_public, server_secret = write_curve_keypair(tmp_path / "server", "server")
        _, client_secret = write_curve_keypair(tmp_path / "clients", "device")
        _, stranger_secret = write_curve_keypair(tmp_path / "strangers", "stranger")
        server_security = {"curve": CurveServerKeys(str(server_secret), clients_dir=str(tmp_path / "clients"))}
        client_security = {"curve": CurveClientKeys(str(server_public), str(client_secret))}
        refused = {"curve": CurveClientKeys(str(server_public), str(stranger_secret))}
    with _fast_server(transport, sparse_export, port=0, token=TOKEN, **server_security) as server:
        with SplitClient(sparse_export, transport=transport, port=server.port, token=TOKEN,
                         **client_security) as client:
            _assert_same(client.infer_tasks(images).outputs, grpc_answers["every"])
        with SplitClient(sparse_export, transport=transport, port=server.port, token=TOKEN, timeout_s=1.0,
                         **refused) as stranger, pytest.raises(TransportError) as info:
            stranger.infer_tasks(images, ["seg"])
        assert info.value.status in ("TLS", "TIMEOUT")  # a wrong CA (tcp); a client not on the list (zmq)
        with SplitClient(sparse_export, transport=transport, port=server.port, token="wrong-token-0123456789",
                         **client_security) as wrong, pytest.raises(TransportError) as info:
            wrong.infer_tasks(images, ["seg"])
        assert info.value.status == "UNAUTHENTICATED"
