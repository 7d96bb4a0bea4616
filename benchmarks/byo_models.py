"""Bring-your-own models (issue 12): every shipped family and the QKeras fixtures, from training or import to
verified hardware.

    python benchmarks/byo_models.py [--only econt,ad_dense,conv_ae,qkeras] [--n 10000] [--work DIR]
                                    [--pipeline-stages 3] [--no-synth]

Per shipped family (ECON-T on its synthetic default with training reduced to --econt-events events and
10+5 epochs; the dense anomaly-detection autoencoder ``ad_dense.yaml`` in the MLPerf Tiny layout with its
score on chip; the conv autoencoder ``conv_ae.yaml``): the quality metric (ECON-T: mean EMD on held-out
events; autoencoders: reconstruction MSE, and AUC for the anomaly data), Yosys ``synth_xilinx`` LUT/FF/DSP of
the hardware artifact's RTL, hls4ml C-sim and RTL verification (and QONNX, onnxruntime) on ``--n`` vectors,
and the wall time of each step from training to verified RTL. Per QKeras fixture model
(``tests/fixtures/qkeras``): import -> verified HLS + RTL, and whether the import equals the logits QKeras's
``predict`` recorded. Writes ``benchmarks/results/byo_models.json`` after every model (paths relative to the
repository).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from portable import portable  # benchmarks/portable.py: repository-relative paths

from aeforge.artifact import tool_versions, write_json_atomic
from aeforge.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "aeforge" / "configs"
FIXTURES = REPO / "tests" / "fixtures" / "qkeras"
RESULT = REPO / "benchmarks" / "results" / "byo_models.json"
QKERAS_MODELS = ("jet_tagger", "mnist_dense_po2", "mnist_cnn", "conv1d_avgpool", "bn_fold")


def _cli(*argv: str) -> tuple[int, str, float]:
    """Run ``aeforge ARGV`` in-process; (exit code, stdout, seconds)."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), time.perf_counter() - start


def _step(row: dict[str, Any], name: str, *argv: str) -> str:
    code, out, seconds = _cli(*argv)
    row.setdefault("wall_s", {})[name] = round(seconds, 1)
    if code != 0:
        row.setdefault("errors", {})[name] = f"exit {code}: {out[-400:]}"
    return out


def _hardware(row: dict[str, Any], run: Path, args: argparse.Namespace, rtl: bool = True,
              hls_args: tuple[str, ...] = ()) -> None:
    """hls + rtl (+ Yosys) + verify on an existing run (``rtl=False``: the tool-free estimate instead)."""
    _step(row, "hls", "hls", str(run), *hls_args)
    if not rtl:
        from aeforge.hls.estimate import estimate_resources
        from aeforge.quantize.models.boundary import hardware_model

        estimate = estimate_resources(hardware_model(run).module, None).as_dict()
        row["rtl_not_built"] = "the tool-free estimate of the whole design is far beyond any FPGA (see estimate); " \
            "da4ml tracing did not finish in 30 min here"
        row["estimate"] = {key: estimate.get(key) for key in ("lut", "calibrated_lut", "ff", "dsp", "macs")}
        out = _step(row, "verify", "verify", str(run), "--n", str(args.n), "--json")
        with contextlib.suppress(json.JSONDecodeError, ValueError):
            verify = json.loads(out[out.index("{"):])
            row["verification"] = {name: {"n": t["n"], "exact": t["exact"], "max_lsb": t["max_lsb"]}
                                   for name, t in verify["targets"].items()}
            row["bit_exact"] = verify.get("bit_exact")
        row["wall_s"]["total_to_verified_hls"] = round(sum(row["wall_s"].values()), 1)
        return
    rtl_args = ["rtl", str(run), "--json", "--pipeline-stages", str(args.pipeline_stages)]
    if not args.no_synth:
        rtl_args += ["--synth", "xc7"]
    out = _step(row, "rtl", *rtl_args)
    with contextlib.suppress(json.JSONDecodeError, ValueError):
        rtl = json.loads(out[out.index("{"):])
        row["rtl"] = {key: rtl.get(key) for key in ("lut", "ff", "dsp", "carry", "latency_cycles", "ii",
                                                     "pipeline_stages", "input_type", "output_type")}
    out = _step(row, "verify", "verify", str(run), "--n", str(args.n), "--json")
    with contextlib.suppress(json.JSONDecodeError, ValueError):
        verify = json.loads(out[out.index("{"):])
        row["verification"] = {name: {"n": t["n"], "exact": t["exact"], "max_lsb": t["max_lsb"]}
                               for name, t in verify["targets"].items()}
        row["verification_skipped"] = verify.get("skipped", {})
        row["bit_exact"] = verify.get("bit_exact")
    row["wall_s"]["total_to_verified_rtl"] = round(sum(row["wall_s"].values()), 1)


def _family(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = work / name
    row: dict[str, Any] = {"model": name, "kind": "family"}
    if name == "econt":
        row["config"] = "aeforge/configs/econt.yaml"
        row["training"] = f"{args.econt_events} synthetic events, 10 float + 5 QAT epochs (reduced)"
        _step(row, "train", "train", str(CONFIGS / "econt.yaml"), "--out", str(run), "--force", "--quiet",
              "--set", f"data.synthetic.n_events={args.econt_events}", "--set", "train.float_epochs=10",
              "--set", "train.qat_epochs=5")
        from aeforge.data.hgcal.readouts import normalize_econt
        from aeforge.data.hgcal.synthetic import generate_readouts
        from aeforge.quantize import metrics
        from aeforge.quantize.models.econt import reconstruct
        from aeforge.quantize.train import load_trained_model

        model = load_trained_model(run, "qat")
        events, _ = normalize_econt(generate_readouts(10_000, seed=123), model.encoder.input_type)
        row["quality"] = {"emd_mean_qat": round(float(metrics.emd_summary(
            metrics.emd(events, reconstruct(model, events))).mean), 4), "events": 10_000}
    else:
        config = CONFIGS / f"{name}.yaml"
        row["config"] = str(config.relative_to(REPO))
        _step(row, "train", "train", str(config), "--out", str(run), "--force", "--quiet")
        card = json.loads((run / "card.json").read_text())
        row["quality"] = card["metrics"].get("auc", {}) | {f"mse_{k}": v for k, v in card["metrics"]["mse"].items()}
        row["hardware_artifact"] = card["hardware"]["artifact"]
    if name == "ad_dense":  # 640-128x4-8 plus score, trained to 95 % zero weights (train.sparsity): the RTL fits
        row["weight_density"] = card["metrics"].get("weight_density")
        _hardware(row, run, args, hls_args=("--strategy", "resource", "--reuse-factor", "128"))
        return row
    _hardware(row, run, args)
    return row


def _qkeras(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = work / f"qkeras_{name}"
    row: dict[str, Any] = {"model": name, "kind": "qkeras", "fixture": f"tests/fixtures/qkeras/{name}.json"}
    _step(row, "import", "import", "qkeras", "--model", str(FIXTURES / f"{name}.json"), "--weights",
          str(FIXTURES / f"{name}.h5"), "--out", str(run), "--force")
    x = np.load(FIXTURES / f"{name}_x.npy")
    np.save(work / f"{name}_x.npy", x)
    code, _, _ = _cli("predict", str(run), "--input", str(work / f"{name}_x.npy"), "--output",
                      str(work / f"{name}_y.npy"), "--target", "brevitas")
    if code == 0:
        ours = np.load(work / f"{name}_y.npy").reshape(len(x), -1)
        reference = np.load(FIXTURES / f"{name}_logits.npy").reshape(len(x), -1)
        row["equals_qkeras_predict"] = {"n": len(x), "exact": int(np.sum(np.all(ours == reference, axis=1)))}
    _hardware(row, run, args)
    return row


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="econt,ad_dense,conv_ae,qkeras")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--econt-events", type=int, default=20_000)
    parser.add_argument("--pipeline-stages", type=int, default=3)
    parser.add_argument("--no-synth", action="store_true", help="skip Yosys (no LUT/FF numbers)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    report: dict[str, Any] = {"benchmark": "byo_models", "n_vectors": args.n, "machine": platform.machine(),
                              "python": sys.version.split()[0], "tools": tool_versions(), "models": []}
    if RESULT.is_file():  # keep rows of models not rerun this time
        previous = json.loads(RESULT.read_text())
        report["models"] = [m for m in previous.get("models", []) if m["model"] not in wanted
                            and not (m["kind"] == "qkeras" and "qkeras" in wanted)]
    with tempfile.TemporaryDirectory(prefix="aeforge-byo-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        jobs = [(n, _family) for n in ("econt", "ad_dense", "conv_ae") if n in wanted]
        if "qkeras" in wanted:
            jobs += [(n, _qkeras) for n in QKERAS_MODELS]
        for name, job in jobs:
            print(f"--- {name}", flush=True)
            row = job(name, work, args)
            print(json.dumps(row, indent=1), flush=True)
            report["models"].append(row)
            write_json_atomic(RESULT, portable(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
