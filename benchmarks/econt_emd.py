"""EMD of the ECON-T autoencoder against PCA-16 and the classic algorithms, on real HGCAL readouts.

Two trainings, both evaluated on the real CSV (default ``../shared/data/hgcal/CALQ_output.csv``):

* ``synthetic``: trained on the embedded synthetic generator, evaluated on the whole real file;
* ``real_half``: trained on one half of the real file (a validation slice taken from that half),
  evaluated on the other half.

For each: mean/median EMD of the float AE, the QAT AE (default bits), PCA-16 (fit on the same
training events), threshold, super trigger cells and best choice at the AE's bandwidth, plus EMD
against bandwidth (2..5 e-links: 3/5/7/9-bit latents vs 4/6/9/14 best-choice cells).

    python benchmarks/econt_emd.py [--csv PATH] [--out benchmarks/results] [--quick]

Writes ``econt_emd.json`` and ``econt_emd_bandwidth.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from aeforge.artifact import tool_versions
from aeforge.config import DataConfig, ExperimentConfig, SyntheticDataConfig, TrainConfig
from aeforge.data.hgcal.readouts import load_calq_csv, normalize_econt, split_indices
from aeforge.demo import evaluate, latent_bit_table
from aeforge.quantize import metrics
from aeforge.quantize.train import EventSplits, train_experiment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "hgcal" / "CALQ_output.csv"


def experiment(quick: bool) -> ExperimentConfig:
    epochs = (3, 2) if quick else (100, 25)
    return ExperimentConfig(
        name="econt-emd-benchmark",
        data=DataConfig(synthetic=SyntheticDataConfig(n_events=8_000 if quick else 100_000, seed=7)),
        train=TrainConfig(float_epochs=epochs[0], qat_epochs=epochs[1]),
    )


def summarise(per_event: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: metrics.emd_summary(values).as_dict() for name, values in per_event.items()}


def run_case(name: str, config: ExperimentConfig, splits: EventSplits | None, eval_events: np.ndarray,
             table_epochs: int) -> dict:
    start = time.perf_counter()
    result = train_experiment(config, progress=True, splits=splits)
    models = {"float": result.float_model, "qat": result.qat_model}
    cells = metrics.BEST_CHOICE_CELLS_BY_ELINKS[5]
    stats = summarise(evaluate(eval_events, result.splits.train, models, cells))
    table = latent_bit_table(config, result.float_model, result.splits, eval_events, table_epochs, progress=True)
    qat, float_, pca = stats["qat"]["mean"], stats["float"]["mean"], stats["pca16"]["mean"]
    return {
        "case": name,
        "train_events": len(result.splits.train),
        "eval_events": len(eval_events),
        "emd": stats,
        "qat_vs_float": qat / float_ - 1.0,
        "ae_vs_pca16": qat / pca - 1.0,
        "targets": {"qat_within_5pct_of_float": qat <= 1.05 * float_, "ae_20pct_below_pca16": qat <= 0.8 * pca},
        "bandwidth": table,
        "best_val_loss": result.best_val_loss,
        "wall_time_s": time.perf_counter() - start,
    }


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository root (``../shared/...`` for the shared data), POSIX style."""
    return Path(os.path.relpath(Path(path).resolve(), REPO)).as_posix()


def plot(cases: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for case in cases:
        elinks = [row["elinks"] for row in case["bandwidth"]]
        ax.plot(elinks, [row["ae_qat_emd_mean"] for row in case["bandwidth"]], marker="o",
                label=f"AE QAT (trained on {case['case']})")
    first = cases[0]["bandwidth"]
    ax.plot([r["elinks"] for r in first], [r["best_choice_emd_mean"] for r in first], marker="s", color="k",
            label="best choice (whole file)")
    ax.set_xticks([r["elinks"] for r in first])
    ax.set_xlabel("e-links (latent bits 3/5/7/9; best-choice cells 4/6/9/14)")
    ax.set_ylabel("mean EMD on real readouts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="tiny training, for a smoke run")
    args = parser.parse_args()
    config = experiment(args.quick)
    real, _ = normalize_econt(load_calq_csv(args.csv), config.quant.input)
    real = real[real.sum(axis=1) > 0]
    table_epochs = 1 if args.quick else 6

    cases = [run_case("synthetic", config, None, real, table_epochs)]

    train_half, eval_half = split_indices(len(real), [0.5, 0.5], seed=11)
    fit_part, val_part = split_indices(len(train_half), [0.85, 0.15], seed=12)
    splits = EventSplits(real[train_half][fit_part], real[train_half][val_part], real[eval_half],
                         repo_relative(args.csv))
    real_config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=128))
    cases.append(run_case("real_half", real_config, splits, real[eval_half], table_epochs))

    args.out.mkdir(parents=True, exist_ok=True)
    plot(cases, args.out / "econt_emd_bandwidth.png")
    report = {
        "benchmark": "econt_emd",
        "csv": repo_relative(args.csv),  # relative to the repository: no machine's absolute paths
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
        "cases": cases,
    }
    (args.out / "econt_emd.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    for case in cases:
        emd = {k: round(v["mean"], 3) for k, v in case["emd"].items()}
        print(case["case"], emd, f"qat/float-1={case['qat_vs_float']:+.3f}", f"qat/pca-1={case['ae_vs_pca16']:+.3f}")


if __name__ == "__main__":
    main()
