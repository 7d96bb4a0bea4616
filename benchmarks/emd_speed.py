"""Throughput of the batched Earth Mover's Distance (target: 10,000 events in under a minute).

    python benchmarks/emd_speed.py [--n 10000] [--out benchmarks/results]

Scores synthetic events against their best-choice (4 cells) and PCA-16 reconstructions, three
repeats each, and writes ``emd_speed.json`` (seconds per 10k events, events per second).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from aeforge.artifact import tool_versions
from aeforge.data.hgcal.readouts import normalize_econt
from aeforge.data.hgcal.synthetic import generate_readouts
from aeforge.quantize import metrics

REPO = Path(__file__).resolve().parents[1]
TARGET_S_PER_10K = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    events, _ = normalize_econt(generate_readouts(args.n + 20_000, seed=5))
    train, test = events[: 20_000], events[20_000:]
    metrics.emd(test[:10], test[:10])  # import POT and warm up outside the timing
    reconstructions = {
        "best_choice_4": metrics.best_choice(test, 4),
        "pca16": metrics.PCABaseline(16).fit(train).reconstruct(test),
    }
    results = {}
    for name, reconstruction in reconstructions.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            metrics.emd(test, reconstruction)
            times.append(time.perf_counter() - start)
        median_s = statistics.median(times)
        results[name] = {
            "median_s": round(median_s, 4),
            "s_per_10k": round(median_s * 10_000 / args.n, 4),
            "events_per_s": round(args.n / median_s, 1),
        }
    report = {
        "benchmark": "emd_speed",
        "n_events": args.n,
        "repeats": args.repeats,
        "target_s_per_10k": TARGET_S_PER_10K,
        "meets_target": all(r["s_per_10k"] <= TARGET_S_PER_10K for r in results.values()),
        "results": results,
        "cpu_count": os.cpu_count(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "emd_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
