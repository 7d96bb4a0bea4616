"""From a trained ECON-T run to a verified hls4ml project: wall time, C-sim throughput, fidelity.

    python benchmarks/econt_hls.py [--run RUN] [--n 10000] [--out benchmarks/results]

Without ``--run`` a model is trained first (the demo's configuration). For every backend/io
combination the run is copied to a scratch directory and timed through the same functions as
``aeforge export qonnx`` + ``aeforge hls`` + ``aeforge verify --n N`` (target: at most 30 s on 2
cores, compile included); C-simulation throughput is measured on its own on the same N events.
Writes ``econt_hls.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from aeforge.artifact import tool_versions
from aeforge.hls.csim import run_csim
from aeforge.stages import (
    HlsOptions,
    export_qonnx_stage,
    hardware_model,
    hls_project_dir,
    hls_stage,
    verification_inputs,
    verify_stage,
)
from aeforge.verification import nchw_to_nhwc

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 30.0
CONFIGURATIONS = [("Vitis", "io_parallel"), ("Vitis", "io_stream"), ("Catapult", "io_parallel"),
                  ("Catapult", "io_stream")]


def trained_run(scratch: Path) -> Path:
    from aeforge.demo import demo_config
    from aeforge.quantize.train import save_training_run, train_experiment

    run = scratch / "trained"
    save_training_run(train_experiment(demo_config(), progress=True), run)
    return run


def measure(source_run: Path, scratch: Path, backend: str, io_type: str, n: int) -> dict:
    run = scratch / f"{backend}-{io_type}"
    shutil.copytree(source_run, run, ignore=shutil.ignore_patterns("qonnx", "hls"))
    start = time.perf_counter()
    export_qonnx_stage(run)
    exported = time.perf_counter()
    card = hls_stage(run, HlsOptions(backend=backend, io_type=io_type))
    built = time.perf_counter()
    results = verify_stage(run, n=n)
    verified = time.perf_counter()
    inputs = nchw_to_nhwc(verification_inputs(hardware_model(run), n))
    csim = run_csim(card["project"], inputs)
    return {
        "backend": backend,
        "io_type": io_type,
        "export_s": round(exported - start, 2),
        "hls_project_s": round(built - exported, 2),
        "verify_s": round(verified - built, 2),
        "run_to_verified_project_s": round(verified - start, 2),
        "meets_target": verified - start <= TARGET_S,
        "csim_events_per_s": round(csim.events_per_s, 1),
        "bit_exact": results["bit_exact"],
        "targets": results["targets"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained run (default: train one with the demo configuration)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aeforge-bench-hls-") as scratch_name:
        scratch = Path(scratch_name)
        source = args.run or trained_run(scratch)
        rows = []
        for backend, io_type in CONFIGURATIONS:
            row = measure(source, scratch, backend, io_type, args.n)
            start = time.perf_counter()
            run_csim(hls_project_dir(scratch / f"{backend}-{io_type}"),
                     nchw_to_nhwc(verification_inputs(hardware_model(scratch / f"{backend}-{io_type}"), args.n)))
            row["csim_wall_events_per_s_incl_subprocess"] = round(args.n / (time.perf_counter() - start), 1)
            rows.append(row)
            print(f"{backend:9} {io_type:12} run->verified {row['run_to_verified_project_s']:6.1f} s  "
                  f"csim {row['csim_events_per_s']:9.0f} ev/s  bit-exact {row['bit_exact']}")
    report = {
        "benchmark": "econt_hls",
        "n_vectors": args.n,
        "target_s": TARGET_S,
        "results": rows,
        "cpu_count": os.cpu_count(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "econt_hls.json").write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
