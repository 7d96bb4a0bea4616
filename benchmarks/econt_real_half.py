"""ECON-T QAT autoencoder trained on half of the real CALQ sample, evaluated on the other half, vs PCA-16.

The split is the one of ``benchmarks/econt_emd.py`` (``real_half``): the non-empty events of
``../shared/data/hgcal/CALQ_output.csv`` halved with seed 11, a 15% validation slice (seed 12)
taken from the training half. Two trainings on the same events:

* ``plain``: today's recipe (``aeforge/configs/econt.yaml`` as shipped, batch 128 as in econt_emd);
* ``recipe``: the small-sample recipe (module-symmetry augmentation, one-cycle learning rates, long
  training with early stopping on the validation EMD), i.e. econt.yaml with ``RECIPE`` set.

PCA-16 is fit on the same training events. Target: QAT EMD <= 0.8 x PCA-16 on the held-out half.

    python benchmarks/econt_real_half.py [--csv PATH] [--out benchmarks/results] [--skip-plain] [--quick]

Writes ``econt_real_half.json`` (paths relative to the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import tool_versions
from aeforge.config import ExperimentConfig, load_config
from aeforge.data.hgcal.readouts import load_calq_csv, normalize_econt, split_indices
from aeforge.demo import evaluate
from aeforge.quantize import metrics
from aeforge.quantize.train import EventSplits, train_experiment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "hgcal" / "CALQ_output.csv"
BASE_CONFIG = REPO / "aeforge" / "configs" / "econt.yaml"
TARGET_RATIO = 0.8

PLAIN = {"train.batch_size": 128}
RECIPE = {
    "train.batch_size": 128,
    "train.augment": "symmetries",
    "train.schedule": "one_cycle",
    "train.monitor": "emd",
    "train.float_epochs": 1500,
    "train.qat_epochs": 300,
    "train.patience": 300,
}
QUICK = {"train.float_epochs": 4, "train.qat_epochs": 2}


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository root (``../shared/...`` for the shared data), POSIX style."""
    return Path(os.path.relpath(Path(path).resolve(), REPO)).as_posix()


def half_splits(csv: Path, config: ExperimentConfig) -> EventSplits:
    """Train (85%) / validation (15%) of one half of the non-empty events; the other half is ``test``."""
    real, _ = normalize_econt(load_calq_csv(csv), config.quant.input)
    real = real[real.sum(axis=1) > 0]
    train_half, eval_half = split_indices(len(real), [0.5, 0.5], seed=11)
    fit_part, val_part = split_indices(len(train_half), [0.85, 0.15], seed=12)
    return EventSplits(real[train_half][fit_part], real[train_half][val_part], real[eval_half], repo_relative(csv))


def run_case(name: str, overrides: dict[str, Any], csv: Path, threads: int | None) -> dict[str, Any]:
    """Train one configuration on the training half and evaluate it on the held-out half."""
    if threads:
        overrides = {**overrides, "train.threads": threads}
    config = load_config(BASE_CONFIG, overrides)
    splits = half_splits(csv, config)
    start = time.perf_counter()
    result = train_experiment(config, progress=False, splits=splits)
    train_s = time.perf_counter() - start
    models = {"float": result.float_model, "qat": result.qat_model}
    stats = {k: metrics.emd_summary(v).as_dict() for k, v in evaluate(splits.test, splits.train, models, 14).items()}
    qat, pca = stats["qat"]["mean"], stats["pca16"]["mean"]
    epochs = {phase: sum(r.phase == phase for r in result.history) for phase in ("float", "qat")}
    best_epoch = {}
    for phase in ("float", "qat"):
        records = [r for r in result.history if r.phase == phase]
        scores = [r.val_loss if r.val_emd is None else r.val_emd for r in records]
        best_epoch[phase] = records[int(np.argmin(scores))].epoch if records else None
    return {
        "case": name,
        "overrides": overrides,
        "events": {"train": len(splits.train), "val": len(splits.val), "eval": len(splits.test)},
        "emd_mean": {k: v["mean"] for k, v in stats.items()},
        "emd": stats,
        "qat_over_pca16": qat / pca,
        "target_ratio": TARGET_RATIO,
        "meets_target": qat <= TARGET_RATIO * pca,
        "epochs_run": epochs,
        "best_epoch": best_epoch,
        "train_wall_time_s": round(train_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--skip-plain", action="store_true", help="train only the recipe")
    parser.add_argument("--quick", action="store_true", help="a few epochs, for a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = [] if args.skip_plain else [("plain", PLAIN)]
    cases.append(("recipe", RECIPE))
    results = [run_case(name, {**overrides, **(QUICK if args.quick else {})}, args.csv, args.threads)
               for name, overrides in cases]
    report = {
        "benchmark": "econt_real_half",
        "csv": repo_relative(args.csv),
        "base_config": repo_relative(BASE_CONFIG),
        "quick": args.quick,
        "cases": results,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "load_average_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "econt_real_half.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    for case in results:
        emd = {k: round(v, 3) for k, v in case["emd_mean"].items() if k in ("float", "qat", "pca16")}
        print(case["case"], emd, f"qat/pca16={case['qat_over_pca16']:.3f}", "epochs", case["epochs_run"],
              f"{case['train_wall_time_s']} s")


if __name__ == "__main__":
    main()
