"""The converter family's parts of ``aeforge train`` and ``aeforge bench`` (argparse wiring stays in aeforge.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aeforge.config import parse_overrides


def train_converter_command(args: argparse.Namespace) -> int:
    """``aeforge train CONFIG`` for ``model.family: converter``; prints accuracy, MACs and the easy fraction."""
    from aeforge.artifact import RunWriter
    from aeforge.converter.config import load_converter_config
    from aeforge.converter.train import save_converter_run, train_converter

    config = load_converter_config(args.config, overrides=parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / config.name
    RunWriter(out, kind="train", overwrite=args.force).check_target()  # fail before training
    result = train_converter(config, progress=not args.quiet)
    save_converter_run(result, out, overwrite=args.force)
    metrics = result.metrics
    print(f"run: {out} (converter; hardware model: converter + light classifier, baselines in {out}/heavy and "
          f"{out}/light)")
    print(f"easy training images ({config.easy.method}, threshold {config.easy.threshold}): "
          f"{100 * metrics['easy_fraction']['train']:.1f}%")
    for role, values in metrics["accuracy"].items():
        print(f"{role}: test accuracy float {100 * values['float']:.2f}%, QAT {100 * values['qat']:.2f}%, "
              f"{metrics['macs'][role]:,} MACs")
    return 0


def bench_baselines(run_dir: Path, results: list[dict[str, Any]], **bench_options: Any) -> list[dict[str, Any]]:
    """``results`` with ``baselines`` and ``comparison`` added when ``run_dir`` has baseline runs (else as is)."""
    from aeforge.converter.compare import baseline_runs, compare_with_baselines

    if not baseline_runs(run_dir):
        return results
    return [{**result, **compare_with_baselines(run_dir, result, **bench_options)} for result in results]
