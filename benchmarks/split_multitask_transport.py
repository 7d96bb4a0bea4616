"""Multi-task split requests on loopback over each transport: KServe v2 gRPC, the TCP and the ZeroMQ fast path.

    python benchmarks/split_multitask_transport.py [--repeats 200] [--threads 1] [--out benchmarks/results]

The model has the architecture of ``benchmarks/split_multitask.py`` (ResNet-18 split after ``layer1``, a
4 x 16 x 16 code at 4 bits, classification + FCOS detection + FCN segmentation tails, 64 x 64 images) but is
trained for one epoch per stage on 80 images: the tails' compute, and so the latency, is that of the trained
benchmark model; its accuracy is not (see ``split_multitask.json`` for that), and the detections it keeps
differ (an under-trained detector keeps all 20 per image: the fast path's reply is at its largest).

Per transport, batch 1, servers in this process (as in split_multitask.py): the median head / encode / round
trip / total seconds of ``--repeats`` requests (after 10 warm-ups; the transports take turns request by
request) asking for all three tasks from one code, and for each task alone; the answers are checked equal to
gRPC's. Also the reply sizes: the fast path's
RESULT_TASKS payload against the raw output tensors a KServe v2 reply carries (before its protobuf framing).
Writes ``split_multitask_transport.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import tool_versions
from aeforge.edge.split.codec import load_split_artifact
from aeforge.edge.split.config import parse_split_config
from aeforge.edge.split.data import load_split_data
from aeforge.edge.split.export import export_split
from aeforge.edge.split.multitask import save_multitask_run, train_multitask

REPO = Path(__file__).resolve().parents[1]
TASKS = ("cls", "det", "seg")
CONFIG = """
name: shapes_multitask_transport
model: {family: split, backbone: resnet18, split_after: layer1, channels: 4, bits: 4, encoder_channels: 32}
tasks: [{kind: classification}, {kind: detection}, {kind: segmentation}]
data: {source: shapes, image_size: 64, shapes_count: 80, shapes_per_image: 3, eval_batch_size: 64}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 0}
"""


def timed(clients: dict[str, Any], image: np.ndarray, tasks: list[str], repeats: int,
          ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per transport: median seconds per step of ``repeats`` batch-1 requests (after 10 warm-ups each), and the
    last answer. The transports take turns request by request, so a change in the host's load hits all alike."""
    runs: dict[str, list[Any]] = {name: [] for name in clients}
    for turn in range(10 + repeats):
        for name, client in clients.items():
            answer = client.infer_tasks(image, tasks)
            if turn >= 10:
                runs[name].append(answer)
    medians = {name: {"head_s": statistics.median(r.head_s for r in found),
                      "encode_s": statistics.median(r.encode_s for r in found),
                      "roundtrip_s": statistics.median(r.roundtrip_s for r in found),
                      "total_s": statistics.median(r.total_s for r in found),
                      "request_bytes": found[0].request_bytes} for name, found in runs.items()}
    return medians, {name: found[-1] for name, found in runs.items()}


def same(got: dict[str, dict[str, np.ndarray]], expected: dict[str, dict[str, np.ndarray]]) -> bool:
    """Every task's outputs identical (values, dtypes and shapes)."""
    return list(got) == list(expected) and all(
        sorted(got[t]) == sorted(expected[t]) and all(
            got[t][k].dtype == v.dtype and np.array_equal(got[t][k], v) for k, v in expected[t].items())
        for t in expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.fastpath import FastPathServer
    from aeforge.edge.split.serve import TailServer
    from aeforge.edge.split.task_wire import pack_task_outputs
    from aeforge.edge.split.zmqpath import ZmqFastPathServer

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    config = parse_split_config(CONFIG, source="split_multitask_transport")
    data = load_split_data(config.data)
    servers = {"grpc": TailServer, "tcp": FastPathServer, "zmq": ZmqFastPathServer}
    with tempfile.TemporaryDirectory(prefix="split-multitask-transport-") as tmp:
        result = train_multitask(config, data=data)
        train_s = time.perf_counter() - started
        root = Path(export_split(save_multitask_run(result, Path(tmp) / "run"))["path"])
        image = data.x_test[:1].numpy()
        with contextlib.ExitStack() as stack:
            clients = {}
            for transport, server_cls in servers.items():
                server = stack.enter_context(server_cls(root, port=0))
                clients[transport] = stack.enter_context(SplitClient(root, transport=transport, port=server.port,
                                                                     ort_threads=args.threads))
            every, answers = timed(clients, image, list(TASKS), args.repeats)
            alone = {task: timed(clients, image, [task], args.repeats)[0] for task in TASKS}
        latency = {t: {"all_tasks_one_code": every[t], "one_task": {task: alone[task][t] for task in TASKS}}
                   for t in servers}
        outputs = answers["grpc"].outputs
        kinds = {task["name"]: task["kind"] for task in load_split_artifact(root).tasks}
        reply = {"fast_path_result_tasks_payload_bytes": len(pack_task_outputs(outputs, kinds, 1)),
                 "kserve_raw_output_bytes": sum(a.nbytes for o in outputs.values() for a in o.values()),
                 "kept_detections": int((outputs["det"]["labels"] >= 0).sum())}
    report = {
        "benchmark": "split_multitask_transport", "host": platform.node(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": args.threads, "tools": tool_versions(),
        "settings": {"repeats": args.repeats, "batch": 1, "image_size": 64, "code": [4, 16, 16], "bits": 4,
                     "training": "1 epoch per stage on 80 images (latency only)"},
        "latency_loopback_batch1": latency,
        "equal_to_grpc": {t: same(answers[t].outputs, answers["grpc"].outputs) for t in ("tcp", "zmq")},
        "reply_batch1": reply,
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "note": "median of timed requests, servers in the client's process, ONNX Runtime CPU with one thread, "
                "this host (shared with other processes, see load_average_1min: times are noisy)",
        "wall_time": {"train_s": train_s, "total_s": time.perf_counter() - started},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split_multitask_transport.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    summary = {t: {f"{k[:-2]}_ms": round(v["all_tasks_one_code"][k] * 1e3, 3) for k in ("roundtrip_s", "total_s")}
               for t, v in latency.items()}
    print(json.dumps(summary, indent=2))
    print(json.dumps({"equal_to_grpc": report["equal_to_grpc"], "reply_batch1": reply}, indent=2))


if __name__ == "__main__":
    main()
