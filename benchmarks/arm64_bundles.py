"""Raspberry Pi bundles on an emulated aarch64 userland: bit-exactness and cost of the check, cold and warm.

    python benchmarks/arm64_bundles.py [--n 10000] [--out benchmarks/results] [--cold] [--keep DIR]

Trains four small runs (ECON-T with the default, int8 and 4-bit types; a split head: MobileNetV2 cut after
``features.1``, 16x16 images), deploys each with ``aeforge deploy --device rpi --check-vectors N``, then runs
``.ci/arm64_bundles.py`` on them: each bundle's requirements.txt installed by the aarch64 pip into a venv of an
aarch64 Debian bookworm root, ``run.py --self-check`` on the N recorded vectors and a short ``run.py --bench``
under qemu-user. With ``--cold`` the first pass builds a fresh root (debootstrap, wheels, venv) in a temporary
folder and a second pass reuses it (warm); otherwise only the cached root is used.

Writes ``arm64_bundles.json``: per bundle n vectors, exact count, max error, wall time under emulation,
onnxruntime version and execution providers on aarch64; root and venv setup times. Timings are of the
emulator on this host, never Raspberry Pi latency. Needs root (chroot, binfmt_misc), debootstrap and
qemu-user-static.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions
from aeforge.cli import main as aeforge_main
from aeforge.edge.deploy import RPI_REQUIREMENTS

REPO = Path(__file__).resolve().parents[1]
RND = "AP_RND_CONV,AP_SAT"
ECONT = "name: {name}\ndata:\n  synthetic: {{n_events: 10000, seed: 3}}\ntrain:\n  float_epochs: 3\n  qat_epochs: 2\n"
CONFIGS = {
    "econt-default": ECONT.format(name="econt-default"),
    "econt-int8": ECONT.format(name="econt-int8") + (
        f"quant:\n  input: ap_fixed<8,2,{RND}>\n  weight: ap_fixed<8,2,{RND}>\n  bias: ap_fixed<8,2,{RND}>\n"
        f"  conv_activation: ap_ufixed<7,3,{RND}>\n  latent: ap_ufixed<7,1,{RND}>\n"),
    "econt-4bit": ECONT.format(name="econt-4bit") + (
        f"quant:\n  weight: ap_fixed<4,2,{RND}>\n  bias: ap_fixed<4,2,{RND}>\n  latent: ap_ufixed<4,1,{RND}>\n"),
    "split-head": (
        "name: split-head\n"
        "model: {family: split, backbone: mobilenet_v2, split_after: features.1, channels: 2, bits: 4, "
        "encoder_channels: 8}\n"
        "data: {source: fake, image_size: 16, max_samples: 256, fake_size: 256, fake_classes: 4}\n"
        "train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1}\n"),
}


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("arm64_bundles", REPO / ".ci" / "arm64_bundles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_bundles(work: Path, n: int) -> dict[str, Path]:
    """Train, then deploy each config as an rpi bundle with ``n`` recorded vectors."""
    bundles = {}
    for name, text in CONFIGS.items():
        (work / f"{name}.yaml").write_text(text)
        run, bundle = work / "runs" / name, work / "bundles" / name
        if aeforge_main(["train", str(work / f"{name}.yaml"), "--out", str(run), "--quiet"]) != 0:
            raise SystemExit(f"training {name} failed")
        if aeforge_main(["deploy", str(run), "--device", "rpi", "--out", str(bundle), "--check-vectors", str(n)]):
            raise SystemExit(f"deploying {name} failed")
        bundles[name] = bundle
    return bundles


def summarize(report: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Per bundle: what the issue asks for, from the check's report."""
    rows = {}
    for name, entry in zip(names, report["bundles"], strict=True):
        rows[name] = {
            "model": entry["model"], "module": entry["module"], "n": entry.get("n"), "exact": entry.get("exact"),
            "max_abs_err": entry.get("max_abs_err"), "max_err_lsb": entry.get("max_err_lsb"),
            "passed": entry["passed"], "emulated_wall_s": entry.get("self_check_process_s"),
            "emulated_infer_s": entry.get("infer_s"), "onnxruntime": entry.get("runtime_version"),
            "providers": entry.get("providers"), "available_providers": entry.get("available_providers"),
            "python": entry.get("python"), "numpy": entry.get("numpy"), "machine": entry.get("machine"),
            "requirements_complete": entry.get("requirements_complete"),
            "emulated_bench_batch1": {k: entry.get("bench", {}).get(k) for k in ("label", "latency_s", "runs")},
        }
    venvs = report["venvs"]
    return {"root": {k: report["root"].get(k) for k in ("suite", "method", "python", "glibc", "cached", "setup_s",
                                                        "build_s")},
            "venv_setup_s": [round(v.get("setup_s", 0.0), 1) for v in venvs], "wall_s": report["wall_s"],
            "passed": report["passed"], "bundles": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="recorded vectors per bundle (default 10000)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--cold", action="store_true", help="first pass on a fresh root (then a warm pass)")
    parser.add_argument("--bench-seconds", type=float, default=2.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep runs and bundles in this folder")
    args = parser.parse_args()
    arm64 = _script()
    problem = arm64.emulation_problem()
    if problem:
        print(f"emulated aarch64 unavailable: {problem}", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="aeforge-arm64-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bundles = make_bundles(work, args.n)
    make_s = time.monotonic() - started
    names, paths = list(bundles), list(bundles.values())
    passes = {}
    fresh = Path(tempfile.mkdtemp(prefix="arm64-root-cold-", dir=arm64.default_root().parent)) if args.cold else None
    root = (fresh / "root") if fresh else arm64.default_root()
    try:
        for label in (("cold", "warm") if fresh else ("warm",)):
            report = arm64.run_checks(paths, root, bench_seconds=args.bench_seconds)
            passes[label] = summarize(report, names)
            print(f"{label}: {report['wall_s']} s, passed={report['passed']}")
    finally:
        if fresh:
            shutil.rmtree(fresh, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    last = passes["warm"]
    result = {
        "benchmark": "arm64_bundles",
        "what": "rpi deploy bundles on an emulated aarch64 Debian bookworm userland (qemu-user): run.py --self-check "
                "on the recorded vectors (bit for bit) and run.py --bench; timings are the emulator's on this host, "
                "not Raspberry Pi latency",
        "host": {"machine": platform.machine(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "emulator": report["emulator"],
        "tools": tool_versions(),
        "requirements": list(RPI_REQUIREMENTS),
        "n": args.n,
        "train_and_deploy_s": round(make_s, 1),
        "bundles": last["bundles"],
        "passes": passes,
        "passed": all(p["passed"] for p in passes.values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arm64_bundles.json").write_text(json.dumps(portable(result), indent=2) + "\n", encoding="utf-8")
    for name, row in last["bundles"].items():
        print(f"{name:<15} n={row['n']} exact={row['exact']} max_err={row['max_abs_err']} "
              f"emulated {row['emulated_wall_s']} s  onnxruntime {row['onnxruntime']} {row['providers']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
