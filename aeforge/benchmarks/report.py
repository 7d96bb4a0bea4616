"""HTML reports with PNG plots (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aeforge.artifact import RunAmendment, RunWriter

METHOD_LABELS = {
    "float": "AE float",
    "qat": "AE QAT",
    "pca16": "PCA-16",
    "threshold": "threshold",
    "stc": "super trigger cells",
    "best_choice": "best choice",
}


def fmt_value(value: Any, digits: int = 5) -> str:
    """Numbers to ``digits`` significant digits, None and non-finite as ``n/a``, booleans as yes/no."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "n/a"
    return str(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_emd_histogram(path: Any, per_event: dict[str, np.ndarray]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    finite = [v[np.isfinite(v)] for v in per_event.values()]
    upper = max((np.quantile(v, 0.995) for v in finite if len(v)), default=1.0)
    bins = np.linspace(0.0, max(upper, 1e-6), 60)
    for (name, _), values in zip(per_event.items(), finite, strict=True):
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=f"{METHOD_LABELS.get(name, name)}")
    ax.set_xlabel("EMD per event [normalised cell units]")
    ax.set_ylabel("events")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Earth Mover's Distance, input vs reconstruction")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_emd_vs_occupancy(path: Any, per_event: dict[str, np.ndarray], occupancy: np.ndarray) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    edges = np.unique(np.quantile(occupancy[occupancy > 0], np.linspace(0, 1, 11)).round())
    if len(edges) < 2:
        edges = np.array([occupancy.min(), occupancy.max() + 1.0])
    centres = 0.5 * (edges[:-1] + edges[1:])
    for name, values in per_event.items():
        means = []
        for low, high in itertools.pairwise(edges):
            selected = (occupancy >= low) & (occupancy < high) & np.isfinite(values)
            means.append(values[selected].mean() if selected.any() else np.nan)
        ax.plot(centres, means, marker="o", label=METHOD_LABELS.get(name, name))
    ax.set_xlabel("occupancy (non-zero trigger cells)")
    ax.set_ylabel("mean EMD")
    ax.legend(fontsize=8)
    ax.set_title("EMD against module occupancy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bandwidth(path: Any, table: Sequence[dict[str, Any]]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    elinks = [row["elinks"] for row in table]
    ax.plot(elinks, [row["ae_qat_emd_mean"] for row in table], marker="o", label="AE QAT")
    ax.plot(elinks, [row["best_choice_emd_mean"] for row in table], marker="s", label="best choice")
    ax.set_xticks(elinks)
    ax.set_xlabel("e-links")
    ax.set_ylabel("mean EMD")
    ax.legend()
    ax.set_title("EMD against bandwidth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(path: Any, history: Sequence[Any]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    step = 0
    for phase in dict.fromkeys(record.phase for record in history):
        records = [r for r in history if r.phase == phase]
        x = np.arange(step + 1, step + len(records) + 1)
        ax.plot(x, [r.train_loss for r in records], label=f"{phase} train")
        ax.plot(x, [r.val_loss for r in records], linestyle="--", label=f"{phase} validation")
        step += len(records)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if np.isfinite(value) else "n/a"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}code{background:#f6f6f6}
"""


def _verification_section(verification: dict[str, Any]) -> str:
    if "not_run" in verification:
        return f"<p>Not run: {html.escape(verification['not_run'])}.</p>"
    rows = [
        (name, t["n"], t["exact"], t["max_lsb"], "-" if t["first_mismatch"] is None else t["first_mismatch"])
        for name, t in verification["targets"].items()
    ]
    rows += [(name, "skipped", reason, "", "") for name, reason in verification.get("skipped", {}).items()]
    verdict = "bit-exact" if verification["bit_exact"] else "NOT bit-exact"
    return (
        f"<p>The QAT encoder exported to QONNX and to an hls4ml project (Vitis, io_parallel, compiled for "
        f"C-simulation), each run on the same {verification['n']} normalised synthetic events: "
        f"<b>{verdict}</b> ({verification['wall_time_s']:.1f} s for export, project and verification).</p>"
        + _table(["target", "n", "exact", "max |error| [LSB]", "first mismatch"], rows)
    )


def write_demo_report(
    run: RunWriter | RunAmendment, summary: dict[str, Any], per_event: dict[str, np.ndarray], occupancy: np.ndarray,
    history: Sequence[Any],
) -> None:
    """Write ``report.html`` and its PNG plots into the staged demo run."""
    plot_emd_histogram(run.path("emd_hist.png"), per_event)
    plot_emd_vs_occupancy(run.path("emd_vs_occupancy.png"), per_event, occupancy)
    plot_bandwidth(run.path("emd_vs_bandwidth.png"), summary["latent_bit_table"])
    plot_training(run.path("training.png"), history)
    emd_rows = [
        (METHOD_LABELS.get(name, name), summary["emd"][name], summary["emd_median"][name])
        for name in summary["emd"]
    ]
    bit_rows = [
        (r["elinks"], r["latent_bits"], r["latent_bits_per_event"], r["ae_qat_emd_mean"],
         r["best_choice_cells"], r["best_choice_emd_mean"])
        for r in summary["latent_bit_table"]
    ]
    type_rows = list(summary["fixed_point_types"].items())
    synthetic = ""
    if "emd_synthetic" in summary:
        synthetic = "<h3>Held-out synthetic events</h3>" + _table(
            ["method", "mean EMD"],
            [(METHOD_LABELS.get(k, k), v) for k, v in summary["emd_synthetic"].items()],
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>aeforge demo</title>
<style>{_STYLE}</style></head><body>
<h1>aeforge demo: ECON-T autoencoder</h1>
<p>Evaluation data: <code>{html.escape(summary['eval_data'])}</code>, {summary['n_eval_events']} events
({summary['n_empty_events']} empty events excluded from the EMD). Latent: {summary['latent_bits']} bits
({summary['elinks']} e-links); the classic algorithms are compared at the same bandwidth
(best choice and threshold keep {summary['best_choice_cells']} cells). Wall time {summary['wall_time_s']:.1f} s.</p>
<h2>Earth Mover's Distance</h2>
{_table(["method", "mean EMD", "median EMD"], emd_rows)}
{synthetic}
<img src="emd_hist.png" alt="EMD histogram"><img src="emd_vs_occupancy.png" alt="EMD vs occupancy">
<h2>Latent bits and bandwidth</h2>
<p>One short QAT fine-tune per latent width, from the same float model.</p>
{_table(["e-links", "latent bits", "bits/event", "AE QAT EMD", "best-choice cells", "best-choice EMD"], bit_rows)}
<img src="emd_vs_bandwidth.png" alt="EMD vs bandwidth">
<h2>Hardware: bit-exact verification</h2>
{_verification_section(summary["verification"])}
<h2>Encoder fixed-point types</h2>
{_table(["layer", "type"], type_rows)}
<h2>Training</h2>
<img src="training.png" alt="training curves">
</body></html>
"""
    run.path("report.html").write_text(page, encoding="utf-8")
