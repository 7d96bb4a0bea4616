"""How close is the embedded synthetic HGCAL generator to real ECON-T module readouts?

Compares ``generate_readouts`` (default parameters) with the real CSV (default
``../shared/data/hgcal/CALQ_output.csv``) on: occupancy (non-zero cells per event), maximum cell
charge, row sum, the spectrum of non-zero cell charges, per-cell mean occupancy, the fraction of
fully lit modules and the cell-to-cell occupancy correlation against distance. For each
per-event quantity: mean, median, quantiles, the 1-D Wasserstein distance and the two-sample KS
statistic (scipy). Also times the generator.

    python benchmarks/hgcal_synthetic_realism.py [--real PATH] [--n N] [--seed S] [--out benchmarks/results]

Writes ``hgcal_synthetic_realism.json`` and ``hgcal_synthetic_realism.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np
from portable import portable  # benchmarks/portable.py: repository-relative paths
from scipy import stats

from aeforge.artifact import tool_versions, write_json_atomic
from aeforge.data.hgcal.geometry import cell_distance_matrix
from aeforge.data.hgcal.readouts import load_calq_csv
from aeforge.data.hgcal.synthetic import SyntheticConfig, generate_readouts

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "hgcal" / "CALQ_output.csv"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
DISTANCE_BINS_PITCH = np.arange(0.75, 8.0, 0.5)


def integer_log_bins(top_decade: float, n_edges: int) -> np.ndarray:
    """Log-spaced bin edges on half-integers, so integer charges never fall in empty bins."""
    return np.unique(np.round(np.logspace(0, top_decade, n_edges))) - 0.5


def per_event(charges: np.ndarray) -> dict[str, np.ndarray]:
    """The compared distributions: per event, and the non-zero cell charges."""
    return {
        "occupancy_cells": (charges > 0).sum(axis=1).astype(float),
        "max_charge_counts": charges.max(axis=1),
        "row_sum_counts": charges.sum(axis=1),
        "nonzero_charge_counts": charges[charges > 0],
    }


def summary(values: np.ndarray) -> dict[str, float]:
    out = {"n": int(values.size), "mean": float(values.mean()), "median": float(np.median(values))}
    out.update({f"q{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES})
    return out


def compare(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Distances between two 1-D samples (raw and, for positive charges, in log10)."""
    ks = stats.ks_2samp(real, synthetic)
    out = {
        "wasserstein": float(stats.wasserstein_distance(real, synthetic)),
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "mean_rel_diff": float(synthetic.mean() / real.mean() - 1.0),
        "median_rel_diff": float(np.median(synthetic) / np.median(real) - 1.0),
    }
    if real.min() > 0 and synthetic.min() > 0:
        out["wasserstein_log10"] = float(stats.wasserstein_distance(np.log10(real), np.log10(synthetic)))
    return out


def occupancy_correlation_by_distance(charges: np.ndarray) -> list[float]:
    """Mean Pearson correlation of cell occupancies for cell pairs in each distance bin."""
    correlation = np.corrcoef((charges > 0).T.astype(float))
    distance_pitch = cell_distance_matrix() / 2.0  # normalized geometry: pitch = 2
    result = []
    for low in DISTANCE_BINS_PITCH:
        pairs = (distance_pitch >= low) & (distance_pitch < low + 0.5)
        result.append(float(np.nanmean(correlation[pairs])) if pairs.any() else float("nan"))
    return result


def plot(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], extra: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    style = {"real": {"color": "black", "lw": 1.8}, "synthetic": {"color": "tab:orange", "lw": 1.5}}
    panels = [
        ("occupancy_cells", np.arange(-0.5, 49.5, 1.0), False, "non-zero cells per event"),
        ("max_charge_counts", integer_log_bins(4, 41), True, "max cell charge [counts]"),
        ("row_sum_counts", integer_log_bins(4.4, 45), True, "row sum [counts]"),
        ("nonzero_charge_counts", integer_log_bins(4, 41), True, "non-zero cell charge [counts]"),
    ]
    for ax, (key, bins, log_x, label) in zip(axes.flat, panels, strict=False):
        for name, data in (("real", real), ("synthetic", synthetic)):
            ax.hist(data[key], bins=bins, density=True, histtype="step", label=name, **style[name])
        if log_x:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(title=f"KS {extra['metrics'][key]['ks_statistic']:.3f}", fontsize=8)
    ax = axes.flat[4]
    cells = np.arange(48)
    ax.plot(cells, extra["per_cell_occupancy"]["real"], "o-", ms=3, label="real", **style["real"])
    ax.plot(cells, extra["per_cell_occupancy"]["synthetic"], "s-", ms=3, label="synthetic", **style["synthetic"])
    ax.set_xlabel("trigger cell (calQ index)")
    ax.set_ylabel("P(cell non-zero)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax = axes.flat[5]
    centres = DISTANCE_BINS_PITCH + 0.25
    for name in ("real", "synthetic"):
        ax.plot(centres, extra["occupancy_correlation_by_distance"][name], "o-", label=name, **style[name])
    ax.set_xlabel("cell-pair distance [cell pitches]")
    ax.set_ylabel("occupancy correlation")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"HGCAL ECON-T readouts: real ({extra['n_real']} events) vs synthetic defaults ({extra['n_synthetic']} events)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_CSV, help="real CALQ CSV")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not args.real.is_file():
        print(f"real data not found: {args.real} (pass --real PATH)", file=sys.stderr)
        return 2

    real_charges = load_calq_csv(args.real)
    generate_readouts(10, seed=args.seed)  # warm-up (geometry tables are cached)
    start = time.perf_counter()
    synthetic_charges = generate_readouts(args.n, seed=args.seed)
    generation_s = time.perf_counter() - start

    real, synthetic = per_event(real_charges), per_event(synthetic_charges)
    metrics = {
        key: {"real": summary(real[key]), "synthetic": summary(synthetic[key]), **compare(real[key], synthetic[key])}
        for key in real
    }
    occupancy = {"real": (real_charges > 0).mean(axis=0), "synthetic": (synthetic_charges > 0).mean(axis=0)}
    correlation = {
        "real": occupancy_correlation_by_distance(real_charges),
        "synthetic": occupancy_correlation_by_distance(synthetic_charges),
    }
    full = {
        name: float((charges > 0).all(axis=1).mean())
        for name, charges in (("real", real_charges), ("synthetic", synthetic_charges))
    }
    empty = {
        name: float((charges == 0).all(axis=1).mean())
        for name, charges in (("real", real_charges), ("synthetic", synthetic_charges))
    }
    report = {
        "benchmark": "hgcal_synthetic_realism",
        "real_csv": str(args.real),
        "n_real": len(real_charges),
        "n_synthetic": len(synthetic_charges),
        "seed": args.seed,
        "synthetic_config": dataclasses.asdict(SyntheticConfig()),
        "generation": {"seconds": generation_s, "events_per_second": args.n / generation_s},
        "metrics": metrics,
        "per_cell_occupancy": {k: v.round(4).tolist() for k, v in occupancy.items()},
        "per_cell_occupancy_max_abs_diff": float(np.abs(occupancy["real"] - occupancy["synthetic"]).max()),
        "fraction_all_cells_lit": full,
        "fraction_empty": empty,
        "occupancy_correlation_distance_bins_pitch": (DISTANCE_BINS_PITCH + 0.25).tolist(),
        "occupancy_correlation_by_distance": correlation,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "hgcal_synthetic_realism.json", portable(report))
    plot(real, synthetic, report, args.out / "hgcal_synthetic_realism.png")

    print(f"synthetic: {args.n} events in {generation_s:.2f} s ({args.n / generation_s:,.0f} events/s)")
    print(
        f"{'quantity':24s} {'real mean':>10s} {'syn mean':>10s} {'real med':>9s} {'syn med':>9s} {'KS':>6s} {'W1':>9s}"
    )
    for key, row in metrics.items():
        print(
            f"{key:24s} {row['real']['mean']:10.1f} {row['synthetic']['mean']:10.1f} "
            f"{row['real']['median']:9.1f} {row['synthetic']['median']:9.1f} "
            f"{row['ks_statistic']:6.3f} {row['wasserstein']:9.2f}"
        )
    print(f"all 48 cells lit: real {full['real']:.3f}, synthetic {full['synthetic']:.3f}")
    print(f"wrote {args.out / 'hgcal_synthetic_realism.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
