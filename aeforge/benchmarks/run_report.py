"""``aeforge report``: one HTML page (+ Markdown summary and PNG plots) per run, from what its stages left.

Sections: run summary (card, key metrics, EMD table), benchmark results (every ``RUN/bench/*.json``, with a
latency histogram + CDF each and the recorded power trace with its measured window shaded), EMD against latent
bits / bandwidth (``summary.json`` of ``aeforge demo``), resources (HLS synthesis, Yosys, the tool-free estimate
and the ASIC energy *estimates* of ``aeforge rtl``) and, with ``compare``, tables across runs. A missing piece
gives a line saying which command makes it. The report is built in a hidden directory beside its target and
renamed into place when complete, so a failure never leaves a partial report.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import CARD_NAME, load_run
from aeforge.benchmarks.bench import BENCH_DIR
from aeforge.benchmarks.report import METHOD_LABELS, _pyplot, fmt_value
from aeforge.errors import ArtifactError
from aeforge.stages import HLS_DIR, RTL_DIR

REPORT_DIR = "report"
HTML_NAME = "index.html"
MD_NAME = "summary.md"
SUMMARY_NAME = "summary.json"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
.hint{color:#8a5a00}.hint code{background:#fff3dc}.bad{color:#b00020}.est{color:#555;font-style:italic}
code{background:#f6f6f6}
"""


# --------------------------------------------------------------------------- formatting


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_time(seconds: Any) -> str:
    """``12.3 µs``-style duration; ``n/a`` for missing values."""
    value = _num(seconds)
    if value is None:
        return "n/a"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value * 1e9:.4g} ns"


def fmt_energy(joules: Any) -> str:
    """``1.23 µJ``-style energy; ``n/a`` for missing values."""
    value = _num(joules)
    if value is None:
        return "n/a"
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value * 1e12:.4g} pJ"


# --------------------------------------------------------------------------- document


@dataclass
class _Doc:
    """The report as HTML and Markdown, built side by side; every text is escaped on the way in."""

    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}\n")

    def para(self, text: str, css: str | None = None) -> None:
        klass = f' class="{css}"' if css else ""
        self.html.append(f"<p{klass}>{html.escape(text)}</p>")
        self.md.append(f"{'*' if css == 'est' else ''}{text}{'*' if css == 'est' else ''}\n")

    def hint(self, text: str, command: str) -> None:
        """``text: command`` -- what is missing and the command that makes it."""
        self.html.append(f'<p class="hint">{html.escape(text)}: <code>{html.escape(command)}</code></p>')
        self.md.append(f"> {text}: `{command}`\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt_value(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

        def cell(value: Any) -> str:
            return fmt_value(value).replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
        self.md.append("\n".join(lines) + "\n")

    def image(self, name: str, alt: str) -> None:
        self.images.append(name)
        self.html.append(f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">')
        self.md.append(f"![{alt}]({name})\n")

    def render_html(self, title: str) -> str:
        return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{_STYLE}</style></head><body>\n" + "\n".join(self.html) + "\n</body></html>\n")

    def render_md(self) -> str:
        return "\n".join(self.md)


# --------------------------------------------------------------------------- plots


def plot_latency(path: Path, latencies_s: Sequence[float], title: str) -> None:
    """Histogram (log count) and empirical CDF of per-query latencies, with p50 / p99 marked."""
    plt = _pyplot()
    lat_us = np.asarray(latencies_s, dtype=np.float64) * 1e6
    fig, (hist_ax, cdf_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    p50, p99 = np.percentile(lat_us, [50, 99])
    low, high = max(float(lat_us.min()), 1e-3), max(float(lat_us.max()), 2e-3)
    bins = np.geomspace(low, high * 1.0001, 80) if high > low * 1.01 else 20
    hist_ax.hist(np.clip(lat_us, low, None), bins=bins, color="#3366aa")
    hist_ax.set_xscale("log")
    hist_ax.set_yscale("log")
    hist_ax.set_xlabel("latency per query [µs]")
    hist_ax.set_ylabel("queries")
    ordered = np.sort(lat_us)
    cdf_ax.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size, color="#3366aa")
    cdf_ax.set_xscale("log")
    cdf_ax.set_xlabel("latency per query [µs]")
    cdf_ax.set_ylabel("fraction of queries")
    for ax in (hist_ax, cdf_ax):
        ax.axvline(p50, color="#2a9d40", linestyle="--", label=f"p50 {p50:.4g} µs")
        ax.axvline(p99, color="#c0392b", linestyle="--", label=f"p99 {p99:.4g} µs")
    cdf_ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_power_trace(path: Path, trace: dict[str, Any], title: str) -> None:
    """Recorded power against time, the measured window shaded."""
    plt = _pyplot()
    times = np.asarray(trace["times_s"], dtype=np.float64)
    power = np.asarray(trace["power_w"], dtype=np.float64)
    t0, t1 = (float(v) for v in trace["window"])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(times - t0, power, color="#444", linewidth=1.0, label="power (all rails)")
    label = "measured window" if trace.get("align") != "span" else "trace span used (align=span)"
    ax.axvspan(0.0, t1 - t0, color="#f4a261", alpha=0.3, label=label)
    ax.set_xlabel("time from the window start [s]")
    ax.set_ylabel("power [W]")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_emd_vs_bits(path: Path, table: Sequence[dict[str, Any]]) -> None:
    """Mean EMD of every method in the table against latent bits per event (e-links annotated)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bits = [row.get("latent_bits_per_event") for row in table]
    methods = [k for k in table[0] if k.endswith("_emd_mean")]
    for method, marker in zip(methods, "osd^v<>", strict=False):
        name = method.removesuffix("_emd_mean")
        ax.plot(bits, [row.get(method) for row in table], marker=marker,
                label=METHOD_LABELS.get(name, name.replace("_", " ").replace("ae ", "AE ").replace("qat", "QAT")))
    for row in table:
        if row.get("elinks") is not None and row.get("latent_bits_per_event") is not None:
            ax.annotate(f"{row['elinks']} e-links", (row["latent_bits_per_event"], ax.get_ylim()[1]),
                        fontsize=7, ha="center", va="top", color="#666")
    ax.set_xlabel("bits per event (latent bits x latent dimension)")
    ax.set_ylabel("mean EMD")
    ax.legend(fontsize=8)
    ax.set_title("EMD against latent bits / bandwidth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- run data


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class RunData:
    """What the report reads from one run directory (absent pieces are None / empty)."""

    path: Path
    card: dict[str, Any]
    summary: dict[str, Any] | None
    benches: list[tuple[str, dict[str, Any]]]
    bench_errors: list[tuple[str, str]]
    hls: dict[str, Any] | None
    rtl: dict[str, Any] | None

    @property
    def kind(self) -> str:
        return str(self.card.get("kind", "?"))

    @property
    def metrics(self) -> dict[str, Any]:
        metrics = self.card.get("metrics")
        return metrics if isinstance(metrics, dict) else {}

    def emd(self) -> dict[str, Any]:
        """Mean EMD per method (summary.json, else the card's metrics)."""
        source = (self.summary or {}).get("emd") or self.metrics.get("emd")
        return source if isinstance(source, dict) else {}


def _card(path: Path) -> dict[str, Any] | None:
    data, _ = _read_json(path)
    return data if isinstance(data, dict) else None


def load_run_data(run_dir: str | Path) -> RunData:
    """Read the card, summary, bench results and stage cards of a run (ArtifactError if it is not a run)."""
    path = Path(run_dir)
    card = load_run(path, verify=False)
    summary = _card(path / SUMMARY_NAME)
    benches: list[tuple[str, dict[str, Any]]] = []
    errors: list[tuple[str, str]] = []
    for file in sorted((path / BENCH_DIR).glob("*.json")):
        data, error = _read_json(file)
        if error is None and not (isinstance(data, dict) and "runner" in data and "latency" in data):
            error = "not an aeforge bench result (no runner/latency)"
        if error is not None:
            errors.append((file.name, error))
        else:
            benches.append((file.name, data))
    return RunData(path, card.data, summary, benches, errors, _card(path / HLS_DIR / CARD_NAME),
                   _card(path / RTL_DIR / CARD_NAME))


# --------------------------------------------------------------------------- sections


def _flat_metrics(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if key == "emd":
            continue
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, (dict, list))]
        elif not isinstance(value, list):
            rows.append((key, value))
    return rows


def _summary_section(doc: _Doc, run: RunData) -> None:
    doc.heading(2, "Run summary")
    card = run.card
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    tools = card.get("tools") if isinstance(card.get("tools"), dict) else {}
    doc.table(["field", "value"], [
        ("run", str(run.path.resolve())), ("card kind", run.kind), ("created (UTC)", card.get("created_utc")),
        ("config name", config.get("name")), ("aeforge", tools.get("aeforge")),
    ])
    metrics = _flat_metrics(run.metrics)
    if metrics:
        doc.heading(3, "Key metrics (card.json)")
        doc.table(["metric", "value"], metrics)
    emd = run.emd()
    if emd:
        doc.heading(3, "Earth Mover's Distance")
        medians = (run.summary or {}).get("emd_median") or {}
        doc.table(["method", "mean EMD", "median EMD"],
                  [(METHOD_LABELS.get(k, k), v, medians.get(k)) for k, v in emd.items()])
    else:
        doc.hint("no EMD evaluation in this run", "aeforge demo --out RUN")


def _bench_rows(benches: Sequence[tuple[str, dict[str, Any]]], notes: list[str]) -> list[tuple[Any, ...]]:
    rows = []
    for name, result in benches:
        if result.get("valid"):
            status = "valid"
        else:
            reasons = result.get("invalid_reasons") or result.get("latency", {}).get("invalid_reasons") or []
            status = "INVALID: " + ("; ".join(map(str, reasons)) or "no reason recorded")
        rows.append((name, result.get("runner"), result.get("batch_size"), result.get("scenario"), status,
                     fmt_time(result.get("p50_s")), fmt_time(result.get("p99_s")),
                     fmt_value(result.get("throughput_per_s")), _energy_text(result, notes)))
    return rows


def _energy_text(result: dict[str, Any], notes: list[str]) -> str:
    """The energy cell; why it was not measured goes once into ``notes`` (printed under the table)."""
    value = _num(result.get("energy_j_per_inference"))
    energy = result.get("energy") if isinstance(result.get("energy"), dict) else {}
    if value is not None and energy.get("valid", True):
        meter = (energy.get("meter") or {}).get("name", "meter")
        return f"{fmt_energy(value)} measured ({meter})"
    reason = "; ".join(map(str, energy.get("invalid_reasons") or ["no energy result"]))
    if reason not in notes:
        notes.append(reason)
    return f"not measured [{notes.index(reason) + 1}]"


def _energy_notes(doc: _Doc, notes: Sequence[str]) -> None:
    for number, reason in enumerate(notes, start=1):
        doc.para(f"[{number}] energy not measured: {reason}")


def _bench_section(doc: _Doc, run: RunData, out: Path) -> None:
    doc.heading(2, "Benchmark results")
    for name, error in run.bench_errors:
        doc.para(f"{BENCH_DIR}/{name}: unreadable, skipped ({error})", css="bad")
    if not run.benches:
        doc.hint("no benchmark yet", f"aeforge bench {run.path} --runner ort")
        return
    doc.para("Latencies per query (one call of the runner on a batch); throughput in inferences (samples) per "
             "second; energy per inference only where a power meter measured it.")
    notes: list[str] = []
    doc.table(["result", "runner", "batch", "scenario", "valid", "p50", "p99", "throughput [1/s]",
               "energy / inference"], _bench_rows(run.benches, notes))
    _energy_notes(doc, notes)
    for index, (name, result) in enumerate(run.benches, start=1):
        title = f"{name}: {result.get('runner')}, batch {result.get('batch_size')}, {result.get('scenario')}"
        doc.heading(3, title)
        latencies = (result.get("latency") or {}).get("latencies_s")
        if latencies:
            png = f"latency_{index}.png"
            plot_latency(out / png, latencies, title)
            doc.image(png, f"latency histogram and CDF of {name}")
        else:
            doc.para("no per-query latencies stored in this result")
        trace = result.get("power_trace")
        if isinstance(trace, dict) and len(trace.get("times_s") or []) >= 2:
            png = f"power_{index}.png"
            plot_power_trace(out / png, trace, f"power trace of {name}")
            doc.image(png, f"power trace of {name}")
        estimates = result.get("estimates") or {}
        figures = [(k, v) for k, v in estimates.items() if k.startswith("estimated_")]
        if figures:
            doc.para("Estimates recorded with this result (models, not measurements): " + ", ".join(
                f"{k} = {fmt_energy(v) if 'energy' in k else fmt_time(v)}" for k, v in figures), css="est")


def _emd_bits_section(doc: _Doc, run: RunData, out: Path) -> None:
    doc.heading(2, "EMD against latent bits / bandwidth")
    table = (run.summary or {}).get("latent_bit_table")
    if not (isinstance(table, list) and table and all(isinstance(r, dict) for r in table)):
        doc.hint("no EMD vs latent bits table (summary.json of a demo run)", "aeforge demo --out RUN")
        return
    header = list(table[0])
    doc.table(header, [[row.get(k) for k in header] for row in table])
    plot_emd_vs_bits(out / "emd_vs_bits.png", table)
    doc.image("emd_vs_bits.png", "EMD against latent bits per event")


def _synthesis_rows(synthesis: dict[str, Any]) -> list[tuple[str, Any]]:
    keys = ("tool", "resources_from", "lut", "ff", "dsp", "bram_18k", "latency_cycles_min", "latency_cycles_max",
            "ii_min", "ii_max", "clock_period_ns_target", "clock_period_ns_estimated", "fmax_mhz")
    return [(k, synthesis.get(k)) for k in keys if k in synthesis]


def _resources_section(doc: _Doc, run: RunData) -> None:
    doc.heading(2, "Resources")
    doc.heading(3, "HLS (hls4ml)")
    if run.hls is None:
        doc.hint("no HLS project", f"aeforge hls {run.path} --build")
    else:
        synthesis = (run.hls.get("metrics") or {}).get("synthesis")
        if isinstance(synthesis, dict):
            doc.table(["HLS synthesis", "value"], _synthesis_rows(synthesis))
        else:
            doc.hint("HLS project compiled for C-simulation only, no synthesis report",
                     f"aeforge hls {run.path} --build --force")
    doc.heading(3, "RTL (da4ml)")
    if run.rtl is None:
        doc.hint("no RTL project", f"aeforge rtl {run.path} --synth xc7 --energy")
        return
    metrics = run.rtl.get("metrics") or {}
    doc.table(["RTL", "value"], [(k, metrics.get(k)) for k in ("language", "pipelined", "pipeline_stages",
                                                               "latency_cycles", "latency_cycles_measured", "ii",
                                                               "target_mhz", "fmax_mhz") if k in metrics])
    yosys = metrics.get("synthesis")
    if isinstance(yosys, dict):
        keys = ("target", "lut", "ff", "carry", "dsp", "bram", "gates", "logic_depth", "yosys_version")
        doc.table(["Yosys synthesis (measured)", "value"], [(k, yosys.get(k)) for k in keys if k in yosys])
    else:
        doc.hint("no Yosys synthesis", f"aeforge rtl {run.path} --synth xc7 --force")
    estimate = metrics.get("estimate")
    if isinstance(estimate, dict):
        keys = ("target", "lut", "ff", "carry", "dsp", "gates", "latency_cycles", "macs", "method")
        doc.table(["tool-free resource ESTIMATE", "value"], [(k, estimate.get(k)) for k in keys if k in estimate])
    energy = metrics.get("energy_estimate")
    rows = []
    if isinstance(energy, dict):
        for name, entry in energy.items():
            if isinstance(entry, dict):
                rows.append((f"ESTIMATE ({name})", fmt_energy(entry.get("energy_j_per_inference")),
                             entry.get("node_nm"), entry.get("clock_mhz"), entry.get("method")))
    if rows:
        doc.para("ASIC energy per inference: estimates from models of the design, not measurements.", css="est")
        doc.table(["estimated energy / inference (ASIC)", "energy", "node [nm]", "clock [MHz]", "method"], rows)
    if not isinstance(energy, dict) or "netlist" not in energy:
        doc.hint("no netlist-based ASIC energy estimate", f"aeforge rtl {run.path} --energy --force")


def _latest_per_config(benches: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The latest result per (runner, batch, scenario), preferring valid ones."""
    chosen: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    for name, result in benches:  # sorted by file name = by time
        key = (result.get("runner"), result.get("batch_size"), result.get("scenario"))
        if result.get("valid") or key not in chosen or not chosen[key][1].get("valid"):
            chosen[key] = (name, result)
    return list(chosen.values())


def _resources_summary(run: RunData) -> tuple[Any, Any, str]:
    """LUT, FF and where they come from: Yosys, else HLS synthesis, else the tool-free estimate."""
    rtl = (run.rtl or {}).get("metrics") or {}
    hls = ((run.hls or {}).get("metrics") or {}).get("synthesis") or {}
    for source, data in (("Yosys", rtl.get("synthesis")), ("HLS synthesis", hls),
                         ("ESTIMATE (tool-free)", rtl.get("estimate"))):
        if isinstance(data, dict) and (data.get("lut") is not None or data.get("ff") is not None):
            return data.get("lut"), data.get("ff"), source
    return None, None, "none: run aeforge rtl / aeforge hls --build"


def _labels(paths: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def _compare_section(doc: _Doc, runs: Sequence[RunData]) -> None:
    doc.heading(2, "Comparison across runs")
    labels = _labels([r.path for r in runs])
    rows = []
    notes: list[str] = []
    for label, run in zip(labels, runs, strict=True):
        picked = _latest_per_config(run.benches)
        if not picked:
            rows.append((label, "no benchmark", "", "", "", "n/a", "n/a", "n/a", f"aeforge bench {run.path}"))
        for _, result in picked:
            rows.append((label, result.get("runner"), result.get("batch_size"), result.get("scenario"),
                         "valid" if result.get("valid") else "INVALID", fmt_time(result.get("p50_s")),
                         fmt_time(result.get("p99_s")), fmt_value(result.get("throughput_per_s")),
                         _energy_text(result, notes)))
    doc.heading(3, "Latency, throughput, energy (latest result per runner, batch and scenario)")
    doc.table(["run", "runner", "batch", "scenario", "valid", "p50", "p99", "throughput [1/s]",
               "energy / inference"], rows)
    _energy_notes(doc, notes)
    doc.heading(3, "Resources and quality")
    rows = []
    for label, run in zip(labels, runs, strict=True):
        lut, ff, source = _resources_summary(run)
        energy = ((run.rtl or {}).get("metrics") or {}).get("energy_estimate") or {}
        asic = next((e.get("energy_j_per_inference") for k in ("netlist", "programmable_mac")
                     if isinstance(e := energy.get(k), dict)), None)
        emd = run.emd()
        rows.append((label, run.kind, lut, ff, source, emd.get("qat"),
                     fmt_energy(asic) + (" (ESTIMATE)" if asic is not None else "")))
    doc.table(["run", "kind", "LUT", "FF", "LUT/FF source", "EMD (AE QAT, mean)", "ASIC energy / inference"],
              rows)


# --------------------------------------------------------------------------- entry point


def _build(run: RunData, compare: Sequence[RunData], out: Path) -> None:
    doc = _Doc()
    doc.heading(1, f"aeforge run report: {run.path.name or run.path}")
    _summary_section(doc, run)
    _bench_section(doc, run, out)
    _emd_bits_section(doc, run, out)
    _resources_section(doc, run)
    if compare:
        _compare_section(doc, [run, *compare])
    (out / HTML_NAME).write_text(doc.render_html(f"aeforge report: {run.path.name}"), encoding="utf-8")
    (out / MD_NAME).write_text(doc.render_md(), encoding="utf-8")


def write_run_report(run_dir: str | Path, compare: Sequence[str | Path] = (),
                     out_dir: str | Path | None = None) -> Path:
    """Write ``index.html``, ``summary.md`` and PNGs to ``out_dir`` (default ``RUN/report``); the HTML's path.

    ``compare``: other run directories for the comparison tables. Every run must be an aeforge run
    (ArtifactError otherwise); anything else missing gives a hint in the report, never an error. An existing
    ``out_dir`` is replaced only when it is a report (holds ``index.html``) or empty.
    """
    run = load_run_data(run_dir)
    others = [load_run_data(path) for path in compare]
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / REPORT_DIR
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / HTML_NAME).is_file())):
        raise ArtifactError(f"{out}: exists and is not an aeforge report; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build(run, others, staging)
        os.chmod(staging, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "report")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / HTML_NAME


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
