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
from aeforge.errors import AeforgeError

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
    print(f"wall time: {summary['wall_time_s']:.1f} s")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from aeforge.config import load_config
    from aeforge.quantize.train import save_training_run, train_experiment

    config = load_config(args.config, overrides=_parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / config.name
    from aeforge.artifact import RunWriter

    RunWriter(out, kind="train", overwrite=args.force).check_target()  # fail before training
    result = train_experiment(config, progress=not args.quiet)
    save_training_run(result, out, overwrite=args.force)
    best = result.best_val_loss
    print(f"run: {out}")
    print("best validation loss: " + ", ".join(f"{phase} {loss:.5g}" for phase, loss in best.items()))
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from aeforge.doctor import checks_as_dict, format_table, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps(checks_as_dict(checks), indent=2))
    else:
        print(format_table(checks))
    return EXIT_OK


def _parse_overrides(pairs: Sequence[str] | None) -> dict[str, object]:
    import yaml

    overrides: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AeforgeError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.qat_epochs=5")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


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
    train.set_defaults(handler=_cmd_train)

    doctor = sub.add_parser("doctor", help="list optional tools, devices and power meters, and why not")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
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
