"""Edge inference latency: torch eager, Brevitas fake-quant, onnxruntime FP32 and INT8 (QDQ), one thread.

    python benchmarks/edge_latency.py [--run RUN] [--seconds 1.0] [--out benchmarks/results]

Two models: the ECON-T encoder (from ``--run``, else the default architecture with its initial
weights; latency does not depend on the weight values) and a small conv autoencoder built from a
:class:`~aeforge.quantize.models.sequential.SequentialSpec` with 8-bit types (so every activation
is an INT8 Q/DQ pair). Per model and batch (1, 64): median and p99 latency of

* ``torch_float``: the float twin in torch eager (the reference of the ratios),
* ``brevitas``: the QAT model in torch eager (fake quantization),
* ``ort_fp32``: onnxruntime on the float twin (``torch.onnx.export``), all graph optimizations,
* ``ort_int8``: onnxruntime on the QDQ export, all graph optimizations (QDQ fused to int8 kernels),
* ``ort_int8_exact``: the QDQ export with aeforge's exact session options (no graph optimizations;
  bit-exact against Brevitas),

all through the aeforge runners with one intra-op thread, plus the harness overhead of
``OrtRunner.infer`` (feed validation + dict) over a bare ``session.run`` on the same session
(target <= 5 %), at batch 1 and 64. Writes ``edge_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import tool_versions
from aeforge.edge.onnx_export import export_edge_onnx
from aeforge.edge.runners import OrtRunner, Runner, TorchRunner

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 64)
OVERHEAD_TARGET = 0.05
_W, _B = "ap_fixed<8,1,AP_RND_CONV,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
_RELU = "ap_ufixed<7,3,AP_RND_CONV,AP_SAT>"  # unsigned 7 bits: fits an int8 Q/DQ pair
CONV_AE = {
    "input": {"shape": [16, 16, 1], "type": "ap_fixed<8,1,AP_RND_CONV,AP_SAT>"},
    "layers": [
        {"kind": "conv2d", "filters": 8, "kernel_size": 3, "strides": 2, "padding": "same", "weight": _W, "bias": _B},
        {"kind": "relu", "type": _RELU},
        {"kind": "conv2d", "filters": 16, "kernel_size": 3, "strides": 2, "padding": "same", "weight": _W, "bias": _B},
        {"kind": "relu", "type": _RELU},
        {"kind": "flatten"},
        {"kind": "dense", "units": 16, "weight": _W, "bias": _B},
        {"kind": "relu", "type": _RELU},
        {"kind": "dense", "units": 256, "weight": _W, "bias": _B},
        {"kind": "relu", "type": _RELU},
    ],
}
"""16x16x1 -> conv 8 /2 -> conv 16 /2 -> latent 16 -> 256 (= 16x16 reconstruction); 8-bit types."""


def conv_autoencoder() -> tuple[Any, Any, tuple[int, ...]]:
    """(QAT model, float twin, channels-first sample shape) of the small conv autoencoder."""
    from aeforge.quantize.models.sequential import build_sequential

    torch.manual_seed(0)
    qat = build_sequential(CONV_AE).eval()
    float_model = build_sequential(CONV_AE, quantized=False).eval()
    float_model.load_state_dict(qat.state_dict(), strict=False)
    return qat, float_model, tuple(qat.input_shape)


def econt_encoder(run: Path | None) -> tuple[Any, Any, tuple[int, ...]]:
    """(QAT encoder, float encoder, sample shape) of ECON-T: from a trained run, else freshly built."""
    if run is not None:
        from aeforge.quantize.train import load_trained_model

        qat = load_trained_model(run, "qat").encoder
        float_encoder = load_trained_model(run, "float").encoder
    else:
        from aeforge.config import ModelConfig, QuantConfig
        from aeforge.quantize.models.econt import build_autoencoder

        torch.manual_seed(0)
        qat = build_autoencoder(ModelConfig(), QuantConfig()).encoder
        float_encoder = build_autoencoder(ModelConfig(), None).encoder
        float_encoder.load_state_dict(qat.state_dict(), strict=False)
    return qat.eval(), float_encoder.eval(), tuple(qat.input_shape)


def export_float_onnx(module: Any, shape: tuple[int, ...], path: Path) -> Path:
    """The float twin as ONNX (TorchScript exporter, dynamic batch)."""
    torch.onnx.export(module, (torch.zeros(1, *shape),), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def time_runner(runner: Runner, feed: dict[str, np.ndarray], seconds: float) -> dict[str, float]:
    """Median / p99 wall time of ``runner.infer`` after a warm-up (at least 50 timed calls)."""
    for _ in range(20):
        runner.infer(feed)
    latencies = []
    start = time.perf_counter()
    while len(latencies) < 50 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        runner.infer(feed)
        latencies.append(time.perf_counter() - t0)
    lat = np.asarray(latencies)
    return {"median_s": float(np.median(lat)), "p99_s": float(np.percentile(lat, 99)), "runs": len(lat)}


def harness_overhead(onnx_path: Path, feed: dict[str, np.ndarray], rounds: int = 31, calls: int = 300) -> dict:
    """Cost of ``OrtRunner.infer`` over a bare ``session.run`` on the same session.

    Each round times ``calls`` calls of each variant back to back (the order rotating between
    rounds); the overhead is the median over rounds of the per-round ratio, which cancels the
    machine's slow drifts.
    """
    with OrtRunner(onnx_path, threads=1, exact=False) as runner:
        session, names = runner.session, runner.output_names()
        variants = {
            "bare": lambda: session.run(names, feed),
            "checked": lambda: runner.infer(feed),
            "unchecked": lambda: runner.infer(feed, check_inputs=False),
        }
        for call in variants.values():
            for _ in range(calls):
                call()
        per_round: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for index in range(rounds):
            for key in order[index % 3:] + order[: index % 3]:
                t0 = time.perf_counter()
                for _ in range(calls):
                    variants[key]()
                per_round[key].append((time.perf_counter() - t0) / calls)
    bare = np.asarray(per_round["bare"])
    overhead = float(np.median(np.asarray(per_round["checked"]) / bare) - 1)
    unchecked = float(np.median(np.asarray(per_round["unchecked"]) / bare) - 1)
    return {"bare_session_run_s": float(np.median(bare)), "runner_infer_s": float(np.median(per_round["checked"])),
            "runner_infer_unchecked_s": float(np.median(per_round["unchecked"])), "overhead": overhead,
            "overhead_unchecked": unchecked, "target": OVERHEAD_TARGET, "meets_target": overhead <= OVERHEAD_TARGET}


def bench_model(name: str, qat: Any, float_model: Any, shape: tuple[int, ...], scratch: Path,
                seconds: float) -> dict[str, Any]:
    qdq = export_edge_onnx(qat, shape, scratch / f"{name}_qdq.onnx", fmt="qdq")
    fp32 = export_float_onnx(float_model, shape, scratch / f"{name}_fp32.onnx")
    runners = {
        "torch_float": lambda: TorchRunner(float_model, shape, threads=1),
        "brevitas": lambda: TorchRunner(qat, shape, threads=1),
        "ort_fp32": lambda: OrtRunner(fp32, threads=1, exact=False),
        "ort_int8": lambda: OrtRunner(qdq.path, threads=1, exact=False),
        "ort_int8_exact": lambda: OrtRunner(qdq.path, threads=1, exact=True),
    }
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"input_shape": list(shape), "qdq_trt_violations": len(qdq.trt_violations),
                              "batches": {}}
    for batch in BATCHES:
        x = rng.uniform(0, 1, size=(batch, *shape)).astype(np.float32)
        rows: dict[str, Any] = {}
        for label, make in runners.items():
            with make() as runner:
                feed = {next(iter(runner.input_metadata())): x}
                rows[label] = time_runner(runner, feed, seconds)
        reference = rows["torch_float"]["median_s"]
        for row in rows.values():
            row["ratio_to_torch_float"] = row["median_s"] / reference
        result["batches"][str(batch)] = rows
    result["harness_overhead"] = {
        str(batch): harness_overhead(qdq.path, {qdq.input_name: np.zeros((batch, *shape), np.float32)})
        for batch in BATCHES
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained ECON-T run (default: the untrained default architecture)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per runner and batch")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    models = {"econt_encoder": econt_encoder(args.run), "conv_autoencoder": conv_autoencoder()}
    with tempfile.TemporaryDirectory(prefix="aeforge-bench-edge-") as scratch:
        results = {name: bench_model(name, *model, Path(scratch), args.seconds) for name, model in models.items()}
    report = {
        "benchmark": "edge_latency",
        "threads": 1,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "tools": tool_versions(),
        "econt_source": str(args.run) if args.run else "default architecture, initial weights",
        "models": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "edge_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, result in results.items():
        for batch, rows in result["batches"].items():
            line = "  ".join(f"{k} {v['median_s'] * 1e6:.0f}us (x{v['ratio_to_torch_float']:.2f})"
                             for k, v in rows.items())
            print(f"{name} b{batch}: {line}")
        for batch, overhead in result["harness_overhead"].items():
            print(f"{name} b{batch} runner overhead vs session.run: {overhead['overhead']:+.1%} "
                  f"({overhead['runner_infer_s'] - overhead['bare_session_run_s']:.2g} s per call; "
                  f"unchecked {overhead['overhead_unchecked']:+.1%})")


if __name__ == "__main__":
    main()
