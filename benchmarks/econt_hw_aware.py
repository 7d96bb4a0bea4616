"""Hardware-aware training (issue 15): uniform 6-bit ECON-T vs heterogeneous quantization with an EBOPs cost.

    python benchmarks/econt_hw_aware.py [--events 20000] [--float-epochs 20] [--qat-epochs 24] [--fit-points 12]
                                        [--target-mhz 40] [--pnr-timeout-s 900] [--work DIR] [--out DIR]

Both models train on the same synthetic events with the same epochs (``aeforge/configs/econt.yaml`` and
``econt_hw_aware.yaml``, the data and epoch keys overridden alike). Each goes through ``aeforge rtl`` as a
user would (da4ml Verilog pipelined for ``--target-mhz`` by the ECP5 delay calibration, the
valid-in/valid-out top simulated in Verilator against Brevitas: latency and II measured; Yosys
``synth_xilinx``: LUT/FF/DSP). The heterogeneous encoder is also mapped with ``-abc9`` (its measured
effect), then placed and routed with nextpnr-ecp5 (``router2``) on a LFE5U-85F speed 6 and on the smallest
ECP5 its LUT4s fit, each run capped at ``--pnr-timeout-s`` (a run past it is recorded, not fatal).
EBOPs vs Yosys LUT: the two models plus variants of the trained uniform weights (weight widths,
conv-activation widths, magnitude pruning), each synthesized (no simulation), fitted by least squares
(slope in LUT per EBOP, intercept, R²). Writes ``econt_hw_aware.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from portable import portable  # benchmarks/portable.py: repository-relative paths

REPO = Path(__file__).resolve().parents[1]
HLS4ML_LUT = 59_895
TARGETS = {"lut_max": HLS4ML_LUT // 4, "dsp": 0, "ii": 1, "emd_ratio_max": 1.05, "fmax_mhz_min": 40.0}
ECP5_LUT4 = {"12k": 12_096, "25k": 24_288, "45k": 43_848, "85k": 83_640}  # TRELLIS_COMB per device


def train(config_name: str, overrides: dict[str, Any], run: Path) -> dict[str, Any]:
    from aeforge.config import load_config
    from aeforge.quantize.train import save_training_run, train_experiment

    config = load_config(REPO / "aeforge" / "configs" / config_name, overrides=overrides)
    start = time.perf_counter()
    save_training_run(train_experiment(config, progress=False), run, overwrite=True)
    metrics = json.loads((run / "card.json").read_text())["metrics"]
    return {"config": config_name, "emd_qat": metrics["emd"]["qat"], "emd_float": metrics["emd"].get("float"),
            "emd_events": metrics["emd_events"], "ebops": metrics["ebops"]["total"], "ebops_layers": metrics["ebops"],
            "hgq": metrics.get("hgq"), "epochs": metrics["epochs"],
            "train_wall_s": round(time.perf_counter() - start, 1)}


def hardware(run: Path, target_mhz: float) -> dict[str, Any]:
    from aeforge.stages import rtl_stage

    start = time.perf_counter()
    s = rtl_stage(run, target_mhz=target_mhz, synth="xc7", force=True)
    return {"lut": s["lut"], "ff": s["ff"], "dsp": s["dsp"], "carry": s["carry"], "logic_depth": s["logic_depth"],
            "latency_cycles": s["latency_cycles"], "latency_measured": s["latency_cycles_measured"], "ii": s["ii"],
            "ii_measured": s["ii_measured"], "pipeline_stages": s["pipeline_stages"],
            "yosys_s": s["synthesis"]["seconds"], "rtl_wall_s": round(time.perf_counter() - start, 1)}


def abc9_effect(run: Path) -> dict[str, Any]:
    from aeforge.hls.rtl import load_rtl_project
    from aeforge.hls.rtl.yosys import synthesize

    report = synthesize(load_rtl_project(run / "rtl"), "xc7", abc9=True)
    return {"lut": report.lut, "ff": report.ff, "carry": report.carry, "logic_depth": report.logic_depth,
            "yosys_s": report.seconds}


def route(run: Path, device: str, target_mhz: float, timeout_s: float) -> dict[str, Any]:
    from aeforge.errors import AeforgeError
    from aeforge.hls.rtl import load_rtl_project
    from aeforge.hls.rtl.pnr import place_and_route

    start = time.perf_counter()
    try:
        r = place_and_route(load_rtl_project(run / "rtl"), device=device, speed_grade=6, target_mhz=target_mhz,
                            timeout_s=timeout_s, router="router2", threads=1)
    except AeforgeError as error:
        return {"device": device, "routed": False, "error": str(error)[-400:],
                "wall_s": round(time.perf_counter() - start, 1)}
    comb = r.utilisation.get("TRELLIS_COMB", {})
    return {"device": device, "routed": r.routed, "fmax_mhz": r.fmax_mhz, "met": r.met, "lut4": r.lut, "ff": r.ff,
            "trellis_comb_used": comb.get("used"), "trellis_comb_available": comb.get("available"),
            "synth_s": r.synth_seconds, "pnr_s": r.pnr_seconds, "wall_s": round(time.perf_counter() - start, 1)}


VARIANTS = (  # name, weight bits (ap_fixed<b,2>), conv-activation bits (published int bits), pruned fraction
    ("w3", 3, None, 0.0), ("w4", 4, None, 0.0), ("w5", 5, None, 0.0), ("w5_p50", 5, None, 0.5), ("w6_a6", 6, 6, 0.0),
    ("w6_a9", 6, 9, 0.0), ("w6_p50", 6, None, 0.5), ("w6_p75", 6, None, 0.75), ("w4_a8_p50", 4, 8, 0.5),
    ("w4_a8_p75", 4, 8, 0.75), ("w3_a6", 3, 6, 0.0), ("w5_a8_p25", 5, 8, 0.25),
)


def variant_encoder(run: Path, w_bits: int, a_bits: int | None, prune: float) -> Any:
    """The trained uniform encoder re-quantized: weight width, conv-activation width, magnitude pruning."""
    import dataclasses

    import torch

    from aeforge.quantize.models.econt import EcontEncoder
    from aeforge.quantize.train import load_trained_model

    base = load_trained_model(run).encoder
    act = base.layer_types["conv_act"]
    weight = dataclasses.replace(base.layer_types["conv.weight"], bits=w_bits, int_bits=2)
    types = {"conv.weight": weight, "dense.weight": weight,
             "conv_act": dataclasses.replace(act, bits=a_bits or act.bits, int_bits=act.int_bits)}
    encoder = EcontEncoder(base.model_config, base.quant_config, layer_types=types)
    encoder.load_state_dict(base.state_dict())
    with torch.no_grad():
        for layer in (encoder.conv, encoder.dense):
            w = torch.as_tensor(weight.quantize(layer.weight.double().numpy())).float()
            if prune:
                w[w.abs() <= torch.quantile(w.abs().flatten(), prune)] = 0.0
            layer.weight.copy_(w)
    return encoder.eval()


def _synth_point(name: str, run: Path, w_bits: int, a_bits: int | None, prune: float, work: Path) -> dict[str, Any]:
    from aeforge.hls.rtl.da4ml_backend import generate_rtl
    from aeforge.hls.rtl.yosys import synthesize
    from aeforge.quantize.hgq.ebops import model_ebops

    start = time.perf_counter()
    encoder = variant_encoder(run, w_bits, a_bits, prune)
    project = generate_rtl(encoder, work / name, overwrite=True)
    report = synthesize(project, "xc7")
    return {"name": name, "ebops": model_ebops(encoder)["total"], "lut": report.lut,
            "types": {k: v for k, v in encoder.fixed_point_types().items() if k in ("dense.weight", "conv_act")},
            "wall_s": round(time.perf_counter() - start, 1)}


def fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    x = np.array([p["ebops"] for p in points], dtype=float)
    y = np.array([p["lut"] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return {"n": len(points), "slope_lut_per_ebop": round(float(slope), 4), "intercept_lut": round(float(intercept), 1),
            "r2": round(r2, 4), "ratio_lut_per_ebop_mean": round(float(np.mean(y / x)), 4)}


def _job(kind: str, *args: Any) -> Any:
    """One unit of work in a worker process (single-threaded torch)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    return {"train": train, "hardware": hardware, "abc9": abc9_effect, "route": route,
            "point": _synth_point}[kind](*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--float-epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=24)
    parser.add_argument("--fit-points", type=int, default=12, help="EBOPs-vs-LUT points (2 trained + variants)")
    parser.add_argument("--target-mhz", type=float, default=40.0)
    parser.add_argument("--pnr-timeout-s", type=float, default=900.0)
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (trainings, Yosys runs)")
    parser.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for the heterogeneous config")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    from aeforge.artifact import tool_versions
    from aeforge.config import parse_overrides

    begin = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - begin:6.0f} s] {message}", flush=True)

    work = args.work or Path(tempfile.mkdtemp(prefix="aeforge_hw_aware_"))
    work.mkdir(parents=True, exist_ok=True)
    common = {"data.synthetic.n_events": args.events, "train.float_epochs": args.float_epochs,
              "train.qat_epochs": args.qat_epochs, "train.threads": 1}
    hgq_overrides = {**common, **parse_overrides(args.set)}
    configs = {"uniform": ("econt.yaml", common), "hgq": ("econt_hw_aware.yaml", hgq_overrides)}
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        log("train uniform and hgq")
        trained = {k: pool.submit(_job, "train", c, o, work / k) for k, (c, o) in configs.items()}
        models = {k: f.result() for k, f in trained.items()}
        log("rtl (Verilator) + yosys xc7: " + json.dumps({k: m["ebops"] for k, m in models.items()}))
        built = {k: pool.submit(_job, "hardware", work / k, args.target_mhz) for k in models}
        for k, f in built.items():
            models[k].update(f.result())
        log("abc9, EBOPs-vs-LUT points, place and route: " + json.dumps({k: m["lut"] for k, m in models.items()}))
        abc9 = pool.submit(_job, "abc9", work / "hgq")
        point_jobs = [pool.submit(_job, "point", name, work / "uniform", w, a, prune, work / "fit")
                      for name, w, a, prune in VARIANTS[: max(args.fit_points - 2, 0)]]
        with concurrent.futures.ProcessPoolExecutor(max_workers=1) as router:  # beside the Yosys runs
            pnr = [router.submit(_job, "route", work / "hgq", "85k", args.target_mhz, args.pnr_timeout_s).result()]
            log("routed 85k: " + json.dumps(pnr[0]))
            lut4 = pnr[0].get("lut4") or 0
            smallest = next((d for d in ("12k", "25k", "45k") if lut4 and lut4 <= 0.9 * ECP5_LUT4[d]), None)
            if smallest is not None and pnr[0].get("routed"):
                pnr.append(router.submit(_job, "route", work / "hgq", smallest, args.target_mhz,
                                         args.pnr_timeout_s).result())
                log(f"routed {smallest}: " + json.dumps(pnr[-1]))
        hgq, uniform = models["hgq"], models["uniform"]
        hgq["abc9_xc7"] = abc9.result()
        points = [{"name": label, "ebops": models[label]["ebops"], "lut": models[label]["lut"]} for label in models]
        points += [f.result() for f in point_jobs]
    hgq["pnr_ecp5"] = pnr
    routed = [p for p in pnr if p.get("routed") and p.get("fmax_mhz")]
    result = {
        "what": "uniform 6-bit ECON-T (econt.yaml) vs heterogeneous quantization with an EBOPs cost "
                "(econt_hw_aware.yaml), same synthetic data and epochs",
        "settings": {**common, "hgq_set": args.set, "target_mhz": args.target_mhz,
                     "pnr": "nextpnr-ecp5 router2, speed 6, out of context", "pnr_timeout_s": args.pnr_timeout_s},
        "uniform": uniform, "hgq": hgq,
        "ebops_vs_lut": {"points": points, "fit": fit(points)},
        "summary": {
            "lut": {"uniform": uniform["lut"], "hgq": hgq["lut"], "ratio": round(hgq["lut"] / uniform["lut"], 3),
                    "vs_hls4ml": round(hgq["lut"] / HLS4ML_LUT, 3)},
            "emd_qat": {"uniform": uniform["emd_qat"], "hgq": hgq["emd_qat"],
                        "ratio": round(hgq["emd_qat"] / uniform["emd_qat"], 4)},
            "ebops": {"uniform": uniform["ebops"], "hgq": hgq["ebops"]},
            "fmax_mhz_routed": {p["device"]: p["fmax_mhz"] for p in routed},
        },
        "targets": TARGETS,
        "meets": {"lut": hgq["lut"] <= TARGETS["lut_max"], "dsp": hgq["dsp"] == TARGETS["dsp"],
                  "ii": hgq["ii"] == TARGETS["ii"],
                  "emd": hgq["emd_qat"] <= TARGETS["emd_ratio_max"] * uniform["emd_qat"],
                  "fmax": any(p["device"] == "85k" and p["fmax_mhz"] >= TARGETS["fmax_mhz_min"] for p in routed)},
        "wall_s": round(time.perf_counter() - begin, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "tools": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "econt_hw_aware.json"
    path.write_text(json.dumps(portable(result), indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2), json.dumps(result["meets"]), f"wall {result['wall_s']} s", sep="\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
