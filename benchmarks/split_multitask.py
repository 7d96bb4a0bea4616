"""Multi-task split computing (Ladon-style) against single-task split models and the unsplit teachers.

    python benchmarks/split_multitask.py [--images 500] [--image-size 64] [--teacher-epochs 20] [--quick]
                                         [--out benchmarks/results]

Data: aeforge's synthetic shapes (``data.source: shapes``; coloured squares, circles and triangles, 1-3 an
image; class = kind of the largest shape, boxes and labels per shape, a per-pixel mask), 75/25 split.
Models: torchvision ResNet-18 split after ``layer1`` with a C x B-bit quantized code; tasks: classification
(the ResNet tail), detection (FCOS head of torchvision behind an FPN-style adapter on layer2/layer3),
segmentation (torchvision FCN head on layer2, upsampled). One set of unsplit float teachers is trained
(stage 0); the multi-task student (one head, one code, three tails: head distillation from all three
teachers, then joint fine-tuning with per-task loss weights) and three single-task students (one head and
code each, the same teachers and epochs) are trained from them.

Reported per task (test set): top-1, box mAP@0.5 (VOC all-point, per-class NMS 0.5, 20 boxes), mask mIoU
(background included); the shared code's wire bytes per sample (aeforge codec blob, batch 1); and end-to-end
latency on loopback (batch 1, ONNX Runtime CPU, median of timed requests, this host): all tasks from one
code (one head, one request to one KServe v2 gRPC server hosting the three tails) against one code per task
(each single-task split model's head and request, to three servers, in sequence). Writes
``split_multitask.json``.
"""

from __future__ import annotations

import argparse
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
from aeforge.edge.split.config import parse_split_config
from aeforge.edge.split.data import load_split_data
from aeforge.edge.split.export import export_split
from aeforge.edge.split.multitask import save_multitask_run, train_multitask

REPO = Path(__file__).resolve().parents[1]
TASKS = ("cls", "det", "seg")
CONFIG = """
name: NAME
model: {family: split, backbone: resnet18, split_after: layer1, channels: CHANNELS, bits: BITS, encoder_channels: 32}
tasks: TASKS
data: {source: shapes, image_size: SIZE, shapes_count: IMAGES, shapes_per_image: 3, eval_batch_size: 128}
train: {batch_size: 32, teacher_epochs: TEACHER, head_epochs: HEAD, finetune_epochs: FINETUNE, progress: false,
        seed: 0, teacher_learning_rate: 2.0e-3, finetune_learning_rate: 1.0e-3}
"""
TASK_SPECS = {"cls": "{kind: classification, loss_weight: 1.0}", "det": "{kind: detection, loss_weight: 1.0}",
              "seg": "{kind: segmentation, loss_weight: 1.0}"}


def config_text(args: argparse.Namespace, name: str, tasks: tuple[str, ...]) -> str:
    values = {"NAME": name, "CHANNELS": args.channels, "BITS": args.bits, "SIZE": args.image_size,
              "IMAGES": args.images, "TEACHER": args.teacher_epochs, "HEAD": args.head_epochs,
              "FINETUNE": args.finetune_epochs, "TASKS": "[" + ", ".join(TASK_SPECS[t] for t in tasks) + "]"}
    text = CONFIG
    for key, value in values.items():
        text = text.replace(key, str(value))
    return text


def latency(client: Any, image: np.ndarray, tasks: list[str], repeats: int) -> dict[str, float]:
    """Median head / encode / round-trip / total seconds of ``repeats`` batch-1 requests (after 3 warm-ups)."""
    for _ in range(3):
        client.infer_tasks(image, tasks)
    runs = [client.infer_tasks(image, tasks) for _ in range(repeats)]
    return {"head_s": statistics.median(r.head_s for r in runs),
            "encode_s": statistics.median(r.encode_s for r in runs),
            "roundtrip_s": statistics.median(r.roundtrip_s for r in runs),
            "total_s": statistics.median(r.total_s for r in runs), "request_bytes": runs[0].request_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=20)  # as recorded (at 8: det teacher ~0.35 mAP)
    parser.add_argument("--head-epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not for the results)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.images, args.teacher_epochs, args.head_epochs, args.finetune_epochs, args.repeats = 80, 1, 1, 1, 5
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    from aeforge.edge.split.client import SplitClient
    from aeforge.edge.split.serve import TailServer

    multi_config = parse_split_config(config_text(args, "shapes_multitask", TASKS), source="split_multitask")
    data = load_split_data(multi_config.data)
    result: dict[str, Any] = {
        "benchmark": "split_multitask", "host": platform.node(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": args.threads, "tools": tool_versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "data": {"source": "shapes", "image_size": args.image_size, "train_images": len(data.x_train),
                 "test_images": len(data.x_test), "classes": data.num_classes},
    }
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="split-multitask-") as tmp:
        t0 = time.perf_counter()
        multi = train_multitask(multi_config, data=data)
        timings["train_multitask_s"] = time.perf_counter() - t0
        teachers = multi.model.teachers
        runs = {"multi": save_multitask_run(multi, Path(tmp) / "multi")}
        single: dict[str, Any] = {}
        for task in TASKS:
            config = parse_split_config(config_text(args, f"shapes_{task}", (task,)), source=f"split_{task}")
            t0 = time.perf_counter()
            single[task] = train_multitask(config, data=data, teachers={task: teachers[task]})
            timings[f"train_single_{task}_s"] = time.perf_counter() - t0
            runs[task] = save_multitask_run(single[task], Path(tmp) / task)
        exports = {name: export_split(run) for name, run in runs.items()}

        per_task = {}
        for task in TASKS:
            found = multi.metrics["tasks"][task]
            per_task[task] = {"kind": found["kind"], "metric": found["metric"], "teacher_unsplit": found["teacher"],
                              "multitask_split": found["student"],
                              "single_task_split": single[task].metrics["tasks"][task]["student"]}
        result["tasks"] = per_task
        result["code"] = {
            "shape": multi.metrics["code_shape"], "type": multi.metrics["code_type"],
            "shared_code_wire_bytes_per_sample": multi.metrics["bytes_per_sample"],
            "shared_code_packed_bytes_per_sample": multi.metrics["code_packed_bytes_per_sample"],
            "one_code_per_task_wire_bytes_per_sample": sum(single[t].metrics["bytes_per_sample"] for t in TASKS),
            "input_float32_bytes_per_sample": int(np.prod(multi.metrics["input_shape"])) * 4,
            "features_float32_bytes_per_sample": multi.metrics["feature_float32_bytes_per_sample"],
        }
        result["export_check"] = {name: record["check"]["tasks"] for name, record in exports.items()}

        image = data.x_test[:1].numpy()
        with TailServer(exports["multi"]["path"], port=0) as server, \
                SplitClient(exports["multi"]["path"], port=server.port, ort_threads=args.threads) as client:
            one_code = latency(client, image, list(TASKS), args.repeats)
            per_task_from_shared = {t: latency(client, image, [t], args.repeats) for t in TASKS}
        separate = {}
        for task in TASKS:
            path = exports[task]["path"]
            with TailServer(path, port=0) as server, \
                    SplitClient(path, port=server.port, ort_threads=args.threads) as client:
                separate[task] = latency(client, image, [task], args.repeats)
        per_task_total = sum(v["total_s"] for v in separate.values())
        result["latency_loopback_batch1"] = {
            "all_tasks_one_code": one_code,
            "one_task_from_shared_code": per_task_from_shared,
            "one_code_per_task": separate,
            "one_code_per_task_total_s": per_task_total,
            "one_code_per_task_head_s": sum(v["head_s"] for v in separate.values()),
            "one_code_per_task_request_bytes": sum(v["request_bytes"] for v in separate.values()),
            "latency_reduction_vs_one_code_per_task": 1.0 - one_code["total_s"] / per_task_total,
            "note": "median of timed requests on loopback gRPC (KServe v2), ONNX Runtime CPU, this host; the "
                    "machine was shared with other processes, so absolute times are noisy",
        }
    timings["total_s"] = time.perf_counter() - started
    result["wall_time"] = timings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "split_multitask_quick.json" if args.quick else "split_multitask.json"
    (out / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({"tasks": result["tasks"], "code": result["code"],
                      "latency": {k: v for k, v in result["latency_loopback_batch1"].items() if k.endswith("_s")
                                  or k.startswith("latency")}}, indent=2))


if __name__ == "__main__":
    main()
