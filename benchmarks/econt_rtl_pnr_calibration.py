"""Calibrate da4ml's ``latency_cutoff`` against nextpnr-ecp5 Fmax on the trained ECON-T encoder.

For each pipeline depth the encoder of RUN_DIR is generated with da4ml (``generate_rtl(...,
pipeline_stages=N)``), synthesized with ``synth_ecp5`` and placed (and routed, unless
``--no-route``) with nextpnr-ecp5 on one core. Each measurement (cutoff, stages, Fmax, LUT4, FF,
seconds) is merged into the JSON results file as soon as it exists, and the least-squares line
``period_ns = overhead_ns + ns_per_unit * cutoff`` is refitted over the entries of the same
device/speed/routing. Example (about 12 minutes a depth with ``--no-route``)::

    python benchmarks/econt_rtl_pnr_calibration.py /tmp/demo-full --stages 2 4 8 --device 85k --no-route
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "econt_rtl_pnr_calibration.json"


def fit_line(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Least-squares ``y = a + b x`` over (x, y) points; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    worst = max(abs(y - intercept - slope * x) for x, y in points)
    return {"overhead_ns": round(intercept, 3), "ns_per_unit": round(slope, 3), "max_residual_ns": round(worst, 3)}


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"description": __doc__.strip().splitlines()[0], "measurements": [], "fits": {}}


def _refit(results: dict[str, Any]) -> None:
    groups: dict[str, list[tuple[float, float]]] = {}
    for entry in results["measurements"]:
        if entry.get("fmax_mhz"):
            key = f"{entry['device']}-speed{entry['speed_grade']}-{'routed' if entry['routed'] else 'placed'}"
            groups.setdefault(key, []).append((entry["latency_cutoff"], 1000.0 / entry["fmax_mhz"]))
    results["fits"] = {key: fit for key, points in groups.items() if (fit := fit_line(points)) is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--device", default="85k", help="nextpnr device (the encoder needs ~51k TRELLIS_COMB)")
    parser.add_argument("--speed", type=int, default=6, help="ECP5 speed grade; 6 is the slowest")
    parser.add_argument("--target-mhz", type=float, default=40.0)
    parser.add_argument("--no-route", action="store_true", help="stop after placement (estimate; much faster)")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--work", type=Path, default=None, help="keep the RTL projects and tool outputs here")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from aeforge.hls.rtl import generate_rtl
    from aeforge.hls.rtl.pnr import place_and_route
    from aeforge.stages import hardware_model

    module = hardware_model(args.run_dir).module
    work = args.work or Path(tempfile.mkdtemp(prefix="aeforge_pnr_calibration_"))
    for stages in args.stages:
        project = generate_rtl(module, work / f"rtl_s{stages}", pipeline_stages=stages, overwrite=True)
        report = place_and_route(
            project,
            device=args.device,
            speed_grade=args.speed,
            target_mhz=args.target_mhz,
            timeout_s=args.timeout_s,
            work_dir=work / f"pnr_s{stages}",
            threads=1,
            route=not args.no_route,
        )
        entry = {
            "design": f"ECON-T encoder of {args.run_dir}",
            "date": datetime.date.today().isoformat(),
            "stages": stages,
            "latency_cycles": project.latency_cycles,
            "latency_cutoff": project.latency_cutoff,
            "combinational_delay": max(project.extra["combinational_delay"]),
            "device": args.device,
            "speed_grade": args.speed,
            "routed": report.routed,
            "fmax_mhz": report.fmax_mhz,
            "period_ns": None if report.period_ns is None else round(report.period_ns, 3),
            "lut4": report.lut,
            "ccu2c": report.carry,
            "ff": report.ff,
            "trellis_comb": report.utilisation.get("TRELLIS_COMB"),
            "critical_path": report.critical_path,
            "synth_seconds": report.synth_seconds,
            "pnr_seconds": report.pnr_seconds,
            "seconds": report.seconds,
            "nextpnr": f"{report.nextpnr_command} {report.nextpnr_version}",
            "yosys": report.yosys_version,
        }
        print(json.dumps({k: entry[k] for k in ("stages", "latency_cutoff", "fmax_mhz", "lut4", "ff", "seconds")}))
        results = _load(args.out)
        same = ("stages", "device", "speed_grade", "routed")
        results["measurements"] = [m for m in results["measurements"] if any(m.get(k) != entry[k] for k in same)] + [
            entry
        ]
        results["measurements"].sort(key=lambda m: (m["device"], m["speed_grade"], m["routed"], m["stages"]))
        _refit(results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(_load(args.out)["fits"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
