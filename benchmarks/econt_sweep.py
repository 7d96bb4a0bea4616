"""ECON-T bit-width sweep (weight bits {4,5,6,8} x latent bits {3,5,7,9}, 16 trials): Pareto front, and wall
time of the local process pool (2 workers) against Ray with 2 local workers.

    python benchmarks/econt_sweep.py [--only local|ray|both] [--work /tmp/aeforge-econt-sweep]
                                     [--n-events 20000] [--float-epochs 10] [--qat-epochs 5] [--energy mac]

The sweep is ``aeforge/configs/sweep_econt_bits.yaml`` on the synthetic default with training scaled down by
the options (recorded in the JSON). Both runs do the same 16 trials: train, EMD on held-out events, QONNX
export, RTL (da4ml) with its Verilator interface check, Yosys xc7 LUT/FF when Yosys is installed (else the
tool-free estimate), the energy estimate (``--energy``: ``mac`` programmable-MAC model, or ``netlist`` from a
Yosys generic-gate netlist, minutes per trial), and bit-exact verification. The Ray run starts its own
single-node cluster (``ray start --head --block --num-cpus 2``) and stops exactly that one afterwards.
Writes ``benchmarks/results/econt_sweep.json`` after each run (``status`` says whether both are in).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions, write_json_atomic
from aeforge.sweep.driver import run_sweep
from aeforge.sweep.space import SweepSpec, parse_sweep

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "aeforge" / "configs" / "sweep_econt_bits.yaml"


def benchmark_spec(args: argparse.Namespace, work: Path) -> SweepSpec:
    """The packaged sweep with the scaled-down training of this benchmark (written beside the sweeps)."""
    raw = yaml.safe_load(SWEEP_FILE.read_text(encoding="utf-8"))
    raw["base"] = str(SWEEP_FILE.parent / raw["base"])
    raw["set"] = {**raw.get("set", {}), "train.float_epochs": args.float_epochs, "train.qat_epochs": args.qat_epochs,
                  "data.synthetic.n_events": args.n_events}
    raw["cost"] = {**raw.get("cost", {}), "energy": args.energy}
    path = work / "sweep_econt_bits_benchmark.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return parse_sweep(path.read_text(encoding="utf-8"), source=str(path), base_dir=path.parent)


@contextlib.contextmanager
def ray_head(num_cpus: int) -> Iterator[str]:
    """A private single-node Ray cluster (its own process group, stopped on exit); yields its address."""
    import ray

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="aeray", dir="/tmp")
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--port", str(port),
                             "--disable-usage-stats", "--include-dashboard=false", "--temp-dir", temp_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ray.init(address=address, log_to_driver=False)
                ray.shutdown()
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Ray head at {address} did not start") from None
                time.sleep(0.5)
        yield address
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                head.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_one(spec: SweepSpec, out: Path, ray_address: str | None, workers: int) -> dict[str, Any]:
    resume = (out / "journal.jsonl").is_file()
    load_before = os.getloadavg()
    start = time.perf_counter()
    summary = run_sweep(spec, out, workers=workers, ray_address=ray_address, resume=resume,
                        log=lambda text: print(f"[{'ray' if ray_address else 'local'}] {text}", flush=True))
    wall_s = time.perf_counter() - start
    trials = []
    for t in summary["trials"]:
        m = t["metrics"]
        trials.append({
            "trial": t["trial"], "params": t["params"], "status": t["status"], "error": t["error"],
            "attempts": t["attempts"], "wall_s": t["wall_s"], "stage_s": t["stage_s"],
            **{k: m.get(k) for k in ("emd", "emd_median", "val_loss", "lut", "ff", "lut_estimate", "ff_estimate",
                                      "energy_j", "energy_mac_j", "bytes", "latency_cycles", "bit_exact")},
        })
    return {"sweep_dir": str(out), "resumed": resume, "wall_s": round(wall_s, 1),
            "loadavg_1_5_15_before_after": [list(load_before), list(os.getloadavg())], "executor": summary["executor"],
            "counts": summary["counts"], "sources": summary["sources"], "front": summary["front"], "trials": trials}


def front_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    by_id = {t["trial"]: t for t in run["trials"]}
    rows = [by_id[i] for i in run["front"]]
    return [{"weight_bits": r["params"]["quant.weight.bits"], "latent_bits": r["params"]["quant.latent.bits"],
             **{k: r[k] for k in ("emd", "lut", "ff", "energy_j", "bytes", "latency_cycles")}, "trial": r["trial"]}
            for r in sorted(rows, key=lambda r: (r["params"]["quant.latent.bits"], r["params"]["quant.weight.bits"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--work", type=Path, default=Path("/tmp/aeforge-econt-sweep"),
                        help="where the sweep directories go (a rerun resumes them)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "econt_sweep.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-events", type=int, default=20_000)
    parser.add_argument("--float-epochs", type=int, default=10)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--energy", choices=["mac", "netlist"], default="mac")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    spec = benchmark_spec(args, args.work)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result: dict[str, Any] = {
        "benchmark": "econt_sweep",
        "question": "Pareto front of the ECON-T weight-bits x latent-bits sweep, and wall time local vs Ray",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "2-core VM shared with other work: absolute times include that contention"},
        "tools": {**tool_versions(), "optuna": _version("optuna"), "ray": _version("ray"),
                  "yosys": _yosys_version()},
        "reduced_training": {"data.synthetic.n_events": args.n_events, "train.float_epochs": args.float_epochs,
                             "train.qat_epochs": args.qat_epochs,
                             "published": "60000 events, 80 float + 20 QAT epochs (econt.yaml)"},
        "sweep": spec.as_dict(),
        "identity": spec.identity(),
        "runs": {},
        "earlier_runs": previous.get("earlier_runs", []),
    }
    for kind, run in previous.get("runs", {}).items():
        if Path(run["sweep_dir"]).parent == args.work and _identity(Path(run["sweep_dir"])) == spec.identity():
            result["runs"][kind] = run  # this work directory: kept when finished (or --only skips it), else resumed
        else:
            result["earlier_runs"].append({"kind": kind, "sweep_dir": run["sweep_dir"], "wall_s": run["wall_s"],
                                           "loadavg_1_5_15_before_after": run.get("loadavg_1_5_15_before_after"),
                                           "counts": run["counts"]})
    for earlier in result["earlier_runs"]:  # same trials (same sweep identity) as this benchmark's?
        earlier["same_trials"] = _identity(Path(earlier["sweep_dir"])) == spec.identity()
    for kind in (["local", "ray"] if args.only == "both" else [args.only]):
        out = args.work / kind
        done = result["runs"].get(kind)
        if done and done["counts"]["unfinished"] == 0 and done["counts"]["asked"] == spec.sampler.n_trials:
            print(f"{kind}: finished in {out} already ({done['wall_s']} s); kept")
            continue
        if kind == "local":
            result["runs"]["local"] = run_one(spec, out, None, args.workers)
        else:
            with ray_head(args.workers) as address:
                result["runs"]["ray"] = run_one(spec, out, address, args.workers)
        _finish(result, args.out)
    _finish(result, args.out)
    print(json.dumps({k: result[k] for k in ("status", "wall_s", "front")}, indent=1))


def _finish(result: dict[str, Any], out: Path) -> None:
    runs = result["runs"]
    result["status"] = "complete" if {"local", "ray"} <= set(runs) else f"partial: {', '.join(runs)} only"
    result["wall_s"] = {kind: run["wall_s"] for kind, run in runs.items()}
    if {"local", "ray"} <= set(runs):
        result["ray_over_local_wall"] = round(runs["ray"]["wall_s"] / runs["local"]["wall_s"], 3)
        fronts = [{tuple(sorted(r.items())) for r in (
            {k: v for k, v in row.items() if k in ("weight_bits", "latent_bits")} for row in front_table(runs[kind]))}
            for kind in ("local", "ray")]
        result["fronts_agree"] = fronts[0] == fronts[1]
    reference = runs.get("local") or runs.get("ray")
    result["front"] = front_table(reference)
    result["front_of"] = "local" if "local" in runs else "ray"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, portable(result))


def _identity(sweep_dir: Path) -> str | None:
    """The sweep identity in a sweep directory's journal header (None when unreadable)."""
    try:
        with open(sweep_dir / "journal.jsonl", encoding="utf-8") as stream:
            return json.loads(stream.readline()).get("identity")
    except (OSError, ValueError):
        return None


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _yosys_version() -> str | None:
    from aeforge.hls.rtl.yosys import find_yosys

    command = find_yosys()
    if command is None:
        return None
    return subprocess.run([*command, "-V"], capture_output=True, text=True, timeout=300).stdout.strip() or None


if __name__ == "__main__":
    main()
