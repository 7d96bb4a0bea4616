"""ECON-T encoder through the open-source RTL path: resources, Fmax, latency, II, energy estimates.

    python benchmarks/econt_rtl.py [--run RUN] [--stages 2 3 4] [--target-mhz 40] [--pnr-device 85k] [--route]
                                   [--out benchmarks/results]

Without ``--run`` the demo configuration is trained first (6-bit weights as published). For each
pipelining (``--stages`` and the stage count ``--target-mhz`` picks from the ECP5 delay calibration)
the run is copied to a scratch directory and taken through ``aeforge rtl`` exactly as a user would:
da4ml Verilog, the valid-in/valid-out top driven in Verilator (bit-exact vs Brevitas, latency and
II measured), Yosys ``synth_xilinx`` (LUT/FF/CARRY4/DSP), nextpnr-ecp5 on a LFE5U-85F speed
grade 6 (the slowest; the encoder needs ~50k LUT4s, more than a 25k or 45k holds) for Fmax --
placement only unless ``--route`` (routing the encoder did not finish in 10 minutes here), and --
for the ``--target-mhz`` design -- the ASIC
energy estimates (generic Yosys netlist x per-gate energy with measured activity, and the
programmable-MAC model) against the ECON-T ASIC's published 2.4 nJ/inference (65 nm, 40 MHz).
hls4ml reference (issue text): Vivado HLS 2020.1, xc7z020: 59,895 LUT, 34,199 FF, 132 DSP,
latency 103 cycles, II 92. Writes ``econt_rtl.json``. Takes tens of minutes (nextpnr).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions
from aeforge.stages import rtl_stage

REPO = Path(__file__).resolve().parents[1]
HLS4ML_REFERENCE = {"tool": "Vivado HLS 2020.1", "part": "xc7z020", "lut": 59_895, "ff": 34_199, "dsp": 132,
                    "latency_cycles": 103, "ii": 92}
ECONT_ASIC_NJ = 2.4
TARGETS = {"ii": 1, "fmax_mhz_min": 40.0, "lut_max": HLS4ML_REFERENCE["lut"] / 3, "dsp": 0}


def trained_run(scratch: Path) -> Path:
    from aeforge.demo import demo_config
    from aeforge.quantize.train import save_training_run, train_experiment

    run = scratch / "trained"
    save_training_run(train_experiment(demo_config(), progress=True), run)
    return run


def one_design(run: Path, scratch: Path, label: str, stages: int | None, target_mhz: float | None,
               energy: bool, pnr_device: str, route: bool) -> dict:
    copy = scratch / label
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("rtl", "hls", "qonnx", "onnx", "bench", "report"))
    start = time.perf_counter()
    summary = rtl_stage(copy, pipeline_stages=stages, target_mhz=target_mhz, synth="xc7", pnr=True,
                        energy=energy, force=True, pnr_device=pnr_device, pnr_route=route)
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["lut_ratio_to_hls4ml"] = round(summary["lut"] / HLS4ML_REFERENCE["lut"], 3)
    summary["meets"] = {
        "ii": summary["ii"] == TARGETS["ii"] and summary["ii_measured"],
        "fmax_40mhz_ecp5_" + ("routed" if route else "placed"): (
            summary.get("fmax_mhz") is not None and summary["fmax_mhz"] >= TARGETS["fmax_mhz_min"]),
        "lut_third_of_hls4ml": summary["lut"] <= TARGETS["lut_max"],
        "no_dsp": summary["dsp"] == 0,
    }
    for result in summary["energy_estimate"].values():
        result["ratio_to_econt_asic"] = round(result["energy_j_per_inference"] / (ECONT_ASIC_NJ * 1e-9), 3)
    summary.pop("ports", None)
    print(json.dumps({k: summary.get(k) for k in ("pipeline_stages", "latency_cycles", "ii", "lut", "ff", "carry",
                                                  "dsp", "fmax_mhz", "lut_ratio_to_hls4ml", "wall_s")}), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="trained ECON-T run (default: train the demo configuration)")
    parser.add_argument("--stages", type=int, nargs="*", default=[2, 3, 4])
    parser.add_argument("--target-mhz", type=float, default=40.0)
    parser.add_argument("--pnr-device", default="85k", help="nextpnr-ecp5 device (default 85k)")
    parser.add_argument("--route", action="store_true", help="route too (default: placement estimate only)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aeforge_econt_rtl_") as tmp:
        scratch = Path(tmp)
        run = args.run or trained_run(scratch)
        designs = {f"target_{args.target_mhz:g}mhz": one_design(run, scratch, "target", None, args.target_mhz, True,
                                                                     args.pnr_device, args.route)}
        for stages in args.stages:
            designs[f"stages_{stages}"] = one_design(run, scratch, f"s{stages}", stages, None, False,
                                                       args.pnr_device, args.route)
    result = {
        "benchmark": "econt_rtl",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
        "hls4ml_reference": HLS4ML_REFERENCE,
        "econt_asic_nj_per_inference": ECONT_ASIC_NJ,
        "targets": TARGETS,
        "ecp5": {"device": args.pnr_device, "package": "CABGA381", "speed_grade": 6, "routed": args.route},
        "designs": designs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "econt_rtl.json").write_text(json.dumps(portable(result), indent=2) + "\n")
    print(f"wrote {args.out / 'econt_rtl.json'}")


if __name__ == "__main__":
    main()
