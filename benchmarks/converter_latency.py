"""CBNet-style converting autoencoder on digits: accuracy and batch-1 latency against the heavy classifier.

    python benchmarks/converter_latency.py [--config aeforge/configs/converter_digits.yaml] [--run RUN]
                                           [--seconds 12] [--rounds 6] [--out benchmarks/results]

Trains ``--config`` (``aeforge train``, model.family: converter) unless ``--run`` names a trained run,
exports the three models of the run as QDQ ONNX (``aeforge export onnx``: converter + light as ONE model,
the heavy classifier, the light classifier alone) and checks each against Brevitas on the test images
(bit for bit under onnxruntime's exact session options) and against the TensorRT INT8 rules. Then, on this
CPU, with one intra-op thread and batch 1:

* ``ort_exact``: onnxruntime with aeforge's exact session options (what ``aeforge bench --runner ort`` and
  the Raspberry Pi bundle run; bit-exact against Brevitas), timed in ``--rounds`` interleaved rounds (the
  models take turns, so load from other processes on this shared machine hits all of them alike), each
  model ``--seconds / --rounds`` seconds a round, one test image a query; median, p90, p99 of all queries,
  and the median of each round;
* ``ort_optimized``: onnxruntime with all graph optimizations (QDQ fused into int8 kernels; not bit-exact),
  same protocol, and its accuracy;
* ``aeforge_bench``: ``aeforge bench RUN --runner ort --threads 1`` (the harness the CLI runs, baselines
  included), short windows, energy per inference only where a power meter exists (else the reason).

Accuracy is top-1 on the held-out test split (stratified 20 % of the 1797 digits) under onnxruntime.
Target (issue 14): converter + light >= 2x lower median latency than the heavy classifier at <= 1 point
accuracy loss. Writes converter_latency.json (paths relative to the repository).
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
from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions
from aeforge.cli import main as aeforge_main
from aeforge.converter.compare import PIPELINE_ROLE, baseline_runs, compare_with_baselines, export_with_baselines
from aeforge.edge.runners import OrtRunner

REPO = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 2.0
ACCURACY_LOSS_TARGET_POINTS = 1.0


def time_interleaved(paths: dict[str, Path], images: np.ndarray, seconds: float, rounds: int,
                     exact: bool) -> dict[str, dict[str, Any]]:
    """Batch-1 latencies of every model, ``rounds`` rounds in turn, one thread; plus accuracy inputs."""
    runners = {role: OrtRunner(path, threads=1, exact=exact) for role, path in paths.items()}
    latencies: dict[str, list[float]] = {role: [] for role in paths}
    round_medians: dict[str, list[float]] = {role: [] for role in paths}
    for runner in runners.values():
        runner.activate()
    try:
        feeds = [{"input": images[i:i + 1].astype(np.float32)} for i in range(len(images))]
        for runner in runners.values():  # warm-up
            for feed in feeds[:32]:
                runner.infer(feed, check_inputs=False)
        for _ in range(rounds):
            for role, runner in runners.items():
                times = []
                end = time.perf_counter() + seconds / rounds
                index = 0
                while time.perf_counter() < end:
                    feed = feeds[index % len(feeds)]
                    start = time.perf_counter()
                    runner.session.run(None, feed)
                    times.append(time.perf_counter() - start)
                    index += 1
                latencies[role] += times
                round_medians[role].append(float(np.median(times)))
        logits = {role: np.concatenate([runner.session.run(None, {"input": images[i:i + 256]})[0]
                                        for i in range(0, len(images), 256)]) for role, runner in runners.items()}
    finally:
        for runner in runners.values():
            runner.deactivate()
    out = {}
    for role, values in latencies.items():
        lat = np.asarray(values)
        out[role] = {"median_s": float(np.median(lat)), "p90_s": float(np.percentile(lat, 90)),
                     "p99_s": float(np.percentile(lat, 99)), "queries": int(lat.size),
                     "round_medians_s": round_medians[role], "logits": logits[role]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "aeforge" / "configs" / "converter_digits.yaml")
    parser.add_argument("--run", type=Path, help="a trained converter run (default: train --config)")
    parser.add_argument("--seconds", type=float, default=12.0, help="timed seconds per model and session kind")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--bench-seconds", type=float, default=2.0, help="aeforge bench window per model")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="aeforge-converter-") as scratch:
        run = args.run
        train_s = None
        if run is None:
            run = Path(scratch) / "run"
            begin = time.perf_counter()
            if aeforge_main(["train", str(args.config), "--out", str(run), "--quiet"]) != 0:
                raise SystemExit("aeforge train failed")
            train_s = time.perf_counter() - begin
        card = json.loads((run / "card.json").read_text())
        exported = export_with_baselines(run, force=True)
        runs = {PIPELINE_ROLE: run, **baseline_runs(run)}
        images = np.load(run / "verification_inputs.npy").astype(np.float32)
        labels = np.load(run / "verification_labels.npy")
        paths = {role: Path(record["onnx"]) for role, record in exported.items()}
        timings = {kind: time_interleaved(paths, images, args.seconds, args.rounds, exact=kind == "ort_exact")
                   for kind in ("ort_exact", "ort_optimized")}
        bench = compare_with_baselines(run, _bench_own(run, args.bench_seconds), min_duration_s=args.bench_seconds,
                                       min_queries=100)
        models = {}
        for role, record in exported.items():
            row: dict[str, Any] = {
                "accuracy": record["accuracy_ort"], "test_images": record["n"],
                "ort_equals_brevitas": record["exact"], "trt_rule_errors": record["trt_errors"],
                "trt_rule_notes": record["trt_notes"], "macs": card["metrics"]["macs"][role],
                "parameters": card["metrics"]["parameters"][role], "run": str(runs[role]),
            }
            for kind, timing in timings.items():
                entry = dict(timing[role])
                predicted = entry.pop("logits").argmax(axis=1)
                if kind == "ort_optimized":
                    entry["accuracy"] = float((predicted == labels).mean())
                row[kind] = entry
            row["aeforge_bench"] = bench["comparison"][role]
            models[role] = row
        wall_s = time.perf_counter() - started
    heavy, pipeline = models["heavy"], models[PIPELINE_ROLE]
    summary = {kind: {"speedup_vs_heavy": heavy[kind]["median_s"] / pipeline[kind]["median_s"],
                      "light_speedup_vs_heavy": heavy[kind]["median_s"] / models["light"][kind]["median_s"]}
               for kind in timings}
    loss_points = 100 * (heavy["accuracy"] - pipeline["accuracy"])
    summary["accuracy_loss_points"] = loss_points
    summary["light_alone_accuracy_loss_points"] = 100 * (heavy["accuracy"] - models["light"]["accuracy"])
    summary["target"] = {"speedup": SPEEDUP_TARGET, "accuracy_loss_points": ACCURACY_LOSS_TARGET_POINTS,
                         "met": bool(summary["ort_exact"]["speedup_vs_heavy"] >= SPEEDUP_TARGET
                                     and loss_points <= ACCURACY_LOSS_TARGET_POINTS)}
    report = {
        "benchmark": "converter_latency",
        "config": str(args.config), "run_given": args.run is not None,
        "data": card["converter"]["data"], "easy": card["converter"]["easy"],
        "easy_fraction": card["metrics"]["easy_fraction"],
        "accuracy_qat_card": card["metrics"]["accuracy_qat"],
        "accuracy_hard_test": card["metrics"]["accuracy_hard_test"],
        "protocol": {"batch": 1, "intra_op_threads": 1, "seconds_per_model": args.seconds, "rounds": args.rounds,
                     "query": "one test image per call, cycling through the test split",
                     "ort_exact": "ORT_DISABLE_ALL (aeforge bench --runner ort, Raspberry Pi bundle; bit-exact)",
                     "ort_optimized": "ORT_ENABLE_ALL (QDQ fused into int8 kernels; not bit-exact)"},
        "models": models,
        "summary": summary,
        "energy": "no power meter on this host (see models.*.aeforge_bench.energy_status)",
        "host": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                 "cpus": os.cpu_count(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
                 "note": "a shared machine: other processes ran during the measurement"},
        "tools": tool_versions(),
        "train_s": round(train_s, 1) if train_s is not None else None,
        "wall_s": round(wall_s, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "converter_latency.json").write_text(json.dumps(portable(report), indent=2) + "\n")
    for role, row in models.items():
        exact, fast = row["ort_exact"], row["ort_optimized"]
        print(f"{role:<16} accuracy {100 * row['accuracy']:.2f}%  exact p50 {exact['median_s'] * 1e6:.1f} us "
              f"p90 {exact['p90_s'] * 1e6:.1f} us  optimized p50 {fast['median_s'] * 1e6:.1f} us  "
              f"{row['macs']:,} MACs")
    print(f"converter + light vs heavy: {summary['ort_exact']['speedup_vs_heavy']:.2f}x lower median latency "
          f"(exact), {summary['ort_optimized']['speedup_vs_heavy']:.2f}x (optimized), accuracy loss "
          f"{loss_points:.2f} points; target met: {summary['target']['met']}; wall {wall_s:.0f} s")


def _bench_own(run: Path, seconds: float) -> dict[str, Any]:
    from aeforge.benchmarks.bench import bench_stage

    return bench_stage(run, runner="ort", threads=1, meter="auto", min_duration_s=seconds, min_queries=100,
                       save=False)


if __name__ == "__main__":
    main()
