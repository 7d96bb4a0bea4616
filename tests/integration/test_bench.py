"""``bench_stage`` on a tiny trained run: ort and torch runners, validity rules, a recorded power trace."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from aeforge.benchmarks.bench import HEADLINE_KEYS, bench_stage, headline
from aeforge.benchmarks.meters import meter_status
from aeforge.benchmarks.run_report import write_run_report
from aeforge.cli import main
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.integration

TINY = "name: tiny\ndata:\n  synthetic: {n_events: 3000, seed: 3}\ntrain:\n  float_epochs: 1\n  qat_epochs: 1\n"
SHORT = {"min_duration_s": 0.5, "min_queries": 50, "warmup_s": 0.1, "threads": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    (root / "tiny.yaml").write_text(TINY)
    out = root / "tiny"
    assert main(["train", str(root / "tiny.yaml"), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("runner", ["ort", "torch"])
def test_runner_gives_valid_latency_and_no_energy_without_meter(run: Path, runner: str) -> None:
    result = bench_stage(run, runner=runner, meter="none", **SHORT)
    assert result["valid"] is True, result["invalid_reasons"]
    assert 0 < result["p50_s"] <= result["p99_s"]
    assert result["throughput_per_s"] > 0
    assert result["energy_j_per_inference"] is None
    assert result["energy_status"] == "not requested"
    assert result["energy"]["invalid_reasons"] == ["no meter requested (--meter none)"]
    latency = result["latency"]
    assert latency["n_queries"] >= 50 and latency["duration_s"] >= 0.5
    assert len(latency["latencies_s"]) == latency["n_queries"]
    assert result["estimates"] == {}
    saved = Path(result["saved_to"])
    assert saved.parent == run / "bench" and saved.name.endswith(f"_{runner}_b1.json")
    on_disk = json.loads(saved.read_text())
    assert headline(on_disk) == headline(result) and set(HEADLINE_KEYS) <= set(on_disk)
    assert on_disk["metadata"]["threads_requested"] == 1


def test_batch_and_offline_scenario(run: Path) -> None:
    result = bench_stage(run, runner="ort", scenario="offline", batch_size=16, meter="none", save=False, **SHORT)
    assert result["valid"] and result["batch_size"] == 16 and result["scenario"] == "offline"
    assert result["latency"]["n_inferences"] == 16 * result["latency"]["n_queries"]
    assert "saved_to" not in result


def test_auto_meter_without_meter_keeps_the_run_valid(run: Path) -> None:
    if any(reason is None for reason in meter_status().values()):
        pytest.skip("a live power meter is available here")
    result = bench_stage(run, runner="ort", meter="auto", save=False, **SHORT)
    assert result["valid"] and result["energy_j_per_inference"] is None
    assert result["energy_status"] == "unavailable"
    assert "no power meter available" in result["energy"]["invalid_reasons"][0]


def test_too_few_queries_is_invalid_without_headline_numbers(run: Path) -> None:
    result = bench_stage(run, runner="ort", meter="none", max_queries=10, save=False, **SHORT)
    assert result["valid"] is False
    assert result["p50_s"] is None and result["p99_s"] is None and result["throughput_per_s"] is None
    assert any("fewer than the minimum 50" in r for r in result["invalid_reasons"])
    assert result["latency"]["provisional"]["p50_s"] > 0


def test_external_trace_in_span_mode(run: Path, tmp_path: Path) -> None:
    trace = tmp_path / "power.csv"
    times = np.arange(0.0, 20.0 + 1e-9, 0.05)  # a logger counting from its own start: span alignment
    trace.write_text("timestamp_s,power_w\n" + "".join(f"{t:.3f},2.0\n" for t in times))
    result = bench_stage(run, runner="ort", meter=f"external:{trace}", **SHORT)
    assert result["valid"], result["invalid_reasons"]
    assert result["energy_status"] == "measured"
    latency = result["latency"]
    expected_j = 2.0 * latency["duration_s"] / latency["n_inferences"]
    assert result["energy_j_per_inference"] == pytest.approx(expected_j, rel=0.01)
    assert result["energy"]["meter"]["align"] == "span"
    power = result["power_trace"]
    assert power["window"] == [0.0, pytest.approx(20.0)] and len(power["times_s"]) == len(times)
    assert set(power["power_w"]) == {2.0}

    html_path = write_run_report(run)
    page = html_path.read_text()
    assert "measured (external)" in page and 'src="power_' in page


def test_external_trace_that_misses_the_window_is_invalid(run: Path, tmp_path: Path) -> None:
    trace = tmp_path / "old.csv"
    trace.write_text("timestamp_s,power_w\n1000000000.0,2.0\n1000000010.0,2.0\n")  # epoch 2001: not this run
    result = bench_stage(run, runner="ort", meter=f"external:{trace}", save=False, **SHORT)
    assert result["valid"] is False and result["energy_j_per_inference"] is None
    assert result["energy_status"] == "invalid"
    assert any(r.startswith("energy:") for r in result["invalid_reasons"])


def test_trt_without_tensorrt_is_a_tool_error(run: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here (tests/hardware covers it)")
    with pytest.raises(ToolUnavailableError, match="--runner trt: tensorrt"):
        bench_stage(run, runner="trt", meter="none", save=False, **SHORT)


def test_hls_csim_needs_the_hls_stage(run: Path) -> None:
    with pytest.raises(ArtifactError, match="aeforge hls"):
        bench_stage(run, runner="hls-csim", meter="none", save=False, **SHORT)


def test_user_errors(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--runner"):
        bench_stage(run, runner="tflite")
    with pytest.raises(ConfigError, match="--scenario"):
        bench_stage(run, scenario="server")
    with pytest.raises(ConfigError, match="--batch"):
        bench_stage(run, batch_size=0)
    with pytest.raises(ConfigError, match="--meter"):
        bench_stage(run, meter="wattmeter", save=False)
    with pytest.raises(ArtifactError, match="not found"):
        bench_stage(tmp_path / "missing")
    if meter_status()["rapl"] is not None:
        with pytest.raises(ToolUnavailableError, match="--meter rapl"):
            bench_stage(run, meter="rapl", save=False)


def test_cli_bench_json_and_report(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance interface: `aeforge bench RUN --runner ort --json` with a recorded power trace."""
    from aeforge.cli import main

    trace = tmp_path / "power.csv"
    trace.write_text("timestamp_s,power_w\n" + "".join(f"{t * 0.1:.1f},3.0\n" for t in range(200)))
    capsys.readouterr()
    assert main(["bench", str(run), "--runner", "ort", "--json", "--meter", f"external:{trace}",
                 "--duration-s", "0.5", "--min-queries", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"valid", "p50_s", "p99_s", "throughput_per_s", "energy_j_per_inference"} <= set(result)
    assert result["valid"] and result["p50_s"] <= result["p99_s"] and result["throughput_per_s"] > 0
    expected_j = 3.0 * result["latency"]["duration_s"] / result["latency"]["n_inferences"]
    assert result["energy_j_per_inference"] == pytest.approx(expected_j, rel=0.01)
    assert main(["bench", str(run), "--runner", "ort", "--meter", "none", "--duration-s", "0.2",
                 "--min-queries", "10"]) == 0
    assert "not measured" in capsys.readouterr().out
    assert main(["bench", str(run), "--meter", "bogus"]) == 1
    assert "--meter" in capsys.readouterr().err
    assert main(["report", str(run), "--compare", str(run)]) == 0
    page = (run / "report" / "index.html").read_text()
    assert "external" in page and "p50" in page


def test_cli_batch_sweep(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main

    capsys.readouterr()
    assert main(["bench", str(run), "--runner", "ort", "--scenario", "offline", "--batch", "1,4", "--meter", "none",
                 "--duration-s", "0.2", "--min-queries", "10", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in results] == [1, 4] and all(r["valid"] for r in results)
    assert all(Path(r["saved_to"]).is_file() for r in results)
    assert main(["bench", str(run), "--batch", "1,x"]) == 1
    assert "--batch" in capsys.readouterr().err
