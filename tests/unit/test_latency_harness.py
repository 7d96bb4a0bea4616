"""Latency harness: statistics on a fake clock, validity rules, failing runners, sweeps, run metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aeforge.benchmarks.latency import (
    SCENARIO_DEFAULTS,
    batch_sweep,
    measure_latency,
    run_metadata,
    summarize_latencies,
)
from aeforge.errors import ConfigError


class FakeRunner:
    """``infer`` advances a fake nanosecond clock by the next latency of a cyclic list."""

    def __init__(self, latencies_ns: list[int], fail_at: int | None = None) -> None:
        self.now_ns = 1_000_000_000
        self.latencies_ns = latencies_ns
        self.calls = 0
        self.fail_at = fail_at

    def clock(self) -> int:
        return self.now_ns

    def infer(self) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("CUDA error: device lost")
        self.now_ns += self.latencies_ns[(self.calls - 1) % len(self.latencies_ns)]


def _run(runner: FakeRunner, **kwargs: object):
    defaults = {"warmup_s": 0.0, "warmup_count": 3, "clock": runner.clock, "wall_clock": lambda: 1.7e9}
    return measure_latency(runner.infer, **(defaults | kwargs))


def test_percentiles_match_numpy_on_fake_clock() -> None:
    rng = np.random.default_rng(0)
    lat_ns = [int(x) for x in rng.integers(40_000, 200_000, size=997)]
    runner = FakeRunner(lat_ns)
    result = _run(runner, min_queries=2000, min_duration_s=0.0, warmup_count=0)
    assert result.valid, result.invalid_reasons
    assert result.n_queries == 2000
    expected = np.array([lat_ns[i % len(lat_ns)] for i in range(2000)]) * 1e-9
    np.testing.assert_allclose(result.latencies_s, expected, rtol=0, atol=1e-15)
    for q, key in [(50, "p50_s"), (90, "p90_s"), (99, "p99_s")]:
        assert getattr(result, key) == pytest.approx(np.percentile(expected, q), rel=1e-12)
    assert result.max_s == pytest.approx(expected.max())
    assert result.mean_s == pytest.approx(expected.mean())
    assert result.duration_s == pytest.approx(expected.sum())
    assert result.throughput_per_s == pytest.approx(2000 / expected.sum())
    assert result.provisional is None


def test_warmup_is_not_timed_and_throughput_counts_the_batch() -> None:
    runner = FakeRunner([5_000_000, 1_000_000])  # the first (warm-up) call is slow
    result = _run(runner, warmup_count=1, min_queries=10, min_duration_s=0.0, batch_size=8, scenario="offline")
    assert result.valid
    assert result.settings["warmup_queries_run"] == 1
    assert result.n_inferences == 80
    assert result.max_s == pytest.approx(5e-3)  # cyclic list: 5 ms appears again in the timed loop
    assert result.throughput_per_s == pytest.approx(80 / result.duration_s)


def test_runs_until_both_minimums_hold() -> None:
    runner = FakeRunner([1_000_000])  # 1 ms a call
    result = _run(runner, min_queries=10, min_duration_s=0.5)
    assert result.valid
    assert result.n_queries == 500  # the duration, not the query count, is the binding minimum
    result = _run(FakeRunner([1_000_000]), min_queries=700, min_duration_s=0.1)
    assert result.n_queries == 700


def test_too_few_queries_before_max_duration_is_invalid_with_provisional_numbers() -> None:
    runner = FakeRunner([100_000_000])  # 100 ms a call
    result = _run(runner, min_queries=1024, min_duration_s=1.0, max_duration_s=2.0)
    assert not result.valid
    assert result.n_queries == 20
    assert any("fewer than the minimum 1024" in r for r in result.invalid_reasons)
    for key in ("p50_s", "p90_s", "p99_s", "max_s", "mean_s", "throughput_per_s"):
        assert getattr(result, key) is None
    assert result.provisional is not None
    assert result.provisional["p50_s"] == pytest.approx(0.1)
    json.dumps(result.to_dict())  # JSON-serialisable


def test_too_short_is_invalid() -> None:
    runner = FakeRunner([1_000_000])  # 1 ms a call, stopped after 100 queries = 0.1 s
    result = _run(runner, min_queries=10, min_duration_s=1.0, max_queries=100)
    assert not result.valid
    assert result.n_queries == 100
    assert result.invalid_reasons == ["ran 0.100 s, shorter than the minimum 1 s"]
    assert result.p50_s is None and result.provisional["p50_s"] == pytest.approx(1e-3)


def test_too_short_and_too_few_both_reported() -> None:
    result = _run(FakeRunner([1_000_000]), min_queries=1024, min_duration_s=1.0, max_queries=10)
    assert len(result.invalid_reasons) == 2


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        _run(FakeRunner([1]), min_duration_s=2.0, max_duration_s=1.0)
    with pytest.raises(ConfigError):
        _run(FakeRunner([1]), min_queries=0)


def test_throwing_runner_is_invalid_not_a_crash() -> None:
    runner = FakeRunner([1_000_000], fail_at=10)
    result = _run(runner, warmup_count=3, min_queries=100, min_duration_s=0.0)
    assert not result.valid
    assert result.n_queries == 6  # 3 warm-up calls, then calls 4..9 succeed, call 10 raises
    assert "RuntimeError" in result.invalid_reasons[0] and "device lost" in result.invalid_reasons[0]
    assert "timed query 7" in result.invalid_reasons[0]
    assert len(result.invalid_reasons) == 1  # no noise about the minimums


def test_throwing_during_warmup() -> None:
    result = _run(FakeRunner([1_000], fail_at=1), min_queries=10)
    assert not result.valid and result.n_queries == 0
    assert "warm-up" in result.invalid_reasons[0]
    assert result.to_dict()["p50_s"] is None


def test_buffer_grows_past_the_initial_estimate() -> None:
    # warm-up says 10 ms a call, then calls become 1 us: far more queries than the capacity estimate
    runner = FakeRunner([10_000_000] * 2 + [1_000] * 1000)
    result = measure_latency(runner.infer, warmup_count=2, warmup_s=0.0, min_queries=1, min_duration_s=0.02,
                             max_duration_s=0.02, clock=runner.clock)
    assert result.valid
    assert result.settings["warmup_queries_run"] == 2
    # capacity estimate = 0.02 s / 10 ms x 1.1 + 1 = 3 entries; 10 ms calls recur every 1002 calls
    assert result.n_queries > 1000
    assert result.duration_s >= 0.02


def test_unknown_scenario_and_bad_batch() -> None:
    with pytest.raises(ConfigError, match="scenario"):
        measure_latency(lambda: None, scenario="server")
    with pytest.raises(ConfigError, match="batch_size"):
        measure_latency(lambda: None, batch_size=0)
    assert set(SCENARIO_DEFAULTS) == {"single-stream", "offline"}


def test_batch_sweep_records_builder_failures() -> None:
    clocks: list[FakeRunner] = []

    def make_infer(batch: int):
        if batch > 16:
            raise MemoryError("out of memory")
        runner = FakeRunner([1_000 * batch])
        clocks.append(runner)
        return runner.infer

    shared = FakeRunner([1])

    def clock() -> int:
        return clocks[-1].clock() if clocks else shared.clock()

    results = batch_sweep(make_infer, [1, 4, 64], min_queries=10, min_duration_s=0.0, warmup_s=0.0, clock=clock)
    assert [r.batch_size for r in results] == [1, 4, 64]
    assert results[0].valid and results[1].valid
    assert results[1].throughput_per_s == pytest.approx(4 / 4e-6)
    assert not results[2].valid and "MemoryError" in results[2].invalid_reasons[0]


def test_summarize_empty() -> None:
    assert summarize_latencies(np.empty(0), 0.0, 1) == {}


def test_run_metadata_from_fixture_tree(tmp_path: Path) -> None:
    for cpu, governor in [(0, "performance"), (1, "powersave"), (10, "performance")]:
        d = tmp_path / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(governor + "\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n\nprocessor\t: 1\n")
    meta = run_metadata(sysfs_root=tmp_path, cpuinfo_path=cpuinfo, environ={"OMP_NUM_THREADS": "1", "HOME": "/x"})
    assert meta["cpu_model"] == "Test CPU @ 3.0GHz"
    assert list(meta["cpufreq_governors"]) == ["cpu0", "cpu1", "cpu10"]
    assert meta["cpufreq_governors"]["cpu1"] == "powersave"
    assert meta["threads_env"] == {"OMP_NUM_THREADS": "1"}
    assert any("powersave" in note for note in meta["notes"])
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["logical_cores"] >= 1
    json.dumps(meta)


def test_run_metadata_raspberry_pi_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\n\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    meta = run_metadata(sysfs_root=tmp_path / "missing", cpuinfo_path=cpuinfo, environ={})
    assert meta["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert meta["cpufreq_governors"] == {}
