"""``write_run_report`` on fixture run directories: tables, plots, hints, comparison, atomic replacement."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aeforge.benchmarks import run_report
from aeforge.benchmarks.run_report import fmt_energy, fmt_time, write_run_report
from aeforge.errors import ArtifactError

pytest.importorskip("matplotlib")


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _bench(runner: str, *, valid: bool = True, trace: bool = False, energy_j: float | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    latencies = (20e-6 + rng.exponential(5e-6, 500)).tolist()
    result: dict[str, Any] = {
        "valid": valid, "p50_s": float(np.median(latencies)) if valid else None,
        "p99_s": float(np.percentile(latencies, 99)) if valid else None,
        "throughput_per_s": 40000.0 if valid else None, "energy_j_per_inference": energy_j,
        "invalid_reasons": [] if valid else ["latency: only 10 queries completed, fewer than the minimum 50"],
        "runner": runner, "scenario": "single-stream", "batch_size": 1,
        "latency": {"valid": valid, "latencies_s": latencies, "n_queries": 500},
        "energy": {"valid": energy_j is not None, "energy_j_per_inference": energy_j,
                   "invalid_reasons": [] if energy_j is not None else ["no meter requested (--meter none)"],
                   "meter": {"name": "external" if energy_j is not None else "none"}},
        "metadata": {}, "estimates": {},
    }
    if trace:
        times = np.linspace(1000.0, 1012.0, 241)
        result["power_trace"] = {"times_s": times.tolist(), "power_w": (2.0 + 0.1 * np.sin(times)).tolist(),
                                 "window": [1003.0, 1009.0], "align": "epoch"}
    return result


RTL_CARD = {"schema": 1, "kind": "rtl", "metrics": {
    "language": "verilog", "pipelined": False, "latency_cycles": 1,
    "synthesis": {"target": "xc7", "lut": 1234, "ff": 56, "dsp": 0, "carry": 7, "bram": 0, "gates": 2000},
    "estimate": {"target": "xc7", "lut": 1500, "ff": 60, "dsp": 0, "gates": 2500, "latency_cycles": 1, "macs": 900,
                 "method": "csd adders"},
    "energy_estimate": {"programmable_mac": {"energy_j_per_inference": 2.4e-9, "node_nm": 65.0, "clock_mhz": 40.0,
                                             "method": "MAC table"}},
}}
SUMMARY = {"emd": {"qat": 1.31, "best_choice": 0.31}, "emd_median": {"qat": 1.28, "best_choice": 0.05},
           "latent_bit_table": [
               {"elinks": e, "latent_bits": b, "latent_bits_per_event": 16 * b, "ae_qat_emd_mean": 1.5 - 0.05 * e,
                "best_choice_emd_mean": 1.6 - 0.3 * e} for e, b in ((2, 3), (3, 5), (4, 7), (5, 9))]}


def _run(root: Path, name: str, *, full: bool = True) -> Path:
    run = root / name
    _write(run / "card.json", {"schema": 1, "kind": "demo", "created_utc": "2026-01-01T00:00:00+00:00",
                               "config": {"name": "<script>alert(1)</script>"},
                               "metrics": {"best_val_loss": {"qat": 0.87}, "emd": {"qat": 1.31}}, "files": {}})
    if full:
        _write(run / "summary.json", SUMMARY)
        _write(run / "bench" / "20260101T000000Z_ort_b1.json", _bench("ort", trace=True, energy_j=3.2e-6))
        _write(run / "bench" / "20260101T000100Z_torch_b1.json", _bench("torch", valid=False))
        _write(run / "rtl" / "card.json", RTL_CARD)
    return run


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_full_report_has_tables_plots_and_labels(tmp_path: Path) -> None:
    from matplotlib.image import imread

    run = _run(tmp_path, "full")
    html_path = write_run_report(run)
    assert html_path == run / "report" / "index.html"
    page = html_path.read_text()
    for text in ("Run summary", "Benchmark results", "20260101T000000Z_ort_b1.json", "3.2 µJ measured (external)",
                 "not measured: no meter requested (--meter none)", "INVALID: latency: only 10 queries",
                 "Earth Mover&#x27;s Distance", "EMD against latent bits", "Yosys synthesis (measured)", "1234",
                 "tool-free resource ESTIMATE", "ESTIMATE (programmable_mac)", "2.4 nJ", "not measurements"):
        assert text in page, text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "aeforge hls" in page  # the HLS stage did not run
    images = _images(page)
    assert {"latency_1.png", "latency_2.png", "power_1.png", "emd_vs_bits.png"} <= set(images)
    for name in images:
        png = html_path.parent / name
        assert png.stat().st_size > 1000
        assert imread(png).ndim == 3
    summary = (html_path.parent / "summary.md").read_text()
    assert "| 20260101T000000Z_ort_b1.json | ort | 1 | single-stream | valid |" in summary
    assert "![" in summary and "ESTIMATE" in summary
    assert not list(tmp_path.glob("full/.report*"))


def test_missing_pieces_give_hints_not_errors(tmp_path: Path) -> None:
    run = _run(tmp_path, "bare", full=False)
    _write(run / "bench" / "broken.json", {"something": "else"})
    (run / "bench" / "truncated.json").write_text("{")
    page = write_run_report(run).read_text()
    assert f"no benchmark yet: <code>aeforge bench {run} --runner ort</code>" in page
    assert f"aeforge hls {run} --build" in page and f"aeforge rtl {run} --synth xc7 --energy" in page
    assert "aeforge demo --out RUN" in page  # no latent-bits table
    assert "broken.json: unreadable" in page and "truncated.json: unreadable" in page
    assert _images(page) == []
    assert "no benchmark yet" in (run / "report" / "summary.md").read_text()


def test_compare_tables_across_two_runs(tmp_path: Path) -> None:
    first = _run(tmp_path, "first")
    second = _run(tmp_path, "second", full=False)
    _write(second / "hls" / "card.json", {"kind": "hls", "metrics": {"synthesis": {
        "tool": "vitis", "lut": 777, "ff": 88, "latency_cycles_max": 2, "clock_period_ns_target": 5.0}}})
    page = write_run_report(first, compare=[second]).read_text()
    section = page[page.index("Comparison across runs"):]
    assert "<td>first</td><td>ort</td>" in section and "<td>second</td><td>no benchmark</td>" in section
    assert "1234" in section and "Yosys" in section  # first: measured by Yosys
    assert "777" in section and "HLS synthesis" in section  # second: from HLS synthesis
    assert "(ESTIMATE)" in section and "1.31" in section
    with pytest.raises(ArtifactError, match="not found"):
        write_run_report(first, compare=[tmp_path / "nope"])


def test_failure_leaves_no_partial_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, "atomic")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(run_report, "plot_power_trace", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_run_report(run)
    assert not (run / "report").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []

    monkeypatch.undo()
    write_run_report(run)
    before = (run / "report" / "index.html").read_text()
    monkeypatch.setattr(run_report, "plot_latency", broken)
    with pytest.raises(RuntimeError):
        write_run_report(run)
    assert (run / "report" / "index.html").read_text() == before  # the old report is untouched
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_replace_a_foreign_directory_and_non_runs(tmp_path: Path) -> None:
    run = _run(tmp_path, "guarded", full=False)
    (run / "report").mkdir()
    (run / "report" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not an aeforge report"):
        write_run_report(run)
    assert (run / "report" / "notes.txt").read_text() == "mine"
    out = write_run_report(run, out_dir=tmp_path / "elsewhere")
    assert out == tmp_path / "elsewhere" / "index.html"
    with pytest.raises(ArtifactError, match="not an aeforge run"):
        write_run_report(tmp_path / "elsewhere")


def test_units() -> None:
    assert fmt_time(1.5e-5) == "15 µs" and fmt_time(0.0025) == "2.5 ms" and fmt_time(None) == "n/a"
    assert fmt_energy(2.4e-9) == "2.4 nJ" and fmt_energy(3.2e-6) == "3.2 µJ" and fmt_energy(float("nan")) == "n/a"
