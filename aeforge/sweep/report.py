"""``DIR/report.html``: the sweep's Pareto front (pairwise plot, table of its configurations) and every trial."""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aeforge.benchmarks.report import fmt_value
from aeforge.sweep.store import PLOT_NAME, REPORT_NAME, TRIALS_DIR, trial_name

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
.est{color:#555;font-style:italic}.bad{color:#b00020}tr.front td{background:#fff4f4}code{background:#f6f6f6}
"""
UNITS = {"energy_j": "J", "bytes": "B/sample", "latency_cycles": "cycles"}


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits, None as n/a, the rest as text."""
    return fmt_value(value, digits=4)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1,
           row_class: Sequence[str] | None = None) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_class[index]}"' if row_class and row_class[index] else ""
        cells = "".join(f'<td class="{"l" if i < left else ""}">{v if isinstance(v, _Html) else html.escape(fmt(v))}'
                        "</td>" for i, v in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Html(str):
    """Text that is already HTML (not escaped again)."""


def _link(trial_id: int) -> _Html:
    name = trial_name(trial_id)
    return _Html(f'<a href="{TRIALS_DIR}/{name}/card.json">{name}</a>')


def write_report(root: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``report.html`` and ``pareto.png`` into the sweep directory (each through an atomic rename)."""
    from aeforge.sweep.pareto import plot_front

    root = Path(root)
    objectives = summary["objectives"]
    trials = summary["trials"]
    done = [t for t in trials if t["status"] == "done" and t.get("duplicate_of") is None]
    front = set(summary["front"])
    keys = list(summary["spec"]["space"])
    parts = [f"<h1>Sweep {html.escape(summary['name'])}</h1>"]
    counts = summary["counts"]
    executor = summary.get("executor") or {}
    parts.append(_table(["", ""], [
        ("sweep file", summary["source"]),
        ("base experiment", summary["spec"]["base"] or "defaults"),
        ("fixed overrides", ", ".join(f"{k}={v}" for k, v in summary["spec"]["set"].items()) or "none"),
        ("sampler", f"{summary['spec']['sampler']['name']} (seed {summary['spec']['sampler']['seed']}, "
                    f"{counts['n_trials']} trials)"),
        ("trials", f"{counts['done']} done, {counts['failed']} failed, {counts['unfinished']} unfinished; "
                   f"{counts['lost_workers']} lost workers retried, {counts['duplicates']} duplicates reused"),
        ("executor", ", ".join(f"{k} {v}" for k, v in executor.items())),
        ("wall time (this run)", f"{summary['wall_s']:.1f} s"),
    ], left=2))
    sources = summary.get("sources", {})
    parts.append(f'<p class="est">LUT/FF: {html.escape(str(sources.get("lut")))}. Energy per inference: '
                 f'{html.escape(str(sources.get("energy_j")))} -- an estimate, not a measurement. '
                 + html.escape(summary.get("quality_note") or "Quality: mean EMD on held-out synthetic events of each "
                               "trial (lower is better)")
                 + "; bytes: latent elements x bits / 8 per sample.</p>")
    parts.append(f"<h2>Pareto front ({len(front)} of {len(done)} finished trials)</h2>")
    directions = summary.get("directions") or ["min"] * len(objectives)
    goals = [f"<code>{html.escape(o)}</code> ({'max' if d in ('max', 'maximize') else 'min'})"
             for o, d in zip(objectives, directions, strict=False)]
    parts.append("<p>Objectives " + ", ".join(goals)
                 + ": a configuration is on the front when no other is at least as good in every objective "
                 "and better in one.</p>")
    if done:
        points = [t["values"] for t in done]
        labels = [trial_name(t["trial"]) for t in done]
        front_index = [i for i, t in enumerate(done) if t["trial"] in front]
        image = root / PLOT_NAME
        handle, temporary = tempfile.mkstemp(prefix=".pareto.", suffix=".png", dir=root)
        os.close(handle)
        try:
            plot_front(Path(temporary), objectives, points, front_index, labels, f"{summary['name']}: Pareto front")
            os.chmod(temporary, 0o644)
            os.replace(temporary, image)
        finally:
            Path(temporary).unlink(missing_ok=True)
        parts.append(f'<img src="{PLOT_NAME}" alt="pairwise objectives, Pareto front highlighted">')
        metric_names = [*objectives, *[m for m in ("emd", "mse", "auc", "lut", "ff", "energy_j", "bytes",
                                                   "latency_cycles", "ebops")
                                       if m not in objectives and any(m in t["metrics"] for t in done)], "bit_exact"]
        header = ["trial", *keys, *[f"{m} [{UNITS[m]}]" if m in UNITS else m for m in metric_names]]

        def row(t: dict[str, Any]) -> list[Any]:
            return [_link(t["trial"]), *[t["params"].get(k) for k in keys],
                    *[t["metrics"].get(m) for m in metric_names]]

        on_front = sorted((t for t in done if t["trial"] in front), key=lambda t: t["values"])
        parts.append(_table(header, [row(t) for t in on_front], left=1))
        parts.append("<h2>All finished trials</h2>")
        ordered = sorted(done, key=lambda t: t["trial"])
        parts.append(_table([*header, "wall [s]"], [[*row(t), t.get("wall_s")] for t in ordered], left=1,
                            row_class=["front" if t["trial"] in front else "" for t in ordered]))
    else:
        parts.append('<p class="bad">No trial finished: there is no front.</p>')
    failed = [t for t in trials if t["status"] == "failed"]
    if failed:
        parts.append(f"<h2>Failed trials ({len(failed)})</h2>")
        parts.append(_table(["trial", *keys, "attempts", "error"],
                            [[_link(t["trial"]), *[t["params"].get(k) for k in keys], t["attempts"], t["error"]]
                             for t in failed], left=1))
    lost = [t for t in trials if t["lost"]]
    if lost:
        parts.append("<h2>Lost workers (retried)</h2>")
        parts.append(_table(["trial", "attempt", "reason", "final status"],
                            [[_link(t["trial"]), entry["attempt"], entry["reason"], t["status"]]
                             for t in lost for entry in t["lost"]], left=1))
    document = (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(summary["name"])} sweep'
                f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    target = root / REPORT_NAME
    handle, temporary = tempfile.mkstemp(prefix=".report.", suffix=".html", dir=root)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(document)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return target
