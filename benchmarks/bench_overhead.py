"""Harness overhead of ``aeforge bench``: ``measure_latency`` over the OrtRunner query vs a bare ``session.run`` loop.

    python benchmarks/bench_overhead.py [--run RUN] [--rounds 7] [--seconds 3] [--out benchmarks/results]

The model is the ECON-T encoder's QDQ export (from ``--run``, else the default architecture with its initial
weights; latency does not depend on the weight values) under the exact session options bench uses, batch 1,
one intra-op thread. Per round, in alternating order on the same session:

* ``bench``: :func:`aeforge.benchmarks.latency.measure_latency` on ``functools.partial(runner.infer, feed,
  False)`` -- exactly the query ``aeforge bench --runner ort`` times -- for ``--seconds``; per-query time =
  duration / queries (the mean of its completion-to-completion latencies);
* ``bare``: ``for _ in range(n): session.run(names, feed)`` with ``n`` calibrated to the same duration, timed
  as a whole; per-call time = elapsed / n.

The overhead is the median over rounds of ``bench / bare - 1`` (per-round ratios cancel slow drifts of a
shared machine); target <= 5 %. Writes ``bench_overhead.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions
from aeforge.benchmarks.latency import measure_latency
from aeforge.edge.onnx_export import export_edge_onnx
from aeforge.edge.runners import OrtRunner

REPO = Path(__file__).resolve().parents[1]
OVERHEAD_TARGET = 0.05


def econt_encoder(run: Path | None) -> tuple[Any, tuple[int, ...], np.ndarray]:
    """(QAT encoder, channels-first sample shape, one realistic input of batch 1)."""
    if run is not None:
        from aeforge.stages import hardware_model, verification_inputs

        model = hardware_model(run)
        return model.module, tuple(model.input_shape), verification_inputs(model, 1)
    import torch

    from aeforge.config import ModelConfig, QuantConfig
    from aeforge.quantize.models.econt import build_autoencoder

    torch.manual_seed(0)
    encoder = build_autoencoder(ModelConfig(), QuantConfig()).encoder.eval()
    shape = tuple(encoder.input_shape)
    return encoder, shape, np.random.default_rng(0).uniform(0, 1, size=(1, *shape))


def bench_round(query: Any, seconds: float) -> tuple[float, int]:
    """Per-query seconds and query count of the bench path (``measure_latency``, short warm-up)."""
    result = measure_latency(query, batch_size=1, scenario="single-stream", warmup_s=0.2, warmup_count=16,
                             min_duration_s=seconds, min_queries=1, max_duration_s=seconds * 4,
                             keep_latencies=False, metadata={})
    if not result.valid:
        raise RuntimeError(f"bench round invalid: {result.invalid_reasons}")
    return result.duration_s / result.n_queries, result.n_queries


def bare_round(session: Any, names: list[str], feed: dict[str, np.ndarray], calls: int) -> float:
    """Per-call seconds of a bare ``session.run`` loop of ``calls`` calls."""
    run = session.run
    for _ in range(200):  # the same short warm-up as the bench round gets
        run(names, feed)
    start = time.perf_counter_ns()
    for _ in range(calls):
        run(names, feed)
    return (time.perf_counter_ns() - start) * 1e-9 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained ECON-T run (default: the untrained default architecture)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per variant and round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    module, shape, x = econt_encoder(args.run)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="aeforge-bench-overhead-") as scratch:
        exported = export_edge_onnx(module, shape, Path(scratch) / "encoder_qdq.onnx", fmt="qdq")
        with OrtRunner(exported.path, threads=1, exact=True) as runner:
            (name, (dtype, _)), = runner.input_metadata().items()
            feed = {name: np.ascontiguousarray(x.astype(dtype))}
            runner.infer(feed)  # validated once, as bench does
            query = functools.partial(runner.infer, feed, False)
            session, names = runner.session, runner.output_names()
            calls = max(int(args.seconds / bare_round(session, names, feed, 2000)), 1000)
            for index in range(args.rounds):
                if index % 2 == 0:
                    bench_s, n_bench = bench_round(query, args.seconds)
                    bare_s = bare_round(session, names, feed, calls)
                else:
                    bare_s = bare_round(session, names, feed, calls)
                    bench_s, n_bench = bench_round(query, args.seconds)
                rounds.append({"bench_per_query_s": bench_s, "bare_per_call_s": bare_s,
                               "ratio": bench_s / bare_s, "bench_queries": n_bench, "bare_calls": calls,
                               "order": "bench-first" if index % 2 == 0 else "bare-first"})
                print(f"round {index + 1}: bench {bench_s * 1e6:.3f} us/query, bare {bare_s * 1e6:.3f} us/call, "
                      f"ratio {bench_s / bare_s:.4f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    overhead = statistics.median(ratios) - 1
    report = {
        "benchmark": "bench_overhead",
        "model": "ECON-T encoder, QDQ export, onnxruntime CPU, exact session options",
        "econt_source": str(args.run) if args.run else "default architecture, initial weights",
        "batch": 1,
        "threads": 1,
        "rounds": args.rounds,
        "seconds_per_variant": args.seconds,
        "median_ratio": statistics.median(ratios),
        "overhead": overhead,
        "per_round_ratios": ratios,
        "median_bench_per_query_s": statistics.median(r["bench_per_query_s"] for r in rounds),
        "median_bare_per_call_s": statistics.median(r["bare_per_call_s"] for r in rounds),
        "target": OVERHEAD_TARGET,
        "meets_target": overhead <= OVERHEAD_TARGET,
        "per_round": rounds,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else None},
        "tools": tool_versions(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_overhead.json").write_text(json.dumps(portable(report), indent=2) + "\n")
    print(f"median ratio {report['median_ratio']:.4f} (overhead {overhead:+.2%}, target <= {OVERHEAD_TARGET:.0%}): "
          f"{'meets' if report['meets_target'] else 'MISSES'} the target")


if __name__ == "__main__":
    main()
