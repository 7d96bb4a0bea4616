"""Rate-accuracy and end-to-end latency of split computing vs JPEG/WebP offloading and local inference.

    python benchmarks/split_rate_accuracy.py [--channels 2 4 8] [--bits 2 4 8] [--out benchmarks/results]

Data: scikit-learn's handwritten digits (1797 images, 10 classes; the only learnable image set available
offline here), 8x8 upsampled bilinearly to 32x32 and repeated to 3 channels, stratified 75/25 split (449
test images). Model: torchvision ResNet-18 trained from scratch (the teacher, stage 0), split after
``layer1`` (features 64x8x8, 16384 bytes as float32). For each code size C (channels) x B (bits) a student is
trained from that one teacher (head distillation, then fine-tuning with KD; see aeforge.edge.split.train).

Rates are bytes per sample on the link:

* split: the code blob of aeforge.edge.split.codec (24-byte header + dims + packed payload; also zlib);
* offloading: the 32x32 8-bit grey input (what the device holds) as raw bytes, JPEG and WebP (Pillow) at
  several qualities, decoded and classified by the unsplit teacher. (The original 8x8 digits would be 64
  bytes; the comparison is at the 32x32 input the network consumes.)

Latency (batch 1, ONNX Runtime CPU, one intra-op thread, graph optimizations on, median of timed runs, all
measured on this host): split = head + transfer + tail; local-only = the unsplit teacher on the device;
full offloading = input transfer + the teacher on the server; transfer = bytes * 8 / bandwidth at 1, 10, 100
Mbit/s (no protocol overhead or propagation delay). Target: a config with >= 75 % fewer bytes than the
float32 feature tensor at the split and <= 1 point accuracy loss vs the teacher.
Writes split_rate_accuracy.json and split_rate_accuracy.png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import tool_versions
from aeforge.edge.onnx_export import export_edge_onnx
from aeforge.edge.split.config import parse_split_config
from aeforge.edge.split.data import SplitData, from_grey_uint8, load_split_data, to_grey_uint8
from aeforge.edge.split.train import accuracy, train_split_experiment

REPO = Path(__file__).resolve().parents[1]
BANDWIDTHS_MBIT_S = (1.0, 10.0, 100.0)
QUALITIES = (5, 10, 25, 50, 75, 90)
CONFIG = """
name: split_rate_accuracy
model: {family: split, backbone: resnet18, split_after: layer1, channels: 4, bits: 4}
data: {source: digits, image_size: 32, test_fraction: 0.25, split_seed: 0}
train: {seed: 0, batch_size: 64, teacher_epochs: TEACHER, head_epochs: HEAD, finetune_epochs: FINETUNE,
        progress: false}
"""


def latency_ms(path: Path, shape: tuple[int, ...], runs: int) -> float:
    """Median batch-1 latency of an ONNX model (ORT CPU, one thread, default graph optimizations)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)}
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def transfer_ms(num_bytes: float, mbit_s: float) -> float:
    return num_bytes * 8 / (mbit_s * 1e6) * 1e3


def image_codec_curve(teacher: torch.nn.Module, data: SplitData, fmt: str) -> list[dict[str, Any]]:
    """Teacher accuracy on test images re-encoded as ``fmt`` (JPEG/WEBP) grey images at each quality."""
    from PIL import Image

    grey = to_grey_uint8(data.x_test)
    rows = []
    for quality in QUALITIES:
        decoded, sizes = [], []
        for image in grey:
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format=fmt, quality=quality)
            sizes.append(buffer.tell())
            buffer.seek(0)
            decoded.append(np.asarray(Image.open(buffer).convert("L")))
        acc = accuracy(teacher, from_grey_uint8(np.stack(decoded)), data.y_test)
        rows.append({"format": fmt.lower(), "quality": quality, "bytes_per_sample": float(np.mean(sizes)),
                     "accuracy": acc})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--head-epochs", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=6)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(2)

    text = (CONFIG.replace("TEACHER", str(args.teacher_epochs)).replace("HEAD", str(args.head_epochs))
            .replace("FINETUNE", str(args.finetune_epochs)))
    base = parse_split_config(text, source="split_rate_accuracy.py")
    data = load_split_data(base.data)
    shape = data.image_shape

    # stage 0 once: the teacher (trained inside the first experiment, then reused)
    first = train_split_experiment(base, data=data)
    teacher = first.teacher
    teacher_acc = accuracy(teacher, data.x_test, data.y_test)
    print(f"teacher accuracy {teacher_acc:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="split-bench-"))
    teacher_onnx = export_edge_onnx(teacher, shape, workdir / "teacher.onnx", fmt="fp32", opset=18).path
    local_ms = latency_ms(teacher_onnx, shape, args.latency_runs)
    feature_bytes = first.metrics["feature_float32_bytes_per_sample"]

    rows: list[dict[str, Any]] = []
    for channels in args.channels:
        for bits in args.bits:
            if (channels, bits) == (base.model.channels, base.model.bits):
                result = first
            else:
                config = dataclasses.replace(base, model=dataclasses.replace(base.model, channels=channels, bits=bits))
                result = train_split_experiment(config, teacher=copy.deepcopy(teacher), data=data)
            student, metrics = result.student, result.metrics
            head = export_edge_onnx(student.head, shape, workdir / f"head_{channels}_{bits}.onnx", opset=18).path
            tail = export_edge_onnx(student.tail, student.code_shape, workdir / f"tail_{channels}_{bits}.onnx",
                                    fmt="fp32", opset=18).path
            wire = metrics.get("code_wire_bytes_per_sample_none", metrics["code_packed_bytes_per_sample"])
            row = {
                "channels": channels, "bits": bits, "code_type": metrics["code_type"],
                "accuracy": metrics["student_accuracy"],
                "accuracy_drop_points": 100.0 * (teacher_acc - metrics["student_accuracy"]),
                "payload_bytes_per_sample": metrics["code_packed_bytes_per_sample"],
                "wire_bytes_per_sample": wire,
                "wire_zlib_bytes_per_sample": metrics.get("code_wire_bytes_per_sample_zlib"),
                "saving_vs_float_features": 1.0 - wire / feature_bytes,
                "head_flops": metrics["head_flops"], "head_params": metrics["head_params"],
                "tail_flops": metrics["tail_flops"],
                "head_ms": latency_ms(head, shape, args.latency_runs),
                "tail_ms": latency_ms(tail, student.code_shape, args.latency_runs),
            }
            row["end_to_end_ms"] = {f"{bw:g}": row["head_ms"] + transfer_ms(wire, bw) + row["tail_ms"]
                                    for bw in BANDWIDTHS_MBIT_S}
            rows.append(row)
            print(f"C={channels} B={bits}: acc {row['accuracy']:.4f} ({row['accuracy_drop_points']:+.2f} pt), "
                  f"{wire:.0f} B/sample, head {row['head_ms']:.3f} ms, tail {row['tail_ms']:.3f} ms "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)

    raw_bytes = float(math.prod(shape[1:]))  # the 32x32 8-bit grey image
    codecs = image_codec_curve(teacher, data, "JPEG") + image_codec_curve(teacher, data, "WEBP")
    raw_acc = accuracy(teacher, from_grey_uint8(to_grey_uint8(data.x_test)), data.y_test)
    offload = [{"input": "raw uint8 grey", "bytes_per_sample": raw_bytes, "accuracy": raw_acc}]
    offload += [{"input": f"{c['format']} q{c['quality']}", "bytes_per_sample": c["bytes_per_sample"],
                 "accuracy": c["accuracy"]} for c in codecs]
    for entry in offload:
        entry["end_to_end_ms"] = {f"{bw:g}": transfer_ms(entry["bytes_per_sample"], bw) + local_ms
                                  for bw in BANDWIDTHS_MBIT_S}
    targets = [r for r in rows if r["saving_vs_float_features"] >= 0.75 and r["accuracy_drop_points"] <= 1.0]
    best = min(targets, key=lambda r: r["wire_bytes_per_sample"]) if targets else None
    report = {
        "description": __doc__.split("\n\n")[1].strip() if __doc__ else "",
        "dataset": {"name": "sklearn digits", "image_shape": list(shape), "train": len(data.x_train),
                    "test": len(data.x_test), "raw_input_bytes_per_sample": raw_bytes,
                    "input_float32_bytes_per_sample": 4 * math.prod(shape)},
        "backbone": "resnet18", "split_after": "layer1",
        "epochs": {"teacher": args.teacher_epochs, "head_distillation": args.head_epochs,
                   "finetune": args.finetune_epochs},
        "teacher_accuracy": teacher_acc,
        "feature_float32_bytes_per_sample": feature_bytes,
        "bandwidths_mbit_s": list(BANDWIDTHS_MBIT_S),
        "local_only_ms": local_ms,
        "split": rows,
        "offload": offload,
        "target": {"rule": ">= 75% fewer bytes than the float32 features at the split and <= 1 point accuracy loss",
                   "met": best is not None, "smallest_config": best and {k: best[k] for k in (
                       "channels", "bits", "wire_bytes_per_sample", "saving_vs_float_features", "accuracy",
                       "accuracy_drop_points")}},
        "host": {"platform": platform.platform(), "processor": platform.processor(), "torch_threads": 2,
                 "ort_threads": 1},
        "tools": tool_versions(),
        "runtime_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split_rate_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "split_rate_accuracy.png")
    print(json.dumps(report["target"], indent=2))


def plot(report: dict[str, Any], path: Path) -> None:
    """Accuracy vs bytes/sample (log scale): split configs, JPEG, WebP, raw input, teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for bits, marker in zip(sorted({r["bits"] for r in report["split"]}), "osD^v", strict=False):
        rows = sorted((r for r in report["split"] if r["bits"] == bits), key=lambda r: r["wire_bytes_per_sample"])
        ax.plot([r["wire_bytes_per_sample"] for r in rows], [100 * r["accuracy"] for r in rows], marker=marker,
                label=f"split ResNet-18/layer1, {bits}-bit code (C = {', '.join(str(r['channels']) for r in rows)})")
    for fmt, style in (("jpeg", "--"), ("webp", ":")):
        rows = [o for o in report["offload"] if o["input"].startswith(fmt)]
        ax.plot([o["bytes_per_sample"] for o in rows], [100 * o["accuracy"] for o in rows], style, marker=".",
                color="grey" if fmt == "jpeg" else "black", label=f"{fmt.upper()} input -> teacher")
    raw = report["offload"][0]
    ax.scatter([raw["bytes_per_sample"]], [100 * raw["accuracy"]], marker="*", s=120, color="red",
               label="raw 32x32 uint8 input -> teacher", zorder=5)
    ax.axvline(report["feature_float32_bytes_per_sample"], color="purple", lw=0.8, ls="-.",
               label="float32 features at layer1")
    ax.axhline(100 * report["teacher_accuracy"] - 1, color="green", lw=0.8, ls="--", label="teacher - 1 point")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per sample on the link")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits 32x32: split computing vs input compression")
    ax.set_ylim(max(0, ax.get_ylim()[0]), 100.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
